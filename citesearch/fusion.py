"""Fusing the dense and the BM25 ranking into one.

Both methods work on the union of the two candidate lists with *exact* scores from both retrievers for every
candidate (a dense candidate's BM25 score is looked up, a BM25 candidate's cosine is computed), rather than
treating "not in the other list" as a zero, which is what makes the convex combination behave on small lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np

FusionMethod = Literal["convex", "rrf"]
FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)


@dataclass(frozen=True, slots=True)
class FusionSettings:
    """How hybrid mode combines the rankings. Defaults chosen by measurement on SciFact train (see README)."""

    method: FusionMethod = "convex"
    dense_weight: float = 0.5  # convex: weight of the normalised dense score (BM25 gets 1 - weight)
    rrf_k: int = 60  # rrf: the usual damping constant
    candidates: int = 100  # how deep each retriever's list goes before fusing

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(FUSION_METHODS)}, got {self.method!r}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be within [0, 1], got {self.dense_weight}")
        if self.rrf_k < 1 or self.candidates < 1:
            raise ValueError("rrf_k and candidates must be at least 1")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list maps to all ones (every candidate is equally good)."""
    if scores.size == 0:
        return scores.astype(np.float64)
    low, high = float(scores.min()), float(scores.max())
    if high - low < 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def convex_combination(dense: np.ndarray, bm25: np.ndarray, dense_weight: float) -> np.ndarray:
    """``w * minmax(dense) + (1 - w) * minmax(bm25)`` over aligned candidate score arrays."""
    return dense_weight * min_max(dense) + (1.0 - dense_weight) * min_max(bm25)


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry when sorted by descending score (ties keep input order)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def reciprocal_rank_fusion(dense: np.ndarray, bm25: np.ndarray, k: int, dense_weight: float = 0.5) -> np.ndarray:
    """Weighted RRF over the candidates' ranks by each score (``2 * w`` keeps w=0.5 the classic unweighted form)."""
    return 2 * dense_weight / (k + ranks_of(dense)) + 2 * (1 - dense_weight) / (k + ranks_of(bm25))


def fuse(dense: np.ndarray, bm25: np.ndarray, settings: FusionSettings) -> np.ndarray:
    if settings.method == "rrf":
        return reciprocal_rank_fusion(dense, bm25, settings.rrf_k, settings.dense_weight)
    return convex_combination(dense, bm25, settings.dense_weight)
