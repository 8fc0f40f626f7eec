"""The ``citesearch`` command: index documents, search them, and (in later subcommands) serve and evaluate.

Errors the user can act on print one line to stderr and exit non-zero; they never show a traceback. Output for
people is readable text; ``--json`` output is one JSON object on stdout for programs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import sqlite3
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from citesearch.search import (
    MODES,
    InvalidSearchRequest,
    Searcher,
    SearchRequest,
    SearchResult,
    check_model_matches,
)
from citesearch.settings import Settings
from citesearch.store import open_store
from citesearch.terminal import escape_for_terminal
from index_store import IndexStoreError, open_index
from indexer.documents import SECTIONS, Document
from indexer.embedder import EmbedderError
from indexer.errors import IngestError, Skipped
from indexer.loaders import LoadResult, load_documents
from indexer.pipeline import apply_changes

if TYPE_CHECKING:
    from index_store.check import RepairReport, VersionReport
    from indexer.embedder import Embedder
    from indexer.ray_indexing import RayFillReport

# Subcommands that live with their feature. Each module has ``register(subparsers)`` that adds its parsers with
# ``set_defaults(handler=fn)`` where ``fn(args, settings) -> exit code``; heavy imports happen inside the handler.
COMMAND_MODULES = ("service.commands", "eval.commands", "eval.bench")

EXIT_FAILURE = 1

# Errors that describe a problem with the input or the environment, not a bug: one line, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    IngestError,
    IndexStoreError,
    EmbedderError,
    ImportError,  # an optional extra not installed (pymilvus): the message names the pip command
    InvalidSearchRequest,
    ValueError,
    OSError,
    sqlite3.Error,  # a read-only or full index folder, a damaged journal: one line, not a traceback
)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    index_dir = Path(args.index_dir or settings.index_dir)
    if args.upgrade:
        return _cmd_upgrade(args, index_dir)
    if not args.paths:
        if args.optimize:
            return _report_merge(args, index_dir, optimize=True)
        raise ValueError("give the files or folders to index (citesearch index PATH ...), or --optimize / --upgrade")
    try:
        loaded = load_documents(args.paths)  # before loading the model: bad input fails fast
    except IngestError as exc:
        for skipped in exc.skipped:
            print(
                f"skipped {escape_for_terminal(skipped.source)}: {escape_for_terminal(skipped.reason)}", file=sys.stderr
            )
        raise
    loaded = _within_size_limit(loaded, settings.max_document_chars)
    ray_address = _ray_address(args, settings)  # before loading the model too: no Ray, no cluster: fail fast
    embedder = settings.load_embedder()
    options = settings.build_options(
        show_progress=(not args.json and sys.stderr.isatty()) or args.progress, lock_timeout=args.wait
    )
    milvus: dict[str, object] = {}
    with contextlib.ExitStack() as held:
        # With a Milvus server the rows go to Milvus from Ray actors after the publish: one Ray for both jobs.
        ray_held, ray_start = None, 0.0
        if ray_address is not None and settings.store == "milvus" and not settings.milvus_config().is_lite:
            from indexer.ray_indexing import ray_session

            started = time.perf_counter()
            ray_held = held.enter_context(ray_session(_ray_options(settings, ray_address)))
            ray_start = time.perf_counter() - started
        ray_fill = (
            None
            if ray_address is None
            else _fill_cache_on_ray(args, settings, ray_address, index_dir, loaded, embedder)
        )
        report = apply_changes(
            index_dir,
            embedder,
            upserts=loaded.documents,
            replace_all=not args.add,
            options=options,
            skipped=loaded.skipped,
        )
        extra: dict[str, object] = {}
        if ray_fill is not None:
            from indexer.ray_indexing import credit_ray_embeddings

            credit_ray_embeddings(report, ray_fill)
            extra["ray"] = ray_fill.to_dict()
            if ray_held is not None:  # started here, before the embedding job, which then found it running
                cast(dict[str, float], cast(dict[str, Any], extra["ray"])["seconds"])["start"] = round(ray_start, 3)
        # The tiered merge policy after every write (everything into one segment with --optimize): searches go on on
        # the version just published meanwhile, and another writer only waits for the merge's short commit.
        merged = _merge(index_dir, optimize=args.optimize, wait=args.wait)
        if settings.store == "milvus":
            milvus = _publish_to_milvus(
                index_dir, settings, ray_held, on_ray=ray_address is not None, local=ray_address == "local", args=args
            )
    if args.json:
        fields = {"index_dir": str(index_dir), **report.to_dict(), **extra, "merge": merged, **milvus}
        print(json.dumps(fields, ensure_ascii=False))
    else:
        for skipped in report.skipped:
            print(
                f"skipped {escape_for_terminal(skipped.source)}: {escape_for_terminal(skipped.reason)}", file=sys.stderr
            )
        print(report.summary())
        if merged["line"]:
            print(merged["line"])
        print(f"index folder: {index_dir}")
        if milvus:
            print(f"Milvus: serving {milvus['milvus_version']} at {milvus['milvus_uri']} ({milvus['milvus_alias']})")
            print(f"Milvus rows: {_rows_line(milvus)}")
    return 0


def _ray_address(args: argparse.Namespace, settings: Settings) -> str | None:
    """The Ray address from --ray and CITESEARCH_RAY_ADDRESS, checked (Ray installed, cluster reachable); None for
    the local path."""
    if args.ray is None and not settings.ray_address.strip():
        return None
    from indexer.ray_indexing import check_address, resolve_address

    address = resolve_address(args.ray, settings.ray_address)
    if address is not None:
        check_address(address)
    return address


def _fill_cache_on_ray(
    args: argparse.Namespace,
    settings: Settings,
    address: str,
    index_dir: Path,
    loaded: LoadResult,
    embedder: Embedder,
) -> RayFillReport:
    """Chunk and embed on Ray into the embedding cache, so that the publish that follows embeds nothing
    (indexer/ray_indexing.py)."""
    from indexer.ray_indexing import fill_embedding_cache, progress_stream

    return fill_embedding_cache(
        index_dir,
        loaded.documents,
        embedder,
        settings.chunker_settings(),
        options=_ray_options(settings, address),
        batch_size=settings.embed_batch_size,
        progress=progress_stream(not args.json or args.progress),
    )


def _merge(index_dir: Path, *, optimize: bool, wait: float) -> dict[str, Any]:
    """One merge pass (index_store.merging), as a line for people and fields for --json."""
    from index_store.merging import merge_index

    report = merge_index(index_dir, optimize=optimize, lock_timeout=max(wait, 30.0))
    line = (
        f"merged {sum(len(run) for run in report.merged)} segments into {len(report.into)} as {report.version} "
        f"({report.segments_before} -> {report.segments_after} segments, {report.carried_deletes} deletions carried "
        f"over, {sum(report.seconds.values()):.1f}s)"
        if report.version is not None
        else (f"optimize: {report.detail}" if optimize else "")
    )
    return {"version": report.version, "segments": report.segments_after, "line": line}


def _report_merge(args: argparse.Namespace, index_dir: Path, *, optimize: bool) -> int:
    merged = _merge(index_dir, optimize=optimize, wait=args.wait)
    print(json.dumps({"index_dir": str(index_dir), "merge": merged}) if args.json else merged["line"])
    return 0


def _cmd_upgrade(args: argparse.Namespace, index_dir: Path) -> int:
    from index_store.upgrade import upgrade_index

    manifest = upgrade_index(index_dir, lock_timeout=args.wait)
    line = (
        f"upgraded {manifest.base_version} to {manifest.version}: {manifest.counts.get('documents', 0)} documents, "
        f"{manifest.counts.get('passages', 0)} passages in one segment (nothing re-embedded)"
    )
    print(json.dumps({"upgrade": {"version": manifest.version, "from": manifest.base_version}}) if args.json else line)
    return 0


def _publish_to_milvus(
    index_dir: Path,
    settings: Settings,
    ray_held: tuple[Any, int] | None,
    *,
    on_ray: bool,
    local: bool,
    args: argparse.Namespace,
) -> dict[str, object]:
    """Copy the version just published into new Milvus collections and switch the alias to them: the rows written
    by Ray actors when a Ray session is held (a Milvus server), else by this process (indexer/ray_milvus.py)."""
    from index_store.milvus_store import RowSink, insert_from_driver, publish_version
    from indexer.ray_milvus import LITE_DRIVER, milvus_writers, ray_sink

    config = settings.milvus_config()
    writers = milvus_writers(config, on_ray=on_ray)
    sink: RowSink | None = None
    if ray_held is not None:
        from indexer.ray_indexing import progress_stream

        ray, workers = ray_held
        sink = ray_sink(ray, workers=workers, local=local, progress=progress_stream(not args.json or args.progress))
    elif writers == LITE_DRIVER:
        print(
            f"ray: {config.uri} is Milvus Lite, which one process alone can open: the driver writes the rows",
            file=sys.stderr,
        )
        sink = functools.partial(insert_from_driver, label=LITE_DRIVER)
    with open_index(index_dir) as reader:
        published = publish_version(reader, config, sink=sink, batch=settings.milvus_write_batch)
    return {
        "milvus_uri": config.uri,
        "milvus_alias": config.alias,
        "milvus_version": published.stamp,
        "milvus_writers": published.write.writers,
        "milvus_write": published.write.to_dict(),
    }


def _rows_line(milvus: dict[str, object]) -> str:
    write = cast(dict[str, Any], milvus["milvus_write"])
    rows = ", ".join(f"{count:,} {kind}" for kind, count in write["rows"].items())
    rate = f", {write['rows_per_s']:,.0f} rows/s" if write["rows_per_s"] else ""
    who = f"{write['actors']} Ray actors" if write["actors"] else str(write["writers"])
    return f"{rows} written by {who} in {write['seconds']:.1f}s{rate}"


def _ray_options(settings: Settings, address: str) -> Any:
    from indexer.ray_indexing import RayOptions

    return RayOptions(address, settings.ray_workers, settings.ray_gpus_per_worker)


def _within_size_limit(loaded: LoadResult, max_chars: int) -> LoadResult:
    """Documents over CITESEARCH_MAX_DOCUMENT_CHARS are skipped with their reason, like unreadable files: one huge
    document would otherwise hold the writer (and every update after it) for many minutes."""
    kept: list[Document] = []
    skipped = list(loaded.skipped)
    for doc in loaded.documents:
        if len(doc.text) > max_chars:
            skipped.append(
                Skipped(
                    doc.source,
                    f"document {doc.doc_id!r} has {len(doc.text):,} characters, more than "
                    f"CITESEARCH_MAX_DOCUMENT_CHARS={max_chars:,}",
                )
            )
        else:
            kept.append(doc)
    if not kept and loaded.documents:
        raise IngestError("nothing indexable: every document is over CITESEARCH_MAX_DOCUMENT_CHARS", skipped)
    return LoadResult(kept, skipped)


def cmd_parse(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.parse_report import format_summary, summarise

    loaded = load_documents(args.paths)
    pages = [summarise(doc) for doc in loaded.documents]
    if args.json:
        skipped = [{"source": s.source, "reason": s.reason} for s in loaded.skipped]
        print(json.dumps({"pages": [p.to_dict() for p in pages], "skipped": skipped}, ensure_ascii=False))
        return 0
    for skipped_file in loaded.skipped:
        print(
            f"skipped {escape_for_terminal(skipped_file.source)}: {escape_for_terminal(skipped_file.reason)}",
            file=sys.stderr,
        )
    # Page text goes to a terminal: escape control characters, as `search` does.
    print("\n\n".join("\n".join(escape_for_terminal(line) for line in format_summary(p).split("\n")) for p in pages))
    return 0


def _format_hit_for_people(hit_dict: dict[str, Any], width: int = 100) -> str:
    citation = hit_dict["citation"]
    part = citation["section"]
    if citation["comment_no"] is not None:
        part += f" #{citation['comment_no']}"
        if citation.get("comment_author"):
            part += f" by {citation['comment_author']}"
        if citation.get("comment_date"):
            part += f" ({citation['comment_date']})"
        if citation.get("parent") is not None:
            part += f", reply to #{citation['parent']}"
    excerpt = escape_for_terminal(" ".join(hit_dict["text"].split()))
    if len(excerpt) > 400:
        excerpt = excerpt[:400].rsplit(" ", 1)[0] + " …"
    body = textwrap.fill(excerpt, width=width, initial_indent="    ", subsequent_indent="    ")
    name = escape_for_terminal(f"{citation['title'] or citation['doc_id']} [{citation['source']}]")
    cite = f"    — {name}, {escape_for_terminal(part)}, chars {citation['char_start']}–{citation['char_end']}"
    if citation.get("published"):
        cite += f", published {citation['published']}"
    if hit_dict.get("also_in"):
        others = escape_for_terminal(", ".join(hit_dict["also_in"][:5]))
        cite += f"\n    also in {len(hit_dict['also_in'])} documents: {others}"
    return f"{hit_dict['rank']:>3}. score {hit_dict['score']:.3f}\n{body}\n{cite}"


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    index_dir = Path(args.index_dir or settings.index_dir)
    with open_store(settings, index_dir) as store:  # before loading the model: a missing index fails fast
        embedder = settings.load_embedder()
        check_model_matches(store, embedder)
        searcher = Searcher(store, embedder)
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
    query = escape_for_terminal(result.query)
    print(f'{len(result.hits)} results for "{query}" (index {result.index_version}, {result.mode})')
    for item in cast("list[dict[str, Any]]", data["results"]):
        print(_format_hit_for_people(item))
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Verify every version; with --repair, make the published one intact. Exit 1 while it is not."""
    from index_store.check import check_index, repair_index

    index_dir = Path(args.index_dir or settings.index_dir)
    reports = check_index(index_dir)
    repair = None
    if args.repair:
        repair = repair_index(index_dir, lock_timeout=args.wait)
        if repair.action == "fell_back" and repair.base is not None:
            _reapply_journal(index_dir, repair.base)
        reports = check_index(index_dir)
    current_ok = any(r.current and r.state == "ok" for r in reports)
    if args.json:
        data: dict[str, object] = {
            "index_dir": str(index_dir),
            "ok": current_ok,
            "versions": [vars_of(r) for r in reports],
        }
        if repair is not None:
            data["repair"] = vars_of(repair)
        print(json.dumps(data, ensure_ascii=False))
        return 0 if current_ok else EXIT_FAILURE
    for r in reports:
        mark = "*" if r.current else " "
        docs = "?" if r.documents is None else str(r.documents)
        print(f"{mark} {r.name}  {r.state:<11}  {docs:>7} documents  {escape_for_terminal(r.detail)}")
    if repair is not None:
        print(f"repair: {repair.action}: {escape_for_terminal(repair.detail)}")
        if repair.lost_documents:
            shown = ", ".join(escape_for_terminal(d) for d in repair.lost_documents[:10])
            more = f" and {len(repair.lost_documents) - 10} more" if len(repair.lost_documents) > 10 else ""
            print(
                f"repair: {len(repair.lost_documents)} document(s) only the damaged version held: {shown}{more}; "
                "those posted over HTTP are applied again from the journal, index the others again"
            )
    elif not current_ok:
        print(f"the published version is not intact; run: citesearch check --repair --index-dir {index_dir}")
    return 0 if current_ok else EXIT_FAILURE


