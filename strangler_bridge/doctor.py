"""Configuration checks: is every configured provider reachable at its URL, path and key, can providers reach
the service back, and would the fetch rules accept their outputs?

One cheap call per provider (RunPod ``/health``, Runware's authentication task, the video service's health
route) and one to ``STRANGLER_PUBLIC_URL``; nothing is paid for. Every finding is one line, and a problem names
the setting to change. ``strangler-bridge doctor`` prints them, ``GET /readyz?deep=1`` returns them, and
``strangler-bridge api`` and ``worker`` log the problems as warnings when they start (:func:`warn_in_background`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import Enum
from urllib.parse import urlsplit

import httpx

from strangler_bridge.errors import (
    BridgeError,
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from strangler_bridge.fetch import check_url
from strangler_bridge.http import NO_RETRY
from strangler_bridge.providers.runpod.client import RunPodClient
from strangler_bridge.providers.runware.client import RunwareClient
from strangler_bridge.providers.video.client import VideoClient
from strangler_bridge.settings import Settings

log = logging.getLogger(__name__)

#: Timeout of each check's call: long enough for a cold TLS handshake, short enough to keep ``doctor`` quick.
TIMEOUT_S = 5.0
#: How long the checks run at start wait for ``STRANGLER_PUBLIC_URL`` to answer (the API may still be starting).
START_PATIENCE_S = 20.0
#: The title of the runpod SDK's local test API (``python handler.py --rp_serve_api``) in its OpenAPI document.
SDK_TEST_API_TITLE = "Runpod | Development Worker API"


#: One check: returns its findings (most return one).
Check = Callable[[], list["Finding"]]


class Verdict(str, Enum):
    """How a check came out."""

    OK = "ok"
    SKIPPED = "skipped"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """One check's outcome; a problem's ``setting`` is the variable to change."""

    check: str
    verdict: Verdict
    message: str
    setting: str | None = None

    @property
    def problem(self) -> bool:
        """Whether something must be changed."""
        return self.verdict is Verdict.PROBLEM

    def line(self) -> str:
        """The finding as one line: ``SETTING: message`` for a problem, ``ok: ...`` / ``skipped: ...`` else."""
        return f"{self.setting}: {self.message}" if self.problem else f"{self.verdict.value}: {self.message}"

    def to_dict(self) -> dict[str, str | None]:
        """JSON form (for ``/readyz?deep=1``)."""
        return {**asdict(self), "verdict": self.verdict.value, "line": self.line()}


def _ok(check: str, message: str) -> Finding:
    return Finding(check, Verdict.OK, message)


def _problem(check: str, setting: str, message: str) -> Finding:
    return Finding(check, Verdict.PROBLEM, message, setting)


def run_checks(settings: Settings, *, timeout_s: float = TIMEOUT_S) -> list[Finding]:
    """Every check, run at once in threads; findings in a fixed order (providers, public URL, fetch rules)."""
    checks = _checks(settings, timeout_s, public_url_patience_s=0.0)
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="doctor") as pool:
        results = list(pool.map(lambda check: check(), checks))
    return [finding for findings in results for finding in findings]


def _checks(settings: Settings, timeout_s: float, public_url_patience_s: float) -> list[Check]:
    return [
        lambda: [check_runpod(settings, timeout_s)],
        lambda: [check_runware(settings, timeout_s)],
        lambda: [check_video(settings, timeout_s)],
        lambda: check_public_url(settings, timeout_s, patience_s=public_url_patience_s),
        lambda: check_fetch_rules(settings),
        lambda: check_artifacts(settings),
    ]


def report(findings: list[Finding]) -> str:
    """The findings, one per line, problems first."""
    ordered = sorted(findings, key=lambda finding: not finding.problem)
    return "\n".join(finding.line() for finding in ordered)


# --- providers ------------------------------------------------------------------------------------------------------


def check_runpod(settings: Settings, timeout_s: float = TIMEOUT_S) -> Finding:
    """``GET /health`` on the endpoint: proves the URL, the endpoint id (404) and the key (401)."""
    url = (settings.runpod_endpoint_url or "").rstrip("/")
    if not url:
        return Finding("runpod", Verdict.SKIPPED, "RunPod is not configured (STRANGLER_RUNPOD_ENDPOINT_URL)")
    if settings.runpod_api_key is None:
        return _problem("runpod", "STRANGLER_RUNPOD_API_KEY", "not set, but STRANGLER_RUNPOD_ENDPOINT_URL is")
    try:
        with RunPodClient(url, settings.secret("runpod_api_key"), timeout_s=timeout_s, retry=NO_RETRY) as client:
            health = client.health()
    except ConfigError as exc:
        return _problem("runpod", "STRANGLER_RUNPOD_ENDPOINT_URL", exc.message)
    except ProviderAuthError as exc:
        return _problem(
            "runpod", "STRANGLER_RUNPOD_API_KEY", f"RunPod refused the key at {url}/health (HTTP {exc.status_code})"
        )
    except ProviderNotFound:
        return _runpod_not_found(url, timeout_s)
    except ProviderError as exc:
        return _unreachable("runpod", "STRANGLER_RUNPOD_ENDPOINT_URL", f"RunPod at {url}", exc)
    workers = health.workers
    return _ok(
        "runpod",
        f"RunPod endpoint {url} answers (workers: {workers.idle} idle, {workers.running} running)",
    )


def _runpod_not_found(url: str, timeout_s: float) -> Finding:
    """A 404 at ``/health``: a wrong path or endpoint id, or the runpod SDK's local test API (no ``/health``)."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if _is_sdk_test_api(origin, timeout_s):
        if parts.path.strip("/"):
            return _problem(
                "runpod",
                "STRANGLER_RUNPOD_ENDPOINT_URL",
                f"{url}/health answered 404, but {origin} is the runpod SDK's local test API, which serves at its"
                f" root: set STRANGLER_RUNPOD_ENDPOINT_URL={origin}",
            )
        return _ok(
            "runpod",
            f"{url} is the runpod SDK's local test API (python handler.py --rp_serve_api): it has no /health and"
            " sends no webhooks, so jobs are polled",
        )
    return _problem(
        "runpod",
        "STRANGLER_RUNPOD_ENDPOINT_URL",
        f"{url}/health answered 404: no RunPod endpoint there (expected https://api.runpod.ai/v2/<endpoint-id>)",
    )


