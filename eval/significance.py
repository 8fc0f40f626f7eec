"""How much a figure can be trusted: bootstrap confidence intervals of a metric's mean over queries, and a paired
test of the difference between two runs on the same queries.

A mean over 809 SciFact queries moves by a few thousandths when nothing but rounding changes (int8 against fp32
vectors: 0.7482 against 0.7455, docs/retrieval.md). Without an interval, "0.7482, short of 0.75" reads like a
measured shortfall; with one it reads as what it is. Both computations are scipy's (``scipy.stats.bootstrap``
with BCa intervals, ``scipy.stats.permutation_test`` flipping the signs of the paired differences), seeded, so a
report is reproducible to the digit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

CONFIDENCE_LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0  # fixed: the same per-query scores always give the same interval and p-value
SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval of a mean (or of a mean difference)."""

    low: float
    high: float
    level: float = CONFIDENCE_LEVEL

    def to_list(self) -> list[float]:
        return [self.low, self.high]

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """``after - before`` of one metric over the queries both runs scored, with its interval and p-value."""

    metric: str
    queries: int
    mean_difference: float
    interval: Interval
    p_value: float  # two-sided, paired randomization (sign-flip) test of "no difference"

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE_LEVEL

    def to_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "mean_difference": self.mean_difference,
            "interval": self.interval.to_list(),
            "level": self.interval.level,
            "p_value": self.p_value,
            "significant": self.significant,
        }


def bootstrap_interval(values: Sequence[float] | np.ndarray, level: float = CONFIDENCE_LEVEL) -> Interval:
    """BCa bootstrap interval of the mean of ``values`` (one per query); the percentile interval where BCa is
    undefined (scipy gives nan for it on some very skewed 0/1 data)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no per-query values: a confidence interval needs at least one query")
    if data.size == 1 or float(np.ptp(data)) == 0.0:
        value = float(data[0])  # every resample has this mean; BCa is undefined there
        return Interval(value, value, level)
    low, high = _bootstrap(data, level, "BCa")
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = _bootstrap(data, level, "percentile")
    return Interval(low, high, level)


def _bootstrap(data: np.ndarray, level: float, method: Literal["BCa", "percentile"]) -> tuple[float, float]:
    from scipy.stats import bootstrap  # scipy is slow to import; reports are its only users

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when BCa's own accuracy is in doubt; the fallback covers it
        result = bootstrap(
            (data,),
            np.mean,
            n_resamples=RESAMPLES,
            confidence_level=level,
            method=method,
            random_state=np.random.default_rng(SEED),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_difference(
    metric: str, before: Mapping[str, float], after: Mapping[str, float], level: float = CONFIDENCE_LEVEL
) -> PairedDifference:
    """The difference of two runs' per-query scores on the queries they share (query ids as keys)."""
    from scipy.stats import permutation_test

    shared = sorted(set(before) & set(after))
    if not shared:
        raise ValueError(f"the two runs share no query scored on {metric}: nothing to compare")
    differences = np.array([after[q] - before[q] for q in shared], dtype=np.float64)
    mean = float(differences.mean())
    if not differences.any():
        return PairedDifference(metric, len(shared), 0.0, Interval(0.0, 0.0, level), 1.0)
    result = permutation_test(
        (differences,),
        np.mean,
        permutation_type="samples",  # one paired sample: each query's difference keeps or flips its sign
        n_resamples=RESAMPLES,
        alternative="two-sided",
        random_state=np.random.default_rng(SEED),
    )
    return PairedDifference(metric, len(shared), mean, bootstrap_interval(differences, level), float(result.pvalue))
