"""The segmented store around the segments: what a write puts on disk, merges with writes in between, leases,
the previous format's indexes, ``index --optimize``. Real files, real libraries, the hashing embedder."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from citesearch.cli import main
from citesearch.search import Searcher, SearchRequest
from index_store import (
    IndexIncompatibleError,
    IndexReader,
    ModelInfo,
    SegmentCache,
    current_version,
    list_versions,
    open_index,
)
from index_store.manifest import LEGACY_FORMAT_VERSION, Manifest, checksum_files
from index_store.merging import merge_index
from index_store.sqlite_store import PassageStore, connect
from index_store.vectors import create_vector_index, save_vector_index
from indexer.chunker import ChunkerSettings
from indexer.live_updates import document_from_record
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder
from tests.store_files import segment_names

WORDS = "river glacier volcano harbour orchard meadow canyon lagoon tundra delta".split()


def _record(i: int, extra: str = "") -> dict[str, str]:
    text = f"Report {i} on the {WORDS[i % 10]} and the {WORDS[(i * 3) % 10]} near town {i}. {extra}".strip()
    return {"id": f"doc-{i}", "title": f"Report {i}", "text": text}


def _write(index_dir: Path, records: list[dict[str, str]], deletes: tuple[str, ...] = (), **options: object) -> str:
    report = apply_changes(
        index_dir,
        HashingEmbedder(),
        upserts=[document_from_record(r) for r in records],
        deletes=deletes,
        options=BuildOptions(**options),  # type: ignore[arg-type]
    )
    return report.version


def _files(index_dir: Path) -> dict[str, int]:
    """Every file of the index but the embedding cache, the journal and the locks: name -> size."""
    skip = ("cache", "leases")
    return {
        p.relative_to(index_dir).as_posix(): p.stat().st_size
        for p in index_dir.rglob("*")
        if p.is_file() and p.relative_to(index_dir).parts[0] not in skip and not p.name.endswith(".lock")
    }


def _written(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: size for name, size in after.items() if before.get(name) != size}


def test_a_write_costs_the_change_not_the_index(tmp_path: Path) -> None:
    """One new document on an index of 10 and of 400 documents writes the same files, and about the same bytes;
    an update adds only a deletes file (bits) for the segment it takes the old passages from."""
    written = {}
    for size in (10, 400):
        index_dir = tmp_path / f"index-{size}"
        _write(index_dir, [_record(i) for i in range(size)])
        before = _files(index_dir)
        _write(index_dir, [_record(10_000, "Kelp forests shelter sea otters.")])
        written[size] = _written(before, _files(index_dir))
    small, large = written[10], written[400]
    assert len(small) == len(large) and all(not name.startswith("deletes/") for name in large)
    # the new segment and the manifest: the same files, bytes within a few percent (ids and counts differ in digits)
    assert abs(sum(large.values()) - sum(small.values())) <= 0.05 * sum(small.values())
    assert sum(large.values()) < 0.1 * sum(_files(tmp_path / "index-400").values())
    index_dir = tmp_path / "index-400"
    before = _files(index_dir)
    _write(index_dir, [_record(7, "Now about the estuary instead.")])  # an update of a document of the big segment
    update = _written(before, _files(index_dir))
    deletes = [name for name in update if name.startswith("deletes/")]
    assert len(deletes) == 1 and update[deletes[0]] < 400
    assert all(name.startswith(("deletes/", "versions/", "segments/")) for name in update)
    assert not any(name.startswith(f"segments/{segment_names(index_dir)[0]}/") for name in update)
    with open_index(index_dir) as reader:
        assert "estuary" in (reader.document("doc-7") or pytest.fail("doc-7 lost")).text
        assert len(reader.document_ids()) == 401


def test_deletions_made_while_a_merge_runs_are_carried_over(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    for start in range(0, 30, 10):
        _write(index_dir, [_record(i) for i in range(start, start + 10)])
    assert len(segment_names(index_dir)) == 3

    def write_meanwhile() -> None:  # after the merged segment is built, before its commit
        _write(index_dir, [_record(3, "Rewritten: a fjord.")], deletes=("doc-14", "doc-25"))

    report = merge_index(index_dir, optimize=True, before_commit=write_meanwhile)
    assert report.version == current_version(index_dir) and report.carried_deletes == 3
    names = segment_names(index_dir)
    assert names[0] == report.into[0] and len(names) == 2  # the merged segment, then the write's own
    with open_index(index_dir, fallback=False) as reader:
        ids = set(reader.document_ids())
        assert "doc-14" not in ids and "doc-25" not in ids and len(ids) == 28
        assert "fjord" in (reader.document("doc-3") or pytest.fail("doc-3 lost")).text
        assert len(reader.passage_ids(doc_id="doc-3")) >= 1
        hits = reader.keyword.search("fjord", 5) if reader.keyword else None
        assert hits is not None and {p.doc_id for p in reader.passages(hits.ids[0].tolist())} == {"doc-3"}
        assert all(p.doc_id != "doc-14" for p in reader.passages(reader.keyword.search("town 14", 50).ids[0].tolist()))


def test_a_leased_reader_keeps_merged_away_segments_until_it_closes(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    for start in range(0, 20, 10):
        _write(index_dir, [_record(i) for i in range(start, start + 10)])
    old = segment_names(index_dir)
    reader = IndexReader.open(index_dir)
    try:
        merge_index(index_dir, optimize=True)
        for i in range(4):  # enough versions that the one the reader holds is pruned
            _write(index_dir, [_record(100 + i)])
        assert reader.version not in list_versions(index_dir)
        assert all((index_dir / "segments" / name).is_dir() for name in old)  # leased: kept
        document = reader.document("doc-12")
        assert document is not None and reader.passages(list(reader.passage_ids(doc_id="doc-12")))
    finally:
        reader.close()
    _write(index_dir, [_record(200)])  # the next prune: nothing holds them any more
    assert not any((index_dir / "segments" / name).exists() for name in old)
    with open_index(index_dir, fallback=False) as fresh:
        assert len(fresh.document_ids()) == 25


def test_a_reader_of_the_next_version_reuses_the_loaded_segments(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    _write(index_dir, [_record(i) for i in range(20)])
    cache = SegmentCache()
    with IndexReader.open(index_dir, cache=cache) as first:
        _write(index_dir, [_record(50)], segment_cache=cache)
        with IndexReader.open(index_dir, cache=cache) as second:
            assert second.view.segments[0] is first.view.segments[0]  # the same object: nothing loaded again
            assert second.document("doc-50") is not None and first.document("doc-50") is None


def test_the_next_versions_reader_pools_only_the_new_segment(tmp_path: Path) -> None:
    """Readers opened through one cache hand their pools of small segments on: a publish costs the new segment's
    pooling, not the whole index's (index_store.segments.pool)."""
    index_dir = tmp_path / "index"
    for start in (0, 10, 20):
        _write(index_dir, [_record(i) for i in range(start, start + 10)])
    cache = SegmentCache()
    with IndexReader.open(index_dir, cache=cache) as first:
        first.warm()
        assert first.view.pooled_passages_built == len(first.view.passage_ids)
        _write(index_dir, [_record(50)], segment_cache=cache)
        with IndexReader.open(index_dir, cache=cache) as second:
            second.warm()
            new_segment = second.view.segments[-1]
            assert new_segment.name not in {s.name for s in first.view.segments}
            assert second.view.pooled_passages_built == len(new_segment.ids)
            found = Searcher(second, HashingEmbedder()).search(SearchRequest("Report 50", k=1, mode="bm25"))
            assert found.hits[0].citation.doc_id == "doc-50"


