"""Structured logs: one JSON object per line, the job, batch and video ids on each, and no secrets."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_app import logs
from strangler_bridge.settings import Settings

pytestmark = pytest.mark.unit

JOB = "job_" + "a" * 32
TTS = "tts_" + "b" * 32
SECRETS = {
    "api_tokens": ["api-token-one", "api-token-two"],
    "webhook_secret": "webhook-secret-value",
    "runpod_api_key": "rp-key-123456",
    "runware_api_key": "rw-key-654321",
    "service_token": "service-token-xyz",
}


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Logging configured into a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure_logging("DEBUG", Settings.load(**SECRETS), stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_json_with_the_three_ids(output: io.StringIO) -> None:
    log = logging.getLogger("strangler.test")
    log.info("outside")
    with logs.bind(job_id=JOB, video_id="vid-7"):
        log.info("inside %s", "the job")
        with logs.bind(batch_id=TTS):
            log.warning("inside the batch")
    first, second, third = lines(output)
    assert first["message"] == "outside"
    assert (first["job_id"], first["batch_id"], first["video_id"]) == (None, None, None)
    assert (second["message"], second["job_id"], second["video_id"], second["batch_id"]) == (
        "inside the job",
        JOB,
        "vid-7",
        None,
    )
    assert (third["level"], third["batch_id"], third["job_id"]) == ("WARNING", TTS, JOB)
    assert third["time"].endswith("+00:00") and "T" in third["time"]
    assert logs.current() == {}


def test_ids_follow_the_work_into_other_threads_only_when_the_context_is_copied(output: io.StringIO) -> None:
    import contextvars

    log = logging.getLogger("strangler.test")
    with logs.bind(video_id="vid-9"):
        context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(log.info, "copied"))
    worker.start()
    worker.join()
    assert lines(output)[0]["video_id"] == "vid-9"


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(output: io.StringIO) -> None:
    log = logging.getLogger("strangler.test")
    log.info("token %s and key %s", "api-token-two", "rp-key-123456")
    log.info("calling https://svc/tts/callback?token=abc.def&x=1 with Authorization: Bearer whatever-it-is")
    try:
        raise RuntimeError("webhook-secret-value leaked into an error with service-token-xyz")
    except RuntimeError:
        log.exception("failed")
    text = output.getvalue()
    for secret in ("api-token-two", "rp-key-123456", "webhook-secret-value", "service-token-xyz", "abc.def"):
        assert secret not in text
    assert "whatever-it-is" not in text
    assert "token=***&x=1" in text and "Bearer ***" in text
    assert "RuntimeError" in lines(output)[-1]["exc_info"]


def test_lines_carry_no_terminal_colour_codes(output: io.StringIO) -> None:
    coloured = "Uvicorn running on \x1b[1mhttp://127.0.0.1:8000\x1b[0m"
    logging.getLogger("strangler.test").info("%s", "Uvicorn running", extra={"color_message": coloured})
    logging.getLogger("strangler.test").warning("state \x1b[32mgreen\x1b[0m")
    first, second = lines(output)
    assert "color_message" not in first
    assert first["message"] == "Uvicorn running"
    assert second["message"] == "state green"
    assert "\\u001b" not in output.getvalue() and "\x1b" not in output.getvalue()


def test_short_secrets_are_not_masked_everywhere() -> None:
    formatter = logs.MaskingJsonFormatter(["abc", "long-secret"])
    assert formatter.mask("abc long-secret") == "abc ***"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["", "jobs", JOB, "retry"], {"job_id": JOB}),
        (["tts", "batch", TTS, "chunks", "0", "audio"], {"batch_id": TTS}),
        ([f"tts:{TTS}:3"], {"batch_id": TTS}),
        ([f"job:{JOB}:0", TTS, 7, None], {"job_id": JOB, "batch_id": TTS}),
        (["job_../../etc", "tts_short", "hello"], {}),
    ],
)
def test_ids_are_found_in_paths_task_arguments_and_due_members(values: list[Any], expected: dict[str, str]) -> None:
    assert logs.ids_in(values) == expected


def test_video_ids_from_outside_are_checked() -> None:
    assert logs.clean_video_id("vid-42") == "vid-42"
    assert logs.clean_video_id("") is None
    assert logs.clean_video_id("x" * 201) is None
    assert logs.clean_video_id('vid\n{"level": "forged"}') is None


def test_task_meta_carries_the_bound_ids() -> None:
    assert logs.task_meta() == {}
    with logs.bind(video_id="vid-1", job_id=JOB):
        assert logs.task_meta() == {"log": {"job_id": JOB, "video_id": "vid-1"}}
    with pytest.raises(TypeError), logs.bind(user="someone"):
        pass


def test_the_middleware_binds_the_path_ids_and_the_video_header_for_the_request() -> None:
    app = FastAPI()
    app.add_middleware(logs.LogContextMiddleware)

    @app.get("/jobs/{job_id}")
    def read(job_id: str) -> dict[str, str]:
        return logs.current()  # a sync route runs in the thread pool: the context goes with it

    with TestClient(app) as client:
        bound = client.get(f"/jobs/{JOB}", headers={"X-Video-Id": "vid-5"}).json()
        assert bound == {"job_id": JOB, "video_id": "vid-5"}
        assert client.get(f"/jobs/{JOB}", headers={"X-Video-Id": "bad\x01id"}).json() == {"job_id": JOB}
    assert logs.current() == {}
