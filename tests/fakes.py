"""Test doubles shared by the tests: a deterministic bag-of-words embedder that needs no model.

Not in production code: nothing outside the tests embeds with it. It implements ``indexer.embedder.Embedder``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")


class HashingEmbedder:
    """A deterministic bag-of-words embedder for unit tests: no model, instant, same interface.

    Texts sharing words get similar vectors, so ranking tests still mean something; it lives with the tests, never in
    production.
    """

    def __init__(self, dim: int = 64, max_tokens: int = 256, name: str = "hashing-test") -> None:
        self.name = name
        self.dim = dim
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                vectors[row, self.bucket(word)] += 1.0
            norm = np.linalg.norm(vectors[row])
            vectors[row] = vectors[row] / norm if norm else 1.0 / np.sqrt(self.dim)
        return vectors

    def bucket(self, word: str) -> int:
        """The dimension a word hashes to."""
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest[:4], "little") % self.dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(text)) + 2 for text in texts]  # +2 like [CLS] and [SEP]


class HashingTokenEmbedder(HashingEmbedder):
    """``HashingEmbedder`` that also gives token vectors: each word a one-hot row in its hashed dimension, so a
    passage's MaxSim is the share of the query's words it contains (exact matching, easy to reason about)."""

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        tokens = []
        for text in texts:
            words = _WORD.findall(text.lower()) or [""]
            rows = np.zeros((len(words), self.dim), dtype=np.float32)
            for row, word in enumerate(words):
                rows[row, self.bucket(word)] = 1.0
            tokens.append(rows)
        return tokens
