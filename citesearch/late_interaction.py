"""Late interaction: reranking the hybrid's top documents by ColBERT's MaxSim, from the index's own model.

A passage's MaxSim is the mean, over the query's tokens, of each token's best cosine among the passage's tokens,
all of them the model's contextual token vectors (its output before mean pooling). It is soft, in-context term
matching that neither the pooled cosine nor BM25 sees. all-MiniLM-L6-v2 was trained on pooled vectors only, yet on
SciFact train the rerank lifts nDCG@10 from 0.7482 to about 0.756 (docs/retrieval.md, "Late interaction").

The short profile reranks by default, on the token vectors the index keeps (``index_store.token_vectors``: int8
codes in a 64-dimensional basis, written with the passages): a query then costs one more model call, for its own
tokens. A passage without stored codes (an index built before they were kept, a Milvus collection, a segment rebuilt
after damage) is encoded from its text per query, about 6 ms of wall time each on 2 cores (int8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from citesearch.fusion import z_score
from index_store import StoredPassage
from index_store.shapes import searchable_title
from index_store.token_vectors import StoredTokens
from indexer.chunker import ChunkerSettings, embed_text_for


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that also gives each text's contextual token vectors (``SentenceTransformerEmbedder``)."""

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def rerank_texts(passages: Sequence[StoredPassage]) -> list[str]:
    """What the rerank encodes for each stored passage: its text as the default chunking embeds it, with its
    searchable title in front. (An index built with CITESEARCH_TITLE_IN_EMBEDDING off still reranks, on text with
    a title its vectors never saw.)"""
    chunking = ChunkerSettings()
    return [embed_text_for(searchable_title(p.title, p.metadata), p.text, chunking) for p in passages]


def rows_in_basis(stored: StoredTokens, encoded: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The passages' token rows in the store's basis: the stored ones, and for the passages without codes (in
    order, one ``encoded`` token matrix each) their token vectors encoded now, put through the same int8 codes, so
    that both score on one footing against the query projected by ``stored.projection.project``."""
    rows = list(stored.rows)
    missing = [i for i, row in enumerate(rows) if row is None]
    for i, tokens in zip(missing, encoded, strict=True):
        rows[i] = stored.projection.codes_to_rows(tokens)
    return [row for row in rows if row is not None]


def maxsim(query: np.ndarray, passages: Sequence[np.ndarray]) -> np.ndarray:
    """Each passage's MaxSim against the query: the mean over the query's token vectors (rows, unit length) of the
    best inner product with any of the passage's token vectors. One matrix product over all passages at once."""
    if not passages:
        return np.zeros(0, dtype=np.float32)
    if any(len(p) == 0 for p in passages):
        raise ValueError("a passage has no token vectors; MaxSim needs at least one")
    tokens = np.concatenate(passages).astype(np.float32, copy=False)
    starts = np.cumsum([0, *(len(p) for p in passages[:-1])])
    similarities = query.astype(np.float32, copy=False) @ tokens.T  # query tokens x all passage tokens
    best = np.maximum.reduceat(similarities, starts, axis=1)  # query tokens x passages
    return np.asarray(best.mean(axis=0), dtype=np.float32)


def top_document_passages(fused: np.ndarray, documents: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the candidates whose document is among the ``depth`` best, a document ranking at its best
    passage's fused score (``documents``: any per-candidate document key)."""
    order = np.argsort(-fused, kind="stable")
    top: dict[object, None] = {}
    for document in documents[order].tolist():
        top.setdefault(document, None)
        if len(top) == depth:
            break
    return np.flatnonzero(np.isin(documents, np.array(list(top), dtype=documents.dtype)))


def reranked_order(
    fused: np.ndarray, selected: np.ndarray, late: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' new scores and order: the ``selected`` ones (the passages of the top documents, aligned
    with ``late``) score ``fused + weight × z(late)``, on the convex fusion's own scale, and come first; the rest
    keep their fused score and order below them, as a rescoring window does."""
    scores = np.asarray(fused, dtype=np.float64).copy()
    scores[selected] += weight * z_score(late)
    outside = np.ones(len(fused), dtype=bool)
    outside[selected] = False
    return scores, np.lexsort((-scores, outside))  # the last key sorts first: the window, then the rest
