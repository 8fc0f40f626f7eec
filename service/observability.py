"""Request ids, one structured log line per request, request metrics, and JSON log formatting.

``RequestLog`` is the outermost layer of the app (outside even Starlette's error middleware, see
``wrap_outermost``), so every response, a 500 included, gets an ``X-Request-ID`` header, is counted in the metrics
and logged once on the ``citesearch.access`` logger::

    {"time": "...", "level": "INFO", "logger": "citesearch.access", "message": "GET /search 200 12.3 ms",
     "request_id": "6f1c...", "method": "GET", "route": "/search", "path": "/search", "status": 200,
     "duration_ms": 12.31, "client": "10.0.0.7", "key": "ci"}

A client's ``X-Request-ID`` (up to 128 letters, digits and ``-_.:``) is kept, otherwise one is generated. ``key`` is
the API key's *name* (null without a key); keys themselves are never logged. The query string is not logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics

access_log = logging.getLogger("citesearch.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # others share one metrics label


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1").strip()
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


def route_label(scope: Scope) -> str:
    """The route template, so the metrics have one series per route, not per path."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        return template
    path = str(scope.get("path", ""))
    if path.startswith("/static/"):  # one series for the static files, found or not
        return "/static"
    if "endpoint" in scope and "path_params" in scope and not scope["path_params"]:
        return path  # a plain Starlette route without parameters (/docs, /openapi.json)
    return "unmatched"


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, *, enabled: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless a response starts
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_progress.dec()
            seconds = time.perf_counter() - started
            route, method = route_label(scope), scope.get("method", "")
            self.metrics.observe(route, method if method in _METHODS else "other", status, seconds)
            if self.enabled:
                client = scope.get("client")
                fields = {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else None,
                    "key": (scope.get("state") or {}).get("api_key_name"),
                }
                access_log.info(
                    "%s %s %d %.1f ms", method, fields["path"], status, seconds * 1000, extra={"fields": fields}
                )


def wrap_outermost(app: Any, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Put ``wrap`` around the app's whole middleware stack, outside Starlette's ServerErrorMiddleware (which
    ``add_middleware`` cannot reach), so that even a 500 passes through it."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: wrap(build())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``fields`` (if any), the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """For ``citesearch serve``: every logger (the service's and uvicorn's) to stderr, as JSON lines or text."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
