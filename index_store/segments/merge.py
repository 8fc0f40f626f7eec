"""Merging adjacent segments into one, dropping deleted passages.

Nothing is recomputed from text: the store rows are copied by SQLite itself (``INSERT ... SELECT`` from the
attached source stores), the postings are concatenated with a union vocabulary (``postings.merge_postings``), the
per-part mean vectors, leads, document rows and token codes (all in the index's one basis) are copied and
renumbered, and the vectors of the kept rows are written again — an IVF segment gets the centroids passed in (the
ones its sources used), never re-trained. So a merged segment scores exactly as its sources did
(tests/test_segments.py), and merging is I/O-bound.

Only *adjacent* segments (in id order) may be merged, so the view's concatenated ids stay sorted; ``merge_segments``
checks it. Which runs to merge is ``policy.plan_merges``'s decision; scheduling and publishing is the store's.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index_store.segments.postings import merge_postings
from index_store.segments.segment import (
    PART_POSTINGS,
    PASSAGE_POSTINGS,
    Segment,
    write_folder_atomically,
    write_meta,
)
from index_store.segments.vectors import IVF_MIN_VECTORS, Centroids, SegmentVectors
from index_store.segments.view import SegmentState
from index_store.sqlite_store import FILE_NAME as STORE_FILE
from index_store.sqlite_store import SCHEMA
from index_store.token_vectors import TokenProjection, write_merged_codes


def shared_token_projection(segments: Sequence[Segment]) -> TokenProjection | None:
    """The basis a merge of ``segments`` keeps token codes in (every write of an index reuses one; None: no source
    holds codes). The passages of a source without codes in it get none in the merged segment either, and the
    rerank encodes them from their text (``citesearch.search``)."""
    for segment in reversed(segments):  # the newest basis, as views take it
        if segment.token_projection is not None:
            return segment.token_projection
    return None


def merge_segments(
    path: Path,
    sources: Sequence[tuple[Segment, np.ndarray | None]],
    *,
    centroids: Centroids | None = None,
    ivf_min_vectors: int = IVF_MIN_VECTORS,
) -> Segment:
    """Write one segment at ``path`` holding the live documents of ``sources`` (adjacent, in id order, each with its
    deletion mask in the version being merged), and load it. Deletions made after that version must be carried
    over to the merged segment by the caller (``deletion_mask`` over the merged segment's ids)."""
    if not sources:
        raise ValueError("nothing to merge")
    states = [SegmentState.of(segment, deleted) for segment, deleted in sources]
    for before, after in itertools.pairwise(states):
        a, b = before.segment, after.segment
        if len(a) and len(b) and a.ids[-1] >= b.ids[0]:
            raise ValueError(f"only adjacent segments in id order can be merged: {a.name} then {b.name}")
    dims = {state.segment.dim for state in states}
    settings = {state.segment.settings for state in states if len(state.segment)}
    if len(dims) != 1 or len(settings) > 1:
        raise ValueError("segments of different dimensions or keyword settings cannot be merged")
    dim = dims.pop()
    keyword = settings.pop() if settings else None
    for state in states:
        if state.deleted is not None and state.doc_deleted is not None:
            partial = state.deleted != state.doc_deleted[np.asarray(state.segment.doc_of)]
            if partial.any():
                raise ValueError(f"segment {state.segment.name}: a deletion mask must delete whole documents")

    def fill(folder: Path) -> None:
        _merge_stores(folder / STORE_FILE, states)
        keep = [np.ones(len(s.segment), bool) if s.deleted is None else ~s.deleted for s in states]  # live positions
        keep_docs = [np.ones(s.segment.n_documents, bool) if s.doc_deleted is None else ~s.doc_deleted for s in states]
        keep_parts = [np.ones(s.segment.n_parts, bool) if s.part_deleted is None else ~s.part_deleted for s in states]
        arrays = _merged_arrays(states, keep, keep_docs, keep_parts)
        rows = np.concatenate(
            [
                np.asarray(s.segment.vectors.rows[np.flatnonzero(k)], np.float32)
                for s, k in zip(states, keep, strict=True)
            ]
        )
        use = centroids if len(rows) >= ivf_min_vectors else None
        _, kind = SegmentVectors.write(folder, rows, use, min_vectors=ivf_min_vectors)
        if keyword is not None:
            with_postings = [(s.segment.postings, k) for s, k in zip(states, keep, strict=True)]
            merge_postings([(p, k) for p, k in with_postings if p is not None]).save(folder / PASSAGE_POSTINGS)
            if keyword.context:
                parts = [(s.segment.part_postings, k) for s, k in zip(states, keep_parts, strict=True)]
                merge_postings([(p, k) for p, k in parts if p is not None]).save(folder / PART_POSTINGS)
        projection = shared_token_projection([s.segment for s in states if len(s.segment)])
        if projection is not None:
            sources = [
                (s.segment.tokens if s.segment.token_basis == projection.fingerprint else None, k)
                for s, k in zip(states, keep, strict=True)
            ]
            write_merged_codes(folder, projection, sources)
        write_meta(folder, arrays, dim=dim, settings=keyword, vector_kind=kind)

    write_folder_atomically(path, fill)
    return Segment.load(path, verify=False)


def _merge_stores(target: Path, states: Sequence[SegmentState]) -> None:
    """Copy the live documents and their passages of every source store into ``target``, in SQLite."""
    with contextlib.closing(sqlite3.connect(target)) as db:
        db.executescript(SCHEMA)
        db.execute("CREATE TEMP TABLE gone (doc_id TEXT PRIMARY KEY)")
        for state in states:
            source = state.segment.path / STORE_FILE
            db.execute("ATTACH DATABASE ? AS src", (f"file:{source}?mode=ro&immutable=1",))
            db.execute("DELETE FROM gone")
            if state.doc_deleted is not None:
                gone = np.asarray(state.segment.doc_ids)[state.doc_deleted].tolist()
                db.executemany("INSERT INTO gone VALUES (?)", [(str(d),) for d in gone])
            db.execute(
                "INSERT INTO documents SELECT * FROM src.documents WHERE doc_id NOT IN (SELECT doc_id FROM gone)"
            )
            db.execute(
                "INSERT INTO passages SELECT * FROM src.passages WHERE doc_id NOT IN (SELECT doc_id FROM gone) "
                "ORDER BY passage_id"
            )
            db.commit()
            db.execute("DETACH DATABASE src")
        db.commit()


def _merged_arrays(
    states: Sequence[SegmentState],
    keep: Sequence[np.ndarray],
    keep_docs: Sequence[np.ndarray],
    keep_parts: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """The per-position, per-part and per-document arrays of the merged segment, renumbered."""
    out: dict[str, list[np.ndarray]] = {}
    position_offset = part_offset = doc_offset = member_offset = 0
    for state, k, kd, kp in zip(states, keep, keep_docs, keep_parts, strict=True):
        s = state.segment
        new_position = np.cumsum(k, dtype=np.int64) - 1 + position_offset
        new_part = np.cumsum(kp, dtype=np.int64) - 1 + part_offset
        new_doc = np.cumsum(kd, dtype=np.int64) - 1 + doc_offset
        members = np.asarray(s.part_members)
        kept_members = members[k[members]] if len(members) else members
        sizes = np.diff(np.asarray(s.part_starts))[kp]
        pieces = {
            "ids": np.asarray(s.ids)[k],
            "part_of": new_part[np.asarray(s.part_of)[k]],
            "part_doc": new_doc[np.asarray(s.part_doc)[kp]],
            "part_members": new_position[kept_members],
            "part_starts": member_offset + np.concatenate([[0], np.cumsum(sizes)])[:-1],
            "part_lead": new_position[np.clip(np.asarray(s.part_lead)[kp], 0, max(0, len(s) - 1))]
            if len(s)
            else np.zeros(int(kp.sum()), np.int64),
            "part_means": np.asarray(s.part_means)[kp],
            "doc_of": new_doc[np.asarray(s.doc_of)[k]],
        }
        for name in ("doc_ids", "published", "timestamps", "cluster_key", "minhash", "has_signature"):
            pieces[name] = np.asarray(getattr(s, name))[kd]
        for name, piece in pieces.items():
            out.setdefault(name, []).append(piece)
        position_offset += int(k.sum())
        part_offset += int(kp.sum())
        doc_offset += int(kd.sum())
        member_offset += len(kept_members)
    arrays = {name: np.concatenate(pieces) for name, pieces in out.items()}
    arrays["part_starts"] = np.concatenate([arrays["part_starts"], [member_offset]]).astype(np.int64)
    for name in ("ids", "part_of", "part_doc", "part_members", "part_lead", "doc_of"):
        arrays[name] = arrays[name].astype(np.int64)
    return arrays
