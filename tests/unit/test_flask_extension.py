"""The Flask extension: config, per-app state, and errors that say how to fix them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_plugin import (
    EXTENSION_KEY,
    BridgeState,
    ImageAdapter,
    JobAdapter,
    StranglerBridge,
    TtsAdapter,
    VideoAdapter,
)
from flask_plugin.testing import FakeService
from strangler_bridge.contracts.flags import FlagMode, Phase, PhaseFlag
from strangler_bridge.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]


def _app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


CONFIGURED = {"STRANGLER_SERVICE_URL": "http://service.test", "STRANGLER_SERVICE_TOKEN": "tok"}


def test_app_factory_style_keeps_state_in_app_extensions_not_on_the_extension() -> None:
    bridge = StranglerBridge()
    app = _app(**CONFIGURED, STRANGLER_FLAGS_CACHE_S=2.5, STRANGLER_SERVICE_TIMEOUT_S=30)
    bridge.init_app(app)
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, BridgeState)
    assert state.client.base_url == "http://service.test"
    assert state.settings.flags_cache_s == 2.5
    assert state.settings.service_timeout_s == 30
    assert not any(isinstance(value, Flask) for value in vars(bridge).values())
    assert StranglerBridge.state(app) is state
    with app.app_context():
        assert bridge.state() is state
    state.close()


def test_constructor_form_initialises_at_once() -> None:
    app = _app(**CONFIGURED)
    StranglerBridge(app)
    assert EXTENSION_KEY in app.extensions


def test_config_falls_back_to_the_environment_and_app_config_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_SERVICE_URL", "http://from-env.test")
    monkeypatch.setenv("STRANGLER_SERVICE_TOKEN", "env-token")
    from_env = _app()
    StranglerBridge(from_env)
    assert StranglerBridge.state(from_env).client.base_url == "http://from-env.test"
    from_config = _app(STRANGLER_SERVICE_URL="http://from-config.test")
    StranglerBridge(from_config)
    assert StranglerBridge.state(from_config).client.base_url == "http://from-config.test"


def test_static_flags_come_from_config() -> None:
    app = _app(**CONFIGURED, STRANGLER_FLAGS={"tts": {"mode": "shadow", "percent": 5}})
    StranglerBridge(app)
    snapshot = StranglerBridge.state(app).flags.peek()
    assert snapshot.source == "static"
    assert snapshot.flags[Phase.TTS] == PhaseFlag(mode=FlagMode.SHADOW, percent=5)


def test_missing_service_url_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        StranglerBridge(_app(STRANGLER_SERVICE_TOKEN="tok"))
    message = str(caught.value)
    assert "STRANGLER_SERVICE_URL" in message
    assert "STRANGLER_SERVICE_TOKEN" not in message.split(":", maxsplit=1)[0]
    assert "app.config" in message and "http://" in message


def test_missing_token_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_SERVICE_TOKEN"):
        StranglerBridge(_app(STRANGLER_SERVICE_URL="http://service.test"))


def test_service_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match=r"STRANGLER_SERVICE_URL: 'service\.test:8000' is not a valid URL"):
        StranglerBridge(_app(STRANGLER_SERVICE_URL="service.test:8000", STRANGLER_SERVICE_TOKEN="tok"))


def test_production_env_does_not_demand_the_services_own_settings() -> None:
    app = _app(**CONFIGURED, STRANGLER_ENV="production")
    StranglerBridge(app)
    assert EXTENSION_KEY in app.extensions


def test_one_extension_serves_several_apps_independently() -> None:
    bridge = StranglerBridge()
    first, second = _app(**CONFIGURED), _app(**{**CONFIGURED, "STRANGLER_SERVICE_URL": "http://other.test"})
    bridge.init_app(first)
    bridge.init_app(second)
    assert StranglerBridge.state(first) is not StranglerBridge.state(second)
    assert StranglerBridge.state(second).client.base_url == "http://other.test"


def test_init_twice_is_an_error() -> None:
    bridge, app = StranglerBridge(), _app(**CONFIGURED)
    bridge.init_app(app)
    with pytest.raises(RuntimeError, match="already"):
        bridge.init_app(app)


def test_state_without_app_context_explains() -> None:
    with pytest.raises(RuntimeError, match="app context"):
        StranglerBridge.state()
    with pytest.raises(RuntimeError, match="init_app"):
        StranglerBridge.state(_app())


def test_blueprint_is_registered_under_strangler_unless_disabled() -> None:
    app = _app(**CONFIGURED)
    StranglerBridge(app)
    assert {"/strangler/health", "/strangler/events"} <= {rule.rule for rule in app.url_map.iter_rules()}
    bare = _app(**CONFIGURED)
    StranglerBridge(bare, url_prefix=None)
    assert not any(rule.rule.startswith("/strangler") for rule in bare.url_map.iter_rules())


def test_an_injected_client_is_used() -> None:
    fake = FakeService()
    app = _app(**CONFIGURED)
    StranglerBridge(app, client=fake.client())
    fake.set_flag("tts", PhaseFlag(mode=FlagMode.FASTAPI))
    with app.app_context():
        assert StranglerBridge().mode("tts", "any-video") is FlagMode.FASTAPI


# --- declaring steps ----------------------------------------------------------------------------------


def test_unknown_phase_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="tts, imagegen, video, jobs"):
        StranglerBridge().step("ttx")


@pytest.mark.parametrize(
    ("phase", "adapter"),
    [("tts", TtsAdapter), ("imagegen", ImageAdapter), ("video", VideoAdapter), ("jobs", JobAdapter)],
)
def test_every_phase_has_a_built_in_adapter_that_checks_the_signature(phase: str, adapter: type) -> None:
    with pytest.raises(ConfigError, match=rf"pass {adapter.__name__}\(\w+_arg='<its name>'\)"):

        @StranglerBridge().step(phase)
        def unrelated(x: int) -> None:
            return None


def test_adapter_for_another_phase_is_refused() -> None:
    class ImageAdapter(TtsAdapter):
        phase = Phase.IMAGEGEN

    with pytest.raises(ConfigError, match="imagegen"):
        StranglerBridge().step("tts", adapter=ImageAdapter())


def test_tts_adapter_checks_the_legacy_signature_when_declared() -> None:
    bridge = StranglerBridge()
    with pytest.raises(ConfigError) as caught:

        @bridge.step("tts")
        def synthesize(texts: list[str], folder: Path) -> list[dict[str, Any]]:
            return []

    assert "chunks_arg" in str(caught.value)

    @bridge.step("tts", adapter=TtsAdapter(chunks_arg="texts", out_dir_arg="folder", video_id_arg=None))
    def renamed(texts: list[str], folder: Path) -> list[dict[str, Any]]:
        return []

    assert renamed.__wrapped__.__name__ == "renamed"  # type: ignore[attr-defined]


def test_overridden_hooks_need_no_parameter() -> None:
    class FixedDir(TtsAdapter):
        def output_dir(self, call: Any) -> Path:
            return Path("/tmp/audio")

    @StranglerBridge().step("tts", adapter=FixedDir())
    def synthesize(chunks: list[str]) -> list[dict[str, Any]]:
        return []

    assert synthesize.__name__ == "synthesize"
