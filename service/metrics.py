"""``GET /metrics``: Prometheus text format, from a registry per app (never prometheus_client's global one).

Metrics (all prefixed ``citesearch_``):

- ``requests_total{route,method,status}`` and ``request_duration_seconds{route,method}`` (histogram): every HTTP
  request, by route template (``/documents/{doc_id:path}``, not the path; ``unmatched`` for unknown paths, ``/static``
  for static files), recorded by ``service.observability.RequestLog``;
- ``requests_in_progress``, ``rate_limited_total``, ``request_timeouts_total``, ``abandoned_requests`` (requests
  answered 503 by the time limit whose worker is still running);
- ``index_info{version}`` (1 for the version served), ``index_loaded``, ``index_documents``, ``index_passages``:
  read from the served version's manifest at scrape time;
- ``update_queue``: document updates waiting to be applied. Whoever runs the update queue sets it:
  ``app.state.metrics.set_update_queue(n)`` (or ``app.state.metrics.update_queue.inc()/dec()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from service.security import require_read

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _IndexCollector(Collector):
    """The served index version and its counts, read when scraped (the version can change at any time)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        services = getattr(self.app.state, "services", None)
        info = InfoMetricFamily("citesearch_index", "The index version being served", labels=["version"])
        loaded = GaugeMetricFamily("citesearch_index_loaded", "1 when an index version is loaded and searchable")
        documents = GaugeMetricFamily("citesearch_index_documents", "Documents in the served index version")
        passages = GaugeMetricFamily("citesearch_index_passages", "Passages in the served index version")
        counts: dict[str, int] | None = None
        version: str | None = None
        if services is not None:
            try:
                lease = services.holder.acquire()
            except Exception:  # noqa: BLE001 - no index yet: report it as not loaded
                lease = None
            if lease is not None:
                try:
                    version = lease.index_version
                    counts = lease.store.counts
                finally:
                    lease.release()
        loaded.add_metric([], 1.0 if version is not None else 0.0)
        yield loaded
        if version is not None:
            info.add_metric([version], {"version": version})
            yield info
        if counts is not None:
            documents.add_metric([], float(counts.get("documents", 0)))
            passages.add_metric([], float(counts.get("passages", 0)))
            yield documents
            yield passages
        abandoned = getattr(self.app.state, "abandoned", None)
        pending = GaugeMetricFamily(
            "citesearch_abandoned_requests",
            "Requests answered 503 by the time limit whose worker thread is still running",
        )
        pending.add_metric([], float(len(abandoned) if abandoned is not None else 0))
        yield pending


class ServiceMetrics:
    """One app's metrics and its registry (``app.state.metrics``)."""

    def __init__(self, app: Any | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "citesearch_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "citesearch_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge("citesearch_requests_in_progress", "HTTP requests being served", registry=r)
        self.rate_limited = Counter(
            "citesearch_rate_limited", "Requests refused with 429 by the rate limit", registry=r
        )
        self.timeouts = Counter(
            "citesearch_request_timeouts", "Requests answered 503 by the request time limit", registry=r
        )
        self.update_queue = Gauge("citesearch_update_queue", "Document updates waiting to be applied", registry=r)
        if app is not None:
            r.register(_IndexCollector(app, self))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route, method=method).observe(seconds)

    def set_update_queue(self, size: int) -> None:
        """For the update queue: how many document updates wait to be applied."""
        self.update_queue.set(size)

    def render(self, app: Any | None = None) -> bytes:
        """The registry in Prometheus text format; the update queue is read from the journal at scrape time."""
        services = getattr(app.state, "services", None) if app is not None else None
        updates = getattr(services, "updates", None)
        if updates is not None:
            pending = updates.journal.counts()["pending"]
            self.set_update_queue(int(pending or 0))
        return generate_latest(self.registry)


router = APIRouter(include_in_schema=False)


@router.get("/metrics", dependencies=[Depends(require_read)])
def metrics(request: Request) -> Response:
    """Prometheus text format. Open like the read endpoints (a read key when CITESEARCH_REQUIRE_READ_KEY is set)."""
    app_metrics: ServiceMetrics = request.app.state.metrics
    return Response(app_metrics.render(request.app), media_type=CONTENT_TYPE_LATEST)
