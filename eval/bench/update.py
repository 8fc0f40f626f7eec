"""``citesearch bench update``: what a small write costs on a segmented index of 10k to 1M passages (no model).

At each size it builds an index of synthetic documents (10 passages each; topic-clustered unit vectors and Zipf
words as ``bench scale`` makes them) as 50 segments — what a stream of writes leaves before merging — then measures:

- **search p50 with many segments**: hybrid searches (BM25 with global statistics + dense) through the reader
  surface, then the same after ``--optimize`` (one segment);
- **publish**: a one-document and a 100-document change through ``indexer.pipeline.apply_changes`` — the same call
  as ``citesearch index --add`` and the live-update writer — with the hashing embedder; chunking and embedding time
  ("model time") is reported apart and excluded. **Visible**: publish plus opening the new version the way the
  service's reload does (``IndexReader.open`` with the process's segment cache) until a search finds the document;
- the same while a merge runs in another thread;
- **files and bytes written per write** (what makes the cost follow the change, not the index), and **disk**:
  what the newest three versions use together against one version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.bench.common import BenchReport, add_report_options, emit_report, percentiles
from eval.bench.scale import keyword_queries, synthetic_queries, synthetic_texts, synthetic_vectors, vocabulary

if TYPE_CHECKING:  # imported where used, as the other index_store imports here: the CLI starts without them
    from index_store.segments.bench import SyntheticDocument, SyntheticPassage

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
PASSAGES_PER_DOCUMENT = 10
BASE_SEGMENTS = 50
MIN_SIZE = 1_000
ONE_DOC_RUNS = 5
BATCH_RUNS = 3
BATCH_DOCUMENTS = 100
SEARCH_QUERIES = 50
PUBLISH_TARGET_S = 1.0
BATCH_TARGET_S = 2.0
DISK_RATIO_TARGET = 1.2
SEGMENTS_P50_RATIO_TARGET = 1.5
GROWTH_TARGET = 2.0


def _synthetic_document(doc_id: str, texts: list[str]) -> tuple[SyntheticDocument, list[SyntheticPassage]]:
    """One article of ``texts`` as passages (the segment bench's synthetic shapes), blank lines between them."""
    from index_store.segments.bench import SyntheticDocument, SyntheticPassage, SyntheticUnit

    text = "\n\n".join(texts)
    passages, at = [], 0
    for i, part in enumerate(texts):
        passages.append(SyntheticPassage(i, "article", None, at, at + len(part), part, f"{doc_id}:{i}"))
        at += len(part) + 2
    units = (SyntheticUnit("article", 0, len(text)),)
    return SyntheticDocument(doc_id, f"document {doc_id}", text, units, source="bench"), passages


def _build_base(index_dir: Path, size: int, dim: int, rng: np.random.Generator, embedder: Any) -> list[str]:
    """``size`` passages as ``BASE_SEGMENTS`` writes of whole documents, vectors synthetic (no model).

    The writes share one segment cache, as the service's live-update writer does: without it every write reloads
    every earlier segment and rebuilds the duplicate-cluster index over all of them, which made the base build
    quadratic (about 2 min per write at 1M) though it is not what the bench measures."""
    from index_store import IndexWriter, ModelInfo, SegmentCache
    from indexer.chunker import ChunkerSettings

    words = vocabulary()
    vectors, topics = synthetic_vectors(size, dim, rng, "clustered")
    texts = synthetic_texts(topics, words, rng)
    model = ModelInfo(embedder.name, embedder.dim, embedder.max_tokens)
    documents = size // PASSAGES_PER_DOCUMENT
    per_segment = max(1, documents // BASE_SEGMENTS)
    cache = SegmentCache()
    chunker = ChunkerSettings().to_dict()
    for start in range(0, documents, per_segment):
        with IndexWriter.begin(index_dir, model=model, chunker=chunker, keep_versions=3, cache=cache) as writer:
            for d in range(start, min(documents, start + per_segment)):
                rows = slice(d * PASSAGES_PER_DOCUMENT, (d + 1) * PASSAGES_PER_DOCUMENT)
                doc, passages = _synthetic_document(f"base-{d}", texts[rows])
                writer.upsert_document(doc, passages, vectors[rows])
            writer.publish(extra={"embed_backend": "hashing"})
    return words


def _search_p50(index_dir: Path, queries: list[str], vectors: np.ndarray, cache: Any) -> float:
    """p50 of a hybrid retrieval through the reader surface: BM25 (global statistics) and dense top 50, fused."""
    from index_store import IndexReader

    with IndexReader.open(index_dir, cache=cache) as reader:
        reader.warm()
        keyword = reader.keyword
        assert keyword is not None

        def one(i: int) -> None:
            scores = keyword.scores(queries[i])
            keyword.top(scores, 50)
            found = reader.search_vectors(vectors[i : i + 1], 50)
            ids = found.ids[0][found.ids[0] >= 0]
            keyword.positions(ids)

        one(0)
        samples = []
        for i in range(len(queries)):
            started = time.perf_counter()
            one(i)
            samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)["p50_ms"]


def _change(
    index_dir: Path, embedder: Any, cache: Any, documents: int, tag: str, words: list[str], rng: np.random.Generator
) -> dict[str, float]:
    """Publish ``documents`` new documents through apply_changes, then open the new version until a search finds
    one: seconds to publish (model time apart), to visible, files and bytes written."""
    from index_store import IndexReader
    from indexer.documents import Document, Unit
    from indexer.pipeline import BuildOptions, apply_changes

    marker = f"zq{tag}x"  # a term no other passage has
    upserts = []
    for d in range(documents):
        body = " ".join(words[int(i)] for i in rng.integers(20, len(words), size=60))
        text = f"{marker} {body}"
        upserts.append(
            Document(
                doc_id=f"new-{tag}-{d}",
                title=f"new {tag} {d}",
                text=text,
                source="bench",
                units=(Unit("article", 0, len(text)),),
            )
        )
    before = _disk_files(index_dir)
    started = time.perf_counter()
    # A merge commits under the write lock for a moment: a write waits for it (as the live writer retries).
    options = BuildOptions(segment_cache=cache, lock_timeout=60)
    report = apply_changes(index_dir, embedder, upserts=upserts, options=options)
    published = time.perf_counter()
    model = report.seconds.get("chunk", 0.0) + report.seconds.get("embed", 0.0)
    with IndexReader.open(index_dir, cache=cache) as reader:
        reader.warm()
        keyword = reader.keyword
        assert keyword is not None
        hits = keyword.search(marker, 5)
        found = reader.passages(hits.ids[0].tolist())
        if not found or not found[0].doc_id.startswith(f"new-{tag}-"):
            raise RuntimeError(f"the new document of {tag} is not found after its publish")
    visible = time.perf_counter()
    after = _disk_files(index_dir)
    written = {name: size for name, size in after.items() if before.get(name) != size}
    return {
        "publish_s": published - started - model,
        "visible_s": visible - started - model,
        "model_s": model,
        "files_written": len(written),
        "bytes_written": sum(written.values()),
    }


def _disk_files(index_dir: Path) -> dict[str, int]:
    """Files of the index and their sizes. A merge may run meanwhile: its work folders (``.tmp-*``) are not what a
    write wrote, and a file it renames or removes between the listing and the stat is skipped (os.walk ignores a
    folder that vanished; rglob raised FileNotFoundError: a CI failure)."""
    from index_store.layout import TMP_PREFIX

    found: dict[str, int] = {}
    for folder, dirs, names in os.walk(index_dir):
        dirs[:] = [d for d in dirs if d != "cache" and not d.startswith(TMP_PREFIX)]
        for name in names:
            if name.endswith((".lock", ".lease")):
                continue
            path = Path(folder) / name
            try:
                found[path.relative_to(index_dir).as_posix()] = path.stat().st_size
            except FileNotFoundError:
                continue
    return found


def _version_bytes(index_dir: Path, versions: list[str]) -> int:
    """Bytes of everything the given versions name together (shared segments counted once)."""
    from index_store.layout import segment_dir
    from index_store.manifest import MANIFEST_NAME, Manifest

    paths: set[Path] = set()
    for name in versions:
        manifest = Manifest.read(index_dir / "versions" / name)
        paths.add(index_dir / "versions" / name / MANIFEST_NAME)
        for ref in manifest.segments:
            paths.update(p for p in segment_dir(index_dir, ref.name).rglob("*") if p.is_file())
            if ref.deletes:
                paths.add(index_dir / ref.deletes)
    return sum(p.stat().st_size for p in paths if p.exists())


def _median(runs: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def measure_size(size: int, work: Path, dim: int, seed: int, log: Any) -> dict[str, Any]:
    from index_store import SegmentCache, current_version, list_versions
    from index_store.merging import merge_index
    from tests.fakes import HashingEmbedder

    rng = np.random.default_rng(seed)
    embedder = HashingEmbedder(dim=dim, name="bench-hashing")
    index_dir = work / f"index-{size}"
    started = time.perf_counter()
    words = _build_base(index_dir, size, dim, rng, embedder)
    build_s = time.perf_counter() - started
    log(f"{size:,}: base of {BASE_SEGMENTS} segments built in {build_s:.0f}s")
    cache = SegmentCache()
    queries = keyword_queries(words, SEARCH_QUERIES, rng)
    query_vectors = synthetic_queries(
        synthetic_vectors(SEARCH_QUERIES * 4, dim, rng, "clustered")[0], SEARCH_QUERIES, rng
    )
    p50_segments = _search_p50(index_dir, queries, query_vectors, cache)
    segments_before = len(_segments_of(index_dir))
    on_many = [_change(index_dir, embedder, cache, 1, f"m{i}", words, rng) for i in range(ONE_DOC_RUNS)]
    log(f"{size:,}: search p50 {p50_segments:.1f} ms over {segments_before} segments; writes timed")
    t0 = time.perf_counter()
    merge_index(index_dir, optimize=True, cache=cache, lock_timeout=600)
    optimize_s = time.perf_counter() - t0
    p50_merged = _search_p50(index_dir, queries, query_vectors, cache)
    log(f"{size:,}: optimized in {optimize_s:.0f}s; search p50 {p50_merged:.1f} ms")
    one = [_change(index_dir, embedder, cache, 1, f"o{i}", words, rng) for i in range(ONE_DOC_RUNS)]
    batch = [_change(index_dir, embedder, cache, BATCH_DOCUMENTS, f"b{i}", words, rng) for i in range(BATCH_RUNS)]
    # Disk after a run of writes (before the merge below rewrites the big segment, which a version then shares with
    # nothing older): what the newest three versions hold together against the newest alone.
    versions = list_versions(index_dir)[-3:]
    current = current_version(index_dir)
    assert current is not None
    three, one_version = _version_bytes(index_dir, versions), _version_bytes(index_dir, [current])
    # With a merge running: the small segments just written, and (to make it last) a rewrite of the big one.
    merging = threading.Thread(target=merge_index, kwargs={"index_dir": index_dir, "optimize": True}, daemon=True)
    merging.start()
    time.sleep(0.2)
    during_one = [_change(index_dir, embedder, cache, 1, f"d{i}", words, rng) for i in range(3)]
    during_batch = [_change(index_dir, embedder, cache, BATCH_DOCUMENTS, "db", words, rng)]
    still_running = merging.is_alive()
    merging.join()
    log(f"{size:,}: done")
    return {
        "passages": size,
        "base_build_s": round(build_s, 1),
        "segments_before_optimize": segments_before,
        "search_p50_ms_segments": round(p50_segments, 2),
        "search_p50_ms_optimized": round(p50_merged, 2),
        "optimize_s": round(optimize_s, 1),
        "one_doc_publish_s_segments": round(_median(on_many, "publish_s"), 3),
        "one_doc_publish_s": round(_median(one, "publish_s"), 3),
        "one_doc_visible_s": round(_median(one, "visible_s"), 3),
        "one_doc_model_s": round(_median(one, "model_s"), 3),
        "one_doc_files_written": int(_median(one, "files_written")),
        "one_doc_bytes_written": int(_median(one, "bytes_written")),
        "batch_publish_s": round(_median(batch, "publish_s"), 3),
        "batch_visible_s": round(_median(batch, "visible_s"), 3),
        "batch_model_s": round(_median(batch, "model_s"), 3),
        "batch_bytes_written": int(_median(batch, "bytes_written")),
        "one_doc_visible_s_merging": round(_median(during_one, "visible_s"), 3),
        "batch_visible_s_merging": round(_median(during_batch, "visible_s"), 3),
        "merge_still_running": still_running,
        "disk_mb_three_versions": round(three / 1e6, 1),
        "disk_mb_one_version": round(one_version / 1e6, 1),
        "disk_ratio": round(three / max(1, one_version), 3),
    }


def _segments_of(index_dir: Path) -> list[str]:
    from index_store import current_version
    from index_store.manifest import Manifest

    return [ref.name for ref in Manifest.read(index_dir / "versions" / str(current_version(index_dir))).segments]


def run_update_bench(
    sizes: list[int], *, dim: int = 384, seed: int = 0, work_dir: Path | None = None, show_progress: bool = False
) -> BenchReport:
    report = BenchReport("update", {"sizes": sizes, "dim": dim, "seed": seed, "base_segments": BASE_SEGMENTS})

    def log(line: str) -> None:
        if show_progress:
            print(line, file=sys.stderr, flush=True)

    rows = []
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix="citesearch-bench-update-", dir=work_dir))
        try:
            rows.append(measure_size(size, work, dim, seed, log))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report.tables["write path"] = [
        {
            "passages": r["passages"],
            "1-doc publish s": r["one_doc_publish_s"],
            "1-doc visible s": r["one_doc_visible_s"],
            "1-doc visible s (merge running)": r["one_doc_visible_s_merging"],
            "100-doc publish s": r["batch_publish_s"],
            "100-doc visible s": r["batch_visible_s"],
            "100-doc visible s (merge running)": r["batch_visible_s_merging"],
            "model s (1 / 100 docs, excluded)": f"{r['one_doc_model_s']} / {r['batch_model_s']}",
            "1-doc files / KB written": f"{r['one_doc_files_written']} / {r['one_doc_bytes_written'] / 1e3:.0f}",
        }
        for r in rows
    ]
    report.tables["disk and search"] = [
        {
            "passages": r["passages"],
            "disk MB, newest 3 versions": r["disk_mb_three_versions"],
            "disk MB, one version": r["disk_mb_one_version"],
            "ratio": r["disk_ratio"],
            f"search p50 ms, {r['segments_before_optimize']} segments": r["search_p50_ms_segments"],
            "search p50 ms, optimized": r["search_p50_ms_optimized"],
            "1-doc publish s on the segments": r["one_doc_publish_s_segments"],
            "optimize s": r["optimize_s"],
            "base build s": r["base_build_s"],
        }
        for r in rows
    ]
    report.tables["raw"] = rows
    largest, smallest = rows[-1], rows[0]
    report.check(
        f"1-doc publish at {largest['passages']:,} passages (s)",
        largest["one_doc_publish_s"],
        PUBLISH_TARGET_S,
        at_most=True,
    )
    report.check(
        f"1-doc publish {largest['passages']:,} / {smallest['passages']:,}",
        largest["one_doc_publish_s"] / max(1e-6, smallest["one_doc_publish_s"]),
        GROWTH_TARGET,
        at_most=True,
    )
    report.check(
        f"100-doc publish at {largest['passages']:,} passages (s)",
        largest["batch_publish_s"],
        BATCH_TARGET_S,
        at_most=True,
    )
    report.check("disk, newest 3 versions / one", largest["disk_ratio"], DISK_RATIO_TARGET, at_most=True)
    report.check(
        "search p50, 50 segments / optimized",
        largest["search_p50_ms_segments"] / max(1e-6, largest["search_p50_ms_optimized"]),
        SEGMENTS_P50_RATIO_TARGET,
        at_most=True,
    )
    report.notes = [
        "publish: apply_changes with the hashing embedder, chunking and embedding (model time) excluded; visible: "
        "publish plus IndexReader.open with the process's segment cache (the service's reload) and a BM25 search "
        "that finds the new document",
        f"base: {PASSAGES_PER_DOCUMENT} passages per document written as {BASE_SEGMENTS} segments; synthetic "
        "clustered vectors and Zipf words as bench scale makes them; 1-doc and 100-doc figures are the median of "
        f"{ONE_DOC_RUNS} and {BATCH_RUNS} runs on the optimized index",
        "search p50: BM25 scores of every position with the view's global statistics + top 50, dense top 50 "
        "(exact below the IVF threshold; above it IVF lists from the index's one set of centroids, probed by the "
        "pools of small segments and by the optimized segment alike, re-ranked from the float rows), one query at "
        "a time",
        "merge running: an optimize merge in another thread during the timed writes",
    ]
    return report


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated passage counts, got {text!r}") from None
    if not sizes or min(sizes) < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"give sizes of at least {MIN_SIZE}")
    return sorted(set(sizes))


def cmd_bench_update(args: argparse.Namespace, settings: Any) -> int:
    if args.work_dir is not None and not args.work_dir.is_dir():
        raise ValueError(f"--work-dir {args.work_dir} is not a folder")
    report = run_update_bench(
        args.sizes,
        dim=args.dim,
        seed=args.seed,
        work_dir=args.work_dir,
        show_progress=args.progress or sys.stderr.isatty(),
    )
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "update",
        help="one- and 100-document publish and visibility, disk per version, search over many segments",
        description="Build a synthetic segmented index (no model) at each size and time small writes through the "
        "write path, their visibility to a search, with and without a merge running; disk of three versions "
        "against one; search p50 over 50 segments and after --optimize. Writes bench-update-*.json and .md.",
    )
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), metavar="N,N", help="passage counts")
    parser.add_argument("--dim", type=int, default=384, help="vector dimensions (default: 384)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR", help="folder for the temporary indexes")
    add_report_options(parser, progress_help="progress lines on stderr even when not a terminal")
    parser.set_defaults(handler=cmd_bench_update)
