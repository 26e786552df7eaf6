"""Runware's ``imageInference`` wire models: the task we send, the results and errors we get back, and the
reading of answers (HTTP status and body) into an :class:`InferenceOutcome` or an error of our tree.

Field rules follow ``reference/runware-api.md`` section 2 (the generic limits; some models accept other sizes).
Every :class:`ImageTask` is validated when it is built, so a bad field raises
:class:`~strangler_bridge.errors.InvalidInput` naming it before any request is sent.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlparse

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from strangler_bridge.errors import (
    InvalidInput,
    ProviderAuthError,
    ProviderError,
    ProviderJobFailed,
    ProviderNotFound,
    ProviderPaymentRequired,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.providers.base import error_for_status

PROVIDER = "runware"
#: An AIR model id, ``provider:model@version`` (e.g. ``runware:100@1``, ``civitai:139562@297320``).
AIR_PATTERN = r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+$"
MAX_SEED = 9_223_372_036_854_775_807

OutputType = Literal["URL", "base64Data", "dataURI"]
OutputFormat = Literal["PNG", "JPG", "WEBP"]
DeliveryMethod = Literal["sync", "async"]

#: Python field -> Runware parameter, for the wire form and for error messages.
WIRE_NAMES = {
    "task_uuid": "taskUUID",
    "positive_prompt": "positivePrompt",
    "negative_prompt": "negativePrompt",
    "width": "width",
    "height": "height",
    "model": "model",
    "number_results": "numberResults",
    "output_type": "outputType",
    "output_format": "outputFormat",
    "output_quality": "outputQuality",
    "include_cost": "includeCost",
    "seed": "seed",
    "steps": "steps",
    "cfg_scale": "CFGScale",
    "delivery_method": "deliveryMethod",
    "webhook_url": "webhookURL",
}

# Error-code families, as Runware's own SDKs classify them (reference section 3.4).
AUTH_CODES = frozenset(
    {"invalidApiKey", "missingApiKey", "authenticationFailed", "unauthorized", "forbidden", "permissionDenied"}
)
QUOTA_CODES = frozenset({"insufficientCredits", "quotaExceeded", "paymentRequired"})
RATE_LIMIT_CODES = frozenset({"rateLimitExceeded", "inferenceRateLimitExceeded", "providerRateLimitExceeded"})
#: Codes meaning Runware has no record of a task (getResponse on an unknown or expired taskUUID).
NOT_FOUND_CODES = frozenset({"taskFailedOrNotFound", "taskNotFound", "taskExpired"})
SERVER_CODES = frozenset({"internalServerError", "serviceUnavailable", "serverUnavailable", "unknownError"})
VALIDATION_PREFIXES = ("invalid", "missing", "unsupported", "unknown", "value", "array", "max", "incompatible")
CONFLICT_CODE = "conflictTaskUUID"


def is_uuid4(value: object) -> bool:
    """Whether ``value`` is a string holding a UUID version 4 (the only kind Runware accepts as a taskUUID)."""
    if not isinstance(value, str):
        return False
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


class ImageTask(BaseModel):
    """One ``imageInference`` task; :meth:`to_wire` gives the camelCase dict Runware expects.

    Building one with a bad field raises :class:`InvalidInput` whose ``field`` is the Python field name.
    ``task_uuid`` defaults to a new UUID v4: keep it, because it is how an unknown outcome is recovered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    positive_prompt: str = Field(min_length=2, max_length=3000)
    negative_prompt: str | None = Field(None, min_length=2, max_length=3000)
    width: int = Field(ge=128, le=2048, multiple_of=64)
    height: int = Field(ge=128, le=2048, multiple_of=64)
    model: str = Field(pattern=AIR_PATTERN)
    number_results: int = Field(1, ge=1, le=20)
    output_type: OutputType = "URL"
    output_format: OutputFormat = "PNG"
    output_quality: int | None = Field(None, ge=20, le=99)
    include_cost: bool = True
    seed: int | None = Field(None, ge=1, le=MAX_SEED)
    steps: int | None = Field(None, ge=1, le=100)
    cfg_scale: float | None = Field(None, ge=0, le=50)
    check_content: bool = False
    delivery_method: DeliveryMethod = "sync"
    webhook_url: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _raise_invalid_input(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> ImageTask:
        # InvalidInput is not a ValueError, so pydantic lets it through unchanged: callers get our error tree.
        try:
            task: ImageTask = handler(data)
        except ValidationError as exc:
            raise _invalid_input(exc) from None
        return task

    @field_validator("task_uuid")
    @classmethod
    def _uuid_v4(cls, value: str) -> str:
        if not is_uuid4(value):
            raise ValueError("must be a UUID version 4")
        return str(uuid.UUID(value))

    @field_validator("output_format", mode="before")
    @classmethod
    def _format_any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlparse(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an absolute http(s) URL")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The task as Runware's JSON object (``taskType`` included, unset optional fields left out)."""
        wire: dict[str, Any] = {"taskType": "imageInference"}
        for name, value in self.model_dump(exclude={"check_content"}, exclude_none=True).items():
            wire[WIRE_NAMES[name]] = value
        if self.check_content:
            wire["safety"] = {"checkContent": True}
        return wire


def _invalid_input(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else None
    message = str(first["msg"]).removeprefix("Value error, ")
    wire = f" (Runware parameter {WIRE_NAMES[field]})" if field in WIRE_NAMES else ""
    return InvalidInput(f"invalid image task: {field}{wire}: {message}", field=field)


class ImageResult(BaseModel):
    """One generated image. Exactly one of the three image fields is set, as the task's ``output_type`` asked."""

    task_uuid: str
    image_uuid: str
    image_url: str | None = None
    image_base64_data: str | None = None
    image_data_uri: str | None = None
    seed: int | None = None
    cost: float | None = None
    nsfw_content: bool | None = None

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> ImageResult:
        """Parse one result item of a ``data`` array, a getResponse poll or a webhook."""
        return cls(
            task_uuid=item["taskUUID"],
            image_uuid=item["imageUUID"],
            image_url=item.get("imageURL"),
            image_base64_data=item.get("imageBase64Data"),
            image_data_uri=item.get("imageDataURI"),
            seed=item.get("seed"),
            cost=item.get("cost"),
            nsfw_content=item.get("NSFWContent"),
        )

    def image_bytes(self) -> bytes | None:
        """The image decoded from ``imageBase64Data`` or ``imageDataURI``; ``None`` for URL results."""
        if self.image_base64_data is not None:
            return base64.b64decode(self.image_base64_data)
        if self.image_data_uri is not None:
            return base64.b64decode(self.image_data_uri.partition(",")[2])
        return None


class TaskError(BaseModel):
    """An item of Runware's ``errors`` array (``parameter`` may be a string or a list of strings)."""

    code: str
    message: str
    parameter: str | list[str] | None = None
    task_uuid: str | None = None
    task_type: str | None = None

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> TaskError:
        """Parse one ``errors`` item (or an error nested in a ``data`` item as ``{"status":"error","error":{}}``)."""
        nested = item.get("error")
        source = {**item, **nested} if isinstance(nested, dict) else item
        parameter = source.get("parameter")
        if not isinstance(parameter, (str, list)):
            parameter = None
        return cls(
            code=str(source.get("code") or "unknownError"),
            message=str(source.get("message") or source.get("code") or "Runware reported an error"),
            parameter=parameter,
            task_uuid=item.get("taskUUID"),
            task_type=item.get("taskType"),
        )

    @property
    def field(self) -> str | None:
        """``parameter`` as one string (lists are joined with commas)."""
        return ",".join(self.parameter) if isinstance(self.parameter, list) else self.parameter

    def to_exception(self, status_code: int | None = None) -> ProviderError:
        """The error in our tree, chosen by the code's family (the HTTP status, if given, is kept for context)."""
        kind = error_class_for_code(self.code)
        return kind(self.message, provider=PROVIDER, status_code=status_code, provider_code=self.code, field=self.field)


def error_class_for_code(code: str) -> type[ProviderError]:
    """Which error of our tree a Runware error code belongs to."""
    if code in AUTH_CODES:
        return ProviderAuthError
    if code in QUOTA_CODES:
        return ProviderPaymentRequired
    if code in RATE_LIMIT_CODES:
        return ProviderRateLimited
    if code in NOT_FOUND_CODES or code in ("taskCancelled", "unknownModel"):
        return ProviderNotFound
    if code in SERVER_CODES:
        return ProviderUnavailable
    if code == CONFLICT_CODE or code.startswith(VALIDATION_PREFIXES) or code == "validationFailed":
        return ProviderRejected
    return ProviderJobFailed


class InferenceOutcome(BaseModel):
    """What Runware said about a set of tasks: finished images, task errors, and tasks still processing.

    Partial success is normal: some tasks (or some images of one task) may be here while others failed or
    are still processing (``processing`` lists their taskUUIDs; ask :meth:`RunwareClient.get_response`).
    """

    results: list[ImageResult] = Field(default_factory=list)
    errors: list[TaskError] = Field(default_factory=list)
    processing: list[str] = Field(default_factory=list)

    @property
    def total_cost(self) -> float:
        """Sum of the per-image costs Runware reported (0.0 when ``includeCost`` was off)."""
        return sum(result.cost or 0.0 for result in self.results)

    def cost_by_task(self) -> dict[str, float]:
        """Reported cost per taskUUID."""
        costs: dict[str, float] = {}
        for result in self.results:
            costs[result.task_uuid] = costs.get(result.task_uuid, 0.0) + (result.cost or 0.0)
        return costs

    def results_for(self, task_uuid: str) -> list[ImageResult]:
        """The images of one task."""
        return [result for result in self.results if result.task_uuid == task_uuid]

    def error_for(self, task_uuid: str) -> TaskError | None:
        """The first error reported for one task, if any."""
        return next((error for error in self.errors if error.task_uuid == task_uuid), None)

    def is_finished(self, task_uuid: str) -> bool:
        """Whether Runware is done with a task: it has images or an error, and nothing is still processing."""
        if task_uuid in self.processing:
            return False
        return bool(self.results_for(task_uuid)) or self.error_for(task_uuid) is not None


def parse_items(data: list[Any], errors: list[Any]) -> InferenceOutcome:
    """Build an outcome from ``data`` and ``errors`` arrays (sync answers, acks, polls and webhooks alike).

    Items without an ``imageUUID`` (async acknowledgements, ``status: processing``) mark their task as
    processing; results repeated by cumulative polls are kept once (by ``imageUUID``). A malformed item
    raises :class:`ProviderError`.
    """
    outcome = InferenceOutcome()
    seen: set[str] = set()
    try:
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("taskUUID"), str):
                continue
            if item.get("status") == "error":
                outcome.errors.append(TaskError.from_wire(item))
            elif "imageUUID" in item and item.get("status") != "processing":
                if item["imageUUID"] not in seen:
                    seen.add(item["imageUUID"])
                    outcome.results.append(ImageResult.from_wire(item))
            elif item["taskUUID"] not in outcome.processing:
                outcome.processing.append(item["taskUUID"])
        outcome.errors.extend(TaskError.from_wire(item) for item in errors if isinstance(item, dict))
    except ValidationError as exc:
        raise ProviderError(f"malformed Runware answer: {exc.errors()[0]['msg']}", provider=PROVIDER) from None
    return outcome


def parse_webhook_payload(payload: Any) -> InferenceOutcome:
    """Parse a Runware webhook body: a flat result or error object, or a ``{"data": [...]}`` / ``errors`` wrapper."""
    if not isinstance(payload, dict):
        raise InvalidInput("a Runware webhook body must be a JSON object", field="body")
    try:
        if "data" in payload or "errors" in payload:
            return parse_items(_list(payload.get("data")), _list(payload.get("errors")))
        return parse_items([], [payload]) if "code" in payload else parse_items([payload], [])
    except ProviderError as exc:
        raise InvalidInput(exc.message, field="body") from None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- answers ----------------------------------------------------------------------------------------------------

#: Statuses that fail a request whatever its body holds (other 4xx fail it only when no task got an answer).
REQUEST_FAILURES = frozenset({401, 402, 403, 429})


def check_batch(tasks: Sequence[ImageTask]) -> list[ImageTask]:
    """Tasks ready to send: at least one, each (re)validated, no taskUUID twice; else :class:`InvalidInput`."""
    if not tasks:
        raise InvalidInput("at least one image task is needed", field="tasks")
    if not all(isinstance(task, ImageTask) for task in tasks):
        raise InvalidInput("tasks must be ImageTask objects", field="tasks")
    # Re-validated so a task built with model_construct (no checks) cannot reach Runware unchecked.
    checked = [ImageTask.model_validate(dict(task)) for task in tasks]
    uuids = [task.task_uuid for task in checked]
    if len(set(uuids)) != len(uuids):
        raise InvalidInput("two tasks share one task_uuid", field="task_uuid")
    return checked


def _describe(errors: Sequence[TaskError]) -> str:
    parts = [f"{error.code}: {error.message}" for error in errors[:3]]
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts)


def read_outcome(response: httpx.Response, submitted: Sequence[str], *, poll: bool) -> InferenceOutcome:
    """Turn an answer into an outcome, or raise the error its status (or its request-level error) means.

    Task-scoped errors are returned, not raised, unless every task failed on a 4xx; for a getResponse poll
    (``poll``) a task-scoped error is always an answer (it is the task's state).
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    outcome = parse_items(_list(body.get("data")), _list(body.get("errors")))
    task_errors = [error for error in outcome.errors if error.task_uuid]
    request_errors = [error for error in outcome.errors if not error.task_uuid]
    answered = bool(outcome.results or outcome.processing)
    message = _describe(outcome.errors) or f"HTTP {status}: {response.text[:200]}"
    first = outcome.errors[0] if outcome.errors else None
    failed = status in REQUEST_FAILURES or status >= 500
    if failed or (status >= 400 and not answered and not (poll and task_errors)):
        raise error_for_status(
            response,
            provider=PROVIDER,
            message=message,
            provider_code=first.code if first else None,
            field=first.field if first else None,
        )
    if status < 400 and "data" not in body and "errors" not in body:
        raise ProviderError(f"unreadable Runware answer (HTTP {status})", provider=PROVIDER, status_code=status)
    if status < 400 and request_errors and not answered and not task_errors:
        raise request_errors[0].to_exception(status)
    # A submitted task with no image, error or ack yet is still Runware's to finish (async acks may be empty).
    reported = {r.task_uuid for r in outcome.results} | {e.task_uuid for e in task_errors} | set(outcome.processing)
    outcome.processing.extend(uuid for uuid in submitted if uuid not in reported)
    return outcome
