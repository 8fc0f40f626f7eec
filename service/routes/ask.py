"""``POST /ask``: an extractive answer, quoted sentences each followed by [n], with exact citations."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from citesearch.answer import answer_with_settings
from service.deps import LeaseDep, ServicesDep, check_limits, require_json
from service.models import AnswerCitationOut, AnswerSentenceOut, AskRequest, AskResponse
from service.routes._convert import date_filters, hit_out
from service.routes.search import ERRORS, READ_LIMITED

router = APIRouter(tags=["answers"])


@router.post("/ask", responses=ERRORS, dependencies=[*READ_LIMITED, Depends(require_json)])
def ask(body: AskRequest, services: ServicesDep, lease: LeaseDep) -> AskResponse:
    """Answer from the best sentences of the top passages; ``answer`` is null with a ``reason`` when nothing in
    the index is relevant enough (see docs/evaluation.md on the threshold). Questions about what readers said are
    answered from reader comments only, and each such citation has ``reader_comment: true``."""
    started = time.perf_counter()
    settings = services.settings
    k = body.k if body.k is not None else settings.answer_passages
    # Every passage an answer draws on has its sentences embedded, so /ask takes fewer passages than /search.
    check_limits(settings, text_field="question", text=body.question, k=k, max_k=settings.answer_max_passages)
    outcome = answer_with_settings(
        lease.searcher,
        services.scorer,
        body.question,
        settings,
        k=k,
        section=body.section,
        doc_id=body.doc_id,
        mode=body.mode,
        per_doc_cap=body.per_doc_cap,
        filters=date_filters(body),
    )
    answer = outcome.answer
    position = {hit.passage_id: i for i, hit in enumerate(outcome.hits)}
    passages = []
    for hit in answer.passages:
        # Highlight the quoted sentences of each passage used, so the page shows where the answer came from.
        quoted = {
            (c.char_start - hit.citation.char_start, c.char_end - hit.citation.char_start)
            for c in answer.citations
            if c.passage_id == hit.passage_id
        }
        spans = [s for s in outcome.scored[position[hit.passage_id]] if (s.start, s.end) in quoted]
        passages.append(hit_out(hit, spans))
    return AskResponse(
        question=body.question,
        index_version=outcome.result.index_version,
        answer=answer.text,
        reason=answer.reason,
        reader_question=answer.reader_question,
        threshold=answer.threshold,
        best_score=None if answer.best_score is None else round(answer.best_score, 6),
        sentences=[AnswerSentenceOut(text=s.text, citation=s.citation) for s in answer.sentences],
        citations=[AnswerCitationOut.model_validate(c, from_attributes=True) for c in answer.citations],
        passages=passages,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
