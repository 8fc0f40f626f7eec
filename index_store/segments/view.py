"""A point-in-time view over an ordered list of segments, each with its deletion mask: the reader surface.

Positions: the concatenation of the segments' positions, in segment order (segments are ordered by id range and
merges only merge adjacent segments, so the concatenated ids are globally sorted and ``np.searchsorted`` works).
Deleted positions stay in the position space — nothing the size of the index is rebuilt per version — but score 0,
are never returned by ``top``, by the vector search or by a lookup.

What a new view costs: per segment, O(1) sums plus, for a segment with deletions, a pass over its (small) set of
deleted positions. BM25 document frequencies are computed per query term from the segments' postings and masks
(the postings of the query terms are read anyway to score them), N and avgdl once per view. Arrays of the whole
position space (``passage_ids``, ``doc_of``, the part layout, ...) are concatenated on first use and cached in the
view (memcpy speed: a few ms at 1M passages) — the searcher of a version asks for them once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from citesearch.part_evidence import PartLayout
from index_store.keyword import KeywordSettings
from index_store.segments.pool import Pool, plan_pools, poolable
from index_store.segments.postings import CollectionStats, Postings, QueryAnalyzer, score_segments
from index_store.segments.segment import Segment
from index_store.segments.vectors import Centroids, SegmentVectors
from index_store.sqlite_store import StoredDocument, StoredPassage
from index_store.token_vectors import StoredTokens, TokenProjection
from index_store.vectors.base import VectorHits


@dataclass(frozen=True, slots=True)
class SegmentState:
    """One segment of a view: the segment, its deleted positions (bool mask or None) and what they imply."""

    segment: Segment
    deleted: np.ndarray | None  # bool per position, None when nothing is deleted
    doc_deleted: np.ndarray | None  # bool per local document
    part_deleted: np.ndarray | None  # bool per local part
    live: int
    live_length: float
    live_parts: int
    live_part_length: float

    @classmethod
    def of(cls, segment: Segment, deleted: np.ndarray | None) -> SegmentState:
        if deleted is not None:
            deleted = np.asarray(deleted, dtype=bool)
            if deleted.shape != (len(segment),):
                raise ValueError(
                    f"segment {segment.name}: deletion mask of {deleted.shape}, expected ({len(segment)},)"
                )
            gone = np.flatnonzero(deleted)
            if len(gone) == 0:
                deleted = None
        if deleted is None:
            return cls(
                segment,
                None,
                None,
                None,
                len(segment),
                segment.total_length,
                segment.n_parts,
                segment.part_total_length,
            )
        doc_deleted = np.zeros(segment.n_documents, dtype=bool)
        doc_deleted[segment.doc_of[gone]] = True
        part_deleted = doc_deleted[segment.part_doc]
        length = segment.total_length
        if segment.postings is not None:
            length -= float(np.asarray(segment.postings.lengths)[gone].sum(dtype=np.float64))
        part_length = segment.part_total_length
        if segment.part_postings is not None:
            part_length -= float(np.asarray(segment.part_postings.lengths)[part_deleted].sum(dtype=np.float64))
        return cls(
            segment,
            deleted,
            doc_deleted,
            part_deleted,
            len(segment) - len(gone),
            length,
            int(segment.n_parts - np.count_nonzero(part_deleted)),
            part_length,
        )


class SegmentedView:
    """Search and lookups over ``[(Segment, deleted mask or None), ...]`` (ordered by passage id range).

    It offers what ``citesearch.search`` reads of ``reader.keyword`` / ``reader.vectors`` / the reader itself:
    ``view.keyword`` (this object: ``passage_ids``, ``positions``, ``scores``, ``context_scores``, ``top``,
    ``search``, ``settings``, ``context.part_of``, ``documents``, ``len``), ``view.vectors`` (``vectors_for``,
    ``dim``, ``search``, ``all_vectors``), ``search_vectors``, ``passages``, ``document``, ``passage_ids``,
    ``iter_passages``, ``document_ids``, ``document_hashes``, ``document_keys``, ``part_layout``, ``part_vectors``.
    """

    def __init__(
        self,
        segments: Sequence[tuple[Segment, np.ndarray | None]],
        *,
        dim: int | None = None,
        pool: bool = True,
        previous: SegmentedView | None = None,
        centroids: Centroids | None = None,
    ) -> None:
        """``pool``: search the small segments as pools (``index_store.segments.pool``; False searches every
        segment on its own, same results). ``previous``: the view of the version before, whose pools (when it has
        built them, e.g. by ``warm()``) are reused for the segments both share; no reference to it is kept.
        ``centroids``: the index's trained IVF centroids, given once the index is big enough for IVF: pools then
        probe lists built from them (approximate, as the merged index's IVF is) instead of scanning every row."""
        # an empty segment (every document of a write deleted again, or a merge of deleted documents) holds no
        # position: left out, so the segments' first ids stay strictly increasing for ``locate``
        self.states = [SegmentState.of(segment, deleted) for segment, deleted in segments if len(segment)]
        self.segments = [state.segment for state in self.states]
        for before, after in zip(self.segments, self.segments[1:], strict=False):
            if len(before) and len(after) and before.ids[-1] >= after.ids[0]:
                raise ValueError(f"segments out of id order: {before.name} then {after.name}")
        dims = {segment.dim for segment, _ in segments}
        if len(dims) > 1:
            raise ValueError(f"segments of different dimensions: {sorted(dims)}")
        self.dim = dims.pop() if dims else int(dim or 0)
        settings = {segment.settings for segment in self.segments if len(segment)}
        if len(settings) > 1:
            raise ValueError("segments written with different keyword settings cannot be searched together")
        self.settings: KeywordSettings | None = settings.pop() if settings else None
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in self.segments])]).astype(np.int64)
        self.part_offsets = np.concatenate([[0], np.cumsum([s.n_parts for s in self.segments])]).astype(np.int64)
        self.doc_offsets = np.concatenate([[0], np.cumsum([s.n_documents for s in self.segments])]).astype(np.int64)
        self.first_ids = np.array([s.ids[0] for s in self.segments], np.int64)
        self.total = int(self.offsets[-1])
        self.live = sum(state.live for state in self.states)
        self.stats = CollectionStats(self.live, sum(state.live_length for state in self.states))
        self.part_stats = CollectionStats(
            sum(state.live_parts for state in self.states), sum(state.live_part_length for state in self.states)
        )
        self._cache_lock = threading.RLock()
        self._analyzer = QueryAnalyzer(self.settings) if self.settings is not None else None
        self._part_analyzer = QueryAnalyzer(self.settings.for_context()) if self.settings is not None else None
        self.documents = SegmentedDocuments(self)
        self.context = SegmentedContext(self) if self.settings is not None and self.settings.context else None
        self.vectors = SegmentedVectors(self)
        self._pooling = pool
        self.centroids = centroids
        self._inherited_pools = list(previous._sources.pools) if previous is not None and previous._built else []
        self._sources_cache: _Sources | None = None

    # -- what a query visits: big segments on their own, small ones pooled --------------------------------------------
    @property
    def _built(self) -> bool:
        return self._sources_cache is not None

    @property
    def _sources(self) -> _Sources:
        """Built on first use (a query or ``warm()``) and kept for the view's life (a view never changes)."""
        cached = self._sources_cache
        if cached is None:
            with self._cache_lock:
                if self._sources_cache is None:
                    self._sources_cache = self._build_sources()
                cached = self._sources_cache
        return cached

    @property
    def pools(self) -> tuple[Pool, ...]:
        """The pools this view searches its small segments as (built on first use)."""
        return tuple(self._sources.pools)

    @property
    def pooled_passages_built(self) -> int:
        """Passages this view had to pool itself (not reused from ``previous``): what pooling cost this version."""
        return self._sources.pooled_now

    def _build_sources(self) -> _Sources:
        context = self.context is not None
        chosen: list[int] = []
        if self._pooling and self.settings is not None:
            chosen = [i for i, segment in enumerate(self.segments) if poolable(segment, context=context)]
        if len(chosen) < 2:  # a pool of one segment saves nothing
            chosen = []
        pools, pooled_now = plan_pools(
            [self.segments[i] for i in chosen], self._inherited_pools, context=context, centroids=self.centroids
        )
        self._inherited_pools = []  # the previous version's pools not reused are released with it
        sources = _Sources(pools, pooled_now)
        in_pool = set(chosen)
        for i, state in enumerate(self.states):
            if i in in_pool:
                continue
            segment = state.segment
            sources.passages.append(segment.postings or Postings.empty(), state.deleted, int(self.offsets[i]))
            sources.parts.append(
                segment.part_postings or Postings.empty(), state.part_deleted, int(self.part_offsets[i])
            )
            sources.vectors.append(_VectorUnit(segment.vectors, state.deleted, np.asarray(segment.ids), state.live))
        index_of = {str(self.segments[i].path): i for i in chosen}
        for found in pools:
            members = [index_of[key] for key in found.keys]
            states = [self.states[i] for i in members]
            positions = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in members])
            parts = np.concatenate([np.arange(self.part_offsets[i], self.part_offsets[i + 1]) for i in members])
            deleted = _concat_masks([st.deleted for st in states], [len(st.segment) for st in states])
            part_deleted = _concat_masks([st.part_deleted for st in states], [st.segment.n_parts for st in states])
            sources.passages.append(found.postings, deleted, positions.astype(np.int64))
            if found.part_postings is not None:
                sources.parts.append(found.part_postings, part_deleted, parts.astype(np.int64))
            live = sum(st.live for st in states)
            pooled = SegmentVectors(found.rows, found.ivf, dict(found.ivf_params))
            sources.vectors.append(_VectorUnit(pooled, deleted, found.ids, live))
        return sources

    # -- the keyword surface -------------------------------------------------------------------------------------
    @property
    def keyword(self) -> SegmentedView | None:
        """``reader.keyword``: the view itself (None when the segments carry no keyword index)."""
        return self if self.settings is not None else None

    def __len__(self) -> int:
        return self.total

    @cached_property
    def passage_ids(self) -> np.ndarray:
        """Every position's passage id (deleted ones included), ascending."""
        return np.concatenate([s.ids for s in self.segments]) if self.segments else np.zeros(0, np.int64)

    @cached_property
    def live_mask(self) -> np.ndarray:
        """True at live positions."""
        parts = [np.ones(len(st.segment), bool) if st.deleted is None else ~st.deleted for st in self.states]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def positions(self, passage_ids: np.ndarray) -> np.ndarray:
        """Positions of passage ids in the score arrays (ids must be present)."""
        return np.searchsorted(self.passage_ids, passage_ids)

    def scores(self, query: str) -> np.ndarray:
        """BM25 of every position with the live statistics of the whole view; deleted positions 0."""
        if self._analyzer is None or self.settings is None:
            return np.zeros(self.total, dtype=np.float32)
        passages = self._sources.passages
        return score_segments(
            self._analyzer.terms(query),
            passages.postings,
            passages.deleted,
            passages.offsets,
            self.total,
            self.stats,
            self.settings.k1,
            self.settings.b,
        )

    def part_scores_for(self, query: str) -> np.ndarray:
        """BM25 of every part (view part ordinals) with the live part statistics; deleted parts 0."""
        assert self._part_analyzer is not None and self.settings is not None
        context = self.settings.for_context()
        parts = self._sources.parts
        return score_segments(
            self._part_analyzer.terms(query),
            parts.postings,
            parts.deleted,
            parts.offsets,
            int(self.part_offsets[-1]),
            self.part_stats,
            context.k1,
            context.b,
        )

    def context_scores(self, query: str) -> np.ndarray | None:
        """BM25 of each position's part (aligned with ``passage_ids``), or None without a context index."""
        return None if self.context is None else self.context.scores(query)

    def search(self, query: str, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        return self.top(self.scores(query), k, allowed_ids)

    def top(self, all_scores: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        """Top-k positive scores of a score array, optionally among ``allowed_ids``; deleted positions never."""
        if self.live < self.total:
            all_scores = np.where(self.live_mask, all_scores, 0.0)
        if allowed_ids is not None:
            mask = np.zeros(len(all_scores), dtype=bool)
            allowed = np.asarray(allowed_ids, dtype=np.int64)
            at = self._present_positions(allowed)
            mask[at] = True
            all_scores = np.where(mask, all_scores, 0.0)
        k = min(k, int(np.count_nonzero(all_scores > 0)))
        if k <= 0:
            return VectorHits(np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64))
        top = np.argpartition(-all_scores, k - 1)[:k]
        top = top[np.argsort(-all_scores[top], kind="stable")]
        return VectorHits(np.asarray(all_scores[top], np.float32)[None, :], self.passage_ids[top][None, :])

    def _present_positions(self, ids: np.ndarray) -> np.ndarray:
        if not self.total or not len(ids):
            return np.zeros(0, np.int64)
        at = np.minimum(np.searchsorted(self.passage_ids, ids), self.total - 1)
        found: np.ndarray = at[self.passage_ids[at] == ids]
        return found

    # -- locating ids --------------------------------------------------------------------------------------------
    def locate(self, passage_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id: its segment index and local position (-1, -1 when no segment holds it live)."""
        ids = np.asarray(passage_ids, dtype=np.int64)
        which = np.searchsorted(self.first_ids, ids, side="right") - 1
        local = np.full(len(ids), -1, dtype=np.int64)
        for s in np.unique(which[which >= 0]).tolist():
            chosen = which == s
            found = self.segments[s].positions_of(ids[chosen])
            deleted = self.states[s].deleted
            if deleted is not None:
                found = np.where((found >= 0) & ~deleted[np.maximum(found, 0)], found, -1)
            local[chosen] = found
        which = np.where(local >= 0, which, -1)
        return which, local

    def _grouped(self, passage_ids: Sequence[int]) -> dict[int, list[int]]:
        ids = np.asarray(list(passage_ids), dtype=np.int64)
        which, _ = self.locate(ids)
        groups: dict[int, list[int]] = {}
        for pid, s in zip(ids.tolist(), which.tolist(), strict=True):
            if s >= 0:
                groups.setdefault(s, []).append(pid)
        return groups

    # -- the store -----------------------------------------------------------------------------------------------
    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        """Live passages in the order asked for; ids that do not exist (or are deleted) are left out."""
        found: dict[int, StoredPassage] = {}
        for s, ids in self._grouped(passage_ids).items():
            found.update((p.passage_id, p) for p in self.segments[s].passages(ids))
        return [found[int(i)] for i in passage_ids if int(i) in found]

    @cached_property
    def token_projection(self) -> TokenProjection | None:
        """The basis of the token codes: the newest segment's that holds codes (every write and merge of an index
        reuses the first one, so they agree unless a segment was rebuilt without its codes and written again)."""
        for segment in reversed(self.segments):
            if segment.token_projection is not None:
                return segment.token_projection
        return None

    def token_vectors(self, passage_ids: Sequence[int]) -> StoredTokens | None:
        """The projected token rows of these passages (None rows for those without codes in the basis), or None
        when no segment holds token codes."""
        projection = self.token_projection
        if projection is None:
            return None
        basis = projection.fingerprint
        which, local = self.locate(np.asarray(list(passage_ids), dtype=np.int64))
        rows: list[np.ndarray | None] = []
        for s, position in zip(which.tolist(), local.tolist(), strict=True):
            segment = self.segments[s] if s >= 0 else None
            tokens = None if segment is None or segment.token_basis != basis else segment.tokens
            found = None if tokens is None else tokens.rows(position)
            rows.append(found if found is not None and len(found) else None)
        return StoredTokens(projection, rows)

    def _document_home(self, doc_id: str) -> tuple[int, int] | None:
        """(segment index, local document ordinal) of the live copy of a document."""
        for s in range(len(self.segments) - 1, -1, -1):  # newest first: an update lives in a later segment
            ordinal = self.segments[s].document_ordinal(doc_id)
            if ordinal is None:
                continue
            doc_deleted = self.states[s].doc_deleted
            if doc_deleted is None or not doc_deleted[ordinal]:
                return s, ordinal
        return None

    def document(self, doc_id: str) -> StoredDocument | None:
        home = self._document_home(doc_id)
        return None if home is None else self.segments[home[0]].document(doc_id)

    def passage_ids_where(self, *, section: str | None = None, doc_id: str | None = None) -> np.ndarray:
        """Live passage ids, ascending, optionally of one section and/or document (``reader.passage_ids``)."""
        if doc_id is not None:
            home = self._document_home(doc_id)
            if home is None:
                return np.zeros(0, np.int64)
            return self.segments[home[0]].passage_ids_where(section=section, doc_id=doc_id)
        chunks = []
        for state in self.states:
            ids = state.segment.passage_ids_where(section=section)
            if state.deleted is not None and len(ids):
                ids = ids[~state.deleted[state.segment.positions_of(ids)]]
            chunks.append(ids)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)

    def iter_passages(self) -> Iterator[StoredPassage]:
        """Every live passage, ascending id."""
        for state in self.states:
            gone = set() if state.deleted is None else set(np.asarray(state.segment.ids)[state.deleted].tolist())
            for passage in state.segment.iter_passages():
                if passage.passage_id not in gone:
                    yield passage

    def document_ids(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        live = sorted(
            str(doc_id)
            for state in self.states
            for doc_id, gone in zip(
                state.segment.doc_ids.tolist(),
                (state.doc_deleted if state.doc_deleted is not None else np.zeros(state.segment.n_documents, bool)),
                strict=True,
            )
            if not gone
        )
        return live[offset:] if limit is None else live[offset : offset + limit]

    def document_hashes(self) -> dict[str, str]:
        hashes: dict[str, str] = {}
        for state in self.states:
            own = state.segment.document_hashes()
            if state.doc_deleted is not None:
                for doc_id, gone in zip(state.segment.doc_ids.tolist(), state.doc_deleted.tolist(), strict=True):
                    if gone:
                        own.pop(str(doc_id), None)
            hashes.update(own)
        return hashes

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        """For each passage id an integer equal for passages of one document (its view document ordinal); -1 for
        an id no live passage has."""
        which, local = self.locate(np.asarray(passage_ids, dtype=np.int64))
        keys = np.full(len(which), -1, dtype=np.int64)
        for s in np.unique(which[which >= 0]).tolist():
            chosen = which == s
            keys[chosen] = self.doc_offsets[s] + np.asarray(self.segments[s].doc_of)[local[chosen]]
        return keys

    # -- vectors -------------------------------------------------------------------------------------------------
    def search_vectors(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        return self.vectors.search(queries, k, allowed_ids)

    # -- part evidence -------------------------------------------------------------------------------------------
    @cached_property
    def _layout(self) -> PartLayout:
        segments = self.segments
        if not segments:
            empty = np.zeros(0, np.int64)
            return PartLayout(empty, empty, np.zeros(1, np.int64), empty)
        member_offsets = np.concatenate([[0], np.cumsum([len(s.part_members) for s in segments])])
        starts = [np.asarray(s.part_starts)[:-1] + member_offsets[i] for i, s in enumerate(segments)]
        return PartLayout(
            part_of=np.concatenate([np.asarray(s.part_of) + self.part_offsets[i] for i, s in enumerate(segments)]),
            members=np.concatenate([np.asarray(s.part_members) + self.offsets[i] for i, s in enumerate(segments)]),
            starts=np.concatenate([*starts, [member_offsets[-1]]]).astype(np.int64),
            lead=np.concatenate([np.asarray(s.part_lead) + self.offsets[i] for i, s in enumerate(segments)]),
        )

    def part_layout(self) -> PartLayout | None:
        """Which positions form each part and each part's lead position (``citesearch.part_evidence.PartLayout``),
        composed from the segments' stored ones; None without a part-level index."""
        return self._layout if self.context is not None else None

    def part_vectors(self) -> SegmentedPartVectors | None:
        """Each part's normalised mean vector, as stored per segment (duck-types ``PartVectors``: ``.means`` is
        indexed by view part ordinals, nothing of the whole index is copied)."""
        if self.context is None:
            return None
        return SegmentedPartVectors(ConcatRows([s.part_means for s in self.segments], self.part_offsets, self.dim))

    def warm(self) -> None:
        """Compute now what the first search would (the concatenated id and document arrays, the part layout)."""
        _ = self.passage_ids, self.live_mask, self.documents.doc_of, self.documents.cluster
        if self.context is not None:
            _ = self._layout
        for segment in self.segments:
            segment.document_ordinal("")
        _ = self._sources


def _concat_masks(masks: Sequence[np.ndarray | None], sizes: Sequence[int]) -> np.ndarray | None:
    if all(mask is None for mask in masks):
        return None
    return np.concatenate(
        [np.zeros(size, bool) if mask is None else mask for mask, size in zip(masks, sizes, strict=True)]
    )


@dataclass(slots=True)
class _KeywordSources:
    """What ``score_segments`` visits: per source its postings, deleted mask and where its positions go."""

    postings: list[Postings] = field(default_factory=list)
    deleted: list[np.ndarray | None] = field(default_factory=list)
    offsets: list[int | np.ndarray] = field(default_factory=list)

    def append(self, postings: Postings, deleted: np.ndarray | None, offset: int | np.ndarray) -> None:
        self.postings.append(postings)
        self.deleted.append(deleted)
        self.offsets.append(offset)


@dataclass(frozen=True, slots=True)
class _VectorUnit:
    """One dense search: a big segment's vectors, or a pool's stacked rows; ``ids`` ascending, one per row."""

    vectors: SegmentVectors
    deleted: np.ndarray | None
    ids: np.ndarray
    live: int

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of those of the (sorted, unique) ``ids`` this unit holds."""
        if not len(self.ids) or not len(ids):
            return np.zeros(0, np.int64)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        found: np.ndarray = at[self.ids[at] == ids]
        return found


@dataclass(slots=True)
class _Sources:
    """A view's search plan: its pools and the keyword and vector sources built from them."""

    pools: list[Pool]
    pooled_now: int
    passages: _KeywordSources = field(default_factory=_KeywordSources)
    parts: _KeywordSources = field(default_factory=_KeywordSources)
    vectors: list[_VectorUnit] = field(default_factory=list)


class ConcatRows:
    """Rows of several arrays addressed as one (``rows[int array]`` reads from the arrays that hold them)."""

    def __init__(self, arrays: Sequence[np.ndarray], offsets: np.ndarray, dim: int) -> None:
        self.arrays = list(arrays)
        self.offsets = offsets
        self.shape = (int(offsets[-1]), dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(which).tolist():
            chosen = which == s
            out[chosen] = np.asarray(self.arrays[s])[rows[chosen] - self.offsets[s]]
        return out


@dataclass(frozen=True, slots=True)
class SegmentedPartVectors:
    """``PartVectors`` of a view: ``means[parts]`` gives the (len(parts), dim) float32 mean vectors."""

    means: ConcatRows


class SegmentedContext:
    """``keyword.context`` of a view: the part-level scores and each position's part."""

    def __init__(self, view: SegmentedView) -> None:
        self._view = view

    @property
    def part_of(self) -> np.ndarray:
        return self._view._layout.part_of

    def scores(self, query: str) -> np.ndarray:
        view = self._view
        part_scores = view.part_scores_for(query)
        per_passage: np.ndarray = part_scores[self.part_of] if len(part_scores) else np.zeros(view.total, np.float32)
        if view.live < view.total:
            per_passage = np.where(view.live_mask, per_passage, np.float32(0))
        return per_passage


class SegmentedDocuments:
    """``keyword.documents`` of a view (the ``DocumentTable`` interface) over the segments' document rows. Document
    ordinals are view ordinals (segment order, then each segment's doc-id order); deleted documents keep their
    ordinal but belong to no cluster and no live position points to them."""

    def __init__(self, view: SegmentedView) -> None:
        self._view = view
        self._cache_lock = threading.RLock()

    def _concat(self, name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(s, name)) for s in self._view.segments])

    @cached_property
    def doc_ids(self) -> np.ndarray:
        return self._concat("doc_ids") if self._view.segments else np.zeros(0, dtype=str)

    @cached_property
    def published(self) -> np.ndarray:
        return self._concat("published") if self._view.segments else np.zeros(0, dtype="<U20")

    @cached_property
    def timestamps(self) -> np.ndarray:
        return self._concat("timestamps") if self._view.segments else np.zeros(0, np.float64)

    @cached_property
    def doc_of(self) -> np.ndarray:
        """Position -> view document ordinal."""
        view = self._view
        if not view.segments:
            return np.zeros(0, np.int64)
        return np.concatenate([np.asarray(s.doc_of) + view.doc_offsets[i] for i, s in enumerate(view.segments)])

    @cached_property
    def live_documents(self) -> np.ndarray:
        parts = [
            np.ones(st.segment.n_documents, bool) if st.doc_deleted is None else ~st.doc_deleted
            for st in self._view.states
        ]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    @cached_property
    def cluster(self) -> np.ndarray:
        """Document ordinal -> ordinal of the first live document with its cluster key (itself when deleted)."""
        keys = self._concat("cluster_key") if self._view.segments else np.zeros(0, np.int64)
        cluster = np.arange(len(keys), dtype=np.int64)
        live = np.flatnonzero(self.live_documents)
        if len(live):
            _, first, inverse = np.unique(keys[live], return_index=True, return_inverse=True)
            cluster[live] = live[first[inverse]]
        return cluster

    @cached_property
    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        cluster = self.cluster
        live = self.live_documents
        order = np.argsort(np.where(live, cluster, len(cluster)), kind="stable")
        order = order[: int(np.count_nonzero(live))]
        starts = np.searchsorted(cluster[order], np.arange(len(cluster) + 1))
        return order, starts

    def cluster_size(self, ordinal: int) -> int:
        _, starts = self._groups
        root = int(self.cluster[ordinal])
        return int(starts[root + 1] - starts[root])

    def cluster_doc_ids(self, ordinal: int) -> list[str]:
        """The doc ids of the ordinal's duplicate cluster, itself included, in document order."""
        order, starts = self._groups
        root = int(self.cluster[ordinal])
        return [str(self.doc_ids[i]) for i in sorted(order[starts[root] : starts[root + 1]].tolist())]

    @property
    def duplicate_documents(self) -> int:
        """Live documents that are a copy of an earlier one."""
        cluster = self.cluster
        return int(np.count_nonzero((cluster != np.arange(len(cluster))) & self.live_documents))


