"""index_store on its own: vectors against brute force, atomic publishing, locking, integrity checks."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index_store import (
    IndexCorruptError,
    IndexIncompatibleError,
    IndexLockedError,
    IndexNotFoundError,
    IndexWriter,
    KeywordIndex,
    KeywordSettings,
    ModelInfo,
    create_vector_index,
    current_version,
    list_versions,
    open_index,
    write_lock,
)
from tests.store_files import segment_names, segment_path

MODEL = ModelInfo(name="test-model", dim=16, max_tokens=128)


@dataclass(frozen=True)
class _Unit:
    section: str
    char_start: int
    char_end: int
    comment_no: int | None = None


@dataclass(frozen=True)
class _Doc:
    doc_id: str
    text: str
    title: str = "T"
    source: str = "src"
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def units(self) -> tuple[_Unit, ...]:
        return (_Unit("article", 0, len(self.text)),)

    @property
    def content_hash(self) -> str:
        return f"h:{self.text}"


@dataclass(frozen=True)
class _Passage:
    ordinal: int
    char_start: int
    char_end: int
    text: str
    section: str = "article"
    comment_no: int | None = None

    @property
    def content_hash(self) -> str:
        return f"p:{self.text}"


def _unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, MODEL.dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _write(index_dir: Path, docs: dict[str, int], *, deletes: tuple[str, ...] = (), **begin: Any) -> str:
    """Publish a version upserting each doc with ``n`` passages (vectors seeded by the doc id)."""
    with IndexWriter.begin(index_dir, model=MODEL, chunker={"target_tokens": 10}, **begin) as writer:
        for doc_id in deletes:
            writer.delete_document(doc_id)
        for doc_id, n in docs.items():
            text = " ".join(f"{doc_id}-{i}" for i in range(n))
            words = text.split(" ")
            starts = [text.index(w) for w in words]
            passages = [_Passage(i, s, s + len(w), w) for i, (s, w) in enumerate(zip(starts, words, strict=True))]
            writer.upsert_document(_Doc(doc_id, text), passages, _unit_vectors(n, seed=sum(map(ord, doc_id))))
        return writer.publish(build={"note": "test"}).version


def test_flat_search_matches_brute_force_with_and_without_filter() -> None:
    index = create_vector_index("faiss", MODEL.dim)
    vectors = _unit_vectors(500, seed=1)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index.add(ids, vectors)
    queries = _unit_vectors(5, seed=2)
    hits = index.search(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1000
    np.testing.assert_array_equal(hits.ids, expected)
    allowed = ids[::7]
    filtered = index.search(queries, 10, allowed_ids=allowed)
    sub = vectors[::7]
    expected_filtered = allowed[np.argsort(-(queries @ sub.T), axis=1)[:, :10]]
    np.testing.assert_array_equal(filtered.ids, expected_filtered)
    assert index.remove(ids[:100]) == 100 and len(index) == 400
    assert not set(index.search(queries, 50).ids.ravel()) & set(ids[:100])


def test_publish_then_read_back_with_manifest_and_checksums(tmp_path: Path) -> None:
    version = _write(tmp_path, {"a": 3, "b": 2})
    assert current_version(tmp_path) == version
    with open_index(tmp_path) as reader:
        assert reader.manifest.counts == {"documents": 2, "passages": 5, "passages_article": 5}
        assert reader.manifest.model == MODEL
        (segment,) = segment_names(tmp_path)
        assert f"segments/{segment}/segment.json" in reader.manifest.files
        files = {p.relative_to(segment_path(tmp_path)).as_posix() for p in segment_path(tmp_path).rglob("*")}
        assert {"passages.sqlite", "vectors.f32.npy", "bm25/passages/tf.npy", "segment.json"} <= files
        assert reader.keyword is not None and len(reader.keyword) == 5
        assert reader.manifest.extra["keyword"]["k1"] == KeywordSettings().k1
        for stored in reader.passages(list(reader.passage_ids())):
            doc = reader.document(stored.doc_id)
            assert doc is not None and doc.text[stored.char_start : stored.char_end] == stored.text
        assert len(reader.passage_ids(doc_id="b")) == 2


def test_incremental_update_keeps_old_version_and_ids_stay_unique(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a": 3, "b": 2})
    second = _write(tmp_path, {"b": 4, "c": 1}, deletes=("a",))
    assert list_versions(tmp_path) == [first, second]
    with open_index(tmp_path) as reader:
        assert reader.document("a") is None
        ids = reader.passage_ids()
        assert len(ids) == len(set(ids.tolist())) == 5 == len(reader.vectors)
        assert {p.doc_id for p in reader.passages(list(ids))} == {"b", "c"}
        assert reader.manifest.base_version == first
    with open_index(tmp_path, version=first) as old:
        assert old.document("a") is not None  # published versions are immutable


def test_failed_build_publishes_nothing_and_leaves_no_temp_folder(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a": 2})
    with pytest.raises(RuntimeError), IndexWriter.begin(tmp_path, model=MODEL, chunker={}) as writer:
        writer.delete_document("a")
        raise RuntimeError("boom")
    assert current_version(tmp_path) == first
    assert not list((tmp_path / "versions").glob(".tmp-*"))
    with open_index(tmp_path) as reader:
        assert reader.document("a") is not None


def test_crash_between_rename_and_switch_keeps_the_old_version_current(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a": 2})

    def die(_: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, {"b": 1}, before_switch=die)
    assert current_version(tmp_path) == first
    # The next writer starts from the current version, not the orphan, and takes a fresh name.
    third = _write(tmp_path, {"c": 1})
    with open_index(tmp_path) as reader:
        assert reader.version == third and reader.document("b") is None and reader.document("a") is not None


def test_old_versions_are_pruned(tmp_path: Path) -> None:
    for i in range(5):
        _write(tmp_path, {f"d{i}": 1}, keep_versions=2)
    assert len(list_versions(tmp_path)) == 2


def test_corrupted_current_version_falls_back_to_previous(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a": 2})
    second = _write(tmp_path, {"b": 2})
    vectors = segment_path(tmp_path, second) / "vectors.f32.npy"  # no embedding cache here: cannot be rebuilt
    data = bytearray(vectors.read_bytes())
    data[-5] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with open_index(tmp_path) as reader:
        assert reader.version == first
        assert any(second in problem and "checksum" in problem for problem in reader.skipped_versions)
    with pytest.raises(IndexCorruptError, match="checksum"):
        open_index(tmp_path, fallback=False)


def test_truncated_sqlite_without_intact_version_is_an_error(tmp_path: Path) -> None:
    version = _write(tmp_path, {"a": 2})
    store = segment_path(tmp_path, version) / "passages.sqlite"
    os.truncate(store, store.stat().st_size // 2)
    with pytest.raises(IndexCorruptError, match="truncated"):
        open_index(tmp_path)


def test_missing_index_and_model_mismatch_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="citesearch index"):
        open_index(tmp_path / "none")
    _write(tmp_path, {"a": 1})
    other = ModelInfo(name="other", dim=8, max_tokens=10)
    with pytest.raises(IndexIncompatibleError, match="test-model"):
        open_index(tmp_path, expect_model=other)
    with pytest.raises(IndexIncompatibleError, match="re-index"), IndexWriter.begin(tmp_path, model=other, chunker={}):
        pass
    with IndexWriter.begin(tmp_path, model=other, chunker={}, allow_model_change=True) as writer:
        assert writer.document_hashes() == {}


def test_second_writer_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    with write_lock(tmp_path), pytest.raises(IndexLockedError, match=str(os.getpid())):
        _write(tmp_path, {"a": 1})
    _write(tmp_path, {"a": 1})  # released


def test_deleted_version_folder_is_detected(tmp_path: Path) -> None:
    first = _write(tmp_path, {"a": 1})
    second = _write(tmp_path, {"b": 1})
    shutil.rmtree(tmp_path / "versions" / second)
    with open_index(tmp_path) as reader:
        assert reader.version == first


def _reference_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> np.ndarray:
    """Lucene's BM25 written out by hand: idf = ln(1 + (N - df + .5) / (df + .5)), tf saturation by length."""
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    scores = np.zeros(n)
    for term in set(query):
        df = sum(term in doc for doc in docs)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, doc in enumerate(docs):
            tf = doc.count(term)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl)) if tf else 0.0
    return scores


