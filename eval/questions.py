"""Labelled question sets: questions whose answers are identified by the text that bears them, not by passage ids.

Each line of the JSONL file is ``{"id", "question", "doc_id", "section" (optional, null for any), "answers"}`` where
``answers`` are exact substrings of the stored document text. Because a label names text rather than a passage, it
survives re-chunking: any passage that covers the answer counts.

**Matching rule.** A hit answers a question when it comes from the labelled document (and section, when one is
given) and its span ``[char_start, char_end)`` covers at least half of the characters of one occurrence of one of
the answers in the stored document text. Half, not all: passages are cut at sentence boundaries and an answer that
straddles two passages is still found by whoever reads either of them (the overlap usually covers it whole).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from citesearch.search import Citation, Searcher, SearchRequest
from eval.jsonl import read_objects
from eval.metrics import success_metrics, success_per_question
from eval.report import EvalReport, IndexInfo, LatencySummary
from indexer.documents import SECTIONS

DEPTH = 10  # hits searched per question; MRR is over these
PACKAGED_QUESTIONS = Path(__file__).resolve().parent / "data" / "seed_questions.jsonl"
MATCHING_RULE = (
    "a hit answers when it is from the labelled doc_id (and section, if given) and its span covers at least half "
    "of the characters of an occurrence of one of the answers in the stored document text"
)


class QuestionSetError(ValueError):
    """The question file is malformed, or its labels do not fit the index it is run against."""


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    id: str
    question: str
    doc_id: str
    section: str | None  # None: any part of the document
    answers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class QuestionOutcome:
    question: LabelledQuestion
    first_rank: int | None  # rank of the first answering hit within DEPTH, None if none answers
    top_hit: Citation | None
    latency_ms: float

    def miss_dict(self) -> dict[str, Any]:
        return {
            "id": self.question.id,
            "question": self.question.question,
            "first_rank": self.first_rank,
            "top_hit": asdict(self.top_hit) if self.top_hit is not None else None,
        }


def load_questions(path: Path | str) -> list[LabelledQuestion]:
    """Read and validate a question file; every problem names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise QuestionSetError(f"question file {path} does not exist")
    questions: list[LabelledQuestion] = []
    seen: set[str] = set()
    for where, item in read_objects(path, QuestionSetError):
        for key in ("id", "question", "doc_id"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise QuestionSetError(f"{where}: {key!r} must be a non-empty string")
        section = item.get("section")
        if section is not None and section not in SECTIONS:
            raise QuestionSetError(f"{where}: section must be one of {', '.join(SECTIONS)} or null, got {section!r}")
        answers = item.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise QuestionSetError(f"{where}: 'answers' must be a non-empty list of non-empty strings")
        if item["id"] in seen:
            raise QuestionSetError(f"{where}: id {item['id']!r} appears twice")
        seen.add(item["id"])
        questions.append(LabelledQuestion(item["id"], item["question"], item["doc_id"], section, tuple(answers)))
    if not questions:
        raise QuestionSetError(f"question file {path} holds no questions")
    return questions


def answer_spans(text: str, answers: Sequence[str]) -> list[Span]:
    """Every occurrence of every answer in ``text``."""
    spans = []
    for answer in answers:
        start = text.find(answer)
        while start != -1:
            spans.append(Span(start, start + len(answer)))
            start = text.find(answer, start + 1)
    return spans


def covers(char_start: int, char_end: int, span: Span) -> bool:
    """Whether ``[char_start, char_end)`` holds at least half of ``span``'s characters."""
    overlap = min(char_end, span.end) - max(char_start, span.start)
    return overlap > 0 and 2 * overlap >= span.end - span.start


def answers_question(citation: Citation, question: LabelledQuestion, spans: Sequence[Span]) -> bool:
    """The matching rule (module docstring); ``spans`` are the answers' occurrences in the labelled document."""
    if citation.doc_id != question.doc_id:
        return False
    if question.section is not None and citation.section != question.section:
        return False
    return any(covers(citation.char_start, citation.char_end, span) for span in spans)


def label_spans(searcher: Searcher, questions: Sequence[LabelledQuestion]) -> dict[str, list[Span]]:
    """Each question's answer occurrences in the stored text; a label that fits no stored text is an error."""
    problems: list[str] = []
    spans: dict[str, list[Span]] = {}
    for question in questions:
        document = searcher.store.document(question.doc_id)
        if document is None:
            problems.append(f"{question.id}: document {question.doc_id!r} is not in index {searcher.index_version}")
            continue
        spans[question.id] = answer_spans(document.text, question.answers)
        if not spans[question.id]:
            problems.append(f"{question.id}: no answer occurs in the stored text of {question.doc_id!r}")
    if problems:
        hint = "index the documents the questions are about (e.g. citesearch index seeds/) or fix the labels"
        raise QuestionSetError(f"{len(problems)} labels do not fit the index ({'; '.join(problems)}); {hint}")
    return spans


@dataclass(frozen=True, slots=True)
class QuestionsRun:
    report: EvalReport
    outcomes: list[QuestionOutcome]


def run_questions(
    searcher: Searcher,
    questions: Sequence[LabelledQuestion],
    *,
    dataset: str,
    mode: str | None = None,
    show_progress: bool = False,
) -> QuestionsRun:
    """Search each question (top ``DEPTH`` passages, the request default otherwise) and score the first answer."""
    spans = label_spans(searcher, questions)
    options: dict[str, object] = {"mode": mode} if mode is not None else {}
    searcher.search(SearchRequest(query="warm-up query", k=DEPTH, **options))  # type: ignore[arg-type]
    outcomes: list[QuestionOutcome] = []
    used_mode = ""
    for question in tqdm(questions, desc="questions", unit="q", file=sys.stderr, disable=not show_progress):
        started = time.perf_counter()
        result = searcher.search(SearchRequest(query=question.question, k=DEPTH, **options))  # type: ignore[arg-type]
        latency_ms = (time.perf_counter() - started) * 1000
        used_mode = result.mode
        first_rank = next(
            (hit.rank for hit in result.hits if answers_question(hit.citation, question, spans[question.id])), None
        )
        top = result.hits[0].citation if result.hits else None
        outcomes.append(QuestionOutcome(question, first_rank, top, latency_ms))

    info = searcher.store.describe()
    report = EvalReport(
        kind="questions",
        dataset=dataset,
        split=None,
        mode=used_mode,
        metrics=success_metrics([o.first_rank for o in outcomes], ks=(1, 5), mrr_depth=DEPTH),
        per_query=success_per_question({o.question.id: o.first_rank for o in outcomes}, ks=(1, 5), mrr_depth=DEPTH),
        latency_ms=LatencySummary.of([o.latency_ms for o in outcomes]),
        queries=len(outcomes),
        index=IndexInfo(
            index_dir=info.location, version=info.version, documents=info.documents, passages=info.passages
        ),
        settings={
            "model": info.model,
            "chunker": info.chunker,
            "keyword": info.keyword,
            "fusion": searcher.fusion.to_dict(),
            "mode": used_mode,
            "mode_requested": mode,
            "k": DEPTH,
            "matching_rule": MATCHING_RULE,
        },
        misses=[o.miss_dict() for o in outcomes if o.first_rank != 1],
    )
    return QuestionsRun(report, outcomes)
