"""Milvus as the store of ``citesearch index --ray``: the version's rows go into Milvus from a pool of Ray actors.

The driver has built the local version (``apply_changes``, after the embedding job of ``indexer.ray_indexing``), so
it knows every document-level fact a row needs (document key, duplicate cluster, part ids, published dates, which
need the whole corpus): ``index_store.milvus_store.publish_version`` computes the rows, creates the version's
collections without an alias, and hands the insert to the sink made here. The sink cuts the rows into batches and
runs one Ray Data job over them: ``MilvusWriter`` actors (``ActorPoolStrategy``, one pymilvus client each, built
from a picklable ``PendingVersion``) insert their batches in parallel. Only when every batch is in does the driver
write the meta row and switch the alias, so the publish stays atomic: a failed actor, a lost cluster or Ctrl-C
drops the new collections and the served version stays served (a driver killed outright leaves them unaliased,
and the next publish drops them).

Milvus Lite (a ``.db`` path) is opened by one process only, so its rows stay with the driver (``milvus_writers``).

Ray itself is imported by ``indexer.ray_indexing`` only; this module gets the ``ray`` module from its session.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from indexer.ray_indexing import PROGRESS_EVERY_S, RayIndexingError, _duration, _is_ray_error, _one_line

if TYPE_CHECKING:
    from index_store.milvus_store import ExportedRows, MilvusConfig, PendingVersion, RowSink, WriteReport

RAY_WRITERS = "ray"
DRIVER = "driver"
LITE_DRIVER = "driver (Milvus Lite is single-process)"
IN_FLIGHT_PER_ACTOR = 2  # one batch inserting, the next one already on the actor


def milvus_writers(config: MilvusConfig, *, on_ray: bool) -> str:
    """Who writes the rows: Ray actors for a Milvus server when indexing on Ray, else the driver (Milvus Lite can be
    opened by one process only, so no worker can write into it)."""
    if not on_ray:
        return DRIVER
    return LITE_DRIVER if config.is_lite else RAY_WRITERS


@dataclass(frozen=True, slots=True)
class RowBatch:
    """One actor call's work: rows of one kind, pickled (Ray Data then moves bytes, not nested dicts)."""

    kind: str
    rows: int
    payload: bytes


def row_batches(rows: ExportedRows, size: int) -> list[RowBatch]:
    """The rows of every kind in batches of ``size`` (the last of a kind smaller); passages first, the largest."""
    from index_store.milvus_store import ROW_KINDS

    if size < 1:
        raise ValueError(f"a Milvus write batch holds at least one row, got {size}")
    out: list[RowBatch] = []
    for kind in ROW_KINDS:
        kind_rows: Sequence[dict[str, Any]] = getattr(rows, kind)
        for start in range(0, len(kind_rows), size):
            chunk = list(kind_rows[start : start + size])
            out.append(RowBatch(kind, len(chunk), pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)))
    return out


class MilvusWriter:
    """Ray Data actor: one pymilvus client on the pending version; a batch of pickled row lists in, and out, per
    list, its kind, its row count and this actor's name (host:pid), so the driver can say who wrote what.

    Milvus refusing a batch comes back as data (``error``), not as an exception: Ray hands the driver an actor's
    exception only as a wrapped traceback, and the driver should stop with Milvus's own one-line reason."""

    def __init__(self, pending: PendingVersion) -> None:
        from index_store.milvus_store import RowWriter

        self._writer = RowWriter(pending)
        self._name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from index_store.milvus_store import MilvusStoreError

        kinds = [str(kind) for kind in batch["kind"]]
        counts, errors = [], []
        for kind, blob in zip(kinds, batch["payload"], strict=True):
            try:
                counts.append(self._writer.write(kind, pickle.loads(blob)))
                errors.append("")
            except MilvusStoreError as exc:
                counts.append(0)
                errors.append(" ".join(str(exc).split())[:500])
        return {"kind": kinds, "rows": counts, "writer": [self._name] * len(kinds), "error": errors}


