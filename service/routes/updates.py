"""Live updates: ``POST /documents``, ``DELETE /documents/{doc_id}``, ``GET /updates/{seq}`` and ``GET /updates``.

A change is validated, journaled durably (fsynced) and answered 202 with its sequence number; the background writer
publishes it in a new index version (indexer/live_updates.py). Poll ``GET /updates/{seq}`` until ``status`` is
``"published"``: from then on searches on *this* server see the change. ``"published_elsewhere"``: a version holding
it is published (by the server that applies the journal), but this server does not serve it yet (it will at its
next reload); ``"pending"``: no published version holds it yet (or the one that did was lost to damage and the
change is being applied again).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, Field

from index_store import IndexStoreError
from indexer.live_updates import (
    Change,
    InvalidDocument,
    UpdateService,
    document_from_record,
    version_holds,
)
from indexer.records import MAX_ID_CHARS, RecordError, parse_record, record_json_schema
from service.deps import ServicesDep, require_json
from service.errors import ApiError
from service.index_holder import IndexNotReady
from service.models import ErrorResponse
from service.security import require_read, require_write
from service.state import Services

if TYPE_CHECKING:
    from index_store.milvus_store import MilvusStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["updates"])

# 401 (no key where one is needed, or an unknown key) and 403 (no write key configured, or a read key on a write)
# come from require_read / require_write (service/security.py).
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 503)
}
MAX_SEQ = 2**63 - 1  # SQLite's largest integer: a larger seq is a 422, not an overflow (500)


class AcceptedResponse(BaseModel):
    status: str = Field("accepted", description='Always "accepted": the changes are journaled and fsynced')
    seq: list[int] = Field(description="Journal sequence numbers, one per document, in request order")
    doc_ids: list[str]
    index_version: str | None = Field(description="The version served when the change was accepted")


class UpdateStatus(BaseModel):
    seq: int
    op: str = Field(description="upsert or delete")
    doc_id: str
    status: str = Field(
        description='"published" (the version this server searches holds the change), "published_elsewhere" (a '
        'published version holds it, this server does not serve that version yet) or "pending" (journaled, no '
        "published version holds it yet)"
    )
    accepted_at: str
    index_version: str | None = Field(description="The first index version holding the change, once published")
    published_at: str | None
    served_version: str | None = Field(description="The version this server searches now")


class UpdatesSummary(BaseModel):
    accepted: int
    pending: int
    last_seq: int | None
    last_applied_seq: int | None
    writer: dict[str, Any]
    served_version: str | None


def _updates(services: Services) -> UpdateService:
    updates: UpdateService | None = services.updates
    if updates is None and services.direct_writes:
        raise ApiError(503, "writes go straight to Milvus on this service: there is no update journal to ask")
    if updates is None:
        raise ApiError(503, "live updates are not running")
    return updates


def _invalid(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, message, field=field)


def _record(raw: Any, where: str, max_chars: int) -> dict[str, Any]:
    """A posted document validated as a ``DocumentRecord`` (indexer/records.py, the jsonl loader's model), as the
    record the journal stores. Over ``max_chars`` (CITESEARCH_MAX_DOCUMENT_CHARS) it is a 413: one huge document
    would otherwise hold the writer, and every update behind it, for minutes."""
    prefix = f"{where}." if where else ""
    try:
        record = parse_record(raw).model_dump()
    except RecordError as exc:
        field = (where or "body") if exc.field == "body" else f"{prefix}{exc.field}"
        raise _invalid(field, exc.message) from None
    if len(record["text"]) > max_chars:
        raise _invalid(
            f"{prefix}text",
            f"has {len(record['text']):,} characters; at most {max_chars:,} (CITESEARCH_MAX_DOCUMENT_CHARS)",
            413,
        )
    try:
        document_from_record(record)  # the indexer's parse: a text with nothing to index is refused now, not later
    except InvalidDocument as exc:
        raise _invalid(f"{prefix}{exc.field}", exc.message) from None
    return record


@router.post(
    "/documents",
    status_code=202,
    response_model=AcceptedResponse,
    responses=_ERRORS,
    dependencies=[Depends(require_write), Depends(require_json)],
    # The body's schema (DocumentRecord or DocumentBatch) for OpenAPI; the route validates it itself so that each
    # error names the field as "documents[1].text" and a batch's duplicates and size limit are checked too.
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": record_json_schema()}}}},
)
def post_documents(
    services: ServicesDep,
    body: Annotated[
        Any,
        Body(
            description='One document (`{"id", "title", "text", "url", "metadata"}`, `_id` '
            'also accepted) or a batch `{"documents": [...]}`'
        ),
    ],
) -> AcceptedResponse:
    """Add or replace documents. Answered 202 once the change is journaled and fsynced; the writer publishes it in
    a new index version shortly after (poll `GET /updates/{seq}`). On the Milvus store: 202 once Milvus
    acknowledged the write (no journal; `seq` is empty), searchable from then on by every replica."""
    if services.direct_writes:
        max_batch = services.settings.max_batch_documents
    else:
        max_batch = _updates(services).max_batch_documents
    max_chars = services.settings.max_document_chars
    if isinstance(body, dict) and "documents" in body:
        extra = sorted(set(body) - {"documents"})
        if extra:
            raise _invalid(extra[0], 'unknown field (a batch is {"documents": [...]})')
        items = body["documents"]
        if not isinstance(items, list):
            raise _invalid("documents", "must be a list of documents")
        if not items:
            raise _invalid("documents", "must hold at least one document")
        if len(items) > max_batch:
            raise _invalid(
                "documents",
                f"at most {max_batch} documents per request, got {len(items)}",
                status=413,
            )
        records = [_record(item, f"documents[{i}]", max_chars) for i, item in enumerate(items)]
        first: dict[str, int] = {}
        for i, record in enumerate(records):
            if record["id"] in first:
                raise _invalid(
                    f"documents[{i}].id", f"duplicate id {record['id']!r} (also documents[{first[record['id']]}])"
                )
            first[record["id"]] = i
    else:
        records = [_record(body, "", max_chars)]
    if services.direct_writes:
        from indexer.milvus_writes import upsert_records

        version = _write_direct(
            services, lambda store: upsert_records(store, records, services.embedder, services.settings)
        )
        return AcceptedResponse(seq=[], doc_ids=[r["id"] for r in records], index_version=version)
    seqs = _accept(_updates(services), [("upsert", r["id"], r) for r in records])
    return AcceptedResponse(seq=seqs, doc_ids=[r["id"] for r in records], index_version=services.holder.version)


@router.delete(
    "/documents/{doc_id:path}",
    status_code=202,
    response_model=AcceptedResponse,
    responses=_ERRORS,
    dependencies=[Depends(require_write)],
)
def delete_document(doc_id: str, services: ServicesDep) -> AcceptedResponse:
    """Remove a document. 404 if neither the served index nor a pending change has it; else 202 once journaled
    (on the Milvus store: once Milvus acknowledged the delete)."""
    if "\x00" in doc_id or len(doc_id) > MAX_ID_CHARS:
        raise _invalid("doc_id", f"must be at most {MAX_ID_CHARS} printable characters")
    if services.direct_writes:
        from indexer.milvus_writes import delete_document as delete_from_milvus

        found: list[bool] = []
        version = _write_direct(services, lambda store: found.append(delete_from_milvus(store, doc_id)))
        if not found[0]:
            raise _invalid("doc_id", f"no document {doc_id!r} in index {version}", 404)
        return AcceptedResponse(seq=[], doc_ids=[doc_id], index_version=version)
    updates = _updates(services)
    latest = updates.journal.latest_for(doc_id)
    known = latest is not None and not latest.published  # a change not yet published decides
    if not known:
        try:
            with services.holder.acquire() as lease:
                known = lease.store.document(doc_id) is not None
        except IndexNotReady:  # no index loaded yet: only the journal can know the document
            known = False
    if not known:
        raise _invalid("doc_id", f"no document {doc_id!r} in index {services.holder.version} or pending", 404)
    seqs = _accept(updates, [("delete", doc_id, None)])
    return AcceptedResponse(seq=seqs, doc_ids=[doc_id], index_version=services.holder.version)


def _write_direct(services: Services, write: Callable[[MilvusStore], object]) -> str:
    """Run a write against the served Milvus version; returns that version. Milvus unreachable: 503, nothing
    acknowledged."""
    from index_store.milvus_store import MilvusStore

    try:
        with services.holder.acquire() as lease:
            store = lease.store
            if not isinstance(store, MilvusStore):  # pragma: no cover - direct writes are on only with Milvus
                raise ApiError(503, "direct writes need the Milvus store")
            try:
                write(store)
            except IndexStoreError as exc:
                log.error("Milvus write failed: %s", exc)
                raise ApiError(503, f"Milvus did not acknowledge the write ({exc}); retry later") from None
            return lease.index_version
    except IndexNotReady as exc:
        raise ApiError(503, f"no index loaded: {exc}") from None


def _accept(updates: UpdateService, changes: list[tuple[str, str, dict[str, Any] | None]]) -> list[int]:
    try:
        return updates.accept(changes)
    except (OSError, sqlite3.Error) as exc:  # a full disk, a read-only index folder
        log.error("cannot journal %d change(s) in %s: %s", len(changes), updates.journal.path, exc)
        raise ApiError(503, f"cannot journal the change ({exc}); nothing was accepted, retry later") from None


def _status(change: Change, services: Services, journal_id: str) -> UpdateStatus:
    try:
        with services.holder.acquire() as lease:
            served = lease.reader.manifest
    except IndexNotReady:
        served = None
    if version_holds(served, change, journal_id):
        status = "published"
    else:
        status = "published_elsewhere" if change.published else "pending"
    return UpdateStatus(
        seq=change.seq,
        op=change.op,
        doc_id=change.doc_id,
        status=status,
        accepted_at=change.accepted_at,
        index_version=change.applied_version,
        published_at=change.applied_at,
        served_version=None if served is None else served.version,
    )


@router.get("/updates/{seq}", response_model=UpdateStatus, responses=_ERRORS, dependencies=[Depends(require_read)])
def get_update(seq: Annotated[int, Path(ge=1, le=MAX_SEQ)], services: ServicesDep) -> UpdateStatus:
    """Whether change ``seq`` is published on this server, and in which index version."""
    journal = _updates(services).journal
    change = journal.get(seq)
    if change is None:
        raise _invalid("seq", f"no update {seq} in the journal", 404)
    return _status(change, services, journal.journal_id)


@router.get("/updates", response_model=UpdatesSummary, responses=_ERRORS, dependencies=[Depends(require_read)])
def get_updates(services: ServicesDep) -> UpdatesSummary:
    """Journal counts and the writer's state (idle, applying, waiting_for_lock, error, standby)."""
    updates = _updates(services)
    return UpdatesSummary(
        **updates.journal.counts(),
        writer=updates.writer.status.to_dict(),
        served_version=services.holder.version,
    )
