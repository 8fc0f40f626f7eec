"""Evaluation reports: one JSON file per run (metrics, latency, index, settings, machine), a table for people, and
the comparison of a run with an earlier report.

A report is self-describing on purpose: a figure without the model, chunking, mode and machine it was measured with
cannot be compared with anything later.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from eval.significance import (
    CONFIDENCE_LEVEL,
    SIGNIFICANCE_LEVEL,
    PairedDifference,
    bootstrap_interval,
    paired_difference,
)

REPORT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Per-query wall-clock latency of ``Searcher.search``, in milliseconds."""

    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> LatencySummary:
        if not samples_ms:
            return cls(0.0, 0.0, 0.0)
        values = np.asarray(samples_ms, dtype=np.float64)
        return cls(float(np.percentile(values, 50)), float(np.percentile(values, 99)), float(values.mean()))


@dataclass(frozen=True, slots=True)
class IndexInfo:
    index_dir: str
    version: str
    documents: int
    passages: int
    reused: bool | None = None  # beir: an unchanged index was reused rather than built; None: not an eval build
    build_seconds: float | None = None  # only when this run built the index


@dataclass(slots=True)
class EvalReport:
    kind: str  # "beir" or "questions"
    dataset: str
    split: str | None
    mode: str
    metrics: dict[str, float]
    latency_ms: LatencySummary
    queries: int
    index: IndexInfo
    settings: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())  # noqa: PLW0108 (defined below)
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    notes: list[str] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)  # questions: the ones not answered at rank 1
    format: int = REPORT_FORMAT
    # metric -> query id -> score: what the means are means of, so that a later run can be compared query by query
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    # metric -> [low, high], the 95% bootstrap interval of its mean over queries (eval.significance); filled from
    # per_query when a run is scored, read back as written from a report file
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_query and not self.intervals:
            self.intervals = {
                name: bootstrap_interval(list(values.values())).to_list()
                for name, values in self.per_query.items()
                if values
            }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        known = {f.name for f in fields(cls)}
        data = {key: value for key, value in data.items() if key in known}  # --json adds report_path, comparison
        data["latency_ms"] = LatencySummary(**data["latency_ms"])
        data["index"] = IndexInfo(**data["index"])
        per_query = data.get("per_query", {})
        if not isinstance(per_query, dict) or not all(
            isinstance(scores, dict) and all(isinstance(v, int | float) for v in scores.values())
            for scores in per_query.values()
        ):
            raise TypeError("per_query must map each metric to {query id: score}")
        return cls(**data)


