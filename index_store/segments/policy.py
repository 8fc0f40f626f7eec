"""Which segments to merge: a tiered policy in the spirit of Lucene's TieredMergePolicy, for adjacent runs.

Lucene's policy lets an index hold about ``segments_per_tier`` segments per size tier (tiers growing by that factor
from a floor size), and when there are more, picks among candidate merges the one with the lowest score —
*skew* (the largest segment's share of the merge: merging equals is cheap per byte, merging a big segment with a tiny
one rewrites the big one for little gain) times a mild size penalty, with reclaimed deletes as a bonus. It never
produces a segment above ``max_merged_passages``, and a segment whose deleted share passes
``deletes_pct_allowed`` is rewritten (merged) to reclaim the space.

Unlike Lucene, only *adjacent* segments (in id order) are merged here, so a view's concatenated passage ids stay
sorted; the candidates are the runs of 2..``max_merge_at_once`` neighbours. Pure functions over sizes: the store
decides when to run what they return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SegmentSize:
    """What the policy needs to know of a segment: its passages (positions) and how many of them are deleted."""

    passages: int
    deleted: int = 0

    @property
    def live(self) -> int:
        return self.passages - self.deleted


@dataclass(frozen=True, slots=True)
class MergePolicy:
    segments_per_tier: int = 10  # Lucene's default: segments allowed per size tier
    max_merge_at_once: int = 10  # at most this many segments in one merge
    max_merged_passages: int = 5_000_000  # no merge produces a bigger segment (except optimize)
    floor_passages: int = 2_000  # smaller segments count as this size: many tiny segments merge early
    deletes_pct_allowed: float = 20.0  # a segment with more deleted passages than this is rewritten

    def __post_init__(self) -> None:
        if self.segments_per_tier < 2 or self.max_merge_at_once < 2:
            raise ValueError("segments_per_tier and max_merge_at_once must be at least 2")
        if not 0 < self.deletes_pct_allowed <= 100:
            raise ValueError("deletes_pct_allowed must be in (0, 100]")


def allowed_segment_count(sizes: Sequence[SegmentSize], policy: MergePolicy) -> int:
    """How many segments the index may hold before merging (TieredMergePolicy's budget)."""
    total = sum(max(s.live, 0) for s in sizes)
    level = max(policy.floor_passages, min((s.live for s in sizes), default=policy.floor_passages))
    allowed = 0.0
    remaining = float(total)
    while remaining > 0:
        at_level = remaining / level
        if at_level < policy.segments_per_tier:
            allowed += math.ceil(at_level)
            break
        allowed += policy.segments_per_tier
        remaining -= policy.segments_per_tier * level
        level *= policy.segments_per_tier
    return max(1, int(allowed))


def _score(run: Sequence[SegmentSize], policy: MergePolicy) -> float:
    sizes = [max(s.live, policy.floor_passages) for s in run]
    total = sum(sizes)
    skew = max(sizes) / total
    reclaim = (sum(s.live for s in run) / max(1, sum(s.passages for s in run))) ** 2  # fewer live: more reclaimed
    return float(skew * total**0.05 * reclaim)


def plan_merges(sizes: Sequence[SegmentSize], policy: MergePolicy | None = None) -> list[tuple[int, int]]:
    """Non-overlapping runs ``[start, end)`` of adjacent segments to merge now (each into one), best first; empty
    when the index is within its budget and no segment has too many deletes."""
    policy = policy or MergePolicy()
    taken = [False] * len(sizes)
    runs: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return not any(taken[start:end])

    # 1. segments with too many deletes: rewrite them (with a small right neighbour when that fits: fewer segments)
    for i, size in enumerate(sizes):
        if size.passages and 100.0 * size.deleted / size.passages > policy.deletes_pct_allowed and not taken[i]:
            end = i + 1
            if end < len(sizes) and not taken[end] and sizes[end].live < max(size.live, 1):
                end += 1
            runs.append((i, end))
            for j in range(i, end):
                taken[j] = True
    # 2. too many segments: the lowest-scoring adjacent runs until within budget
    count = len(sizes) - sum(end - start - 1 for start, end in runs)
    budget = allowed_segment_count(sizes, policy)
    while count > budget:
        best: tuple[float, int, int] | None = None
        for length in range(2, policy.max_merge_at_once + 1):
            for start in range(len(sizes) - length + 1):
                end = start + length
                if not free(start, end):
                    continue
                merged = sum(s.live for s in sizes[start:end])
                if merged > policy.max_merged_passages:
                    continue
                score = _score(sizes[start:end], policy)
                # prefer merging more segments at once when the scores are equal: fewer merges overall
                key = (score - 1e-9 * length, start, end)
                if best is None or key < best:
                    best = key
        if best is None:
            break
        _, start, end = best
        runs.append((start, end))
        for j in range(start, end):
            taken[j] = True
        count -= end - start - 1
    return sorted(runs)


def plan_optimize(sizes: Sequence[SegmentSize]) -> list[tuple[int, int]]:
    """``index --optimize``: everything into one segment (nothing to do for one segment without deletes)."""
    if not sizes or (len(sizes) == 1 and sizes[0].deleted == 0):
        return []
    return [(0, len(sizes))]
