"""``strangler-bridge flags show|set`` (filled in with the flag API)."""

from __future__ import annotations

import click


@click.group()
def flags() -> None:
    """Show or change the per-phase feature flags held by the service."""
