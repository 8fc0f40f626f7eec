"""Retrieval metrics: BEIR's nDCG@10, Recall@100 and MRR@10 through ranx, and success@k / MRR for question sets.

The BEIR metrics come from a maintained library (ranx) rather than from code of our own, so the figures can be
compared with published ones; ``tests/test_eval.py`` cross-checks ranx against a hand-computed example. ranx's
``ndcg`` uses linear gain (``rel / log2(rank + 1)``), the same as pytrec_eval and therefore BEIR.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Report keys, which are also ranx's metric names.
BEIR_METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
QUESTION_METRICS: tuple[str, ...] = ("success@1", "success@5", "mrr@10")

Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> graded relevance
DocumentRankings = Mapping[str, Sequence[str]]  # query id -> document ids, best first


@dataclass(frozen=True, slots=True)
class MetricResult:
    """Mean of each metric over the evaluated queries, and which queries those were."""

    metrics: dict[str, float]
    queries: int  # queries with at least one relevant document (the others cannot be scored)
    queries_without_relevant: int
    # metric -> query id -> that query's score, for confidence intervals and paired tests (eval.significance)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)


def rank_scores(ranking: Sequence[str]) -> dict[str, float]:
    """Scores that reproduce ``ranking``'s order exactly: ``len - position``.

    ranx orders a run by score. Handing it our rank order (instead of retrieval scores) means ties in cosine or
    fused scores cannot reorder documents behind our back, and any retrieval mode's scores work the same way.
    """
    return {doc_id: float(len(ranking) - position) for position, doc_id in enumerate(ranking)}


def evaluate_rankings(qrels: Qrels, rankings: DocumentRankings, metrics: Sequence[str] = BEIR_METRICS) -> MetricResult:
    """Mean ``metrics`` over every query of ``qrels`` that has a relevant document.

    A query missing from ``rankings`` (or with an empty ranking) scores 0, as in BEIR; documents ranked for
    queries that are not in ``qrels`` are ignored.
    """
    from ranx import Qrels as RanxQrels  # numba compiles on first import: keep it off the CLI's start-up path
    from ranx import Run as RanxRun
    from ranx import evaluate

    judged = {
        query_id: {doc_id: int(score) for doc_id, score in judgments.items()}
        for query_id, judgments in qrels.items()
        if any(score > 0 for score in judgments.values())
    }
    skipped = len(qrels) - len(judged)
    if not judged:
        raise ValueError("no query has a relevant document (a qrels score above 0); nothing to evaluate")
    run = {
        query_id: rank_scores(list(dict.fromkeys(ranking)))
        for query_id, ranking in rankings.items()
        if query_id in judged and ranking
    }
    if not run:  # ranx cannot evaluate an empty run; nothing was found for any query
        zeros = {name: dict.fromkeys(judged, 0.0) for name in metrics}
        return MetricResult(dict.fromkeys(metrics, 0.0), len(judged), skipped, zeros)
    ranx_run = RanxRun(run)
    with warnings.catch_warnings():
        # numba's "unsafe cast from uint64 to int64" inside ranx: harmless for relevance grades, noisy on stderr
        warnings.simplefilter("ignore")
        scores = evaluate(RanxQrels(judged), ranx_run, list(metrics), make_comparable=True)
    if isinstance(scores, float):  # ranx returns a bare float when asked for one metric
        scores = {metrics[0]: scores}
    # ranx keeps each query's score in the run it evaluated (make_comparable gave unranked queries an empty run,
    # scored 0, as in BEIR)
    per_query = {name: {str(q): float(v) for q, v in ranx_run.scores[name].items()} for name in metrics}
    return MetricResult({name: float(scores[name]) for name in metrics}, len(judged), skipped, per_query)


def success_per_question(
    first_ranks: Mapping[str, int | None], ks: Sequence[int] = (1, 5), mrr_depth: int = 10
) -> dict[str, dict[str, float]]:
    """What each question contributes to ``success_metrics``: metric -> question id -> 0/1 (success) or 1/rank."""
    per_question: dict[str, dict[str, float]] = {
        f"success@{k}": {q: float(r is not None and r <= k) for q, r in first_ranks.items()} for k in ks
    }
    per_question[f"mrr@{mrr_depth}"] = {
        q: (1.0 / r if r is not None and r <= mrr_depth else 0.0) for q, r in first_ranks.items()
    }
    return per_question


def success_metrics(
    first_ranks: Sequence[int | None], ks: Sequence[int] = (1, 5), mrr_depth: int = 10
) -> dict[str, float]:
    """success@k (share of questions answered within the top k) and MRR@depth, from each question's first
    answering rank (1-based; None when no hit within the searched depth answers it)."""
    if not first_ranks:
        raise ValueError("no questions to evaluate")
    per_question = success_per_question({str(i): r for i, r in enumerate(first_ranks)}, ks, mrr_depth)
    return {name: sum(values.values()) / len(first_ranks) for name, values in per_question.items()}
