"""Confidence intervals and paired tests of eval reports (eval/significance.py, eval/report.py, ``eval compare``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citesearch.cli import main
from eval.metrics import success_metrics, success_per_question
from eval.report import (
    EvalReport,
    IndexInfo,
    LatencySummary,
    compare_reports,
    format_comparison,
    format_report,
    load_report,
    write_report,
)
from eval.significance import bootstrap_interval, paired_difference


def _percentile_bootstrap(values: np.ndarray, resamples: int = 4000) -> tuple[float, float]:
    """The textbook percentile bootstrap, by brute force: what scipy's BCa interval should roughly agree with."""
    rng = np.random.default_rng(7)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_bootstrap_interval_agrees_with_a_brute_force_bootstrap() -> None:
    values = np.random.default_rng(1).beta(2, 3, size=400)  # per-query nDCG-like scores in [0, 1]
    interval = bootstrap_interval(values)
    low, high = _percentile_bootstrap(values)
    assert interval.contains(float(values.mean()))
    assert interval.low == pytest.approx(low, abs=0.004) and interval.high == pytest.approx(high, abs=0.004)
    # A quarter of the queries: about twice as wide (the standard error goes with 1 / sqrt(n))
    quarter = bootstrap_interval(values[:100])
    width, quarter_width = interval.high - interval.low, quarter.high - quarter.low
    assert 1.5 < quarter_width / width < 2.7
    assert bootstrap_interval(values) == interval  # seeded: the same scores give the same interval


def test_bootstrap_interval_of_degenerate_and_binary_scores() -> None:
    assert bootstrap_interval([0.7] * 20).to_list() == [0.7, 0.7]  # every resample has this mean
    assert bootstrap_interval([1.0]).to_list() == [1.0, 1.0]
    with pytest.raises(ValueError, match="at least one query"):
        bootstrap_interval([])
    binary = bootstrap_interval([1.0] * 30 + [0.0] * 4)  # success@5 of 34 questions, 30 answered
    assert 0.7 < binary.low < 30 / 34 < binary.high <= 1.0


def test_paired_difference_finds_a_planted_gain_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    before = {f"q{i}": float(v) for i, v in enumerate(rng.random(500))}
    gain = {q: v + 0.02 + float(rng.normal(0, 0.05)) for q, v in before.items()}
    found = paired_difference("ndcg@10", before, gain)
    assert found.significant and found.p_value < 0.01 and found.interval.contains(0.02)
    assert found.queries == 500 and found.mean_difference == pytest.approx(0.02, abs=0.006)

    noise = {q: v + float(rng.choice([-0.05, 0.05])) for q, v in before.items()}
    shuffled = paired_difference("ndcg@10", before, noise)
    assert shuffled.interval.contains(0.0) and not shuffled.significant

    same = paired_difference("ndcg@10", before, dict(before))
    assert (same.mean_difference, same.p_value, same.interval.to_list()) == (0.0, 1.0, [0.0, 0.0])


def test_paired_difference_pairs_by_query_id() -> None:
    before = {"a": 0.0, "b": 0.5, "c": 1.0}
    after = {"c": 1.0, "b": 0.5, "a": 0.0, "extra": 1.0}  # another order, and a query only the later run scored
    assert paired_difference("m", before, after).queries == 3
    assert paired_difference("m", before, after).mean_difference == 0.0
    with pytest.raises(ValueError, match="share no query"):
        paired_difference("m", {"a": 1.0}, {"b": 1.0})


def test_success_per_question_averages_to_success_metrics() -> None:
    ranks = {"q1": 1, "q2": 3, "q3": None, "q4": 12}
    per_question = success_per_question(ranks, ks=(1, 5), mrr_depth=10)
    assert per_question["success@5"] == {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.0}
    assert per_question["mrr@10"]["q2"] == pytest.approx(1 / 3) and per_question["mrr@10"]["q4"] == 0.0
    means = success_metrics(list(ranks.values()), ks=(1, 5), mrr_depth=10)
    assert means == {name: pytest.approx(sum(v.values()) / 4) for name, v in per_question.items()}


