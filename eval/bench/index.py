"""``citesearch bench index DATASET_DIR``: end-to-end indexing throughput against the raw model, and re-index cost.

One run, on one machine, measures side by side:

1. a first build of the BEIR corpus (``DATASET_DIR/corpus.jsonl``, read in place, first ``--limit N`` documents) into
   a fresh index folder with an empty embedding cache: load, chunk, embed, write, BM25, publish — exactly what
   ``citesearch index corpus.jsonl`` does, with the same settings;
2. the raw model call (the ONNX Runtime encoder, or ``SentenceTransformer.encode`` for torch) on exactly the texts
   the pipeline embedded (recorded on the way), with the same batch size and the model object of the same embedder:
   the ceiling the pipeline is compared with;
3. a re-index of the unchanged corpus (nothing may be embedded) and a re-index with one document changed (only
   that document's changed passages may be embedded).

Targets (ratios of figures of this run): indexing throughput ≥ 0.9 × raw encode throughput; unchanged re-index
≤ 5% of the first build's time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from eval.bench.common import BenchReport, add_report_options, emit_report, peak_rss_mb, stopwatch

if TYPE_CHECKING:
    from citesearch.settings import Settings
    from indexer.documents import Document
    from indexer.embedder import Embedder
    from indexer.pipeline import BuildReport

CORPUS_FILE = "corpus.jsonl"
CHANGED_SENTENCE = " This sentence was added by citesearch bench index to change one document."
THROUGHPUT_RATIO = 0.9  # indexing passages/s over raw encode texts/s, at least
REINDEX_RATIO = 0.05  # unchanged re-index seconds over first build seconds, at most
RAY_BENCH_QUERIES = 200  # --ray: split queries whose top-10 ids are compared (each searched in both indexes)


class RecordingEmbedder:
    """Delegates to an embedder and records every text it is asked to encode, and the time spent encoding.

    The pipeline sees the same name, dimension, window and tokenizer, so it builds exactly what it would build with
    the wrapped embedder; the benchmark learns which texts the pipeline embedded (for the raw-encode comparison).
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.texts: list[str] = []
        self.calls = 0
        self.encode_seconds = 0.0

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.encode(texts, batch_size=batch_size, show_progress=show_progress)
        finally:
            self.encode_seconds += time.perf_counter() - started
            self.calls += 1
            self.texts.extend(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def reset(self) -> None:
        self.texts, self.calls, self.encode_seconds = [], 0, 0.0


def raw_encode(embedder: Embedder, texts: Sequence[str], batch_size: int, *, show_progress: bool = False) -> str:
    """Encode ``texts`` with the embedder's own model call (one ``encode`` call, the same arguments the embedder
    passes): the ONNX Runtime encoder for the onnx backends, else the ``SentenceTransformer``; returns what was
    called. Without either (the hashing test embedder) the embedder's ``encode`` is the raw call."""
    onnx = getattr(embedder, "_onnx", None)
    if onnx is not None:
        onnx.encode(list(texts), batch_size=batch_size, show_progress=show_progress)
        return f"OnnxEncoder.encode ({getattr(embedder, 'backend', 'onnx')}, ONNX Runtime)"
    model = getattr(embedder, "_model", None)
    if model is not None and hasattr(model, "encode"):
        model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return f"{type(model).__name__}.encode"
    embedder.encode(list(texts), batch_size=batch_size)
    return f"{type(embedder).__name__}.encode (no SentenceTransformer)"


def _changed_document(corpus: Path, doc: Document, folder: Path) -> Document:
    """``doc`` with one sentence appended, loaded by the same loader from a one-line jsonl file in ``folder``."""
    from indexer.loaders import load_documents

    record: dict[str, Any] | None = None
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, dict) and str(item.get("_id", item.get("id"))) == doc.doc_id:
                record = item
                break
    if record is None:  # cannot happen for a document loaded from this file; keep the error readable anyway
        raise ValueError(f"document {doc.doc_id!r} not found in {corpus}")
    record = {**record, "text": record["text"] + CHANGED_SENTENCE}
    path = folder / "changed-document.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    changed = load_documents([path]).documents
    if len(changed) != 1 or changed[0].content_hash == doc.content_hash:
        raise ValueError(f"could not make a changed copy of document {doc.doc_id!r}")
    return changed[0]


