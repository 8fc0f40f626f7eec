"""The Milvus store (index_store/milvus_store.py) on Milvus Lite: the same searches as the local store, exact
citations, filters in Milvus, writes straight to Milvus, and two `citesearch serve` processes on one Milvus.

Milvus Lite runs in-process (a path ending in .db) or as a gRPC server (`milvus-lite server`) that several
processes share. Tests skip when the optional extra is not installed (pip install citesearch[milvus]).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs pip install citesearch[milvus]")
pytest.importorskip("milvus_lite", reason="Milvus Lite needs pip install citesearch[milvus]")

from pymilvus import MilvusClient

from citesearch.fusion import FusionSettings
from citesearch.search import InvalidSearchRequest, Searcher, SearchRequest
from citesearch.settings import Settings
from citesearch.store import LocalStore, SearchFilter
from eval.milvus_server import milvus_lite_server
from index_store import milvus_store, open_index
from index_store.milvus_store import (
    ROW_KINDS,
    ExportedRows,
    MilvusConfig,
    MilvusStore,
    MilvusStoreError,
    PendingVersion,
    ServerInfo,
    WriteReport,
    current_stamp,
    insert_rows,
    publish_from_reader,
    publish_version,
)
from tests.servicekit import start_server_process

QUERIES = [
    "what conditions did Aliyev set?",
    "When did Mirzoyan and Lavrov hold talks in Yerevan?",
    "What did readers say about Russia?",
    "Crossroads of Peace initiative",
]


@pytest.fixture(scope="module")
def milvus_seed(seed_index: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, MilvusStore]]:
    """The seed index copied into a Milvus Lite database (module-wide: publishing takes seconds)."""
    config = MilvusConfig(uri=str(tmp_path_factory.mktemp("milvus") / "seeds.db"))
    with open_index(seed_index[0]) as reader:
        publish_from_reader(reader, config)
        store = MilvusStore(config)
        yield reader, store
        store.close()


def _spans(hits: list[Any]) -> list[tuple[str, int, int]]:
    return [(h.citation.doc_id, h.citation.char_start, h.citation.char_end) for h in hits]


def _by_score(hits: list[Any]) -> list[tuple[float, tuple[str, int, int]]]:
    """Hits as (score to 4 places, span), sorted: a ranking whose ties may come in any order."""
    return sorted(zip((round(h.score, 4) for h in hits), _spans(hits), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "rerank_depth"), [("dense", 0), ("bm25", 0), ("hybrid", 0), ("hybrid", 4)])
def test_milvus_ranks_as_the_local_store(milvus_seed: Any, real_embedder: Any, mode: str, rerank_depth: int) -> None:
    """Same passages, same order, same scores: dense is exact (FLAT), BM25 is Milvus's own function over the
    local analyser's terms, scaled to the Lucene form the local index scores; the late-interaction rerank reads the
    same rows from either store."""
    reader, store = milvus_seed
    fusion = FusionSettings(profile="auto", rerank_depth=rerank_depth) if rerank_depth else None  # None: recorded
    local, milvus = Searcher(reader, real_embedder, fusion), Searcher(store, real_embedder, fusion)
    # The "auto" fusion profile resolves from each store's own counts, to the same weights (the seeds are long).
    assert local.fusion == milvus.fusion and local.fusion.chosen == "long"
    for query in QUERIES:
        a = local.search(SearchRequest(query, k=5, mode=mode, explain=True))  # type: ignore[arg-type]
        b = milvus.search(SearchRequest(query, k=5, mode=mode, explain=True))  # type: ignore[arg-type]
        assert b.hits, query
        assert _spans(a.hits) == _spans(b.hits), (query, mode)
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-4, atol=1e-5)
        for x, y in zip(a.hits, b.hits, strict=True):
            assert x.explain is not None and y.explain is not None
            assert y.explain.bm25_score == pytest.approx(x.explain.bm25_score, rel=1e-4, abs=1e-5)
            assert y.explain.context_score == pytest.approx(x.explain.context_score, rel=1e-4, abs=1e-5)
            assert (x.explain.late_interaction_score is None) == (y.explain.late_interaction_score is None)
            if rerank_depth:
                assert y.explain.late_interaction_score == pytest.approx(x.explain.late_interaction_score, abs=1e-5)
        if rerank_depth:
            assert a.hits[0].explain is not None and a.hits[0].explain.late_interaction_score is not None
        assert b.index_version == store.version != a.index_version


@pytest.mark.slow
def test_milvus_citations_are_exact_and_filters_run_in_milvus(milvus_seed: Any, real_embedder: Any) -> None:
    reader, store = milvus_seed
    searcher = Searcher(store, real_embedder)
    for query in QUERIES:
        for hit in searcher.search(SearchRequest(query, k=10)).hits:
            document = store.document(hit.citation.doc_id)
            assert document is not None
            assert document.text[hit.citation.char_start : hit.citation.char_end] == hit.text
            assert document == reader.document(hit.citation.doc_id)  # the chunked JSON reassembles exactly
    comments = searcher.search(SearchRequest("Russia Armenia", k=10, section="comment"))
    assert comments.hits and all(h.citation.section == "comment" for h in comments.hits)
    assert store.resolve(SearchFilter(section="comment")).expression == 'section == "comment"'
    doc_id = comments.hits[0].citation.doc_id
    only = searcher.search(SearchRequest("Russia", k=10, doc_id=doc_id, mode="bm25"))
    assert only.hits and {h.citation.doc_id for h in only.hits} == {doc_id}
    assert store.document('no"such') is None  # quotes in an id are escaped, not an expression error
    local_keys = LocalStore(reader).document_keys(np.array([0, 1, 10**9]))
    milvus_keys = store.document_keys(np.array([0, 1, 10**9]))
    assert (local_keys[:2] >= 0).all() and milvus_keys[2] == -1 == local_keys[2]
    assert (milvus_keys[0] == milvus_keys[1]) == (local_keys[0] == local_keys[1])


def test_server_versions_before_2_5_have_no_bm25() -> None:
    assert not ServerInfo("v2.3.5-lite", False).is_lite and ServerInfo("v2.3.5-lite", False).release == (2, 3)
    assert not ServerInfo("v2.3.5-lite", False).has_inverted_index and ServerInfo("v2.5.4", True).has_inverted_index
    assert ServerInfo("milvus_lite-3.2.2", True).is_lite
    with pytest.raises(ValueError, match="consistency"):
        MilvusConfig(uri="x.db", consistency="Sometimes")
    with pytest.raises(ValueError, match="prefix"):
        MilvusConfig(uri="x.db", prefix="bad-prefix")
    assert MilvusConfig(uri="/tmp/x.db").is_lite and not MilvusConfig(uri="http://127.0.0.1:19530").is_lite


@pytest.mark.slow
def test_a_store_without_bm25_refuses_keyword_modes_clearly(milvus_seed: Any, real_embedder: Any) -> None:
    """What a Milvus 2.3.5 server gets: dense works, bm25 and hybrid are refused naming the version."""
    _, store = milvus_seed
    old = MilvusStore(store.config)
    old.server, old.bm25 = ServerInfo("v2.3.5", False), False
    searcher = Searcher(old, real_embedder)
    assert searcher.search(SearchRequest("Aliyev", k=3, mode="dense")).hits
    with pytest.raises(InvalidSearchRequest, match=r"Milvus v2\.3\.5 .* no BM25 function .*mode 'dense'"):
        searcher.search(SearchRequest("Aliyev", k=3, mode="hybrid"))
    old.close()


def _api_settings(tmp_path: Path, uri: str) -> Settings:
    return Settings(
        store="milvus",
        milvus_uri=uri,
        index_dir=tmp_path / "unused",
        rate_limit_per_minute=0,
        api_keys="w:write:secret-write-key",
        _env_file=None,
    )


@pytest.mark.slow
def test_api_on_milvus_serves_searches_documents_and_writes(
    seed_index: Any, real_embedder: Any, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    uri = str(tmp_path / "api.db")
    config = MilvusConfig(uri=uri)
    with open_index(seed_index[0]) as reader:
        publish_from_reader(reader, config)
    stamp = current_stamp(config)
    app = create_app(_api_settings(tmp_path, uri), embedder=real_embedder)
    auth = {"X-API-Key": "secret-write-key"}
    with TestClient(app) as client:
        ready = client.get("/ready").json()
        assert ready["index_version"] == stamp == ready["published_version"]
        found = client.get("/search", params={"q": "what conditions did Aliyev set?", "k": 3}).json()
        assert found["index_version"] == stamp and found["results"]
        for item in found["results"]:
            citation = item["citation"]
            document = client.get(f"/documents/{citation['doc_id']}").json()
            assert document["text"][citation["char_start"] : citation["char_end"]] == item["text"]
        answer = client.post("/ask", json={"question": "what conditions did Aliyev set?"}).json()
        assert answer["answer"]
        for quote in answer["citations"]:
            text = client.get(f"/documents/{quote['doc_id']}").json()["text"]
            assert text[quote["char_start"] : quote["char_end"]] == quote["quote"]
        record = {
            "id": "posted-1",
            "title": "Quokka census",
            "text": "Rangers counted 12,000 quokkas on Rottnest Island this spring, more than ever before.",
            "metadata": {"published": "2031-05-02"},
        }
        accepted = client.post("/documents", json=record, headers=auth)
        assert accepted.status_code == 202 and accepted.json()["seq"] == []
        # Words only the posted document holds: Milvus Lite scores a just-inserted row's BM25 far below what bm25s
        # gives it (0.35 against 4.7 for "how many quokkas on Rottnest", where "many" alone in a seed scored 1.55),
        # so a query sharing a common word with the seeds ranks by that word on the long-document profile.
        hits = client.get("/search", params={"q": "quokkas on Rottnest Island", "k": 3}).json()["results"]
        assert hits[0]["citation"]["doc_id"] == "posted-1"
        assert hits[0]["citation"]["published"] == "2031-05-02"
        dated = client.get("/search", params={"q": "quokkas", "published_after": "2031-01-01"}).json()["results"]
        assert [h["citation"]["doc_id"] for h in dated] == ["posted-1"]  # the seeds are older or undated
        stored = client.get("/documents/posted-1").json()
        assert stored["text"] == record["text"]
        assert client.delete("/documents/posted-1", headers=auth).status_code == 202
        assert client.get("/documents/posted-1").status_code == 404
        assert client.delete("/documents/posted-1", headers=auth).status_code == 404
        after = client.get("/search", params={"q": "how many quokkas on Rottnest", "k": 3}).json()["results"]
        assert all(h["citation"]["doc_id"] != "posted-1" for h in after)
        assert client.get("/updates").status_code == 503  # no journal: writes go straight to Milvus


@pytest.fixture
def lite_server(tmp_path: Path) -> Iterator[str]:
    """`milvus-lite server` on a loopback port with a fresh data folder, stopped by its PID."""
    with milvus_lite_server(tmp_path / "milvus-lite") as server:
        yield server.uri


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_serve_processes_on_one_milvus_see_each_others_writes(
    seed_index: Any, tmp_path: Path, lite_server: str
) -> None:
    """Replicas hold no index state: a document posted to one is found through the other, a delete on the other
    is gone from the first."""
    config = MilvusConfig(uri=lite_server)
    with open_index(seed_index[0]) as reader:
        publish_from_reader(reader, config)
    env = {
        "CITESEARCH_STORE": "milvus",
        "CITESEARCH_MILVUS_URI": lite_server,
        "CITESEARCH_INDEX_DIR": str(tmp_path / "unused"),
        "CITESEARCH_API_KEYS": "w:write:secret-write-key",
        "CITESEARCH_RATE_LIMIT_PER_MINUTE": "0",
        "CITESEARCH_SENTENCE_WARMUP": "false",
    }

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "citesearch.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]

    first, base_a = start_server_process(command, tmp_path / "a.log", env=env, timeout=180)
    try:
        second, base_b = start_server_process(command, tmp_path / "b.log", env=env, timeout=180)
        try:
            auth = {"X-API-Key": "secret-write-key"}
            record = {"id": "replica-doc", "title": "Axolotl", "text": "The axolotl regrows its limbs and heart."}
            with httpx.Client(timeout=60) as http:
                version = http.get(f"{base_a}/ready").json()["index_version"]
                assert http.get(f"{base_b}/ready").json()["index_version"] == version
                assert http.post(f"{base_a}/documents", json=record, headers=auth).status_code == 202
                found = http.get(f"{base_b}/search", params={"q": "which animal regrows its heart", "k": 1}).json()
                assert found["results"][0]["citation"]["doc_id"] == "replica-doc"
                assert http.get(f"{base_b}/documents/replica-doc").json()["text"] == record["text"]
                assert http.delete(f"{base_b}/documents/replica-doc", headers=auth).status_code == 202
                assert http.get(f"{base_a}/documents/replica-doc").status_code == 404
        finally:
            second.terminate()
            second.wait(30)
    finally:
        first.terminate()
        first.wait(30)


@pytest.mark.subprocess
@pytest.mark.slow
def test_dense_search_on_a_real_milvus_2_3_server(seed_index: Any, real_embedder: Any, tmp_path: Path) -> None:
    """The dense path against the Standalone server of the PyPI package milvus 2.3.5 (fresh data folder, bound
    to 127.0.0.1, stopped by its process group): the same passages as the local store; BM25 and hybrid, which
    need Milvus 2.5, are refused naming the server's version."""
    from eval.milvus_server import MilvusServerUnavailable, milvus_server_executable, milvus_standalone

    if milvus_server_executable() is None:
        pytest.skip("the Milvus 2.3.5 server package is not installed (scripts/install.sh installs it)")
    try:
        server_context = milvus_standalone(tmp_path / "milvus-2.3", timeout=150)
        server = server_context.__enter__()
    except MilvusServerUnavailable as exc:
        pytest.skip(f"the Milvus 2.3.5 server cannot start on this machine: {exc}")
    try:
        config = MilvusConfig(uri=server.uri)
        with open_index(seed_index[0]) as reader:
            publish_from_reader(reader, config)
            store = MilvusStore(config)
            try:
                assert store.server.release == (2, 3) and not store.has_keyword
                local, remote = Searcher(reader, real_embedder), Searcher(store, real_embedder)
                for query in QUERIES:
                    a = local.search(SearchRequest(query, k=5, mode="dense"))
                    b = remote.search(SearchRequest(query, k=5, mode="dense"))
                    assert _spans(a.hits) == _spans(b.hits), query
                    for hit in b.hits:
                        document = store.document(hit.citation.doc_id)
                        assert document is not None
                        assert document.text[hit.citation.char_start : hit.citation.char_end] == hit.text
                comments = remote.search(SearchRequest("Russia", k=5, mode="dense", section="comment"))
                assert comments.hits and all(h.citation.section == "comment" for h in comments.hits)
                with pytest.raises(InvalidSearchRequest, match=r"2\.3\.5.*needs Milvus 2\.5"):
                    remote.search(SearchRequest("Aliyev", k=3))  # hybrid, the default
            finally:
                store.close()
    finally:
        server_context.__exit__(None, None, None)


