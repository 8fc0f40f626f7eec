"""The service's own ASGI middlewares: the request body size limit and the request time limit.

Both answer before (or instead of) the app, so they send the API's error shape with ``service.errors.send_error``.

Time limit: routes are sync functions run in worker threads, which cannot be interrupted. ``RequestTimeout`` runs the
request as a task and, when ``CITESEARCH_REQUEST_TIMEOUT_SECONDS`` pass before the response starts, answers 503 itself.
The request is *not* cancelled: its thread finishes the computation, releases its index lease as usual, and its
response is discarded (logged as abandoned). So the limit bounds how long a client waits, not the work the server
does; the shutdown waits for abandoned requests (``AbandonedRequests.drain``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, send_error

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 before they are parsed.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives. The error is raised
    as an HTTP exception from inside the body read, where FastAPI turns it into the usual JSON error.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(413, f"request body over the limit of {self.max_bytes} bytes", field="body")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await send_error(send, 413, "body", f"request body over the limit of {self.max_bytes} bytes")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


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
        await send_error(
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
