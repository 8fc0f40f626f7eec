"""Request and response models of the HTTP API (pydantic). They only describe the wire format; search and answer
logic live in ``citesearch``.

Text fields accept any Unicode. Control characters (NUL included) in a question are turned into spaces, because they
carry no meaning for search and some tokenizers choke on them; unpaired surrogates (possible in JSON ``\\ud800``
escapes) are not text at all and are refused with a 422 naming the field. Limits that depend on configuration
(query length, ``k``, ``offset``) are checked in the routes against ``Settings``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from citesearch.search import Mode
from indexer.documents import Section

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Refuse unpaired surrogates; replace control characters (NUL, escape, ...) with spaces."""
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode text (it contains an unpaired surrogate)")
    return _CONTROL.sub(" ", value)


def _clean_question(value: str) -> str:
    value = clean_text(value)
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


def _clean_id(value: str | None) -> str | None:
    if value is not None and _SURROGATE.search(value):
        raise ValueError("must be valid Unicode text (it contains an unpaired surrogate)")
    return value


# -- requests ----------------------------------------------------------------------------------------------------
# The date and duplicate options of /search (GET and POST) and /ask, declared once.
PublishedAfter = Annotated[
    str | None,
    Field(description="Only documents published on or after this date (ISO 8601); undated documents are left out"),
]
PublishedBefore = Annotated[
    str | None,
    Field(description="Only documents published on or before this date (ISO 8601; a day includes all of it)"),
]
Recency = Annotated[bool, Field(description="Favour documents published shortly before as_of (hybrid mode)")]
AsOf = Annotated[str | None, Field(description="The date recency is measured from (ISO 8601; default: now)")]
CollapseDuplicates = Annotated[
    bool, Field(description="One hit per cluster of duplicate stories, the others listed in also_in; false: every copy")
]


class SearchQuery(BaseModel):
    """``GET /search`` query parameters (unknown parameters are ignored, as usual for URLs)."""

    q: str = Field(..., description="The question or keywords", examples=["what conditions did Aliyev set?"])
    k: int | None = Field(None, ge=1, description="Number of results (default 10, at most max_k)")
    offset: int = Field(0, ge=0, description="Skip this many results (paging)")
    section: Section | None = Field(None, description="Only passages of this part of a document")
    doc_id: str | None = Field(None, description="Only passages of this document")
    mode: Mode | None = Field(None, description="Retrieval mode; default: the searcher's default")
    explain: bool = Field(False, description="Add each ranking's rank and score per result")
    per_doc_cap: int | None = Field(None, ge=1, description="At most this many passages of one document")
    published_after: PublishedAfter = None
    published_before: PublishedBefore = None
    recency: Recency = False
    as_of: AsOf = None
    collapse_duplicates: CollapseDuplicates = True

    @field_validator("q")
    @classmethod
    def _valid_q(cls, value: str) -> str:
        return _clean_question(value)

    @field_validator("doc_id")
    @classmethod
    def _valid_doc_id(cls, value: str | None) -> str | None:
        return _clean_id(value)


class SearchBody(SearchQuery):
    """``POST /search`` JSON body: the same fields; unknown fields are an error (a typo should not be ignored)."""

    model_config = ConfigDict(extra="forbid")


