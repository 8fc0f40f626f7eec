"""``GET /documents/{doc_id}``: the stored document and its parts, so any citation's span can be shown."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from citesearch.answer import citation_label
from service.deps import LeaseDep
from service.errors import ApiError
from service.models import DocumentResponse, ErrorResponse, PartOut
from service.security import require_read

router = APIRouter(tags=["documents"])


@router.get(
    "/documents/{doc_id:path}",
    responses={code: {"model": ErrorResponse} for code in (401, 404, 503)},
    dependencies=[Depends(require_read)],
)
def get_document(doc_id: str, lease: LeaseDep) -> DocumentResponse:
    """The document's exact text (every citation's ``char_start``/``char_end`` index into it) and its parts."""
    document = lease.store.document(doc_id) if "\x00" not in doc_id else None
    if document is None:
        raise ApiError(404, f"no document {doc_id!r} in index {lease.index_version}", field="doc_id")
    parts = sorted(document.units, key=lambda u: u.char_start)
    return DocumentResponse(
        index_version=lease.index_version,
        doc_id=document.doc_id,
        title=document.title,
        source=document.source,
        url=document.url,
        metadata=document.metadata,
        text=document.text,
        parts=[
            PartOut(
                section=u.section,
                comment_no=u.comment_no,
                char_start=u.char_start,
                char_end=u.char_end,
                label=citation_label(u),
                comment_author=u.comment_author,
                comment_date=u.comment_date,
                comment_date_iso=u.comment_date_iso,
                parent=u.parent,
                depth=u.depth if u.section == "comment" else None,
            )
            for u in parts
        ],
    )
