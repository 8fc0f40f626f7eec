"""``citesearch bench query``: HTTP latency and throughput of /search and /ask next to the in-process cost of a query.

One run measures side by side:

1. in this process, the cost of one query done the way the service does it, by stage: ``Searcher.search`` (encode,
   vector_search, bm25, fusion, store_lookup, the rest of search) plus ``highlight_result`` (what ``GET /search``
   adds), and ``answer_question`` (what ``POST /ask`` does: the search, then sentence scoring and extraction), with a
   sentence cache warmed like the service warms it;
2. a real server (``citesearch serve`` in a subprocess, on a free 127.0.0.1 port, against the same index), loaded by
   ``eval.loadgen.run_load`` at each concurrency, for /search and /ask: throughput, p50/p95/p99, errors, and the CPU
   the server used.

Every request carries a question no earlier request of the run used (the seed and unanswerable questions with
simple prefix and suffix variations), because the service caches query embeddings: repeated questions would be
nearly free and flatter the figures. The in-process measurement uses the same questions as the lowest-concurrency
HTTP runs (it has its own caches, in its own process).

Targets (ratios of figures of this run): /search p50 at concurrency 1 ≤ 1.3 × the in-process p50 of the same work;
throughput at concurrency 16 ≥ 2.5 × that at concurrency 1, with zero errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from eval.bench.common import BenchReport, add_report_options, emit_report, percentiles, positive_int
from eval.server_process import ServerError, free_port, stop_server, wait_until_ready

if TYPE_CHECKING:
    from citesearch.settings import Settings
    from eval.loadgen import LoadResult, RequestSpec
    from indexer.embedder import Embedder

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
QUESTION_FILES = (DATA_DIR / "seed_questions.jsonl", DATA_DIR / "unanswerable_questions.jsonl")
# Variations that keep a question's meaning but change its text (so its embedding is not cached by the service).
PREFIXES = (
    "",
    "Quick question: ",
    "Question: ",
    "I would like to know: ",
    "Please answer: ",
    "I'm curious: ",
    "Help me understand: ",
    "From the documents: ",
    "Asking for a colleague: ",
    "One more thing: ",
)
SUFFIXES = (
    "",
    " Please cite the source.",
    " Thanks!",
    " Briefly.",
    " Answer with quotes.",
    " I need this for a report.",
    " What does the text say?",
    " Be precise.",
)
ENDPOINTS = ("search", "ask")
LATENCY_RATIO = 1.3  # /search p50 at concurrency 1 over the in-process p50 of the same work, at most
SCALING_RATIO = 2.5  # throughput at the highest concurrency over that at concurrency 1, at least
SEARCH_STAGES = ("encode", "vector_search", "bm25", "fusion", "store_lookup")
WARMED = re.compile(r"embedded \d+ sentences ahead|too many to embed their sentences|warming the sentence cache")


# -- questions ---------------------------------------------------------------------------------------------------
class QuestionPool:
    """Distinct questions: base question ``i % n`` with variation ``i // n``; wraps around (repeats) past the end."""

    def __init__(self, base: Sequence[str]) -> None:
        if not base:
            raise ValueError("no questions")
        self.base = list(dict.fromkeys(q.strip() for q in base if q.strip()))
        self.size = len(self.base) * len(PREFIXES) * len(SUFFIXES)
        self._used: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def packaged(cls) -> QuestionPool:
        from eval.loadgen import load_questions

        return cls([q for path in QUESTION_FILES for q in load_questions(path)])

    def __getitem__(self, i: int) -> str:
        i %= self.size
        with self._lock:
            self._used.add(i)
        base, variation = self.base[i % len(self.base)], i // len(self.base)
        return PREFIXES[variation % len(PREFIXES)] + base + SUFFIXES[variation // len(PREFIXES)]

    def slice(self, start: int, count: int) -> list[str]:
        return [self[start + i] for i in range(count)]

    @property
    def distinct_used(self) -> int:
        return len(self._used)


def _requests(endpoint: str, pool: QuestionPool, offset: int) -> Callable[[int], RequestSpec]:
    from eval.loadgen import question_requests

    return lambda i: question_requests(endpoint, [pool[offset + i]])[0]


# -- the server --------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    exit_code: int | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User plus system CPU time so far of the server's processes (Linux /proc): the server runs in a session of
        its own, so its process group holds it and, with --workers, its worker processes."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # the process group id
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK") if total else float("nan")


# The benchmark measures capacity, not policy: the per-client rate limit (which would answer 429 to a load
# generator on one address) and a required read key are turned off for the benchmark's own server; everything else
# (access log, request timeout, caches) is as configured.
SERVER_ENV = {"CITESEARCH_RATE_LIMIT_PER_MINUTE": "0", "CITESEARCH_REQUIRE_READ_KEY": "false"}


def server_command(index_dir: Path, port: int, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "citesearch.cli",
        "serve",
        "--index-dir",
        str(index_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
        "--workers",
        str(workers),
    ]


@contextlib.contextmanager
def running_server(
    index_dir: Path,
    workdir: Path,
    *,
    startup_timeout: float = 180.0,
    wait_for_warmup: bool = True,
    log: TextIO = sys.stderr,
    workers: int = 1,
) -> Iterator[ServerProcess]:
    """``citesearch serve`` in a subprocess on a free loopback port; yields once /ready answers 200 (and the
    sentence warm-up logged that it finished); always stopped afterwards (SIGINT, then SIGTERM, then SIGKILL)."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as handle:
        # Its own session: a Ctrl-C in the terminal reaches only the benchmark, which then stops the server cleanly.
        process = subprocess.Popen(
            server_command(index_dir, port, workers),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **SERVER_ENV},
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        try:
            wait_until_ready(process, server.base_url, timeout=startup_timeout)
        except ServerError as exc:
            raise ServerError(f"{exc}; its log:\n{server.log_tail()}") from None
        if wait_for_warmup:
            while not WARMED.search(log_path.read_text(encoding="utf-8", errors="replace")):
                if process.poll() is not None:
                    raise ServerError(f"the server exited during the sentence warm-up:\n{server.log_tail()}")
                if time.monotonic() > deadline:
                    print("bench query: the sentence warm-up did not finish in time; measuring anyway", file=log)
                    break
                time.sleep(0.2)
        yield server
    finally:
        server.exit_code = stop_server(process)


# -- in-process cost ---------------------------------------------------------------------------------------------
def measure_in_process(
    index_dir: Path,
    embedder: Embedder,
    settings: Settings,
    search_questions: Sequence[str],
    ask_questions: Sequence[str],
    *,
    torch_threads: int | None = 1,
) -> dict[str, dict[str, list[float]]]:
    """Per-stage milliseconds of each query, for the /search work and the /ask work, done as the routes do it.

    The work runs on a worker thread, as the service runs its (sync) routes in a thread pool, with torch limited to
    ``torch_threads`` intra-op threads (None: leave it). On a busy shared machine, torch's 2-thread intra-op
    parallelism made one single-query encode take ~500 ms wall and ~250 ms CPU (threads waiting on each other) against
    ~20 ms with 1 thread, same process and model; the server spends ~40 ms CPU per whole /search request, so its
    encodes do not hit that, and measuring with it would not be the same work.
    """
    from concurrent.futures import ThreadPoolExecutor

    torch = _torch()
    before = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-in-process") as pool:
            return pool.submit(
                _measure_in_process, index_dir, embedder, settings, search_questions, ask_questions
            ).result()
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def _measure_in_process(
    index_dir: Path,
    embedder: Embedder,
    settings: Settings,
    search_questions: Sequence[str],
    ask_questions: Sequence[str],
) -> dict[str, dict[str, list[float]]]:
    import faiss

    from citesearch.answer import SentenceScorer, answer_question, highlight_result
    from citesearch.search import Searcher, SearchRequest, check_model_matches
    from index_store import open_index

    # OpenMP's thread count is per thread: set here, on the thread doing the work, what `citesearch serve` gives
    # every thread through OMP_NUM_THREADS (service/commands.py).
    if settings.search_threads > 0:
        faiss.omp_set_num_threads(settings.search_threads)
    search: dict[str, list[float]] = {name: [] for name in (*SEARCH_STAGES, "search_other", "highlight", "total")}
    ask: dict[str, list[float]] = {name: [] for name in (*SEARCH_STAGES, "answer", "total")}
    with open_index(index_dir) as reader:
        check_model_matches(reader, embedder)
        searcher = Searcher(reader, embedder)  # the fusion the index records, as the service's IndexHolder does
        scorer = SentenceScorer(embedder, cache_size=settings.sentence_cache_size)
        passages = [p.text for p in reader.iter_passages()]
        # The service's warm-up (service/warmup.py): every sentence embedded ahead when they fit the cache.
        if settings.sentence_warmup and settings.sentence_cache_size > 0 and len(passages) * 2 <= scorer.cache_size:
            scorer.warm(passages)

        def search_work(question: str) -> tuple[Any, float, float]:
            t0 = time.perf_counter()
            result = searcher.search(
                SearchRequest(query=question, k=settings.default_k, per_doc_cap=settings.per_doc_cap)
            )
            t1 = time.perf_counter()
            highlight_result(
                result,
                scorer,
                max_sentences=settings.highlight_max_sentences,
                margin=settings.highlight_margin,
                budget=settings.highlight_encode_budget,
            )
            return result, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000

        def ask_work(question: str) -> Any:
            return answer_question(
                searcher,
                scorer,
                question,
                k=settings.answer_passages,
                threshold=settings.answer_min_score,
                max_sentences=settings.answer_max_sentences,
                margin=settings.answer_margin,
                max_k=settings.max_k,
                search_options={"per_doc_cap": settings.per_doc_cap},
            )

        search_work("warm-up question for the in-process measurement")  # one-off costs (thread pools, lazy loads)
        ask_work("another warm-up question for the in-process measurement")
        for question in search_questions:
            result, search_ms, highlight_ms = search_work(question)
            for name in SEARCH_STAGES:
                search[name].append(result.timings_ms.get(name, 0.0))
            search["search_other"].append(search_ms - sum(result.timings_ms.values()))
            search["highlight"].append(highlight_ms)
            search["total"].append(search_ms + highlight_ms)
        for question in ask_questions:
            t0 = time.perf_counter()
            outcome = ask_work(question)
            total = (time.perf_counter() - t0) * 1000
            for name in SEARCH_STAGES:
                ask[name].append(outcome.result.timings_ms.get(name, 0.0))
            ask["answer"].append(total - sum(outcome.result.timings_ms.values()))
            ask["total"].append(total)
    return {"search": search, "ask": ask}


def _stage_rows(samples: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    labels = {
        "encode": "encode (query embedding)",
        "vector_search": "vector_search",
        "bm25": "bm25",
        "fusion": "fusion",
        "store_lookup": "store_lookup",
        "search_other": "rest of Searcher.search (validate, hits)",
        "highlight": "highlight_result (sentence scoring)",
        "answer": "answer: sentence scoring + extraction (+ rest of search)",
        "total": "total",
    }
    rows = []
    for name, label in labels.items():
        row: dict[str, Any] = {"stage": label}
        for path, title in (("search", "/search work"), ("ask", "/ask work")):
            values = samples[path].get(name)
            stats = percentiles(values) if values else None
            row[f"{title} p50 ms"] = round(stats["p50_ms"], 3) if stats else None
            row[f"{title} mean ms"] = round(stats["mean_ms"], 3) if stats else None
            row[f"{title} p95 ms"] = round(stats["p95_ms"], 3) if stats else None
        rows.append(row)
    return rows


def _load_row(
    endpoint: str, concurrency: int, result: LoadResult, server_cpu: float, client_cpu: float, warmup: int
) -> dict[str, Any]:
    """One row of the HTTP load table."""
    return {
        "endpoint": f"/{endpoint}",
        "concurrency": concurrency,
        "requests": result.sent,
        "errors": result.errors,
        "seconds": result.wall_seconds,
        "throughput_rps": result.throughput_rps,
        "p50_ms": result.p50_ms,
        "p95_ms": result.p95_ms,
        "p99_ms": result.p99_ms,
        "mean_ms": result.mean_ms,
        "max_ms": result.max_ms,
        # CPU the whole phase used (warm-up requests included), over the measured wall time.
        "server_cores": round(server_cpu / result.wall_seconds, 2) if result.wall_seconds else None,
        "server_cpu_ms_per_req": round(1000 * server_cpu / max(1, result.sent + warmup), 2),
        "client_cores": round(client_cpu / result.wall_seconds, 2) if result.wall_seconds else None,
    }


def _compare_and_check(
    report: BenchReport,
    results: dict[tuple[str, int], LoadResult],
    samples: dict[str, dict[str, list[float]]],
    concurrencies: Sequence[int],
) -> None:
    """The HTTP-vs-in-process table and the targets: latency ratio, throughput scaling, no errors."""
    lowest = concurrencies[0]
    in_search = percentiles(samples["search"]["total"])["p50_ms"]
    in_ask = percentiles(samples["ask"]["total"])["p50_ms"]
    comparison = []
    for endpoint, in_p50, work in (
        ("search", in_search, "Searcher.search + highlight_result"),
        ("ask", in_ask, "answer_question"),
    ):
        http = results[(endpoint, lowest)].p50_ms
        comparison.append(
            {
                "endpoint": f"/{endpoint}",
                "in_process_work": work,
                "in_process_p50_ms": round(in_p50, 2),
                f"http_p50_ms_at_c{lowest}": http,
                "ratio": round(http / in_p50, 3) if http and in_p50 else None,
                "http_overhead_ms": round(http - in_p50, 2) if http is not None else None,
            }
        )
    report.tables["HTTP p50 vs in-process p50"] = comparison

    search_low = results[("search", lowest)]
    if search_low.p50_ms is not None and in_search > 0:
        report.check(
            f"/search p50 at concurrency {lowest} / in-process p50 (Searcher.search + highlight_result)",
            search_low.p50_ms / in_search,
            LATENCY_RATIO,
            at_most=True,
        )
    highest = concurrencies[-1]
    if highest != lowest:
        for endpoint in ENDPOINTS:
            low, high = results[(endpoint, lowest)], results[(endpoint, highest)]
            report.check(
                f"/{endpoint} throughput at concurrency {highest} / at concurrency {lowest}",
                high.throughput_rps / low.throughput_rps if low.throughput_rps else 0.0,
                SCALING_RATIO,
                at_most=False,
            )
    report.check("errors over all load runs", sum(r.errors for r in results.values()), 0, at_most=True)


# -- the run -----------------------------------------------------------------------------------------------------
def run_query_bench(
    index_dir: Path,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    requests: int = 300,
    time_limit: float = 120.0,
    concurrencies: Sequence[int] = (1, 4, 16),
    warmup: int = 5,
    in_process: int = 100,
    startup_timeout: float = 180.0,
    in_process_threads: int | None = 1,
    log: TextIO | None = None,
    workers: Sequence[int] = (1,),
) -> BenchReport:
    """Measure in process, then start the server and load it; returns the report (not written).

    ``embedder`` is the model for the in-process measurement (loaded from the settings when None); the server always
    loads its own, in its own process.
    """
    from eval.loadgen import run_load
    from index_store import open_index

    stream = log if log is not None else sys.stderr

    def say(message: str) -> None:
        print(f"bench query: {message}", file=stream, flush=True)

    index_dir = Path(index_dir)
    concurrencies = sorted(set(concurrencies))
    if not concurrencies or concurrencies[0] < 1:
        raise ValueError("concurrency levels must be at least 1")
    if requests < 1:
        raise ValueError("--requests must be at least 1")
    with open_index(index_dir) as reader:  # fails fast, before any model is loaded, when there is no index
        manifest = reader.manifest
    pool = QuestionPool.packaged()
    phases = [(endpoint, c) for c in concurrencies for endpoint in ENDPOINTS]
    per_phase = warmup + requests
    offsets = {phase: n * per_phase for n, phase in enumerate(phases)}
    lowest = concurrencies[0]
    n_in = min(in_process, requests)
    search_questions = pool.slice(offsets[("search", lowest)] + warmup, n_in)
    ask_questions = pool.slice(offsets[("ask", lowest)] + warmup, n_in)

    if embedder is None:
        say(f"loading {settings.model} for the in-process measurement…")
        embedder = settings.load_embedder()
    say(f"in-process cost of {n_in} /search and {n_in} /ask queries on {index_dir} ({manifest.version})…")
    samples = measure_in_process(
        index_dir, embedder, settings, search_questions, ask_questions, torch_threads=in_process_threads
    )

    rows: list[dict[str, Any]] = []
    results: dict[tuple[str, int], LoadResult] = {}
    server_log_tail = ""
    for worker_count in sorted(set(workers)):
        with tempfile.TemporaryDirectory(prefix="citesearch-bench-query-") as workdir:
            say(f"starting citesearch serve --workers {worker_count}…")
            started = time.perf_counter()
            with running_server(
                index_dir,
                Path(workdir),
                startup_timeout=startup_timeout,
                wait_for_warmup=settings.sentence_warmup and settings.sentence_cache_size > 0,
                log=stream,
                workers=worker_count,
            ) as server:
                startup_seconds = time.perf_counter() - started
                say(f"server ready at {server.base_url} after {startup_seconds:.1f}s")
                for endpoint, concurrency in phases:
                    cpu_before, client_before = server.cpu_seconds(), time.process_time()
                    result = run_load(
                        server.base_url,
                        _requests(endpoint, pool, offsets[(endpoint, concurrency)]),
                        total=requests,
                        concurrency=concurrency,
                        time_limit=time_limit,
                        warmup=warmup,
                        label=f"/{endpoint}",
                    )
                    server_cpu = server.cpu_seconds() - cpu_before
                    client_cpu = time.process_time() - client_before
                    if worker_count == min(workers):  # the comparisons below are of the first worker count
                        results[(endpoint, concurrency)] = result
                    say(result.summary())
                    for sample in result.error_samples:
                        say(f"  error: {sample}")
                    rows.append(
                        {
                            "workers": worker_count,
                            **_load_row(endpoint, concurrency, result, server_cpu, client_cpu, warmup),
                        }
                    )
            server_log_tail = server.log_tail(5)
        say(f"server stopped (exit code {server.exit_code})")

    report = BenchReport(
        name="query",
        settings={
            "index_dir": str(index_dir),
            "index_version": manifest.version,
            "documents": manifest.counts.get("documents"),
            "passages": manifest.counts.get("passages"),
            "model": manifest.model.name,
            "embed_backend": settings.embed_backend,
            "requests_per_run": requests,
            "warmup_per_run": warmup,
            "time_limit_s": time_limit,
            "concurrency": concurrencies,
            "in_process_queries": n_in,
            "default_k": settings.default_k,
            "answer_passages": settings.answer_passages,
            "per_doc_cap": settings.per_doc_cap,
            "sentence_warmup": settings.sentence_warmup,
            "highlight_encode_budget": settings.highlight_encode_budget,
            "server": " ".join(server_command(index_dir, 0)[1:]).replace("--port 0", "--port <free>"),
            "workers": sorted(set(workers)),
            "server_env": SERVER_ENV,
            "torch_threads": _torch_threads(),
            "in_process_torch_threads": in_process_threads,
        },
    )
    report.tables["HTTP load (citesearch serve, loopback)"] = rows
    report.tables["In-process cost of one query (ms)"] = _stage_rows(samples)

    _compare_and_check(report, results, samples, concurrencies)

    requested_questions = len(phases) * per_phase
    report.notes += [
        f"questions: {len(pool.base)} base questions (eval/data/seed_questions.jsonl and "
        f"unanswerable_questions.jsonl) × {len(PREFIXES) * len(SUFFIXES)} prefix/suffix variations = {pool.size} "
        f"distinct; this run used {pool.distinct_used} distinct questions for {requested_questions} HTTP request "
        f"slots (warm-up included)"
        + (
            ""
            if requested_questions <= pool.size
            else f" — more than the pool, so {requested_questions - pool.size} repeat"
        )
        + f"; the in-process measurement used the questions of the concurrency-{lowest} runs",
        "in-process /search work = Searcher.search (encode, vector_search, bm25, fusion, store_lookup, the rest) + "
        "highlight_result, with the settings the route uses; /ask work = answer_question as the route calls it; "
        "both with a sentence cache warmed like the service's, run on a worker thread as the routes are, with "
        f"torch intra-op threads = {in_process_threads} (see measure_in_process for why). HTTP "
        "latency adds routing, request validation, the pydantic response, JSON, uvicorn and the loopback round trip, "
        "measured by an httpx client in this process",
        "stage p50s do not add up to the total p50; the means do",
        f"each load run: {warmup} unmeasured warm-up requests one at a time, then {requests} requests, stopped "
        f"after {time_limit:.0f}s; server_cores = server CPU seconds / run wall time (warm-up included); "
        f"client_cores = this process's CPU over the run (the load generator)",
        f"server started in {startup_seconds:.1f}s (model load, index open, sentence warm-up); log tail: "
        + " | ".join(line.strip() for line in server_log_tail.splitlines()[-2:]),
    ]
    return report


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_threads() -> int | None:
    torch = _torch()
    return None if torch is None else int(torch.get_num_threads())


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,16, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be at least 1, got {text!r}")
    return values


def cmd_bench_query(args: argparse.Namespace, settings: Settings) -> int:
    index_dir = Path(args.index_dir or settings.index_dir)
    try:
        report = run_query_bench(
            index_dir,
            settings,
            requests=args.requests,
            time_limit=args.time_limit,
            concurrencies=args.concurrency,
            warmup=args.warmup,
            in_process=args.in_process,
            in_process_threads=args.in_process_threads or None,
            workers=args.workers,
        )
    except ServerError as exc:
        print(f"citesearch: error: {exc}", file=sys.stderr)
        return 1
    return emit_report(report, args, settings)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "query",
        help="HTTP /search and /ask latency and throughput at several concurrencies vs the in-process cost",
        description="Measure the in-process cost of a query by stage, then start citesearch serve on a free "
        "127.0.0.1 port against the index and load /search and /ask at each concurrency (bounded in requests and "
        "time). Writes bench-query-*.json and .md to the reports folder.",
    )
    parser.add_argument(
        "--index-dir", type=Path, metavar="DIR", help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)"
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=300,
        metavar="N",
        help="measured requests per endpoint and concurrency (default 300)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=120.0, metavar="S", help="stop each load run after S seconds (default 120)"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=[1, 4, 16],
        metavar="1,4,16",
        help="concurrency levels (default 1,4,16)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, metavar="N", help="unmeasured requests before each load run (default 5)"
    )
    parser.add_argument(
        "--in-process",
        type=positive_int,
        default=100,
        metavar="N",
        help="queries measured in process per endpoint (default 100, at most --requests)",
    )
    parser.add_argument(
        "--in-process-threads",
        type=int,
        default=1,
        metavar="N",
        help="torch intra-op threads for the in-process measurement (default 1; 0: leave as is)",
    )
    parser.add_argument(
        "--workers",
        type=_concurrency_list,
        default=[1],
        metavar="1,2",
        help="run the HTTP load against `citesearch serve --workers N` for each N, side by side (default 1)",
    )
    add_report_options(parser)
    parser.set_defaults(handler=cmd_bench_query)