def _first_documents(corpus: Path, limit: int, folder: Path) -> Path:
    """A copy of ``corpus`` holding its first ``limit`` non-blank lines."""
    path = folder / CORPUS_FILE
    with corpus.open(encoding="utf-8") as source, path.open("w", encoding="utf-8") as target:
        kept = 0
        for line in source:
            if kept >= limit:
                break
            if line.strip():
                target.write(line if line.endswith("\n") else line + "\n")
                kept += 1
    return path


def _load(corpus: Path, limit: int | None) -> tuple[list[Document], int]:
    from indexer.loaders import load_documents

    loaded = load_documents([corpus])
    documents = loaded.documents if limit is None else loaded.documents[:limit]
    return documents, len(loaded.skipped)


def _build_row(step: str, report: BuildReport, seconds: float, load_seconds: float) -> dict[str, Any]:
    s = report.seconds
    return {
        "step": step,
        "documents": report.documents,
        "changed_docs": report.added + report.changed,
        "passages": report.passages,
        "embedded": report.passages_embedded,
        "seconds": round(seconds, 3),
        "passages_per_s": round(report.passages / seconds, 2) if seconds > 0 else None,
        "embedded_per_s": round(report.passages_embedded / seconds, 2) if seconds > 0 else None,
        "load_s": round(load_seconds, 3),
        "chunk_s": round(s.get("chunk", 0.0), 3),
        "embed_s": round(s.get("embed", 0.0), 3),
        "write_publish_s": round(s.get("publish", 0.0), 3),
        "cpu_s": None,
    }


