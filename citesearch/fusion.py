"""Fusing the dense and the keyword evidence for each candidate passage into one score.

Three signals per candidate passage: its cosine to the query (dense), its own BM25 score (bm25), and the BM25 score
of the part it belongs to — the article body, the author bio or the one comment (context). The context signal is
passage-to-document evidence: a passage inside a part that is about the query as a whole is more likely to answer
it, which passage-level BM25 alone cannot see. Two more are dense evidence about the whole part: the cosine of
its lead passage and of its mean passage vector (``citesearch.part_evidence``), so a long article ranks where its
content as a whole says, not only by its best 160-token passage (docs/retrieval.md).

Fusion works on the union of the retrievers' candidate lists with *exact* scores from every signal for every
candidate (a dense candidate's BM25 score is looked up, a BM25 candidate's cosine is computed), rather than treating
"not in the other list" as a zero, which is what makes score combination behave on small lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal, get_args

import numpy as np

FusionMethod = Literal["convex", "rrf"]
FUSION_METHODS: tuple[FusionMethod, ...] = get_args(FusionMethod)
Normalization = Literal["zscore", "minmax"]
NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)
# Which weights a convex fusion uses: "auto" picks "short" or "long" by the index's document length (below);
# "custom" keeps the weights as given.
FusionProfile = Literal["auto", "short", "long", "custom"]
FUSION_PROFILES: tuple[FusionProfile, ...] = get_args(FusionProfile)


@dataclass(frozen=True, slots=True)
class ProfileWeights:
    """The convex weights of one profile: dense, bm25, context, lead, part mean (``FusionSettings``)."""

    dense_weight: float
    bm25_weight: float
    context_weight: float
    lead_weight: float
    part_mean_weight: float


# Chosen by measurement (docs/retrieval.md), each the best point of a grid over the development set of its kind:
# "short" on SciFact train (abstracts, 2.5 passages a document), "long" on the RealTimeQA news dev set (full
# articles, 15 passages a document). On long articles the whole-part BM25 carries what the article as a whole
# says and a single passage's cosine is one window of many, so the keyword side weighs more; on short documents
# the passage is most of the document and the cosine weighs as much as the part's BM25.
# The five convex weights by name: the fields of ``ProfileWeights`` and of ``FusionSettings``.
WEIGHT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProfileWeights))
PROFILE_WEIGHTS: dict[str, ProfileWeights] = {
    "short": ProfileWeights(0.4, 0.1, 0.4, 0.0, 0.2),
    "long": ProfileWeights(0.2, 0.5, 0.4, 0.15, 0.1),
}
# The late-interaction rerank of each profile: (documents reranked, weight of the MaxSim z-score). "short" reranks
# the top 30 documents at weight 1.5 (SciFact train 0.7482 -> 0.7564 on exact token vectors, every fold of a 5-fold
# cross-validation picking 1.5; 0.7512 on the stored int8 codes); "long" does not rerank: no gain on news (0.8290-0.8407
# against 0.8433 for weights 0.2-1; docs/retrieval.md, "Late interaction"). Applied only where the index keeps
# token vectors (``index_store.token_vectors``): encoding candidates per query costs 36x the latency.
PROFILE_RERANK: dict[str, tuple[int, float]] = {"short": (30, 1.5), "long": (0, 1.0)}
# "auto" takes "long" from this many passages per document on average (about 1000 tokens of text): the geometric
# middle of the two development sets (2.5 and 15), far from both.
LONG_DOCUMENT_PASSAGES = 6.0


@dataclass(frozen=True, slots=True)
class FusionSettings:
    """How hybrid mode combines the signals. The default weights are the "short" profile; ``profile`` "auto" (what
    ``citesearch.settings`` asks for) picks "short" or "long" by the index's document length, each chosen by
    measurement on its development set (docs/retrieval.md).

    ``convex``: ``dense_weight * n(dense) + bm25_weight * n(bm25) + context_weight * n(context) + lead_weight *
    n(lead) + part_mean_weight * n(part_mean)`` where ``n`` is ``normalization`` over the candidates. ``rrf``:
    weighted reciprocal rank fusion of the dense ranking and the keyword ranking (BM25 plus context),
    ``dense_weight`` against ``1 - dense_weight``.
    """

    method: FusionMethod = "convex"
    dense_weight: float = 0.4
    bm25_weight: float = 0.1
    context_weight: float = 0.4
    normalization: Normalization = "zscore"
    rrf_k: int = 60  # rrf: the usual damping constant
    # 1000, not 300: news articles hold ~15 passages each, so 300 passages reach too few documents (Recall@100)
    candidates: int = 1000  # how deep each retriever's list goes before fusing
    lead_weight: float = 0.0  # cosine of the document's first passage (convex only)
    part_mean_weight: float = 0.2  # cosine of the part's mean passage vector (convex only)
    # The recency prior, only for requests that ask for it (``recency``): weight and half-life in days
    recency_weight: float = 0.2
    recency_half_life_days: float = 7.0  # chosen on news dev with each question's date as as_of (docs/retrieval.md)
    # Late interaction (citesearch.late_interaction): rerank the passages of the top ``rerank_depth`` documents by
    # fused score + ``rerank_weight`` x z(MaxSim); 0: off. None: the profile's (``PROFILE_RERANK``; off for
    # "custom"), filled in by ``resolved``.
    rerank_depth: int | None = None
    rerank_weight: float | None = None
    # The weights above as given ("custom"), a named profile's, or "auto": the profile the index's document length
    # calls for, resolved by ``resolved`` when a searcher opens an index; ``chosen`` and ``reason`` say what it took.
    profile: FusionProfile = "custom"
    chosen: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(FUSION_METHODS)}, got {self.method!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"fusion normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}"
            )
        for name in WEIGHT_NAMES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.dense_weight + self.bm25_weight + self.context_weight <= 0:
            raise ValueError("at least one of dense_weight, bm25_weight, context_weight must be above 0")
        if not 0.0 <= self.recency_weight <= 1.0 or self.recency_half_life_days <= 0:
            raise ValueError("recency_weight must be within [0, 1] and recency_half_life_days above 0")
        if (self.rerank_depth or 0) < 0 or (self.rerank_weight or 0) < 0:
            raise ValueError("rerank_depth and rerank_weight must be at least 0")
        if self.rrf_k < 1 or self.candidates < 1:
            raise ValueError("rrf_k and candidates must be at least 1")
        if self.profile not in FUSION_PROFILES:
            raise ValueError(f"fusion profile must be one of {', '.join(FUSION_PROFILES)}, got {self.profile!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def uses_parts(self) -> bool:
        """Whether the part-level dense signals (lead, part mean) take part in the fusion."""
        return self.method == "convex" and (self.lead_weight > 0 or self.part_mean_weight > 0)

    @classmethod
    def from_dict(cls, recorded: dict[str, object]) -> FusionSettings:
        """Settings recorded in a manifest; keys this version does not know are ignored (older/newer writers). A
        record without a profile (written before profiles) keeps its weights: "custom"."""
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in recorded.items() if key in known})  # type: ignore[arg-type]

    def resolved(self, passages_per_document: float | None) -> FusionSettings:
        """The settings with the profile's weights filled in. "auto" takes "long" for an index whose documents
        average at least ``LONG_DOCUMENT_PASSAGES`` passages, else "short" (also for an empty index: nothing to
        measure). Resolving twice gives the same settings; "custom" keeps its weights, and its rerank is off unless
        set."""
        if self.profile == "custom":
            return self.with_rerank(0, 1.0)
        if self.profile != "auto":
            chosen, reason = self.profile, f"profile {self.profile} as configured"
        elif passages_per_document is None:
            chosen, reason = "short", "auto: the index holds no documents yet"
        else:
            chosen = "long" if passages_per_document >= LONG_DOCUMENT_PASSAGES else "short"
            relation = "at least" if chosen == "long" else "under"
            reason = (
                f"auto: documents average {passages_per_document:.1f} passages, {relation} {LONG_DOCUMENT_PASSAGES:g}"
            )
        return replace(self, **asdict(PROFILE_WEIGHTS[chosen]), chosen=chosen, reason=reason).with_rerank(
            *PROFILE_RERANK[chosen]
        )

    def with_rerank(self, depth: int, weight: float) -> FusionSettings:
        """These settings with ``depth`` and ``weight`` where the rerank was left to the profile (None)."""
        return replace(
            self,
            rerank_depth=depth if self.rerank_depth is None else self.rerank_depth,
            rerank_weight=weight if self.rerank_weight is None else self.rerank_weight,
        )


def passages_per_document(counts: Mapping[str, int]) -> float | None:
    """Mean passages per document of an index's ``counts`` (None without documents): what "auto" goes by."""
    documents = int(counts.get("documents", 0))
    return int(counts.get("passages", 0)) / documents if documents > 0 else None


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant list maps to all ones (every candidate is equally good)."""
    if scores.size == 0:
        return scores.astype(np.float64)
    low, high = float(scores.min()), float(scores.max())
    if high - low < 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def z_score(scores: np.ndarray) -> np.ndarray:
    """Centre on the mean in units of standard deviation; a constant list maps to all zeros (no evidence).

    Less sensitive than min-max to one outlying score (a single long BM25 match), which would squash the others.
    """
    if scores.size == 0:
        return scores.astype(np.float64)
    values = scores.astype(np.float64)
    spread = float(values.std())
    if spread < 1e-12:
        return np.zeros_like(values)
    return np.asarray((values - values.mean()) / spread, dtype=np.float64)


NORMALIZERS = {"zscore": z_score, "minmax": min_max}


def convex_combination(signals: list[tuple[float, np.ndarray]], normalization: Normalization = "zscore") -> np.ndarray:
    """``sum(weight * n(scores))`` over aligned candidate score arrays; signals with weight 0 are skipped."""
    normalize = NORMALIZERS[normalization]
    length = len(signals[0][1]) if signals else 0
    fused = np.zeros(length, dtype=np.float64)
    for weight, scores in signals:
        if weight:
            fused += weight * normalize(scores)
    return fused


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry when sorted by descending score (ties keep input order)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def reciprocal_rank_fusion(dense: np.ndarray, keyword: np.ndarray, k: int, dense_weight: float = 0.5) -> np.ndarray:
    """Weighted RRF over the candidates' ranks by each score (``2 * w`` keeps w=0.5 the classic unweighted form)."""
    return 2 * dense_weight / (k + ranks_of(dense)) + 2 * (1 - dense_weight) / (k + ranks_of(keyword))


