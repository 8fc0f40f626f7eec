"""Conversions from ``citesearch`` results to response models, shared by the search and ask routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from citesearch.answer import ScoredSentence, citation_label
from citesearch.search import Hit
from service.models import CitationOut, SearchHitOut, SpanOut


def hit_out(hit: Hit, highlight: Sequence[ScoredSentence]) -> SearchHitOut:
    citation = hit.citation
    return SearchHitOut(
        rank=hit.rank,
        score=round(hit.score, 6),
        text=hit.text,
        citation=CitationOut.model_validate(citation, from_attributes=True),
        label=citation_label(citation),
        highlight=[SpanOut(start=s.start, end=s.end, score=round(s.score, 6)) for s in highlight],
        explain=asdict(hit.explain) if hit.explain is not None else None,
        also_in=list(hit.also_in),
    )


def date_filters(params: object) -> dict[str, object]:
    """The request's date, recency and duplicate fields, as ``SearchRequest`` takes them."""
    names = ("published_after", "published_before", "recency", "as_of", "collapse_duplicates")
    return {name: getattr(params, name) for name in names}
