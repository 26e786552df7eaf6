// The strangler-bridge operator page: reads and drives the service's JSON API with the token kept in
// sessionStorage. Everything shown is set with textContent (never parsed as HTML).
"use strict";

(() => {
  const TOKEN_KEY = "strangler-ops-token";
  const REFRESH_MS = 1000;
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const MODES = ["legacy", "shadow", "fastapi"];
  const KINDS = ["service", "fallback", "shadow_match", "shadow_mismatch", "shadow_error", "shadow_skipped"];
  const COLUMNS = 9; // of the jobs table: a reason or detail row spans them all
  const jobCache = new Map(); // job id -> its last status
  const filesCache = new Map(); // job id -> {updated_at, files}
  const expanded = new Set(); // jobs whose timeline and files are shown
  const confirming = new Map(); // job id -> "retry" | "cancel", awaiting the operator's yes
  let jobOrder = [];
  const dirtyFlags = new Set(); // phases with unsaved edits: not overwritten by refreshes
  let timer = null;
  let busy = false;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // --- formatting -----------------------------------------------------------------------------------
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
  const money = (value) => (value === null || value === undefined ? "" : `$${Number(value).toFixed(4)}`);
  function seconds(value) {
    if (value === null || value === undefined) return "";
    return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  }
  function elapsed(item) {
    const start = Date.parse(item.created_at);
    const end = TERMINAL.has(item.status) ? Date.parse(item.updated_at) : Date.now();
    return seconds(Math.max(0, (end - start) / 1000));
  }
  const short = (id) => (id && id.length > 14 ? `${id.slice(0, 12)}…` : id || "");
  const badge = (status) => el("span", { class: `badge ${status}`, "data-field": "status", text: status });

  // The completion webhook of a job or batch that asked for one: "webhook delivered", "webhook retrying (3)".
  function callbackChip(item) {
    const cb = item.callback;
    if (!cb) return null;
    const word = cb.status === "pending" ? (cb.attempts ? `retrying (${cb.attempts})` : "sending") : cb.status;
    const next = cb.next_attempt_at ? `, next at ${time(cb.next_attempt_at)}` : "";
    return el("span", {
      class: `callback ${cb.status}`,
      "data-field": "callback",
      "data-callback": cb.status,
      title: `${cb.webhook_id}: ${cb.attempts} attempt(s)${cb.last_error ? `, last: ${cb.last_error}` : ""}${next}`,
      text: `webhook ${word}`,
    });
  }

  // What reuse spared a job or batch: " (reused 38, saved $0.0271)"; nothing when nothing was reused.
  function reuseNote(item) {
    if (!item.reused) return "";
    const saved = item.cost_saved === null || item.cost_saved === undefined ? "" : `, saved ${money(item.cost_saved)}`;
    return ` (reused ${item.reused}${saved})`;
  }

  function progressBar(progress) {
    const label = `${progress.done}/${progress.total}` + (progress.failed ? ` (${progress.failed} failed)` : "");
    return el(
      "span",
      { class: "progress" },
      el("progress", { value: progress.done, max: Math.max(progress.total, 1) }),
      el("span", { "data-field": "progress-text", text: label }),
    );
  }

  // --- jobs -----------------------------------------------------------------------------------------
  async function loadJobs() {
    const list = await api("GET", "jobs?limit=25");
    const details = await Promise.all(
      list.items.map(async (item) => {
        const known = jobCache.get(item.id);
        if (known && TERMINAL.has(item.status) && known.updated_at === item.updated_at) return known;
        const job = await api("GET", `jobs/${encodeURIComponent(item.id)}`);
        jobCache.set(item.id, job);
        return job;
      }),
    );
    const ids = new Set(list.items.map((item) => item.id));
    for (const id of jobCache.keys()) if (!ids.has(id)) jobCache.delete(id);
    for (const id of [...expanded]) if (!ids.has(id)) expanded.delete(id);
    await Promise.all(details.filter((job) => expanded.has(job.id)).map(loadFiles));
    jobOrder = details.map((job) => job.id);
    renderJobs();
  }

  async function loadFiles(job) {
    const known = filesCache.get(job.id);
    if (known && known.updated_at === job.updated_at && TERMINAL.has(job.status)) return;
    const files = await api("GET", `jobs/${encodeURIComponent(job.id)}/files`);
    filesCache.set(job.id, { updated_at: job.updated_at, files });
  }

  function renderJobs() {
    const jobs = jobOrder.map((id) => jobCache.get(id)).filter(Boolean);
    $("jobs").tBodies[0].replaceChildren(...jobs.flatMap(jobRows));
    $("jobs-empty").hidden = jobs.length > 0;
  }

  function stepChip(step) {
    const parts = [step.name, `${step.progress.done}/${step.progress.total}`];
    if (step.duration_s !== null && step.duration_s !== undefined) parts.push(seconds(step.duration_s));
    if (step.cost !== null && step.cost !== undefined) parts.push(money(step.cost));
    if (step.reused) parts.push(`reused ${step.reused}`);
    return el("span", {
      class: `step ${step.status}`,
      "data-step": step.name,
      "data-status": step.status,
      title: step.error || `${step.name}: ${step.status}, attempts ${step.attempts}`,
      text: parts.join(" "),
    });
  }

  function actionCell(job) {
    const cell = el("td", { class: "actions" });
    const asking = confirming.get(job.id);
    if (asking) {
      cell.append(
        el("span", { class: "confirm", "data-field": "confirm", text: `${asking === "retry" ? "Retry" : "Cancel"} this job? ` }),
        el("button", { type: "button", class: "danger", "data-action": "confirm", onclick: () => act(job, asking), text: "Yes" }),
        el("button", { type: "button", "data-action": "dismiss", onclick: () => ask(job, null), text: "No" }),
      );
      return cell;
    }
    if (job.status === "failed" || job.status === "cancelled") {
      cell.append(el("button", { type: "button", "data-action": "retry", onclick: () => ask(job, "retry"), text: "Retry" }));
    }
    if (!TERMINAL.has(job.status)) {
      cell.append(el("button", { type: "button", "data-action": "cancel", onclick: () => ask(job, "cancel"), text: "Cancel" }));
    }
    const open = expanded.has(job.id);
    cell.append(
      el("button", {
        type: "button",
        "data-action": "details",
        "aria-expanded": String(open),
        onclick: () => toggle(job),
        text: open ? "Hide" : "Details",
      }),
    );
    return cell;
  }

  function jobRows(job) {
    const current = job.steps.find((s) => s.name === job.current_step);
    const progress = current ? current.progress : job.progress;
    const rows = [
      el(
        "tr",
        { "data-job-id": job.id, "data-status": job.status, class: "job" },
        el("td", { title: job.id, text: short(job.id) }),
        el("td", { text: job.video_id || "" }),
        el("td", {}, badge(job.status), callbackChip(job)),
        el("td", { class: "steps" }, ...job.steps.map(stepChip)),
        el(
          "td",
          { "data-field": "progress" },
          el("span", { class: "muted", text: current ? `${current.name} ` : "steps " }),
          progressBar(progress),
        ),
        el("td", { class: "wide", "data-field": "cost", text: money(job.cost_total) + reuseNote(job) }),
        el("td", { class: "wide", text: time(job.created_at) }),
        el("td", { class: "wide", text: elapsed(job) }),
        actionCell(job),
      ),
    ];
    // The reason a job failed, in full and in its own row: the first thing an operator needs.
    const stepErrors = job.steps.filter((s) => s.error && `${s.name}: ${s.error}` !== job.error);
    if (job.error || stepErrors.length) {
      const reasons = [job.error, ...stepErrors.map((s) => `${s.name}: ${s.error}`)].filter(Boolean);
      rows.push(
        el(
          "tr",
          { class: "reason", "data-reason-for": job.id },
          el("td", { colspan: COLUMNS, "data-field": "error" }, el("b", { text: "Reason: " }), reasons.join(" · ")),
        ),
      );
    }
    if (expanded.has(job.id)) rows.push(detailRow(job));
    return rows;
  }

  function detailRow(job) {
    const cached = filesCache.get(job.id);
    return el(
      "tr",
      { class: "detail", "data-detail-for": job.id },
      el("td", { colspan: COLUMNS }, timeline(job, cached && cached.files), fileLinks(job, cached && cached.files)),
    );
  }

  // Steps as bars over the job's life: a gap before a bar is time spent waiting (queued, or for the step
  // before it); a step run more than once, or whose provider work was resubmitted, says so on its bar.
  function timeline(job, files) {
    const start = Date.parse(job.created_at);
    const end = TERMINAL.has(job.status) ? Date.parse(job.updated_at) : Date.now();
    const span = Math.max(end - start, 1);
    const pct = (t) => `${(Math.min(Math.max(t - start, 0), span) / span) * 100}%`;
    const retries = {
      tts: files ? files.audio.reduce((n, f) => n + Math.max(f.attempts - 1, 0), 0) : 0,
      imagegen: files ? files.images.reduce((n, f) => n + Math.max(f.attempts - 1, 0), 0) : 0,
    };
    let previousEnd = start;
    const lanes = job.steps.map((step) => {
      const track = el("div", { class: "track" });
      if (step.started_at) {
        const from = Date.parse(step.started_at);
        const to = step.finished_at ? Date.parse(step.finished_at) : end;
        if (from > previousEnd) {
          // Positions are set through the CSSOM, which the page's CSP allows (style attributes it would not).
          const wait = el("span", { class: "wait", "data-field": "wait", title: `waited ${seconds((from - previousEnd) / 1000)}` });
          wait.style.left = pct(previousEnd);
          wait.style.width = `calc(${pct(from)} - ${pct(previousEnd)})`;
          track.append(wait);
        }
        const bar = el("span", { class: `bar ${step.status}`, "data-step": step.name, "data-status": step.status });
        bar.style.left = pct(from);
        bar.style.width = `max(3px, calc(${pct(to)} - ${pct(from)}))`;
        bar.title = `${step.name} ${step.status}: ${seconds((to - from) / 1000)}`;
        track.append(bar);
        previousEnd = Math.max(previousEnd, to);
      }
      const ran = step.started_at ? ((step.finished_at ? Date.parse(step.finished_at) : end) - Date.parse(step.started_at)) / 1000 : null;
      const notes = [ran === null ? "not started" : seconds(ran)];
      if (step.attempts > 1) notes.push(`attempt ${step.attempts}`);
      if (retries[step.name]) notes.push(`${retries[step.name]} resubmitted`);
      return el(
        "div",
        { class: "lane", "data-lane": step.name },
        el("span", { class: "lane-name", text: step.name }),
        track,
        el("span", { class: "lane-note", "data-field": "note", text: notes.join(" · ") }),
      );
    });
    return el("div", { class: "timeline", "data-field": "timeline" }, ...lanes);
  }

  function fileLinks(job, files) {
    if (!files) return el("p", { class: "muted", text: "Loading files…" });
    const link = (url, name, text) => el("a", { href: url.replace(/^\//, ""), download: name, "data-file": name, text });
    const list = el("div", { class: "files", "data-field": "files" });
    const group = (label, ...nodes) => list.append(el("div", {}, el("b", { text: `${label} ` }), ...nodes));
    if (files.video) group("video", link(files.video, "video.mp4", "video.mp4"));
    if (files.segments) group("segments", link(files.segments, "segments.json", "segments.json"));
    const items = (entries, ext, prefix) =>
      entries.map((f) =>
        f.url
          ? link(f.url, `${prefix}_${String(f.index).padStart(4, "0")}.${ext}`, String(f.index))
          : el("span", { class: `muted ${f.status}`, title: f.error || f.status, text: `${f.index}` }),
      );
    if (files.audio.length) group("audio", ...items(files.audio, "wav", "chunk"));
    if (files.images.length) group("images", ...items(files.images, "png", "image"));
    if (!list.childElementCount) list.append(el("span", { class: "muted", text: "No files yet." }));
    return list;
  }

  function ask(job, action) {
    if (action) confirming.set(job.id, action);
    else confirming.delete(job.id);
    renderJobs();
  }

  async function toggle(job) {
    if (expanded.has(job.id)) {
      expanded.delete(job.id);
    } else {
      expanded.add(job.id);
      renderJobs();
      try {
        await loadFiles(job);
      } catch (error) {
        showProblem(`files of ${job.id}: ${error.message}`);
      }
    }
    renderJobs();
  }

  async function act(job, action) {
    confirming.delete(job.id);
    try {
      const updated = await api("POST", `jobs/${encodeURIComponent(job.id)}/${action}`);
      jobCache.set(job.id, updated);
      showProblem("");
    } catch (error) {
      showProblem(`${action} ${job.id}: ${error.message}`);
    }
    renderJobs();
    refresh();
  }

  // --- batches --------------------------------------------------------------------------------------
  async function loadBatches() {
    const list = await api("GET", "batches?limit=25");
    const rows = list.items.map((b) =>
      el(
        "tr",
        { "data-batch-id": b.id, "data-status": b.status },
        el("td", { title: b.id, text: short(b.id) }),
        el("td", { text: b.kind }),
        el("td", { text: b.video_id || "" }),
        el("td", {}, badge(b.status), callbackChip(b)),
        el("td", { "data-field": "progress" }, progressBar(b.progress)),
        el("td", { "data-field": "reused", text: reuseNote(b).trim() }),
        el("td", { class: "wide", text: time(b.created_at) }),
        el("td", { class: "wide", text: elapsed(b) }),
        el("td", { class: "error", "data-field": "error", text: b.error || "" }),
      ),
    );
    $("batches").tBodies[0].replaceChildren(...rows);
    $("batches-empty").hidden = rows.length > 0;
  }

  // --- flags ----------------------------------------------------------------------------------------
  async function loadFlags() {
    const set = await api("GET", "flags");
    const body = $("flags").tBodies[0];
    for (const [phase, flag] of Object.entries(set.flags)) {
      let row = body.querySelector(`tr[data-phase="${CSS.escape(phase)}"]`);
      if (!row) {
        row = flagRow(phase);
        body.append(row);
      }
      if (!dirtyFlags.has(phase)) fillFlag(row, flag);
    }
  }

  function flagRow(phase) {
    const dirty = () => dirtyFlags.add(phase);
    const mode = el("select", { name: "mode", onchange: dirty }, ...MODES.map((m) => el("option", { value: m, text: m })));
    const percent = el("input", { name: "percent", type: "number", min: "0", max: "100", step: "1", oninput: dirty });
    const allow = el("input", { name: "allow", type: "text", placeholder: "video ids, comma-separated", oninput: dirty });
    const fallback = el("input", { name: "fallback", type: "checkbox", onchange: dirty });
    const status = el("span", { class: "muted", "data-field": "flag-status" });
    const row = el(
      "tr",
      { "data-phase": phase },
      el("th", { text: phase }),
      el("td", {}, mode),
      el("td", {}, percent),
      el("td", {}, allow),
      el("td", {}, fallback),
      el("td", {}, el("button", { type: "button", "data-action": "save-flag", text: "Save" })),
      el("td", {}, status),
    );
    row.querySelector("button").addEventListener("click", () => saveFlag(phase, row));
    return row;
  }

  function fillFlag(row, flag) {
    row.querySelector('[name="mode"]').value = flag.mode;
    row.querySelector('[name="percent"]').value = String(flag.percent);
    row.querySelector('[name="allow"]').value = flag.allow.join(", ");
    row.querySelector('[name="fallback"]').checked = flag.fallback;
    row.dataset.mode = flag.mode;
    row.dataset.percent = String(flag.percent);
  }

  async function saveFlag(phase, row) {
    const status = row.querySelector('[data-field="flag-status"]');
    const flag = {
      mode: row.querySelector('[name="mode"]').value,
      percent: Number(row.querySelector('[name="percent"]').value),
      allow: row.querySelector('[name="allow"]').value.split(",").map((s) => s.trim()).filter(Boolean),
      fallback: row.querySelector('[name="fallback"]').checked,
    };
    status.textContent = "saving…";
    try {
      const set = await api("PUT", `flags/${encodeURIComponent(phase)}`, flag);
      dirtyFlags.delete(phase);
      fillFlag(row, set.flags[phase]);
      status.textContent = `saved (version ${set.version})`;
    } catch (error) {
      status.textContent = error.message;
    }
  }

  // --- events from the Flask side -------------------------------------------------------------------
  async function loadEvents() {
    const data = await api("GET", "events?limit=20");
    const counterRows = Object.entries(data.counters).map(([phase, counts]) =>
      el("tr", { "data-phase": phase }, el("th", { text: phase }), ...KINDS.map((k) => el("td", { "data-kind": k, text: counts[k] || 0 }))),
    );
    $("event-counters").tBodies[0].replaceChildren(...counterRows);
    const rows = data.recent.map((e) =>
      el(
        "tr",
        { "data-kind": e.kind },
        el("td", { text: e.at ? time(e.at) : new Date(e.received_at * 1000).toLocaleTimeString() }),
        el("td", { text: e.phase }),
        el("td", {}, el("span", { class: `badge ${e.kind}`, text: e.kind.replace("_", " ") })),
        el("td", { text: e.video_id || "" }),
        el("td", { class: "error", text: e.detail || "" }),
      ),
    );
    $("events").tBodies[0].replaceChildren(...rows);
    $("events-empty").hidden = rows.length > 0;
  }

  // --- circuit breakers on the Flask side -----------------------------------------------------------
  async function loadBreakers() {
    let breakers = [];
    try {
      breakers = (await api("GET", "events/breakers")).breakers || [];
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error; // 404: no Flask app reports them
    }
    const rows = breakers.map((b) =>
      el(
        "tr",
        { "data-source": b.source, "data-phase": b.phase, "data-state": b.state },
        el("td", { text: b.source }),
        el("td", { text: b.phase }),
        el("td", {}, el("span", { class: `badge ${b.state}`, "data-field": "state", text: b.state.replace("_", " ") })),
        el("td", { text: b.since ? time(typeof b.since === "number" ? new Date(b.since * 1000).toISOString() : b.since) : "" }),
        el("td", { text: b.failures ?? "" }),
      ),
    );
    $("breakers").tBodies[0].replaceChildren(...rows);
    $("breakers-empty").hidden = rows.length > 0;
  }

  // --- the loop and sign-in -------------------------------------------------------------------------
  function showProblem(text) {
    $("problem").textContent = text;
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    try {
      await Promise.all([loadJobs(), loadBatches(), loadFlags(), loadEvents(), loadBreakers()]);
      $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
      showProblem("");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        signOut("The token was refused; sign in again.");
        return;
      }
      showProblem(`cannot reach the service: ${error.message}`);
    } finally {
      busy = false;
    }
    if (sessionStorage.getItem(TOKEN_KEY)) timer = setTimeout(refresh, REFRESH_MS);
  }

  function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    refresh();
  }

  function signOut(message) {
    clearTimeout(timer);
    sessionStorage.removeItem(TOKEN_KEY);
    jobCache.clear();
    filesCache.clear();
    expanded.clear();
    confirming.clear();
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      if (token) signIn(token);
    });
    $("logout").addEventListener("click", () => signOut(""));
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
  });
})();