def _report(per_query: dict[str, dict[str, float]], mode: str = "hybrid") -> EvalReport:
    metrics = {name: sum(values.values()) / len(values) for name, values in per_query.items()}
    return EvalReport(
        kind="beir",
        dataset="d",
        split="test",
        mode=mode,
        metrics=metrics,
        latency_ms=LatencySummary(10.0, 20.0, 12.0),
        queries=len(next(iter(per_query.values()))),
        index=IndexInfo("idx", "v000001", 20, 30),
        settings={},
        per_query=per_query,
    )


def _scores(seed: int, shift: float = 0.0, n: int = 200) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    return {
        "ndcg@10": {f"q{i}": float(min(1.0, v + shift)) for i, v in enumerate(base)},
        "recall@100": {f"q{i}": float(v > 0.1) for i, v in enumerate(base)},
    }


def test_reports_carry_intervals_and_per_query_scores_through_a_file(tmp_path: Path) -> None:
    report = _report(_scores(1))
    low, high = report.intervals["ndcg@10"]
    assert low < report.metrics["ndcg@10"] < high
    assert report.intervals["recall@100"][1] <= 1.0
    text = format_report(report)
    assert f"| ndcg@10 | {report.metrics['ndcg@10']:.4f} | {low:.4f} – {high:.4f} |" in text
    assert "95% bootstrap (BCa) of the mean over the 200 queries" in text

    loaded = load_report(write_report(report, tmp_path))
    assert loaded.per_query == report.per_query and loaded.intervals == report.intervals
    # What --json prints has two more keys; it loads as a report too
    printed = tmp_path / "printed.json"
    printed.write_text(json.dumps(report.to_dict() | {"report_path": None, "comparison": {}}), encoding="utf-8")
    assert load_report(printed).metrics == report.metrics
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(report.to_dict() | {"per_query": {"ndcg@10": [0.5, 0.7]}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"not a citesearch eval report .*per_query must map"):
        load_report(damaged)


def test_a_report_without_per_query_scores_still_loads_and_compares(tmp_path: Path) -> None:
    """Reports written before per-query scores: deltas as before, no interval, no test."""
    old = _report(_scores(1)).to_dict()
    del old["per_query"], old["intervals"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = load_report(path)
    assert loaded.intervals == {} and "| ndcg@10 |" in format_report(loaded) and "—" in format_report(loaded)
    comparison = compare_reports(_report(_scores(1, 0.05)), loaded, path)
    assert all(d.paired is None for d in comparison.deltas)
    assert {d.name: d.delta for d in comparison.deltas}["ndcg@10"] == pytest.approx(0.05, abs=0.01)


def test_compare_reports_tests_the_paired_difference() -> None:
    before, after = _report(_scores(1)), _report(_scores(1, 0.03))
    comparison = compare_reports(after, before, "before.json")
    ndcg = next(d for d in comparison.deltas if d.name == "ndcg@10")
    assert ndcg.paired is not None and ndcg.paired.significant and ndcg.paired.queries == 200
    recall = next(d for d in comparison.deltas if d.name == "recall@100")
    assert recall.paired is not None and recall.paired.p_value == 1.0  # the same 0/1 scores
    assert next(d for d in comparison.deltas if d.name == "latency_p50_ms").paired is None
    text = format_comparison(comparison)
    assert "| 95% interval of the delta | p (paired) |" in text and " *" in text
    data = comparison.to_dict()
    assert data["deltas"]["ndcg@10"]["paired"]["significant"] is True
    assert "paired" not in data["deltas"]["latency_p50_ms"]

    fewer = _report({name: dict(list(values.items())[:150]) for name, values in _scores(1, 0.03).items()})
    partial = compare_reports(fewer, before, "before.json")
    assert "the paired test covers the 150 queries both runs scored" in partial.warnings


def test_eval_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = write_report(_report(_scores(2), mode="plain-hybrid"), tmp_path / "a")
    after = write_report(_report(_scores(2, 0.04)), tmp_path / "b")
    assert main(["eval", "compare", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{after} against {before}") and "| ndcg@10 |" in out and "p (paired)" in out

    assert main(["eval", "compare", str(before), str(after), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["after"] == str(after) and data["against"] == str(before)
    assert data["deltas"]["ndcg@10"]["paired"]["p_value"] < 0.05

    assert main(["eval", "compare", str(before), str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json does not exist" in err[0]
