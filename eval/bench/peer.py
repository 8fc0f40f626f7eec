"""``citesearch bench peer DATASET_DIR``: citesearch against txtai on the same corpus, model and queries.

One run measures side by side, on one BEIR dataset (read in place):

* citesearch: a fresh build into an empty folder through the shared pipeline (``eval.beir.prepare_index``, the
  configured settings and embedding backend), then every query through the shared ``Searcher`` in hybrid and in
  dense mode (``eval.ranking.search_documents``, one passage per document, 100 documents deep);
* txtai: ``Embeddings`` on the same model folder (the bundled all-MiniLM-L6-v2, found like ``indexer.embedder``
  finds it), ``content=True``, exact faiss (``IDMap,Flat``, like citesearch's), one row per document (title, a
  space, text, as BEIR does), then ``search(query, limit=100)`` per query.

txtai is never a citesearch dependency: it lives in a separate virtualenv (``scripts/bench-peer-setup.sh``, default
``var/bench-venv``, or ``CITESEARCH_BENCH_VENV`` / ``--bench-venv``) and runs in a subprocess
(``eval/bench/txtai_runner.py``) that gets the documents and queries as JSON and returns rankings and timings.

Both rankings are scored by the same ``eval.metrics.evaluate_rankings``. Indexing time excludes loading the model
on both sides (citesearch: ``prepare_index``'s build; txtai: ``Embeddings.index``); latency is one search call,
query encoding included, after one warm-up query on both sides.

``--limit N`` keeps the first N documents of corpus.jsonl and only the queries whose relevant documents (qrels
score > 0) are all among them, so every kept query can be answered fully by both systems.

Targets (same run): citesearch indexes faster (index-time ratio ≤ 1), answers faster (hybrid p50 ratio ≤ 1) and
ranks better (hybrid nDCG@10 minus txtai's ≥ 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.bench.common import BenchReport, add_report_options, emit_report, percentiles, positive_int, stopwatch

if TYPE_CHECKING:
    from citesearch.settings import Settings
    from eval.beir import BeirDataset
    from indexer.documents import Document
    from indexer.embedder import Embedder

DEFAULT_BENCH_VENV = Path("var/bench-venv")
BENCH_VENV_ENV = "CITESEARCH_BENCH_VENV"
SETUP_SCRIPT = "scripts/bench-peer-setup.sh"
RUNNER = Path(__file__).with_name("txtai_runner.py")
DEPTH = 100
MODES = ("hybrid", "dense")
LIMIT_RULE = (
    "--limit N: the first N documents of corpus.jsonl, and only the queries whose relevant documents "
    "(qrels score > 0) are all among them"
)


class PeerSetupError(ValueError):
    """The txtai bench virtualenv is missing or broken (a ValueError: the CLI prints it as one line)."""


def bench_venv_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get(BENCH_VENV_ENV) or DEFAULT_BENCH_VENV)


def check_bench_venv(venv: Path) -> Path:
    """The venv's python, once it is known to import txtai; else a one-line PeerSetupError saying what to run."""
    python = venv / "bin" / "python"
    hint = f"run `bash {SETUP_SCRIPT} {venv}` (or point {BENCH_VENV_ENV} / --bench-venv at one)"
    if not python.exists():
        raise PeerSetupError(f"no txtai bench virtualenv at {venv}: {hint}")
    # find_spec, not import: importing txtai loads torch, seconds the runner pays again anyway.
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('txtai') is None)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["txtai is not installed there"])[-1]
        raise PeerSetupError(f"txtai cannot be imported from {python} ({last}): {hint}")
    return python


@dataclass(frozen=True, slots=True)
class Subset:
    documents: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus_documents: int  # documents in the whole corpus
    split_queries: int  # queries of the split (with text)


def select_subset(dataset: BeirDataset, documents: list[Document], limit: int | None) -> Subset:
    """All documents and queries, or with ``limit``: the first N documents and the queries they answer fully."""
    kept = documents if limit is None else documents[:limit]
    ids = {doc.doc_id for doc in kept}
    queries: dict[str, str] = {}
    for query_id, text in dataset.queries.items():
        relevant = {doc_id for doc_id, score in dataset.qrels[query_id].items() if score > 0}
        if relevant and relevant <= ids:
            queries[query_id] = text
    return Subset(
        documents=list(kept),
        queries=queries,
        qrels={query_id: dataset.qrels[query_id] for query_id in queries},
        corpus_documents=len(documents),
        split_queries=len(dataset.queries),
    )


