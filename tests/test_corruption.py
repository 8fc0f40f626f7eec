"""Nothing acknowledged is lost after corruption: real index files (SQLite, FAISS, bm25s) with one bit flipped.

A derived file (BM25, its context index, the vectors) that fails its checksum is rebuilt from the intact store and
the embedding cache; a version whose documents cannot be trusted stops a writer with one line naming
``citesearch check --repair``; pruning keeps what the new version does not hold; ``check --repair`` publishes an
intact version. The fast cases use the HashingEmbedder (real files, real libraries); one case runs the real model
through the CLI.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from citesearch.cli import main
from index_store import IndexCorruptError, current_version, list_versions, open_index
from indexer.live_updates import document_from_record
from indexer.pipeline import BuildOptions, apply_changes, build_index
from tests.conftest import SEEDS
from tests.fakes import HashingEmbedder
from tests.servicekit import wait_for
from tests.store_files import segment_names, segment_path
from tests.updates_server import KEY, updates_app

DOCS = 24


def _corpus(folder: Path, count: int = DOCS, prefix: str = "doc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            text = f"Report {i} about {prefix} river number {i}: the water level rose by {i} centimetres overnight."
            handle.write(json.dumps({"_id": f"{prefix}-{i}", "title": f"{prefix} {i}", "text": text}) + "\n")
    return path


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if at is None else at
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def _version_dir(index_dir: Path, version: str | None = None) -> Path:
    return index_dir / "versions" / (version or current_version(index_dir) or "")


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    index_dir = tmp_path / "index"
    build_index([SEEDS, _corpus(tmp_path / "corpus")], index_dir, HashingEmbedder())
    return index_dir


def _add(index_dir: Path, doc_id: str, **options: object) -> str:
    record = {"id": doc_id, "title": doc_id, "text": f"A new note called {doc_id} on glaciers calving into lakes."}
    report = apply_changes(
        index_dir,
        HashingEmbedder(),
        upserts=[document_from_record(record)],
        options=BuildOptions(**options),  # type: ignore[arg-type]
    )
    return report.version


DERIVED = ["bm25/passages/tf.npy", "bm25/parts/tf.npy", "bm25/passages/terms.json", "vectors.f32.npy", "part_means.npy"]


@pytest.mark.parametrize("damaged", DERIVED)
def test_a_flipped_bit_in_a_derived_file_then_an_add_keeps_every_document(index_dir: Path, damaged: str) -> None:
    with open_index(index_dir) as reader:
        old_ids = set(reader.document_ids())
    assert len(old_ids) == DOCS + 2
    _flip(segment_path(index_dir) / damaged)
    new_version = _add(index_dir, "glacier-note")
    with open_index(index_dir, fallback=False) as reader:  # every checksum holds on the new version
        assert reader.version == new_version
        assert set(reader.document_ids()) == old_ids | {"glacier-note"}
        assert len(reader.vectors) == reader.manifest.counts["passages"]
        assert reader.keyword is not None and len(reader.keyword) == reader.manifest.counts["passages"]
    assert len(list_versions(index_dir)) == 2  # the damaged one is kept too (keep 3), nothing pruned


@pytest.mark.parametrize("damaged", DERIVED)
def test_a_flipped_bit_in_a_derived_file_is_rebuilt_in_memory_not_a_fallback(index_dir: Path, damaged: str) -> None:
    with open_index(index_dir) as reader:
        old_ids, old_version = set(reader.document_ids()), reader.version
    _flip(segment_path(index_dir) / damaged)
    with open_index(index_dir) as reader:  # served as it is, the damaged file rebuilt from the store and cache
        assert reader.version == old_version
        assert set(reader.document_ids()) == old_ids
        assert len(reader.vectors) == reader.manifest.counts["passages"]
        assert reader.rebuilt is not None and damaged in reader.rebuilt


@pytest.mark.parametrize("where", ["manifest", "segment"])
def test_a_flipped_checksum_in_the_manifest_is_a_rebuild_not_a_loss(index_dir: Path, where: str) -> None:
    # In the version's manifest (the checksum of segment.json) or in segment.json (that of a derived file): the
    # segment's store still matches the checksum segment.json gives it, so the segment is rebuilt from it.
    (segment,) = segment_names(index_dir)
    manifest = (
        _version_dir(index_dir) / "manifest.json" if where == "manifest" else segment_path(index_dir) / "segment.json"
    )
    data = json.loads(manifest.read_text())
    key = f"segments/{segment}/segment.json" if where == "manifest" else "bm25/passages/lengths.npy"
    digest = data["files"][key]["sha256"]
    text = manifest.read_text().replace(digest, ("0" if digest[0] != "0" else "1") + digest[1:])
    manifest.write_text(text)
    _add(index_dir, "glacier-note")
    with open_index(index_dir, fallback=False) as reader:
        assert len(reader.document_ids()) == DOCS + 3


def test_a_writer_never_starts_from_empty_when_the_only_version_is_damaged(index_dir: Path) -> None:
    only = current_version(index_dir)
    _flip(segment_path(index_dir) / "passages.sqlite")
    with pytest.raises(IndexCorruptError) as raised:
        _add(index_dir, "glacier-note")
    message = str(raised.value)
    assert only is not None
    assert "\n" not in message and only in message and "passages.sqlite" in message
    assert "re-index everything" in message
    assert list_versions(index_dir) == [only] and current_version(index_dir) == only  # nothing written, nothing pruned


def test_an_unreadable_manifest_stops_the_writer_and_repair_falls_back_naming_the_lost(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    build_index([_corpus(tmp_path / "a", 5, "alpha")], index_dir, HashingEmbedder())
    first = current_version(index_dir)
    second = _add(index_dir, "glacier-note")
    manifest = _version_dir(index_dir, second) / "manifest.json"
    _flip(manifest, at=0)  # "{" -> "z": not JSON any more

    with pytest.raises(IndexCorruptError, match="citesearch check --repair") as raised:
        _add(index_dir, "another-note")
    assert second in str(raised.value) and "\n" not in str(raised.value)
    assert current_version(index_dir) == second

    from index_store.check import check_index, repair_index

    states = {r.name: r.state for r in check_index(index_dir)}
    assert states == {first: "ok", second: "damaged"}
    repaired = repair_index(index_dir)
    assert repaired.action == "fell_back" and repaired.base == first
    assert repaired.lost_documents == ("glacier-note",)  # named: the store of the damaged version still answers
    assert repaired.version is not None and current_version(index_dir) == repaired.version
    assert repaired.version > second
    assert second in list_versions(index_dir)  # kept as evidence, never pruned
    _add(index_dir, "another-note")  # writes work again


def test_pruning_never_removes_a_passed_over_version(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    build_index([_corpus(tmp_path / "a", 3, "alpha")], index_dir, HashingEmbedder())
    second = _add(index_dir, "n1")
    _flip(segment_path(index_dir, second) / "passages.sqlite")
    for i in range(4):  # the service's mode: build on the older intact version
        _add(index_dir, f"later-{i}", on_damage="fallback")
    assert second in list_versions(index_dir)
    with open_index(index_dir, fallback=False) as reader:
        assert {"later-0", "later-3"} <= set(reader.document_ids())


def test_check_repair_rebuilds_a_damaged_derived_file_into_a_new_intact_version(index_dir: Path, capsys) -> None:
    damaged = current_version(index_dir)
    _flip(segment_path(index_dir) / "vectors.f32.npy")
    assert main(["check", "--index-dir", str(index_dir)]) == 1
    out = capsys.readouterr().out
    assert "rebuildable" in out and "vectors.f32.npy" in out and "check --repair" in out
    assert main(["check", "--repair", "--index-dir", str(index_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["repair"]["action"] == "rebuilt" and result["repair"]["base"] == damaged
    with open_index(index_dir, fallback=False) as reader:
        assert reader.version != damaged and len(reader.document_ids()) == DOCS + 2
    assert main(["check", "--index-dir", str(index_dir)]) == 0


def test_cli_index_add_on_a_real_model_index_with_a_flipped_bm25_bit_keeps_every_document(
    tmp_path: Path, seed_index, capsys
) -> None:
    """The reported break: `citesearch index --add` after one flipped bit printed "starting a fresh index"."""
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index[0], index_dir)
    with open_index(index_dir) as reader:
        old_ids = set(reader.document_ids())
    _flip(segment_path(index_dir) / "bm25/passages/tf.npy")
    new = tmp_path / "new.txt"
    new.write_text("Zebra finches learn their courtship song from their fathers.", encoding="utf-8")
    assert main(["index", str(new), "--add", "--index-dir", str(index_dir)]) == 0
    assert "fresh" not in capsys.readouterr().err
    with open_index(index_dir, fallback=False) as reader:
        assert set(reader.document_ids()) == old_ids | {"new.txt"}
        hits = reader.keyword.search("Aliyev conditions", 3) if reader.keyword else None
        assert hits is not None and len(hits.ids[0]) == 3


# -- the service: POST /documents, fallback, journal re-applied, /ready ---------------------------------------------
def _service(index_dir: Path, embedder: HashingEmbedder | None = None) -> TestClient:
    return TestClient(updates_app(index_dir, embedder or HashingEmbedder()), headers={"X-API-Key": KEY})


def _wait_published(client: TestClient, seq: int) -> dict[str, object]:
    def check() -> dict[str, object] | None:
        status = client.get(f"/updates/{seq}").json()
        return status if status["status"] == "published" else None

    return wait_for(check, timeout=40, interval=0.1, what=f"update {seq} to be published")


@pytest.mark.parametrize("damaged", ["bm25/parts/docs.npy", "vectors.f32.npy"])
def test_post_documents_after_a_flipped_bit_keeps_every_document(index_dir: Path, damaged: str) -> None:
    with open_index(index_dir) as reader:
        old_ids = set(reader.document_ids())
        damaged_version = reader.version
    _flip(segment_path(index_dir) / damaged)
    with _service(index_dir) as client:
        ready = client.get("/ready").json()
        assert ready["index_version"] == damaged_version and ready["fallback"] and damaged in ready["degraded"]
        seq = client.post("/documents", json={"id": "zebra", "text": "Zebra finches learn songs."}).json()["seq"][0]
        status = _wait_published(client, seq)
        # "published": the version this server searches holds the change. A background merge may already have
        # published a later version than the write's own, so the two need not be equal; neither is the damaged one.
        assert damaged_version not in (status["served_version"], status["index_version"])
        assert str(status["served_version"]) >= str(status["index_version"])
        assert client.get("/ready").json()["fallback"] is False
        for doc_id in sorted(old_ids)[:5]:
            assert client.get(f"/documents/{doc_id}").status_code == 200
    with open_index(index_dir, fallback=False) as reader:
        assert set(reader.document_ids()) == old_ids | {"zebra"}


def test_a_change_only_a_lost_version_held_is_applied_again_never_claimed_published(index_dir: Path) -> None:
    with _service(index_dir) as client:
        seq = client.post("/documents", json={"id": "zebra", "text": "Zebra finches learn songs."}).json()["seq"][0]
        lost_version = _wait_published(client, seq)["index_version"]
    assert isinstance(lost_version, str)
    # Its documents cannot be trusted any more — nor those of any segment holding the change (a background merge
    # may have copied it into a merged segment of a later version).
    for store in sorted(index_dir.glob("segments/*/passages.sqlite")):
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            holds = db.execute("SELECT 1 FROM documents WHERE doc_id = 'zebra'").fetchone() is not None
        if holds:
            _flip(store)

    with _service(index_dir) as client:
        seen = []

        def check() -> dict[str, object] | None:
            status = client.get(f"/updates/{seq}").json()
            seen.append(status)
            # Whatever the moment, "published" is only said by a server whose searched version holds the change.
            if status["status"] == "published":
                assert status["served_version"] != lost_version
                assert client.get("/documents/zebra").status_code == 200
                return status
            return None

        status = wait_for(check, timeout=40, interval=0.05, what="the lost change to be applied again")
        assert str(status["index_version"]) > lost_version
        assert "zebra" in {hit["citation"]["doc_id"] for hit in client.get("/search?q=zebra finches").json()["results"]}
    with open_index(index_dir, fallback=False) as reader:
        assert "zebra" in set(reader.document_ids()) and len(reader.document_ids()) == DOCS + 3


def test_a_manifest_for_another_model_falls_back_and_ready_says_why(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    build_index([_corpus(tmp_path / "a", 4, "alpha")], index_dir, HashingEmbedder())
    first = current_version(index_dir)
    build_index([_corpus(tmp_path / "b", 4, "beta")], index_dir, HashingEmbedder(dim=32, name="other-model"))
    second = current_version(index_dir)
    with _service(index_dir) as client:
        response = client.get("/ready")
        assert response.status_code == 200, response.text
        ready = response.json()
        assert ready["index_version"] == first and ready["published_version"] == second and ready["fallback"]
        assert "other-model" in ready["reason"] and second in ready["reason"]
        assert client.get("/documents/alpha-0").status_code == 200


def test_a_damaged_current_version_is_served_from_the_older_one_and_ready_says_so(index_dir: Path) -> None:
    first = current_version(index_dir)
    second = _add(index_dir, "glacier-note")
    _flip(segment_path(index_dir, second) / "passages.sqlite")
    with _service(index_dir) as client:
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and ready["index_version"] == first and ready["fallback"]
        assert "passages.sqlite" in ready["reason"] and second in ready["reason"]
