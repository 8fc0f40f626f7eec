"""Answer extraction and highlights (citesearch.answer), on hand-made hits and with the real model."""

from __future__ import annotations

from typing import Any

import pytest

from citesearch.answer import (
    ScoredSentence,
    SentenceScorer,
    apply_plan,
    extract_answer,
    highlight,
    is_reader_question,
    lexical_score,
    plan_ask,
)
from citesearch.search import Citation, Hit

DOC = (
    "Aliyev spoke in Budapest.\n"
    "However, Aliyev outlined two primary conditions:\n\n"
    "  • Constitutional amendments in Armenia: no claims. He argued more.\n"
    "  • Dissolution of the OSCE Minsk Group: obsolete. He emphasized it.\n\n"
    "Aliyev also addressed other things.\n"
)


def _hit(
    rank: int,
    start: int,
    end: int,
    *,
    section: str = "article",
    comment_no: int | None = None,
    doc_id: str = "d1",
    text: str = DOC,
) -> Hit:
    citation = Citation(
        doc_id=doc_id, title="T", source="s", section=section, comment_no=comment_no, char_start=start, char_end=end
    )
    return Hit(rank=rank, score=1.0 / rank, passage_id=rank, text=text[start:end], citation=citation)


def _scored(hit: Hit, scores: dict[str, float]) -> list[ScoredSentence]:
    """Sentences of the hit found by their text, with the given scores (others 0)."""
    from citesearch.answer import _quotable_spans

    out = []
    for start, end in _quotable_spans(hit.text):
        sentence = hit.text[start:end]
        score = next((v for k, v in scores.items() if sentence.startswith(k)), 0.0)
        out.append(ScoredSentence(start, end, score))
    return out


def test_a_colon_sentence_brings_its_list_even_across_passages() -> None:
    cut = DOC.index("  • Dissolution")
    first = _hit(1, 0, cut - 1)  # the list is cut by the chunker after its first item...
    second = _hit(2, DOC.index("He argued"), len(DOC) - 1)  # ...and goes on in an overlapping passage
    scored = [_scored(first, {"However": 0.7, "Aliyev spoke": 0.2}), _scored(second, {"Aliyev also": 0.35})]
    answer = extract_answer("what conditions?", [first, second], scored, threshold=0.3, max_sentences=2)
    quotes = [c.quote for c in answer.citations]
    assert quotes[:3] == [
        "However, Aliyev outlined two primary conditions:",
        "Constitutional amendments in Armenia: no claims.",  # the list marker is left out of the quote
        "Dissolution of the OSCE Minsk Group: obsolete.",
    ]
    assert "Aliyev also addressed other things." not in quotes  # below best - margin
    for citation in answer.citations:
        assert DOC[citation.char_start : citation.char_end] == citation.quote
    assert answer.text == " ".join(f"{q} [{n}]" for n, q in enumerate(quotes, start=1))


def test_below_threshold_is_no_answer_with_the_scores_in_the_reason() -> None:
    hit = _hit(1, 0, len(DOC) - 1)
    answer = extract_answer("cake?", [hit], [_scored(hit, {"Aliyev spoke": 0.12})], threshold=0.3)
    assert answer.text is None and answer.citations == ()
    assert answer.reason is not None and "0.12" in answer.reason and "0.30" in answer.reason
    empty = extract_answer("cake?", [], [], threshold=0.3)
    assert empty.text is None and empty.reason is not None and "no passage" in empty.reason


def test_overlapping_passages_never_quote_a_sentence_twice() -> None:
    a, b = _hit(1, 0, 60), _hit(2, 0, 60)
    b = Hit(rank=2, score=0.5, passage_id=9, text=a.text, citation=a.citation)
    scored = [_scored(a, {"Aliyev spoke": 0.8}), _scored(b, {"Aliyev spoke": 0.8})]
    answer = extract_answer("where?", [a, b], scored, threshold=0.3)
    assert [c.quote for c in answer.citations] == ["Aliyev spoke in Budapest."]
    assert answer.citations[0].passage_rank == 1


def test_reader_questions_take_the_best_sentence_of_each_comment() -> None:
    text = "Great article. Lavrov is wrong.\nI disagree with Lavrov completely."
    one = _hit(1, 0, 31, section="comment", comment_no=1, text=text)
    two = _hit(2, 32, len(text), section="comment", comment_no=2, text=text)
    scored = [_scored(one, {"Lavrov is": 0.8, "Great": 0.1}), _scored(two, {"I disagree": 0.45})]
    answer = extract_answer("What did readers say about Lavrov?", [one, two], scored, threshold=0.3)
    assert answer.reader_question
    assert [(c.comment_no, c.quote, c.label) for c in answer.citations] == [
        (1, "Lavrov is wrong.", "Reader comment 1"),
        (2, "I disagree with Lavrov completely.", "Reader comment 2"),  # 0.35 below the best, still included
    ]
    assert all(c.reader_comment for c in answer.citations)


