"""``strangler-bridge jobs submit|watch|retry|cancel`` (filled in with the pipeline)."""

from __future__ import annotations

import click


@click.group()
def jobs() -> None:
    """Submit and follow whole pipeline jobs on the service."""