def run_index_bench(
    dataset_dir: Path,
    embedder: Embedder,
    settings: Settings,
    *,
    limit: int | None = None,
    index_dir: Path | None = None,
    show_progress: bool = False,
    log: TextIO | None = None,
) -> BenchReport:
    """Run the three builds and the raw encode; returns the report (not written)."""
    from indexer.pipeline import apply_changes

    stream = log if log is not None else sys.stderr
    dataset_dir = Path(dataset_dir)
    corpus = dataset_dir / CORPUS_FILE
    if not corpus.is_file():
        raise ValueError(f"{corpus} is missing; a BEIR dataset folder holds {CORPUS_FILE}")
    if index_dir is not None and index_dir.exists() and any(index_dir.iterdir()):
        raise ValueError(f"{index_dir} is not empty; bench index builds into a fresh folder (give a new or empty one)")

    def say(message: str) -> None:
        print(f"bench index: {message}", file=stream, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="citesearch-bench-index-"))
    target = index_dir if index_dir is not None else workdir / "index"
    batch_size = settings.embed_batch_size
    options = settings.build_options(show_progress=show_progress)
    recorder = RecordingEmbedder(embedder)
    source = corpus
    try:
        # With --limit the corpus indexed is a file of the first N documents (not timed: it stands for the user's
        # file), so loading is timed for the documents indexed, not for the whole dataset.
        if limit is not None:
            corpus = _first_documents(source, limit, workdir)
        cpu_started = time.process_time()
        with stopwatch() as t_load:
            documents, skipped = _load(corpus, limit)
        load_cpu = time.process_time() - cpu_started
        if not documents:
            raise ValueError(f"no documents could be loaded from {corpus}")
        say(f"{len(documents)} documents from {corpus} ({skipped} lines skipped); index folder {target}")
        # One-off costs (lazy initialisation, first allocation) paid before anything is timed, for both sides.
        embedder.encode([doc.title for doc in documents[:batch_size]], batch_size=batch_size)

        say("first build (empty embedding cache)…")
        cpu_started = time.process_time()
        with stopwatch() as t_first:
            first = apply_changes(target, recorder, upserts=documents, replace_all=True, options=options)
        first_cpu = time.process_time() - cpu_started + load_cpu
        first_seconds = t_first["seconds"] + t_load["seconds"]
        texts = list(recorder.texts)
        pipeline_encode_seconds = recorder.encode_seconds
        say(
            f"first build: {first.passages} passages, {first.passages_embedded} embedded in {first_seconds:.1f}s "
            f"({first.passages_embedded / first_seconds:.1f} passages/s)"
        )

        say(f"raw encode of the same {len(texts)} texts (batch size {batch_size})…")
        cpu_started = time.process_time()
        with stopwatch() as t_raw:
            raw_call = raw_encode(embedder, texts, batch_size, show_progress=show_progress)
        raw_cpu = time.process_time() - cpu_started
        raw_rate = len(texts) / t_raw["seconds"] if t_raw["seconds"] > 0 else float("inf")
        say(f"raw encode: {t_raw['seconds']:.1f}s ({raw_rate:.1f} texts/s)")

        say("re-index, corpus unchanged…")
        recorder.reset()
        with stopwatch() as t_same:
            with stopwatch() as t_load_same:
                same_docs, _ = _load(corpus, limit)
            unchanged = apply_changes(target, recorder, upserts=same_docs, replace_all=True, options=options)
        say(f"unchanged re-index: {unchanged.passages_embedded} embedded in {t_same['seconds']:.2f}s")

        changed_doc = _changed_document(corpus, documents[0], workdir)
        with IndexPassageCount(target) as counter:
            doc_passages = counter.passages_of(changed_doc.doc_id)
        say(f"re-index, document {changed_doc.doc_id!r} ({doc_passages} passages) changed…")
        recorder.reset()
        with stopwatch() as t_one:
            with stopwatch() as t_load_one:
                one_docs, _ = _load(corpus, limit)
            one_docs = [changed_doc if doc.doc_id == changed_doc.doc_id else doc for doc in one_docs]
            one = apply_changes(target, recorder, upserts=one_docs, replace_all=True, options=options)
        say(f"one document changed: {one.passages_embedded} embedded in {t_one['seconds']:.2f}s")
        rss = peak_rss_mb()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report = BenchReport(
        name="index",
        settings={
            "dataset": str(dataset_dir),
            "limit": limit,
            "documents": len(documents),
            "model": embedder.name,
            "embed_backend": getattr(embedder, "backend", None),
            "batch_size": batch_size,
            "chunker": settings.chunker_settings().to_dict(),
            "keyword": settings.keyword_settings().to_dict(),
            "torch_threads": _torch_threads(),
            "index_dir": str(index_dir) if index_dir is not None else "(temporary, removed)",
            "raw_call": raw_call,
        },
    )
    first_row = _build_row("first build (empty cache)", first, first_seconds, t_load["seconds"])
    first_row["cpu_s"] = round(first_cpu, 3)
    raw_row = dict.fromkeys(first_row)
    raw_row.update(
        {
            "step": f"raw {raw_call} (same texts)",
            "passages": len(texts),
            "embedded": len(texts),
            "seconds": round(t_raw["seconds"], 3),
            "passages_per_s": round(raw_rate, 2),
            "embedded_per_s": round(raw_rate, 2),
            "embed_s": round(t_raw["seconds"], 3),
            "cpu_s": round(raw_cpu, 3),
        }
    )
    report.tables["Indexing"] = [
        first_row,
        raw_row,
        _build_row("re-index, unchanged", unchanged, t_same["seconds"], t_load_same["seconds"]),
        _build_row("re-index, 1 document changed", one, t_one["seconds"], t_load_one["seconds"]),
    ]
    index_rate = first.passages_embedded / first_seconds if first_seconds > 0 else 0.0
    report.check(
        "indexing throughput / raw encode throughput (texts embedded per second)",
        index_rate / raw_rate if raw_rate > 0 else 0.0,
        THROUGHPUT_RATIO,
        at_most=False,
    )
    # The same ratio by CPU time of this process: much less sensitive to other jobs on a shared machine, which
    # can make the two wall-clock passes run at different speeds.
    report.check(
        "indexing throughput / raw encode throughput by CPU time (less sensitive to other jobs)",
        raw_cpu / first_cpu if first_cpu > 0 else 0.0,
        THROUGHPUT_RATIO,
        at_most=False,
    )
    report.check(
        "share of the first build's wall time spent inside the model's encode",
        pipeline_encode_seconds / first_seconds if first_seconds > 0 else 0.0,
        THROUGHPUT_RATIO,
        at_most=False,
    )
    report.check(
        "unchanged re-index seconds / first build seconds",
        t_same["seconds"] / first_seconds if first_seconds > 0 else 0.0,
        REINDEX_RATIO,
        at_most=True,
    )
    report.check("passages embedded by the unchanged re-index", unchanged.passages_embedded, 0, at_most=True)
    report.check(
        f"passages embedded with 1 document changed (it has {doc_passages} passages)",
        one.passages_embedded,
        doc_passages,
        at_most=True,
    )
    overhead = first_seconds - pipeline_encode_seconds
    report.notes += [
        f"{len(documents)} documents of {source}"
        + (
            f" (--limit {limit}: the first {limit} lines copied to a file that is then indexed)"
            if limit is not None
            else ""
        )
        + f"; {first.passages} passages, {len(texts)} texts embedded by the first build "
        f"(duplicate passage texts are embedded once)",
        f"first build = loading the corpus file + apply_changes (chunk, embed, write, BM25, publish), as "
        f"`citesearch index` does; time inside the model's encode during it: {pipeline_encode_seconds:.2f}s, "
        f"everything else: {overhead:.2f}s ({100 * overhead / first_seconds:.1f}%)",
        f"raw encode: one {raw_call} call over the same texts with batch_size={batch_size}, "
        f"normalize_embeddings=True, measured in the same process after the build",
        f"the changed document is {changed_doc.doc_id!r}: one sentence appended; "
        f"re-index runs load the corpus file again",
        f"peak RSS {rss:.0f} MB",
    ]
    return report