@pytest.mark.slow
def test_a_segmented_index_with_updates_and_deletes_exports_only_what_is_live(tmp_path: Path) -> None:
    """A local index of several segments, one document replaced and one deleted, copied into Milvus: Milvus holds
    the live passages, parts and documents only, and ranks as the local store does (positions and part ordinals
    of a segmented reader are not enumeration order)."""
    from indexer.live_updates import document_from_record
    from indexer.pipeline import BuildOptions, apply_changes
    from tests.fakes import HashingEmbedder
    from tests.store_files import segment_names

    embedder = HashingEmbedder()
    index_dir = tmp_path / "index"
    words = "river glacier volcano harbour orchard meadow canyon lagoon tundra delta".split()
    texts = {  # no two alike, so no ties whose order could differ
        f"d{i}": f"Report {i} on the {words[i]} and the {words[(i * 3) % 10]}. The ferry left at dawn"
        + " again" * i
        + ". Readers asked about tolls"
        + " and fares" * (5 - i)
        + "."
        for i in range(6)
    }
    for doc_id, text in texts.items():  # one write per document: one segment each
        record = {"id": doc_id, "title": f"Story {doc_id}", "text": text}
        apply_changes(index_dir, embedder, upserts=[document_from_record(record)], options=BuildOptions())
    replaced = {"id": "d2", "title": "Story d2", "text": "The toll bridge opened. Ferries stopped running."}
    apply_changes(index_dir, embedder, upserts=[document_from_record(replaced)], deletes=["d4"], options=BuildOptions())
    assert len(segment_names(index_dir)) > 1
    config = MilvusConfig(uri=str(tmp_path / "segmented.db"))
    with open_index(index_dir) as reader:
        publish_from_reader(reader, config)
        store = MilvusStore(config)
        try:
            assert store.document("d4") is None
            d2 = store.document("d2")
            assert d2 is not None and d2.text == replaced["text"]
            local, milvus = Searcher(reader, embedder), Searcher(store, embedder)
            for query in ("ferry at dawn", "toll bridge opened", "readers asked about tolls"):
                for mode in ("dense", "bm25", "hybrid"):
                    a = local.search(SearchRequest(query, k=10, mode=mode))
                    b = milvus.search(SearchRequest(query, k=10, mode=mode))
                    # the same hits with the same scores; equal scores may come in either order
                    assert _by_score(a.hits) == _by_score(b.hits), (query, mode)
                    assert all(h.citation.doc_id != "d4" for h in b.hits)
                    np.testing.assert_allclose(
                        [h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-4, atol=1e-5
                    )
        finally:
            store.close()


# -- the split publish (create, insert, switch) with a recording fake client -----------------------------------------
class _RecordingClient:
    """The pymilvus calls a publish makes, recorded in order; collections and the alias kept as plain data."""

    create_schema = MilvusClient.create_schema
    prepare_index_params = MilvusClient.prepare_index_params

    def __init__(self, collections: set[str], alias: dict[str, str]) -> None:
        self.collections, self.alias = collections, alias
        self.calls: list[tuple[str, str]] = []
        self.rows: dict[str, int] = {}

    def get_server_version(self) -> str:
        return "milvus_lite-3.2.2"

    def create_collection(self, name: str, **_: Any) -> None:
        self.calls.append(("create", name))
        self.collections.add(name)

    def insert(self, name: str, rows: list[dict[str, Any]]) -> None:
        assert name in self.collections, name
        self.calls.append(("insert", name))
        self.rows[name] = self.rows.get(name, 0) + len(rows)

    def flush(self, name: str) -> None:
        self.calls.append(("flush", name))

    def list_aliases(self) -> dict[str, list[str]]:
        return {"aliases": list(self.alias)}

    def describe_alias(self, alias: str) -> dict[str, str]:
        return {"collection_name": self.alias[alias]}

    def create_alias(self, name: str, alias: str) -> None:
        self.calls.append(("alias", name))
        self.alias[alias] = name

    alter_alias = create_alias

    def list_collections(self) -> list[str]:
        return sorted(self.collections)

    def has_collection(self, name: str) -> bool:
        return name in self.collections

    def drop_collection(self, name: str) -> None:
        self.calls.append(("drop", name))
        self.collections.discard(name)

    def close(self) -> None:
        pass


def _version(stamp: str) -> set[str]:
    return {f"citesearch_{stamp}_{kind}" for kind in ROW_KINDS}


OLD, SERVED, ORPHAN, NEWER = (
    "v20260101T000000000001",
    "v20260102T000000000001",
    "v20260103T000000000001",
    "v29990101T000000000001",
)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> _RecordingClient:
    """A Milvus holding an old version, the served one, one a killed run left unaliased, and a newer one another
    build is still writing."""
    client = _RecordingClient(
        _version(OLD) | _version(SERVED) | _version(ORPHAN) | _version(NEWER),
        {"citesearch_current": f"citesearch_{SERVED}_documents"},
    )
    monkeypatch.setattr(milvus_store, "connect", lambda config: client)
    return client


def test_the_alias_switches_after_every_row_and_the_meta_row(recording: _RecordingClient, fake_index: Path) -> None:
    config = MilvusConfig(uri="http://127.0.0.1:1")
    with open_index(fake_index) as reader:
        published = publish_version(reader, config, batch=7)
    new = f"citesearch_{published.stamp}_documents"
    assert recording.alias["citesearch_current"] == new
    alias_at = recording.calls.index(("alias", new))
    inserts = [i for i, call in enumerate(recording.calls) if call[0] == "insert"]
    assert inserts and max(inserts) < alias_at  # nothing is written into a served version
    assert {("flush", name) for name in _version(published.stamp)} <= set(recording.calls[max(inserts) : alias_at])
    with open_index(fake_index) as reader:
        passages = len(list(reader.iter_passages()))
    assert recording.rows[f"citesearch_{published.stamp}_passages"] == passages == published.write.rows["passages"]
    assert published.write.writers == "driver" and published.write.per_writer == {"driver": published.write.rows}
    assert recording.rows[new] == published.write.rows["documents"] + 1  # the meta row, by the driver
    # The previous version stays for replicas still switching; the older one and the orphan go; a newer build's stay.
    assert recording.collections == _version(SERVED) | _version(published.stamp) | _version(NEWER)


@pytest.mark.parametrize("failure", [MilvusStoreError("insert refused"), KeyboardInterrupt()])
def test_a_failed_insert_publishes_nothing_and_drops_the_new_version(
    recording: _RecordingClient, fake_index: Path, failure: BaseException
) -> None:
    config = MilvusConfig(uri="http://127.0.0.1:1")
    seen: list[PendingVersion] = []

    def failing(pending: PendingVersion, rows: ExportedRows, batch: int) -> WriteReport:
        seen.append(pending)
        insert_rows(recording, pending, "passages", rows.passages[:3])  # part of the rows are in when it fails
        raise failure

    with open_index(fake_index) as reader, pytest.raises(type(failure)):
        publish_version(reader, config, sink=failing)
    assert not any(call[0] == "alias" for call in recording.calls)
    assert recording.alias["citesearch_current"] == f"citesearch_{SERVED}_documents"
    assert not _version(seen[0].stamp) & recording.collections  # dropped, not left half-written
    assert _version(ORPHAN) <= recording.collections  # nothing published: no pruning either


def test_pending_versions_travel_to_writers_and_name_only_their_collections() -> None:
    pending = PendingVersion(MilvusConfig(uri="http://h:19530", prefix="cs"), "v20260101T000000000001", True)
    again = pickle.loads(pickle.dumps(pending))
    assert again == pending and again.collection("parts") == "cs_v20260101T000000000001_parts"
    with pytest.raises(ValueError, match="unknown Milvus row kind"):
        pending.collection("meta")
