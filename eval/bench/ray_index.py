"""``citesearch bench index DATASET_DIR --ray [ADDRESS]``: Ray indexing against the local path, in one run.

The same documents (``DATASET_DIR/corpus.jsonl``, first ``--limit N``) are indexed twice, each into a fresh folder
with an empty embedding cache: by the local path (``apply_changes``, what ``citesearch index`` does) and by the Ray
path (``indexer.ray_indexing.fill_embedding_cache`` then the same ``apply_changes``, what ``citesearch index --ray``
does). The report gives both throughputs and their ratio, Ray's fixed costs (starting or joining Ray, the time to
the first batch of vectors: actors loading their models), its steady rate after the first batch, and checks that the
two indexes are the same: passages, offsets, vectors, build report counts and, when the dataset has queries and
judgments, the top-10 document ids of the split's queries.

``citesearch bench compare-indexes DIR_A DIR_B`` runs the same comparison on two indexes built by the CLI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from eval.bench.common import BenchReport, add_report_options, emit_report, peak_rss_mb, positive_int, stopwatch

if TYPE_CHECKING:
    from citesearch.settings import Settings
    from indexer.embedder import Embedder
    from indexer.pipeline import BuildReport

CORPUS_FILE = "corpus.jsonl"
THROUGHPUT_RATIO = 0.8  # Ray path passages/s over local path passages/s, at least (local Ray on this machine)
VECTOR_TOLERANCE = 1e-6  # largest coordinate difference between the two builds' vectors
REPORT_FIELDS = (
    "documents",
    "added",
    "changed",
    "unchanged",
    "removed",
    "passages",
    "passages_by_section",
    "passages_embedded",
    "passages_from_cache",
    "window_splits",
    "chrome_chars",
)


@dataclass(frozen=True, slots=True)
class IndexComparison:
    """Two published indexes side by side: their passages (with offsets and text) and their vectors."""

    passages_a: int
    passages_b: int
    passages_equal: bool  # same documents, ordinals, sections, offsets and texts
    max_vector_diff: float  # largest coordinate difference over passages present in both (inf: none in common)


@dataclass(frozen=True, slots=True)
class RankingComparison:
    queries: int
    identical: int  # queries whose top-k document ids are the same, in the same order
    k: int


def compare_indexes(dir_a: Path, dir_b: Path) -> IndexComparison:
    from index_store import open_index

    with open_index(dir_a) as a, open_index(dir_b) as b:
        rows_a, ids_a = _passage_rows(a)
        rows_b, ids_b = _passage_rows(b)
        common = sorted(set(rows_a) & set(rows_b))
        diff = float("inf")
        if common:
            vectors_a = a.vectors.vectors_for(np.array([ids_a[r] for r in common], dtype=np.int64))
            vectors_b = b.vectors.vectors_for(np.array([ids_b[r] for r in common], dtype=np.int64))
            diff = float(np.max(np.abs(vectors_a - vectors_b))) if len(common) else 0.0
    return IndexComparison(len(rows_a), len(rows_b), set(rows_a) == set(rows_b), diff)


def _passage_rows(reader: Any) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], int]]:
    rows: list[tuple[Any, ...]] = []
    ids: dict[tuple[Any, ...], int] = {}
    for p in reader.iter_passages():
        row = (p.doc_id, p.ordinal, p.section, p.comment_no, p.char_start, p.char_end, p.text)
        rows.append(row)
        ids[row] = p.passage_id
    return rows, ids


def compare_rankings(
    dir_a: Path, dir_b: Path, queries: Sequence[str], embedder: Embedder, *, k: int = 10
) -> RankingComparison:
    """How many ``queries`` get the same top-``k`` document ids from both indexes (hybrid, the default mode)."""
    from citesearch.search import Searcher
    from eval.ranking import search_documents
    from index_store import open_index

    identical = 0
    with open_index(dir_a) as a, open_index(dir_b) as b:
        search_a, search_b = Searcher(a, embedder), Searcher(b, embedder)
        for query in queries:
            top_a = [d.doc_id for d in search_documents(search_a, query, depth=k).documents]
            top_b = [d.doc_id for d in search_documents(search_b, query, depth=k).documents]
            identical += top_a == top_b
    return RankingComparison(len(queries), identical, k)


def split_queries(dataset_dir: Path, split: str) -> list[str]:
    """The split's query texts, or none when the folder has no queries or judgments for it."""
    from eval.beir import load_beir_dataset

    try:
        return list(load_beir_dataset(dataset_dir, split).queries.values())
    except ValueError:
        return []


