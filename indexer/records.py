"""The document record: one document as JSON, the same for a jsonl line of ``citesearch index`` and for the body of
``POST /documents`` (validated once, here, and shown in the OpenAPI schema).

    {"id": "note-1", "title": "...", "text": "...", "url": "https://...", "metadata": {...}}

``_id`` is accepted for ``id`` (the BEIR corpus.jsonl shape); an id may be a JSON string or integer. ``parse_record``
turns any JSON value into a ``DocumentRecord`` or raises ``RecordError`` naming the field at fault, which the loader
reports as a skipped line and the HTTP API as a 422.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Longest document id, in characters: ids are stored, logged and put in URLs (/documents/{doc_id}).
MAX_ID_CHARS = 512
FIELDS = ("id", "title", "text", "url", "metadata")
_REQUIRED = {"id": 'is required: "_id" or "id", a string or an integer', "text": "is required: the document's text"}


class RecordError(ValueError):
    """A record that is not a valid document; ``field`` names the field at fault ("id", "metadata", ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _is_text(value: str) -> bool:
    """Storable text: no NUL and no lone surrogate (which JSON can carry but UTF-8 cannot store)."""
    return "\x00" not in value and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)


def _visible(text: str) -> bool:
    """Whether ``text`` has a character that is neither whitespace nor a format character (Unicode Cf)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


class DocumentRecord(BaseModel):
    """One document to index. Unknown fields are refused, so a misspelt field is an error, not silently lost."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"description": 'One document; "_id" is accepted for "id" (BEIR corpus.jsonl).'},
    )

    id: str = Field(description=f"The document id: a string or an integer, at most {MAX_ID_CHARS} characters")
    title: str | None = Field(None, description="The title (default: the page's first line, or the id)")
    text: str = Field(description="The document text; a news page is split into article, author and comments")
    url: str | None = Field(None, description="Where the document can be read")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Any JSON object, stored and returned as is")

    @model_validator(mode="before")
    @classmethod
    def _accept_underscore_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "_id" in data:
            data = dict(data)
            underscore = data.pop("_id")
            if underscore is not None or "id" not in data:
                data["id"] = underscore
        return data

    @field_validator("id", mode="before")
    @classmethod
    def _check_id(cls, value: Any) -> str:
        if value is None:
            raise ValueError('is required: "_id" or "id", a string or an integer')
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError('("_id" or "id") must be a string or an integer')
        text = str(value)
        if not text.strip():
            raise ValueError("must not be empty or blank")
        if len(text) > MAX_ID_CHARS or not _is_text(text) or any(ord(ch) < 32 for ch in text):
            raise ValueError(f"must be at most {MAX_ID_CHARS} printable characters")
        return text

    @field_validator("text", mode="before")
    @classmethod
    def _check_text(cls, value: Any) -> str:
        if value is None:
            raise ValueError("is required: the document's text")
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not _visible(value):  # zero-width and other format characters alone are as blank as spaces
            raise ValueError("must not be empty or blank (format characters such as U+200B do not count)")
        if not _is_text(value):
            raise ValueError("must be valid Unicode text without NUL characters")
        return value

    @field_validator("title", "url", mode="before")
    @classmethod
    def _check_optional_text(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value if value.strip() else None  # blank: as if absent (the title falls back, no url)

    @field_validator("metadata", mode="before")
    @classmethod
    def _check_metadata(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value


class DocumentBatch(BaseModel):
    """Several documents in one request (at most CITESEARCH_MAX_BATCH_DOCUMENTS)."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentRecord] = Field(min_length=1)


def parse_record(raw: Any, *, ignore_unknown: bool = False) -> DocumentRecord:
    """``raw`` (parsed JSON) as a record, or ``RecordError`` for its first problem. ``ignore_unknown``: drop fields
    that are not a document's (a jsonl file may carry more than citesearch reads) instead of refusing them."""
    if not isinstance(raw, Mapping):
        raise RecordError("body", f"must be a JSON object with {', '.join(FIELDS)}")
    if ignore_unknown:
        raw = {name: value for name, value in raw.items() if name in FIELDS or name == "_id"}
    try:
        return DocumentRecord.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "missing":
            message = _REQUIRED.get(field, "is required")
        elif error["type"] == "extra_forbidden":
            message = f"unknown field (a document has _id or {', '.join(FIELDS)})"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        raise RecordError(field, message) from None


def record_json_schema() -> dict[str, Any]:
    """The ``POST /documents`` body for OpenAPI: one record or a batch, with the record inlined (no ``$defs``)."""
    record = DocumentRecord.model_json_schema()
    batch = DocumentBatch.model_json_schema()
    batch.pop("$defs", None)
    batch["properties"]["documents"]["items"] = record
    return {"anyOf": [record, batch]}
