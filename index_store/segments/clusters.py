"""Duplicate clusters across segments: a new document's cluster key, found against the live documents of a view.

A segment stores each document's MinHash signature (of its article text's word shingles, ``index_store.duplicates``)
and its cluster key, an int64 label shared by the documents of one cluster: the first passage id of the document that
founded it. ``ClusterIndex`` is an LSH over the live documents' stored signatures, built once per writer (or
reader) from a view and then kept up to date with ``add``/``remove`` — never rebuilt over the whole index per write.

Semantics are ``duplicate_clusters``'s: a document joins the cluster of a live document whose estimated Jaccard
similarity reaches the threshold; the earliest cluster wins when it matches several, and the first document of a
cluster to rank stands for it at search time. One difference, because written segments are immutable: two existing
clusters that a new document bridges are not merged (the new document joins the earlier one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from datasketch import MinHash, MinHashLSH

from index_store.duplicates import DEFAULT_THRESHOLD, NUM_PERM, SHINGLE_WORDS, _shingles, _signature
from index_store.segments.segment import DocumentLike, NewDocument, Segment
from index_store.segments.view import SegmentedView


def article_text(doc: DocumentLike) -> str:
    """The text duplicate detection compares: the document's article units ("\\n" before each, as the keyword
    index's document table does)."""
    text = doc.text
    return "".join("\n" + text[unit.char_start : unit.char_end] for unit in doc.units if unit.section == "article")


class ClusterIndex:
    """MinHash LSH over live documents: doc_id -> (signature, cluster key)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, shingle_words: int = SHINGLE_WORDS) -> None:
        self.threshold = threshold
        self.shingle_words = shingle_words
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._entries: dict[str, tuple[MinHash, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def of(cls, view: SegmentedView, threshold: float | None = None, shingle_words: int | None = None) -> ClusterIndex:
        settings = view.settings
        index = cls(
            threshold if threshold is not None else (settings.duplicate_threshold if settings else DEFAULT_THRESHOLD),
            shingle_words
            if shingle_words is not None
            else (settings.duplicate_shingle_words if settings else SHINGLE_WORDS),
        )
        for state in view.states:
            index.add_segment(state.segment, state.doc_deleted)
        return index

    def add_segment(self, segment: Segment, doc_deleted: np.ndarray | None = None) -> None:
        """Index the (live) documents of a segment from their stored signatures."""
        signatures = np.asarray(segment.minhash)
        scheme = MinHash(num_perm=NUM_PERM, seed=1).scheme  # the scheme _signature used to make them
        for ordinal in np.flatnonzero(np.asarray(segment.has_signature)).tolist():
            if doc_deleted is not None and doc_deleted[ordinal]:
                continue
            signature = MinHash(num_perm=NUM_PERM, seed=1, hashvalues=signatures[ordinal], scheme=scheme)
            self._insert(str(segment.doc_ids[ordinal]), signature, int(segment.cluster_key[ordinal]))

    def remove(self, doc_ids: Sequence[str]) -> None:
        """Forget deleted (or replaced) documents."""
        for doc_id in doc_ids:
            if self._entries.pop(doc_id, None) is not None:
                self._lsh.remove(doc_id)

    def _insert(self, doc_id: str, signature: MinHash, key: int) -> None:
        self.remove([doc_id])
        self._lsh.insert(doc_id, signature)
        self._entries[doc_id] = (signature, key)

    def assign(self, documents: Sequence[NewDocument]) -> list[NewDocument]:
        """The documents with their ``cluster_key`` set, in order; each is added to the index, so a later document
        of the same batch can join an earlier one. A document already indexed under its doc id (an update) is
        replaced. A document too short to compare founds its own cluster."""
        out = []
        for item in documents:
            doc_id = item.doc.doc_id
            self.remove([doc_id])
            own_key = int(item.passage_ids[0]) if len(item.passage_ids) else -1
            shingles = _shingles(article_text(item.doc), self.shingle_words)
            if not shingles:
                out.append(replace(item, cluster_key=own_key))
                continue
            signature = _signature(shingles)
            matches = [
                self._entries[other][1]
                for other in self._lsh.query(signature)
                if signature.jaccard(self._entries[other][0]) >= self.threshold
            ]
            key = min(matches) if matches else own_key
            self._insert(doc_id, signature, key)
            out.append(replace(item, cluster_key=key))
        return out
