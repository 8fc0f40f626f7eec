"""Distributed embedding on Ray: chunk and embed a corpus on a cluster, then publish through the ordinary writer.

``citesearch index PATH… --ray [ADDRESS]`` loads the documents as the local path does, then runs one Ray Data job
over them before the one-writer publish (``indexer.pipeline.apply_changes``): a pool of actors, one model per actor
(the configured backend, ONNX int8 by default), cuts every document into passages with the local path's own
``Chunker`` and embeds the passages whose text the index's embedding cache has not seen (the driver sends the
cache's keys along); the driver writes the vectors that come back into that cache, slice by slice.

``apply_changes`` then runs exactly as without Ray and finds every vector it needs in the cache, so the passages,
offsets, vectors and the build report are the local path's by construction: the cache key is the same
(``pipeline.embedding_cache_key``), and int8 embeds one text per call, so a vector depends on its text alone and
not on which worker or batch it ran in. An interrupted run publishes nothing: only the cache has been filled, and
a cache is never wrong, only incomplete.

The cost of this design is that the driver chunks the corpus a second time inside ``apply_changes`` (measured in
docs/ray.md: 5 % of a SciFact build). Where a Milvus server is the store, a second job's actors then write the
version's rows into Milvus themselves (``indexer.ray_milvus``); this job stays as it is.

Ray is an optional dependency (``pip install 'citesearch[ray]'``) imported only in this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from index_store import EmbeddingCache
from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import Document
from indexer.embedder import Embedder, create_embedder, embed_backend_of
from indexer.pipeline import EMBED_SLICE, BuildReport, embedding_cache_key

INSTALL_HINT = "pip install 'citesearch[ray]'"
LOCAL = "local"
# Accepted cluster addresses: a GCS address (HOST:PORT, what `ray start --head` prints), a Ray Client address
# (ray://HOST[:PORT]), or "auto" (the cluster this machine already belongs to, RAY_ADDRESS or /tmp/ray).
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d{1,5}))?$")
RAY_CLIENT_PORT = 10001
CONNECT_TIMEOUT_S = 5.0
DOCUMENT_BATCH = 16  # documents per actor call: small enough that a few long pages do not hold one actor alone
PROGRESS_EVERY_S = 5.0
LOCAL_START_RETRIES = 1


class RayIndexingError(ValueError):
    """Ray is missing, the cluster cannot be reached, or a Ray job failed; the message is one line for the user.

    A ValueError, so the CLI prints it as one line and exits non-zero like any other bad input."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where and how wide to run. ``address`` "local" starts a private Ray on this machine bound to loopback."""

    address: str = LOCAL
    workers: int = 0  # actors per pool; 0: one per CPU of the cluster (local: of this machine)
    gpus_per_worker: float = 0.0  # > 0: each embed actor asks Ray for this much GPU and runs the model on it


@dataclass(frozen=True, slots=True)
class RayFillReport:
    """What the Ray job did before the publish; ``seconds``: lookup, start, first_batch, embed, total."""

    address: str
    workers: int
    documents: int
    passages: int
    from_cache: int
    embedded: int
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "workers": self.workers,
            "documents": self.documents,
            "passages": self.passages,
            "from_cache": self.from_cache,
            "embedded": self.embedded,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True, slots=True)
class WorkerModel:
    """What an actor needs to build the driver's embedder again on its worker: everything is picklable."""

    model: str
    backend: str
    chunker: ChunkerSettings
    threads: int = 1
    device: str = "cpu"


