"""Per-task validation of ``imageInference`` tasks, as ``reference/runware-api.md`` sections 2 and 7 describe.

Each failure is one Runware error item scoped to its task. Runware does not publish the codes for every field,
so, as the reference suggests, a bad field ``x`` gives ``invalidX`` (``missingX`` when absent) with
``parameter`` set to the field's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from strangler_bridge.providers.runware.models import AIR_PATTERN, MAX_SEED, is_uuid4

DOCS = "https://runware.ai/docs/en/image-inference/api-reference"
AIR_RE = re.compile(AIR_PATTERN)
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
OUTPUT_FORMATS = ("JPG", "PNG", "WEBP")
DELIVERY_METHODS = ("sync", "async")


def error_item(
    code: str, message: str, *, parameter: str | None = None, task: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One item of Runware's ``errors`` array."""
    item: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        item["parameter"] = parameter
    if task is not None:
        item["taskType"] = task.get("taskType")
        if isinstance(task.get("taskUUID"), str):
            item["taskUUID"] = task["taskUUID"]
    item["documentation"] = DOCS
    item.update(extra)
    return item


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not low <= len(value) <= high:
            return f"must be a string of {low} to {high} characters"
        return None

    return check


def _int_range(low: int, high: int, step: int = 1) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_int(value) or not low <= value <= high or value % step:
            multiple = f", a multiple of {step}" if step > 1 else ""
            return f"must be an integer from {low} to {high}{multiple}"
        return None

    return check


def _number_range(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_number(value) or not low <= value <= high:
            return f"must be a number from {low} to {high}"
        return None

    return check


def _one_of(choices: tuple[str, ...], *, any_case: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and (value.upper() if any_case else value) in choices:
            return None
        return f"must be one of {', '.join(choices)}"

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _model(value: Any) -> str | None:
    return None if isinstance(value, str) and AIR_RE.match(value) else "must be an AIR id provider:model@version"


def _url(value: Any) -> str | None:
    parts = urlparse(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http(s) URL"
    return None


def _safety(value: Any) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("checkContent", False), bool):
        return "must be an object such as {checkContent: true, mode: none|fast|full}"
    if value.get("mode", "none") not in ("none", "fast", "full"):
        return "mode must be none, fast or full"
    return None


#: (field, required, check). Fields not listed (lora, controlNet, ...) are accepted and ignored.
FIELDS: list[tuple[str, bool, Callable[[Any], str | None]]] = [
    ("positivePrompt", True, _text(2, 3000)),
    ("negativePrompt", False, _text(2, 3000)),
    ("width", True, _int_range(128, 2048, 64)),
    ("height", True, _int_range(128, 2048, 64)),
    ("model", True, _model),
    ("numberResults", False, _int_range(1, 20)),
    ("outputType", False, _one_of(OUTPUT_TYPES)),
    ("outputFormat", False, _one_of(OUTPUT_FORMATS, any_case=True)),
    ("outputQuality", False, _int_range(20, 99)),
    ("steps", False, _int_range(1, 100)),
    ("CFGScale", False, _number_range(0, 50)),
    ("seed", False, _int_range(1, MAX_SEED)),
    ("includeCost", False, _boolean),
    ("checkNSFW", False, _boolean),
    ("safety", False, _safety),
    ("deliveryMethod", False, _one_of(DELIVERY_METHODS)),
    ("webhookURL", False, _url),
]


def validate_inference(task: dict[str, Any], known: Callable[[str], bool]) -> dict[str, Any] | None:
    """The first problem of an ``imageInference`` task as an error item, or ``None`` if it is valid.

    ``known(task_uuid)`` says whether the taskUUID was used before (then ``conflictTaskUUID``).
    """
    task_uuid = task.get("taskUUID")
    if task_uuid is None:
        return error_item("missingTaskUUID", "taskUUID is required.", parameter="taskUUID", task=task)
    if not is_uuid4(task_uuid):
        return error_item("invalidTaskUUID", "taskUUID must be a UUID v4.", parameter="taskUUID", task=task)
    if known(task_uuid):
        message = "The taskUUID has already been used; each task needs a unique taskUUID."
        return error_item("conflictTaskUUID", message, parameter="taskUUID", task=task)
    for name, required, check in FIELDS:
        if name not in task or task[name] is None:
            if required:
                code = "missing" + name[0].upper() + name[1:]
                return error_item(code, f"{name} is required.", parameter=name, task=task)
            continue
        problem = check(task[name])
        if problem is not None:
            code = "invalid" + name[0].upper() + name[1:]
            return error_item(code, f"Invalid value for {name}: {problem}.", parameter=name, task=task)
    return None
