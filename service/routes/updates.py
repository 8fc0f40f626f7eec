"""Live updates: ``POST /documents``, ``DELETE /documents/{doc_id}``, ``GET /updates/{seq}`` and ``GET /updates``.

A change is validated, journaled durably (fsynced) and answered 202 with its sequence number; the background writer
publishes it in a new index version (service/updates.py). Poll ``GET /updates/{seq}`` until ``status`` is
``"published"``: from then on searches on *this* server see the change. ``"published_elsewhere"``: a version holding
it is published (by the server that applies the journal), but this server does not serve it yet (it will at its
next reload); ``"pending"``: no published version holds it yet (or the one that did was lost to damage and the
change is being applied again).
"""

from __future__ import annotations

import logging
import sqlite3
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from service.deps import ServicesDep, require_json
from service.index_holder import IndexNotReady
from service.models import ErrorResponse
from service.security import require_read, require_write
from service.state import Services
from service.updates import (
    MAX_ID_CHARS,
    Change,
    InvalidDocument,
    UpdateService,
    document_from_record,
    version_holds,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["updates"])

# 401 (no key where one is needed, or an unknown key) and 403 (no write key configured, or a read key on a write)
# come from require_read / require_write (service/security.py).
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 503)
}
_FIELDS = {"_id", "id", "title", "text", "url", "metadata"}
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
    updates = getattr(services, "updates", None)
    if updates is None:
        raise HTTPException(503, detail={"field": None, "message": "live updates are not running"})
    return updates


def _invalid(field: str, message: str, status: int = 422) -> HTTPException:
    return HTTPException(status, detail={"field": field, "message": message})


def _visible(text: str) -> bool:
    """Whether ``text`` has a character that is neither whitespace nor a format character (Unicode Cf)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def _record(raw: Any, where: str, max_chars: int) -> dict[str, Any]:
    """A posted document checked field by field (the jsonl shape), as the record the journal stores."""
    prefix = f"{where}." if where else ""
    if not isinstance(raw, dict):
        raise _invalid(where or "body", "must be a JSON object with id, title, text, url, metadata")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _invalid(f"{prefix}{unknown[0]}", f"unknown field (a document has {', '.join(sorted(_FIELDS))})")
    raw_id = raw.get("_id") if raw.get("_id") is not None else raw.get("id")
    if raw_id is None:
        raise _invalid(f"{prefix}id", 'is required: "_id" or "id", a string or an integer')
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise _invalid(f"{prefix}id", "must be a string or an integer")
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise _invalid(f"{prefix}id", "must not be empty or blank")
    if len(doc_id) > MAX_ID_CHARS or any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in doc_id):
        raise _invalid(f"{prefix}id", f"must be at most {MAX_ID_CHARS} printable characters")
    text = raw.get("text")
    if text is None:
        raise _invalid(f"{prefix}text", "is required: the document's text")
    if not isinstance(text, str):
        raise _invalid(f"{prefix}text", "must be a string")
    if not _visible(text):  # zero-width and other format characters alone are as blank as spaces
        raise _invalid(f"{prefix}text", "must not be empty or blank (format characters such as U+200B do not count)")
    if len(text) > max_chars:
        raise _invalid(
            f"{prefix}text", f"has {len(text):,} characters; at most {max_chars:,} (CITESEARCH_MAX_DOCUMENT_CHARS)", 413
        )
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text) or "\x00" in text:
        raise _invalid(f"{prefix}text", "must be valid Unicode text without NUL characters")
    for name in ("title", "url"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise _invalid(f"{prefix}{name}", "must be a string")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _invalid(f"{prefix}metadata", "must be a JSON object")
    record = {"id": doc_id, "title": raw.get("title"), "text": text, "url": raw.get("url"), "metadata": metadata or {}}
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
    a new index version shortly after (poll `GET /updates/{seq}`)."""
    updates = _updates(services)
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
        if len(items) > updates.max_batch_documents:
            raise _invalid(
                "documents",
                f"at most {updates.max_batch_documents} documents per request, got {len(items)}",
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
    seqs = _accept(updates, [("upsert", r["id"], r) for r in records])
    return AcceptedResponse(seq=seqs, doc_ids=[r["id"] for r in records], index_version=services.holder.version)


@router.delete(
    "/documents/{doc_id:path}",
    status_code=202,
    response_model=AcceptedResponse,
    responses=_ERRORS,
    dependencies=[Depends(require_write)],
)
def delete_document(doc_id: str, services: ServicesDep) -> AcceptedResponse:
    """Remove a document. 404 if neither the served index nor a pending change has it; else 202 once journaled."""
    updates = _updates(services)
    if "\x00" in doc_id or len(doc_id) > MAX_ID_CHARS:
        raise _invalid("doc_id", f"must be at most {MAX_ID_CHARS} printable characters")
    latest = updates.journal.latest_for(doc_id)
    known = latest is not None and not latest.published  # a change not yet published decides
    if not known:
        try:
            with services.holder.acquire() as lease:
                known = lease.reader.document(doc_id) is not None
        except IndexNotReady:  # no index loaded yet: only the journal can know the document
            known = False
    if not known:
        raise _invalid("doc_id", f"no document {doc_id!r} in index {services.holder.version} or pending", 404)
    seqs = _accept(updates, [("delete", doc_id, None)])
    return AcceptedResponse(seq=seqs, doc_ids=[doc_id], index_version=services.holder.version)


def _accept(updates: UpdateService, changes: list[tuple[str, str, dict[str, Any] | None]]) -> list[int]:
    try:
        return updates.accept(changes)
    except (OSError, sqlite3.Error) as exc:  # a full disk, a read-only index folder
        log.error("cannot journal %d change(s) in %s: %s", len(changes), updates.journal.path, exc)
        raise HTTPException(
            503,
            detail={"field": None, "message": f"cannot journal the change ({exc}); nothing was accepted, retry later"},
        ) from None


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
        writer=updates.writer.status.to_dict(),  # type: ignore[arg-type]
        served_version=services.holder.version,
    )