def fuse(
    dense: np.ndarray,
    bm25: np.ndarray,
    context: np.ndarray | None,
    settings: FusionSettings,
    lead: np.ndarray | None = None,
    part_mean: np.ndarray | None = None,
) -> np.ndarray:
    """The fused score of each candidate (aligned arrays; ``context``, ``lead`` and ``part_mean`` None when the
    index has no part-level index: those signals then add nothing)."""
    if context is None:
        context = np.zeros_like(bm25)
    if settings.method == "rrf":
        return reciprocal_rank_fusion(
            dense, keyword_score(bm25, context, settings), settings.rrf_k, settings.dense_weight
        )
    signals = [(settings.dense_weight, dense), (settings.bm25_weight, bm25), (settings.context_weight, context)]
    if lead is not None:
        signals.append((settings.lead_weight, lead))
    if part_mean is not None:
        signals.append((settings.part_mean_weight, part_mean))
    return convex_combination(signals, settings.normalization)


def keyword_score(bm25: np.ndarray, context: np.ndarray, settings: FusionSettings) -> np.ndarray:
    """One keyword score per passage, which picks the keyword candidates and which RRF ranks by: the passage's
    BM25 plus its part's BM25 (raw sums: both are BM25 over the same query terms), or BM25 alone without context."""
    return bm25 + context if settings.context_weight > 0 else bm25
