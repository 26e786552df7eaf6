"""How CLI commands reach the service: ``--url`` / ``--token``, defaulting to the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from strangler_bridge.client.service import ServiceClient
from strangler_bridge.settings import Settings, env_name


def with_connection(command: Any) -> Any:
    """Add ``--url`` and ``--token`` options, which default to STRANGLER_SERVICE_URL / _TOKEN."""
    command = click.option("--token", help=f"Bearer token (default: ${env_name('service_token')}).")(command)
    return click.option("--url", help=f"Service base URL (default: ${env_name('service_url')}).")(command)


def connection_settings(url: str | None, token: str | None) -> Settings:
    """Settings with the service URL and token from the options, else the environment."""
    overrides: dict[str, Any] = {}
    if url:
        overrides["service_url"] = url
    if token:
        overrides["service_token"] = token
    return Settings.load(**overrides)


@contextmanager
def service_client(url: str | None, token: str | None) -> Iterator[ServiceClient]:
    """A client of the service from the options, else the environment."""
    with ServiceClient.from_settings(connection_settings(url, token)) as client:
        yield client
