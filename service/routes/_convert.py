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
    )
