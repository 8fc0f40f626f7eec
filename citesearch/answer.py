"""Extractive answers and highlights: the sentences of retrieved passages that best answer a question.

Nothing here generates text. A passage is cut into sentences (``indexer.sentences.sentence_spans``, the same
splitter the chunker uses), each sentence is embedded by the index's own model and scored by cosine similarity to
the embedded question (``SearchResult.query_vector``, so the question is not encoded twice). A highlight is the best
sentence or two of one passage; an answer is the best sentences across the top passages, each quoted exactly and
followed by a marker ``[n]`` that points at a citation with the sentence's character span in its document.

The answer threshold is on that sentence cosine, not on the search score: the search score's scale depends on the
retrieval mode (cosine for dense, a fused rank score for hybrid, unbounded for BM25), while the sentence cosine
means the same thing in every mode. How the default was chosen is in docs/evaluation.md ("Answer threshold").

This module is framework-free so the CLI and the evaluation can reuse it; the HTTP service only wraps it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from citesearch.search import Hit, Searcher, SearchRequest, SearchResult
from indexer.embedder import Embedder
from indexer.sentences import sentence_spans

if TYPE_CHECKING:
    from citesearch.settings import Settings

# "What did readers say about …", "Which commenter argued …": questions about the reader comments, which are then
# the only passages an answer may quote. Any other question is answered from the articles (and author bios) only,
# so a reader's opinion is never presented as what the article says.
_READER_QUESTION = re.compile(
    r"\b(readers?|commenters?|commentators?|comments?|commented|commenting|reader\s+comments?)\b", re.IGNORECASE
)

# List markers left at the start of a sentence by a scraped bulleted list; a quote starts after them (the span is
# moved, so the quote is still exactly the document text at the span).
# No "^": pattern.match(text, pos) already anchors at pos, and "^" would only match at the start of the string.
_LEADING_MARKER = re.compile(r"(?:[•·▪◦‣∙*\-–—]|\d{1,3}[.)])\s+")

SECTION_LABELS = {"article": "Article", "author": "Author bio", "comment": "Reader comment"}


READER_PASSAGES_PER_COMMENT = 2  # reader questions: passages of one comment the answer may draw on


def is_reader_question(question: str) -> bool:
    """True for questions about what readers or commenters said."""
    return _READER_QUESTION.search(question) is not None


def part_label(
    section: str,
    comment_no: int | None,
    *,
    author: str | None = None,
    date: str | None = None,
    parent: int | None = None,
) -> str:
    """A short human label for a part of a document: "Article", "Author bio", "Reader comment 3", and for a comment
    whose page shows them, "Reader comment 3, by Ana (14. 01. 2020, 13:47), reply to comment 1"."""
    label = SECTION_LABELS.get(section, section.capitalize())
    if section != "comment" or comment_no is None:
        return label
    label = f"{label} {comment_no}"
    if author:
        label += f", by {author}"
    if date:
        label += f" ({date})"
    if parent is not None:
        label += f", reply to comment {parent}"
    return label


def citation_label(citation: Any) -> str:
    """``part_label`` of a citation, with the comment's author, date and parent where it has them."""
    return part_label(
        citation.section,
        citation.comment_no,
        author=getattr(citation, "comment_author", None),
        date=getattr(citation, "comment_date", None),
        parent=getattr(citation, "parent", None),
    )


@dataclass(frozen=True, slots=True)
class ScoredSentence:
    """One sentence of a passage: ``[start, end)`` within the passage text, and its cosine to the question."""

    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class AnswerCitation:
    """Where one quoted sentence comes from; ``document.text[char_start:char_end] == quote``."""

    number: int  # the n of the marker [n]
    doc_id: str
    title: str
    source: str
    url: str | None
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    quote: str
    label: str  # "Article", "Author bio", "Reader comment 3, by NAME (DATE)"
    reader_comment: bool  # True when the quote is a reader's comment, not the article
    passage_id: int
    passage_rank: int
    score: float  # the sentence's cosine to the question
    comment_author: str | None = None
    comment_date: str | None = None  # as shown on the page
    comment_date_iso: str | None = None
    parent: int | None = None  # the comment number this comment replies to
    published: str | None = None  # the document's published date, ISO 8601