def _is_sdk_test_api(origin: str, timeout_s: float) -> bool:
    try:
        response = httpx.get(f"{origin}/openapi.json", timeout=timeout_s)
        title = response.json().get("info", {}).get("title") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return bool(title == SDK_TEST_API_TITLE)


def check_runware(settings: Settings, timeout_s: float = TIMEOUT_S) -> Finding:
    """Runware's authentication task alone: proves the URL and the key, and costs nothing."""
    url = settings.runware_url
    if settings.runware_api_key is None:
        return Finding("runware", Verdict.SKIPPED, "Runware is not configured (STRANGLER_RUNWARE_API_KEY)")
    try:
        with RunwareClient(url, settings.secret("runware_api_key"), timeout_s=timeout_s, retry=NO_RETRY) as client:
            client.authenticate()
    except ConfigError as exc:
        return _problem("runware", "STRANGLER_RUNWARE_API_KEY", exc.message)
    except ProviderAuthError as exc:
        return _problem(
            "runware", "STRANGLER_RUNWARE_API_KEY", f"Runware refused the key at {url} (HTTP {exc.status_code})"
        )
    except (ProviderNotFound, ProviderRejected) as exc:
        return _problem(
            "runware",
            "STRANGLER_RUNWARE_URL",
            f"{url} answered HTTP {exc.status_code} to an authentication task (expected https://api.runware.ai/v1)",
        )
    except ProviderError as exc:
        return _unreachable("runware", "STRANGLER_RUNWARE_URL", f"Runware at {url}", exc)
    return _ok("runware", f"Runware at {url} accepted the key")


def check_video(settings: Settings, timeout_s: float = TIMEOUT_S) -> Finding:
    """The video service's health route."""
    if not settings.video_url:
        return Finding("video", Verdict.SKIPPED, "the video service is not configured (STRANGLER_VIDEO_URL)")
    try:
        with VideoClient.from_settings(settings, timeout_s=timeout_s, retry=NO_RETRY) as client:
            client.health()
            health_url = client.url(client.routes.health)
    except ProviderUnavailable as exc:
        return _unreachable("video", "STRANGLER_VIDEO_URL", f"the video service at {settings.video_url}", exc)
    except ProviderError as exc:
        return _problem(
            "video",
            "STRANGLER_VIDEO_URL",
            f"{settings.video_url} answered HTTP {exc.status_code} to its health route: not the video service?",
        )
    return _ok("video", f"the video service answers at {health_url}")