class SegmentedVectors:
    """``reader.vectors`` of a view."""

    def __init__(self, view: SegmentedView) -> None:
        self._view = view
        self.dim = view.dim

    def __len__(self) -> int:
        return self._view.live

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these (live) ids; KeyError naming ids no live passage has."""
        view = self._view
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not len(ids):
            return out
        which, local = view.locate(ids)
        if (which < 0).any():
            raise KeyError(f"ids not in the index: {ids[which < 0][:5].tolist()}")
        for s in np.unique(which).tolist():
            chosen = which == s
            out[chosen] = np.asarray(view.segments[s].vectors.rows[local[chosen]], dtype=np.float32)
        return out

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> VectorHits:
        """Exact-scored nearest live passages across all segments, best first, (queries, k) padded with -1/-inf."""
        view = self._view
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, view.live))
        all_scores, all_ids = [], []
        allowed = None if allowed_ids is None else np.unique(np.asarray(allowed_ids, dtype=np.int64))
        for unit in view._sources.vectors:  # big segments, then pools of small ones
            if unit.live == 0:
                continue
            rows = None
            if allowed is not None:
                rows = unit.rows_of(allowed)
                if not len(rows):
                    continue
            live = None if unit.deleted is None else ~unit.deleted
            scores, found = unit.vectors.search(queries, min(k, unit.live), live, rows)
            all_scores.append(scores)
            all_ids.append(np.where(found >= 0, unit.ids[np.maximum(found, 0)], -1))
        if not all_scores:
            return VectorHits(np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1))
        scores = np.concatenate(all_scores, axis=1)
        ids = np.concatenate(all_ids, axis=1)
        # ties broken by ascending id, so the order does not depend on which segment or pool a row sits in
        order = np.lexsort((ids, -scores), axis=1)[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return VectorHits(scores, ids)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live (id, vector) pair, ids ascending (reads every vector: for tools, not for searching)."""
        ids, rows = [], []
        for state in self._view.states:
            keep = slice(None) if state.deleted is None else ~state.deleted
            ids.append(np.asarray(state.segment.ids)[keep])
            rows.append(np.asarray(state.segment.vectors.rows)[keep])
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate(ids), np.concatenate(rows).astype(np.float32, copy=False)