@dataclass(frozen=True, slots=True)
class AnswerSentence:
    text: str
    citation: int  # number of its citation


@dataclass(frozen=True, slots=True)
class Answer:
    """An extractive answer, or ``text is None`` with a ``reason`` when nothing relevant enough was found."""

    question: str
    text: str | None
    reason: str | None
    threshold: float
    best_score: float | None
    reader_question: bool
    sentences: tuple[AnswerSentence, ...] = ()
    citations: tuple[AnswerCitation, ...] = ()
    passages: tuple[Hit, ...] = ()  # the passages the quoted sentences come from, in rank order


@dataclass(frozen=True, slots=True)
class AskPlan:
    """How to retrieve passages for a question: which section to search and which to leave out afterwards."""

    reader_question: bool
    section: str | None
    exclude_sections: frozenset[str] = field(default_factory=frozenset)
    fetch_k: int = 5  # how many passages to ask the searcher for (more when some will be filtered out)
    per_comment_cap: int | None = None  # at most this many passages of one comment (a survey of many readers)


def plan_ask(question: str, k: int, *, section: str | None = None, max_k: int = 100) -> AskPlan:
    """Reader questions search only comments; other questions search everything and drop comments afterwards
    (asking for more so that k passages remain). An explicit ``section`` overrides both."""
    reader = is_reader_question(question)
    if section is not None:
        return AskPlan(reader_question=reader or section == "comment", section=section, fetch_k=k)
    if reader:
        # One long comment can fill the top k on its own; a question about what readers said wants several readers.
        return AskPlan(
            reader_question=True,
            section="comment",
            fetch_k=min(max_k, k * 3),
            per_comment_cap=READER_PASSAGES_PER_COMMENT,
        )
    return AskPlan(
        reader_question=False, section=None, exclude_sections=frozenset({"comment"}), fetch_k=min(max_k, k * 3)
    )


def apply_plan(hits: Sequence[Hit], plan: AskPlan, k: int) -> list[Hit]:
    """The top ``k`` hits left after the plan's section exclusions and per-comment cap, in rank order."""
    kept: list[Hit] = []
    per_comment: dict[tuple[str, int | None], int] = {}
    for hit in hits:
        if hit.citation.section in plan.exclude_sections:
            continue
        if plan.per_comment_cap is not None and hit.citation.section == "comment":
            part = (hit.citation.doc_id, hit.citation.comment_no)
            if per_comment.get(part, 0) >= plan.per_comment_cap:
                continue
            per_comment[part] = per_comment.get(part, 0) + 1
        kept.append(hit)
        if len(kept) == k:
            break
    return kept