def run_ray_index_bench(
    dataset_dir: Path,
    embedder: Embedder,
    settings: Settings,
    *,
    address: str,
    limit: int | None = None,
    split: str = "train",
    max_queries: int | None = None,
    log: TextIO | None = None,
) -> BenchReport:
    from indexer.loaders import load_documents
    from indexer.pipeline import apply_changes
    from indexer.ray_indexing import RayOptions, credit_ray_embeddings, fill_embedding_cache

    stream = log if log is not None else sys.stderr
    corpus = Path(dataset_dir) / CORPUS_FILE
    if not corpus.is_file():
        raise ValueError(f"{corpus} is missing; a BEIR dataset folder holds {CORPUS_FILE}")

    def say(message: str) -> None:
        print(f"bench index --ray: {message}", file=stream, flush=True)

    documents = load_documents([corpus]).documents
    documents = documents if limit is None else documents[:limit]
    options = settings.build_options()
    ray_options = RayOptions(address, settings.ray_workers, settings.ray_gpus_per_worker)
    workdir = Path(tempfile.mkdtemp(prefix="citesearch-bench-ray-"))
    try:
        embedder.encode([doc.title for doc in documents[:32]])  # one-off initialisation, before anything is timed
        say(f"{len(documents)} documents; local path first (empty embedding cache)…")
        cpu0 = time.process_time()
        with stopwatch() as t_local:
            local = apply_changes(workdir / "local", embedder, upserts=documents, replace_all=True, options=options)
        t_local["cpu"] = time.process_time() - cpu0
        say(f"local: {local.passages} passages in {t_local['seconds']:.1f}s; now the Ray path ({address})…")
        cpu0 = time.process_time()
        with stopwatch() as t_ray:
            fill = fill_embedding_cache(
                workdir / "ray",
                documents,
                embedder,
                settings.chunker_settings(),
                options=ray_options,
                batch_size=settings.embed_batch_size,
                progress=stream,
            )
            with stopwatch() as t_publish:
                on_ray = apply_changes(workdir / "ray", embedder, upserts=documents, replace_all=True, options=options)
            credit_ray_embeddings(on_ray, fill)
        t_ray["cpu"] = time.process_time() - cpu0
        say(f"ray: {on_ray.passages} passages in {t_ray['seconds']:.1f}s; comparing the two indexes…")
        same = compare_indexes(workdir / "local", workdir / "ray")
        queries = split_queries(Path(dataset_dir), split)[:max_queries]
        rankings = compare_rankings(workdir / "local", workdir / "ray", queries, embedder) if queries else None
        rss = peak_rss_mb()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _report(dataset_dir, limit, embedder, fill, local, on_ray, t_local, t_ray, t_publish, same, rankings, rss)


