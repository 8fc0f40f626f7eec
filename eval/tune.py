"""Choosing the hybrid fusion by measurement: a grid over fusion settings on a BEIR split, computed offline.

Every passage's dense, BM25 and context (part-level BM25) score is computed once per query; each fusion setting is
then replayed exactly as ``Searcher`` runs it (top ``candidates`` by cosine and by BM25 plus context, exact scores
of every signal for the union, fuse, a document ranks at its best passage), so a grid of dozens of settings costs a
minute. The chosen setting is then confirmed through the real search path with ``citesearch eval beir --mode
hybrid``. Tune on train only.

    python -m eval.tune DATASET_DIR --split SPLIT [--index-dir DIR] [--folds K]   # development sets, never a test

The grid's best is picked on the same queries it is scored on, so it flatters itself; ``--folds K`` (default 5)
cross-validates the choice (``eval.crossval``) and prints what choosing by this grid gives on held-out queries.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citesearch.fusion import NORMALIZATIONS, WEIGHT_NAMES, FusionSettings, fuse, keyword_score
from citesearch.search import Searcher
from citesearch.settings import Settings
from eval.beir import BeirDataset, load_beir_dataset
from eval.crossval import assign_folds, cross_validate, group_by_pattern
from eval.metrics import evaluate_rankings
from eval.significance import paired_difference
from index_store import IndexReader, current_version, open_index
from indexer.embedder import Embedder


@dataclass(frozen=True, slots=True)
class QueryScores:
    """One query's score of every passage under each signal, aligned with the index's passage order."""

    dense: np.ndarray
    bm25: np.ndarray
    context: np.ndarray | None
    lead: np.ndarray | None = None  # the part-level dense signals (citesearch.part_evidence), all passages
    part_mean: np.ndarray | None = None


def doc_ranking(scores: np.ndarray, doc_of: np.ndarray, depth: int = 100) -> list[str]:
    """Documents by their best passage's score."""
    order = np.argsort(-scores, kind="stable")
    seen: dict[str, None] = {}
    for position in order:
        seen.setdefault(doc_of[position], None)
        if len(seen) == depth:
            break
    return list(seen)


def top_positive(scores: np.ndarray, depth: int) -> np.ndarray:
    positive = np.flatnonzero(scores > 0)
    return positive[np.argsort(-scores[positive], kind="stable")[:depth]]


def replay(scores: QueryScores, settings: FusionSettings, doc_of: np.ndarray) -> list[str]:
    """The document ranking ``Searcher`` gives in hybrid mode with these settings, before any late-interaction
    rerank (``rerank_depth``; ``eval.late_interaction`` replays that)."""
    union, fused = fused_candidates(scores, settings)
    return doc_ranking(fused, doc_of[union])


def fused_candidates(scores: QueryScores, settings: FusionSettings) -> tuple[np.ndarray, np.ndarray]:
    """The candidate passages ``Searcher`` fuses in hybrid mode (positions in the index's passage order) and their
    fused scores."""
    depth = min(settings.candidates, len(scores.dense))
    dense_top = np.argpartition(-scores.dense, depth - 1)[:depth]
    context = scores.context if settings.context_weight > 0 else None
    keyword = scores.bm25 if context is None else keyword_score(scores.bm25, context, settings)
    union = np.union1d(dense_top, top_positive(keyword, depth))
    lead = scores.lead[union] if scores.lead is not None and settings.uses_parts else None
    part_mean = scores.part_mean[union] if scores.part_mean is not None and settings.uses_parts else None
    fused = fuse(
        scores.dense[union],
        scores.bm25[union],
        None if context is None else context[union],
        settings,
        lead,
        part_mean,
    )
    return union, fused