def check_artifacts(settings: Settings) -> list[Finding]:
    """With an S3 store: whether its bucket exists and takes the credentials (a directory needs no check)."""
    if not (settings.artifacts_url or "").startswith("s3://"):
        return []
    try:
        from strangler_bridge.s3_store import S3ArtifactStore

        S3ArtifactStore.from_url(
            settings.artifacts_url or "", endpoint_url=settings.s3_endpoint_url, timeout_s=settings.http_timeout_s
        ).check()
    except ImportError:
        return [_problem("artifacts", "STRANGLER_ARTIFACTS_URL", "an s3:// URL needs the [s3] extra (boto3)")]
    except BridgeError as exc:
        return [_problem("artifacts", "STRANGLER_ARTIFACTS_URL", exc.message)]
    return [_ok("artifacts", f"the bucket of {settings.artifacts_url} answers")]


def _unreachable(check: str, setting: str, what: str, exc: ProviderError) -> Finding:
    cause = exc.__cause__
    detail = type(cause).__name__ if isinstance(cause, httpx.TransportError) else f"HTTP {exc.status_code}"
    return _problem(check, setting, f"{what} is unreachable ({detail})")


# --- the way back, and the outputs ----------------------------------------------------------------------------------


def check_public_url(settings: Settings, timeout_s: float = TIMEOUT_S, *, patience_s: float = 0.0) -> list[Finding]:
    """Does ``STRANGLER_PUBLIC_URL`` reach this service from here, and can a hosted RunPod reach it at all?

    ``patience_s``: keep trying that long while nothing answers (at start, the API may not listen yet).
    """
    url = settings.public_link("/healthz")
    findings = [_public_url_answers(url, timeout_s, patience_s)]
    runpod = settings.runpod_endpoint_url
    if runpod and _is_public(runpod) and not _is_public(settings.public_url):
        findings.append(
            _problem(
                "public_url",
                "STRANGLER_PUBLIC_URL",
                f"{settings.public_url} is not a public address, so RunPod at {urlsplit(runpod).hostname} cannot"
                " send webhooks to it (jobs are then only polled after STRANGLER_RECONCILE_AFTER_S)",
            )
        )
    return findings


def _public_url_answers(url: str, timeout_s: float, patience_s: float) -> Finding:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            response = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            if time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            return _problem(
                "public_url",
                "STRANGLER_PUBLIC_URL",
                f"{url} does not answer from here ({type(exc).__name__}): providers send their webhooks there",
            )
        if response.status_code == 200:
            return _ok("public_url", f"{url} answers from here")
        return _problem(
            "public_url",
            "STRANGLER_PUBLIC_URL",
            f"{url} answered HTTP {response.status_code}: it is not this service",
        )


def _is_public(url: str) -> bool:
    """Whether ``url``'s host resolves to public addresses only (unknown: treated as public)."""
    try:
        check_url(url, [])
    except ProviderRejected:
        return False
    except ProviderUnavailable:
        return True
    return True


def check_fetch_rules(settings: Settings) -> list[Finding]:
    """Would outputs served from each provider's host (Runware's imageURL, a RunPod handler's audio_url) be
    refused by the fetch rules? The trap of simulators on loopback while loopback is not allowed."""
    sources = [
        ("Runware's images", settings.runware_url if settings.runware_api_key else None),
        ("RunPod's audio_url outputs (if the handler returns URLs, not base64)", settings.runpod_endpoint_url),
    ]
    findings = []
    for what, url in sources:
        if not url:
            continue
        try:
            check_url(url, settings.fetch_allow_hosts)
        except ProviderRejected:
            host = urlsplit(url).hostname
            findings.append(
                _problem(
                    "fetch",
                    "STRANGLER_FETCH_ALLOW_HOSTS",
                    f"{what} on {host} would be refused (not a public address): add {host} to"
                    " STRANGLER_FETCH_ALLOW_HOSTS",
                )
            )
        except ProviderUnavailable:
            continue  # the provider's own check says it cannot be reached
    return findings or [_ok("fetch", "provider outputs pass the fetch rules")]


# --- at start ---------------------------------------------------------------------------------------------------------


def warn_in_background(settings: Settings, process: str) -> list[threading.Thread]:
    """Run each check in a daemon thread and log its problems as warnings as soon as it ends: a process never
    waits for them (not even to exit), and never refuses to start because a provider is down."""

    def run(check: Check) -> None:
        try:
            findings = check()
        except Exception:  # a check must never take a process down
            log.exception("%s: a start-up check failed", process)
            return
        for finding in findings:
            if finding.problem:
                log.warning("%s start-up check: %s", process, finding.line())

    threads = [
        threading.Thread(target=run, args=(check,), name="strangler-doctor", daemon=True)
        for check in _checks(settings, TIMEOUT_S, START_PATIENCE_S)
    ]
    for thread in threads:
        thread.start()
    return threads
