"""Measuring a late-interaction rerank offline: ColBERT's MaxSim, zero-shot from the index's own MiniLM.

Each query and each candidate passage is run through the model and kept as its contextual token vectors (the
outputs before mean pooling, L2-normalised). A passage's MaxSim is the mean, over the query's tokens, of each
token's best cosine among the passage's tokens: soft term matching, in context, that neither the pooled cosine nor
BM25 sees. The top ``depth`` documents of the hybrid ranking are reranked by their passages' fused score plus
``weight`` × the z-score of MaxSim among those passages (the convex fusion's own scale); the documents below keep
their order. The hybrid signals are replayed exactly as ``Searcher`` fuses them (``eval.tune``), so the baseline
is the figure ``citesearch eval beir`` prints.

    python -m eval.late_interaction DATASET_DIR --split SPLIT [--index-dir DIR] [--depth 30] [--weights 0.5,1,1.5]
                                    [--folds 5]   # also what choosing the best weight is worth on held-out queries
                                    [--stored]    # on the token codes the index keeps, as the searcher serves it

The rerank is the one ``Searcher`` runs (``citesearch.late_interaction``): by default in the short profile, on the
token codes the index keeps (``--stored`` replays exactly that), or per query on exact token vectors where it keeps
none (the default here: each candidate passage encoded once for all the weights). The baseline is the hybrid
without the rerank (docs/retrieval.md, "Late interaction").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from citesearch.late_interaction import maxsim, rerank_texts, reranked_order, rows_in_basis, top_document_passages
from citesearch.settings import Settings
from eval.crossval import cross_validate
from eval.metrics import evaluate_rankings
from eval.significance import paired_difference
from eval.tune import doc_ranking, fused_candidates, load_replay_dataset, query_signals, replay_parser
from index_store import open_index
from indexer.embedder import SentenceTransformerEmbedder

DEFAULT_DEPTH = 30
DEFAULT_WEIGHTS = (0.5, 1.0, 1.5)
RANKING_DEPTH = 100  # documents per query in the evaluated ranking, as ``eval beir`` scores


def reranked_ranking(
    fused: np.ndarray, doc_of: np.ndarray, late: np.ndarray, selected: np.ndarray, weight: float
) -> list[str]:
    """The document ranking after the rerank, as ``Searcher`` orders the candidates (a document ranks at its first
    passage in that order)."""
    _, order = reranked_order(fused, selected, late, weight)
    return list(dict.fromkeys(doc_of[order].tolist()))[:RANKING_DEPTH]


class TokenEncoder:
    """The embedder's contextual token vectors for texts (unit rows, special tokens kept), each text encoded once;
    kept in float16, which moves a MaxSim by under 1e-3 and halves the memory."""

    CHUNK = 256  # texts per call, so that the progress bar moves

    def __init__(self, embedder: SentenceTransformerEmbedder) -> None:
        self._embedder = embedder
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> list[np.ndarray]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        bar = tqdm(total=len(missing), desc="token vectors", unit="text", disable=not show_progress)
        with bar:
            for start in range(0, len(missing), self.CHUNK):
                chunk = missing[start : start + self.CHUNK]
                for text, vectors in zip(chunk, self._embedder.encode_tokens(chunk), strict=True):
                    self._cache[text] = vectors.astype(np.float16)
                bar.update(len(chunk))
        return [self._cache[t] for t in texts]


@dataclass(frozen=True, slots=True)
class Candidates:
    """One query's fused candidates and which of them (the passages of its top documents) are reranked."""

    union: np.ndarray
    fused: np.ndarray
    selected: np.ndarray


