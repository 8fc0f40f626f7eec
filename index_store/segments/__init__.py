"""Immutable index segments and the view that searches a list of them (issue 16; docs/segments.md).

The API seg-store (versions, the write path, readers) builds on:

Writing a segment
    ``Segment.build(path, [NewDocument(doc, passage_ids, passages, vectors, cluster_key), ...], dim=,
    settings=KeywordSettings | None, centroids=Centroids | None) -> Segment``: writes ``path`` (must not exist)
    through a temporary sibling folder, fsyncs, renames into place, returns it loaded. ``doc`` / ``passages`` are
    the same duck types ``IndexWriter.upsert_document`` takes; ids are the writer's global, increasing passage ids.
    ``cluster_key``: from ``ClusterIndex.assign`` (None = clustered among the segment's own documents).
    ``centroids`` (``train_centroids(sample, expected_total, "sq8"|"flat")``): segments of at least
    ``IVF_MIN_VECTORS`` rows get an IVF index from them; smaller ones (and any without) are searched exactly.

Loading
    ``Segment.load(path, verify=True)``: memory-maps the arrays and vectors, opens the SQLite store immutable;
    ``verify`` checks every file against ``segment.json`` and raises ``IndexCorruptError`` naming the file.
    A Segment is immutable and may be shared by the views of several versions (load a new version's new segment
    only). ``segment.close()`` closes its SQLite connection.

Deletions
    A bool mask over a segment's positions (``segment.ids`` order), True = deleted; ``deletion_mask(segment,
    passage_ids)`` / ``document_deletion_mask(segment, doc_ids)`` make one, ``pack_mask`` / ``unpack_mask``
    store one (numpy packbits, little bit order). Deleting a document = all of its passages.

Searching
    ``SegmentedView([(segment, mask or None), ...])`` (ordered by id range) offers the reader surface
    ``citesearch.search`` uses: ``view.keyword`` (``passage_ids``, ``positions``, ``scores``,
    ``context_scores``, ``top``, ``search``, ``settings``, ``context.part_of``, ``documents``, ``len``),
    ``view.vectors`` (``vectors_for``, ``dim``, ``search``, ``all_vectors``), ``search_vectors``,
    ``passages``, ``document``, ``passage_ids_where(section=, doc_id=)`` (the reader's ``passage_ids``),
    ``iter_passages``, ``document_ids``, ``document_hashes``, ``document_keys``, ``part_layout()``,
    ``part_vectors()``, ``warm()``. BM25 uses the live statistics of the whole view, so scores equal a fresh
    single build of the same live passages.
    Small segments (``POOL_MAX_SEGMENT_PASSAGES``) are searched as pools (``index_store.segments.pool``): build the
    view of a new version as ``SegmentedView(entries, previous=old_view)`` and ``warm()`` it before swapping it
    in, so only the new segments are pooled; ``pool=False`` searches every segment on its own (same results).

Merging
    ``merge_segments(path, [(segment, mask), ...], centroids=None) -> Segment``: adjacent segments into one,
    deleted passages dropped, nothing re-tokenised or re-trained. ``plan_merges([SegmentSize(passages, deleted),
    ...], MergePolicy())`` (tiered) says which adjacent runs ``[start, end)`` to merge; ``plan_optimize`` merges
    everything into one.

Duplicates
    ``ClusterIndex.of(view)`` (an LSH over the live documents' stored MinHash signatures, built once per writer and
    kept up to date with ``add_segment`` / ``remove(doc_ids)``): ``assign([NewDocument, ...])`` returns them with
    their cluster keys set (``index_store.duplicates`` semantics); call it before ``Segment.build``.
"""

from index_store.segments.clusters import ClusterIndex, article_text
from index_store.segments.merge import merge_segments
from index_store.segments.policy import MergePolicy, SegmentSize, allowed_segment_count, plan_merges, plan_optimize
from index_store.segments.pool import POOL_MAX_SEGMENT_PASSAGES, Pool
from index_store.segments.postings import CollectionStats, Postings, QueryAnalyzer
from index_store.segments.segment import (
    NewDocument,
    Segment,
    deletion_mask,
    document_deletion_mask,
    pack_mask,
    unpack_mask,
)
from index_store.segments.vectors import IVF_MIN_VECTORS, Centroids, train_centroids
from index_store.segments.view import SegmentedView

__all__ = [
    "IVF_MIN_VECTORS",
    "POOL_MAX_SEGMENT_PASSAGES",
    "Centroids",
    "ClusterIndex",
    "CollectionStats",
    "MergePolicy",
    "NewDocument",
    "Pool",
    "Postings",
    "QueryAnalyzer",
    "Segment",
    "SegmentSize",
    "SegmentedView",
    "allowed_segment_count",
    "article_text",
    "deletion_mask",
    "document_deletion_mask",
    "merge_segments",
    "pack_mask",
    "plan_merges",
    "plan_optimize",
    "train_centroids",
    "unpack_mask",
]
