"""``python -m eval.bench.milvus``: the Milvus store measured against the local store on a BEIR dataset's queries.

Prints, for the first ``--limit`` queries: dense overlap@10 (the Milvus top 10 passages that are also the local
top 10), nDCG@10 of hybrid search three ways on Milvus candidates (the project's fusion through the shared
``Searcher``, Milvus ``hybrid_search`` with its RRF ranker, and with its weighted ranker) beside the local store's,
and the latency of each. ``--server`` also starts the Milvus 2.3.5 Standalone server (eval/milvus_server.py) and
times dense search there, side by side with Milvus Lite. Needs the dataset's local eval index (``citesearch eval
beir`` builds it) and ``pip install citesearch[milvus]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from citesearch.search import Searcher, SearchRequest
from citesearch.settings import Settings
from citesearch.store import LocalStore
from eval.beir import load_beir_dataset
from eval.metrics import evaluate_rankings
from eval.ranking import search_documents
from index_store import IndexNotFoundError, open_index
from index_store.milvus_store import MilvusConfig, MilvusStore, publish_from_reader


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"mean {statistics.fmean(samples):.1f} ms, p50 {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms"


def _timed(fn: Callable[[], object], samples: list[float]) -> object:
    started = time.perf_counter()
    value = fn()
    samples.append((time.perf_counter() - started) * 1000)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--index-dir", type=Path, required=True, help="the dataset's local eval index")
    parser.add_argument("--milvus-uri", required=True, help="Milvus Lite .db path (or a server) to copy it into")
    parser.add_argument("--prefix", default="citesearch_bench")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--server", action="store_true", help="also time dense search on Milvus 2.3.5")
    args = parser.parse_args(argv)

    settings = Settings()
    dataset = load_beir_dataset(args.dataset_dir, args.split)
    query_ids = list(dataset.queries)[: args.limit]
    embedder = settings.load_embedder()
    config = MilvusConfig(uri=args.milvus_uri, prefix=args.prefix)
    with open_index(args.index_dir) as reader:
        started = time.perf_counter()
        try:
            served: MilvusStore | None = MilvusStore(config)
        except IndexNotFoundError:
            served = None
        if served is not None and served.serves(reader):  # the copy `citesearch eval beir` made: reuse it
            print(f"reusing Milvus version {served.version} at {config.uri}")
        else:
            publish_from_reader(reader, config)
        if served is not None:
            served.close()
        print(
            f"ready: {reader.manifest.counts.get('passages')} passages to {config.uri} in "
            f"{time.perf_counter() - started:.0f}s"
        )
        store = MilvusStore(config)
        local = Searcher(LocalStore(reader), embedder, settings.fusion_settings())
        milvus = Searcher(store, embedder, settings.fusion_settings())
        overlaps: list[float] = []
        rankings: dict[str, dict[str, list[str]]] = {name: {} for name in ("local", "fusion", "rrf", "weighted")}
        times: dict[str, list[float]] = {
            name: [] for name in ("local dense", "lite dense", "local", "fusion", "rrf", "weighted")
        }
        milvus.search(SearchRequest("warm-up query", k=10))
        vectors = {}
        for query_id in query_ids:
            text = dataset.queries[query_id]
            vectors[query_id] = vector = embedder.encode([text])
            a = _timed(partial(local.search, SearchRequest(text, k=10, mode="dense")), times["local dense"])
            b = _timed(partial(milvus.search, SearchRequest(text, k=10, mode="dense")), times["lite dense"])
            ids_a = {h.passage_id for h in a.hits}  # type: ignore[attr-defined]
            spans_b = {(h.citation.doc_id, h.citation.char_start) for h in b.hits}  # type: ignore[attr-defined]
            spans_a = {(h.citation.doc_id, h.citation.char_start) for h in a.hits}  # type: ignore[attr-defined]
            overlaps.append(len(spans_a & spans_b) / max(len(ids_a), 1))
            for name, searcher in (("local", local), ("fusion", milvus)):
                found = search_documents(searcher, text, depth=10)
                times[name].append(found.latency_ms)
                rankings[name][query_id] = [d.doc_id for d in found.documents]
            for ranker in ("rrf", "weighted"):
                hits = _timed(partial(store.milvus_hybrid, vector, text, 100, ranker), times[ranker])
                rows = store.passages(hits.ids.tolist())  # type: ignore[attr-defined]
                rankings[ranker][query_id] = list(dict.fromkeys(r.doc_id for r in rows))[:10]
        print(f"queries: {len(query_ids)} of {dataset.name} {args.split}")
        print(f"dense overlap@10 (Milvus Lite vs local): {np.mean(overlaps):.4f}")
        for name, label in (
            ("local", "local store, project fusion"),
            ("fusion", "Milvus Lite, project fusion"),
            ("rrf", "Milvus hybrid_search, RRFRanker(60)"),
            ("weighted", "Milvus hybrid_search, WeightedRanker(0.5, 0.5)"),
        ):
            # Over the measured queries only: a query left out would count as a miss (0) in evaluate_rankings.
            qrels = {query_id: dataset.qrels[query_id] for query_id in query_ids if query_id in dataset.qrels}
            score = evaluate_rankings(qrels, rankings[name], ["ndcg@10"]).metrics["ndcg@10"]
            print(f"hybrid nDCG@10, {label}: {score:.4f}   ({_ms(times[name])})")
        print(f"dense latency: local {_ms(times['local dense'])}; Milvus Lite {_ms(times['lite dense'])}")
        store.close()
        if args.server:
            _server_latency(reader, embedder, vectors, query_ids, dataset.queries)
    return 0


def _server_latency(reader: object, embedder: object, vectors: dict, query_ids: list[str], queries: dict) -> None:
    from eval.milvus_server import milvus_standalone

    with tempfile.TemporaryDirectory(prefix="citesearch-milvus-server-") as scratch:
        started = time.perf_counter()
        with milvus_standalone(Path(scratch) / "data", timeout=150) as server:
            print(f"Milvus 2.3.5 Standalone up in {time.perf_counter() - started:.0f}s at {server.uri}")
            config = MilvusConfig(uri=server.uri, prefix="citesearch_bench")
            publish_from_reader(reader, config)  # type: ignore[arg-type]
            store = MilvusStore(config)
            searcher = Searcher(store, embedder)  # type: ignore[arg-type]
            searcher.search(SearchRequest("warm-up query", k=10, mode="dense"))
            samples: list[float] = []
            for query_id in query_ids:
                _timed(partial(searcher.search, SearchRequest(queries[query_id], k=10, mode="dense")), samples)
            print(f"dense latency: Milvus 2.3.5 server {_ms(samples)}")
            store.close()


if __name__ == "__main__":
    raise SystemExit(main())