def parse_address(text: str) -> str:
    """``text`` checked as a Ray address: "local", "auto", HOST:PORT or ray://HOST[:PORT]; else RayIndexingError.

    ``--ray`` takes an optional value, so ``index --ray corpus/`` would read the folder as the address: a value that
    is an existing path gets a message saying so."""
    value = text.strip()
    if value in (LOCAL, "auto"):
        return value
    if not _ADDRESS.match(value) or (not value.startswith("ray://") and ":" not in value):
        if Path(value).exists():
            raise RayIndexingError(
                f"--ray got {value!r}, which is a path, not a Ray address: put --ray after the paths, or write "
                "--ray=HOST:PORT"
            )
        raise RayIndexingError(f"not a Ray address: {value!r} (give HOST:PORT, ray://HOST[:PORT], auto or local)")
    return value


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayIndexingError(f"indexing with --ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def check_address(address: str) -> None:
    """RayIndexingError now, before any model is loaded, when Ray is not installed or the cluster is unreachable."""
    _import_ray_spec()
    if address != LOCAL:
        _check_reachable(address)


def _import_ray_spec() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise RayIndexingError(f"indexing with --ray needs Ray, which is not installed: {INSTALL_HINT}")


def _check_reachable(address: str) -> None:
    """Fail in seconds with one line when nothing listens at the address: ``ray.init`` itself retries for a minute
    or more before it gives up, with pages of log."""
    match = _ADDRESS.match(address)
    if match is None:  # parse_address let it through: "auto"
        return
    host = match["host"].strip("[]")
    port = int(match["port"] or RAY_CLIENT_PORT)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayIndexingError(f"cannot reach the Ray cluster at {address}: {reason}") from None


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[tuple[Any, int]]:
    """Ray started (local) or joined (an address), with the number of workers to use; shut down on the way out."""
    if options.address == LOCAL:
        # Ray binds the machine's network address unless it believes it is on a laptop; this switch (read when ray
        # is imported, and passed on to the processes it starts) makes a local Ray use and listen on loopback only.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to the network
    ray = _import_ray()
    if ray.is_initialized():  # a caller (a test, a notebook) already holds a session: use it, leave it running
        yield ray, options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        return
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if options.address == LOCAL:
        cores = _cores()
        workers = options.workers or cores
        kwargs: dict[str, Any] = {
            "address": "local",
            "num_cpus": max(workers, cores),
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
        }
    else:
        _check_reachable(options.address)
        kwargs = {"address": options.address}
    for attempt in range(1 + LOCAL_START_RETRIES):
        try:
            ray.init(**kwargs, **common)
            break
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError…: all "no cluster here"
            # A local Ray waits a fixed 30 s for its raylet; on a loaded machine that start sometimes misses it
            # (measured here: 2 of ~12 starts under a load average of 3–5), and a second start then works.
            if options.address == LOCAL and attempt < LOCAL_START_RETRIES and "timed out during startup" in str(exc):
                ray.shutdown()
                continue
            raise RayIndexingError(f"cannot start or join Ray at {options.address}: {_one_line(exc)}") from exc
    try:
        if options.address != LOCAL:
            workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        _quiet_ray_data()
        yield ray, workers
    finally:
        ray.shutdown()


def _quiet_ray_data() -> None:
    """Ray Data's own progress bars and execution logs would interleave with ours on stderr."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def worker_embedder(spec: WorkerModel) -> Embedder:
    """The driver's embedder built again on a worker, using ``spec.threads`` threads (Ray gives each actor its CPU
    share; the embedder would otherwise start one thread per core of the node and the actors would fight)."""
    if spec.device != "cpu" and spec.backend == "torch":
        from indexer.embedder import SentenceTransformerEmbedder

        embedder: Embedder = SentenceTransformerEmbedder(spec.model, backend=spec.backend, device=spec.device)
    else:
        embedder = create_embedder(spec.backend, spec.model)
    onnx = getattr(embedder, "_onnx", None)
    if onnx is not None:
        onnx.workers = spec.threads  # int8: texts spread over this many threads, each on a one-thread session
    try:
        import torch

        torch.set_num_threads(spec.threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return embedder


class IndexActor:
    """Ray Data actor, one model per actor: pickled documents in; out, one marker row per document (``hash`` empty,
    ``passages`` its passage count) and one row per passage it embedded (``hash``, ``vector``). Passages whose key
    is in ``known`` (the driver's embedding cache) or that this actor already embedded are not embedded again."""

    def __init__(self, spec: WorkerModel, known: list[Any], batch_size: int) -> None:
        import ray

        self._cpu_mark = 0.0  # CPU time of this process already reported: the first batch also reports the load
        embedder = worker_embedder(spec)
        self._chunker = Chunker(embedder, spec.chunker)
        self._embedder = embedder
        self._batch_size = batch_size
        # Sorted sha256 digests, 32 bytes each: a million cached passages cost 32 MB per actor, not a Python set's 110.
        self._known: np.ndarray = ray.get(known[0])
        self._seen: set[str] = set()

    def _is_known(self, content_hash: str) -> bool:
        return content_hash in self._seen or is_known(self._known, content_hash)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        hashes: list[str] = []
        counts: list[int] = []
        todo: dict[str, str] = {}
        for blob in batch["doc"]:
            doc: Document = pickle.loads(blob)
            passages = self._chunker.chunk(doc)
            hashes.append("")
            counts.append(len(passages))
            for passage in passages:
                key = passage.content_hash
                if key not in todo and not self._is_known(key):
                    todo[key] = passage.embed_text
        computed = self._embedder.encode(list(todo.values()), batch_size=self._batch_size)
        self._seen.update(todo)
        vectors = np.zeros((len(hashes) + len(todo), self._embedder.dim), dtype=np.float32)
        if len(todo):
            vectors[len(hashes) :] = computed
        # This process's CPU seconds since the last report, on the batch's first row: the driver adds them up, so a
        # benchmark can compare CPU per passage with the local path whatever else the machine is running.
        cpu = [0.0] * (len(hashes) + len(todo))
        now = time.process_time()
        cpu[0], self._cpu_mark = now - self._cpu_mark, now
        return {"hash": hashes + list(todo), "passages": counts + [0] * len(todo), "vector": vectors, "cpu_s": cpu}


def is_known(digests: np.ndarray, content_hash: str) -> bool:
    """Whether the hex key ``content_hash`` is in ``digests`` (from ``known_digests``): a binary search. numpy's
    bytes type drops trailing zero bytes on both sides of the comparison alike, so such keys compare right too."""
    if not len(digests):
        return False
    digest = np.array([bytes.fromhex(content_hash)], dtype="S32")[0]
    at = int(np.searchsorted(digests, digest))
    return at < len(digests) and bool(digests[at] == digest)


def known_digests(hashes: Iterable[str]) -> np.ndarray:
    """Hex sha256 keys as a sorted array of 32-byte digests (what ``IndexActor`` looks keys up in)."""
    digests = np.array([bytes.fromhex(h) for h in hashes], dtype="S32")
    digests.sort()
    return digests


class _Progress:
    """One line to stderr every few seconds: documents done, passages embedded, the rate and the time left."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self._stream, self._total = stream, total
        self._started = time.perf_counter()
        self._last = self._started
        self.documents = 0

    def update(self, documents: int, passages: int, embedded: int) -> None:
        self.documents += documents
        now = time.perf_counter()
        if self._stream is None or now - self._last < PROGRESS_EVERY_S or self.documents >= self._total:
            return
        self._last = now
        elapsed = now - self._started
        rate = self.documents / elapsed
        eta = f", ETA {_duration((self._total - self.documents) / rate)}" if rate > 0 else ""
        print(
            f"ray: {self.documents:,}/{self._total:,} documents chunked, {passages:,} passages, {embedded:,} embedded "
            f"({embedded / elapsed:,.1f} passages/s){eta}",
            file=self._stream,
            flush=True,
        )

    def finish(self, passages: int, embedded: int) -> None:
        if self._stream is None:
            return
        elapsed = time.perf_counter() - self._started
        print(
            f"ray: {self.documents:,} documents chunked, {passages:,} passages, {embedded:,} embedded in "
            f"{_duration(elapsed)} ({embedded / max(elapsed, 1e-9):,.1f} passages/s); publishing",
            file=self._stream,
            flush=True,
        )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fill_embedding_cache(
    index_dir: Path,
    documents: Sequence[Document],
    embedder: Embedder,
    chunker: ChunkerSettings,
    *,
    options: RayOptions | None = None,
    batch_size: int = 32,
    progress: TextIO | None = None,
) -> RayFillReport:
    """Chunk ``documents`` and embed every passage text the index's embedding cache lacks on Ray, storing the
    vectors in that cache; ``apply_changes`` with the same embedder and chunker settings then embeds nothing.

    ``embedder`` is the driver's (the one ``apply_changes`` will use): its name and backend make the cache key and
    are what the workers load."""
    options = options or RayOptions()
    backend = embed_backend_of(embedder)
    if backend is None:
        raise RayIndexingError(f"the embedder {embedder.name!r} has no backend the Ray workers could load")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    key = embedding_cache_key(embedder)
    # SIGINT is noted from before Ray starts: an interrupt during ray.init or the job's set-up must stop the build
    # too, whatever Ray's start-up code did with the KeyboardInterrupt (a CI run was interrupted there, went on and
    # published)
    with (
        _sigint_noted() as interrupted,
        ray_session(options) as (ray, workers),
        EmbeddingCache(index_dir / "cache" / "embeddings.sqlite") as cache,
    ):
        _stop_if(interrupted)
        seconds["start"] = time.perf_counter() - started
        t0 = time.perf_counter()
        known = known_digests(cache.model_hashes(key))
        seconds["lookup"] = time.perf_counter() - t0
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        threads = 1 if options.address == LOCAL else max(1, cpus // workers)
        device = "cuda" if options.gpus_per_worker > 0 else "cpu"
        spec = WorkerModel(model=embedder.name, backend=backend, chunker=chunker, threads=threads, device=device)
        try:
            passages, embedded = _run_on_ray(
                ray, documents, spec, known, workers, batch_size, options, cache, key, progress, seconds, interrupted
            )
        except RayIndexingError:
            raise
        except Exception as exc:
            if _is_ray_error(ray, exc):
                raise RayIndexingError(f"the Ray job failed: {_one_line(exc)}") from exc
            raise
        if options.address == LOCAL:
            seconds["ray_processes_cpu"] = descendants_cpu(os.getpid(), skip="MapWorker")
    _stop_if(interrupted)  # one that came while Ray shut down
    seconds["total"] = time.perf_counter() - started
    return RayFillReport(
        address=options.address,
        workers=workers,
        documents=len(documents),
        passages=passages,
        from_cache=passages - embedded,
        embedded=embedded,
        seconds=seconds,
    )


def descendants_cpu(pid: int, *, skip: str) -> float:
    """CPU seconds (user + system) of the live processes below ``pid`` whose command line lacks ``skip``: the local
    Ray's own processes (GCS, raylet, agents, idle workers), for a benchmark's CPU account; 0.0 without /proc."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            todo.append(int(child))
            try:
                if skip in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                    continue
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return total


def _is_ray_error(ray: Any, exc: BaseException) -> bool:
    return isinstance(exc, ray.exceptions.RayError) or type(exc).__module__.startswith("ray")


def _run_on_ray(
    ray: Any,
    documents: Sequence[Document],
    spec: WorkerModel,
    known: np.ndarray,
    workers: int,
    batch_size: int,
    options: RayOptions,
    cache: EmbeddingCache,
    key: str,
    stream: TextIO | None,
    seconds: dict[str, float],
    interrupted: threading.Event,
) -> tuple[int, int]:
    """One Ray Data job over ``documents``; vectors go into ``cache`` as they arrive. Returns (passages, embedded)."""
    t0 = time.perf_counter()
    items = [{"doc": pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)} for doc in documents]
    # Many small blocks: the last ones decide when the job ends, and a block is processed by one actor alone.
    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), workers * 32)))
    resources: dict[str, Any] = {"num_cpus": spec.threads}
    if options.gpus_per_worker > 0:
        resources["num_gpus"] = options.gpus_per_worker
    if options.address == LOCAL:
        # One machine: an actor that dies is a bug or out of memory, not a lost node; fail instead of restarting
        # it forever (Ray Data's default, right for a cluster, where it also logs one line per actor about it).
        resources["max_restarts"] = 0
    known_ref = ray.put(known)
    with warnings.catch_warnings():
        # max_restarts has no named parameter yet; passing it as a remote argument is what Ray Data documents
        warnings.simplefilter("ignore", DeprecationWarning)
        rows = dataset.map_batches(
            IndexActor,
            fn_constructor_kwargs={"spec": spec, "known": [known_ref], "batch_size": batch_size},
            batch_size=DOCUMENT_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            **resources,
        )
    _stop_if(interrupted)
    return _consume(rows, _Progress(stream, len(documents)), cache, key, seconds, t0, interrupted)


