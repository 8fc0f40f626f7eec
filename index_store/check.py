"""``citesearch check [--repair]``: verify every version of an index folder and rebuild what can be rebuilt.

A version is ``ok`` (every file matches the manifest), ``rebuildable`` (only derived files — BM25, vectors — are
damaged, and its store plus the embedding cache can rebuild them) or ``damaged`` (its manifest or its documents
cannot be trusted). ``repair_index`` writes a new version: the published one with its derived files rebuilt, or,
when the published one is damaged, the newest intact older one published again (the damaged one is kept, never
pruned, and what only it held is named).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from index_store.derived import CACHE_PATH, inspect_version, keyword_settings_of, vectors_from_cache
from index_store.errors import IndexCorruptError, IndexNotFoundError
from index_store.manifest import FORMAT_VERSION
from index_store.sqlite_store import FILE_NAME as STORE_FILE
from index_store.sqlite_store import PassageStore, connect
from index_store.versions import VERSIONS_DIR, IndexWriter, choose_base, current_version, list_versions


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
    """Every version folder, newest first, checked against its manifest (vectors also against the cache)."""
    index_dir = Path(index_dir)
    current = current_version(index_dir)
    names = sorted(set(list_versions(index_dir)) | ({current} if current else set()), reverse=True)
    if not names:
        raise IndexNotFoundError(
            f"no index in {index_dir}; build one with: citesearch index PATH --index-dir {index_dir}"
        )
    reports = []
    for name in names:
        version_dir = index_dir / VERSIONS_DIR / name
        health = inspect_version(version_dir, format_version=FORMAT_VERSION)
        state, detail = ("ok", "intact") if health.ok else ("damaged", health.describe())
        if health.rebuildable and health.manifest is not None:
            state = "rebuildable"
            detail = f"{health.describe()}; {health.damage.describe()} can be rebuilt from passages.sqlite"
            if health.damage.vectors:
                try:
                    with contextlib.closing(connect(version_dir / STORE_FILE, read_only=True)) as db:
                        vectors_from_cache(PassageStore(db), health.manifest, index_dir / CACHE_PATH)
                except (IndexCorruptError, sqlite3.Error) as exc:
                    state, detail = "damaged", f"{health.describe()}; {exc}"
        documents = None if health.manifest is None else health.manifest.counts.get("documents")
        reports.append(VersionReport(name, name == current, state, detail, documents))
    return reports


def _document_ids(version_dir: Path) -> set[str] | None:
    """The document ids a (possibly damaged) store still gives up, or None when it gives up nothing."""
    try:
        with contextlib.closing(connect(version_dir / STORE_FILE, read_only=True)) as db:
            return {row[0] for row in db.execute("SELECT doc_id FROM documents")}
    except sqlite3.Error:
        return None


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
        held = _document_ids(index_dir / VERSIONS_DIR / current) or set()
        lost = tuple(sorted(held - (_document_ids(index_dir / VERSIONS_DIR / published.version) or set())))
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
