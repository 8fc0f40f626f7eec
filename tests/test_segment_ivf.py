"""Big segments get an IVF index from the index's trained centroids (index_store.centroids): trained once, stored as
one checksummed file the manifest names, reused by later big writes and merges; small segments stay exact.

A low ``ivf_min_vectors`` stands in for the 100k of the "auto" rule (the same code path, at test size)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from index_store import IndexWriter, open_index
from index_store.centroids import IvfSettings
from index_store.check import check_index, repair_index
from index_store.merging import merge_index
from index_store.segment_io import SegmentCache
from tests.test_vectors import MODEL, _brute_force, _Doc, _Passage, _queries, _recall, _structured_vectors

THRESHOLD = 2000
POOL = _structured_vectors(8000, seed=1)  # one distribution for every document, as one corpus would have


def _publish(
    index_dir: Path, docs: dict[str, tuple[int, int]], *, deletes: tuple[str, ...] = (), **options: object
) -> str:
    """Documents doc_id -> (first row of POOL, passages): one passage per word, its vector a row of POOL."""
    with IndexWriter.begin(index_dir, model=MODEL, chunker={}, **options) as writer:  # type: ignore[arg-type]
        for doc_id in deletes:
            writer.delete_document(doc_id)
        for doc_id, (first, n) in docs.items():
            doc = _Doc(doc_id, n)
            starts = np.cumsum([0] + [len(w) + 1 for w in doc.words[:-1]])
            passages = [_Passage(i, int(s), w) for i, (s, w) in enumerate(zip(starts, doc.words, strict=True))]
            writer.upsert_document(doc, passages, POOL[first : first + n])
        return writer.publish().version


def _kinds(index_dir: Path) -> dict[str, str]:
    """Segment -> the vector kind its segment.json records, for the published version's segments."""
    with open_index(index_dir) as reader:
        names = [ref.name for ref in reader.manifest.segments]
    return {n: json.loads((index_dir / "segments" / n / "segment.json").read_text())["vectors"] for n in names}


def _centroids_of(index_dir: Path) -> str | None:
    with open_index(index_dir) as reader:
        return IvfSettings.of(reader.manifest).centroids


def _coarse(index_dir: Path, segment: str) -> np.ndarray:
    import faiss

    index = faiss.read_index(str(index_dir / "segments" / segment / "vectors.ivf.faiss"))
    ivf = faiss.extract_index_ivf(index)
    return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.nlist))


def _stored_coarse(index_dir: Path, relative: str) -> np.ndarray:
    import faiss

    data = (index_dir / relative).read_bytes()
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))  # kept alive: it owns the quantizer
    ivf = faiss.extract_index_ivf(index)
    assert ivf.ntotal == 0  # trained, empty: the segments add their own rows
    return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.nlist))


def _recall_against_exact(index_dir: Path, seed: int) -> tuple[float, set[int], np.ndarray]:
    """recall@10 of the index's vector search against brute force over its live passages; the ids found."""
    with open_index(index_dir) as reader:
        ids = reader.passage_ids()
        every = reader.vectors.vectors_for(ids)
        queries = _queries(every, 100, seed=seed)
        hits = reader.search_vectors(queries, 10)
        for query, row_ids, row_scores in zip(queries, hits.ids, hits.scores, strict=True):  # exact scores
            np.testing.assert_allclose(row_scores, reader.vectors.vectors_for(row_ids) @ query, atol=1e-5)
        return _recall(hits.ids, _brute_force(every, ids, queries, 10)), set(hits.ids.ravel().tolist()), ids


def test_a_big_merge_is_ivf_from_stored_centroids_reused_by_the_next(tmp_path: Path) -> None:
    cache = SegmentCache()
    for i in range(2):  # two small segments, 1600 vectors in all: exact, no centroids
        _publish(tmp_path, {f"d{i}": (i * 800, 800)}, ivf_min_vectors=THRESHOLD)
    assert set(_kinds(tmp_path).values()) == {"flat"} and _centroids_of(tmp_path) is None
    assert not (tmp_path / "ivf").exists()
    with open_index(tmp_path) as reader:
        assert [pool.ivf for pool in reader.view.pools] == [None]  # below the threshold pools scan every row

    # the third small write takes the index to 2400 >= 2000 vectors: its segment stays exact, but the index's
    # centroids are trained now (once), and the readers' pools of small segments probe lists built from them
    _publish(tmp_path, {"d2": (1600, 800)})
    assert set(_kinds(tmp_path).values()) == {"flat"}
    first = _centroids_of(tmp_path)
    assert first is not None and first.startswith("ivf/centroids-")
    with open_index(tmp_path) as reader:
        (pool,) = reader.view.pools
        assert pool.ivf is not None and pool.ivf.ntotal == 2400 and pool.ivf_params["nprobe"] >= 1
    recall, _, _ = _recall_against_exact(tmp_path, seed=2)
    assert recall >= 0.95

    merge_index(tmp_path, optimize=True, cache=cache)  # 2400 >= 2000 vectors: IVF, from the stored centroids
    (merged,) = _kinds(tmp_path).items()
    assert merged[1] == "ivf-flat"  # float lists: far below the 1 GiB of floats that picks 8-bit codes
    assert _centroids_of(tmp_path) == first
    stored = tmp_path / first
    assert first.endswith(hashlib.sha256(stored.read_bytes()).hexdigest()[:16] + ".faiss")
    with open_index(tmp_path) as reader:
        assert reader.manifest.files[first].sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    np.testing.assert_array_equal(_coarse(tmp_path, merged[0]), _stored_coarse(tmp_path, first))
    recall, _, _ = _recall_against_exact(tmp_path, seed=3)
    assert recall >= 0.95

    # a small write stays exact; a big one is IVF with the same centroids; so is the next big merge
    _publish(tmp_path, {"small": (2400, 300)})
    _publish(tmp_path, {"big": (2700, 2100)})
    kinds = _kinds(tmp_path)
    assert list(kinds.values()) == ["ivf-flat", "flat", "ivf-flat"]
    assert _centroids_of(tmp_path) == first
    big = list(kinds)[2]
    np.testing.assert_array_equal(_coarse(tmp_path, big), _stored_coarse(tmp_path, first))

    # deletes: the second big merge (carrying a deletion) reuses the same file; deleted passages never come back
    _publish(tmp_path, {}, deletes=("d1",))
    merge_index(tmp_path, optimize=True, cache=cache)  # d0 + d2 + small + big = 4000 vectors
    (merged2,) = _kinds(tmp_path).items()
    assert merged2[1] == "ivf-flat" and merged2[0] != merged[0]
    assert _centroids_of(tmp_path) == first
    assert [p.name for p in (tmp_path / "ivf").iterdir()] == [first.split("/")[1]]  # no second file
    np.testing.assert_array_equal(_coarse(tmp_path, merged2[0]), _stored_coarse(tmp_path, first))
    with open_index(tmp_path) as reader:
        gone = set(reader.passage_ids(doc_id="d0").tolist())
    assert len(gone) == 800
    _publish(tmp_path, {}, deletes=("d0",))  # a deletes file on the IVF segment: the engine's selector skips them
    recall, found, live = _recall_against_exact(tmp_path, seed=4)
    assert recall >= 0.95
    assert len(live) == 800 + 300 + 2100 and not found & gone
    assert all(report.state == "ok" for report in check_index(tmp_path))


