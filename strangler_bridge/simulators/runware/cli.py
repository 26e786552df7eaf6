"""``strangler-bridge simulate runware``: serve the Runware simulator with uvicorn."""

from __future__ import annotations

import json
from typing import Any

import click

from strangler_bridge.simulators.runware.config import RunwareSimConfig, parse_duration


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_knob(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep:
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="--knob")
    try:
        return name.strip(), json.loads(raw)
    except ValueError:
        return name.strip(), raw


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8020, show_default=True, type=int, help="Port to listen on.")
@click.option("--api-key", default=None, help="The only API key accepted (default: any non-empty key).")
@click.option("--latency", default=None, callback=_duration, help="Seconds per task: 1.5, or a range 0.5,2.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--failure-code", default="timeoutProvider", show_default=True, help="Code of a failed task.")
@click.option("--rate-limit-burst", type=click.IntRange(0), default=0, help="The first N requests get 429.")
@click.option("--rate-limit-rate", type=click.FloatRange(0, 1), default=0.0, help="Probability of a 429.")
@click.option("--server-error-rate", type=click.FloatRange(0, 1), default=0.0, help="Probability of a 503.")
@click.option("--concurrency-cap", type=click.IntRange(1), default=None, help="In-flight requests before 429.")
@click.option("--cost-per-image", type=click.FloatRange(0), default=0.0013, show_default=True)
@click.option("--image-max-side", type=click.IntRange(16, 2048), default=512, show_default=True)
@click.option("--public-url", default=None, help="Base of imageURL (default: the URL requests arrive at).")
@click.option("--webhook-wrap-data", is_flag=True, help='POST webhooks as {"data": [item]} instead of flat.')
@click.option("--seed", type=int, default=None, help="Seed of the random choices.")
@click.option(
    "--knob",
    "extra_knobs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any other knob (JSON value), e.g. --knob inject_statuses=[503,504]; repeatable.",
)
@click.option("--log-level", default="warning", show_default=True)
def command(host: str, port: int, latency: Any, log_level: str, extra_knobs: tuple[str, ...], **knobs: Any) -> None:
    """Serve a local Runware API (POST /v1) with fault knobs at /_sim/config and counters at /_sim/counters."""
    import uvicorn
    from pydantic import ValidationError

    from strangler_bridge.simulators.runware.app import create_app

    if latency is not None:
        knobs["latency_s"] = latency
    knobs.update(_parse_knob(text) for text in extra_knobs)
    try:
        config = RunwareSimConfig(**knobs)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    url = f"http://{host}:{port}"
    click.echo(f"Runware simulator on {url}")
    click.echo(f"  STRANGLER_RUNWARE_URL={url}/v1")
    click.echo(f"  STRANGLER_RUNWARE_API_KEY={config.api_key or '<any non-empty key>'}")
    click.echo(f"  knobs: {url}/_sim/config (GET, PATCH)  counters: {url}/_sim/counters  reset: POST {url}/_sim/reset")
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, access_log=False)
