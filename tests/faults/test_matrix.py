"""The fault matrix at CI size: every scenario must end with every job completed, nothing paid twice, nothing lost.

``STRANGLER_FAULT_JOBS`` sets the jobs per scenario (default 3 here; ``python -m tests.faults.matrix`` runs 20 and
publishes the table in docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.harness import Outcome, Scenario, run_scenario
from tests.faults.matrix import jobs_from_env
from tests.faults.scenarios import SCENARIOS

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

JOBS = jobs_from_env(3)


def _explain(outcome: Outcome, workdir: Path) -> str:
    return f"{json.dumps(outcome.as_json(), indent=2)}\nlogs: {workdir / 'logs'}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.key for s in SCENARIOS])
def test_every_job_completes_once_with_its_artifacts(scenario: Scenario, tmp_path: Path) -> None:
    outcome = run_scenario(scenario, JOBS, tmp_path)
    explained = _explain(outcome, tmp_path)
    if scenario.expect_reason is None:
        assert outcome.completed == outcome.submitted == JOBS, explained
    else:  # an output that can never be used: every job ends at once with the reason, nothing paid again
        assert outcome.failed_with(scenario.expect_reason) == outcome.submitted == JOBS, explained
    assert outcome.duplicate_total == 0, explained
    assert outcome.lost == 0, explained
    assert outcome.mismatches == 0, explained
    # The fault really happened: the simulators counted it, and a disruption hit while jobs were running.
    missing = [name for name in scenario.evidence if not outcome.facts.get(name)]
    assert not missing, f"fault never injected: {missing}\n{explained}"
    if scenario.disrupt is not None:
        assert outcome.in_flight_at_fault, explained
    if "fallbacks" in scenario.evidence:
        assert outcome.facts["fallbacks"] == JOBS, explained  # every video went through the fallback
