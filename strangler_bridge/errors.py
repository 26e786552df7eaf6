"""One error tree for the whole package, rooted at :class:`BridgeError`.

Every error carries a machine-readable ``code`` and the HTTP status the service answers with, so the
FastAPI half maps errors to responses in one place and the Flask half can rebuild them from a body.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BridgeError(Exception):
    """Base of every error this package raises on purpose."""

    code: ClassVar[str] = "bridge_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the service's JSON error body (``{"error": {...}}``)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class ConfigError(BridgeError):
    """A setting is missing or malformed; the message names the variable."""

    code = "config_error"


class InvalidInput(BridgeError):
    """A request or argument is invalid; ``field`` names the offending field."""

    code = "invalid_input"
    http_status = 422


class PayloadTooLarge(InvalidInput):
    """A request body is over the configured size limit."""

    code = "payload_too_large"
    http_status = 413


class Unauthorized(BridgeError):
    """Missing or wrong credentials (API token or webhook token)."""

    code = "unauthorized"
    http_status = 401


class NotFound(BridgeError):
    """The named batch, job, artifact or provider job does not exist (or expired)."""

    code = "not_found"
    http_status = 404


class RecordNotFound(NotFound):
    """A stored record (a batch, a job) to change does not exist or expired; ``details["record_id"]`` names it."""


class Conflict(BridgeError):
    """The request conflicts with stored state (an idempotency key reused with another body, ...)."""

    code = "conflict"
    http_status = 409


class StoreUnavailable(BridgeError):
    """The state store (Redis) cannot be reached; the request may be retried."""

    code = "store_unavailable"
    http_status = 503


class StorageError(BridgeError):
    """The artifact store (an S3 bucket) refused an operation or could not be reached within its retries.

    The message says what to check (the bucket, the credentials, the endpoint), never a library traceback.
    """

    code = "storage_error"
    http_status = 503


class ProviderError(BridgeError):
    """A call to an external provider (RunPod, Runware, the video service) failed."""

    code = "provider_error"
    http_status = 502
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        provider_code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.provider = provider
        self.status_code = status_code
        self.provider_code = provider_code

    def __str__(self) -> str:
        where = f"{self.provider} HTTP {self.status_code}" if self.status_code else self.provider
        return f"{where}: {self.message}"


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (401/403)."""

    code = "provider_auth"


class ProviderNotFound(ProviderError):
    """The provider does not know the job (404): wrong endpoint, or the job expired."""

    code = "provider_not_found"


class ProviderRejected(ProviderError):
    """The provider rejected the request as invalid (4xx other than 401/403/404/429)."""

    code = "provider_rejected"


class ProviderPaymentRequired(ProviderRejected):
    """The provider account has no credit left (402)."""

    code = "provider_payment_required"


class ProviderRateLimited(ProviderError):
    """The provider answered 429 after our retries ran out."""

    code = "provider_rate_limited"
    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx or transport failure after our retries ran out; the outcome of a submit may be unknown."""

    code = "provider_unavailable"
    retryable = True


class ProviderJobFailed(ProviderError):
    """The provider ran the work and reported failure (RunPod FAILED/TIMED_OUT, a Runware task error)."""

    code = "provider_job_failed"


class ServiceError(BridgeError):
    """The strangler-bridge service answered with an error (raised by the Flask-side client)."""

    code = "service_error"
    http_status = 502

    def __init__(self, message: str, *, status_code: int, service_code: str, field: str | None = None):
        super().__init__(message, field=field)
        self.status_code = status_code
        self.service_code = service_code

    def __str__(self) -> str:
        if not self.status_code:  # never answered: there is no HTTP status to show
            return self.message
        return f"service HTTP {self.status_code} {self.service_code}: {self.message}"


class ServiceUnavailable(ServiceError):
    """The service could not be reached, or kept answering 5xx, within the retry budget."""

    code = "service_unavailable"
    http_status = 503


class DeadlineExceeded(BridgeError):
    """Waiting for a result took longer than the caller's deadline."""

    code = "deadline_exceeded"
    http_status = 504


class StepStalled(DeadlineExceeded):
    """The service's work showed no progress for ``STRANGLER_SERVICE_STALL_S``; the caller gave up early."""

    code = "step_stalled"


class BreakerOpen(ServiceUnavailable):
    """The Flask side's circuit breaker for a phase is open: the service was not called at all."""

    code = "breaker_open"
