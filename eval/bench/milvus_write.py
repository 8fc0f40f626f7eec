"""``python -m eval.bench.milvus_write INDEX_DIR``: how fast a version's rows go into Milvus from N Ray actors
against the driver's one-process insert, on the same rows of a built local index, in one run.

The rows are computed once (``rows_from_reader``, what every publish computes); then, ``--rounds`` times and
alternating, the driver inserts them over one client (``insert_from_driver``, the path without Ray and with Milvus
Lite) and a local Ray's actor pool inserts them (``indexer.ray_milvus.write_on_ray``, the ``index --ray`` path),
each into a fresh unaliased version that is dropped afterwards. A Ray job of one row measures the job's fixed cost
(the actors' start, one insert), which the steady rate leaves out. The server is started here: ``milvus-lite
server`` (the default; the Lite engine over gRPC) or ``--server standalone`` (Milvus 2.3.5, eval/milvus_server.py),
both on 127.0.0.1 with a fresh data folder, or an existing one with ``--uri``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eval.milvus_server import milvus_lite_server, milvus_standalone
from index_store import open_index
from index_store.milvus_store import (
    ROW_KINDS,
    ExportedRows,
    MilvusConfig,
    ServerInfo,
    abandon,
    connect,
    create_version,
    insert_from_driver,
    rows_from_reader,
)
from indexer.ray_indexing import RayOptions, ray_session
from indexer.ray_milvus import write_on_ray


@contextlib.contextmanager
def _server(kind: str, uri: str | None) -> Iterator[str]:
    if uri:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="bench-milvus-write-") as folder:
        start = milvus_standalone if kind == "standalone" else milvus_lite_server
        with start(Path(folder) / "server", timeout=150) as running:
            yield running.uri


def run(index_dir: Path, *, server_kind: str, uri: str | None, workers: int, batch: int, rounds: int) -> dict[str, Any]:
    with open_index(index_dir) as reader, _server(server_kind, uri) as server_uri:
        config = MilvusConfig(uri=server_uri, prefix="bench_write")
        client = connect(config)
        info = ServerInfo.of(client)
        keyword = reader.keyword
        assert keyword is not None
        started = time.perf_counter()
        rows = rows_from_reader(reader, bm25=info.has_bm25)
        rows_s = time.perf_counter() - started
        total = sum(len(getattr(rows, kind)) for kind in ROW_KINDS)

        def fresh() -> Any:
            return create_version(client, config, dim=reader.manifest.model.dim, keyword=keyword.settings, server=info)

        driver: list[float] = []
        on_ray: list[float] = []
        actors: list[int] = []
        ray_started = time.perf_counter()
        with ray_session(RayOptions(workers=workers)) as (ray, pool):
            ray_start_s = time.perf_counter() - ray_started
            for _ in range(rounds):
                pending = fresh()
                try:
                    driver.append(insert_from_driver(pending, rows, batch).seconds)
                finally:
                    abandon(client, pending)
                pending = fresh()
                try:
                    report = write_on_ray(ray, pending, rows, batch, workers=pool, local=True)
                    on_ray.append(report.seconds)
                    actors.append(len(report.per_writer))
                finally:
                    abandon(client, pending)
            pending = fresh()
            try:
                one = ExportedRows(rows.passages[:1], [], [], 0)
                fixed_s = write_on_ray(ray, pending, one, batch, workers=pool, local=True).seconds
            finally:
                abandon(client, pending)
        client.close()
    best_driver, best_ray = min(driver), min(on_ray)
    steady = max(best_ray - fixed_s, 1e-9)
    return {
        "index_dir": str(index_dir),
        "server": info.version,
        "bm25": info.has_bm25,
        "rows": {kind: len(getattr(rows, kind)) for kind in ROW_KINDS},
        "rows_total": total,
        "batch": batch,
        "workers": pool,
        "actors_that_wrote": actors,
        "cores": len(os.sched_getaffinity(0)),
        "rows_from_reader_s": round(rows_s, 2),
        "ray_start_s": round(ray_start_s, 2),
        "driver_s": [round(s, 2) for s in driver],
        "ray_s": [round(s, 2) for s in on_ray],
        "ray_fixed_s": round(fixed_s, 2),
        "driver_rows_per_s": round(total / best_driver, 1),
        "ray_rows_per_s": round(total / best_ray, 1),
        "ray_steady_rows_per_s": round(total / steady, 1),
        "ratio": round(best_driver / best_ray, 3),
        "steady_ratio": round(best_driver / steady, 3),
    }


def _print(result: dict[str, Any]) -> None:
    rows = ", ".join(f"{count:,} {kind}" for kind, count in result["rows"].items())
    print(f"server {result['server']} (BM25 {'on' if result['bm25'] else 'off'}), {result['cores']} cores here")
    print(
        f"rows: {rows} ({result['rows_total']:,}), {result['batch']} per insert call; rows_from_reader "
        f"{result['rows_from_reader_s']}s; Ray start {result['ray_start_s']}s"
    )
    print(f"driver, 1 process:    {result['driver_rows_per_s']:>9,.1f} rows/s (runs {result['driver_s']} s)")
    print(
        f"Ray, {result['workers']} actors:        {result['ray_rows_per_s']:>9,.1f} rows/s (runs {result['ray_s']} s; "
        f"actors that wrote {result['actors_that_wrote']})"
    )
    print(
        f"Ray, steady:          {result['ray_steady_rows_per_s']:>9,.1f} rows/s (less the job's fixed "
        f"{result['ray_fixed_s']}s: actors' start and one insert)"
    )
    print(f"ratio Ray / driver: {result['ratio']} (steady {result['steady_ratio']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench.milvus_write", description=__doc__)
    parser.add_argument("index_dir", type=Path, help="a built local index (citesearch index)")
    parser.add_argument("--server", choices=("lite", "standalone"), default="lite", help="server to start")
    parser.add_argument("--uri", help="an existing Milvus server instead (http://host:19530)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    parser.add_argument("--batch", type=int, default=500, help="rows per insert call (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each path, alternating (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(
        args.index_dir,
        server_kind=args.server,
        uri=args.uri,
        workers=args.workers,
        batch=args.batch,
        rounds=args.rounds,
    )
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
