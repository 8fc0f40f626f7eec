"""Per-client rate limit (``/search``, ``/ask``) and the request time limit.

Rate limit: a token bucket per client, holding ``CITESEARCH_RATE_LIMIT_BURST`` tokens and refilled at
``CITESEARCH_RATE_LIMIT_PER_MINUTE``/60 per second. The client is the API key's name when a valid key was sent,
otherwise the connection's IP address (behind a reverse proxy, run uvicorn with ``--proxy-headers`` /
``--forwarded-allow-ips`` so that is the real client). An empty bucket answers 429 with ``Retry-After`` (whole
seconds until a token is back).

Time limit: routes are sync functions run in worker threads, which cannot be interrupted. ``RequestTimeout`` runs the
request as a task and, when ``CITESEARCH_REQUEST_TIMEOUT_SECONDS`` pass before the response starts, answers 503 itself.
The request is *not* cancelled: its thread finishes the computation, releases its index lease as usual, and its
response is discarded (logged as abandoned). So the limit bounds how long a client waits, not the work the server
does; the shutdown waits for abandoned requests (``drain``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client id. Thread-safe (dependencies run in worker threads)."""

    MAX_CLIENTS = 50_000  # beyond this, buckets that are full again (idle clients) are dropped

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.enabled = per_minute > 0
        self._clock = time.monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one token for ``client``: 0.0 if allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.MAX_CLIENTS:
                    self._prune(now)
                bucket = self._buckets[client] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [c for c, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]


def client_id(request: Request) -> str:
    """Who a limit applies to: the API key's name (set by require_read) or the client's address."""
    name = getattr(request.state, "api_key_name", None)
    if name:
        return f"key:{name}"
    return f"ip:{request.client.host if request.client else 'unknown'}"


async def rate_limit(request: Request) -> None:
    """Dependency of /search and /ask (after require_read, so a key's name is known): 429 when over the limit."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    wait = limiter.take(client_id(request))
    if wait > 0:
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.rate_limited.inc()
        retry_after = max(1, math.ceil(wait))
        raise HTTPException(
            429,
            detail={
                "field": None,
                "message": f"too many requests: the limit is {limiter.rate * 60:g} per minute "
                f"(bursts of {limiter.burst:g}); retry in {retry_after} s",
            },
            headers={"Retry-After": str(retry_after)},
        )


class RequestTimeout:
    """Answer 503 when the app has not started its response within ``seconds`` (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, seconds: float, abandoned: AbandonedRequests, on_timeout: Callable[[], object] | None = None
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.on_timeout = on_timeout
        self.abandoned = abandoned

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        timed_out = False

        async def guarded_send(message: Message) -> None:
            if timed_out:  # the client already has its 503: drop the late response
                return
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            waiter.cancel()
            task.cancel()
            raise
        if task in done or waiter in done:  # finished, or the response has started: stream it to the end
            waiter.cancel()
            await task
            return
        waiter.cancel()
        timed_out = True
        begun = time.perf_counter()
        self.abandoned.tasks.add(task)
        path = scope.get("path", "")
        log.warning(
            "request %s %s exceeded the time limit of %g s: answered 503, letting it finish in the background",
            scope.get("method"),
            path,
            self.seconds,
        )

        def finished(t: asyncio.Task[None]) -> None:
            self.abandoned.tasks.discard(t)
            outcome = "failed" if not t.cancelled() and t.exception() is not None else "finished"
            log.info(
                "abandoned request %s %s %s %.0f ms after its 503",
                scope.get("method"),
                path,
                outcome,
                (time.perf_counter() - begun) * 1000,
            )

        task.add_done_callback(finished)
        if self.on_timeout is not None:
            self.on_timeout()
        from service.app import (
            _send_error,  # the API's error shape, sent outside the app
        )

        await _send_error(
            send,
            503,
            None,
            f"the request took longer than the limit of {self.seconds:g} s and was abandoned; try a simpler request",
        )


class AbandonedRequests:
    """The requests answered 503 by ``RequestTimeout`` that are still running (one per app, on ``app.state``)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.tasks)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for abandoned requests to finish, e.g. before the index is closed at shutdown."""
        pending = set(self.tasks)
        if pending:
            log.info("waiting for %d abandoned request(s) to finish", len(pending))
            await asyncio.wait(pending, timeout=timeout)