class SentenceScorer:
    """Embeds passage sentences (with a bounded in-memory cache) and scores them against a question.

    Embedding sentences is the expensive part of a highlight or an answer on a CPU (around a second for the 80-odd
    sentences of ten passages on two cores), while a sentence's vector depends only on its text and the model. So
    vectors are cached (LRU, ``cache_size`` sentences), a small index is embedded ahead of time by ``warm``, and a
    request may cap how many uncached sentences it embeds (``budget``): passages past the cap are scored by word
    overlap instead. A passage's sentence spans are cached too (LRU by passage text): splitting the same top passages
    again on every request was the largest piece of per-request Python work left once vectors were cached. One
    scorer belongs to one embedder; it is thread-safe.
    """

    def __init__(self, embedder: Embedder, *, cache_size: int = 20000, batch_size: int = 64) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # Passages have several sentences each, so half as many passages' spans cover every cached sentence.
        self._span_cache_size = max(cache_size // 2, 0)
        self._spans: OrderedDict[str, tuple[tuple[int, int], ...]] = OrderedDict()
        self._lock = threading.Lock()

    def spans(self, passage: str) -> tuple[tuple[int, int], ...]:
        """The quotable sentence spans of a passage (``_quotable_spans``), from the span cache where possible."""
        with self._lock:
            found = self._spans.get(passage)
            if found is not None:
                self._spans.move_to_end(passage)
                return found
        spans = tuple(_quotable_spans(passage))
        if self._span_cache_size:
            with self._lock:
                self._spans[passage] = spans
                while len(self._spans) > self._span_cache_size:
                    self._spans.popitem(last=False)
        return spans

    def cached(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[text] = vector
        return found

    def sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) L2-normalised vectors, from the cache where possible."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        found = self.cached(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(self._encode(missing))
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def _encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        fresh = dict(zip(texts, self.embedder.encode(list(texts), batch_size=self.batch_size), strict=True))
        if self.cache_size > 0:
            with self._lock:
                self._cache.update(fresh)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return fresh

    def query_vector(self, question: str, given: np.ndarray | None = None) -> np.ndarray:
        """The question's vector: the one the search already computed, or a fresh one (BM25-only searches)."""
        vector = given if given is not None else self.embedder.encode([question])
        return np.asarray(vector, dtype=np.float32).reshape(-1)

    def score_passages(
        self,
        passages: Sequence[str],
        query_vector: np.ndarray,
        *,
        question: str = "",
        budget: int | None = None,
    ) -> list[list[ScoredSentence]]:
        """Every sentence of every passage scored against the question, in passage order.

        Scores are cosine similarities, computed with one encode call for all uncached sentences. With a ``budget``,
        passages are taken in order (best-ranked first) while their uncached sentences fit in it; the rest are
        scored by the share of the question's words each sentence contains (``lexical_score``), so a request for
        k=100 results never embeds 800 sentences.
        """
        spans_per_passage = [self.spans(text) for text in passages]
        texts_per_passage = [[passages[i][s:e] for s, e in spans] for i, spans in enumerate(spans_per_passage)]
        semantic = [True] * len(passages)
        if budget is not None:
            cached = self.cached([t for texts in texts_per_passage for t in texts])
            remaining = budget
            for i, texts in enumerate(texts_per_passage):
                needed = len({t for t in texts if t not in cached})
                if needed > remaining:
                    semantic[i] = False
                    remaining = 0  # keep the order: a lower-ranked passage never gets what a better one did not
                else:
                    remaining -= needed
        texts = [t for i, texts in enumerate(texts_per_passage) if semantic[i] for t in texts]
        scores = self.sentence_vectors(texts) @ np.asarray(query_vector, dtype=np.float32).reshape(-1)
        terms = _terms(question)
        out: list[list[ScoredSentence]] = []
        position = 0
        for i, spans in enumerate(spans_per_passage):
            if semantic[i]:
                out.append([ScoredSentence(s, e, float(scores[position + j])) for j, (s, e) in enumerate(spans)])
                position += len(spans)
            else:
                out.append(
                    [
                        ScoredSentence(s, e, lexical_score(terms, text))
                        for (s, e), text in zip(spans, texts_per_passage[i], strict=True)
                    ]
                )
        return out

    def warm(
        self, passages: Iterable[str], *, should_stop: Callable[[], bool] = lambda: False, chunk: int = 256
    ) -> int:
        """Embed the sentences of ``passages`` ahead of requests, if they all fit in the cache; returns how many
        sentences were embedded (0 when they would not fit: an LRU cache filled beyond its size only churns)."""
        sentences = list(dict.fromkeys(text[s:e] for text in passages for s, e in self.spans(text)))
        if not sentences or len(sentences) > self.cache_size:
            return 0
        todo = [t for t in sentences if t not in self.cached(sentences)]
        done = 0
        for start in range(0, len(todo), chunk):
            if should_stop():
                break
            batch = todo[start : start + chunk]
            self._encode(batch)
            done += len(batch)
        return done


# Words too common to say which sentence answers a question (the fallback scorer ignores them).
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is "
    "it its me my no not of on or our she so than that the their them then there these they this to was we were "
    "what when where which while who whom why will with would you your about after also".split()
)
_TERM = re.compile(r"\w+")


def _stem(word: str) -> str:
    """A crude stemmer: enough to match "conditions" with "condition" and "opened" with "opens"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _TERM.findall(text.lower()) if w not in _STOPWORDS)


def lexical_score(question_terms: frozenset[str], sentence: str) -> float:
    """Share of the question's (non-stopword, stemmed) words that occur in the sentence, in [0, 1]."""
    if not question_terms:
        return 0.0
    return len(question_terms & _terms(sentence)) / len(question_terms)


