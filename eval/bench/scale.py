"""``citesearch bench scale``: how search holds up from 100k to 1M passages, on synthetic data (no model needed).

At each size it builds what a version holds — the SQLite passage store, the BM25 index and the vector index the
``auto`` backend chooses for that size (``index_store.vectors.choose_backend``) — and measures build times, one-query
vector search latency and recall@10 against exact search, exact flat search latency for reference, BM25 query time,
the store lookup of 10 passages, and the resident memory of the loaded vector index (in a fresh process).

Synthetic data: passages belong to topics (about 200 passages each); a passage vector is its topic centre plus an
equal amount of isotropic noise, normalised (cosine ~0.5 within a topic, ~0 across), like embeddings of a corpus
covering many subjects; a query is a passage vector plus noise (cosine ~0.8 to it). Passage text is 40 words drawn
from a Zipf-distributed vocabulary of 5,000 made-up words, a few of them specific to the topic, so BM25 posting lists
have realistic lengths. ``--distribution uniform`` draws vectors uniformly on the sphere instead: in 384 dimensions
those have no neighbourhood structure at all (every pair at cosine 0 ± 0.05), the worst case for any approximate
index, and not what embeddings look like.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench.common import BenchReport, add_report_options, emit_report, percentiles

DEFAULT_SIZES = (100_000, 1_000_000)
PASSAGES_PER_TOPIC = 200
PASSAGES_PER_DOCUMENT = 10
WORDS_PER_PASSAGE = 40
TOPIC_WORDS_PER_PASSAGE = 6
VOCABULARY = 5_000
ZIPF_S = 1.1
LATENT_DIMS = 32
ISOTROPIC_NOISE = 0.3  # per dimension, against ~1.4 per dimension of latent signal
QUERY_NOISE = 0.75  # query = passage + this much noise: cosine ~0.8
FLAT_TIMED_QUERIES = 50  # exact flat search is only a reference: time at most this many queries with it
MIN_SIZE = 1_000
RECALL_TARGET = 0.95
LATENCY_RATIO_TARGET = 3.0
RSS_TARGET_MB = 2048.0


# -- synthetic data ----------------------------------------------------------------------------------------------
def vocabulary(size: int = VOCABULARY, seed: int = 7) -> list[str]:
    """``size`` distinct pronounceable made-up words (none is an English stopword)."""
    rng = np.random.default_rng(seed)
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        syllables = int(rng.integers(2, 4))
        word = (
            "".join(
                consonants[rng.integers(len(consonants))] + vowels[rng.integers(len(vowels))] for _ in range(syllables)
            )
            + consonants[rng.integers(len(consonants))]
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_probabilities(size: int, s: float = ZIPF_S) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** s
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator, distribution: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, topic of each vector), unit-normalised float32.

    "clustered": a point in a ``LATENT_DIMS``-dimensional latent space — its topic's centre plus a spread as wide as
    the spread of the centres, so topics overlap — mapped into ``dim`` dimensions by a fixed random linear map, plus
    a little isotropic noise. Sentence embeddings behave much like this: a few dozen effective dimensions, many
    overlapping subjects. "uniform": uniform on the sphere.
    """
    topics_count = max(1, n // PASSAGES_PER_TOPIC)
    topics = rng.integers(0, topics_count, size=n)
    vectors = np.empty((n, dim), dtype=np.float32)
    latent = min(LATENT_DIMS, dim)
    centres = rng.standard_normal((topics_count, latent), dtype=np.float32)
    mapping = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent, dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        if distribution == "uniform":
            block = noise
        else:
            points = centres[topics[start:stop]] + rng.standard_normal((stop - start, latent), dtype=np.float32)
            block = points @ mapping + ISOTROPIC_NOISE * noise
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, topics


def synthetic_queries(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.choice(len(vectors), size=count, replace=False)
    noise = rng.standard_normal((count, vectors.shape[1]), dtype=np.float32) / np.sqrt(vectors.shape[1])
    queries = vectors[rows] + QUERY_NOISE * noise
    return np.asarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)


def synthetic_texts(topics: np.ndarray, words: list[str], rng: np.random.Generator) -> list[str]:
    """One passage text per topic entry: Zipf words plus a few words typical of its topic."""
    n = len(topics)
    probabilities = zipf_probabilities(len(words))
    general = rng.choice(len(words), size=(n, WORDS_PER_PASSAGE - TOPIC_WORDS_PER_PASSAGE), p=probabilities)
    # each topic favours 20 words from the mid-frequency range (ranks 200-5000): its "subject vocabulary"
    topic_vocab = (topics[:, None] * 7919 + np.arange(20)[None, :] * 104729) % (len(words) - 200) + 200
    picks = rng.integers(0, 20, size=(n, TOPIC_WORDS_PER_PASSAGE))
    specific = np.take_along_axis(topic_vocab, picks, axis=1)
    tokens = np.concatenate([general, specific], axis=1)
    vocab = np.asarray(words, dtype=object)
    return [" ".join(row) for row in vocab[tokens]]


def keyword_queries(words: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """2-4 word queries from the vocabulary below its 20 commonest words (those behave like stopwords)."""
    probabilities = zipf_probabilities(len(words) - 20)
    return [
        " ".join(words[20 + i] for i in rng.choice(len(words) - 20, size=int(rng.integers(2, 5)), p=probabilities))
        for _ in range(count)
    ]


# -- the benchmark -----------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _latencies_ms(fn: Callable[[int], Any], count: int, warmup: int = 3) -> list[float]:
    for i in range(min(warmup, count)):
        fn(i)
    samples = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


@contextmanager
def faiss_threads(count: int | None) -> Iterator[None]:
    """Run faiss with ``count`` OpenMP threads inside the block (None: leave as is)."""
    import faiss

    if count is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _build_store(path: Path, texts: list[str]) -> None:
    from index_store.sqlite_store import PassageStore, connect

    connection = connect(path, read_only=False)
    store = PassageStore(connection)
    for doc_no, start in enumerate(range(0, len(texts), PASSAGES_PER_DOCUMENT)):
        chunk = texts[start : start + PASSAGES_PER_DOCUMENT]
        doc_id = f"doc{doc_no:07d}"
        text = " ".join(chunk)
        store.insert_document(
            doc_id=doc_id,
            title=f"Document {doc_no}",
            text=text,
            source="synthetic",
            url=None,
            metadata={},
            units=[("article", 0, len(text), None)],
            content_hash=f"h{doc_no}",
        )
        rows, offset = [], 0
        for ordinal, passage in enumerate(chunk):
            rows.append(
                (
                    start + ordinal,
                    doc_id,
                    ordinal,
                    "article",
                    None,
                    offset,
                    offset + len(passage),
                    passage,
                    f"p{start + ordinal}",
                )
            )
            offset += len(passage) + 1
        store.insert_passages(rows)
    connection.commit()
    connection.close()


_RSS_PROBE = """
import json, sys, time
import numpy as np
from pathlib import Path
from eval.bench.common import current_rss_mb
from index_store.vectors import load_vector_index
import faiss
before = current_rss_mb()
index = load_vector_index(sys.argv[1], Path(sys.argv[2]))
loaded = current_rss_mb()
queries = np.load(sys.argv[3])
for q in queries:
    index.search(q[None, :], 10)
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
file_mb = int(status.get("RssFile", "0 kB").split()[0]) / 1024
print(json.dumps({"before_mb": before, "loaded_mb": loaded, "after_queries_mb": current_rss_mb(),
                  "file_backed_mb": file_mb}))
"""


def _resident_memory(backend: str, folder: Path, queries_file: Path) -> dict[str, float]:
    """Resident memory of a fresh process before and after loading the vector index (and after the queries)."""
    project_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, backend, str(folder), str(queries_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=project_root,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory probe failed: {result.stderr.strip().splitlines()[-1:]}")
    probe: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return probe


def measure_size(
    n: int,
    *,
    dim: int,
    queries: int,
    backend: str,
    distribution: str,
    work_dir: Path,
    words: list[str],
    seed: int,
    progress: Any,
    search_threads: int | None = 1,
) -> dict[str, Any]:
    """Every figure for one size. ``progress`` is a tqdm bar advanced once per step."""
    from index_store.keyword import KeywordIndex, KeywordSettings
    from index_store.sqlite_store import PassageStore, connect
    from index_store.vectors import choose_backend, load_vector_index, save_vector_index
    from index_store.vectors.faiss_backend import FaissVectorIndex

    def step(name: str) -> None:
        progress.set_postfix_str(f"{n:,}: {name}")

    rng = np.random.default_rng(seed + n)
    folder = work_dir / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    step("generating")
    vectors, topics = synthetic_vectors(n, dim, rng, distribution)
    query_vectors = synthetic_queries(vectors, queries, rng)
    np.save(folder / "queries.npy", query_vectors)
    texts = synthetic_texts(topics, words, rng)
    ids = np.arange(n, dtype=np.int64)
    progress.update(1)

    step("SQLite store")
    _, store_seconds = _timed(lambda: _build_store(folder / "passages.sqlite", texts))
    progress.update(1)
    step("BM25")
    settings = KeywordSettings(context=False)
    keyword, bm25_seconds = _timed(lambda: KeywordIndex.build(((i, t) for i, t in enumerate(texts)), settings))
    texts = []  # free them before the vectors
    progress.update(1)

    step("vector index")
    flat = FaissVectorIndex.create(dim)
    flat.add(ids, vectors)
    del vectors  # free them before the searches
    chosen = choose_backend(backend, n, dim)
    (saved_backend, files), vector_seconds = _timed(lambda: save_vector_index(flat, folder, chosen))
    index = load_vector_index(saved_backend, folder)
    disk_mb = sum(p.stat().st_size for p in files) / 2**20
    ann = getattr(index, "params", {})
    progress.update(1)

    step("vector search")
    exact = flat.search(query_vectors, 10).ids
    with faiss_threads(search_threads):
        found = np.stack([index.search(query_vectors[i : i + 1], 10).ids[0] for i in range(queries)])
        chosen_ms = _latencies_ms(lambda i: index.search(query_vectors[i : i + 1], 10), queries)
        if saved_backend == "faiss":
            flat_ms = chosen_ms
        else:
            flat_ms = _latencies_ms(
                lambda i: flat.search(query_vectors[i : i + 1], 10), min(queries, FLAT_TIMED_QUERIES)
            )
    recall = float(np.mean([len(set(f.tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)]))
    flat = index = None  # type: ignore[assignment]  # free both before the next steps (the lambdas hold the names)
    progress.update(1)

    step("BM25 and store queries")
    texts_queries = keyword_queries(words, queries, rng)
    bm25_ms = _latencies_ms(lambda i: keyword.search(texts_queries[i], 10), queries)
    keyword = None
    connection = connect(folder / "passages.sqlite", read_only=True)
    store = PassageStore(connection)
    lookups = rng.integers(0, n, size=(queries, 10))
    store_ms = _latencies_ms(lambda i: store.passages(lookups[i].tolist()), queries)
    connection.close()
    progress.update(1)

    step("resident memory")
    memory = _resident_memory(saved_backend, folder, folder / "queries.npy")
    progress.update(1)
    return {
        "passages": n,
        "backend": saved_backend,
        "nlist/nprobe": f"{ann['nlist']}/{ann['nprobe']}" if "nlist" in ann else "",
        "store_build_s": round(store_seconds, 2),
        "bm25_build_s": round(bm25_seconds, 2),
        "vector_build_s": round(vector_seconds, 2),
        "vector_p50_ms": round(percentiles(chosen_ms)["p50_ms"], 3),
        "vector_p95_ms": round(percentiles(chosen_ms)["p95_ms"], 3),
        "recall_at_10": round(recall, 4),
        "exact_flat_p50_ms": round(percentiles(flat_ms)["p50_ms"], 3),
        "bm25_p50_ms": round(percentiles(bm25_ms)["p50_ms"], 3),
        "store_10_p50_ms": round(percentiles(store_ms)["p50_ms"], 3),
        "index_rss_mb": round(memory["loaded_mb"] - memory["before_mb"], 1),
        "process_rss_mb": round(memory["after_queries_mb"], 1),
        "file_backed_rss_mb": round(memory.get("file_backed_mb", 0.0), 1),
        "vector_files_mb": round(disk_mb, 1),
    }


STEPS_PER_SIZE = 7


def run_scale_bench(
    sizes: list[int],
    *,
    dim: int = 384,
    queries: int = 200,
    backend: str = "auto",
    distribution: str = "clustered",
    work_dir: Path | None = None,
    seed: int = 0,
    search_threads: int | None = 1,
    show_progress: bool = False,
) -> BenchReport:
    from tqdm import tqdm

    from index_store.vectors import EXACT_MAX_VECTORS, FLOAT_VECTORS_MAX_BYTES

    sizes = sorted(sizes)
    report = BenchReport(
        "scale",
        settings={
            "sizes": sizes,
            "dim": dim,
            "queries": queries,
            "backend": backend,
            "distribution": distribution,
            "seed": seed,
            "search_threads": search_threads,
            "exact_max_vectors": EXACT_MAX_VECTORS,
            "float_vectors_max_bytes": FLOAT_VECTORS_MAX_BYTES,
            "words_per_passage": WORDS_PER_PASSAGE,
            "vocabulary": VOCABULARY,
        },
    )
    words = vocabulary()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-", dir=work_dir) as tmp,
        tqdm(
            total=STEPS_PER_SIZE * len(sizes),
            desc="bench scale",
            unit="step",
            file=sys.stderr,
            disable=not show_progress,
        ) as progress,
    ):
        for n in sizes:
            rows.append(
                measure_size(
                    n,
                    dim=dim,
                    queries=queries,
                    backend=backend,
                    distribution=distribution,
                    work_dir=Path(tmp),
                    words=words,
                    seed=seed,
                    progress=progress,
                    search_threads=search_threads,
                )
            )
    report.tables["per size"] = rows
    smallest, largest = rows[0], rows[-1]
    if len(rows) > 1:
        ratio = largest["vector_p50_ms"] / max(smallest["vector_p50_ms"], 1e-6)
        report.check(
            f"vector search p50 at {largest['passages']:,} / at {smallest['passages']:,}",
            ratio,
            LATENCY_RATIO_TARGET,
            at_most=True,
        )
    report.check(
        f"loaded vector index resident MB at {largest['passages']:,}",
        largest["index_rss_mb"],
        RSS_TARGET_MB,
        at_most=True,
    )
    for row in rows:
        report.check(
            f"recall@10 vs exact at {row['passages']:,} ({row['backend']})",
            row["recall_at_10"],
            RECALL_TARGET,
            at_most=False,
        )
    report.notes += [
        (
            f"vector index chosen by size ('{backend}'): exact flat up to {EXACT_MAX_VECTORS:,} vectors, IVF above, "
            f"with 8-bit codes when the float vectors exceed {FLOAT_VECTORS_MAX_BYTES / 2**30:.0f} GiB; scores are "
            "exact (re-ranked from the float vectors on disk)"
        ),
        (
            f"latencies are one query at a time, p50 over {queries} queries (exact flat over at most "
            f"{FLAT_TIMED_QUERIES}), faiss with {search_threads or 'its default'} search thread(s); recall@10 against "
            "exact flat search"
        ),
        (
            f"synthetic {distribution} vectors, {dim} dims; {WORDS_PER_PASSAGE} words per passage from a Zipf "
            f"vocabulary of {VOCABULARY:,}; BM25 without the part-level context index"
        ),
        (
            "index_rss_mb: resident memory a fresh process gains by loading the vector index; process_rss_mb: that "
            "process after running the queries (Python, numpy and faiss included); file_backed_rss_mb: the part of it "
            "that is mapped files (shared libraries)"
        ),
        "IVF float vectors stay on disk and are read per row (os.pread) for the exact re-rank and vectors_for",
    ]
    return report


# -- command line ------------------------------------------------------------------------------------------------
def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated passage counts like 100000,1000000, got {text!r}"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size")
    if min(sizes) < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"each size must be at least {MIN_SIZE}, got {min(sizes)}")
    return sorted(set(sizes))


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def cmd_bench_scale(args: argparse.Namespace, settings: Any) -> int:
    if args.queries > min(args.sizes):
        raise ValueError(f"--queries {args.queries} is more than the smallest size {min(args.sizes)}")
    if args.work_dir is not None and not args.work_dir.is_dir():
        raise ValueError(f"--work-dir {args.work_dir} is not a folder")
    report = run_scale_bench(
        args.sizes,
        dim=args.dim,
        queries=args.queries,
        backend=args.backend,
        distribution=args.distribution,
        work_dir=args.work_dir,
        seed=args.seed,
        search_threads=args.search_threads or None,
        show_progress=args.progress or sys.stderr.isatty(),
    )
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    from index_store.vectors import AUTO, BACKENDS

    parser = kinds.add_parser(
        "scale",
        help="vector, BM25 and store timings, recall and memory at 100k-1M synthetic passages",
        description="Build a synthetic index (random topic-clustered unit vectors, Zipf-distributed words; no model) "
        "at each size and measure build times, vector search p50 and recall@10 against exact search, BM25 and "
        "store lookup times, and the resident memory of the loaded vector index. Writes bench-scale-*.json and .md "
        "to the reports folder.",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        metavar="N,N",
        help="passage counts (default: 100000,1000000)",
    )
    parser.add_argument("--dim", type=_at_least(8), default=384, help="vector dimensions (default: 384)")
    parser.add_argument("--queries", type=_at_least(1), default=200, help="queries timed per size (default: 200)")
    parser.add_argument(
        "--backend",
        choices=(AUTO, *BACKENDS),
        default=AUTO,
        help="vector backend; 'auto' chooses by size as an index build does (default)",
    )
    parser.add_argument(
        "--distribution",
        choices=("clustered", "uniform"),
        default="clustered",
        help="synthetic vectors around topic centres (default) or uniform on the sphere",
    )
    parser.add_argument(
        "--search-threads",
        type=_at_least(0),
        default=1,
        metavar="N",
        help="faiss threads while timing searches (default 1: one query per request thread; 0: "
        "faiss's default, whose OpenMP spinning is slow on a busy machine)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="folder for the temporary indexes (default: the system temporary folder)",
    )
    add_report_options(parser, progress_help="progress bar on stderr even when not a terminal")
    parser.set_defaults(handler=cmd_bench_scale)
