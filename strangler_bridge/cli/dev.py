"""``strangler-bridge dev``: the demo's stack, kept up until Ctrl-C, for a Flask app and the CLI to use.

Starts Redis (embedded when ``STRANGLER_REDIS_URL`` is unset; otherwise its keys go under a prefix of their
own, removed at the end), the RunPod, Runware and video simulators, the API and workers; prints the exact
environment lines a Flask app and the ``jobs``/``flags`` commands need; and on Ctrl-C (or SIGTERM) stops
everything it started.
"""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path

import click

from strangler_bridge.cli.demo import DEMO_KNOBS
from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.cli.own_keys import own_prefix
from strangler_bridge.errors import BridgeError
from strangler_bridge.settings import Settings, env_name

#: How often the stack's processes are checked while it runs.
CHECK_INTERVAL_S = 1.0


@click.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="API port (0: any).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dev-stack"),
    show_default=True,
    help="Where the service's files and the logs go.",
)
def dev(port: int, workers: int, work_dir: Path) -> None:
    """Run the service locally (Redis, simulators, API, workers) until Ctrl-C, for a Flask app and the CLI."""
    work_dir = work_dir.resolve()
    base = Settings.load(artifacts_dir=work_dir / "artifacts")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signo, _frame: stop.set())
    click.echo(f"{click.style('strangler-bridge dev', bold=True)}: starting Redis, simulators, API and workers ...")
    try:
        with (
            own_prefix(base) as settings,
            DevStack(
                settings, workers=workers, log_dir=work_dir / "logs", api_port=port or None, **DEMO_KNOBS
            ) as stack,
        ):
            _describe(stack, embedded=base.redis_url is None)
            _run_until_stopped(stack, stop)
            click.echo("stopping ...")
    except KeyboardInterrupt:
        click.echo("stopped")  # leaving the with-blocks above stopped every process and removed the keys
    finally:
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    click.echo("Everything `dev` started has been stopped.")


def _describe(stack: DevStack, *, embedded: bool) -> None:
    settings = stack.settings
    redis_note = (
        "embedded, deleted at the end" if embedded else f"keys under {settings.redis_prefix}, removed at the end"
    )
    rows = [
        ("redis", f"{settings.redis_url}  ({redis_note})"),
        ("api", f"{stack.api_url}  (operator page {stack.api_url}/ops)"),
        ("runpod", str(settings.runpod_endpoint_url)),
        ("runware", settings.runware_url),
        ("video", str(settings.video_url)),
        ("workers", str(len(stack.workers))),
        ("files", str(settings.artifacts_dir)),
        ("logs", str(stack.log_dir)),
    ]
    for name, value in rows:
        click.echo(f"  {name:<8} {value}")
    click.echo("\n# For the CLI and a Flask app (the same names work as Flask config keys):")
    click.echo(f"export {env_name('service_url')}={shlex.quote(stack.api_url)}")
    click.echo(f"export {env_name('service_token')}={shlex.quote(stack.token)}")
    click.echo("\nReady. Ctrl-C stops everything.")


def _run_until_stopped(stack: DevStack, stop: threading.Event) -> None:
    """Wait for Ctrl-C or SIGTERM; a worker that dies is started again, an API that dies ends the run."""
    while not stop.wait(CHECK_INTERVAL_S):
        if stack.api is not None and not stack.api.alive():
            raise BridgeError(f"the API exited (code {stack.api.proc.returncode}); its log: {stack.api.log_path}")
        for worker in [w for w in stack.workers if not w.alive()]:
            click.echo(f"a worker exited (code {worker.proc.returncode}, log {worker.log_path}): starting another")
            stack.workers.remove(worker)
            worker.stop()
            stack.add_worker()
