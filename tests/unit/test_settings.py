"""Settings: environment, Flask config keys, secrets and clear errors."""

from __future__ import annotations

import pytest

from strangler_bridge.contracts.flags import FlagMode, Phase
from strangler_bridge.errors import ConfigError
from strangler_bridge.settings import Settings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_REDIS_URL", "redis://127.0.0.1:6399/1")
    monkeypatch.setenv("STRANGLER_API_TOKENS", "old-token, new-token")
    monkeypatch.setenv("STRANGLER_FLAGS", '{"tts": {"mode": "fastapi", "percent": 10}}')
    settings = Settings.load()
    assert settings.redis_url == "redis://127.0.0.1:6399/1"
    assert settings.token_values() == ["old-token", "new-token"]
    assert settings.flags[Phase.TTS].mode is FlagMode.FASTAPI
    assert settings.flags[Phase.TTS].percent == 10


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_RUNPOD_API_KEY", "rp-very-secret")
    settings = Settings.load()
    assert "rp-very-secret" not in repr(settings)
    assert settings.secret("runpod_api_key") == "rp-very-secret"


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_TTS_GROUP_SIZE", "lots")
    with pytest.raises(ConfigError, match="STRANGLER_TTS_GROUP_SIZE"):
        Settings.load()


def test_production_names_every_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_ENV", "production")
    settings = Settings.load()  # the CLI and the Flask side read settings without the service's own
    with pytest.raises(ConfigError) as raised:
        settings.require_for("api")
    message = str(raised.value)
    for name in ("REDIS_URL", "API_TOKENS", "WEBHOOK_SECRET", "RUNPOD_ENDPOINT_URL", "RUNPOD_API_KEY", "VIDEO_URL"):
        assert f"STRANGLER_{name}" in message


def test_each_process_demands_only_what_it_uses() -> None:
    settings = Settings.load(redis_url="redis://127.0.0.1:6379/0", webhook_secret="s" * 32)
    settings.require_for("worker")
    with pytest.raises(ConfigError, match="STRANGLER_API_TOKENS") as raised:
        settings.require_for("api")
    assert "STRANGLER_RUNPOD" not in str(raised.value)  # dev: providers fail at first use, naming the variable


def test_flask_config_keys_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_SERVICE_URL", "http://from-env")
    config = {"STRANGLER_SERVICE_URL": "http://from-config", "SECRET_KEY": "x", "STRANGLER_NOT_A_SETTING": 1}
    settings = Settings.from_mapping(config)
    assert settings.service_url == "http://from-config"


def test_missing_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="STRANGLER_RUNWARE_API_KEY"):
        Settings.load().secret("runware_api_key")


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings.load(
        redis_url="redis://x:1/0",
        api_tokens=["a", "b"],
        webhook_secret="s",
        flags={"jobs": {"mode": "shadow"}},
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings.load() == original