@contextlib.contextmanager
def _sigint_noted() -> Iterator[threading.Event]:
    """An event set by every SIGINT while Ray runs; the handler before it still runs (by default it raises
    KeyboardInterrupt). Ray's start-up and Ray Data's iterator can swallow that KeyboardInterrupt (CI runs were
    interrupted and went on to publish), so the build checks the event after Ray starts, before the job and after
    every batch (``_stop_if``)."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # signals reach the main thread only; nothing to note here
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        interrupted.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_if(interrupted: threading.Event) -> None:
    if interrupted.is_set():
        raise KeyboardInterrupt


def _consume(
    rows: Any,
    bar: _Progress,
    cache: EmbeddingCache,
    key: str,
    seconds: dict[str, float],
    t0: float,
    interrupted: threading.Event,
) -> tuple[int, int]:
    """Store the job's vectors as batches arrive; (passages, embedded). Stops with KeyboardInterrupt once a SIGINT
    came, whatever the iterator did with it."""
    pending: dict[str, np.ndarray] = {}
    embedded: set[str] = set()
    passages = 0
    for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
        _stop_if(interrupted)
        if "first_batch" not in seconds:
            seconds["first_batch"] = time.perf_counter() - t0
        hashes = [str(h) for h in batch["hash"]]
        counts = batch["passages"]
        seconds["actor_cpu"] = seconds.get("actor_cpu", 0.0) + float(np.sum(batch["cpu_s"]))
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        docs_done = 0
        for row, content_hash in enumerate(hashes):
            if not content_hash:
                docs_done += 1
                passages += int(counts[row])
            elif content_hash not in embedded:  # two actors may embed the same text: keep one
                embedded.add(content_hash)
                pending[content_hash] = vectors[row].copy()
        if len(pending) >= EMBED_SLICE:  # cache slice by slice, like the local path: an interrupted run resumes
            cache.put_many(key, pending)
            pending = {}
        bar.update(docs_done, passages, len(embedded))
    if pending:
        cache.put_many(key, pending)
    _stop_if(interrupted)  # after the last batch: what arrived is cached (a rerun resumes), nothing publishes
    bar.finish(passages, len(embedded))
    seconds["embed"] = time.perf_counter() - t0
    return passages, len(embedded)


def credit_ray_embeddings(report: BuildReport, fill: RayFillReport) -> None:
    """The build report as the local path would have written it: the passages the workers embedded for this build
    were found in the cache by ``apply_changes``, but they were embedded by this build, not reused."""
    moved = min(fill.embedded, report.passages_from_cache)
    report.passages_embedded += moved
    report.passages_from_cache -= moved
    report.seconds["ray"] = fill.seconds.get("total", 0.0)
    report.seconds["total"] = report.seconds.get("total", 0.0) + fill.seconds.get("total", 0.0)


def resolve_address(flag: str | None, setting: str) -> str | None:
    """The Ray address to use, or None for the local path: ``--ray ADDRESS`` wins, a bare ``--ray`` takes the
    setting or else a local Ray, and without the flag the setting decides (empty: the local path)."""
    if flag is None:
        return parse_address(setting) if setting.strip() else None
    if flag == "":
        return parse_address(setting) if setting.strip() else LOCAL
    return parse_address(flag)


def progress_stream(enabled: bool) -> TextIO | None:
    return sys.stderr if enabled else None
