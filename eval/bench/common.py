"""What every benchmark shares: the report (JSON plus a Markdown table, with machine and settings) and timing."""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.report import machine_info

if TYPE_CHECKING:
    from citesearch.settings import Settings


@dataclass(slots=True)
class BenchReport:
    """One benchmark run: named tables of rows, the targets checked, and everything needed to compare it later."""

    name: str  # "index", "query", "scale", "peer"
    settings: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # title -> rows (same keys per row)
    targets: list[dict[str, Any]] = field(default_factory=list)  # {"target", "measured", "met"}
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def check(self, target: str, measured: float, limit: float, *, at_most: bool) -> bool:
        """Record a ratio target; ``at_most`` for upper bounds (overhead), else lower bounds (speed-up)."""
        met = measured <= limit if at_most else measured >= limit
        self.targets.append({"target": target, "measured": round(measured, 3), "limit": limit, "met": met})
        return met

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "tables": self.tables,
            "targets": self.targets,
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        lines = [
            f"### bench {self.name} ({self.created}, {self.machine.get('cpu_count')} cores, "
            f"{self.machine.get('cpu_model', '?')})",
            "",
        ]
        for title, rows in self.tables.items():
            lines += [f"**{title}**", "", *markdown_table(rows), ""]
        if self.targets:
            lines += ["| target | measured | limit | met |", "| --- | ---: | ---: | --- |"]
            lines += [
                f"| {t['target']} | {t['measured']} | {t['limit']} | {'yes' if t['met'] else 'NO'} |"
                for t in self.targets
            ]
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def markdown_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def write_bench_report(report: BenchReport, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``bench-<name>-<time>.json`` and ``.md``; returns both paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{report.name}-{report.created.replace(':', '').replace('-', '')}"
    json_path = reports_dir / f"{stem}.json"
    md_path = reports_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=_jsonable) + "\n", encoding="utf-8")
    md_path.write_text(report.to_markdown(), encoding="utf-8")
    return json_path, md_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of latency samples in milliseconds."""
    if not samples_ms:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(values.mean())}


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["seconds"]``."""
    timing: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - started


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def add_report_options(parser: argparse.ArgumentParser, progress_help: str | None = None) -> None:
    """The options every benchmark takes for its output (``--json``, ``--reports-dir``), and ``--progress`` (with
    ``progress_help``) where the benchmark shows progress."""
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument(
        "--reports-dir",
        type=Path,
        metavar="DIR",
        help="where to write the report (default: $CITESEARCH_REPORTS_DIR or reports/)",
    )
    if progress_help is not None:
        parser.add_argument("--progress", action="store_true", help=progress_help)


def emit_report(report: BenchReport, args: argparse.Namespace, settings: Settings) -> int:
    """Write the report files (to ``--reports-dir``, else the configured reports folder) and print the report
    (Markdown, or one JSON object with ``--json``); exit 0 even when a target is missed — a missed target is a
    finding, not a failure of the command."""
    json_path, md_path = write_bench_report(report, Path(args.reports_dir or settings.reports_dir))
    if args.json:
        print(json.dumps({**report.to_dict(), "report_files": [str(json_path), str(md_path)]}, default=_jsonable))
    else:
        print(report.to_markdown())
        print(f"report: {json_path} and {md_path}")
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
