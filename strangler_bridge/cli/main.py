"""The ``strangler-bridge`` console script."""

from __future__ import annotations

import sys

import click

from strangler_bridge import __version__
from strangler_bridge.cli.lazy import LazyGroup
from strangler_bridge.errors import BridgeError

COMMANDS = {
    "api": "strangler_bridge.cli.service:api",
    "worker": "strangler_bridge.cli.service:worker",
    "simulate": "strangler_bridge.cli.simulate:simulate",
    "demo": "strangler_bridge.cli.demo:demo",
    "flags": "strangler_bridge.cli.flags:flags",
    "jobs": "strangler_bridge.cli.jobs:jobs",
    "doctor": "strangler_bridge.cli.doctor:doctor",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strangler-bridge")
def cli() -> None:
    """Move a Flask video pipeline's GPU steps to a FastAPI + RQ service, one phase at a time.

    Configuration comes from STRANGLER_* environment variables (see the README).
    """


def main() -> None:
    """Entry point: run the CLI, printing a :class:`BridgeError` as a one-line error instead of a traceback."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BridgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