def test_damaged_centroids_are_reported_and_trained_again(tmp_path: Path) -> None:
    _publish(tmp_path, {"a": (0, 2100)}, ivf_min_vectors=THRESHOLD)  # a write's own big segment trains them
    assert list(_kinds(tmp_path).values()) == ["ivf-flat"]
    first = _centroids_of(tmp_path)
    assert first is not None
    path = tmp_path / first
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    newest = check_index(tmp_path)[0]
    assert newest.state != "ok" and first in newest.detail
    with open_index(tmp_path) as reader:  # searching needs no centroids: each IVF segment holds its own copy
        assert len(reader.search_vectors(POOL[:1], 5).ids[0]) == 5
    repaired = repair_index(tmp_path)  # the new version no longer names them
    assert repaired.action == "rebuilt" and _centroids_of(tmp_path) is None
    assert check_index(tmp_path)[0].state == "ok"
    _publish(tmp_path, {"b": (2100, 2100)})  # the next big segment trains new ones under a new name
    second = _centroids_of(tmp_path)
    assert second is not None and second != first
    assert list(_kinds(tmp_path).values()) == ["ivf-flat", "ivf-flat"]
    assert check_index(tmp_path)[0].state == "ok"


def test_flat_backend_never_builds_ivf(tmp_path: Path) -> None:
    _publish(tmp_path, {"a": (0, 2100)}, ivf_min_vectors=THRESHOLD, vector_backend="faiss")
    assert list(_kinds(tmp_path).values()) == ["flat"] and _centroids_of(tmp_path) is None


def _list_contents(index: object) -> list[list[int]]:
    """Each IVF list's labels, sorted (what a list holds, whatever order the rows were added in)."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    return [
        sorted(faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).tolist()) if lists.list_size(i) else []
        for i in range(ivf.nlist)
    ]


def test_ivf_pools_carry_to_the_next_version_and_join_without_reassigning(tmp_path: Path) -> None:
    from index_store.segments import Pool

    cache = SegmentCache()
    for i in range(3):  # 2400 vectors in three small segments: the third write trains the index's centroids
        docs = {f"d{i}a": (i * 800, 400), f"d{i}b": (i * 800 + 400, 400)}
        _publish(tmp_path, docs, ivf_min_vectors=THRESHOLD, cache=cache)
    with open_index(tmp_path, cache=cache) as reader:
        reader.warm()
        (first,) = reader.view.pools
        assert first.ivf is not None and first.ivf.ntotal == 2400
        gone = set(reader.passage_ids(doc_id="d1a").tolist())
    assert len(gone) == 400

    # a small write that also deletes d1a: the new view reuses the pool (nothing re-assigned) and pools only the new
    # segment; the deleted rows, still in the pool's lists, are never returned
    _publish(tmp_path, {"e": (2400, 50)}, deletes=("d1a",), cache=cache)
    with open_index(tmp_path, cache=cache) as reader:
        reader.warm()
        assert reader.view.pooled_passages_built == 50
        assert first in reader.view.pools and all(pool.ivf is not None for pool in reader.view.pools)
    recall, found, live = _recall_against_exact(tmp_path, seed=5)
    assert recall >= 0.95 and len(live) == 2000 + 50
    assert not found & gone

    # the next small pool joins the 50-passage one (binary-counter rule): their lists are concatenated, and hold
    # exactly what assigning every row of the joined members again would put in them
    _publish(tmp_path, {"f": (2450, 40)}, cache=cache)
    with open_index(tmp_path, cache=cache) as reader:
        reader.warm()
        pools = reader.view.pools
        assert [len(pool) for pool in pools] == [2400, 90] and pools[0] is first
        assert reader.view.pooled_passages_built == 40 + 90
        joined = pools[1]
        centroids = reader.view.centroids
        assert centroids is not None and joined.ivf is not None
        again = Pool.of(joined.members, context=joined.part_postings is not None, centroids=centroids)
        assert _list_contents(joined.ivf) == _list_contents(again.ivf)
    recall, _, _ = _recall_against_exact(tmp_path, seed=6)
    assert recall >= 0.95
