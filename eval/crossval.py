"""Cross-validating a choice made by measurement: how much of a tuned setting's lead survives on queries it was
not picked on.

``python -m eval.tune`` scores a few hundred fusion settings on one development set and the best of them is, by
construction, a little lucky on those queries. K-fold cross-validation repeats the choice K times, each time
without one fold of the queries, and scores every query only with the setting chosen without it. The pooled
held-out mean is what the procedure "take the grid's best" can be expected to give on new queries of the same
kind; the gap to the in-sample best is the optimism of the choice. Folds are a seeded shuffle, so a report is
reproducible to the digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eval.significance import SEED, Interval, PairedDifference, bootstrap_interval, paired_difference


@dataclass(frozen=True, slots=True)
class FoldChoice:
    """What one fold's training queries chose: the candidate's index and its mean there."""

    fold: int
    held_out_queries: int
    chosen: int
    training_mean: float
    held_out_mean: float


# How the summary line names a metric (the keys are ranx's names, as the reports use them).
METRIC_LABELS = {"ndcg@10": "nDCG@10", "recall@100": "Recall@100", "mrr@10": "MRR@10"}


@dataclass(frozen=True, slots=True)
class CrossValidated:
    """Every query scored by the candidate chosen on the other folds, against the baseline candidate."""

    metric: str
    folds: tuple[FoldChoice, ...]
    held_out: dict[str, float]  # query id -> score of the candidate chosen without that query
    interval: Interval  # of the held-out mean: a 10,000-resample bootstrap, so computed once, when validated
    in_sample_best: int  # the candidate the whole set picks
    in_sample_best_mean: float
    baseline: int  # the candidate the choice is compared with (the default)
    baseline_mean: float
    against_baseline: PairedDifference  # held_out - baseline, paired by query

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.held_out.values())))

    @property
    def baseline_kept(self) -> int:
        """In how many folds the training queries chose the baseline: how stable the choice is."""
        return sum(1 for choice in self.folds if choice.chosen == self.baseline)

    @property
    def optimism(self) -> float:
        """How much the in-sample best overstates what choosing by measurement gives on unseen queries."""
        return self.in_sample_best_mean - self.mean

    def summary(self, choosing: str, baseline: str, folds: str = "folds") -> str:
        """One line for people: what ``choosing`` (e.g. "choosing by this grid") gives on held-out queries, how
        often the folds kept the ``baseline``, and how far the in-sample best overstates it."""
        interval, against = self.interval, self.against_baseline
        metric = METRIC_LABELS.get(self.metric, self.metric)
        return (
            f"cross-validated over {len(self.folds)} {folds}: {choosing} gives {metric} {self.mean:.4f} "
            f"(95% {interval.low:.4f} - {interval.high:.4f}) on held-out queries; the folds kept the {baseline} in "
            f"{self.baseline_kept} of {len(self.folds)}. In sample: the {baseline} {self.baseline_mean:.4f}, the "
            f"best {self.in_sample_best_mean:.4f} (optimism {self.optimism:+.4f}); held-out minus {baseline} "
            f"{against.mean_difference:+.4f}, p {against.p_value:.3f}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "folds": len(self.folds),
            "held_out_mean": self.mean,
            "interval": self.interval.to_list(),
            "in_sample_best": self.in_sample_best,
            "in_sample_best_mean": self.in_sample_best_mean,
            "baseline_mean": self.baseline_mean,
            "baseline_kept": self.baseline_kept,
            "optimism": self.optimism,
            "against_baseline": self.against_baseline.to_dict(),
            "choices": [
                {
                    "fold": choice.fold,
                    "held_out_queries": choice.held_out_queries,
                    "chosen": choice.chosen,
                    "training_mean": choice.training_mean,
                    "held_out_mean": choice.held_out_mean,
                }
                for choice in self.folds
            ],
        }


def assign_folds(
    query_ids: Sequence[str], folds: int, seed: int = SEED, group_of: Callable[[str], str] | None = None
) -> dict[str, int]:
    """Each query's fold: a seeded shuffle dealt round-robin, so fold sizes differ by at most one. With
    ``group_of``, queries of one group (a news week, say: questions about the same stories) stay in one fold, so
    a fold is held out as a whole group would be; groups go, largest first, to the fold with fewest queries."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if group_of is None:
        if folds > len(query_ids):
            raise ValueError(f"{folds} folds need at least {folds} queries, got {len(query_ids)}")
        order = np.random.default_rng(seed).permutation(len(query_ids))
        return {query_ids[int(position)]: rank % folds for rank, position in enumerate(order)}
    members: dict[str, list[str]] = {}
    for query_id in query_ids:
        members.setdefault(group_of(query_id), []).append(query_id)
    if folds > len(members):
        raise ValueError(f"{folds} folds need at least {folds} groups of queries, got {len(members)}")
    groups = [list(members)[int(i)] for i in np.random.default_rng(seed).permutation(len(members))]
    groups.sort(key=lambda group: -len(members[group]))  # stable: equal sizes keep the seeded order
    sizes = [0] * folds
    fold_of: dict[str, int] = {}
    for group in groups:
        fold = sizes.index(min(sizes))
        sizes[fold] += len(members[group])
        fold_of.update(dict.fromkeys(members[group], fold))
    return fold_of


def group_by_pattern(pattern: str) -> Callable[[str], str]:
    """A query's group: the first match of the regular expression ``pattern`` in its id (the whole id when it
    does not match), e.g. ``^\\d{8}`` for ids that start with a date."""
    compiled = re.compile(pattern)

    def group_of(query_id: str) -> str:
        found = compiled.search(query_id)
        return found.group(0) if found else query_id

    return group_of


def cross_validate(
    candidates: Sequence[Mapping[str, float]],
    folds: int,
    metric: str = "ndcg@10",
    baseline: int = 0,
    seed: int = SEED,
    group_of: Callable[[str], str] | None = None,
) -> CrossValidated:
    """K-fold cross-validation of "pick the candidate with the best mean": ``candidates`` are per-query scores
    (query id -> score) of each setting on the same queries. A tie goes to the lower index, so put the baseline
    first and a choice must beat it, not match it."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    query_ids = sorted(candidates[baseline])
    if any(sorted(scores) != query_ids for scores in candidates):
        raise ValueError("every candidate must score the same queries")
    table = np.array([[scores[q] for q in query_ids] for scores in candidates], dtype=np.float64)
    fold_of = assign_folds(query_ids, folds, seed, group_of)
    in_fold = np.array([fold_of[q] for q in query_ids])
    held_out = np.empty(len(query_ids), dtype=np.float64)
    choices: list[FoldChoice] = []
    for fold in range(folds):
        test = in_fold == fold
        training_means = table[:, ~test].mean(axis=1)
        chosen = int(np.argmax(training_means))  # argmax takes the first of equal means
        held_out[test] = table[chosen, test]
        choices.append(
            FoldChoice(fold, int(test.sum()), chosen, float(training_means[chosen]), float(table[chosen, test].mean()))
        )
    means = table.mean(axis=1)
    best = int(np.argmax(means))
    held_out_scores = dict(zip(query_ids, held_out.tolist(), strict=True))
    return CrossValidated(
        metric=metric,
        folds=tuple(choices),
        held_out=held_out_scores,
        interval=bootstrap_interval(held_out.tolist()),
        in_sample_best=best,
        in_sample_best_mean=float(means[best]),
        baseline=baseline,
        baseline_mean=float(means[baseline]),
        against_baseline=paired_difference(metric, candidates[baseline], held_out_scores),
    )
