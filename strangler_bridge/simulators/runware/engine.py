"""The Runware simulator's behaviour, apart from HTTP: faults, the concurrency cap, running and charging tasks,
getResponse answers and webhooks. Everything runs on the server's event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import Coroutine
from typing import Any

from strangler_bridge.simulators.runware import images
from strangler_bridge.simulators.runware.config import RunwareSimConfig, sample
from strangler_bridge.simulators.runware.state import Counters, ImageRecord, TaskRecord
from strangler_bridge.simulators.runware.validation import error_item
from strangler_bridge.simulators.runware.webhooks import WebhookSender

FAILURE_MESSAGES = {
    "timeoutProvider": "The external provider did not respond within the timeout window. "
    "The request was automatically terminated.",
    "inferenceError": "An error occurred during inference.",
}
#: Injected status -> (Runware error code, message).
INJECTED_ERRORS = {
    400: ("validationFailed", "The request failed validation."),
    401: ("invalidApiKey", "Invalid API key. Get one at https://my.runware.ai/signup"),
    402: ("insufficientCredits", "Insufficient credits, please add your credit card and top-up your balance."),
    403: ("forbidden", "This API key does not have permission for this operation."),
    404: ("notFound", "Not found."),
    429: ("rateLimitExceeded", "Queue capacity exceeded; retry with exponential backoff."),
    500: ("internalServerError", "Internal server error."),
    502: ("serviceUnavailable", "Bad gateway."),
    503: ("serviceUnavailable", "Temporary capacity problem; retry with exponential backoff."),
    504: ("requestTimeout", "The request exceeded the maximum queue wait."),
}


class RunwareSim:
    """State and behaviour of one simulated Runware account."""

    def __init__(self, config: RunwareSimConfig) -> None:
        self._initial = config.model_copy(deep=True)
        self.config = config.model_copy(deep=True)
        self.rng = random.Random(config.seed)
        self.counters = Counters()
        self.tasks: dict[str, TaskRecord] = {}
        self.images: dict[str, ImageRecord] = {}
        self.webhooks = WebhookSender(lambda: self.config, self.rng, lambda: self.counters)
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle and control --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start what needs the event loop (the webhook client)."""
        await self.webhooks.start()

    async def stop(self) -> None:
        """Cancel background work and close the webhook client."""
        self._cancel_background()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.webhooks.stop()

    def configure(self, patch: dict[str, Any]) -> RunwareSimConfig:
        """Apply a partial config (validated as a whole); a new ``seed`` re-seeds the random choices."""
        self.config = self.config.merged(patch)
        if "seed" in patch:
            self.rng.seed(self.config.seed)
        return self.config

    def reset(self) -> None:
        """Back to the start-up state: start-up config, no tasks, images or pending work, counters at zero."""
        self._cancel_background()
        self.webhooks.cancel_all()
        self.config = self._initial.model_copy(deep=True)
        self.rng.seed(self.config.seed)
        self.counters = Counters()
        self.tasks.clear()
        self.images.clear()

    def _cancel_background(self) -> None:
        for task in self._background:
            task.cancel()

    # --- request-level decisions ------------------------------------------------------------------------------

    def injected_status(self) -> int | None:
        """The fault status this request gets, if any (consuming one-shot injections first)."""
        config = self.config
        status: int | None = None
        if config.inject_statuses:
            status, config.inject_statuses = config.inject_statuses[0], config.inject_statuses[1:]
        elif config.rate_limit_burst:
            config.rate_limit_burst -= 1
            status = 429
        elif config.rate_limit_rate and self.rng.random() < config.rate_limit_rate:
            status = 429
        elif config.server_error_rate and self.rng.random() < config.server_error_rate:
            status = 503
        if status == 429:
            self.counters.rate_limited_injected += 1
        elif status is not None:
            self.counters.injected_statuses[status] += 1
        return status

    def acquire(self) -> bool:
        """Take an in-flight slot for an inference request; ``False`` (and a 429 counted) if over the cap."""
        counters = self.counters
        cap = self.config.concurrency_cap
        if cap is not None and counters.in_flight >= cap:
            counters.rate_limited_cap += 1
            return False
        counters.in_flight += 1
        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire` for a request that will not run."""
        self.counters.in_flight -= 1

    def take_drop(self) -> str | None:
        """The drop mode for this inference request's answer, if one of the next N answers is to be lost."""
        if not self.config.drop_next_responses:
            return None
        self.config.drop_next_responses -= 1
        self.counters.dropped_responses[self.config.drop_mode] += 1
        return self.config.drop_mode

    # --- tasks ------------------------------------------------------------------------------------------------

    def known(self, task_uuid: str) -> bool:
        """Whether a taskUUID was accepted before (reusing it is ``conflictTaskUUID``)."""
        return task_uuid in self.tasks

    def start_tasks(self, tasks: list[dict[str, Any]], base_url: str) -> list[TaskRecord]:
        """Record accepted tasks and run them in the background; the request's slot is freed when all are done.

        The work goes on even if the client disconnects, as on the real service (and it is charged).
        """
        records = [TaskRecord(task=task, base_url=base_url) for task in tasks]
        for record in records:
            self.tasks[record.task_uuid] = record
        self._spawn(self._run_request(records, self.counters))
        return records

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_request(self, records: list[TaskRecord], counters: Counters) -> None:
        try:
            await asyncio.gather(*(self._run_task(record, counters) for record in records))
        finally:
            counters.in_flight -= 1
            for record in records:
                record.finished.set()

    async def _run_task(self, record: TaskRecord, counters: Counters) -> None:
        task = record.task
        await asyncio.sleep(sample(self.rng, self.config.latency_s))
        if self._fails():
            code = self.config.failure_code
            message = FAILURE_MESSAGES.get(code, f"The task failed ({code}).")
            record.error = error_item(code, message, task=task)
            counters.tasks_failed += 1
        else:
            number = task.get("numberResults", 1)
            for index in range(number):
                record.items.append(await self._image_item(task, index, record.base_url))
            counters.tasks_executed += 1
            counters.executed_by_task[record.task_uuid] += 1
            counters.images_generated += number
            counters.cost_total += number * self.config.cost_per_image
        record.finished.set()
        self._notify(record)

    def _fails(self) -> bool:
        if self.config.fail_next_tasks:
            self.config.fail_next_tasks -= 1
            return True
        return bool(self.config.failure_rate) and self.rng.random() < self.config.failure_rate

    async def _image_item(self, task: dict[str, Any], index: int, base_url: str) -> dict[str, Any]:
        seed = task["seed"] + index if "seed" in task else self.rng.randint(1, 2**32 - 1)
        image_uuid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        spec = ImageRecord(
            prompt=task["positivePrompt"],
            seed=seed,
            width=task["width"],
            height=task["height"],
            output_format=str(task.get("outputFormat", "JPG")).upper(),
        )
        self.images[image_uuid] = spec
        item: dict[str, Any] = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": image_uuid}
        output_type = task.get("outputType", "URL")
        extension, mime = images.FORMATS[spec.output_format][1:]
        if output_type == "URL":
            item["imageURL"] = f"{base_url}/image/{image_uuid}.{extension}"
        else:
            data = base64.b64encode(await self.draw(spec)).decode()
            if output_type == "base64Data":
                item["imageBase64Data"] = data
            else:
                item["imageDataURI"] = f"data:{mime};base64,{data}"
        item["seed"] = seed
        if task.get("checkNSFW") or (task.get("safety") or {}).get("checkContent"):
            item["NSFWContent"] = False
        if task.get("includeCost"):
            item["cost"] = self.config.cost_per_image
        return item

    async def draw(self, spec: ImageRecord) -> bytes:
        """Encode an image (in a thread, so the event loop keeps serving)."""
        return await asyncio.to_thread(
            images.render,
            spec.prompt,
            spec.seed,
            spec.width,
            spec.height,
            spec.output_format,
            max_side=self.config.image_max_side,
        )

    def _notify(self, record: TaskRecord) -> None:
        url = record.task.get("webhookURL")
        if not url:
            return
        if record.error is not None:
            self.webhooks.send(url, {**record.error, "status": "error"})
        for item in record.items:
            self.webhooks.send(url, item)

    def poll(self, task_uuid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """getResponse: cumulative ``(data, errors)`` for a task, or ``None`` if the taskUUID is unknown.

        Answers for every accepted task, sync ones included (a simulator choice: it lets a client recover a sync
        answer that was lost).
        """
        record = self.tasks.get(task_uuid)
        if record is None:
            return None
        data = [{**item, "status": "success"} for item in record.items]
        if not record.finished.is_set():
            data.append({"taskType": "imageInference", "taskUUID": task_uuid, "status": "processing"})
        errors = [{**record.error, "status": "error"}] if record.error is not None else []
        return data, errors
