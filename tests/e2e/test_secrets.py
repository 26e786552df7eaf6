"""Secrets never reach logs or error bodies: a whole stack runs jobs, faults and failures, then every line it logged
and every error it answered is searched for the API token, the webhook secret and the provider keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fastapi_app.tts.runpod_work import PURPOSE as TTS
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings
from strangler_bridge.signing import sign
from tests.support.stack import follow, tts_body

pytestmark = pytest.mark.e2e

API_TOKEN = "api-token-Zq8uW3kLpR7vNc2x"
WEBHOOK_SECRET = "webhook-secret-Hs5tY9mQa1bE6fJd"
RUNPOD_KEY = "runpod-key-Kx4nB8vC2zL0pQwe"
RUNWARE_KEY = "runware-key-Mv7cX1sD9gT3hJyu"
SECRETS = {
    "API token": API_TOKEN,
    "webhook secret": WEBHOOK_SECRET,
    "RunPod key": RUNPOD_KEY,
    "Runware key": RUNWARE_KEY,
}
#: A signed token in a URL that a log line did not mask.
UNMASKED_TOKEN = re.compile(r"token=(?!\*\*\*)[A-Za-z0-9_-]{16,}")


class KeyedStack(DevStack):
    """The dev stack with our own provider keys (the simulators check them) instead of the built-in one."""

    def _settings(self, redis_url: str) -> Settings:
        keys = {"runpod_api_key": SecretStr(RUNPOD_KEY), "runware_api_key": SecretStr(RUNWARE_KEY)}
        return super()._settings(redis_url).model_copy(update=keys)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[DevStack]:
    base = settings.model_copy(
        update={
            "api_tokens": [SecretStr(API_TOKEN)],
            "webhook_secret": SecretStr(WEBHOOK_SECRET),
            "reconcile_after_s": 1.0,
            "reconcile_interval_s": 0.2,
            "provider_attempts": 2,
        }
    )
    with KeyedStack(
        base,
        workers=1,
        runpod={"api_key": RUNPOD_KEY, "execution_time_s": 0.05, "webhook_faults": {"lost_rate": 0.5}, "seed": 3},
        runware={"api_key": RUNWARE_KEY, "image_max_side": 32, "rate_limit_burst": 2},
        video={"force_placeholder": True},
        log_dir=tmp_path / "logs",
    ) as started:
        yield started


def _job() -> dict[str, Any]:
    return {
        "chunks": [{"text": "A secret-free sentence."}, {"text": "Another one."}],
        "video": {"width": 64, "height": 48},
    }


def test_no_secret_reaches_a_log_line_or_an_error_body(stack: DevStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    with stack.client() as client:
        created = client.post("/jobs", json=_job()).raise_for_status().json()
        job = follow(client, f"/jobs/{created['id']}", timeout=90)
        assert job["status"] == "completed", job
        # Failures whose messages could carry a secret: bad credentials both ways, bad webhooks, provider auth errors.
        with httpx.Client(base_url=stack.api_url, timeout=10) as anonymous:
            answers.append(anonymous.get("/jobs", headers={"Authorization": f"Bearer {API_TOKEN}x"}).text)
            answers.append(anonymous.get("/jobs", headers={"Authorization": API_TOKEN}).text)
            answers.append(anonymous.post("/tts/callback", params={"token": WEBHOOK_SECRET}, json={}).text)
            other = sign("not-" + WEBHOOK_SECRET, TTS, ["tts_0123456789abcdef", "0", "1"], 60)
            answers.append(anonymous.post("/tts/callback", params={"token": other}, json={}).text)
        stack.set_knobs("runpod", api_key="rotated-runpod-key")
        stack.set_knobs("runware", api_key="rotated-runware-key")
        batch = client.post("/tts/batch", json=tts_body(2)).raise_for_status().json()
        failed_tts = follow(client, f"/tts/batch/{batch['id']}", timeout=60)
        failed_job = follow(client, f"/jobs/{client.post('/jobs', json=_job()).json()['id']}", timeout=60)
        answers += [repr(failed_tts), repr(failed_job), client.get("/jobs").text, client.get("/batches").text]
    assert failed_tts["status"] == "failed" and failed_job["status"] == "failed"
    assert "401" in (failed_tts["error"] or "") or "auth" in (failed_tts["error"] or "").lower(), failed_tts
    stack.stop()  # flush every child's log
    service_logs = {path.name: path.read_text(errors="replace") for path in sorted(stack.log_dir.glob("*.log"))}
    assert any("WARNING" in text for text in service_logs.values()), "the run logged nothing worth checking"
    # In this process: the simulators' own logs (HTTP client lines are this test's requests, or the simulators
    # acting as providers, and are left out).
    in_process = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith(("httpx", "httpcore"))
    )
    searched = {**service_logs, "in-process log": in_process, "error bodies": "\n".join(answers)}
    for where, text in searched.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"the {name} appears in {where}"
    for name, text in service_logs.items():
        assert not UNMASKED_TOKEN.search(text), f"{name} logs a signed token: {UNMASKED_TOKEN.search(text)}"
