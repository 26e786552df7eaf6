"""The ``strangler-bridge`` console script."""

from __future__ import annotations

import sys

import click

from strangler_bridge import __version__
from strangler_bridge.cli import exit_codes
from strangler_bridge.cli.lazy import LazyGroup
from strangler_bridge.errors import BridgeError, ConfigError, InvalidInput

#: The core's own commands; ``api`` and ``worker`` come from the service's entry points (see ``lazy``).
COMMANDS = {
    "simulate": "strangler_bridge.cli.simulate:simulate",
    "demo": "strangler_bridge.cli.demo:demo",
    "dev": "strangler_bridge.cli.dev:dev",
    "flags": "strangler_bridge.cli.flags:flags",
    "jobs": "strangler_bridge.cli.jobs:jobs",
    "doctor": "strangler_bridge.cli.doctor:doctor",
}


@click.group(
    cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}, epilog=exit_codes.HELP
)
@click.version_option(__version__, prog_name="strangler-bridge")
def cli() -> None:
    """Move a Flask video pipeline's GPU steps to a FastAPI + RQ service, one phase at a time.

    Configuration comes from STRANGLER_* environment variables (see the README).
    """


def main() -> None:
    """Entry point: run the CLI, printing a :class:`BridgeError` as a one-line error instead of a traceback.

    Configuration and input errors exit with 2, everything else the package reports (an unreachable or failing
    service or Redis) with 3; see :mod:`strangler_bridge.cli.exit_codes`.
    """
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(exit_codes.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BridgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.USAGE if isinstance(exc, (ConfigError, InvalidInput)) else exit_codes.SERVICE)


if __name__ == "__main__":
    main()
