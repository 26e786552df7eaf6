"""``strangler-bridge simulate video``: serve the video service simulator with uvicorn."""

from __future__ import annotations

import click
from pydantic import ValidationError

from strangler_bridge.simulators.video.config import VideoSimConfig, parse_range


def _range(ctx: click.Context, param: click.Parameter, value: str | None) -> float | tuple[float, float] | None:
    if value is None:
        return None
    try:
        return parse_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _headers(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


@click.command(name="video")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8030, show_default=True, type=int, help="Port to listen on.")
@click.option("--latency", callback=_range, help="Extra render latency: S, or MIN,MAX seconds.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of renders that fail.")
@click.option("--fail-first", type=click.IntRange(0), default=0, help="The first N renders fail.")
@click.option("--placeholder", is_flag=True, help="Write labelled placeholders even if ffmpeg is available.")
@click.option("--down-window", callback=_range, help="A,B: answer 503 from A to B seconds after start.")
@click.option("--callback-lost-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of callbacks never sent.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True, help="Renders at once.")
@click.option("--token", help="Require this bearer token on /renders routes.")
@click.option("--public-url", help="Base of reported video URLs (default: the URL the client used).")
@click.option("--fetch-header", "fetch_headers", multiple=True, callback=_headers, help="'Name: value' for assets.")
@click.option("--seed", type=int, help="Seed of every random choice.")
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
def command(
    *,
    host: str,
    port: int,
    latency: float | tuple[float, float] | None,
    failure_rate: float,
    fail_first: int,
    placeholder: bool,
    down_window: float | tuple[float, float] | None,
    callback_lost_rate: float,
    concurrency: int,
    token: str | None,
    public_url: str | None,
    fetch_headers: dict[str, str],
    seed: int | None,
    log_level: str,
) -> None:
    """Run the video service simulator (renders real MP4s with ffmpeg when available).

    Knobs can be changed while it runs: PATCH /_sim/config with JSON; read GET /_sim/counters.
    """
    import uvicorn

    from strangler_bridge.simulators.video.app import create_app
    from strangler_bridge.simulators.video.render import find_ffmpeg

    if isinstance(down_window, float):
        raise click.BadParameter("expected A,B", param_hint="--down-window")
    try:
        config = VideoSimConfig(
            latency_s=latency or 0.0,
            failure_rate=failure_rate,
            fail_first_renders=fail_first,
            force_placeholder=placeholder,
            down_window_s=down_window,
            callback_lost_rate=callback_lost_rate,
            concurrency=concurrency,
            token=token,
            public_url=public_url,
            fetch_headers=fetch_headers,
            seed=seed,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc.errors()[0]["msg"])) from None
    url = f"http://{host}:{port}"
    ffmpeg = find_ffmpeg()
    encoder = f"ffmpeg ({ffmpeg})" if ffmpeg and not placeholder else "labelled placeholder files (no MP4)"
    click.echo(f"video service simulator on {url}  (renders with {encoder})")
    click.echo(f"use it with:  export STRANGLER_VIDEO_URL={url}")
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