class IndexPassageCount:
    """How many passages one document has in the published version (a small context manager over the reader)."""

    def __init__(self, index_dir: Path) -> None:
        from index_store import open_index

        self._reader = open_index(index_dir)

    def __enter__(self) -> IndexPassageCount:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()

    def passages_of(self, doc_id: str) -> int:
        return len(self._reader.passage_ids(doc_id=doc_id))


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_bench_index(args: argparse.Namespace, settings: Settings) -> int:
    if args.ray is not None:  # the Ray path against the local path: eval/bench/ray_index.py
        from eval.bench.ray_index import run_ray_index_bench
        from indexer.ray_indexing import check_address, resolve_address

        address = resolve_address(args.ray, settings.ray_address) or "local"
        check_address(address)
        ray_report = run_ray_index_bench(
            args.dataset_dir,
            settings.load_embedder(),
            settings,
            address=address,
            limit=args.limit,
            max_queries=RAY_BENCH_QUERIES,
        )
        return emit_report(ray_report, args, settings)
    embedder = settings.load_embedder()
    report = run_index_bench(
        args.dataset_dir,
        embedder,
        settings,
        limit=args.limit,
        index_dir=args.index_dir,
        show_progress=args.progress or sys.stderr.isatty(),
    )
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "index",
        help="indexing throughput vs the raw model, and re-index cost, on a BEIR corpus",
        description="Index DATASET_DIR/corpus.jsonl (read in place) into a fresh folder with an empty embedding "
        "cache, encode the same texts with the raw SentenceTransformer, then re-index unchanged and with one "
        "document changed. Writes bench-index-*.json and .md to the reports folder.",
    )
    parser.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR", help="BEIR dataset folder (corpus.jsonl)")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="index only the first N documents")
    parser.add_argument(
        "--index-dir",
        type=Path,
        metavar="DIR",
        help="new or empty folder to build into, kept afterwards (default: a temporary folder)",
    )
    add_report_options(parser, progress_help="progress bars on stderr even when not a terminal")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="instead: the Ray path against the local path on the same documents, and Ray's fixed costs "
        "(ADDRESS as for `citesearch index --ray`; put it after DATASET_DIR)",
    )
    parser.set_defaults(handler=cmd_bench_index)