def _legacy_index(index_dir: Path) -> str:
    """An index as the previous format wrote it: one version folder with its own store, vectors and manifest."""
    version_dir = index_dir / "versions" / "v000001"
    version_dir.mkdir(parents=True)
    embedder = HashingEmbedder()
    with connect(version_dir / "passages.sqlite", read_only=False) as db:
        store = PassageStore(db)
        vectors = create_vector_index("faiss", embedder.dim)
        for i in range(3):
            text = f"Legacy note {i} about the {WORDS[i]}."
            store.insert_document(
                doc_id=f"old-{i}", title=f"Old {i}", text=text, source="old.jsonl", url=None, metadata={},
                units=[("article", 0, len(text), None)], content_hash=f"h{i}",
            )  # fmt: skip
            store.insert_passages([(10 + i, f"old-{i}", 0, "article", None, 0, len(text), text, f"p{i}")])
            vectors.add(np.array([10 + i]), embedder.encode([text]))
        store.set_meta("next_passage_id", "13")
        db.commit()
    backend, _ = save_vector_index(vectors, version_dir, "faiss")
    manifest = Manifest(
        format_version=LEGACY_FORMAT_VERSION,
        version="v000001",
        created_at="2026-11-30T00:00:00+00:00",
        model=ModelInfo(embedder.name, embedder.dim, embedder.max_tokens),
        vector_backend=backend,
        chunker=ChunkerSettings().to_dict(),
        counts={"documents": 3, "passages": 3, "passages_article": 3},
        corpus_fingerprint="",
        files=checksum_files(version_dir),
        extra={"keyword": {"k1": 0.9, "b": 0.75}},
    )
    data = json.loads(manifest.to_json())
    del data["segments"], data["next_passage_id"]  # fields the previous format did not have
    (version_dir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    (index_dir / "CURRENT").write_text("v000001\n", encoding="utf-8")
    return "v000001"


def test_an_index_of_the_previous_format_names_the_upgrade_then_upgrades(tmp_path: Path, capsys) -> None:
    index_dir = tmp_path / "index"
    _legacy_index(index_dir)
    with pytest.raises(IndexIncompatibleError) as raised:
        open_index(index_dir)
    message = str(raised.value)
    assert "\n" not in message and "citesearch index --upgrade" in message and "v000001" in message
    assert main(["search", "legacy", "--index-dir", str(index_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--upgrade" in err and "Traceback" not in err
    with pytest.raises(IndexIncompatibleError, match="--upgrade"):  # a write is refused the same way
        _write(index_dir, [_record(1)])
    assert main(["index", "--upgrade", "--index-dir", str(index_dir)]) == 0
    assert "upgraded v000001" in capsys.readouterr().out
    with open_index(index_dir, fallback=False) as reader:
        assert reader.manifest.format_version != LEGACY_FORMAT_VERSION
        assert sorted(reader.document_ids()) == ["old-0", "old-1", "old-2"]
        assert reader.passage_ids().tolist() == [10, 11, 12]  # the same passage ids: citations stay valid
        assert reader.keyword is not None and reader.passages(reader.keyword.search("glacier", 3).ids[0].tolist())
    _write(index_dir, [_record(1)])  # and writes go on, with ids after the old ones
    with open_index(index_dir) as reader:
        assert min(reader.passage_ids(doc_id="doc-1")) >= 13


def test_optimize_gives_one_segment_with_the_same_results(tmp_path: Path, capsys) -> None:
    index_dir = tmp_path / "index"
    for start in range(0, 40, 10):
        _write(index_dir, [_record(i) for i in range(start, start + 10)])
    _write(index_dir, [_record(5, "Rewritten about a glacier lagoon.")], deletes=("doc-21",))
    assert len(segment_names(index_dir)) == 5
    queries = ["glacier lagoon", "river town 12", "volcano harbour", "orchard"]
    embedder = HashingEmbedder()

    def ranked(ids: list[int], scores: list[float]) -> list[tuple[float, frozenset[int]]]:
        """Results as (score, ids with that score), best first; the last tie group, which the cut at k may split
        differently, left out (equal scores have no defined order, in one segment or many)."""
        groups: dict[float, set[int]] = {}
        for pid, score in zip(ids, scores, strict=True):
            groups.setdefault(round(score, 4), set()).add(pid)
        return [(score, frozenset(members)) for score, members in sorted(groups.items(), reverse=True)][:-1]

    def results() -> list[list[tuple[float, frozenset[int]]]]:
        out = []
        with open_index(index_dir, fallback=False) as reader:
            searcher = Searcher(reader, embedder)
            assert reader.keyword is not None
            for q in queries:
                bm25 = reader.keyword.search(q, 10)
                dense = reader.search_vectors(embedder.encode([q]), 10)
                hybrid = searcher.search(SearchRequest(query=q, k=10))
                out += [
                    ranked(bm25.ids[0].tolist(), bm25.scores[0].tolist()),
                    ranked(dense.ids[0].tolist(), dense.scores[0].tolist()),
                    ranked([h.passage_id for h in hybrid.hits], [h.score for h in hybrid.hits]),
                ]
        return out

    before = results()
    assert sum(len(r) for r in before) >= 2 * len(before)  # the comparison compares something
    assert main(["index", "--optimize", "--index-dir", str(index_dir)]) == 0
    assert "5 -> 1 segments" in capsys.readouterr().out
    assert len(segment_names(index_dir)) == 1
    assert results() == before  # the same passages with the same scores (to 1e-4) in the same order
    with open_index(index_dir) as reader:
        assert len(reader.document_ids()) == 39 and reader.manifest.segments[0].deleted == 0
    assert main(["index", "--optimize", "--index-dir", str(index_dir)]) == 0  # already one segment: nothing to do
    assert "nothing to merge" in capsys.readouterr().out


def test_a_segment_that_lost_every_passage_drops_out_and_its_files_go(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    _write(index_dir, [_record(1)])
    _write(index_dir, [_record(2)])
    lonely = segment_names(index_dir)[-1]
    _write(index_dir, [], deletes=("doc-2",))
    assert lonely not in segment_names(index_dir)
    for i in range(3):
        _write(index_dir, [_record(10 + i)])
    assert not (index_dir / "segments" / lonely).exists()  # no retained version names it any more
    with sqlite3.connect(index_dir / "segments" / segment_names(index_dir)[0] / "passages.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 1
