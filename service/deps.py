"""FastAPI dependencies: the app's services, a lease on the current index version, and request checks.

Dependencies raise ``ApiError`` (service/errors.py; this is the HTTP layer); everything below them raises domain
errors. They are ``async def`` because none of them blocks (a dict lookup, a brief lock): FastAPI runs a sync
dependency in the thread pool, and those hops (two for a generator) cost more CPU per /search than the retrieval
itself once queries were fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from citesearch.settings import Settings
from service.errors import ApiError
from service.index_holder import IndexNotReady, Lease
from service.state import Services


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:  # only between startup and the end of the lifespan's setup
        raise ApiError(503, "the service is starting")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def lease_index(services: ServicesDep) -> AsyncIterator[Lease]:
    """Hold the current index version for the whole request: a version published meanwhile is swapped in for the
    next requests, and this one finishes on the version it started with."""
    try:
        lease = services.holder.acquire()
    except IndexNotReady as exc:
        raise ApiError(503, f"no index loaded: {exc}") from None
    try:
        yield lease
    finally:
        lease.release()


LeaseDep = Annotated[Lease, Depends(lease_index)]


async def require_json(request: Request) -> None:
    """POST bodies must be JSON. Without this a form or text body would surface as a confusing type error."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            f"send a JSON body with Content-Type: application/json (got {media_type or 'none'!r})",
            field="content-type",
        )


def check_limits(
    settings: Settings, *, text_field: str, text: str, k: int, offset: int = 0, max_k: int | None = None
) -> None:
    """Limits that come from configuration, so they cannot be static pydantic constraints."""
    max_k = settings.max_k if max_k is None else max_k
    if len(text) > settings.max_query_chars:
        raise ApiError(422, f"must be at most {settings.max_query_chars} characters, got {len(text)}", field=text_field)
    if k > max_k:
        raise ApiError(422, f"must be at most {max_k}, got {k}", field="k")
    if offset > settings.max_offset:
        raise ApiError(422, f"must be at most {settings.max_offset}, got {offset}", field="offset")
