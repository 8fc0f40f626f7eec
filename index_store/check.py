"""``citesearch check [--repair]``: verify every version of an index folder and rebuild what can be rebuilt.

A version is ``ok`` (every file of every segment it names matches), ``rebuildable`` (only derived files of some
segments — postings, vectors, tables — are damaged, and their store plus the embedding cache can rebuild them) or
``damaged`` (its manifest, a deletes file or a segment's store cannot be trusted). ``repair_index`` writes a new
version: the published one with its damaged segments rebuilt (under new names), or, when the published one is
damaged, the newest intact older one published again (the damaged one is kept, never pruned, and what only it held
is named).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from index_store.derived import check_rebuildable, inspect_version, keyword_settings_of
from index_store.errors import IndexNotFoundError
from index_store.layout import VERSIONS_DIR, list_segments, read_deletes, segment_dir
from index_store.manifest import Manifest
from index_store.segment_io import STORE_FILE
from index_store.sqlite_store import connect
from index_store.versions import IndexWriter, choose_base, current_version, list_versions, upgrade_message


@dataclass(frozen=True, slots=True)
class VersionReport:
    name: str
    current: bool
    state: str  # ok, rebuildable, damaged
    detail: str
    documents: int | None  # from the manifest, when it is readable


@dataclass(frozen=True, slots=True)
class RepairReport:
    action: str  # nothing, rebuilt (derived files of the published version), fell_back (an older version again)
    version: str | None  # the version published by the repair (or the intact current one)
    base: str | None  # the version it was built from
    passed_over: tuple[str, ...] = ()  # damaged versions passed over, with why
    lost_documents: tuple[str, ...] = field(default=())  # ids the passed-over version held and the new one lacks
    detail: str = ""


def check_index(index_dir: Path) -> list[VersionReport]:
    """Every version, newest first, checked against its manifest: every file of every segment it names (damaged
    vectors also against the embedding cache, which rebuilds them)."""
    index_dir = Path(index_dir)
    current = current_version(index_dir)
    names = sorted(set(list_versions(index_dir)) | ({current} if current else set()), reverse=True)
    if not names:
        raise IndexNotFoundError(
            f"no index in {index_dir}; build one with: citesearch index PATH --index-dir {index_dir}"
        )
    reports = []
    for name in names:
        health = inspect_version(index_dir, name, trusted=None)
        state, detail = ("ok", "intact") if health.ok else ("damaged", health.describe())
        if health.legacy:
            detail = upgrade_message(index_dir, name)
        elif health.rebuildable and health.manifest is not None:
            state = "rebuildable"
            detail = (
                f"{health.describe()}; {health.damage.describe()} can be rebuilt from the segment's passages.sqlite"
            )
            problem = check_rebuildable(index_dir, health.manifest, health.damaged_segments)
            if problem is not None:
                state, detail = "damaged", f"{health.describe()}; {problem}"
        documents = None if health.manifest is None else health.manifest.counts.get("documents")
        reports.append(VersionReport(name, name == current, state, detail, documents))
    return reports


def _document_ids(index_dir: Path, name: str | None, *, besides: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """The document ids the live passages of version ``name`` belong to, as far as its segments' stores still give
    them up. When its manifest is unreadable: the documents of every segment on disk that ``besides`` (the segments
    of an intact version) does not name."""
    manifest = None
    if name is not None:
        try:
            manifest = Manifest.read(index_dir / VERSIONS_DIR / name)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            manifest = None
    refs = (
        [(ref.name, ref.deletes, ref.passages) for ref in manifest.segments]
        if manifest is not None
        else [(segment, None, None) for segment in list_segments(index_dir) if segment not in besides]
    )
    found: set[str] = set()
    for segment, deletes, passages in refs:
        try:
            with contextlib.closing(connect(segment_dir(index_dir, segment) / STORE_FILE, read_only=True)) as db:
                rows = db.execute("SELECT passage_id, doc_id FROM passages ORDER BY passage_id").fetchall()
        except sqlite3.Error:
            continue
        deleted = None
        if deletes is not None and passages is not None:
            with contextlib.suppress(OSError, ValueError):
                deleted = read_deletes(index_dir, deletes, passages)
        found.update(
            str(doc_id) for i, (_, doc_id) in enumerate(rows) if deleted is None or i >= len(deleted) or not deleted[i]
        )
    return found


def repair_index(index_dir: Path, *, lock_timeout: float = 0.0) -> RepairReport:
    """Make the published version intact (see the module docstring). Raises ``IndexCorruptError`` when no
    version is intact (then only a full re-index helps)."""
    index_dir = Path(index_dir)
    current = current_version(index_dir)
    reports = {r.name: r for r in check_index(index_dir)}
    if current is not None and reports.get(current) and reports[current].state == "ok":
        return RepairReport("nothing", current, current, detail=f"the published version {current} is intact")
    planned = choose_base(index_dir, on_damage="fallback", rebuild_vectors=False)
    if planned is None:  # pragma: no cover - check_index raised already for an empty folder
        raise IndexNotFoundError(f"no index in {index_dir}")
    manifest = planned.manifest
    with IndexWriter.begin(
        index_dir,
        model=manifest.model,
        chunker=manifest.chunker,
        vector_backend=manifest.vector_backend,
        keyword=keyword_settings_of(manifest),
        lock_timeout=lock_timeout,
        on_damage="fallback",
    ) as writer:
        assert writer.base is not None
        base = writer.base.version
        action = "rebuilt" if base == current else "fell_back"
        published = writer.publish(build={"repair": {"action": action, "base": base, "replaces": current}}, extra=None)
    lost: tuple[str, ...] = ()
    if action == "fell_back" and current is not None:
        kept = {ref.name for ref in published.segments}
        held = _document_ids(index_dir, current, besides=kept)
        lost = tuple(sorted(held - _document_ids(index_dir, published.version)))
    return RepairReport(
        action,
        published.version,
        base,
        passed_over=planned.skipped,
        lost_documents=lost,
        detail=(
            f"published {published.version} from {base} with {planned.rebuilt or 'every file'} rebuilt"
            if action == "rebuilt"
            else f"published {published.version} from {base}, the newest intact version; {current} is kept"
        ),
    )
