"""``strangler-bridge flags show|set``: read and change the service's per-phase flags over HTTP.

Talks to ``STRANGLER_SERVICE_URL`` with ``STRANGLER_SERVICE_TOKEN`` (or ``--url`` / ``--token``). Flask apps
pick a change up within ``STRANGLER_FLAGS_CACHE_S`` seconds; nothing restarts.
"""

from __future__ import annotations

from typing import Any

import click

from strangler_bridge.cli.connection import service_client, with_connection
from strangler_bridge.contracts.flags import FlagMode, FlagSet, Phase, PhaseFlag


def _table(flag_set: FlagSet) -> str:
    lines = [f"{'phase':<10}{'mode':<9}{'percent':>7}  {'fallback':<9}allow"]
    for phase in Phase:
        flag = flag_set.flags.get(phase, PhaseFlag())
        fallback = "on" if flag.fallback else "off"
        allow = ",".join(flag.allow) or "-"
        lines.append(f"{phase.value:<10}{flag.mode.value:<9}{flag.percent:>7}  {fallback:<9}{allow}")
    return "\n".join([*lines, f"version {flag_set.version}"])


def _echo(flag_set: FlagSet, as_json: bool) -> None:
    click.echo(flag_set.model_dump_json(indent=2) if as_json else _table(flag_set))


@click.group()
def flags() -> None:
    """Show or change the per-phase feature flags held by the service."""


@flags.command()
@click.option("--json", "as_json", is_flag=True, help="Print the flag set as JSON.")
@with_connection
def show(as_json: bool, url: str | None, token: str | None) -> None:
    """Print every phase's flag."""
    with service_client(url, token) as client:
        _echo(client.get_flags(), as_json)


@flags.command("set")
@click.argument("phase", type=click.Choice([p.value for p in Phase]))
@click.argument("mode", type=click.Choice([m.value for m in FlagMode]))
@click.option("--percent", type=click.IntRange(0, 100), help="Share of videos (sticky by video id) that get MODE.")
@click.option("--allow", help='Comma-separated video ids that always get MODE ("" clears the list).')
@click.option("--fallback/--no-fallback", default=None, help="Run the legacy code when the service fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the new flag set as JSON.")
@with_connection
def set_flag(
    *,
    phase: str,
    mode: str,
    percent: int | None,
    allow: str | None,
    fallback: bool | None,
    as_json: bool,
    url: str | None,
    token: str | None,
) -> None:
    """Set PHASE to MODE (legacy, shadow or fastapi).

    Options not given keep their current values, e.g. `flags set tts fastapi --percent 10` keeps the allow list.
    """
    with service_client(url, token) as client:
        current = client.get_flags().flags.get(Phase(phase), PhaseFlag())
        changes: dict[str, Any] = {"mode": mode}
        if percent is not None:
            changes["percent"] = percent
        if allow is not None:
            changes["allow"] = [video for video in (part.strip() for part in allow.split(",")) if video]
        if fallback is not None:
            changes["fallback"] = fallback
        flag = PhaseFlag.model_validate({**current.model_dump(), **changes})
        _echo(client.set_flag(phase, flag), as_json)
