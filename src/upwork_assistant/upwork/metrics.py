"""Prometheus metrics of our calls to Upwork (served at ``/metrics`` behind METRICS_TOKEN).

Under ``serve --workers N`` each process writes its own values to PROMETHEUS_MULTIPROC_DIR
and ``/metrics`` adds them up (prometheus_client's multiprocess mode); gauges say how.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from .errors import (
    UpworkAPIError,
    UpworkRateLimited,
    UpworkScopeError,
    UpworkUnauthorized,
    UpworkUnavailable,
)

CALLS = Counter(
    "upwork_calls_total",
    "Calls to Upwork by operation (GraphQL operation or token grant) and outcome: ok, "
    "unauthorized (401 or an authentication error in a 200), rate_limited (429 or held "
    "back by our own gate), scope_error, server_error (5xx), timeout, error.",
    ["operation", "outcome"],
)
LATENCY = Histogram(
    "upwork_call_duration_seconds",
    "Time of calls to Upwork that reached it, by operation.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
REFRESHES = Counter(
    "upwork_token_refreshes_total",
    "Upwork access-token refreshes by outcome: ok, rotated, reauth_required, failed.",
    ["outcome"],
)
BACKOFF_UNTIL = Gauge(
    "upwork_backoff_until_timestamp_seconds",
    "Unix time until which calls to Upwork are held back after the last 429 (a time in "
    "the past, or 0 before any 429: not blocked).",
    multiprocess_mode="max",
)
BACKOFFS = Counter(
    "upwork_backoffs_total",
    "Blocks started after Upwork answered 429 (upwork_429: no Retry-After, so a minute).",
    ["reason"],
)
BUDGET_WAIT = Histogram(
    "upwork_budget_wait_seconds",
    "Time calls to Upwork waited for their slot in the host-wide budget, by priority.",
    ["priority"],
    buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
BUDGET_REFUSED = Counter(
    "upwork_budget_refused_total",
    "Calls to Upwork refused before sending, by priority and reason (blocked, busy, daily_budget).",
    ["priority", "reason"],
)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, UpworkScopeError):
        return "scope_error"
    if isinstance(exc, UpworkUnauthorized):
        return "unauthorized"
    if isinstance(exc, UpworkRateLimited):
        return "rate_limited"
    if isinstance(exc, UpworkUnavailable):
        return "timeout"
    if isinstance(exc, UpworkAPIError) and (exc.http_status or 0) >= 500:
        return "server_error"
    return "error"


@contextmanager
def observe(operation: str) -> Iterator[None]:
    """Count one call to Upwork and its outcome (from the exception it ends with)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        outcome = outcome_of(exc)
        CALLS.labels(operation, outcome).inc()
        if outcome != "rate_limited":
            LATENCY.labels(operation).observe(time.perf_counter() - started)
        raise
    CALLS.labels(operation, "ok").inc()
    LATENCY.labels(operation).observe(time.perf_counter() - started)
