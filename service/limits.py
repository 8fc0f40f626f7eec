"""Per-client rate limit (``/search``, ``/ask``); the request time limit is in service/middleware.py.

Rate limit: a token bucket per client, holding ``CITESEARCH_RATE_LIMIT_BURST`` tokens and refilled at
``CITESEARCH_RATE_LIMIT_PER_MINUTE``/60 per second. The client is the API key's name when a valid key was sent,
otherwise the connection's IP address (behind a reverse proxy, run uvicorn with ``--proxy-headers`` /
``--forwarded-allow-ips`` so that is the real client). An empty bucket answers 429 with ``Retry-After`` (whole
seconds until a token is back).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from service.errors import ApiError

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
        raise ApiError(
            429,
            f"too many requests: the limit is {limiter.rate * 60:g} per minute (bursts of {limiter.burst:g}); "
            f"retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
