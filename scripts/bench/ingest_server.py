"""The service's app with one extra no-op route, served exactly as ``strangler-bridge api`` serves it.

Benchmark 2 compares ``POST /tts/callback`` with ``POST /bench/noop`` of the same app in the same process: the
no-op reads the body and answers, which is the ceiling of this server setup (uvicorn, one process, the same
middleware). Settings come from ``STRANGLER_*`` in the environment.

    python scripts/bench/ingest_server.py --port 8123
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse

from fastapi import FastAPI, Request

from fastapi_app import create_app
from strangler_bridge.settings import Settings


def build() -> FastAPI:
    """The service's app plus ``POST /bench/noop``."""
    app = create_app(Settings.load())

    @app.post("/bench/noop", include_in_schema=False)
    async def noop(request: Request) -> dict[str, str]:
        await request.body()
        return {"status": "accepted"}

    return app


def main() -> None:
    """Serve on loopback with the options of ``strangler-bridge api``."""
    import uvicorn

    from strangler_bridge.cli.servers import KEEP_ALIVE_S

    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--port", type=int, required=True)
    options = args.parse_args()
    uvicorn.run(
        build(),
        host="127.0.0.1",
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


if __name__ == "__main__":
    main()