class AskRequest(BaseModel):
    """``POST /ask`` JSON body."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., description="A natural-language question", examples=["what conditions did Aliyev set?"])
    k: int | None = Field(None, ge=1, description="Top passages to draw from (default 5, at most 20)")
    section: Section | None = Field(None, description="Only this part of documents (default: chosen by question)")
    doc_id: str | None = Field(None, description="Only this document")
    mode: Mode | None = Field(None, description="Retrieval mode; default: the searcher's default")
    per_doc_cap: int | None = Field(None, ge=1, description="At most this many passages of one document")
    published_after: PublishedAfter = None
    published_before: PublishedBefore = None
    recency: Recency = False
    as_of: AsOf = None
    collapse_duplicates: CollapseDuplicates = True

    @field_validator("question")
    @classmethod
    def _valid_question(cls, value: str) -> str:
        return _clean_question(value)

    @field_validator("doc_id")
    @classmethod
    def _valid_doc_id(cls, value: str | None) -> str | None:
        return _clean_id(value)


# -- responses ---------------------------------------------------------------------------------------------------
class CitationOut(BaseModel):
    doc_id: str
    title: str
    source: str
    section: str
    comment_no: int | None
    char_start: int = Field(description="Start of the passage in the document text")
    char_end: int = Field(description="End of the passage in the document text (exclusive)")
    url: str | None = Field(None, description="The document's URL, when it has one")
    comment_author: str | None = Field(None, description="The reader comment's author as the page shows it")
    comment_date: str | None = Field(None, description="The reader comment's date as the page shows it")
    comment_date_iso: str | None = Field(None, description="That date in ISO 8601, where it parses")
    parent: int | None = Field(None, description="Number of the comment this reader comment replies to")
    depth: int | None = Field(None, description="Reply depth of the comment: 0 top level, 1 a reply, …")
    author: str | None = Field(None, description="The article's byline author")
    published: str | None = Field(None, description="The article's published date, ISO 8601")
    site_name: str | None = Field(None, description="The site the page comes from")


class SpanOut(BaseModel):
    start: int = Field(description="Start within the passage text")
    end: int = Field(description="End within the passage text (exclusive)")
    score: float = Field(
        description="Cosine similarity of the sentence to the question; for passages past the per-request embedding "
        "budget (highlight_encode_budget), the share of the question's words in the sentence"
    )


class SearchHitOut(BaseModel):
    rank: int
    score: float
    text: str
    citation: CitationOut
    label: str = Field(description='The part of the document: "Article", "Author bio", "Reader comment 3"')
    highlight: list[SpanOut] = Field(description="The sentence(s) that best answer the question")
    explain: dict[str, float | int | None] | None = None
    also_in: list[str] = Field(
        default_factory=list,
        description="Other documents holding the same story (duplicates collapsed into this hit); "
        "collapse_duplicates=false lists them as hits of their own",
    )


class SearchResponse(BaseModel):
    query: str
    index_version: str
    mode: str
    k: int
    offset: int
    took_ms: float
    results: list[SearchHitOut]


class AnswerCitationOut(BaseModel):
    number: int = Field(description="n of the marker [n] in the answer")
    doc_id: str
    title: str
    source: str
    url: str | None
    section: str
    comment_no: int | None
    char_start: int = Field(description="Start of the quote in the document text")
    char_end: int = Field(description="End of the quote in the document text (exclusive)")
    quote: str = Field(description="Exactly the document text at [char_start, char_end)")
    label: str
    reader_comment: bool = Field(description="True when the quote is a reader comment, not the article")
    passage_rank: int
    score: float
    comment_author: str | None = Field(None, description="The reader comment's author as the page shows it")
    comment_date: str | None = Field(None, description="The reader comment's date as the page shows it")
    comment_date_iso: str | None = Field(None, description="That date in ISO 8601, where it parses")
    parent: int | None = Field(None, description="Number of the comment this reader comment replies to")
    published: str | None = Field(None, description="The document's published date, ISO 8601 (null: unknown)")


class AnswerSentenceOut(BaseModel):
    text: str
    citation: int


class AskResponse(BaseModel):
    question: str
    index_version: str
    answer: str | None = Field(description="Quoted sentences, each followed by [n]; null when nothing relevant")
    reason: str | None = Field(description="Why there is no answer (null when there is one)")
    reader_question: bool = Field(description="Answered from reader comments only")
    threshold: float
    best_score: float | None
    sentences: list[AnswerSentenceOut]
    citations: list[AnswerCitationOut]
    passages: list[SearchHitOut] = Field(description="The passages the quoted sentences come from")
    took_ms: float


class PartOut(BaseModel):
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    label: str
    comment_author: str | None = None
    comment_date: str | None = None
    comment_date_iso: str | None = None
    parent: int | None = None
    depth: int | None = None


class DocumentResponse(BaseModel):
    index_version: str
    doc_id: str
    title: str
    source: str
    url: str | None
    metadata: dict[str, Any]
    text: str
    parts: list[PartOut]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    index_version: str | None


class ReadyResponse(BaseModel):
    status: Literal["ready", "not ready"]
    index_version: str | None
    reason: str | None = None
    published_version: str | None = Field(None, description="The version CURRENT names (differs on a fallback)")
    fallback: bool = Field(False, description="True when the published version could not be served as it is")
    degraded: str | None = Field(
        None, description="Why: the published version that was passed over, or the files rebuilt in memory"
    )


class PageConfigResponse(BaseModel):
    """What the search page needs to know about this service's configuration."""

    index_version: str | None
    default_k: int
    max_k: int
    max_query_chars: int
    per_doc_cap: int | None


class ErrorDetail(BaseModel):
    field: str | None = Field(description="The request field at fault (null when not about one field)")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
    errors: list[ErrorDetail] = Field(default_factory=list, description="Every problem found, first one above")
    index_version: str | None = None