def test_bm25_scores_match_a_hand_written_reference_and_filters_apply() -> None:
    settings = KeywordSettings(k1=1.2, b=0.75, stemmer="", stopwords="")
    texts = ["apple banana apple", "banana cherry", "cherry cherry cherry date", "elderberry"]
    index = KeywordIndex.build(((10 + i, t) for i, t in enumerate(texts)), settings)
    expected = _reference_bm25([t.split() for t in texts], ["apple", "cherry"], settings.k1, settings.b)
    np.testing.assert_allclose(index.scores("apple cherry"), expected, rtol=1e-5)
    hits = index.search("apple cherry", 10)
    assert hits.ids[0].tolist() == [10 + i for i in np.argsort(-expected) if expected[i] > 0]
    assert index.search("apple cherry", 10, allowed_ids=np.array([11, 13])).ids[0].tolist() == [11]
    assert index.search("unknownword", 10).ids.size == 0


def test_keyword_index_stems_and_survives_save_and_load(tmp_path: Path) -> None:
    index = KeywordIndex.build([(1, "The cats were running"), (2, "dogs bark")], KeywordSettings())
    index.save(tmp_path)
    loaded = KeywordIndex.load(tmp_path)
    assert loaded is not None
    assert loaded.search("cat runs", 5).ids[0].tolist() == [1]
    np.testing.assert_allclose(loaded.scores("dog barking"), index.scores("dog barking"))
