"""``citesearch`` subcommands of the service package (registered by citesearch.cli)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands. Handlers import their heavy dependencies lazily."""
