"""``strangler-bridge demo``: the main job end to end (filled in by issue 10)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run the whole pipeline locally: embedded Redis, simulators, API, worker, example Flask app."""
    raise click.ClickException("the demo is not built yet; see the README for what runs today")
