"""Duplicate stories: documents whose article text is (nearly) the same, found at index time with MinHash LSH.

Syndicated copies of one story (the same wire text on several sites, a story republished under a new headline)
would otherwise fill a page of results with the same text. Each document's article body (its title left out: a
republished story often has a new one) is shingled into word 3-grams; datasketch's MinHash LSH finds the pairs
whose estimated Jaccard similarity reaches ``threshold``, and connected pairs form one cluster. Search then shows
one hit per cluster with "also in N documents" (``citesearch.search``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

SHINGLE_WORDS = 3  # word 3-grams: a copy with a changed phrase or an appended credit line still shares most
NUM_PERM = 64  # 64 permutations: Jaccard estimates within about ±0.06, enough to tell copies from related stories
DEFAULT_THRESHOLD = (
    0.7  # estimated Jaccard of the shingle sets; related but separately written stories share few 3-grams
)
MIN_WORDS = 20  # shorter texts (a one-line bio, a stub) are too short to call anything a copy of them
_WORD = re.compile(r"\w+")


def _shingles(text: str, size: int) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < MIN_WORDS:
        return set()
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def _signature(shingles: set[bytes]) -> MinHash:
    signature = MinHash(num_perm=NUM_PERM, seed=1)  # a fixed seed: the same corpus always clusters the same way
    signature.update_batch(list(shingles))
    return signature


def duplicate_clusters(
    texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, shingle_words: int = SHINGLE_WORDS
) -> np.ndarray:
    """For each text, the index of the first text of its cluster (itself when it has no duplicate)."""
    parent = np.arange(len(texts), dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    signatures: dict[int, MinHash] = {}
    for i, text in enumerate(texts):
        shingles = _shingles(text, shingle_words)
        if not shingles:
            continue
        signature = _signature(shingles)
        for other in lsh.query(signature):
            # LSH returns candidates; keep those whose estimated similarity really reaches the threshold
            if signature.jaccard(signatures[other]) >= threshold:
                a, b = root(i), root(other)
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, signature)
        signatures[i] = signature
    return np.array([root(i) for i in range(len(texts))], dtype=np.int64)
