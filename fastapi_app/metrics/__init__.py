"""Prometheus metrics for the API and its workers, kept in Redis so every process counts into one place.

Record with :func:`provider_call`, :func:`limiter_wait` and :func:`record`; serve with
:func:`install_metrics` (``GET /metrics``). See docs/OPERATIONS.md for what each metric means.
"""

from fastapi_app.metrics.recorders import limiter_wait, provider_call
from fastapi_app.metrics.store import Increments, MetricBuffer, record
from fastapi_app.metrics.web import install_metrics

__all__ = ["Increments", "MetricBuffer", "install_metrics", "limiter_wait", "provider_call", "record"]