def main(argv: list[str] | None = None) -> int:
    parser = replay_parser(__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="documents reranked per query")
    parser.add_argument(
        "--weights",
        default=",".join(str(w) for w in DEFAULT_WEIGHTS),
        help="comma-separated weights of the MaxSim z-score to measure",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="cross-validate choosing among the hybrid and each weight over this many folds of the queries (0: off)",
    )
    parser.add_argument(
        "--stored",
        action="store_true",
        help="score MaxSim on the token codes the index keeps (index_store.token_vectors), as the searcher does",
    )
    args = parser.parse_args(argv)
    if args.folds == 1 or args.folds < 0:
        parser.error(f"--folds must be 0 (off) or at least 2, got {args.folds}")
    if args.depth < 1:
        parser.error(f"--depth must be at least 1, got {args.depth}")
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        parser.error(f"--weights must be numbers separated by commas, got {args.weights!r}")
    dataset = load_replay_dataset("eval.late_interaction", args)
    if dataset is None:
        return 1
    settings = Settings()
    embedder = settings.load_embedder()
    if not isinstance(embedder, SentenceTransformerEmbedder):
        print(
            f"eval.late_interaction: error: the {settings.embed_backend} embedder gives no token vectors",
            file=sys.stderr,
        )
        return 1
    with open_index(args.index_dir) as reader:
        keyword = reader.keyword
        if keyword is None:
            print(f"eval.late_interaction: error: {args.index_dir} has no keyword index", file=sys.stderr)
            return 1
        ids = keyword.passage_ids
        stored = reader.passages(ids.tolist())
        doc_of = np.array([p.doc_id for p in stored], dtype=object)
        per_query, fusion = query_signals(reader, embedder, settings, dataset.queries)
        candidates: dict[str, Candidates] = {}
        for q, scores in per_query.items():
            union, fused = fused_candidates(scores, fusion)
            selected = top_document_passages(fused, doc_of[union], args.depth)
            candidates[q] = Candidates(union, fused, selected)
        positions = sorted({int(p) for c in candidates.values() for p in c.union[c.selected]})
        started = time.perf_counter()
        encoder = TokenEncoder(embedder)
        query_ids = list(per_query)
        query_tokens = encoder.encode([dataset.queries[q] for q in query_ids])
        kept = reader.token_vectors(ids[positions].tolist()) if args.stored else None
        if args.stored and kept is None:
            print(f"eval.late_interaction: error: {args.index_dir} keeps no token vectors (--stored)", file=sys.stderr)
            return 1
        missing = positions if kept is None else [p for p, row in zip(positions, kept.rows, strict=True) if row is None]
        print(f"encoding {len(missing)} candidate passages token by token", file=sys.stderr)
        texts = rerank_texts([stored[p] for p in missing])
        encoded = dict(zip(missing, encoder.encode(texts, show_progress=True), strict=True))
        if kept is None:
            tokens = encoded
        else:  # as the searcher scores: both sides in the index's basis (citesearch.search.Searcher._maxsim)
            in_basis = rows_in_basis(kept, [encoded[p] for p in missing])
            tokens = dict(zip(positions, in_basis, strict=True))
            query_tokens = [kept.projection.project(t.astype(np.float32)) for t in query_tokens]
        encode_seconds = time.perf_counter() - started
    late = {
        q: maxsim(query_tokens[i], [tokens[int(p)] for p in candidates[q].union[candidates[q].selected]])
        for i, q in enumerate(query_ids)
    }
    baseline = evaluate_rankings(
        dataset.qrels, {q: doc_ranking(c.fused, doc_of[c.union], RANKING_DEPTH) for q, c in candidates.items()}
    )
    rows: list[dict[str, object]] = []
    per_weight: list[dict[str, float]] = []
    for weight in weights:
        rankings = {
            q: reranked_ranking(c.fused, doc_of[c.union], late[q], c.selected, weight) for q, c in candidates.items()
        }
        result = evaluate_rankings(dataset.qrels, rankings)
        test = paired_difference("ndcg@10", baseline.per_query["ndcg@10"], result.per_query["ndcg@10"])
        rows.append({"weight": weight, **result.metrics, "ndcg@10_against_hybrid": test.to_dict()})
        per_weight.append(result.per_query["ndcg@10"])
        print(f"weight {weight}: nDCG@10 {result.metrics['ndcg@10']:.4f} (p {test.p_value:.3f})", file=sys.stderr)
    report = {
        "dataset": str(args.dataset),
        "split": args.split,
        "fusion": fusion.to_dict(),
        "depth": args.depth,
        "passages_encoded": len(missing),
        "stored": bool(args.stored),
        "encode_seconds": round(encode_seconds, 1),
        "hybrid": baseline.metrics,
        "late_interaction": rows,
    }
    if args.folds:
        # The best weight is picked on the very queries it is scored on: what picking it is worth on new queries
        # is the held-out mean, the hybrid first so that a fold must beat it to leave it.
        validated = cross_validate([baseline.per_query["ndcg@10"], *per_weight], args.folds)
        report["cross_validation"] = validated.to_dict()
        print(validated.summary("choosing between the hybrid and these weights", "hybrid"), file=sys.stderr)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
