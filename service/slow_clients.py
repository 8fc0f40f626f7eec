"""A time limit on reading a request's headers, which uvicorn lacks.

uvicorn times out idle keep-alive connections, but a connection that has sent part of a request line or headers
(slowloris: a byte every few seconds) is never closed: its keep-alive timer is cancelled by every byte received,
and a fresh connection has none at all. So each connection gets a deadline here: ``CITESEARCH_HEADER_TIMEOUT_SECONDS``
after it opens, or after its previous response, its headers must be complete, otherwise it is closed. Reading the
body and computing the response are not limited here (``CITESEARCH_REQUEST_TIMEOUT_SECONDS`` bounds the latter).

The limit is a subclass of uvicorn's own HTTP protocol (httptools when installed, which is uvicorn's default, else
h11), passed as ``uvicorn.Config(http=...)``; the seconds come from ``ServeConfig.header_timeout``. Both are
module-level classes so that ``--workers`` can hand the configuration to its worker processes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a uvicorn[standard] extra
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)


class ServeConfig(uvicorn.Config):
    """uvicorn's configuration plus the header deadline (seconds; 0: none)."""

    def __init__(self, app: Any, *, header_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(app, **options)
        self.header_timeout = header_timeout


class _HeaderDeadline:
    """The deadline logic shared by both protocol subclasses."""

    _header_timer: asyncio.TimerHandle | None = None
    config: Any
    transport: Any
    loop: Any
    client: Any
    cycle: Any

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        seconds = float(getattr(self.config, "header_timeout", 0) or 0)
        if seconds > 0 and not self.transport.is_closing() and not self._request_in_progress():
            self._header_timer = self.loop.call_later(seconds, self._header_deadline_passed, seconds)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _request_in_progress(self) -> bool:
        """A request whose headers are in is being answered (a pipelined one may start as the last one ends)."""
        cycle = getattr(self, "cycle", None)
        return cycle is not None and not cycle.response_complete

    def _header_deadline_passed(self, seconds: float) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and not self._request_in_progress():
            host = self.client[0] if self.client else "unknown"
            log.info("closing a connection from %s: no complete request headers within %.0fs", host, seconds)
            self.transport.close()


class H11WithDeadline(_HeaderDeadline, H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in_progress():  # a request's headers are in
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


if HttpToolsProtocol is not None:

    class HttpToolsWithDeadline(_HeaderDeadline, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_headers_complete(self) -> None:
            self._cancel_header_deadline()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            super().connection_lost(exc)


def protocol_class() -> type[asyncio.Protocol]:
    """The protocol uvicorn would pick ("auto": httptools if installed), with the header deadline."""
    return HttpToolsWithDeadline if HttpToolsProtocol is not None else H11WithDeadline
