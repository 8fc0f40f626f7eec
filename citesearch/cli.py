"""The ``citesearch`` command: index documents, search them, and (in later subcommands) serve and evaluate.

Errors the user can act on print one line to stderr and exit non-zero; they never show a traceback. Output for
people is readable text; ``--json`` output is one JSON object on stdout for programs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from citesearch.search import (
    MODES,
    InvalidSearchRequest,
    SearchRequest,
    SearchResult,
    Searcher,
    check_model_matches,
)
from citesearch.settings import Settings
from index_store import IndexStoreError, open_index
from indexer.documents import SECTIONS
from indexer.embedder import EmbedderError, SentenceTransformerEmbedder
from indexer.errors import IngestError
from indexer.loaders import load_documents
from indexer.pipeline import BuildOptions, apply_changes

# Subcommands that live with their feature. Each module has ``register(subparsers)`` that adds its parsers with
# ``set_defaults(handler=fn)`` where ``fn(args, settings) -> exit code``; heavy imports happen inside the handler.
COMMAND_MODULES = ("service.commands", "eval.commands", "eval.bench")

EXIT_USAGE = 2
EXIT_FAILURE = 1

# Errors that describe a problem with the input or the environment, not a bug: one line, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    IngestError,
    IndexStoreError,
    EmbedderError,
    InvalidSearchRequest,
    ValueError,
    OSError,
)


class CliError(Exception):
    """An error already phrased for the user."""


def _load_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(settings.model, backend=settings.embed_backend)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    index_dir = Path(args.index_dir or settings.index_dir)
    try:
        loaded = load_documents(args.paths)  # before loading the model: bad input fails fast
    except IngestError as exc:
        for skipped in exc.skipped:
            print(f"skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
        raise
    embedder = _load_embedder(settings)
    options = BuildOptions(
        chunker=settings.chunker_settings(),
        batch_size=settings.embed_batch_size,
        show_progress=not args.json and sys.stderr.isatty() or args.progress,
        lock_timeout=args.wait,
        keyword=settings.keyword_settings(),
        record={"fusion": settings.fusion_settings().to_dict()},
    )
    report = apply_changes(
        index_dir,
        embedder,
        upserts=loaded.documents,
        replace_all=not args.add,
        options=options,
        skipped=loaded.skipped,
    )
    if args.json:
        print(json.dumps({"index_dir": str(index_dir), **report.to_dict()}, ensure_ascii=False))
    else:
        for skipped in report.skipped:
            print(f"skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
        print(report.summary())
        print(f"index folder: {index_dir}")
    return 0


def _format_hit_for_people(hit_dict: dict, width: int = 100) -> str:
    citation = hit_dict["citation"]
    part = citation["section"]
    if citation["comment_no"] is not None:
        part += f" #{citation['comment_no']}"
    excerpt = " ".join(hit_dict["text"].split())
    if len(excerpt) > 400:
        excerpt = excerpt[:400].rsplit(" ", 1)[0] + " …"
    body = textwrap.fill(excerpt, width=width, initial_indent="    ", subsequent_indent="    ")
    cite = (
        f"    — {citation['title'] or citation['doc_id']} [{citation['source']}], {part}, "
        f"chars {citation['char_start']}–{citation['char_end']}"
    )
    if citation.get("published"):
        cite += f", published {citation['published']}"
    if hit_dict.get("also_in"):
        cite += f"\n    also in {len(hit_dict['also_in'])} documents: {', '.join(hit_dict['also_in'][:5])}"
    return f"{hit_dict['rank']:>3}. score {hit_dict['score']:.3f}\n{body}\n{cite}"


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    index_dir = Path(args.index_dir or settings.index_dir)
    with open_index(index_dir) as reader:  # before loading the model: a missing index fails fast
        embedder = _load_embedder(settings)
        check_model_matches(reader, embedder)
        searcher = Searcher(reader, embedder)
        request = SearchRequest(
            query=args.query,
            k=args.k,
            offset=args.offset,
            section=args.section,
            doc_id=args.doc_id,
            mode=args.mode,
            explain=args.explain,
            per_doc_cap=args.per_doc_cap,
            published_after=args.published_after,
            published_before=args.published_before,
            recency=args.recency or args.as_of is not None,
            as_of=args.as_of,
            collapse_duplicates=not args.expand_duplicates,
        )
        result: SearchResult = searcher.search(request)
    data = result.to_dict()
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    print(f'{len(result.hits)} results for "{result.query}" (index {result.index_version}, {result.mode})')
    for item in data["results"]:
        print(_format_hit_for_people(item))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citesearch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="index files and folders (.txt .md .html .jsonl) into a new version")
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    index.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    index.add_argument("--add", action="store_true", help="add/update these documents, keep the others")
    index.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer's lock")
    index.add_argument("--json", action="store_true", help="print the build report as JSON")
    index.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    index.set_defaults(handler=cmd_index)

    search = sub.add_parser("search", help="ask a question; ranked passages with citations")
    search.add_argument("query", metavar="QUESTION")
    search.add_argument("--k", type=_positive_int, default=10, help="number of results (default 10)")
    search.add_argument("--offset", type=_non_negative_int, default=0, help="skip this many results")
    search.add_argument("--section", choices=SECTIONS, help="only passages of this part of a document")
    search.add_argument("--doc-id", help="only passages of this document")
    search.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode (default hybrid)")
    search.add_argument("--explain", action="store_true", help="show each ranking's rank and score per result")
    search.add_argument("--per-doc-cap", type=_positive_int, help="at most N passages per document")
    search.add_argument("--published-after", metavar="DATE", help="only documents published on or after DATE")
    search.add_argument("--published-before", metavar="DATE", help="only documents published on or before DATE")
    search.add_argument("--recency", action="store_true", help="favour documents published shortly before --as-of")
    search.add_argument("--as-of", metavar="DATE", help="the date recency counts from (implies --recency; default now)")
    search.add_argument(
        "--expand-duplicates", action="store_true", help="list every copy of a duplicated story as its own result"
    )
    search.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    search.add_argument("--json", action="store_true", help="print results as one JSON object")
    search.set_defaults(handler=cmd_search)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting by its environment variable, e.g. ``CITESEARCH_PORT: Input should be …``."""
    problems = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"] if isinstance(part, str)) or "settings"
        problems.append(f"{Settings.model_config.get('env_prefix', '')}{name.upper()}: {error['msg']}")
    return "bad setting " + "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"citesearch: error: {settings_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return handler(args, settings)
    except USER_ERRORS as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"citesearch: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("citesearch: interrupted; the published index is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
