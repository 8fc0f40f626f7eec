"""Micro-benchmark of the segment engine on synthetic passages (no model): what a new version's view costs and how
search holds up with many unmerged segments. A command that prints figures, not a timed test:

    python -m index_store.segments.bench --sizes 100000,1000000 [--small-segments 49] [--tantivy]

For each size N it writes one big segment (N - 49 x 1,000 passages, 1% of its documents deleted, IVF above 100k
rows with trained centroids) and 49 small ones (1,000 passages each), then measures:

* build: the big segment's ``Segment.build`` seconds, and one one-document segment's;
* view: loading that one new segment plus building the ``SegmentedView`` of 51 segments from the 50 already
  loaded (what a reader of a new version pays) with the previous view's pools reused, and ``warm()`` on it (the
  concatenated arrays and the pooling of the new segment, once per version); pooling the 49 small segments from
  scratch;
* search p50 with 50 segments — pooled (the default) and unpooled (``pool=False``: every segment searched on its
  own) — against the same passages merged into one (``merge_segments``, timed too): BM25 (``scores`` + ``top``),
  the keyword ranking of hybrid search (BM25 + context), dense top-10;
* the BM25 engines compared (the decision in docs/segments.md): postings with global statistics (this package)
  against bm25s's precomputed scores over one index of the same texts, and optionally tantivy.

``bench_segments`` is the function seg-store's ``citesearch bench update`` can call.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.segments.merge import merge_segments
from index_store.segments.segment import NewDocument, Segment, document_deletion_mask
from index_store.segments.vectors import IVF_MIN_VECTORS, Centroids, train_centroids
from index_store.segments.view import SegmentedView

WORDS_PER_PASSAGE = 40
PASSAGES_PER_DOCUMENT = 10
VOCABULARY = 20_000
SMALL_SEGMENT_PASSAGES = 1_000


@dataclass(frozen=True, slots=True)
class SyntheticUnit:
    section: str
    char_start: int
    char_end: int
    comment_no: int | None = None


@dataclass(frozen=True, slots=True)
class SyntheticDocument:
    doc_id: str
    title: str
    text: str
    units: tuple[SyntheticUnit, ...]
    source: str = "synthetic"
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return f"h-{self.doc_id}"


@dataclass(frozen=True, slots=True)
class SyntheticPassage:
    ordinal: int
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    text: str
    content_hash: str


def vocabulary(size: int = VOCABULARY, seed: int = 7) -> list[str]:
    """Distinct made-up words (no English stopword among them; Snowball leaves most of them as they are)."""
    rng = np.random.default_rng(seed)
    consonants, vowels = np.array(list("bdfgklmnprstvz")), np.array(list("aeiou"))
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = int(rng.integers(2, 5))
        word = "".join(
            str(c) + str(v)
            for c, v in zip(rng.choice(consonants, syllables), rng.choice(vowels, syllables), strict=True)
        )
        words[word + str(rng.choice(consonants))] = None
    return list(words)


def synthetic_documents(
    n_passages: int,
    *,
    dim: int,
    first_id: int,
    seed: int,
    words: Sequence[str],
    prefix: str = "d",
    topics: int = 5_000,
) -> list[NewDocument]:
    """Documents of ``PASSAGES_PER_DOCUMENT`` passages of Zipf-distributed words, with topic-clustered unit vectors
    (``clustered_vectors``: the same topic space in every call, so segments written apart share it)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    tokens = rng.choice(len(words), size=(n_passages, WORDS_PER_PASSAGE), p=weights / weights.sum())
    vocab = np.asarray(words, dtype=object)
    vectors = clustered_vectors(n_passages, dim, rng, topics=max(1, topics))
    documents = []
    for d, start in enumerate(range(0, n_passages, PASSAGES_PER_DOCUMENT)):
        texts = [" ".join(row) for row in vocab[tokens[start : start + PASSAGES_PER_DOCUMENT]]]
        text = " ".join(texts)
        passages, offset = [], 0
        for ordinal, passage in enumerate(texts):
            passages.append(
                SyntheticPassage(
                    ordinal, "article", None, offset, offset + len(passage), passage, f"p{start}-{ordinal}"
                )
            )
            offset += len(passage) + 1
        doc = SyntheticDocument(
            f"{prefix}{first_id + start:09d}", f"Document {d}", text, (SyntheticUnit("article", 0, len(text)),)
        )
        ids = list(range(first_id + start, first_id + start + len(passages)))
        documents.append(NewDocument(doc, ids, passages, vectors[start : start + len(passages)], cluster_key=ids[0]))
    return documents