def _report(
    dataset_dir: Path,
    limit: int | None,
    embedder: Embedder,
    fill: Any,
    local: BuildReport,
    on_ray: BuildReport,
    t_local: dict[str, float],
    t_ray: dict[str, float],
    t_publish: dict[str, float],
    same: IndexComparison,
    rankings: RankingComparison | None,
    rss: float,
) -> BenchReport:
    s = fill.seconds
    report = BenchReport(
        name="index-ray",
        settings={
            "dataset": str(dataset_dir),
            "limit": limit,
            "documents": fill.documents,
            "model": embedder.name,
            "embed_backend": getattr(embedder, "backend", None),
            "ray_address": fill.address,
            "ray_workers": fill.workers,
        },
    )
    local_rate = local.passages_embedded / t_local["seconds"]
    ray_rate = on_ray.passages_embedded / t_ray["seconds"]
    # CPU: the local build is this process alone; the Ray path is this process, the actors (they report their own
    # CPU time, model loading included) and, on a local Ray, Ray's own processes.
    ray_cpu = t_ray["cpu"] + s.get("actor_cpu", 0.0) + s.get("ray_processes_cpu", 0.0)
    steady = s.get("embed", 0.0) - s.get("first_batch", 0.0)
    report.tables["Indexing"] = [
        {
            "path": "local (apply_changes)",
            "passages": local.passages,
            "embedded": local.passages_embedded,
            "seconds": round(t_local["seconds"], 2),
            "passages_per_s": round(local_rate, 1),
            "cpu_s": round(t_local["cpu"], 1),
            "passages_per_cpu_s": round(local.passages_embedded / t_local["cpu"], 1),
            "ray_start_s": None,
            "first_batch_s": None,
            "ray_job_s": None,
            "publish_s": round(t_local["seconds"], 2),
        },
        {
            "path": f"ray ({fill.address}, {fill.workers} workers)",
            "passages": on_ray.passages,
            "embedded": on_ray.passages_embedded,
            "seconds": round(t_ray["seconds"], 2),
            "passages_per_s": round(ray_rate, 1),
            "cpu_s": round(ray_cpu, 1),
            "passages_per_cpu_s": round(on_ray.passages_embedded / ray_cpu, 1),
            "ray_start_s": round(s.get("start", 0.0), 2),
            "first_batch_s": round(s.get("first_batch", 0.0), 2),
            "ray_job_s": round(s.get("embed", 0.0), 2),
            "publish_s": round(t_publish["seconds"], 2),
        },
    ]
    report.check("Ray path passages/s / local path passages/s", ray_rate / local_rate, THROUGHPUT_RATIO, at_most=False)
    report.check(
        "Ray path passages per CPU second / local path's (less sensitive to other jobs on the machine)",
        (on_ray.passages_embedded / ray_cpu) / (local.passages_embedded / t_local["cpu"]),
        THROUGHPUT_RATIO,
        at_most=False,
    )
    report.check(
        "passages (doc, ordinal, section, offsets, text) differing", float(not same.passages_equal), 0, at_most=True
    )
    report.check("largest vector coordinate difference", same.max_vector_diff, VECTOR_TOLERANCE, at_most=True)
    differing = [f for f in REPORT_FIELDS if getattr(local, f) != getattr(on_ray, f)]
    report.check(f"build report fields differing ({', '.join(differing) or 'none'})", len(differing), 0, at_most=True)
    if rankings is not None:
        report.check(
            f"queries whose top-{rankings.k} ids differ (of {rankings.queries})",
            rankings.queries - rankings.identical,
            0,
            at_most=True,
        )
    report.notes += [
        f"same documents, each path into its own fresh folder with an empty embedding cache, local first; the Ray "
        f"path's time includes starting Ray ({s.get('start', 0.0):.1f}s), the actors loading their models (first "
        f"batch after {s.get('first_batch', 0.0):.1f}s), the job, and the publish, which chunks again on the driver "
        f"and finds every vector cached ({t_publish['seconds']:.1f}s)",
        f"Ray steady state after the first batch: {fill.embedded / steady:.1f} passages/s"
        if steady > 0 and fill.embedded
        else "Ray steady state: job too short to tell",
        f"Ray path CPU: this process {t_ray['cpu']:.1f}s, the actors {s.get('actor_cpu', 0.0):.1f}s (model loading "
        f"included), Ray's own processes {s.get('ray_processes_cpu', 0.0):.1f}s (local Ray only; 0 on a cluster)",
        f"peak RSS of this process {rss:.0f} MB (Ray's own processes and the actors not counted)",
    ]
    return report


def cmd_compare_indexes(args: argparse.Namespace, settings: Settings) -> int:
    same = compare_indexes(args.index_a, args.index_b)
    report = BenchReport(name="compare-indexes", settings={"a": str(args.index_a), "b": str(args.index_b)})
    report.check("passages differing", float(not same.passages_equal), 0, at_most=True)
    report.check("largest vector coordinate difference", same.max_vector_diff, VECTOR_TOLERANCE, at_most=True)
    report.notes.append(f"passages: {same.passages_a} in A, {same.passages_b} in B")
    if args.dataset is not None:
        queries = split_queries(args.dataset, args.split)[: args.max_queries]
        if not queries:
            raise ValueError(f"{args.dataset} has no queries with judgments for split {args.split!r}")
        started = time.perf_counter()
        rankings = compare_rankings(args.index_a, args.index_b, queries, settings.load_embedder(), k=args.k)
        report.check(
            f"{args.split} queries whose top-{args.k} document ids differ (of {rankings.queries})",
            rankings.queries - rankings.identical,
            0,
            at_most=True,
        )
        report.notes.append(f"{rankings.queries} queries searched in both, {time.perf_counter() - started:.1f}s")
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "compare-indexes",
        help="are two indexes the same: passages, offsets, vectors and (with --dataset) top-k ids",
        description="Compare two published indexes (e.g. one built with `citesearch index --ray`, one without): "
        "their passages with offsets and texts, their vectors, and with --dataset the top-k document ids of a "
        "BEIR split's queries.",
    )
    parser.add_argument("index_a", type=Path, metavar="DIR_A")
    parser.add_argument("index_b", type=Path, metavar="DIR_B")
    parser.add_argument("--dataset", type=Path, metavar="DATASET_DIR", help="BEIR folder whose queries to search")
    parser.add_argument("--split", default="train", help="qrels split whose queries are searched (default train)")
    parser.add_argument("--max-queries", type=positive_int, metavar="N", help="only the first N queries")
    parser.add_argument("--k", type=positive_int, default=10, help="depth compared (default 10)")
    add_report_options(parser)
    parser.set_defaults(handler=cmd_compare_indexes)