def machine_info() -> dict[str, Any]:
    """What the latency figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- files -------------------------------------------------------------------------------------------------------
def report_file_name(report: EvalReport) -> str:
    stamp = re.sub(r"[^0-9T]", "", report.timestamp.split("+")[0])  # 2025-11-23T02:30:00 -> 20251123T023000
    parts = [report.kind, report.dataset, report.split, report.mode, stamp]
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p) for p in parts if p) + ".json"


def write_report(report: EvalReport, reports_dir: Path) -> Path:
    """Write the report as JSON into ``reports_dir`` (created if needed); never overwrites an earlier report."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / report_file_name(report)
    counter = 1
    while path.exists():  # two runs within one second
        counter += 1
        path = reports_dir / f"{report_file_name(report)[:-5]}-{counter}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_report(path: Path) -> EvalReport:
    """Read a report written by ``write_report`` (or printed by ``--json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return EvalReport.from_dict(data)
    except FileNotFoundError:
        raise ValueError(f"report {path} does not exist; pass a JSON file from the reports folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"report {path} is not JSON ({exc}); pass a report written by citesearch eval") from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"report {path} is not a citesearch eval report ({exc})") from None


# -- comparison --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetricDelta:
    name: str
    before: float | None
    after: float | None
    paired: PairedDifference | None = None  # when both reports kept per-query scores of this metric

    @property
    def delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before


@dataclass(frozen=True, slots=True)
class Comparison:
    against: str  # the earlier report's path
    previous_timestamp: str
    previous_mode: str
    previous_index_version: str
    deltas: list[MetricDelta]
    warnings: list[str]  # why the two runs may not be comparable

    def to_dict(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "previous": {
                "timestamp": self.previous_timestamp,
                "mode": self.previous_mode,
                "index_version": self.previous_index_version,
            },
            "deltas": {
                d.name: {"before": d.before, "after": d.after, "delta": d.delta}
                | ({"paired": d.paired.to_dict()} if d.paired else {})
                for d in self.deltas
            },
            "warnings": self.warnings,
        }


def _comparable_values(report: EvalReport) -> dict[str, float]:
    values = dict(report.metrics)
    values["latency_p50_ms"] = report.latency_ms.p50
    values["latency_p99_ms"] = report.latency_ms.p99
    return values


def compare_reports(current: EvalReport, previous: EvalReport, against: Path | str) -> Comparison:
    """Per-metric deltas (current minus previous), latency included, and warnings when the runs differ in kind."""
    warnings = []
    for name in ("kind", "dataset", "split"):
        if getattr(current, name) != getattr(previous, name):
            warnings.append(f"{name} differs: {getattr(previous, name)} before, {getattr(current, name)} now")
    if current.queries != previous.queries:
        warnings.append(f"query count differs: {previous.queries} before, {current.queries} now")
    if current.machine.get("cpu_model") != previous.machine.get("cpu_model"):
        warnings.append("measured on a different CPU: latency deltas are not comparable")
    before, after = _comparable_values(previous), _comparable_values(current)
    names = list(after) + [name for name in before if name not in after]
    deltas = [MetricDelta(name, before.get(name), after.get(name), _paired(name, previous, current)) for name in names]
    shared = _shared_queries(previous, current)
    if shared is not None and shared < max(current.queries, previous.queries):
        warnings.append(f"the paired test covers the {shared} queries both runs scored")
    return Comparison(
        against=str(against),
        previous_timestamp=previous.timestamp,
        previous_mode=previous.mode,
        previous_index_version=previous.index.version,
        deltas=deltas,
        warnings=warnings,
    )


def _paired(name: str, previous: EvalReport, current: EvalReport) -> PairedDifference | None:
    before, after = previous.per_query.get(name), current.per_query.get(name)
    if not before or not after or not set(before) & set(after):
        return None
    return paired_difference(name, before, after)


def _shared_queries(previous: EvalReport, current: EvalReport) -> int | None:
    names = [name for name in current.per_query if name in previous.per_query]
    if not names:
        return None
    return len(set(previous.per_query[names[0]]) & set(current.per_query[names[0]]))


# -- text --------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, name: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if name.endswith("_ms") else f"{value:.4f}"


def _signed(value: float | None, name: str) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}" if name.endswith("_ms") else f"{value:+.4f}"


def format_report(report: EvalReport) -> str:
    """A Markdown table of the metrics and latency, with one line of context above it."""
    title = f"{report.dataset}" + (f" {report.split}" if report.split else "")
    index = report.index
    how = ""
    if index.reused is True:
        how = ", reused"
    elif index.build_seconds is not None:
        how = f", built in {index.build_seconds:.1f}s"
    lines = [
        f"{title}: {report.queries} queries, mode {report.mode}, index {index.version} "
        f"({index.documents} documents, {index.passages} passages{how})",
        "",
        "| metric | value | 95% interval |",
        "| --- | ---: | ---: |",
    ]
    for name, value in report.metrics.items():
        interval = report.intervals.get(name)
        shown = f"{interval[0]:.4f} – {interval[1]:.4f}" if interval else "—"
        lines.append(f"| {name} | {value:.4f} | {shown} |")
    lines += [
        f"| latency p50 | {report.latency_ms.p50:.1f} ms | |",
        f"| latency p99 | {report.latency_ms.p99:.1f} ms | |",
        f"| latency mean | {report.latency_ms.mean:.1f} ms | |",
    ]
    if report.intervals:
        lines.append(
            f"intervals: {int(CONFIDENCE_LEVEL * 100)}% bootstrap (BCa) of the mean over the {report.queries} queries"
        )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def format_comparison(comparison: Comparison) -> str:
    lines = [
        f"compared with {comparison.against} ({comparison.previous_timestamp}, mode {comparison.previous_mode}, "
        f"index {comparison.previous_index_version})",
        "",
        "| metric | before | now | delta | 95% interval of the delta | p (paired) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in comparison.deltas:
        interval, p_value = "", ""
        if d.paired is not None:
            interval = f"{d.paired.interval.low:+.4f} – {d.paired.interval.high:+.4f}"
            p_value = ("< 0.001" if d.paired.p_value < 0.001 else f"{d.paired.p_value:.3f}") + (
                " *" if d.paired.significant else ""
            )
        lines.append(
            f"| {d.name} | {_fmt(d.before, d.name)} | {_fmt(d.after, d.name)} | {_signed(d.delta, d.name)} "
            f"| {interval} | {p_value} |"
        )
    if any(d.paired is not None for d in comparison.deltas):
        lines.append(
            f"p: two-sided paired randomization test over the queries both runs scored; * below {SIGNIFICANCE_LEVEL}"
        )
    lines += [f"warning: {w}" for w in comparison.warnings]
    return "\n".join(lines)


def format_misses(misses: Sequence[dict[str, Any]]) -> str:
    """Questions the top hit did not answer: where the first answering hit was, and what ranked first instead."""
    if not misses:
        return "misses: none (every question answered at rank 1)"
    lines = [f"misses ({len(misses)}):"]
    for miss in misses:
        found = f"first answer at rank {miss['first_rank']}" if miss["first_rank"] else "no answer in the top 10"
        top = miss.get("top_hit")
        top_text = "no results"
        if top:
            part = top["section"] + (f" #{top['comment_no']}" if top.get("comment_no") else "")
            top_text = f"top hit {top['doc_id']} {part} chars {top['char_start']}–{top['char_end']}"
        lines.append(f"  {miss['id']}: {miss['question']!r} — {found}; {top_text}")
    return "\n".join(lines)