LATENT_DIMS = 32
SPACE_SEED = 11


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, *, topics: int) -> np.ndarray:
    """Unit vectors around ``topics`` topic centres, as ``citesearch bench scale``'s "clustered" distribution (a
    32-d latent point per passage — its topic's centre plus a spread as wide as the centres' — mapped into ``dim``
    dimensions, plus a little isotropic noise): sentence embeddings look like this, and IVF works on it as on real
    vectors; uniform random vectors are a worst case no real index has. The topic space is fixed (``SPACE_SEED``)."""
    space = np.random.default_rng(SPACE_SEED)
    latent = min(LATENT_DIMS, dim)
    centres = space.standard_normal((topics, latent), dtype=np.float32)
    mapping = space.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent, dtype=np.float32)
    chosen = rng.integers(0, topics, size=n)
    points = centres[chosen] + rng.standard_normal((n, latent), dtype=np.float32)
    block = points @ mapping + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
    return np.asarray(block / np.linalg.norm(block, axis=1, keepdims=True), dtype=np.float32)


def _p50_ms(fn: Callable[[int], Any], count: int) -> float:
    # one untimed pass over the same queries first: the postings and vectors are memory-mapped, and the first
    # touch of a page reads it from disk — a serving reader has them hot, and the first signal timed would
    # otherwise pay for all the others
    for i in range(count):
        fn(i)
    times = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def keyword_queries(words: Sequence[str], count: int, seed: int) -> list[str]:
    """2-4 word queries from below the 20 commonest words."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) - 20 + 1) ** 1.1
    weights /= weights.sum()
    return [
        " ".join(words[20 + i] for i in rng.choice(len(words) - 20, size=int(rng.integers(2, 5)), p=weights))
        for _ in range(count)
    ]


def _search_figures(
    views: dict[str, SegmentedView], queries: list[str], vectors: np.ndarray
) -> dict[str, dict[str, float]]:
    """p50 of each signal on each view, the views taking turns query by query: on a shared machine whose load
    changes by the second, timing one view after the other compares the load, not the views."""

    def signals(view: SegmentedView) -> dict[str, Callable[[int], Any]]:
        def hybrid(i: int) -> Any:
            bm25 = view.scores(queries[i])
            context = view.context_scores(queries[i])
            return view.top(bm25 if context is None else bm25 + context, 10)

        return {
            "bm25_p50_ms": lambda i: view.search(queries[i], 10),
            "keyword_hybrid_p50_ms": hybrid,
            "dense_p50_ms": lambda i: view.search_vectors(vectors[i : i + 1], 10),
        }

    runs = {name: signals(view) for name, view in views.items()}
    times: dict[str, dict[str, list[float]]] = {name: {key: [] for key in run} for name, run in runs.items()}
    for timed in (False, True):  # an untimed pass first (see _p50_ms)
        for i in range(len(queries)):
            for name, run in runs.items():
                for key, fn in run.items():
                    started = time.perf_counter()
                    fn(i)
                    if timed:
                        times[name][key].append((time.perf_counter() - started) * 1000)
    return {name: {key: statistics.median(t) for key, t in per.items()} for name, per in times.items()}


def bench_segments(
    size: int,
    work_dir: Path,
    *,
    dim: int = 384,
    small_segments: int = 49,
    queries: int = 200,
    seed: int = 0,
    tantivy: bool = False,
    baselines: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure for one size (see the module docstring); segments are written under ``work_dir``."""
    settings = KeywordSettings()
    words = vocabulary()
    big_n = size - small_segments * SMALL_SEGMENT_PASSAGES
    if big_n < SMALL_SEGMENT_PASSAGES:
        raise ValueError(f"size {size} is too small for {small_segments} segments of {SMALL_SEGMENT_PASSAGES}")
    figures: dict[str, Any] = {"passages": size, "segments": small_segments + 1}
    log(f"{size:,}: generating")
    big_docs = synthetic_documents(big_n, dim=dim, first_id=0, seed=seed, words=words)
    centroids: Centroids | None = None
    if big_n >= IVF_MIN_VECTORS:
        sample = np.concatenate([d.vectors for d in big_docs[:: max(1, len(big_docs) // 20_000)]])
        centroids, figures["train_centroids_s"] = _timed(lambda: train_centroids(sample, size, "sq8"))
    log(f"{size:,}: building the big segment ({big_n:,} passages)")
    big, figures["big_segment_build_s"] = _timed(
        lambda: Segment.build(work_dir / "s000", big_docs, dim=dim, settings=settings, centroids=centroids)
    )
    texts = [KeywordIndex.text_for(d.doc.title, p.text, settings) for d in big_docs for p in d.passages]
    big_docs.clear()  # free them before the small segments
    log(f"{size:,}: building {small_segments} small segments")
    small = []
    next_id = big_n
    for s in range(small_segments):
        docs = synthetic_documents(SMALL_SEGMENT_PASSAGES, dim=dim, first_id=next_id, seed=seed + 1 + s, words=words)
        next_id += SMALL_SEGMENT_PASSAGES
        small.append(Segment.build(work_dir / f"s{s + 1:03d}", docs, dim=dim, settings=settings))
        texts += [KeywordIndex.text_for(d.doc.title, p.text, settings) for d in docs for p in d.passages]
    # 1% of the big segment's documents were updated or deleted since it was written
    rng = np.random.default_rng(seed)
    gone = rng.choice(big.n_documents, size=max(1, big.n_documents // 100), replace=False)
    big_mask = document_deletion_mask(big, [str(big.doc_ids[i]) for i in gone])
    entries: list[tuple[Segment, np.ndarray | None]] = [(big, big_mask), *[(s, None) for s in small]]
    query_texts = keyword_queries(words, queries, seed)
    query_vectors = clustered_vectors(queries, dim, rng, topics=5_000)

    log(f"{size:,}: searching {small_segments + 1} segments")
    many = SegmentedView(entries)
    _, pool_s = _timed(lambda: many.pools)  # every small segment pooled from scratch (no previous version)
    many.warm()
    figures["pool_from_scratch_ms"] = pool_s * 1000
    figures["pooled_passages"] = sum(len(p) for p in many.pools)
    unpooled = SegmentedView(entries, pool=False)
    unpooled.warm()

    log(f"{size:,}: a one-document segment and the view of the new version")
    one_doc = synthetic_documents(PASSAGES_PER_DOCUMENT, dim=dim, first_id=next_id, seed=seed + 999, words=words)
    new, figures["one_document_segment_build_ms"] = _timed(
        lambda: Segment.build(work_dir / "s999", one_doc, dim=dim, settings=settings)
    )
    figures["one_document_segment_build_ms"] *= 1000
    new.close()
    loaded, load_s = _timed(lambda: Segment.load(work_dir / "s999", verify=True))
    # the reader of the new version: the previous version's pools are reused, only the new segment is pooled
    view, view_s = _timed(lambda: SegmentedView([*entries, (loaded, None)], previous=many))
    _, warm_s = _timed(view.warm)
    figures.update(new_segment_load_ms=load_s * 1000, view_build_ms=view_s * 1000, view_warm_ms=warm_s * 1000)
    figures["new_version_pooled_passages"] = view.pooled_passages_built
    figures["new_version_pools"] = len(view.pools)
    log(f"{size:,}: merging everything into one segment")
    merged, figures["optimize_merge_s"] = _timed(
        lambda: merge_segments(work_dir / "merged", entries, centroids=centroids)
    )
    one = SegmentedView([(merged, None)])
    one.warm()
    figures.update(
        _search_figures({"many": many, "many_unpooled": unpooled, "merged": one}, query_texts, query_vectors)
    )

    live_texts = [t for t, keep in zip(texts, many.live_mask.tolist(), strict=True) if keep]
    del texts
    if baselines:
        log(f"{size:,}: bm25s over the same texts (today's engine)")
        figures.update(bench_bm25s(live_texts, query_texts))
    if tantivy:
        log(f"{size:,}: tantivy over the same texts")
        figures.update(bench_tantivy(live_texts, query_texts, work_dir / "tantivy"))
    for segment in [*small, big, loaded, merged]:
        segment.close()
    return figures


def bench_bm25s(texts: Sequence[str], queries: Sequence[str]) -> dict[str, float]:
    """Today's engine: one bm25s index (precomputed scores) over all the texts, scored and top-10."""
    index, build_s = _timed(lambda: KeywordIndex.build(enumerate(texts), KeywordSettings(context=False)))
    return {"bm25s_build_s": build_s, "bm25s_p50_ms": _p50_ms(lambda i: index.search(queries[i], 10), len(queries))}


def bench_tantivy(texts: Sequence[str], queries: Sequence[str], folder: Path) -> dict[str, Any]:
    """tantivy (its Python binding, if installed: only measured, not a dependency): build and top-10 BM25."""
    try:
        import tantivy  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return {"tantivy": "not installed (pip install tantivy to measure it)"}
    folder.mkdir(parents=True, exist_ok=True)
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("pid", stored=True, indexed=True)
    builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
    schema = builder.build()

    def build() -> Any:
        index = tantivy.Index(schema, path=str(folder))
        writer = index.writer(heap_size=256 * 2**20, num_threads=1)
        for pid, text in enumerate(texts):
            writer.add_document(tantivy.Document(pid=pid, body=text))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return index

    index, build_s = _timed(build)
    searcher = index.searcher()

    def search(i: int) -> Any:
        query = index.parse_query(queries[i], ["body"])
        return searcher.search(query, 10).hits

    return {
        "tantivy_build_s": build_s,
        "tantivy_p50_ms": _p50_ms(search, len(queries)),
    }


def bench_df_strategy(size: int, work_dir: Path, *, queries: int = 200, seed: int = 0) -> dict[str, float]:
    """Document frequencies under deletions, two ways: counted per query term from the postings and the mask (what
    the view does) against kept per segment (every term's live df, recomputed when a segment's mask changes)."""
    words = vocabulary()
    segment = Segment.build(
        work_dir / "df",
        synthetic_documents(size, dim=8, first_id=0, seed=seed, words=words),
        dim=8,
        settings=KeywordSettings(context=False),
    )
    rng = np.random.default_rng(seed)
    gone = rng.choice(segment.n_documents, size=max(1, segment.n_documents // 100), replace=False)
    mask = document_deletion_mask(segment, [str(segment.doc_ids[i]) for i in gone])
    assert mask is not None and segment.postings is not None
    texts = keyword_queries(words, queries, seed + 1)
    clean, masked = SegmentedView([(segment, None)]), SegmentedView([(segment, mask)])
    postings = segment.postings

    def precompute() -> np.ndarray:
        term_of = np.repeat(np.arange(len(postings.terms)), np.diff(postings.indptr))
        gone_per_term = np.bincount(term_of[mask[postings.docs]], minlength=len(postings.terms))
        live: np.ndarray = np.diff(postings.indptr) - gone_per_term
        return live

    _, precompute_s = _timed(precompute)
    figures = {
        "passages": float(size),
        "bm25_p50_ms_no_deletions": _p50_ms(lambda i: clean.scores(texts[i]), queries),
        "bm25_p50_ms_df_per_query": _p50_ms(lambda i: masked.scores(texts[i]), queries),
        "df_kept_per_segment_ms_per_mask_change": precompute_s * 1000,
    }
    segment.close()
    return figures


def _print(figures: dict[str, Any]) -> None:
    print(f"\n== {figures['passages']:,} passages")
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"  {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in value.items()))
        elif isinstance(value, float):
            print(f"  {key}: {value:.2f}")
        else:
            print(f"  {key}: {value}")
    merged = figures["merged"]
    for name, label in (("many", "pooled"), ("many_unpooled", "unpooled")):
        ratios = {k: figures[name][k] / merged[k] for k in figures[name] if merged[k] > 0}
        print(f"  50-segment ({label}) / merged p50: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m index_store.segments.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated passage counts")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--small-segments", type=int, default=49)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tantivy", action="store_true", help="also measure tantivy (must be importable)")
    parser.add_argument("--no-bm25s", action="store_true", help="leave out the bm25s baseline (minutes at 1M)")
    parser.add_argument("--df-strategy", action="store_true", help="only compare the two ways of counting df")
    parser.add_argument("--work-dir", type=Path, default=None, help="where to write segments (default: a temp dir)")
    args = parser.parse_args(argv)
    for size in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"segbench-{size}-", dir=args.work_dir))
        if args.df_strategy:
            try:
                for key, value in bench_df_strategy(size, work).items():
                    print(f"  {key}: {value:.3f}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            continue
        try:
            figures = bench_segments(
                size,
                work,
                dim=args.dim,
                small_segments=args.small_segments,
                queries=args.queries,
                tantivy=args.tantivy,
                baselines=not args.no_bm25s,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