def _quotable_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans of a passage, without leading list markers; never empty for a non-blank passage."""
    spans = []
    for span in sentence_spans(text):
        start, end = span.start, span.end
        marker = _LEADING_MARKER.match(text, start, end)
        if marker is not None and marker.end() < end:
            start = marker.end()
        spans.append((start, end))
    return spans


def highlight(
    sentences: Sequence[ScoredSentence], *, max_sentences: int = 2, margin: float = 0.05
) -> list[ScoredSentence]:
    """The best sentence of a passage, plus the next best ones within ``margin`` of it, in text order."""
    if not sentences:
        return []
    ranked = sorted(sentences, key=lambda s: -s.score)
    best = ranked[0].score
    chosen = [s for s in ranked[:max_sentences] if s.score >= best - margin]
    return sorted(chosen, key=lambda s: s.start)


@dataclass(frozen=True, slots=True)
class _Candidate:
    hit_index: int
    sentence: ScoredSentence
    doc_start: int
    doc_end: int


def extract_answer(
    question: str,
    hits: Sequence[Hit],
    scored: Sequence[Sequence[ScoredSentence]],
    *,
    threshold: float,
    max_sentences: int = 4,
    margin: float = 0.12,
    reader_question: bool | None = None,
) -> Answer:
    """Pick the answer sentences from ``hits`` (``scored[i]`` are the sentences of ``hits[i]``).

    The best sentence must reach ``threshold``; others join it when they also reach the threshold and are within
    ``margin`` of the best. For a question about what readers said, the best sentence of each comment above the
    threshold comes first, so the answer shows the range of opinions rather than one comment. A chosen sentence ending
    in a colon introduces what follows ("two conditions:"), so the sentences that open the following lines of the same
    passage join it: an answer never stops at its own preface.
    Sentences are then grouped by document (best document first) and kept in text order, which reads like the source.
    """
    reader = is_reader_question(question) if reader_question is None else reader_question
    candidates = _unique_candidates(hits, scored)
    if not candidates:
        return Answer(question, None, "no passage in the index matches the question", threshold, None, reader)
    ranked = sorted(candidates, key=lambda c: (-c.sentence.score, c.hit_index, c.sentence.start))
    best = ranked[0].sentence.score
    if best < threshold:
        return Answer(
            question,
            None,
            f"nothing relevant enough: the best sentence scores {best:.2f}, below the answer threshold {threshold:.2f}",
            threshold,
            best,
            reader,
        )
    floor = max(threshold, best - margin)
    by_doc: dict[str, list[_Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: c.doc_start):
        by_doc.setdefault(hits[candidate.hit_index].citation.doc_id, []).append(candidate)
    chosen: list[_Candidate] = []
    seen: set[tuple[str, int, int]] = set()

    def take(candidate: _Candidate) -> None:
        key = (hits[candidate.hit_index].citation.doc_id, candidate.doc_start, candidate.doc_end)
        if key not in seen:
            seen.add(key)
            chosen.append(candidate)

    if reader:
        # "What did readers say": a survey, so first the best sentence of each comment that is relevant at all
        # (above the threshold), rather than several sentences of the one best comment.
        comments_seen: set[tuple[str, int | None]] = set()
        for candidate in ranked:
            citation = hits[candidate.hit_index].citation
            part = (citation.doc_id, citation.comment_no)
            if candidate.sentence.score < threshold or len(chosen) >= max_sentences:
                break
            if part not in comments_seen:
                comments_seen.add(part)
                take(candidate)
    for candidate in ranked:
        if candidate.sentence.score < floor or len(chosen) >= max_sentences:
            break
        take(candidate)
        # A list the sentence announces is part of it, even beyond max_sentences (at most six items).
        for follower in _continuation(candidate, hits, by_doc[hits[candidate.hit_index].citation.doc_id]):
            take(follower)
    return _assemble(question, hits, chosen, threshold, best, reader)


def _unique_candidates(hits: Sequence[Hit], scored: Sequence[Sequence[ScoredSentence]]) -> list[_Candidate]:
    """All sentences, once each: overlapping passages share sentences; the copy in the better-ranked passage wins."""
    by_span: dict[tuple[str, int, int], _Candidate] = {}
    for index, (hit, sentences) in enumerate(zip(hits, scored, strict=True)):
        for sentence in sentences:
            start = hit.citation.char_start + sentence.start
            end = hit.citation.char_start + sentence.end
            key = (hit.citation.doc_id, start, end)
            if key not in by_span:
                by_span[key] = _Candidate(index, sentence, start, end)
    return list(by_span.values())


def _covered_text(hits: Sequence[Hit], doc_id: str, start: int, end: int) -> str | None:
    """The document text in ``[start, end)`` pieced together from the retrieved passages of the document (they
    overlap or touch), or None if part of it is in no retrieved passage."""
    pieces = []
    position = start
    while position < end:
        covering = [
            h for h in hits if h.citation.doc_id == doc_id and h.citation.char_start <= position < h.citation.char_end
        ]
        if not covering:
            return None
        hit = max(covering, key=lambda h: h.citation.char_end)
        stop = min(end, hit.citation.char_end)
        pieces.append(hit.text[position - hit.citation.char_start : stop - hit.citation.char_start])
        position = stop
    return "".join(pieces)


def _continuation(candidate: _Candidate, hits: Sequence[Hit], same_doc: Sequence[_Candidate]) -> list[_Candidate]:
    """After "... two primary conditions ...:", the first sentence of each following line, up to the end of that
    list (a blank line after at least one item) or six items. The list may run on into the next passage (lists are
    often cut by the chunker), so the sentences of every retrieved passage of the document are considered."""
    hit = hits[candidate.hit_index]
    if not hit.text[candidate.sentence.start : candidate.sentence.end].rstrip().endswith(":"):
        return []
    doc_id = hit.citation.doc_id
    followers: list[_Candidate] = []
    previous_end = candidate.doc_end
    for other in same_doc:  # in document order
        if other.doc_start < candidate.doc_end:
            continue
        gap = _covered_text(hits, doc_id, previous_end, other.doc_start)
        if gap is None:
            break  # a stretch of the document no retrieved passage holds: the list cannot be followed further
        if "\n" not in gap:
            continue  # a later sentence on a line already taken: only each line's first sentence
        if followers and gap.count("\n") > 1:
            break  # a blank line after the list: the list is over
        followers.append(other)
        previous_end = other.doc_end
        if len(followers) >= 6:  # a long list: its first items are enough
            break
    return followers


def _assemble(
    question: str,
    hits: Sequence[Hit],
    chosen: Sequence[_Candidate],
    threshold: float,
    best: float,
    reader: bool,
) -> Answer:
    doc_order: dict[str, int] = {}
    for candidate in chosen:  # chosen is best-first: documents in order of their best sentence
        doc_order.setdefault(hits[candidate.hit_index].citation.doc_id, len(doc_order))
    ordered = sorted(chosen, key=lambda c: (doc_order[hits[c.hit_index].citation.doc_id], c.doc_start))
    citations: list[AnswerCitation] = []
    sentences: list[AnswerSentence] = []
    used_hits: dict[int, Hit] = {}
    for number, candidate in enumerate(ordered, start=1):
        hit = hits[candidate.hit_index]
        quote = hit.text[candidate.sentence.start : candidate.sentence.end]
        citations.append(
            AnswerCitation(
                number=number,
                doc_id=hit.citation.doc_id,
                title=hit.citation.title,
                source=hit.citation.source,
                url=hit.citation.url,
                section=hit.citation.section,
                comment_no=hit.citation.comment_no,
                char_start=candidate.doc_start,
                char_end=candidate.doc_end,
                quote=quote,
                label=citation_label(hit.citation),
                reader_comment=hit.citation.section == "comment",
                passage_id=hit.passage_id,
                passage_rank=hit.rank,
                score=round(candidate.sentence.score, 6),
                comment_author=getattr(hit.citation, "comment_author", None),
                comment_date=getattr(hit.citation, "comment_date", None),
                comment_date_iso=getattr(hit.citation, "comment_date_iso", None),
                parent=getattr(hit.citation, "parent", None),
                published=getattr(hit.citation, "published", None),
            )
        )
        sentences.append(AnswerSentence(text=quote, citation=number))
        used_hits.setdefault(hit.passage_id, hit)
    text = " ".join(f"{s.text} [{s.citation}]" for s in sentences)
    passages = tuple(sorted(used_hits.values(), key=lambda h: h.rank))
    return Answer(question, text, None, threshold, best, reader, tuple(sentences), tuple(citations), passages)


def highlight_result(
    result: SearchResult,
    scorer: SentenceScorer,
    *,
    max_sentences: int = 2,
    margin: float = 0.05,
    budget: int | None = None,
) -> list[list[ScoredSentence]]:
    """For each hit of a search result, its best sentence(s) as spans within the passage text. ``budget`` caps the
    uncached sentences embedded for this result (see ``SentenceScorer.score_passages``)."""
    if not result.hits:
        return []
    query_vector = scorer.query_vector(result.query, result.query_vector)
    scored = scorer.score_passages(
        [hit.text for hit in result.hits], query_vector, question=result.query, budget=budget
    )
    return [highlight(sentences, max_sentences=max_sentences, margin=margin) for sentences in scored]


@dataclass(frozen=True, slots=True)
class AskOutcome:
    """An answer with the search it came from and the scored sentences of the passages it considered."""

    answer: Answer
    result: SearchResult
    hits: tuple[Hit, ...]  # the passages considered (after the plan's filtering)
    scored: tuple[tuple[ScoredSentence, ...], ...]


def answer_question(
    searcher: Searcher,
    scorer: SentenceScorer,
    question: str,
    *,
    k: int = 5,
    threshold: float,
    max_sentences: int = 4,
    margin: float = 0.12,
    section: str | None = None,
    doc_id: str | None = None,
    max_k: int = 100,
    search_options: Mapping[str, Any] | None = None,
) -> AskOutcome:
    """Retrieve passages for ``question`` following ``plan_ask`` and extract an answer from the top ``k``.

    ``search_options`` are passed to ``SearchRequest`` as they are (``mode``, ``per_doc_cap``, ``explain``); a
    field left out keeps ``SearchRequest``'s default.
    """
    plan = plan_ask(question, k, section=section, max_k=max_k)
    request = SearchRequest(
        query=question, k=plan.fetch_k, section=plan.section, doc_id=doc_id, **dict(search_options or {})
    )
    result = searcher.search(request)
    hits = apply_plan(result.hits, plan, k)
    query_vector = scorer.query_vector(question, result.query_vector)
    scored = scorer.score_passages([hit.text for hit in hits], query_vector)
    answer = extract_answer(
        question,
        hits,
        scored,
        threshold=threshold,
        max_sentences=max_sentences,
        margin=margin,
        reader_question=plan.reader_question,
    )
    return AskOutcome(answer, result, tuple(hits), tuple(tuple(s) for s in scored))


def answer_with_settings(
    searcher: Searcher,
    scorer: SentenceScorer,
    question: str,
    settings: Settings,
    *,
    k: int | None = None,
    section: str | None = None,
    doc_id: str | None = None,
    mode: str | None = None,
    per_doc_cap: int | None = None,
    filters: Mapping[str, Any] | None = None,
) -> AskOutcome:
    """``answer_question`` with the configured answer options: what ``POST /ask`` runs, and so what the threshold
    calibration must measure. Request fields left as None take the configured defaults. ``filters`` are more
    ``SearchRequest`` fields passed as they are (``published_after``, ``published_before``, ``recency``, ``as_of``,
    ``collapse_duplicates``)."""
    options: dict[str, Any] = {"per_doc_cap": per_doc_cap if per_doc_cap is not None else settings.per_doc_cap}
    options.update(filters or {})
    if mode is not None:
        options["mode"] = mode
    return answer_question(
        searcher,
        scorer,
        question,
        k=k if k is not None else settings.answer_passages,
        threshold=settings.answer_min_score,
        max_sentences=settings.answer_max_sentences,
        margin=settings.answer_margin,
        section=section,
        doc_id=doc_id,
        max_k=settings.max_k,
        search_options=options,
    )


__all__ = [
    "Answer",
    "AnswerCitation",
    "AnswerSentence",
    "AskOutcome",
    "AskPlan",
    "ScoredSentence",
    "SentenceScorer",
    "answer_question",
    "answer_with_settings",
    "apply_plan",
    "citation_label",
    "extract_answer",
    "highlight",
    "highlight_result",
    "is_reader_question",
    "lexical_score",
    "part_label",
    "plan_ask",
]