def run_citesearch(
    subset: Subset,
    dataset_name: str,
    embedder: Embedder,
    settings: Settings,
    index_dir: Path,
    *,
    modes: tuple[str, ...] = MODES,
    log: Any = None,
) -> dict[str, Any]:
    """Build ``subset`` into ``index_dir`` (reused when it already holds it), search every query in each mode."""
    from citesearch.search import Searcher, check_model_matches
    from eval.beir import prepare_index
    from eval.metrics import BEIR_METRICS, evaluate_rankings
    from eval.ranking import search_documents
    from index_store import open_index

    stream = log if log is not None else sys.stderr
    prepared = prepare_index(index_dir, dataset_name, subset.documents, embedder, settings)
    print(f"citesearch index {index_dir}: {prepared.reason}", file=stream)
    result: dict[str, Any] = {
        "build_seconds": prepared.build_seconds,
        "reused": prepared.reused,
        "build": prepared.build,
        "modes": {},
    }
    with open_index(index_dir) as reader:
        check_model_matches(reader, embedder)
        result["passages"] = int(reader.manifest.counts.get("passages", 0))
        for mode in modes:
            # A fresh searcher per mode: its query-vector cache must not carry one mode's encodes into the next
            # mode's latencies (every query here is asked once per mode).
            searcher = Searcher(reader, embedder, settings.fusion_settings())
            search_documents(searcher, "warm-up query", depth=DEPTH, mode=mode)
            rankings: dict[str, list[str]] = {}
            latencies: list[float] = []
            for query_id, text in subset.queries.items():
                found = search_documents(searcher, text, depth=DEPTH, mode=mode)
                rankings[query_id] = [doc.doc_id for doc in found.documents]
                latencies.append(found.latency_ms)
            scored = evaluate_rankings(subset.qrels, rankings, BEIR_METRICS)
            result["modes"][mode] = {
                "metrics": scored.metrics,
                "queries": scored.queries,
                "latency": percentiles(latencies),
            }
    return result


