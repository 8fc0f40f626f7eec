"""``GET /search`` and ``POST /search``: ranked passages with citations and highlighted sentences."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from citesearch.answer import highlight_result
from citesearch.search import SearchRequest
from service.deps import LeaseDep, ServicesDep, check_limits, require_json
from service.index_holder import Lease
from service.limits import rate_limit
from service.models import ErrorResponse, SearchBody, SearchQuery, SearchResponse
from service.routes._convert import date_filters, hit_out
from service.security import require_read
from service.state import Services

router = APIRouter(tags=["search"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 429, 503)
}
# Who may read (service/security.py), then the per-client rate limit (service/limits.py).
READ_LIMITED = [Depends(require_read), Depends(rate_limit)]


def _search(params: SearchQuery, services: Services, lease: Lease) -> SearchResponse:
    started = time.perf_counter()
    settings = services.settings
    k = params.k if params.k is not None else settings.default_k
    check_limits(settings, text_field="q", text=params.q, k=k, offset=params.offset)
    fields: dict[str, Any] = {
        "query": params.q,
        "k": k,
        "offset": params.offset,
        "section": params.section,
        "doc_id": params.doc_id,
        "explain": params.explain,
        "per_doc_cap": params.per_doc_cap if params.per_doc_cap is not None else settings.per_doc_cap,
        **date_filters(params),
    }
    if params.mode is not None:  # otherwise SearchRequest's own default mode applies, as in the CLI
        fields["mode"] = params.mode
    result = lease.searcher.search(SearchRequest(**fields))
    highlights = highlight_result(
        result,
        services.scorer,
        max_sentences=settings.highlight_max_sentences,
        margin=settings.highlight_margin,
        budget=settings.highlight_encode_budget,
    )
    return SearchResponse(
        query=result.query,
        index_version=result.index_version,
        mode=result.mode,
        k=k,
        offset=params.offset,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        results=[hit_out(hit, spans) for hit, spans in zip(result.hits, highlights, strict=True)],
    )


@router.get("/search", responses=ERRORS, dependencies=READ_LIMITED)
def search_get(params: Annotated[SearchQuery, Query()], services: ServicesDep, lease: LeaseDep) -> SearchResponse:
    """Ranked passages for a question, in the shape of ``citesearch search --json`` plus highlights."""
    return _search(params, services, lease)


@router.post("/search", responses=ERRORS, dependencies=[*READ_LIMITED, Depends(require_json)])
def search_post(body: SearchBody, services: ServicesDep, lease: LeaseDep) -> SearchResponse:
    """The same as ``GET /search`` with the fields in a JSON body."""
    return _search(body, services, lease)
