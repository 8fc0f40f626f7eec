"""``citesearch eval answers DATASET``: are the answers right, not only the rankings?

For a BEIR-format dataset whose queries carry answer strings (``metadata.answers``, as in the RealTimeQA news set),
every question goes through the ``/ask`` code path (``citesearch.answer.answer_with_settings`` with the service's
settings) and through ``/search``; the report gives

* ``answer_contains``: the share of questions whose ``/ask`` answer text contains an answer string,
* ``passages_contain@1`` / ``@5``: the share whose top 1 / top 5 ``/search`` passages contain one,
* ``null_rate``: the share answered null (below the answer threshold) — each of which is a silent failure here,
  since every question of the set is answerable from the corpus,

matching case-insensitively with whitespace folded. Distractor articles may contain an answer string too, so
these are upper bounds of "answered from the right article", and a fair comparison between settings.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from citesearch.answer import SentenceScorer, answer_with_settings
from citesearch.search import Searcher, SearchRequest, check_model_matches
from citesearch.settings import Settings
from eval.beir import BeirDataset, default_index_dir, prepare_index
from eval.jsonl import read_objects
from eval.report import EvalReport, IndexInfo, LatencySummary
from index_store import open_index
from indexer.embedder import Embedder

KS = (1, 5)
MATCH_RULE = "an answer string occurs in the text, case-insensitive, whitespace folded"
_SPACE = re.compile(r"\s+")
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def _fold(text: str) -> str:
    return _SPACE.sub(" ", text.translate(_QUOTES)).strip().lower()


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    folded = _fold(text)
    return any(_fold(answer) and _fold(answer) in folded for answer in answers)


def read_answers(path: Path) -> dict[str, list[str]]:
    """query id -> answer strings, from ``metadata.answers`` (a string or a list of strings)."""
    found: dict[str, list[str]] = {}
    for _, item in read_objects(path):
        metadata = item["metadata"] if isinstance(item.get("metadata"), dict) else {}
        answers = metadata.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if isinstance(answers, list):
            strings = [a for a in answers if isinstance(a, str) and a.strip()]
            if strings:
                found[str(item.get("_id"))] = strings
    return found


@dataclass(frozen=True, slots=True)
class AnswerRun:
    report: EvalReport
    misses: list[dict[str, Any]]


def run_answers(
    dataset: BeirDataset,
    embedder: Embedder,
    settings: Settings,
    *,
    index_dir: Path | None = None,
    limit: int | None = None,
    recency: bool = False,
    show_progress: bool = False,
) -> AnswerRun:
    """Answer every question of the split that has answer strings; see the module docstring for the figures."""
    from indexer.loaders import load_documents

    answers = read_answers(dataset.root / "queries.jsonl")
    query_ids = [q for q in dataset.queries if q in answers]
    if not query_ids:
        raise ValueError(f"no query of {dataset.root / 'queries.jsonl'} has metadata.answers; nothing to measure")
    if limit is not None:
        query_ids = query_ids[:limit]
    index_dir = Path(index_dir) if index_dir is not None else default_index_dir(settings, dataset)
    loaded = load_documents([dataset.corpus_path])
    prepared = prepare_index(index_dir, dataset.name, loaded.documents, embedder, settings, skipped=loaded.skipped)
    print(f"index {index_dir}: {prepared.reason}", file=sys.stderr)
    # metric -> question id -> 1.0 or 0.0: the shares below are their means, and the intervals and paired tests of
    # eval.report need them per question
    per_query: dict[str, dict[str, float]] = {
        name: {} for name in ("answer_contains", *(f"passages_contain@{k}" for k in KS), "null_rate")
    }
    latencies: list[float] = []
    misses: list[dict[str, Any]] = []
    best_scores: list[float] = []  # each question's best sentence score: where the answer threshold falls
    with open_index(index_dir) as reader:
        check_model_matches(reader, embedder)
        searcher = Searcher(reader, embedder, settings.fusion_settings())
        scorer = SentenceScorer(embedder, cache_size=settings.sentence_cache_size)
        for query_id in tqdm(query_ids, desc="questions", unit="q", file=sys.stderr, disable=not show_progress):
            question, wanted = dataset.queries[query_id], answers[query_id]
            filters: dict[str, Any] = {}
            if recency and dataset.query_dates.get(query_id):
                filters = {"recency": True, "as_of": dataset.query_dates[query_id]}
            started = time.perf_counter()
            outcome = answer_with_settings(searcher, scorer, question, settings, filters=filters)
            latencies.append((time.perf_counter() - started) * 1000)
            hits = searcher.search(SearchRequest(question, k=max(KS), **filters)).hits
            text = outcome.answer.text
            if outcome.answer.best_score is not None:
                best_scores.append(outcome.answer.best_score)
            per_query["null_rate"][query_id] = float(text is None)
            per_query["answer_contains"][query_id] = float(text is not None and contains_answer(text, wanted))
            for k in KS:
                per_query[f"passages_contain@{k}"][query_id] = float(
                    any(contains_answer(h.text, wanted) for h in hits[:k])
                )
            if text is None or not contains_answer(text, wanted):
                misses.append({"id": query_id, "question": question, "answers": wanted, "answer": text,
                               "best_score": outcome.answer.best_score})  # fmt: skip
        manifest = reader.manifest
        info = IndexInfo(
            str(index_dir),
            manifest.version,
            int(manifest.counts.get("documents", 0)),
            int(manifest.counts.get("passages", 0)),
            prepared.reused,
            prepared.build_seconds,
        )
    total = len(query_ids)
    metrics = {name: sum(values.values()) / total for name, values in per_query.items()}
    report = EvalReport(
        kind="answers",
        dataset=dataset.name,
        split=dataset.split,
        mode="hybrid",
        metrics=metrics,
        per_query=per_query,
        latency_ms=LatencySummary.of(latencies),
        queries=total,
        index=info,
        settings={
            "model": manifest.model.name,
            "answer_min_score": settings.answer_min_score,
            "answer_passages": settings.answer_passages,
            "fusion": searcher.fusion.to_dict(),
            "match_rule": MATCH_RULE,
            "recency": recency,
        },
        notes=[
            f"{total} questions with answer strings; latency is the /ask path per question",
            _threshold_note(best_scores, settings.answer_min_score),
        ],
        misses=misses,
    )
    return AnswerRun(report, misses)


def _threshold_note(scores: list[float], threshold: float) -> str:
    """Every question here is answerable, so a best score under the threshold is a silent failure."""
    if not scores:
        return "no best sentence scores (nothing retrieved)"
    ordered = sorted(scores)
    below = sum(1 for score in ordered if score < threshold)
    return (
        f"best sentence scores: min {ordered[0]:.3f}, median {ordered[len(ordered) // 2]:.3f}; {below} of "
        f"{len(ordered)} below the answer threshold {threshold:.2f}"
    )
