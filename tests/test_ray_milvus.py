"""``citesearch index --ray`` with Milvus as the store (indexer/ray_milvus.py): the rows go into a Milvus server
from Ray actors, the driver switches the alias, a failed actor publishes nothing, and Milvus Lite stays with the
driver.

The server is `milvus-lite server` (eval/milvus_server.py): the Milvus Lite engine over gRPC, which several processes
share and which has the BM25 function, so the whole search path (dense, BM25, hybrid) runs on what the actors wrote.
The Ray tests start a local Ray (loopback, 2 workers): ``subprocess`` and ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs pip install citesearch[milvus]")
pytest.importorskip("milvus_lite", reason="Milvus Lite needs pip install citesearch[milvus]")

from pymilvus import MilvusClient

from citesearch.search import Searcher, SearchRequest
from eval.milvus_server import milvus_lite_server
from index_store.milvus_store import (
    ROW_KINDS,
    ExportedRows,
    MilvusConfig,
    MilvusStore,
    PendingVersion,
    RowWriter,
    WriteReport,
    create_version,
    current_stamp,
    publish_from_reader,
    publish_version,
    rows_from_reader,
)
from indexer.ray_indexing import RayIndexingError, RayOptions, ray_session
from indexer.ray_milvus import DRIVER, LITE_DRIVER, RAY_WRITERS, milvus_writers, ray_sink, row_batches

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (citesearch[ray])")
QUERIES = [
    "what conditions did Aliyev set?",
    "When did Mirzoyan and Lavrov hold talks in Yerevan?",
    "What did readers say about Russia?",
    "Crossroads of Peace initiative",
]
BATCH = 4  # rows per actor call: the seeds' ~40 rows make ten calls, so both actors get some


# -- no Ray needed -------------------------------------------------------------------------------------------------


def test_workers_write_only_into_a_milvus_server() -> None:
    server, lite = MilvusConfig(uri="http://127.0.0.1:19530"), MilvusConfig(uri="/tmp/x/milvus.db")
    assert milvus_writers(server, on_ray=True) == RAY_WRITERS
    assert milvus_writers(lite, on_ray=True) == LITE_DRIVER
    assert milvus_writers(server, on_ray=False) == milvus_writers(lite, on_ray=False) == DRIVER


def test_row_batches_keep_every_row_once_by_kind() -> None:
    rows = ExportedRows(
        passages=[{"id": i} for i in range(9)], parts=[{"part_id": i} for i in range(4)], documents=[], duplicates=0
    )
    batches = row_batches(rows, 4)
    assert [(b.kind, b.rows) for b in batches] == [("passages", 4), ("passages", 4), ("passages", 1), ("parts", 4)]
    unpacked = [row for b in batches if b.kind == "passages" for row in pickle.loads(b.payload)]
    assert unpacked == rows.passages
    with pytest.raises(ValueError, match="at least one row"):
        row_batches(rows, 0)


# -- a local Ray and a Milvus server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with milvus_lite_server(tmp_path_factory.mktemp("milvus-lite")) as running:
        yield running.uri


def _index(index_dir: Path, uri: str, prefix: str) -> tuple[dict[str, Any], str, int]:
    """``citesearch index seeds/ --ray`` in a subprocess: its JSON report, its stderr and its PID."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "CITESEARCH_RAY_WORKERS": "2",
        "CITESEARCH_STORE": "milvus",
        "CITESEARCH_MILVUS_URI": uri,
        "CITESEARCH_MILVUS_COLLECTION_PREFIX": prefix,
        "CITESEARCH_MILVUS_WRITE_BATCH": str(BATCH),
    }
    command = [sys.executable, "-m", "citesearch.cli", "index", str(SEEDS), "--index-dir", str(index_dir), "--json"]
    process = subprocess.Popen([*command, "--ray"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out), err, process.pid


def _spans(hits: list[Any]) -> list[tuple[str, int, int]]:
    return [(h.citation.doc_id, h.citation.char_start, h.citation.char_end) for h in hits]


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_ray_actors_write_the_version_and_it_searches_as_the_local_store(
    server: str, tmp_path: Path, seed_reader: Any, real_embedder: Any
) -> None:
    out, _, driver_pid = _index(tmp_path / "index", server, "rayw")
    write = out["milvus_write"]
    assert out["milvus_writers"] == "ray" and write["writers"] == "ray" and write["pool"] == 2
    # The actors, each its own process, wrote every row, the driver none; every row was counted once. (Both actors
    # write as a rule, but one may take every batch while the other still connects: that is Ray's scheduling.)
    per_writer = write["per_writer"]
    assert 1 <= write["actors"] == len(per_writer) <= 2
    assert all(int(name.rsplit(":", 1)[1]) != driver_pid for name in per_writer)
    assert all(sum(kinds.values()) > 0 for kinds in per_writer.values())
    for kind in ROW_KINDS:
        assert sum(kinds[kind] for kinds in per_writer.values()) == write["rows"][kind] > 0
    assert write["rows"]["passages"] == out["passages"]
    config = MilvusConfig(uri=server, prefix="rayw")
    assert current_stamp(config) == out["milvus_version"]
    store = MilvusStore(config)
    try:
        assert store.version == out["milvus_version"] and store.counts["passages"] == out["passages"]
        assert store.meta["writers"] == {"writers": "ray", "pool": 2, "actors": write["actors"], "rows": write["rows"]}
        assert store.has_keyword  # the Lite engine's BM25 function: the full search path, not dense only
        local, milvus = Searcher(seed_reader, real_embedder), Searcher(store, real_embedder)
        for query in QUERIES:
            for mode in ("dense", "hybrid"):
                a = local.search(SearchRequest(query, k=10, mode=mode))
                b = milvus.search(SearchRequest(query, k=10, mode=mode))
                assert b.hits and _spans(a.hits) == _spans(b.hits), (query, mode)
                for hit in b.hits:  # citations exact: the quote is the stored document's text at the span
                    document = store.document(hit.citation.doc_id)
                    assert document is not None and document == seed_reader.document(hit.citation.doc_id)
                    assert document.text[hit.citation.char_start : hit.citation.char_end] == hit.text
    finally:
        store.close()


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_an_actor_failing_midway_leaves_the_served_version_served(
    server: str, seed_reader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = MilvusConfig(uri=server, prefix="rayfail")
    served = publish_from_reader(seed_reader, config)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the actors import indexer.ray_milvus
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with ray_session(RayOptions(workers=2)) as (ray, workers):
        to_ray = ray_sink(ray, workers=workers, local=True)
        pending_seen: list[PendingVersion] = []

        def one_bad_row(pending: PendingVersion, rows: ExportedRows, batch: int) -> WriteReport:
            # A passage in the middle whose vector has the wrong length: Milvus refuses that actor's batch while
            # the batches before and after it are inserted by the other calls.
            pending_seen.append(pending)
            rows.passages[len(rows.passages) // 2]["vector"] = [0.5, 0.5]
            return to_ray(pending, rows, batch)

        with pytest.raises(RayIndexingError, match="nothing was published") as failed:
            publish_version(seed_reader, config, sink=one_bad_row, batch=BATCH)
    message = str(failed.value)
    assert "\n" not in message and "Traceback" not in message and "rayfail_v" in message  # names the collection
    assert current_stamp(config) == served
    assert _collections(server, "rayfail_") == _names("rayfail", served)  # the new ones were dropped
    assert pending_seen and pending_seen[0].stamp != served
    store = MilvusStore(config)
    try:
        assert store.version == served and store.counts["passages"] == len(list(seed_reader.iter_passages()))
    finally:
        store.close()
    # A driver killed outright runs no cleanup: its rows sit in collections no alias names, unseen, until the next
    # publish drops them.
    client = MilvusClient(uri=server)
    try:
        orphan = create_version(
            client, config, dim=seed_reader.manifest.model.dim, keyword=seed_reader.keyword.settings
        )
        writer = RowWriter(orphan)
        writer.write("passages", rows_from_reader(seed_reader, bm25=orphan.bm25).passages[:5])
        writer.close()
    finally:
        client.close()
    assert current_stamp(config) == served
    newest = publish_from_reader(seed_reader, config)
    assert _collections(server, "rayfail_") == _names("rayfail", served) | _names("rayfail", newest)


def _names(prefix: str, stamp: str) -> set[str]:
    return {f"{prefix}_{stamp}_{kind}" for kind in ROW_KINDS}


def _collections(uri: str, prefix: str) -> set[str]:
    client = MilvusClient(uri=uri)
    try:
        return {name for name in client.list_collections() if name.startswith(prefix)}
    finally:
        client.close()


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_a_milvus_lite_uri_keeps_the_driver_writing_and_says_so(tmp_path: Path) -> None:
    database = tmp_path / "milvus.db"
    out, err, _ = _index(tmp_path / "index", str(database), "citesearch")
    write = out["milvus_write"]
    assert out["milvus_writers"] == LITE_DRIVER == write["writers"]
    assert write["actors"] == write["pool"] == 0 and list(write["per_writer"]) == ["driver"]
    assert "is Milvus Lite, which one process alone can open: the driver writes the rows" in err
    assert out["ray"]["workers"] == 2  # the embedding still ran on Ray
    store = MilvusStore(MilvusConfig(uri=str(database)))
    try:
        assert store.version == out["milvus_version"] and store.counts["passages"] == out["passages"]
    finally:
        store.close()
