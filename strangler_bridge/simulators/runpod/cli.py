"""``strangler-bridge simulate runpod``: serve the RunPod simulator with uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from strangler_bridge.simulators.runpod.config import Duration, RunPodSimConfig, parse_duration


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> Duration | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected seconds or MIN,MAX: {exc}") from None


def _knobs(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        knobs = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(knobs, dict):
        raise click.BadParameter("expected a JSON object of knobs")
    return knobs


@click.command(name="runpod")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8010, show_default=True, type=int, help="Port to listen on.")
@click.option("--endpoint-id", help="Serve only this endpoint id (default: any id, e.g. 'sim').")
@click.option("--api-key", help="Require this API key (default: any non-empty key).")
@click.option(
    "--output", "output_mode", type=click.Choice(["base64", "url", "s3"]), help="How the built-in TTS returns audio."
)
@click.option("--workers", type=click.IntRange(0), help="Jobs run at once (default 4).")
@click.option("--queue-delay", callback=_duration, help="Least time a job is IN_QUEUE: S or MIN,MAX seconds.")
@click.option("--execution-time", callback=_duration, help="Simulated GPU time per job: S or MIN,MAX seconds.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), help="Probability that an execution fails.")
@click.option("--fail-first", type=click.IntRange(0), help="Each distinct input fails its first N executions.")
@click.option("--handler", help="Your runpod.serverless handler: module:function or path/handler.py[:function].")
@click.option("--rate-limit-run", type=click.IntRange(1), help="Most /run requests per 10 s before 429.")
@click.option("--webhook-retry-delay", type=click.FloatRange(0), help="Seconds between webhook attempts (10).")
@click.option("--public-url", help="Base of audio URLs (default: the URL the job was sent to).")
@click.option("--seed", type=int, help="Seed of every random choice.")
@click.option("--config", "knobs", callback=_knobs, help="Any other knobs as JSON, or @file.json.")
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
def command(*, host: str, port: int, knobs: dict[str, Any], log_level: str, **options: Any) -> None:
    """Run a local RunPod serverless endpoint (real routes, states, webhooks; built-in TTS or your handler).

    Knobs can be changed while it runs: PATCH /_sim/config with JSON; read GET /_sim/counters.
    """
    import uvicorn

    from strangler_bridge.simulators.runpod.app import create_app

    names = {
        "queue_delay": "queue_delay_s",
        "execution_time": "execution_time_s",
        "fail_first": "fail_first_executions",
        "webhook_retry_delay": "webhook_retry_delay_s",
    }
    given = {names.get(name, name): value for name, value in options.items() if value is not None}
    if "rate_limit_run" in given:
        given["rate_limits"] = {**knobs.get("rate_limits", {}), "run": given.pop("rate_limit_run")}
    try:
        config = RunPodSimConfig.model_validate({**knobs, **given})
        app = create_app(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    base = f"http://{host}:{port}/v2"
    handler = config.model_dump(mode="json")["handler"] or "built-in TTS"
    key = "<the --api-key value>" if config.api_key else "any-non-empty-key"
    click.echo(f"RunPod simulator on http://{host}:{port}  (handler: {handler})")
    click.echo(f"  export STRANGLER_RUNPOD_ENDPOINT_URL={base}/{config.endpoint_id or 'sim'}")
    click.echo(f"  export STRANGLER_RUNPOD_API_KEY={key}")
    click.echo(f"  official SDK: RUNPOD_ENDPOINT_BASE_URL={base}")
    # A /runsync held open must not keep Ctrl-C waiting for its full wait.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=3)
