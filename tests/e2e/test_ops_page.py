"""The operator page in a real headless Chromium against the real stack: sign in, watch a job progress, flip a
flag, see the Flask side's fallbacks, and retry a failed job once the provider is fixed.

Needs Debian's ``chromium`` package and Playwright's Python package (never ``playwright install``: the
browser is the system one).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is not installed (pip install playwright)"
)
CHROMIUM = os.environ.get("STRANGLER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    # One Runware slot and slow images, so a job's image step visibly advances one image at a time; one
    # provider attempt, so a failing Runware fails the job at once.
    base = settings.model_copy(
        update={
            "reconcile_after_s": 10.0,
            "reconcile_interval_s": 0.2,
            "tts_group_size": 2,
            "runware_concurrency": 1,
            "provider_attempts": 1,
        }
    )
    with DevStack(
        base,
        runpod={"execution_time_s": 0.2, "webhook_retry_delay_s": 0.05},
        runware={"latency_s": 0.9, "image_max_side": 64},
        log_dir=tmp_path / "stack",
    ) as running:
        yield running


def job_body(video_id: str, n: int = 4) -> dict[str, Any]:
    return {
        "chunks": [{"text": f"Sentence number {i} of the story."} for i in range(n)],
        "images": {"width": 128, "height": 128},
        "video": {"width": 64, "height": 48, "fps": 5},
        "video_id": video_id,
    }


def create_job(client: httpx.Client, video_id: str) -> str:
    response = client.post("/jobs", json=job_body(video_id))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_the_shell_is_public_holds_no_data_and_loads_nothing_from_elsewhere(stack: DevStack) -> None:
    page = httpx.get(f"{stack.api_url}/ops")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "every asset must come from the service"
    assert "job_" not in page.text
    assert httpx.get(f"{stack.api_url}/ops/assets/ops.js").status_code == 200
    assert httpx.get(f"{stack.api_url}/ops/assets/secrets.txt").status_code == 404
    assert httpx.get(f"{stack.api_url}/jobs").status_code == 401


def test_operator_watches_a_job_flips_a_flag_and_retries_a_failed_job(
    stack: DevStack, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    try:
        page.goto(f"{stack.api_url}/ops")

        # A wrong token is refused and the page asks again; the right one shows the data.
        page.fill("#token", "not-a-token")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("refused")
        page.fill("#token", stack.token)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#app")).to_be_visible()

        with stack.client() as client:
            # 1. A running job's progress: the image step advances one image at a time.
            running_id = create_job(client, "vid-watch")
            row = page.locator(f'#jobs tr[data-job-id="{running_id}"]')
            images = row.locator('[data-step="imagegen"]')
            expect(row.locator('[data-action="cancel"]')).to_be_visible()
            seen: set[int] = set()

            def progressed() -> bool:
                # Two different counts of finished images on the page while the step still runs.
                match = re.search(r"imagegen (\d)/4", images.text_content() or "")
                if match and images.get_attribute("data-status") == "submitted":
                    seen.add(int(match.group(1)))
                return len(seen) >= 2

            wait_for(progressed, timeout=30, what="the page to show the image step advancing")
            expect(row).to_have_attribute("data-status", "completed")
            expect(row.locator('[data-field="progress"]')).to_contain_text("4/4")
            assert row.locator("[data-action=retry], [data-action=cancel]").count() == 0

            # 2. Flip a flag from the page; the service has it at once.
            flag = page.locator('#flags tr[data-phase="tts"]')
            flag.locator('[name="mode"]').select_option("shadow")
            flag.locator('[name="percent"]').fill("10")
            flag.locator('[data-action="save-flag"]').click()
            expect(flag.locator('[data-field="flag-status"]')).to_contain_text("saved")
            stored = client.get("/flags").json()["flags"]["tts"]
            assert (stored["mode"], stored["percent"]) == ("shadow", 10)
            expect(flag).to_have_attribute("data-mode", "shadow")

            # 3. The Flask side's fallbacks and shadow mismatches show up.
            reported = [
                {"kind": "fallback", "phase": "tts", "video_id": "vid-fb", "detail": "service unreachable"},
                {"kind": "shadow_mismatch", "phase": "tts", "video_id": "vid-sm", "detail": "durations differ"},
            ]
            assert client.post("/events", json={"events": reported, "source": "test"}).status_code == 200
            expect(page.locator('#events tr[data-kind="fallback"]')).to_contain_text("vid-fb")
            expect(page.locator('#event-counters tr[data-phase="tts"] [data-kind="shadow_mismatch"]')).to_have_text("1")

            # 4. Runware fails every image: the job fails and offers a retry; fix Runware, press Retry.
            stack.set_knobs("runware", failure_rate=1.0)
            failed_id = create_job(client, "vid-retry")
            failed = page.locator(f'#jobs tr[data-job-id="{failed_id}"]')
            expect(failed).to_have_attribute("data-status", "failed")
            expect(page.locator(f'tr[data-reason-for="{failed_id}"]')).to_contain_text("imagegen")
            stack.set_knobs("runware", failure_rate=0.0)
            failed.locator('[data-action="retry"]').click()
            failed.locator('[data-action="confirm"]').click()
            expect(failed).to_have_attribute("data-status", "completed")

            job = client.get(f"/jobs/{failed_id}").json()
            assert job["status"] == "completed"
            assert {s["name"]: s["attempts"] for s in job["steps"]} == {
                "tts": 1,
                "segments": 1,
                "imagegen": 2,
                "video": 1,
            }
        assert problems == []
    finally:
        page.screenshot(path=str(tmp_path / "ops.png"), full_page=True)
        page.close()


def _sign_in(page: Any, stack: DevStack) -> None:
    page.goto(f"{stack.api_url}/ops")
    page.fill("#token", stack.token)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()


def _within(page: Any, locator: Any, width: int) -> None:
    # The page redraws its tables every second, so a measurement can land on a row just replaced: measure again.
    def fits() -> bool:
        box = locator.bounding_box(timeout=TIMEOUT_MS)
        return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width

    wait_for(fits, timeout=30, interval=0.2, what=f"{locator} to fit in {width} px")


@pytest.mark.parametrize("width", [1400, 800])
def test_files_timeline_reasons_confirmations_and_breakers_at_each_width(
    stack: DevStack, browser: Any, tmp_path: Path, width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" and "404" not in msg.text else None)
    try:
        _sign_in(page, stack)
        with stack.client() as client:
            # 1. A failed job: its reason, in full, in a row of its own; Retry asks first, and "No" does nothing.
            stack.set_knobs("runware", failure_rate=1.0)
            job_id = create_job(client, f"vid-{width}")
            row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
            expect(row).to_have_attribute("data-status", "failed")
            reason = client.get(f"/jobs/{job_id}").json()["error"]
            assert reason and reason.startswith("imagegen")
            reason_row = page.locator(f'tr[data-reason-for="{job_id}"]')
            expect(reason_row).to_contain_text(reason)
            _within(page, reason_row, width)
            row.locator('[data-action="retry"]').click()
            expect(row.locator('[data-field="confirm"]')).to_have_text("Retry this job? ")
            _within(page, row.locator('[data-action="confirm"]'), width)
            row.locator('[data-action="dismiss"]').click()
            expect(row.locator('[data-action="retry"]')).to_be_visible()
            assert client.get(f"/jobs/{job_id}").json()["status"] == "failed"

            # 2. Yes: the job resumes and completes.
            stack.set_knobs("runware", failure_rate=0.0)
            row.locator('[data-action="retry"]').click()
            row.locator('[data-action="confirm"]').click()
            expect(row).to_have_attribute("data-status", "completed")

            # 3. Its timeline: one lane per step, a bar for each; the retried image step waited and says so.
            row.locator('[data-action="details"]').click()
            detail = page.locator(f'tr[data-detail-for="{job_id}"]')
            for step in ("tts", "segments", "imagegen", "video"):
                expect(detail.locator(f'.bar[data-step="{step}"]')).to_have_attribute("data-status", "completed")
            images_lane = detail.locator('[data-lane="imagegen"]')
            expect(images_lane.locator('[data-field="note"]')).to_contain_text("attempt 2")
            expect(images_lane.locator('[data-field="wait"]')).to_have_count(1)
            _within(page, detail.locator('[data-field="timeline"]'), width)

            # 4. Links to each of its files, which download without a token.
            links = detail.locator("[data-file]")
            expect(links).to_have_count(2 + 4 + 4)
            expected = {
                "video.mp4": "video/mp4",
                "segments.json": "application/json",
                "chunk_0000.wav": "audio/wav",
                "image_0003.png": "image/png",
            }
            for name, content_type in expected.items():
                href = detail.locator(f'[data-file="{name}"]').get_attribute("href")
                assert href and href.startswith("artifacts/"), href
                fetched = httpx.get(f"{stack.api_url}/{href}")
                assert fetched.status_code == 200 and fetched.headers["content-type"].startswith(content_type)

            # 5. Cancel asks first too.
            stack.set_knobs("runware", latency_s=30.0)
            slow_id = create_job(client, f"vid-slow-{width}")
            slow = page.locator(f'#jobs tr[data-job-id="{slow_id}"]')
            slow.locator('[data-action="cancel"]').click()
            expect(slow.locator('[data-field="confirm"]')).to_have_text("Cancel this job? ")
            slow.locator('[data-action="confirm"]').click()
            expect(slow).to_have_attribute("data-status", "cancelled")
            stack.set_knobs("runware", latency_s=0.9)

        # 6. The Flask side's breakers: none reported yet (no route, or an empty list), then the states it reports.
        expect(page.locator("#breakers-empty")).to_be_visible()
        expect(page.locator("#breakers-empty")).to_have_text("No breaker reports yet.")
        reports = {
            "breakers": [
                {
                    "source": "legacy-app",
                    "phase": "tts",
                    "state": "open",
                    "since": "2026-01-01T12:00:00Z",
                    "failures": 5,
                },
                {"source": "legacy-app", "phase": "imagegen", "state": "half_open", "since": None, "failures": 2},
                {"source": "legacy-app", "phase": "video", "state": "closed", "since": None, "failures": 0},
            ]
        }
        # GET /events/breakers is added by the Flask side's breaker work (issue 15); until it is merged here the
        # browser is given its documented answer, to check how the page shows each state.
        page.route("**/events/breakers", lambda route: route.fulfill(json=reports))
        tts = page.locator('#breakers tr[data-phase="tts"]')
        expect(tts).to_have_attribute("data-state", "open")
        expect(tts.locator('[data-field="state"]')).to_have_text("open")
        expect(page.locator('#breakers tr[data-phase="imagegen"] [data-field="state"]')).to_have_text("half open")
        expect(page.locator("#breakers-empty")).to_be_hidden()

        # Usable at this width: nothing scrolls sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert problems == []
    finally:
        page.screenshot(path=str(tmp_path / f"ops-{width}.png"), full_page=True)
        page.close()
