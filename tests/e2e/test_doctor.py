"""``strangler-bridge doctor`` (and ``/readyz?deep=1``) against the simulators over real HTTP on loopback: each
misconfiguration a new user makes gives one line naming the setting to change, and a non-zero exit code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr

from fastapi_app import create_app
from strangler_bridge.cli.main import cli
from strangler_bridge.cli.processes import wait_http_ok
from strangler_bridge.cli.redis_server import free_port
from strangler_bridge.cli.servers import ThreadedServer
from strangler_bridge.doctor import Verdict, check_public_url, run_checks
from strangler_bridge.settings import Settings
from strangler_bridge.simulators.runpod import RunPodSimConfig
from strangler_bridge.simulators.runpod import create_app as runpod_app
from strangler_bridge.simulators.runware.app import create_app as runware_app
from strangler_bridge.simulators.runware.config import RunwareSimConfig
from strangler_bridge.simulators.video.app import create_app as video_app
from strangler_bridge.simulators.video.config import VideoSimConfig
from tests.conftest import TEST_TOKEN
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

KEY = "doctor-key"


@dataclass(frozen=True)
class Sims:
    runpod: str
    runware: str
    video: str
    service: str  # something answering /healthz, standing in for the service at STRANGLER_PUBLIC_URL


@pytest.fixture(scope="module")
def sims() -> Iterator[Sims]:
    servers = [
        ThreadedServer(runpod_app(RunPodSimConfig(api_key=KEY))).start(),
        ThreadedServer(runware_app(RunwareSimConfig(api_key=KEY))).start(),
        ThreadedServer(video_app(VideoSimConfig())).start(),
    ]
    try:
        # The video simulator answers GET /healthz with 200, as the service does.
        yield Sims(*(server.url for server in servers), service=servers[2].url)
    finally:
        for server in servers:
            server.stop()


def good(sims: Sims, **changes: object) -> Settings:
    """Settings every check passes with; ``changes`` make one thing wrong."""
    values: dict[str, object] = {
        "runpod_endpoint_url": f"{sims.runpod}/v2/ep1",
        "runpod_api_key": SecretStr(KEY),
        "runware_url": f"{sims.runware}/v1",
        "runware_api_key": SecretStr(KEY),
        "video_url": sims.video,
        "public_url": sims.service,
        "fetch_allow_hosts": ["127.0.0.1"],
    }
    values.update(changes)
    return Settings.load().model_copy(update=values)


def problems(settings: Settings) -> list[str]:
    return [finding.line() for finding in run_checks(settings, timeout_s=5) if finding.problem]


def test_a_good_configuration_has_no_problem(sims: Sims) -> None:
    before = httpx.get(f"{sims.runware}/_sim/counters").json()
    findings = run_checks(good(sims), timeout_s=5)
    after = httpx.get(f"{sims.runware}/_sim/counters").json()
    assert after["authentications"] == before["authentications"] + 1
    assert after["tasks_received"] == 0 and after["cost_total"] == 0  # checking the key paid for nothing
    assert [f.verdict for f in findings] == [Verdict.OK] * 5, [f.line() for f in findings]
    assert findings[0].line() == f"ok: RunPod endpoint {sims.runpod}/v2/ep1 answers (workers: 4 idle, 0 running)"
    assert findings[1].line() == f"ok: Runware at {sims.runware}/v1 accepted the key"


def test_wrong_runpod_endpoint_path(sims: Sims) -> None:
    url = f"{sims.runpod}/v1/ep1"
    assert problems(good(sims, runpod_endpoint_url=url)) == [
        f"STRANGLER_RUNPOD_ENDPOINT_URL: {url}/health answered 404: no RunPod endpoint there"
        " (expected https://api.runpod.ai/v2/<endpoint-id>)"
    ]


def test_wrong_runpod_key(sims: Sims) -> None:
    assert problems(good(sims, runpod_api_key=SecretStr("not-the-key"))) == [
        f"STRANGLER_RUNPOD_API_KEY: RunPod refused the key at {sims.runpod}/v2/ep1/health (HTTP 401)"
    ]


def test_wrong_runware_key_and_url(sims: Sims) -> None:
    assert problems(good(sims, runware_api_key=SecretStr("not-the-key"))) == [
        f"STRANGLER_RUNWARE_API_KEY: Runware refused the key at {sims.runware}/v1 (HTTP 401)"
    ]
    assert problems(good(sims, runware_url=f"{sims.runware}/v2")) == [
        f"STRANGLER_RUNWARE_URL: {sims.runware}/v2 answered HTTP 404 to an authentication task"
        " (expected https://api.runware.ai/v1)"
    ]


def test_unreachable_video_service(sims: Sims) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert problems(good(sims, video_url=url)) == [
        f"STRANGLER_VIDEO_URL: the video service at {url} is unreachable (ConnectError)"
    ]


def test_unreachable_public_url(sims: Sims) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert problems(good(sims, public_url=url)) == [
        f"STRANGLER_PUBLIC_URL: {url}/healthz does not answer from here (ConnectError):"
        " providers send their webhooks there"
    ]


def test_loopback_outputs_while_loopback_is_not_allowed(sims: Sims) -> None:
    assert problems(good(sims, fetch_allow_hosts=[])) == [
        "STRANGLER_FETCH_ALLOW_HOSTS: Runware's images on 127.0.0.1 would be refused (not a public address):"
        " add 127.0.0.1 to STRANGLER_FETCH_ALLOW_HOSTS",
        "STRANGLER_FETCH_ALLOW_HOSTS: RunPod's audio_url outputs (if the handler returns URLs, not base64) on"
        " 127.0.0.1 would be refused (not a public address): add 127.0.0.1 to STRANGLER_FETCH_ALLOW_HOSTS",
    ]


def test_a_loopback_public_url_cannot_get_webhooks_from_a_hosted_runpod(sims: Sims) -> None:
    # Only resolved, never called: a public address literal stands in for api.runpod.ai.
    settings = good(sims, runpod_endpoint_url="https://1.1.1.1/v2/ep1")
    assert [finding.line() for finding in check_public_url(settings) if finding.problem] == [
        f"STRANGLER_PUBLIC_URL: {sims.service} is not a public address, so RunPod at 1.1.1.1 cannot send webhooks"
        " to it (jobs are then only polled after STRANGLER_RECONCILE_AFTER_S)"
    ]


def test_unconfigured_providers_are_skipped_not_problems(sims: Sims) -> None:
    settings = good(sims, runpod_endpoint_url=None, runware_api_key=None, video_url=None)
    lines = [finding.line() for finding in run_checks(settings, timeout_s=5)]
    assert lines[:3] == [
        "skipped: RunPod is not configured (STRANGLER_RUNPOD_ENDPOINT_URL)",
        "skipped: Runware is not configured (STRANGLER_RUNWARE_API_KEY)",
        "skipped: the video service is not configured (STRANGLER_VIDEO_URL)",
    ]


def test_the_cli_prints_one_line_per_finding_and_exits_1_on_a_problem(sims: Sims) -> None:
    env = {
        "STRANGLER_RUNPOD_ENDPOINT_URL": f"{sims.runpod}/v2/ep1",
        "STRANGLER_RUNPOD_API_KEY": "wrong",
        "STRANGLER_RUNWARE_URL": f"{sims.runware}/v1",
        "STRANGLER_RUNWARE_API_KEY": KEY,
        "STRANGLER_VIDEO_URL": sims.video,
        "STRANGLER_PUBLIC_URL": sims.service,
        "STRANGLER_FETCH_ALLOW_HOSTS": "127.0.0.1",
    }
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"STRANGLER_RUNPOD_API_KEY: RunPod refused the key at {sims.runpod}/v2/ep1/health (HTTP 401)"
    assert [line.split(":")[0] for line in lines[1:]] == ["ok"] * 4
    assert result.stderr.strip() == "1 problem(s) found"
    env["STRANGLER_RUNPOD_API_KEY"] = KEY
    assert CliRunner().invoke(cli, ["doctor"], env=env).exit_code == 0


def test_readyz_deep_runs_the_same_checks_and_needs_the_token(sims: Sims, settings: Settings) -> None:
    bad = good(sims, runpod_api_key=SecretStr("wrong")).model_copy(
        update={key: getattr(settings, key) for key in ("redis_url", "redis_prefix", "api_tokens", "webhook_secret")}
    )
    with TestClient(create_app(bad)) as client:
        assert client.get("/readyz?deep=1").status_code == 401
        assert client.get("/readyz").status_code == 200  # the shallow probe stays cheap and open
        deep = client.get("/readyz?deep=1", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert deep.status_code == 503
    body = deep.json()
    assert body["status"] == "misconfigured" and body["problems"] == 1
    assert [check["line"] for check in body["checks"] if check["verdict"] == "problem"] == [
        f"STRANGLER_RUNPOD_API_KEY: RunPod refused the key at {sims.runpod}/v2/ep1/health (HTTP 401)"
    ]


@pytest.mark.parametrize("process", ["api", "worker"])
def test_api_and_worker_start_anyway_and_log_the_problems_as_warnings(
    settings: Settings,
    children,  # type: ignore[no-untyped-def]
    process: str,
) -> None:
    port, dead = free_port(), f"http://127.0.0.1:{free_port()}/v2/ep1"
    broken = settings.model_copy(
        update={"runpod_endpoint_url": dead, "runpod_api_key": SecretStr(KEY), "public_url": f"http://127.0.0.1:{port}"}
    )
    args = ["api", "--port", str(port)] if process == "api" else ["worker"]
    child = children(args, broken)
    if process == "api":
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", child=child)  # it serves while RunPod is down
    line = f"{process} start-up check: STRANGLER_RUNPOD_ENDPOINT_URL: RunPod at {dead} is unreachable (ConnectError)"
    wait_for(lambda: line in child.output(), timeout=60, what=f"the warning in {child.log_path}")
    assert child.alive()
    if process == "api":
        assert "STRANGLER_PUBLIC_URL" not in child.output()  # its own /healthz answered once it listened
