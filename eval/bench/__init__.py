"""``citesearch bench …``: benchmarks that print figures measured side by side in one run.

Each benchmark is one module here with ``add_parser(kinds)``; it writes its result as JSON and as a Markdown table
to the reports folder (``eval.bench.common.write_bench_report``) with the machine and the settings used. The machine
is small and noisy, so every target is a ratio of two figures measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib

# One module per benchmark; each has ``add_parser(kinds: argparse._SubParsersAction) -> None``.
BENCH_MODULES = (
    "eval.bench.index",
    "eval.bench.query",
    "eval.bench.scale",
    "eval.bench.peer",
    "eval.bench.ray_index",
    "eval.bench.update",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``citesearch bench`` and one subcommand per benchmark module that exists."""
    bench = subparsers.add_parser("bench", help="benchmarks: indexing, query load, scale, a peer system")
    kinds = bench.add_subparsers(dest="bench_command", required=True)
    for module_name in BENCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a missing dependency inside the module is a real error
                raise
            continue
        module.add_parser(kinds)