def _reapply_journal(index_dir: Path, base: str) -> None:
    """Re-queue journaled changes only the passed-over version held (the service applies them again)."""
    from index_store.layout import VERSIONS_DIR
    from index_store.manifest import Manifest
    from indexer.live_updates import JOURNAL_NAME, Journal, reapply_lost

    if (index_dir / JOURNAL_NAME).exists():
        with Journal(index_dir) as journal:
            reopened = reapply_lost(index_dir, journal, Manifest.read(index_dir / VERSIONS_DIR / base))
        if reopened:
            print(f"repair: {len(reopened)} journaled change(s) queued again; the service applies them")


def vars_of(report: VersionReport | RepairReport) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(report)


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
    index.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    index.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    index.add_argument("--add", action="store_true", help="add/update these documents, keep the others")
    index.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer's lock")
    index.add_argument("--json", action="store_true", help="print the build report as JSON")
    index.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    index.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="chunk and embed on Ray (pip install 'citesearch[ray]'): HOST:PORT or ray://HOST[:PORT] joins a "
        "cluster; without ADDRESS $CITESEARCH_RAY_ADDRESS, else a local Ray on loopback (put it after the paths)",
    )
    index.add_argument(
        "--optimize", action="store_true", help="merge the index down to one segment (after indexing PATHs, if any)"
    )
    index.add_argument(
        "--upgrade",
        action="store_true",
        help="convert an index written by the previous format (one folder per version) to segments, no re-embedding",
    )
    index.set_defaults(handler=cmd_index)

    parse = sub.add_parser(
        "parse",
        help="show how pages split into headline, article, bio and comments (nothing is indexed)",
        description="Load the files as `citesearch index` would and print each page's title, parts (article, author "
        "bio, each reader comment with its number, the comment it replies to, author, date and first words) and the "
        "characters dropped as page chrome.",
    )
    parse.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    parse.add_argument("--json", action="store_true", help="print one JSON object: pages and skipped files")
    parse.set_defaults(handler=cmd_parse)

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

    check = sub.add_parser("check", help="verify every index version; --repair rebuilds what can be rebuilt")
    check.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    check.add_argument("--repair", action="store_true", help="publish an intact version (rebuilt or the newest intact)")
    check.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer's lock")
    check.add_argument("--json", action="store_true", help="print the result as one JSON object")
    check.set_defaults(handler=cmd_check)

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
        # One line: an OS or SQLite error names its kind (e.g. "OperationalError: attempt to write a readonly
        # database"), and nothing in it (a file name, a document id) can drive the terminal.
        text = " ".join(str(exc).split())
        named = isinstance(exc, OSError | sqlite3.Error) or not text  # their text alone does not say what failed
        message = f"{type(exc).__name__}: {text}".rstrip(": ") if named else text
        print(f"citesearch: error: {escape_for_terminal(message)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("citesearch: interrupted; the published index is unchanged", file=sys.stderr)
        if "ray" in sys.modules:
            _exit_past_ray_threads(130)
        return 130


def _exit_past_ray_threads(code: int) -> None:
    """Exit at once, skipping the interpreter's finalisation. After an interrupt Ray Data's executor threads can still
    be inside C code (its object store client) when the interpreter tears down, and the process then dies of a
    segfault (exit -11) instead of the 130 an interrupt promises. Everything that matters is already unwound: the
    write was abandoned (nothing published), Ray shut down by ``ray_session``, and the SQLite files (the embedding
    cache) roll back any unfinished transaction on their own."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
