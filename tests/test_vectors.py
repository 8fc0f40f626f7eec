"""The size-chosen vector backends (IVF, IVF-SQ8) against an exact brute-force reference, and through publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index_store import IndexCorruptError, IndexWriter, ModelInfo, open_index
from index_store.vectors import (
    BACKENDS,
    EXACT_MAX_VECTORS,
    FLOAT_VECTORS_MAX_BYTES,
    choose_backend,
    create_vector_index,
    ivf_backend,
    load_vector_index,
    save_vector_index,
)
from index_store.vectors.ivf_backend import IvfVectorIndex
from tests.store_files import segment_path

DIM = 32
APPROXIMATE = ("faiss-ivf", "faiss-ivf-sq8")


def _structured_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Unit vectors with neighbourhood structure (overlapping topics in a low-dimensional latent space)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), 8))
    latent = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, 8))
    vectors = latent @ rng.standard_normal((8, dim)) + 0.3 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _queries(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), count, replace=False)] + 0.1 * rng.standard_normal(
        (count, vectors.shape[1])
    ).astype(np.float32)
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def _brute_force(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def _recall(found: np.ndarray, expected: np.ndarray) -> float:
    return float(
        np.mean([len(set(f.tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, expected, strict=True)])
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = _structured_vectors(4000, seed=1)
    ids = np.random.default_rng(2).permutation(20_000)[:4000].astype(np.int64)  # sparse, unordered ids
    return ids, vectors


@pytest.fixture(scope="module", params=APPROXIMATE)
def saved(
    request: pytest.FixtureRequest, data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    ids, vectors = data
    flat = create_vector_index("faiss", DIM)
    flat.add(ids, vectors)
    folder = tmp_path_factory.mktemp(request.param)
    backend, files = save_vector_index(flat, folder, request.param)
    assert backend == request.param and all(path.is_file() for path in files)
    return backend, folder


def test_choose_backend_by_size_and_by_name() -> None:
    assert choose_backend("auto", 13_000, 384) == "faiss"  # SciFact-sized indexes stay exact
    assert choose_backend("auto", EXACT_MAX_VECTORS, 384) == "faiss"
    assert choose_backend("auto", EXACT_MAX_VECTORS + 1, 384) == "faiss-ivf"
    assert choose_backend("auto", FLOAT_VECTORS_MAX_BYTES // (384 * 4) + 1, 384) == "faiss-ivf-sq8"
    assert choose_backend("auto", 1_000_000, 384) == "faiss-ivf-sq8"
    for name in BACKENDS:
        assert choose_backend(name, 10, 384) == name
    with pytest.raises(ValueError, match="unknown vector backend"):
        choose_backend("annoy", 10, 384)


def test_approximate_search_recall_and_exact_scores(
    saved: tuple[str, Path], data: tuple[np.ndarray, np.ndarray]
) -> None:
    backend, folder = saved
    ids, vectors = data
    index = load_vector_index(backend, folder)
    assert isinstance(index, IvfVectorIndex) and len(index) == 4000
    assert 1 <= index.params["nprobe"] <= index.params["nlist"]
    queries = _queries(vectors, 100, seed=3)
    hits = index.search(queries, 10)
    assert _recall(hits.ids, _brute_force(vectors, ids, queries, 10)) >= 0.95
    # scores are exact inner products of the ids returned, best first
    by_id = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    for query, row_ids, row_scores in zip(queries, hits.ids, hits.scores, strict=True):
        exact = vectors[[by_id[i] for i in row_ids.tolist()]] @ query
        np.testing.assert_allclose(row_scores, exact, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(row_scores) <= 1e-6)


def test_vectors_for_is_exact_and_in_order(saved: tuple[str, Path], data: tuple[np.ndarray, np.ndarray]) -> None:
    backend, folder = saved
    ids, vectors = data
    index = load_vector_index(backend, folder)
    pick = np.array([7, 3, 3999, 0])
    np.testing.assert_array_equal(index.vectors_for(ids[pick]), vectors[pick])
    assert index.vectors_for(np.array([], dtype=np.int64)).shape == (0, DIM)
    with pytest.raises(KeyError):
        index.vectors_for(np.array([-5], dtype=np.int64))


@pytest.mark.parametrize("every", [40, 2])  # 100 allowed: answered exactly; 2000 allowed: IVF with a selector
def test_filtered_search_returns_only_allowed_ids(
    saved: tuple[str, Path], data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    monkeypatch.setattr(ivf_backend, "FILTER_EXACT_MAX", 500)
    backend, folder = saved
    ids, vectors = data
    index = load_vector_index(backend, folder)
    allowed = ids[::every]
    queries = _queries(vectors, 30, seed=4)
    hits = index.search(queries, 10, allowed_ids=np.concatenate([allowed, [10**9]]))  # unknown ids are ignored
    assert set(hits.ids.ravel().tolist()) <= set(allowed.tolist())
    expected = _brute_force(vectors[::every], allowed, queries, 10)
    if len(allowed) <= 500:
        np.testing.assert_array_equal(hits.ids, expected)
    else:
        assert _recall(hits.ids, expected) >= 0.9
    empty = index.search(queries[:2], 5, allowed_ids=np.array([10**9]))
    assert (empty.ids == -1).all() and np.isneginf(empty.scores).all()


def test_removed_ids_are_never_returned_and_survive_a_save(
    saved: tuple[str, Path], data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    backend, folder = saved
    ids, vectors = data
    index = load_vector_index(backend, folder)
    gone = ids[:1000]
    assert index.remove(gone) == 1000 and index.remove(gone) == 0 and len(index) == 3000
    queries = vectors[:20]  # the removed vectors themselves: each would be its own best match
    assert not set(index.search(queries, 20).ids.ravel().tolist()) & set(gone.tolist())
    index.add(ids[:10], vectors[:10])
    assert len(index) == 3010 and index.search(vectors[:1], 1).ids[0, 0] == ids[0]
    index.save(tmp_path)  # rebuilds the IVF lists over what is left
    again = load_vector_index(backend, tmp_path)
    assert len(again) == 3010
    assert not set(again.search(vectors[10:20], 20).ids.ravel().tolist()) & set(gone[10:].tolist())


def test_save_load_round_trip_gives_the_same_results(
    saved: tuple[str, Path], data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    backend, folder = saved
    _, vectors = data
    first = load_vector_index(backend, folder)
    first.save(tmp_path)
    second = load_vector_index(backend, tmp_path)
    queries = _queries(vectors, 20, seed=5)
    a, b = first.search(queries, 10), second.search(queries, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    writable = load_vector_index(backend, folder, writable=True)  # what a writer starts the next version from
    assert type(writable).__name__ == "FaissVectorIndex" and len(writable) == len(first)


# -- through IndexWriter.publish ------------------------------------------------------------------------------------
MODEL = ModelInfo(name="test-model", dim=DIM, max_tokens=128)


class _Doc:
    def __init__(self, doc_id: str, n: int) -> None:
        self.doc_id, self.title, self.source, self.url = doc_id, "T", "src", None
        self.metadata: dict[str, Any] = {}
        self.text = " ".join(f"{doc_id}w{i}" for i in range(n))
        self.words = self.text.split(" ")

        class _Unit:
            section, char_start, char_end, comment_no = "article", 0, len(self.text), None

        self.units = (_Unit(),)

    @property
    def content_hash(self) -> str:
        return f"h:{self.text}"


class _Passage:
    def __init__(self, ordinal: int, start: int, text: str) -> None:
        self.ordinal, self.char_start, self.char_end, self.text = ordinal, start, start + len(text), text
        self.section, self.comment_no = "article", None

    @property
    def content_hash(self) -> str:
        return f"p:{self.text}"


def _publish(index_dir: Path, docs: dict[str, int], *, deletes: tuple[str, ...] = (), backend: str = "auto") -> str:
    with IndexWriter.begin(index_dir, model=MODEL, chunker={}, vector_backend=backend) as writer:
        for doc_id in deletes:
            writer.delete_document(doc_id)
        for doc_id, n in docs.items():
            doc = _Doc(doc_id, n)
            starts = np.cumsum([0] + [len(w) + 1 for w in doc.words[:-1]])
            passages = [_Passage(i, int(s), w) for i, (s, w) in enumerate(zip(starts, doc.words, strict=True))]
            writer.upsert_document(doc, passages, _structured_vectors(n, seed=sum(map(ord, doc_id))))
        return writer.publish().version


def test_segments_below_the_ivf_size_are_searched_exactly_across_writes_and_deletes(tmp_path: Path) -> None:
    """A write's segment holds exact rows (IVF only for segments of IVF_MIN_VECTORS or more, built from trained
    centroids): search over several segments equals brute force over the live passages, deleted ones excluded."""
    _publish(tmp_path, {"a": 300, "b": 200})
    _publish(tmp_path, {"c": 100})
    _publish(tmp_path, {}, deletes=("a",))
    with open_index(tmp_path) as reader:
        assert len(reader.vectors) == 300 and len(reader.manifest.segments) == 2
        ids = reader.passage_ids()
        queries = _structured_vectors(4, seed=9)
        hits = reader.search_vectors(queries, 10)
        every = reader.vectors.vectors_for(ids)
        expected = ids[np.argsort(-(queries @ every.T), axis=1, kind="stable")[:, :10]]
        np.testing.assert_array_equal(np.sort(hits.ids, axis=1), np.sort(expected, axis=1))
        assert not set(hits.ids.ravel().tolist()) & set(range(300))  # doc a's passages are deleted
        only_c = reader.passage_ids(doc_id="c")
        filtered = reader.search_vectors(queries, 5, allowed_ids=only_c)
        assert set(filtered.ids.ravel().tolist()) <= set(only_c.tolist())


def test_explicit_sq8_backend_through_publish_and_a_corrupt_vector_file(tmp_path: Path) -> None:
    first = _publish(tmp_path, {"a": 300}, backend="faiss-ivf-sq8")
    second = _publish(tmp_path, {"b": 50}, backend="faiss-ivf-sq8")
    with open_index(tmp_path) as reader:
        assert reader.version == second and reader.manifest.vector_backend == "faiss-ivf-sq8"  # as requested
        assert len(reader.vectors) == 350 == len(reader.passage_ids())
    vectors_file = segment_path(tmp_path, second) / "vectors.f32.npy"  # no embedding cache: cannot be rebuilt
    data = bytearray(vectors_file.read_bytes())
    data[-1] ^= 0xFF
    vectors_file.write_bytes(bytes(data))
    with open_index(tmp_path) as reader:  # the damaged version is skipped for the previous one
        assert reader.version == first and reader.skipped_versions
    with pytest.raises(IndexCorruptError):
        open_index(tmp_path, fallback=False)
