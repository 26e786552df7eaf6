"""The matrix as a Markdown table, and its place in docs/RELIABILITY.md (between two marker comments)."""

from __future__ import annotations

import datetime
from pathlib import Path

from tests.faults.harness import Outcome, Scenario

BEGIN = "<!-- fault-matrix:begin (written by python -m tests.faults.matrix; edit outside the markers) -->"
END = "<!-- fault-matrix:end -->"


def _failures(outcome: Outcome) -> str:
    if not outcome.failures:
        return "0"
    reasons = "; ".join(f"{count} x {reason}" for reason, count in outcome.failures.most_common())
    return f"{sum(outcome.failures.values())}: {reasons}".replace("|", "/")


def _verdict(scenario: Scenario, outcome: Outcome) -> str:
    if scenario.passed(outcome):
        return "pass" if scenario.expect_reason is None else f"pass (every job failed: {scenario.expect_reason})"
    return "FAIL" if scenario.transient or scenario.expect_reason else "gap (not transient)"


def table(rows: list[tuple[Scenario, Outcome]]) -> str:
    """The scenario table in Markdown."""
    lines = [
        "| Scenario | Fault injected | Completed | Failed (stated reason) | Duplicate paid submissions "
        "(RunPod / Runware / video) | Lost artifacts | Stored unlike the record | Jobs in flight at the fault "
        "| Time | Result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, outcome in rows:
        dup = outcome.duplicates
        duplicates = (
            f"{outcome.duplicate_total} ({dup.get('runpod', 0)} / {dup.get('runware', 0)} / {dup.get('video', 0)})"
        )
        in_flight = "-" if outcome.in_flight_at_fault is None else f"{outcome.in_flight_at_fault}/{outcome.submitted}"
        lines.append(
            f"| {scenario.title} | {scenario.fault} | {outcome.completed}/{outcome.submitted} | {_failures(outcome)} "
            f"| {duplicates} | {outcome.lost} | {outcome.mismatches} | {in_flight} | {outcome.seconds:.0f} s "
            f"| {_verdict(scenario, outcome)} |"
        )
    return "\n".join(lines)


def notes(rows: list[tuple[Scenario, Outcome]]) -> str:
    """What each disruption did and which faults the simulators counted (from the run), as a list."""
    lines = []
    for scenario, outcome in rows:
        parts = list(outcome.notes)
        if outcome.facts:
            parts.append("counted: " + ", ".join(f"{name} {count}" for name, count in sorted(outcome.facts.items())))
        if parts:
            lines.append(f"- **{scenario.title}**: {'; '.join(parts)}.")
    return "\n".join(lines)


def block(rows: list[tuple[Scenario, Outcome]], command: str, jobs: int) -> str:
    """The generated part of RELIABILITY.md."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        BEGIN,
        f"Latest run: {today}, {jobs} pipeline jobs per scenario, produced by:",
        "",
        f"```bash\n{command}\n```",
        "",
        table(rows),
        "",
        notes(rows),
        END,
    ]
    return "\n".join(parts)


def write(path: Path, generated: str) -> None:
    """Replace the generated block of ``path`` (the file must already have the markers)."""
    text = path.read_text()
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{path} has no {BEGIN!r} ... {END!r} block to replace")
    path.write_text(text[:start] + generated + text[stop + len(END) :])
