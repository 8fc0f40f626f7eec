"""Cross-validating a choice by measurement (eval/crossval.py) and the tuner's grid around the resolved default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citesearch.fusion import WEIGHT_NAMES, FusionSettings
from eval.crossval import assign_folds, cross_validate, group_by_pattern
from eval.tune import default_grid, steps_around
from eval.tune import main as tune_main
from tests.test_eval import _write_tiny_beir


def _scores(values: np.ndarray) -> dict[str, float]:
    return {f"q{i:03d}": float(v) for i, v in enumerate(values)}


def test_folds_cover_every_query_once_and_are_balanced_and_seeded() -> None:
    queries = [f"q{i}" for i in range(23)]
    folds = assign_folds(queries, 5)
    assert sorted(folds) == sorted(queries)
    sizes = np.bincount(list(folds.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 23
    assert assign_folds(queries, 5) == folds  # seeded: the same folds every run
    assert assign_folds(queries, 5, seed=1) != folds
    with pytest.raises(ValueError, match="at least 2 folds"):
        assign_folds(queries, 1)
    with pytest.raises(ValueError, match="5 folds need at least 5 queries"):
        assign_folds(queries[:3], 5)


def test_grouped_folds_keep_each_group_together_and_balance_sizes() -> None:
    # News-like ids: eight weeks of 5-12 questions, the week in front of each id
    rng = np.random.default_rng(5)
    queries = [f"2022{week:02d}01_q{i}" for week in range(1, 9) for i in range(int(rng.integers(5, 13)))]
    week = group_by_pattern(r"^\d{8}")
    folds = assign_folds(queries, 4, group_of=week)
    assert sorted(folds) == sorted(queries)
    fold_of_week: dict[str, set[int]] = {}
    for query, fold in folds.items():
        fold_of_week.setdefault(week(query), set()).add(fold)
    assert all(len(held) == 1 for held in fold_of_week.values())  # no week split across folds
    sizes = np.bincount(list(folds.values()), minlength=4)
    assert sizes.min() > 0 and sizes.max() - sizes.min() <= 12  # at most one group's size apart
    assert week("no-date-here") == "no-date-here"  # an id without a match is its own group
    with pytest.raises(ValueError, match="9 folds need at least 9 groups of queries, got 8"):
        assign_folds(queries, 9, group_of=week)


def test_tune_refuses_bad_fold_options_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (["--folds", "1"], "--folds must be 0 (off) or at least 2, got 1"),
        (["--fold-groups", "(unclosed"], "--fold-groups '(unclosed' is not a regular expression"),
    ):
        with pytest.raises(SystemExit) as refused:
            tune_main(["no-such-dataset", *argv])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and expected in err and err.strip().splitlines()[-1].count(expected) == 1
    # A dataset or an index that is not there: one line and exit 1, not a traceback
    assert tune_main(["no-such-dataset"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eval.tune: error: dataset folder no-such-dataset does not exist") and err.count("\n") == 1


def test_tune_names_a_missing_index_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _write_tiny_beir(tmp_path / "tiny")
    assert tune_main([str(dataset), "--split", "test", "--index-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err == f"eval.tune: error: no index in {tmp_path / 'none'}; build it with citesearch eval beir\n"


def test_a_setting_better_on_every_query_is_chosen_in_every_fold() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.uniform(0.2, 0.8, size=200)
    better = baseline + 0.05
    result = cross_validate([_scores(baseline), _scores(rng.uniform(0, 1, size=200)), _scores(better)], folds=5)
    assert [choice.chosen for choice in result.folds] == [2] * 5 and result.baseline_kept == 0
    assert result.mean == pytest.approx(better.mean())
    assert result.optimism == pytest.approx(0.0)
    assert result.against_baseline.mean_difference == pytest.approx(0.05)
    assert result.against_baseline.significant
    line = result.summary("choosing by measurement", "default")
    assert line.startswith(f"cross-validated over 5 folds: choosing by measurement gives nDCG@10 {better.mean():.4f}")
    assert "the folds kept the default in 0 of 5" in line and "held-out minus default +0.0500" in line


def test_a_grid_of_noise_flatters_itself_in_sample_but_not_held_out() -> None:
    """Many settings that differ from the baseline only by chance: the best of them beats the baseline on the
    queries it was picked on, and cross-validation shows that lead gone on queries it was not picked on."""
    rng = np.random.default_rng(11)
    baseline = rng.uniform(0.2, 0.8, size=300)
    noisy = [baseline + rng.normal(0, 0.1, size=300) for _ in range(200)]
    result = cross_validate([_scores(baseline), *(_scores(values) for values in noisy)], folds=5)
    assert result.in_sample_best != 0 and result.in_sample_best_mean > result.baseline_mean + 0.01
    assert result.optimism > 0.01
    assert abs(result.mean - result.baseline_mean) < result.in_sample_best_mean - result.baseline_mean
    assert not result.against_baseline.significant


def test_ties_keep_the_baseline_and_mismatched_queries_are_refused() -> None:
    same = _scores(np.linspace(0, 1, 20))
    result = cross_validate([same, dict(same)], folds=4)
    assert {choice.chosen for choice in result.folds} == {0} and result.baseline_kept == 4
    assert result.to_dict()["held_out_mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same queries"):
        cross_validate([same, {"other": 1.0}], folds=2)
    with pytest.raises(ValueError, match="no candidates"):
        cross_validate([], folds=2)


def test_the_grid_is_centred_on_the_resolved_profile() -> None:
    assert steps_around(0.0) == (0.0, 0.1)
    assert steps_around(0.2) == (0.1, 0.2, 0.3)  # rounded: not 0.30000000000000004
    assert steps_around(1.0) == (0.9, 1.0)
    for documents_passages, profile in ((2.5, "short"), (15.0, "long")):
        centre = FusionSettings(profile="auto").resolved(documents_passages)
        assert centre.chosen == profile
        grid = default_grid(centre)
        weights = [tuple(getattr(point, name) for name in WEIGHT_NAMES) for point in grid if point.method == "convex"]
        assert tuple(getattr(centre, name) for name in WEIGHT_NAMES) in weights
        for name in WEIGHT_NAMES:  # every weight moves one step either side of the centre, and no further
            values = {getattr(point, name) for point in grid if point.candidates == centre.candidates}
            assert values == set(steps_around(getattr(centre, name)))
