"""Liveness, readiness and the small configuration the search page reads."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import ServicesDep
from service.models import HealthResponse, PageConfigResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
def health(services: ServicesDep) -> HealthResponse:
    """The process is up (whether or not an index is loaded)."""
    return HealthResponse(status="ok", index_version=services.holder.version)


@router.get("/ready", responses={503: {"model": ReadyResponse}})
def ready(services: ServicesDep, response: Response) -> ReadyResponse:
    """200 when an index version is loaded and searchable, 503 otherwise (load balancers route on this)."""
    version = services.holder.version
    if version is None:
        response.status_code = 503
        return ReadyResponse(
            status="not ready",
            index_version=None,
            reason=services.holder.last_error or f"no index published in {services.holder.describe_location()} yet",
        )
    # Still ready (serving a slightly older or in-memory repaired version beats serving nothing), but it says so.
    degraded = services.holder.degraded
    return ReadyResponse(
        status="ready",
        index_version=version,
        reason=degraded,
        published_version=services.holder.published_version(),
        fallback=degraded is not None,
        degraded=degraded,
    )


@router.get("/page-config")
def page_config(services: ServicesDep) -> PageConfigResponse:
    """Defaults and limits for the search page and the embeddable search box."""
    settings = services.settings
    return PageConfigResponse(
        index_version=services.holder.version,
        default_k=settings.default_k,
        max_k=settings.max_k,
        max_query_chars=settings.max_query_chars,
        per_doc_cap=settings.page_per_doc_cap,
    )