def run_txtai(python: Path, subset: Subset, model_path: str, *, encode_batch: int) -> dict[str, Any]:
    """Run eval/bench/txtai_runner.py in the bench venv on ``subset``; its timings, rankings and latencies."""
    from eval.metrics import BEIR_METRICS, evaluate_rankings

    job = {
        "model_path": model_path,
        "documents": [[doc.doc_id, f"{doc.title} {doc.text}".strip()] for doc in subset.documents],
        "queries": list(subset.queries.items()),
        "depth": DEPTH,
        "encode_batch": encode_batch,
    }
    with tempfile.TemporaryDirectory(prefix="citesearch-peer-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
        with stopwatch() as wall:
            done = subprocess.run(
                [str(python), str(RUNNER), str(job_path), str(out_path)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
        if done.returncode != 0 or not out_path.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PeerSetupError(f"the txtai runner failed (exit {done.returncode}): {last}")
        result = json.loads(out_path.read_text(encoding="utf-8"))
    scored = evaluate_rankings(subset.qrels, result["rankings"], BEIR_METRICS)
    return {
        "version": result.get("txtai_version"),
        "load_seconds": result["load_seconds"],
        "index_seconds": result["index_seconds"],
        "wall_seconds": wall["seconds"],
        "metrics": scored.metrics,
        "queries": scored.queries,
        "latency": percentiles(result["latencies_ms"]),
    }


def _row(
    system: str, mode: str, index_s: float | None, rows: int, metrics: dict[str, float], latency: dict[str, float]
) -> dict[str, Any]:
    return {
        "system": system,
        "mode": mode,
        "index_s": None if index_s is None else round(index_s, 2),
        "indexed_rows": rows,
        "ndcg@10": round(metrics["ndcg@10"], 4),
        "recall@100": round(metrics["recall@100"], 4),
        "p50_ms": round(latency["p50_ms"], 2),
        "p99_ms": round(latency["p99_ms"], 2),
    }


def run_peer(
    args: argparse.Namespace, settings: Settings, *, embedder: Embedder | None = None, log: Any = None
) -> BenchReport:
    """The whole benchmark; ``embedder`` (tests) replaces the one the settings describe."""
    from eval.beir import available_splits, load_beir_dataset
    from indexer.embedder import resolve_model_path
    from indexer.loaders import load_documents

    stream = log if log is not None else sys.stderr
    python = check_bench_venv(bench_venv_dir(args.bench_venv))  # first: no model load when the venv is missing
    split = args.split
    if split is None:  # test when there is one, as BEIR reports; else the first split there is (SciFact here: train)
        splits = available_splits(Path(args.dataset_dir))
        split = "test" if "test" in splits or not splits else splits[0]
    dataset = load_beir_dataset(args.dataset_dir, split)
    model_path = resolve_model_path(settings.model)
    if not Path(model_path).is_dir():
        raise ValueError(f"bench peer needs a local model folder to hand to txtai; {settings.model!r} is not one")
    loaded = load_documents([dataset.corpus_path])
    subset = select_subset(dataset, list(loaded.documents), args.limit)
    if not subset.queries:
        raise ValueError(
            f"no query of split {split!r} has all its relevant documents in the first "
            f"{args.limit} documents; raise --limit"
        )
    print(f"bench peer: {len(subset.documents)} documents, {len(subset.queries)} queries", file=stream)

    if embedder is None:
        embedder = settings.load_embedder()
    keep = args.index_dir is not None
    if keep and args.index_dir.exists() and any(args.index_dir.iterdir()):
        raise ValueError(f"--index-dir {args.index_dir} is not empty: give a new or empty folder (indexing is timed)")
    index_dir = args.index_dir if keep else Path(tempfile.mkdtemp(prefix="citesearch-peer-index-"))
    try:
        ours = run_citesearch(subset, dataset.name, embedder, settings, index_dir, log=stream)
    finally:
        if not keep:
            shutil.rmtree(index_dir, ignore_errors=True)
    print("bench peer: running txtai in the bench venv", file=stream)
    peer = run_txtai(python, subset, model_path, encode_batch=settings.embed_batch_size)

    report = BenchReport(
        name="peer",
        settings={
            "dataset": dataset.name,
            "split": dataset.split,
            "limit": args.limit,
            "documents": len(subset.documents),
            "queries": len(subset.queries),
            "model": settings.model,
            "model_path": model_path,
            "embed_backend": settings.embed_backend,
            "embed_batch_size": settings.embed_batch_size,
            "chunker": settings.chunker_settings().to_dict(),
            "fusion": settings.fusion_settings().to_dict(),
            "depth": DEPTH,
            "txtai_version": peer["version"],
            "bench_venv": str(python.parent.parent),
            "txtai_config": {
                "method": "sentence-transformers",
                "content": True,
                "backend": "faiss",
                "faiss": {"components": "IDMap,Flat"},
                "encodebatch": settings.embed_batch_size,
            },
        },
    )
    rows = [
        _row(
            "citesearch",
            mode,
            ours["build_seconds"],
            ours["passages"],
            ours["modes"][mode]["metrics"],
            ours["modes"][mode]["latency"],
        )
        for mode in MODES
    ]
    rows.append(
        _row(
            f"txtai {peer['version'] or ''}".strip(),
            "dense",
            peer["index_seconds"],
            len(subset.documents),
            peer["metrics"],
            peer["latency"],
        )
    )
    report.tables["citesearch vs txtai (same corpus, model, queries)"] = rows
    hybrid = ours["modes"]["hybrid"]
    report.check("index seconds: citesearch / txtai", ours["build_seconds"] / peer["index_seconds"], 1.0, at_most=True)
    report.check(
        "p50 latency: citesearch hybrid / txtai",
        hybrid["latency"]["p50_ms"] / peer["latency"]["p50_ms"],
        1.0,
        at_most=True,
    )
    report.check(
        "nDCG@10: citesearch hybrid - txtai",
        hybrid["metrics"]["ndcg@10"] - peer["metrics"]["ndcg@10"],
        0.0,
        at_most=False,
    )
    report.notes += [
        LIMIT_RULE if args.limit is not None else "whole corpus, every query of the split with a relevant document",
        f"{len(subset.documents)} of {subset.corpus_documents} documents; {len(subset.queries)} of "
        f"{subset.split_queries} queries of split {dataset.split}",
        "index_s excludes loading the model on both sides; citesearch's includes chunking, BM25 and publishing a "
        "version, txtai's its SQLite content store and faiss",
        "indexed_rows: citesearch passages (documents are chunked), txtai documents (one row each, the model "
        "truncates at its window)",
        f"latency: one search call (query encoding included), 100 documents deep, after one warm-up query; txtai "
        f"model load {peer['load_seconds']:.1f}s, subprocess wall {peer['wall_seconds']:.1f}s",
    ]
    return report


def cmd_bench_peer(args: argparse.Namespace, settings: Settings) -> int:
    report = run_peer(args, settings)
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "peer",
        help="citesearch vs txtai on a BEIR dataset: indexing time, latency, nDCG@10",
        description="Index DATASET_DIR/corpus.jsonl with citesearch and with txtai (same model, run from the "
        f"separate venv made by {SETUP_SCRIPT}), search every query of the split with both, and write "
        "bench-peer-*.json and .md to the reports folder.",
    )
    parser.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR", help="BEIR dataset folder (read in place)")
    parser.add_argument(
        "--split", help="qrels split to evaluate (default: test if the dataset has it, else its first split)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help=LIMIT_RULE.split(": ", 1)[1])
    add_report_options(parser)
    parser.add_argument(
        "--bench-venv",
        type=Path,
        metavar="DIR",
        help=f"the txtai virtualenv (default: ${BENCH_VENV_ENV} or {DEFAULT_BENCH_VENV})",
    )
    parser.add_argument(
        "--index-dir",
        type=Path,
        metavar="DIR",
        help="new or empty folder for citesearch's index, kept afterwards (default: temporary)",
    )
    parser.set_defaults(handler=cmd_bench_peer)