class _WriteProgress:
    """One line to stderr every few seconds: rows written of the total, by how many actors, the rate, the ETA."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self._stream, self._total = stream, total
        self._started = self._last = time.perf_counter()

    def update(self, done: int, actors: int) -> None:
        now = time.perf_counter()
        if self._stream is None or now - self._last < PROGRESS_EVERY_S or done >= self._total:
            return
        self._last = now
        rate = done / (now - self._started)
        eta = f", ETA {_duration((self._total - done) / rate)}" if rate > 0 else ""
        print(
            f"milvus: {done:,}/{self._total:,} rows written by {actors} actors ({rate:,.1f} rows/s){eta}",
            file=self._stream,
            flush=True,
        )

    def finish(self, done: int, actors: int) -> None:
        if self._stream is None:
            return
        elapsed = time.perf_counter() - self._started
        print(
            f"milvus: {done:,} rows written by {actors} actors in {_duration(elapsed)} "
            f"({done / max(elapsed, 1e-9):,.1f} rows/s); switching the alias",
            file=self._stream,
            flush=True,
        )


def write_on_ray(
    ray: Any,
    pending: PendingVersion,
    rows: ExportedRows,
    batch: int,
    *,
    workers: int,
    local: bool,
    progress: TextIO | None = None,
) -> WriteReport:
    """Insert ``rows`` into the pending version from ``workers`` Ray actors; raises RayIndexingError (one line) when
    the job fails, after which the caller drops the version."""
    from index_store.milvus_store import ROW_KINDS, WriteReport

    started = time.perf_counter()
    batches = row_batches(rows, batch)
    totals = dict.fromkeys(ROW_KINDS, 0)
    per_writer: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ROW_KINDS, 0))
    pool = 0
    if batches:
        items = [{"kind": b.kind, "payload": b.payload} for b in batches]
        pool = max(1, min(workers, len(items)))  # no actor without a batch to write
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), pool * 32)))
        resources: dict[str, Any] = {"num_cpus": 1}
        if local:
            resources["max_restarts"] = 0  # one machine: a dead actor is a bug, not a lost node (ray_indexing too)
        bar = _WriteProgress(progress, sum(b.rows for b in batches))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # max_restarts as a remote argument, as there
                written = dataset.map_batches(
                    MilvusWriter,
                    fn_constructor_kwargs={"pending": pending},
                    batch_size=1,
                    batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR),
                    **resources,
                )
            done = 0
            for out in written.iter_batches(batch_size=None, batch_format="numpy"):
                refused = [str(e) for e in out["error"] if e]
                if refused:  # the first refusal ends the job; the caller drops the version
                    raise RayIndexingError(
                        f"writing the rows to Milvus on Ray failed, nothing was published: {refused[0]}"
                    )
                for kind, count, writer in zip(out["kind"], out["rows"], out["writer"], strict=True):
                    totals[str(kind)] += int(count)
                    per_writer[str(writer)][str(kind)] += int(count)
                    done += int(count)
                bar.update(done, len(per_writer))
        except RayIndexingError:
            raise
        except Exception as exc:
            if _is_ray_error(ray, exc):
                raise RayIndexingError(
                    f"writing the rows to Milvus on Ray failed, nothing was published: {_one_line(exc)}"
                ) from exc
            raise
        bar.finish(done, len(per_writer))
    return WriteReport(RAY_WRITERS, totals, dict(per_writer), time.perf_counter() - started, pool)


def ray_sink(ray: Any, *, workers: int, local: bool, progress: TextIO | None = None) -> RowSink:
    """The ``publish_version`` sink that writes from Ray actors."""

    def sink(pending: PendingVersion, rows: ExportedRows, batch: int) -> WriteReport:
        return write_on_ray(ray, pending, rows, batch, workers=workers, local=local, progress=progress)

    return sink
