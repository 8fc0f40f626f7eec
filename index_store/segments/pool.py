"""Pools: the postings and flat vectors of several small segments concatenated, so a query pays the fixed cost of
one segment for all of them.

A query over a view costs a fixed amount per segment and query term (a vocabulary lookup, a slice, a few numpy
calls: ~0.1 ms) plus the work proportional to the postings read. Small segments (a write each) are many and
cheap to concatenate, so the view searches them as one *pool*: their passage and part postings with a union
vocabulary (positions renumbered in member order) and their vectors stacked into one matrix for one matrix
product. A pool depends only on its member segments, which are immutable — deletion masks are applied per view
and per query, never baked in — so the view of the next version reuses the pools of the previous one whose
members are all still present and pools only the segments that are new. To keep the number of pools (and so the
fixed cost) logarithmic while the amortised cost of pooling stays small, pools are joined like a binary counter:
sorted by size, the smallest two are joined while the second smallest is less than twice the smallest.

Exactness: BM25 adds one contribution per (term, position), so the order in which segments are visited does not
change a score; the pooled postings hold the same (term, tf, length) triples as the members' postings, so pooled
scores equal unpooled ones bit for bit, and a pooled vector row is the same float row.

IVF pools: once an index holds more vectors than the IVF threshold, its version names trained centroids
(``index_store.centroids``), and the view hands them to its pools. A pool then also holds an IVF index over its rows
built from those centroids (each row assigned to its list once, when the pool is built; joining two pools
concatenates their lists with FAISS ``merge_from``, no re-assignment), with nprobe tuned on a new pool's own rows
as a big segment tunes its own (a join keeps the larger nprobe of the two). Without it a million passages in small
segments would be one exact scan of every row per query while the merged index probes lists: the pools make the
approximation the merged index makes, from the same centroids. Candidates are re-ranked from the float rows.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from index_store.segments.postings import Postings
from index_store.segments.segment import Segment
from index_store.segments.vectors import Centroids
from index_store.vectors.ivf_backend import IvfVectorIndex

# Segments with more passages than this are searched on their own: their per-query work dwarfs the fixed cost,
# and copying them per version would not be cheap. The merge policy's first tiers (2,000 and 20,000 passages)
# are below it.
POOL_MAX_SEGMENT_PASSAGES = 50_000


def poolable(segment: Segment, *, context: bool) -> bool:
    """Whether a segment of a view goes into a pool: small, flat vectors, its postings present."""
    return (
        len(segment) <= POOL_MAX_SEGMENT_PASSAGES
        and segment.vectors.ivf is None
        and segment.postings is not None
        and (not context or segment.part_postings is not None)
    )


@dataclass(frozen=True, slots=True)
class Pool:
    """The concatenation of ``members`` (ascending first id): pooled position ``i`` is the i-th position of the
    members in order, pooled part ``j`` the j-th part."""

    members: tuple[Segment, ...]
    postings: Postings
    part_postings: Postings | None
    rows: np.ndarray  # (n, dim) float32, the members' vectors stacked
    ids: np.ndarray  # int64 passage ids, ascending (members are in id order and never overlap)
    ivf: faiss.Index | None = None  # lists over the rows (labels = pool rows), from the view's centroids
    ivf_params: dict[str, Any] = field(default_factory=dict)  # quantizer, nlist, nprobe (as a big segment's)
    centroids_key: str | None = None  # which centroids ``ivf`` was built from (None: flat)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(str(segment.path) for segment in self.members)

    @classmethod
    def of(cls, members: Sequence[Segment], *, context: bool, centroids: Centroids | None = None) -> Pool:
        members = tuple(sorted(members, key=lambda s: int(s.ids[0])))
        postings = concat_postings([s.postings for s in members if s.postings is not None])
        part_postings = None
        if context:
            part_postings = concat_postings([s.part_postings for s in members if s.part_postings is not None])
        rows = np.concatenate([np.asarray(s.vectors.rows, dtype=np.float32) for s in members])
        ids = np.concatenate([np.asarray(s.ids, dtype=np.int64) for s in members])
        pool = cls(members, postings, part_postings, rows, ids)
        if centroids is None:
            return pool
        return pool.with_ivf(centroids.filled(rows), centroids)

    @classmethod
    def join(cls, first: Pool, second: Pool, *, context: bool, centroids: Centroids | None = None) -> Pool:
        """``first`` and ``second`` (``first``'s ids below ``second``'s) as one pool; their IVF lists, when both were
        built from ``centroids``, are concatenated rather than assigned again."""
        if first.ids[0] > second.ids[0]:
            first, second = second, first
        key = centroids_key(centroids)
        if key is None or first.centroids_key != key or second.centroids_key != key:
            return cls.of([*first.members, *second.members], context=context, centroids=centroids)
        assert centroids is not None and first.ivf is not None and second.ivf is not None
        flat = cls.of([*first.members, *second.members], context=context)
        ivf = faiss.clone_index(first.ivf)
        ivf.merge_from(faiss.clone_index(second.ivf), len(first))  # second's labels shifted past first's rows
        # Not tuned again (200 exact queries over the joined rows would cost seconds at a million): the same lists
        # probed over the union find each half's neighbours as well as in that half, so the larger nprobe holds.
        nprobe = max(int(first.ivf_params["nprobe"]), int(second.ivf_params["nprobe"]))
        return flat.with_ivf(ivf, centroids, nprobe=nprobe)

    def with_ivf(self, ivf: faiss.Index, centroids: Centroids, *, nprobe: int | None = None) -> Pool:
        """This pool with ``ivf`` (filled with its rows, labels = rows) and ``nprobe`` (default: tuned on its rows
        as a big segment tunes its own)."""
        params: dict[str, Any] = {"quantizer": centroids.quantizer, "nlist": int(faiss.extract_index_ivf(ivf).nlist)}
        if nprobe is None:
            tuner = IvfVectorIndex(np.arange(len(self.rows), dtype=np.int64), self.rows, ivf, dict(params))
            params.update(tuner._tune_nprobe(np.random.default_rng(0)))
        else:
            params["nprobe"] = nprobe
        return Pool(
            self.members, self.postings, self.part_postings, self.rows, self.ids, ivf, params, centroids_key(centroids)
        )


def centroids_key(centroids: Centroids | None) -> str | None:
    """A short fingerprint of ``centroids`` (None for none): pools built from other centroids are not reused."""
    return None if centroids is None else hashlib.sha256(centroids.data).hexdigest()[:16]


def concat_postings(sources: Sequence[Postings]) -> Postings:
    """The postings of ``sources`` one after the other (positions offset, a union vocabulary): ``merge_postings``
    without deletion masks, and cheaper — one dict pass per source vocabulary and no sort: each source's postings
    are already grouped by term, so every term's block of each source is copied straight to its place (within a
    term, sources in order, each source's positions ascending, as the CSC order wants)."""
    # the union vocabulary in first-seen order, then each source's term ids, by C-level dict operations (the
    # small segments' vocabularies overlap: most terms are seen many times)
    union = dict.fromkeys(itertools.chain.from_iterable(p.terms for p in sources))
    lookup = {term: i for i, term in enumerate(union)}
    remaps = [np.fromiter(map(lookup.__getitem__, p.terms), np.int64, len(p.terms)) for p in sources]
    lengths = np.concatenate([p.lengths for p in sources]) if sources else np.zeros(0, np.float32)
    if not lookup:
        return Postings.from_arrays((), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), lengths)
    counts = np.zeros(len(lookup), dtype=np.int64)
    for postings, remap in zip(sources, remaps, strict=True):
        counts[remap] += np.diff(postings.indptr)  # a source's term ids are distinct
    indptr = np.zeros(len(lookup) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    docs = np.empty(int(indptr[-1]), dtype=np.int32)
    tf = np.empty(int(indptr[-1]), dtype=np.float32)
    fill = indptr[:-1].copy()  # where each term's next block goes
    offset = 0
    for postings, remap in zip(sources, remaps, strict=True):
        own = np.asarray(postings.indptr)
        sizes = np.diff(own)
        dest = np.repeat(fill[remap] - own[:-1], sizes) + np.arange(int(own[-1]), dtype=np.int64)
        docs[dest] = postings.docs + offset
        tf[dest] = postings.tf
        fill[remap] += sizes
        offset += len(postings)
    return Postings.from_arrays(list(lookup), indptr, docs, tf, lengths)  # dict order = term id order


def plan_pools(
    segments: Sequence[Segment], previous: Sequence[Pool], *, context: bool, centroids: Centroids | None = None
) -> tuple[list[Pool], int]:
    """The pools of ``segments`` (the poolable segments of a view), reusing ``previous`` pools whose members are all
    among them (and that were built from the same ``centroids``, or flat when there are none); returns the pools and
    how many passages had to be pooled anew (what this version paid)."""
    present = {str(s.path): s for s in segments}
    pools: list[Pool] = []
    covered: set[str] = set()
    built_from = centroids_key(centroids)
    for pool in previous:
        if (pool.part_postings is None and context) or pool.centroids_key != built_from:
            continue
        if all(key in present and key not in covered for key in pool.keys):
            pools.append(pool)
            covered.update(pool.keys)
    pooled_now = 0
    fresh = [s for key, s in present.items() if key not in covered]
    if fresh:
        pools.append(Pool.of(fresh, context=context, centroids=centroids))
        pooled_now += len(pools[-1])
    pools.sort(key=len, reverse=True)
    while len(pools) > 1 and len(pools[-2]) < 2 * len(pools[-1]):
        last, second = pools.pop(), pools.pop()
        joined = Pool.join(second, last, context=context, centroids=centroids)
        pooled_now += len(joined)
        pools.append(joined)
        pools.sort(key=len, reverse=True)
    return pools, pooled_now
