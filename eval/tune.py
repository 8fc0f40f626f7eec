"""Choosing the hybrid fusion by measurement: a grid over fusion settings on a BEIR split, computed offline.

Every passage's dense and BM25 score is computed once per query; each fusion setting is then replayed exactly as
``Searcher`` runs it (top ``candidates`` from each retriever, exact scores for the union, fuse, a document's best
passage), so a grid of dozens of settings costs seconds. The chosen setting is then confirmed through the real
search path with ``citesearch eval beir --mode hybrid``. Tune on train only.

    python -m eval.tune DATASET_DIR --split train [--index-dir DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citesearch.fusion import FusionSettings, fuse
from citesearch.settings import Settings
from eval.beir import load_beir_dataset
from eval.metrics import evaluate_rankings
from index_store import KeywordIndex, KeywordSettings, open_index


@dataclass(frozen=True, slots=True)
class QueryScores:
    dense: np.ndarray  # cosine of every passage, aligned with the passage id array
    bm25: np.ndarray


def _doc_ranking(scores: np.ndarray, doc_of: np.ndarray, depth: int = 100) -> list[str]:
    order = np.argsort(-scores, kind="stable")
    seen: dict[str, None] = {}
    for position in order:
        seen.setdefault(doc_of[position], None)
        if len(seen) == depth:
            break
    return list(seen)


def replay(scores: QueryScores, settings: FusionSettings, doc_of: np.ndarray) -> list[str]:
    """The document ranking ``Searcher`` would give in hybrid mode with these settings."""
    depth = settings.candidates
    dense_top = np.argpartition(-scores.dense, depth)[:depth]
    positive = np.flatnonzero(scores.bm25 > 0)
    bm25_top = positive[np.argsort(-scores.bm25[positive])[:depth]]
    union = np.union1d(dense_top, bm25_top)
    fused = np.full(len(scores.dense), -np.inf)
    fused[union] = fuse(scores.dense[union], scores.bm25[union], settings)
    return _doc_ranking(fused[union], doc_of[union])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--index-dir", type=Path, default=Path("var/eval/scifact"))
    parser.add_argument("--bm25-grid", action="store_true", help="also try BM25 k1/b values")
    args = parser.parse_args(argv)
    dataset = load_beir_dataset(args.dataset, args.split)
    settings = Settings()
    from indexer.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(settings.model, backend=settings.embed_backend)
    with open_index(args.index_dir) as reader:
        passages = list(reader.iter_passages())
        ids = np.array([p.passage_id for p in passages])
        doc_of = np.array([p.doc_id for p in passages], dtype=object)
        matrix = reader.vectors.vectors_for(ids)
        query_ids = list(dataset.queries)
        query_vectors = embedder.encode([dataset.queries[q] for q in query_ids], batch_size=64)
        dense_all = query_vectors @ matrix.T
        bm25_options = [KeywordSettings()]
        if args.bm25_grid:
            bm25_options = [KeywordSettings(k1=k1, b=b) for k1, b in itertools.product((0.9, 1.2, 1.5), (0.4, 0.75, 0.9))]
        results = []
        for keyword_settings in bm25_options:
            keyword = KeywordIndex.build(
                ((p.passage_id, KeywordIndex.text_for(p.title, p.text, keyword_settings)) for p in passages),
                keyword_settings,
            )
            order = keyword.positions(ids)
            per_query = {
                q: QueryScores(dense_all[i], keyword.scores(dataset.queries[q])[order]) for i, q in enumerate(query_ids)
            }
            for name, only in (("dense", "dense"), ("bm25", "bm25")):
                rankings = {q: _doc_ranking(getattr(s, only), doc_of) for q, s in per_query.items()}
                metric = evaluate_rankings(dataset.qrels, rankings).metrics
                results.append({"bm25": keyword_settings.to_dict(), "fusion": name, **metric})
            grid = [FusionSettings(method="convex", dense_weight=w, candidates=c)
                    for w, c in itertools.product((0.3, 0.4, 0.5, 0.6, 0.7), (100, 300))]
            grid += [FusionSettings(method="rrf", dense_weight=w, rrf_k=k, candidates=c)
                     for w, k, c in itertools.product((0.4, 0.5, 0.6), (10, 60), (100,))]
            for fusion in grid:
                rankings = {q: replay(s, fusion, doc_of) for q, s in per_query.items()}
                metric = evaluate_rankings(dataset.qrels, rankings).metrics
                results.append({"bm25": keyword_settings.to_dict(), "fusion": fusion.to_dict(), **metric})
                print(json.dumps(results[-1]), file=sys.stderr)
    results.sort(key=lambda r: -r["ndcg@10"])
    print(json.dumps(results[:10], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
