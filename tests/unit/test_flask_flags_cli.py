"""``strangler-bridge flags show|set``: the operator's switch for the flags the Flask side follows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import respx
from click.testing import CliRunner, Result

from flask_plugin.testing import FakeService
from strangler_bridge.cli.main import cli
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag

pytestmark = pytest.mark.unit


@pytest.fixture
def fake() -> Iterator[FakeService]:
    fake = FakeService()
    with respx.mock(assert_all_called=False) as router:
        router.route(host="service.test").mock(side_effect=fake.handle)
        yield fake


def _run(*args: str, token: str = "test-token") -> Result:
    env = {"STRANGLER_SERVICE_URL": "http://service.test", "STRANGLER_SERVICE_TOKEN": token}
    return CliRunner().invoke(cli, ["flags", *args], env=env)


def test_show_prints_every_phase(fake: FakeService) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW, percent=25, allow=["a", "b"]))
    result = _run("show")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["phase", "mode", "percent", "fallback", "allow"]
    assert lines[1].split() == ["tts", "shadow", "25", "on", "a,b"]
    assert lines[2].split() == ["imagegen", "legacy", "100", "on", "-"]
    assert lines[-1] == f"version {fake.flags.version}"


def test_show_json(fake: FakeService) -> None:
    result = _run("show", "--json")
    assert json.loads(result.output)["flags"]["tts"]["mode"] == "legacy"


def test_set_changes_only_the_given_options(fake: FakeService) -> None:
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.SHADOW, percent=25, allow=["vip"], fallback=False))
    result = _run("set", "tts", "fastapi", "--percent", "10")
    assert result.exit_code == 0, result.output
    assert fake.flags.flags[Phase.TTS] == PhaseFlag(mode=FlagMode.FASTAPI, percent=10, allow=["vip"], fallback=False)
    assert "tts       fastapi" in result.output


def test_set_allow_list_and_fallback(fake: FakeService) -> None:
    _run("set", "imagegen", "shadow", "--allow", "v1, v2", "--no-fallback")
    assert fake.flags.flags[Phase.IMAGEGEN] == PhaseFlag(mode=FlagMode.SHADOW, allow=["v1", "v2"], fallback=False)
    _run("set", "imagegen", "shadow", "--allow", "")
    assert fake.flags.flags[Phase.IMAGEGEN].allow == []


def test_bad_mode_and_percent_are_refused_before_any_request(fake: FakeService) -> None:
    assert _run("set", "tts", "turbo").exit_code == 2
    assert _run("set", "tts", "fastapi", "--percent", "101").exit_code == 2
    assert fake.calls == []


def test_wrong_token_is_one_clear_line(fake: FakeService) -> None:
    result = _run("show", token="wrong")
    assert result.exit_code != 0
    assert "STRANGLER_SERVICE_TOKEN" in str(result.exception)


def test_missing_service_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRANGLER_SERVICE_URL", raising=False)
    result = CliRunner().invoke(cli, ["flags", "show"])
    assert "STRANGLER_SERVICE_URL" in str(result.exception)