def test_question_kinds_and_plans() -> None:
    assert is_reader_question("What did readers say about Lavrov?")
    assert is_reader_question("Which commenter argued that?")
    assert not is_reader_question("what conditions did Aliyev set?")
    plan = plan_ask("what conditions did Aliyev set?", 5)
    assert plan.section is None and plan.exclude_sections == {"comment"} and plan.fetch_k == 15
    readers = plan_ask("what did readers say?", 5)
    assert readers.section == "comment" and readers.fetch_k == 15 and readers.per_comment_cap == 2


def test_reader_plan_caps_passages_per_comment() -> None:
    def hit(rank: int, comment_no: int) -> Hit:
        citation = Citation("d", "t", "s", "comment", comment_no, rank * 10, rank * 10 + 5)
        return Hit(rank, 1.0 / rank, rank, "text", citation)

    hits = [hit(1, 2), hit(2, 2), hit(3, 2), hit(4, 5), hit(5, 2), hit(6, 1)]
    kept = apply_plan(hits, plan_ask("what did readers say?", 5), 3)
    assert [h.rank for h in kept] == [1, 2, 4]  # the third passage of comment 2 gives way to comment 5
    assert [h.rank for h in apply_plan(hits, plan_ask("anything", 5, section="comment"), 3)] == [1, 2, 3]
    assert plan_ask("anything", 5, section="author").section == "author"


def test_highlight_keeps_the_best_and_close_runners_up_in_text_order() -> None:
    sentences = [ScoredSentence(0, 5, 0.2), ScoredSentence(6, 10, 0.61), ScoredSentence(11, 20, 0.6)]
    assert highlight(sentences, max_sentences=2, margin=0.05) == [sentences[1], sentences[2]]
    assert highlight(sentences, max_sentences=1) == [sentences[1]]
    assert highlight(sentences, max_sentences=2, margin=0.001) == [sentences[1]]
    assert highlight([]) == []


def test_lexical_score() -> None:
    from citesearch.answer import _terms

    terms = _terms("What conditions did Aliyev set?")
    assert lexical_score(terms, "Aliyev outlined two primary conditions.") == pytest.approx(2 / 3)
    assert lexical_score(terms, "The weather was fine.") == 0.0
    assert lexical_score(frozenset(), "anything") == 0.0


def test_sentence_spans_are_cached_per_passage_and_bounded(hashing_embedder, monkeypatch) -> None:
    import citesearch.answer as answer

    calls: list[str] = []
    real = answer._quotable_spans

    def counting(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(answer, "_quotable_spans", counting)
    scorer = SentenceScorer(hashing_embedder, cache_size=4)  # room for the spans of 2 passages
    passages = ["One sentence here. Another one there.", "- A list item. And a sentence.", "Third passage."]
    spans = scorer.spans(passages[0])
    assert spans == tuple(real(passages[0])) and [passages[0][s:e] for s, e in spans] == [
        "One sentence here.",
        "Another one there.",
    ]
    assert scorer.spans(passages[0]) is spans and calls == [passages[0]]  # the second time from the cache
    query = hashing_embedder.encode(["sentence"])[0]
    first = scorer.score_passages(passages, query)
    assert calls == passages  # the two new passages split once each ...
    assert scorer.score_passages(passages[1:], query) == first[1:] and len(calls) == 3  # the last two: cached
    scorer.spans(passages[0])
    assert calls == [*passages, passages[0]]  # the oldest was evicted (two fit): split again
    quotes = [p[s.start : s.end] for p, scored in zip(passages, first, strict=True) for s in scored]
    assert quotes[2] == "A list item."


def test_scorer_budget_cache_and_warm_up(real_embedder) -> None:
    scorer = SentenceScorer(real_embedder, cache_size=100)
    passages = ["Aliyev outlined two conditions. The weather was fine.", "Lavrov visited Yerevan. He met Mirzoyan."]
    question = "what conditions did Aliyev set?"
    query = scorer.query_vector(question)
    # No budget left: scored by word overlap, and nothing is embedded or cached.
    lexical = scorer.score_passages(passages, query, question=question, budget=0)
    assert [s.score for s in lexical[0]] == [pytest.approx(2 / 3), 0.0]
    assert scorer.cached(["Aliyev outlined two conditions."]) == {}
    # A budget for the first passage only: it is embedded (cosines), the second falls back to overlap.
    mixed = scorer.score_passages(passages, query, question=question, budget=2)
    assert mixed[0][0].score != pytest.approx(2 / 3) and mixed[0][0].score > mixed[0][1].score
    assert [s.score for s in mixed[1]] == [0.0, 0.0]
    # Warm-up embeds everything that fits; afterwards a zero budget still gives cosines.
    assert scorer.warm(passages) == 2  # the first passage's sentences were cached already
    warm = scorer.score_passages(passages, query, question=question, budget=0)
    assert warm[0][0].score == pytest.approx(mixed[0][0].score, abs=1e-5)
    assert SentenceScorer(real_embedder, cache_size=1).warm(passages) == 0  # would not fit: not attempted