def all_part_scores(searcher: Searcher, query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The lead and part-mean cosines of every passage (keyword-index order), as the searcher computes them."""
    keyword = searcher.reader.keyword
    if keyword is None:
        return None
    parts = searcher.part_scores(keyword.passage_ids, query_vector)
    return None if parts is None else (parts.lead, parts.mean)


def query_signals(
    reader: IndexReader, embedder: Embedder, settings: Settings, queries: Mapping[str, str]
) -> tuple[dict[str, QueryScores], FusionSettings]:
    """Every query's score of every passage (keyword-index order) under each signal, and the fusion the configured
    profile resolves to for this index, as a search would."""
    keyword = reader.keyword
    assert keyword is not None
    ids = keyword.passage_ids
    query_ids = list(queries)
    query_vectors = embedder.encode([queries[q] for q in query_ids], batch_size=64)
    dense_all = query_vectors @ reader.vectors.vectors_for(ids).T
    searcher = Searcher(reader, embedder, settings.fusion_settings())
    per_query: dict[str, QueryScores] = {}
    for i, q in enumerate(query_ids):
        parts = all_part_scores(searcher, query_vectors[i : i + 1])
        per_query[q] = QueryScores(
            dense_all[i],
            keyword.scores(queries[q]),
            keyword.context_scores(queries[q]),
            None if parts is None else parts[0],
            None if parts is None else parts[1],
        )
    return per_query, searcher.fusion


GRID_STEP = 0.1  # one step either side of each default weight


def steps_around(weight: float, step: float = GRID_STEP) -> tuple[float, ...]:
    """The weight and one step either side of it, kept within [0, 1] (rounded: 0.1 + 0.2 is not 0.3)."""
    return tuple(sorted({round(min(max(weight + delta, 0.0), 1.0), 6) for delta in (-step, 0.0, step)}))


def default_grid(centre: FusionSettings) -> list[FusionSettings]:
    """The neighbourhood of ``centre`` (the default as resolved for the index: each of dense, bm25, context, lead,
    part mean one step either side), 1000 candidates, z-scores; then the older three-signal grid and RRF for
    comparison. Centred on the resolved default, so a news index is searched around the long profile and an
    abstract index around the short one."""
    grid = [
        FusionSettings(dense_weight=w, bm25_weight=b, context_weight=c, lead_weight=lead, part_mean_weight=m)
        for w, b, c, lead, m in itertools.product(*(steps_around(getattr(centre, name)) for name in WEIGHT_NAMES))
        if w + b + c > 0
    ]
    grid += [
        FusionSettings(
            method="convex",
            normalization=n,
            dense_weight=w,
            bm25_weight=b,
            context_weight=c,
            candidates=k,
            lead_weight=0.0,
            part_mean_weight=0.0,
        )
        for n, (w, b, c), k in itertools.product(
            NORMALIZATIONS,
            (
                (0.5, 0.5, 0.0),
                (0.6, 0.4, 0.0),
                (0.5, 0.25, 0.25),
                (0.5, 0.2, 0.3),
                (0.5, 0.3, 0.2),
                (0.6, 0.2, 0.2),
                (0.4, 0.3, 0.3),
                (0.45, 0.25, 0.3),
                (0.55, 0.2, 0.25),
            ),
            (100, 300),
        )
    ]
    grid += [
        FusionSettings(method="rrf", dense_weight=w, rrf_k=k, context_weight=c, candidates=300)
        for w, k, c in itertools.product((0.4, 0.5, 0.6), (10, 60), (0.0, 0.3))
    ]
    return grid


def replay_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every offline replay takes: a BEIR dataset folder, its split and the index built for it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--index-dir", type=Path, default=Path("var/eval/scifact"))
    return parser


def load_replay_dataset(tool: str, args: argparse.Namespace) -> BeirDataset | None:
    """The dataset split, or None after one line naming what is missing: the dataset, or the index built for it."""
    try:
        dataset = load_beir_dataset(args.dataset, args.split)
    except ValueError as error:  # a missing or malformed dataset: one line, as the citesearch CLI gives it
        print(f"{tool}: error: {error}", file=sys.stderr)
        return None
    if current_version(args.index_dir) is None:
        print(f"{tool}: error: no index in {args.index_dir}; build it with citesearch eval beir", file=sys.stderr)
        return None
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = replay_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="cross-validate the choice of the grid's best over this many folds of the queries (0: off)",
    )
    parser.add_argument(
        "--fold-groups",
        metavar="REGEX",
        help="keep queries whose ids share this pattern's match in one fold (e.g. '^\\d{8}': a news week's "
        "questions, held out together as a new week would be)",
    )
    args = parser.parse_args(argv)
    if args.folds == 1 or args.folds < 0:
        parser.error(f"--folds must be 0 (off) or at least 2, got {args.folds}")
    try:
        group_of = group_by_pattern(args.fold_groups) if args.fold_groups else None
    except re.error as error:
        parser.error(f"--fold-groups {args.fold_groups!r} is not a regular expression: {error}")
    dataset = load_replay_dataset("eval.tune", args)
    if dataset is None:
        return 1
    if args.folds:
        try:  # before minutes of grid, not after: too few queries or groups for the folds
            assign_folds(list(dataset.queries), args.folds, group_of=group_of)
        except ValueError as error:
            parser.error(str(error))
    settings = Settings()
    embedder = settings.load_embedder()
    with open_index(args.index_dir) as reader:
        keyword = reader.keyword
        if keyword is None:
            print(f"{args.index_dir} has no keyword index; rebuild it with citesearch eval beir", file=sys.stderr)
            return 1
        doc_of = np.array([p.doc_id for p in reader.passages(keyword.passage_ids.tolist())], dtype=object)
        per_query, default_fusion = query_signals(reader, embedder, settings, dataset.queries)
    default = evaluate_rankings(dataset.qrels, {q: replay(s, default_fusion, doc_of) for q, s in per_query.items()})
    results: list[dict[str, Any]] = [{"fusion": "default", "settings": default_fusion.to_dict(), **default.metrics}]
    scored: list[tuple[dict[str, Any], dict[str, float]]] = []
    for name in ("dense", "bm25"):
        rankings = {q: doc_ranking(getattr(s, name), doc_of) for q, s in per_query.items()}
        result = evaluate_rankings(dataset.qrels, rankings)
        scored.append(({"fusion": name, **result.metrics}, result.per_query["ndcg@10"]))
    grid = default_grid(default_fusion)
    for number, fusion in enumerate(grid, start=1):
        rankings = {q: replay(s, fusion, doc_of) for q, s in per_query.items()}
        result = evaluate_rankings(dataset.qrels, rankings)
        scored.append(({"fusion": fusion.to_dict(), **result.metrics}, result.per_query["ndcg@10"]))
        print(json.dumps({"point": f"{number}/{len(grid)}", **scored[-1][0]}), file=sys.stderr)
    # Cross-validate before sorting: the default first, so a fold keeps it unless a point beats it there.
    validated = (
        cross_validate(
            [default.per_query["ndcg@10"], *(per_query for _, per_query in scored)], args.folds, group_of=group_of
        )
        if args.folds
        else None
    )
    scored.sort(key=lambda item: -float(item[0]["ndcg@10"]))
    # The best points of a grid beat the default partly by chance: they were picked on these very queries. The
    # paired test against the default says how much of the gap is more than that.
    for row, ndcg_per_query in scored[:10]:
        test = paired_difference("ndcg@10", default.per_query["ndcg@10"], ndcg_per_query)
        results.append(row | {"ndcg@10_against_default": test.to_dict()})
    output: dict[str, Any] = {"grid_points": len(grid), "best": results}
    if validated is not None:
        output["cross_validation"] = validated.to_dict()
        # The default's own figure is in sample too when it was chosen on this set: the held-out mean, not the
        # default's, is what to expect on new queries of the kind.
        folds = "folds of query groups" if group_of else "folds"
        print(validated.summary("choosing by this grid", "default", folds), file=sys.stderr)
    print(json.dumps(output, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
