"""Prometheus metrics of our own HTTP routes, and the ``/metrics`` answer.

Requests are counted by method, route template (``/api/security/sessions/{session_id}``,
never the raw path, so ids do not explode the label set) and status. Under
``serve --workers N`` every process writes to PROMETHEUS_MULTIPROC_DIR (set by ``serve``)
and the answer adds them up with prometheus_client's multiprocess collector.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "http_requests_total", "HTTP requests to our routes.", ["method", "route", "status"]
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer HTTP requests to our routes.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def route_of(scope: Scope, root_path: str) -> str:
    """The matched route's template (the router leaves it in the scope), the mount prefix
    for a mounted app's requests (the sandbox, static files), or ``other`` (404s)."""
    inner_root = str(scope.get("root_path", ""))
    if inner_root != root_path:
        return inner_root[len(root_path) :] + "/{path}"
    route = scope.get("route")
    return str(getattr(route, "path", "other"))


class HTTPMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counted = False
        root_path = str(scope.get("root_path", ""))
        method = scope.get("method", "GET")

        def count(status: int) -> None:
            nonlocal counted
            counted = True
            REQUESTS.labels(method, route_of(scope, root_path), str(status)).inc()

        async def send_status(message: Message) -> None:
            # Counted as the answer starts, not after it has gone: a client that has its
            # answer and asks /metrics (of any process) at once finds it counted.
            if message["type"] == "http.response.start" and not counted:
                count(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if not counted:
                count(500)
            DURATION.labels(method, route_of(scope, root_path)).observe(
                time.perf_counter() - started
            )


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format: this process's, or every process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
