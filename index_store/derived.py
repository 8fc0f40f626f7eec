"""Checking a version, and rebuilding a segment's derived files from what they derive from.

A segment's documents and passages live in its ``passages.sqlite``; everything else in its folder is derived from
it: the postings from the passage texts, the vectors from the embedding cache (keyed by the passage's embed-text
hash, which the store keeps), the part and document tables from both. So a derived file that fails its checksum is
a loss of time, not of data: as long as the segment's store is intact, the segment is rebuilt (in memory for a
reader, under a new name for a writer or ``check --repair``) instead of abandoning the version. A damaged store, an
unreadable ``segment.json`` (it vouches for the store) or a damaged deletes file (which passages are live) makes the
version's documents untrustworthy.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index_store.centroids import CENTROIDS_DIR, IvfSettings, load_centroids, wants_ivf
from index_store.errors import IndexCorruptError
from index_store.keyword import KeywordSettings
from index_store.layout import DELETES_DIR, SEGMENTS_DIR, VERSIONS_DIR, next_segment_name, segment_dir
from index_store.manifest import FORMAT_VERSION, LEGACY_FORMAT_VERSION, MANIFEST_NAME, FileInfo, Manifest, failed_files
from index_store.segment_io import SEGMENT_JSON, STORE_FILE, SegmentCache, build_segment
from index_store.sqlite_store import PassageStore, connect

if TYPE_CHECKING:
    from index_store.segments import Segment

CACHE_PATH = Path("cache") / "embeddings.sqlite"  # relative to the index folder (see indexer.pipeline)


@dataclass(frozen=True, slots=True)
class Damage:
    """What in a version failed its checks, sorted by what it costs."""

    store: bool  # a segment's passages.sqlite (or nothing vouches for it), a deletes file: documents untrustworthy
    keyword: bool  # postings of a segment (BM25 or its context): rebuilt from the store
    vectors: bool  # a segment's vectors: rebuilt from the embedding cache
    other: tuple[str, ...]  # other files of a segment (tables, segment.json): rebuilt from the store too

    @property
    def rebuildable(self) -> bool:
        return not self.store and (self.keyword or self.vectors or bool(self.other))

    def describe(self) -> str:
        parts = (["bm25"] if self.keyword else []) + (["vectors"] if self.vectors else [])
        parts += ["segment tables"] if self.other else []
        return " and ".join(parts) or "nothing"


def _segment_file(name: str) -> tuple[str, str] | None:
    """(segment, file inside it) for a path ``segments/<segment>/<file>``."""
    parts = name.split("/", 2)
    if len(parts) == 3 and parts[0] == SEGMENTS_DIR:
        return parts[1], parts[2]
    return None


def classify(problem_files: Iterable[str]) -> Damage:
    """Sort the names of files that failed verification (paths relative to the index folder)."""
    store = keyword = vectors = False
    other: list[str] = []
    for name in problem_files:
        inside = _segment_file(name)
        if name.startswith(f"{CENTROIDS_DIR}/"):  # IVF centroids: trained again by the next big segment
            vectors = True
            continue
        if inside is None:  # a deletes file, the manifest itself, or a problem not tied to one file
            store = True
            continue
        _, file = inside
        if file == STORE_FILE or file.startswith(f"{STORE_FILE}-"):
            store = True
        elif file.startswith("bm25/"):
            keyword = True
        elif file.startswith("vectors"):
            vectors = True
        else:
            other.append(name)
    return Damage(store=store, keyword=keyword, vectors=vectors, other=tuple(other))


def keyword_settings_of(manifest: Manifest) -> KeywordSettings | None:
    """The BM25 settings the manifest records (None: the version was built without a keyword index)."""
    recorded = manifest.extra.get("keyword")
    if not isinstance(recorded, dict):
        return None
    fields = {k: v for k, v in recorded.items() if k in KeywordSettings.__dataclass_fields__}
    return KeywordSettings(**fields)


def cache_keys_of(manifest: Manifest) -> list[str]:
    """The embedding-cache model keys the version's vectors were stored under (indexer.pipeline.embedding_cache_key:
    the bare model name for torch, ``name#backend`` otherwise; a mixed version names several backends)."""
    name = manifest.model.name
    backends = [b for b in str(manifest.extra.get("embed_backend") or "").split("+") if b]
    keys = [name if b == "torch" else f"{name}#{b}" for b in backends]
    return list(dict.fromkeys([*keys, name]))


def cached_vectors(cache_path: Path, manifest: Manifest, hashes: Iterable[str]) -> dict[str, np.ndarray]:
    """Vectors of these embed-text hashes from the embedding cache (those it lacks are left out)."""
    wanted = sorted(set(hashes))
    found: dict[str, np.ndarray] = {}
    if not cache_path.is_file():
        raise IndexCorruptError(f"the embedding cache {cache_path} is missing, so the vectors cannot be rebuilt")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True)) as db:
            for key in cache_keys_of(manifest):
                missing = [h for h in wanted if h not in found]
                for start in range(0, len(missing), 900):
                    batch = missing[start : start + 900]
                    query = (
                        "SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN "
                        f"({','.join('?' * len(batch))})"
                    )
                    for content_hash, blob in db.execute(query, [key, *batch]):
                        vector = np.frombuffer(blob, dtype=np.float32)
                        if vector.shape == (manifest.model.dim,):
                            found[content_hash] = vector
    except sqlite3.Error as exc:
        raise IndexCorruptError(f"the embedding cache {cache_path} cannot be read ({exc})") from None
    return found


def segment_files(folder: Path) -> dict[str, FileInfo]:
    """The files a segment's ``segment.json`` vouches for (read without loading the segment)."""
    meta = json.loads((folder / SEGMENT_JSON).read_text(encoding="utf-8"))
    return {name: FileInfo(**info) for name, info in meta["files"].items()}


@dataclass(frozen=True, slots=True)
class _StoredRow:
    """A passage as a segment build takes it (``PassageLike``), read back from a segment's store."""

    ordinal: int
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    text: str
    content_hash: str


Contents = list[tuple[Any, list[int], list[_StoredRow], np.ndarray, int | None]]


def segment_contents_from_store(
    store: PassageStore, vectors_of: Callable[[list[int]], np.ndarray], dim: int, keys: dict[str, int] | None = None
) -> Contents:
    """Every document of a store as a segment build takes it: (document, passage ids, passages, vectors, cluster
    key or None), the vectors from ``vectors_of(passage ids)``."""
    rows = store.connection.execute(
        "SELECT passage_id, doc_id, ordinal, section, comment_no, char_start, char_end, text, content_hash "
        "FROM passages ORDER BY doc_id, ordinal"
    ).fetchall()
    by_doc: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_doc.setdefault(str(row[1]), []).append(row)
    doc_ids = [str(r[0]) for r in store.connection.execute("SELECT doc_id FROM documents ORDER BY doc_id")]
    out: Contents = []
    for doc_id in doc_ids:
        passages = by_doc.get(doc_id, [])
        ids = [int(r[0]) for r in passages]
        vectors = np.asarray(vectors_of(ids), dtype=np.float32) if ids else np.zeros((0, dim), np.float32)
        out.append(
            (
                store.document(doc_id),
                ids,
                [_StoredRow(r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in passages],
                vectors,
                None if keys is None else keys.get(doc_id),
            )
        )
    return out


def segment_contents(index_dir: Path, name: str, manifest: Manifest) -> Contents:
    """Every document of segment ``name`` as a build takes it, read from its intact store, with the vectors from
    the embedding cache and the duplicate-cluster keys it had (when that table is intact). Raises
    ``IndexCorruptError`` when the cache lacks vectors (they would need re-embedding)."""
    folder = segment_dir(index_dir, name)
    keys: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # damaged: clusters found again
        files = segment_files(folder)
        if not failed_files(folder, {k: files[k] for k in ("doc_ids.npy", "cluster_key.npy") if k in files}):
            keys = dict(
                zip(
                    np.load(folder / "doc_ids.npy").tolist(),
                    np.load(folder / "cluster_key.npy").tolist(),
                    strict=True,
                )
            )
    with contextlib.closing(connect(folder / STORE_FILE, read_only=True)) as db:
        hash_of = dict(db.execute("SELECT passage_id, content_hash FROM passages").fetchall())
        found = cached_vectors(index_dir / CACHE_PATH, manifest, hash_of.values())
        lacking = sum(1 for h in hash_of.values() if h not in found)
        if lacking:
            raise IndexCorruptError(
                f"the embedding cache lacks the vectors of {lacking} of {len(hash_of)} passages of segment {name}, "
                "so they cannot be rebuilt without re-embedding (re-index the documents)"
            )
        return segment_contents_from_store(
            PassageStore(db), lambda ids: np.stack([found[hash_of[i]] for i in ids]), manifest.model.dim, keys
        )


def _segment_settings(index_dir: Path, name: str, manifest: Manifest) -> KeywordSettings | None:
    return keyword_settings_of(manifest)


def rebuild_segment_in_memory(index_dir: Path, name: str, manifest: Manifest) -> Segment:
    """Segment ``name`` rebuilt from its store and the embedding cache in a private temporary folder (a reader
    never writes into the index folder); same passages, same ids, same positions, so the deletes files apply."""
    contents = segment_contents(index_dir, name, manifest)
    scratch = Path(tempfile.mkdtemp(prefix="citesearch-rebuilt-"))
    try:
        segment = build_segment(
            scratch / name, contents, dim=manifest.model.dim, keyword=_segment_settings(index_dir, name, manifest)
        )
    finally:
        # The loaded segment keeps its files open (mapped arrays, the SQLite handle): removing the names is safe.
        shutil.rmtree(scratch, ignore_errors=True)
    return segment


def rebuild_segments(
    index_dir: Path, manifest: Manifest, damaged: dict[str, list[str]], cache: SegmentCache | None = None
) -> dict[str, str]:
    """Rebuild each damaged segment into a new segment folder of the index (a writer or ``check --repair``, under
    the write lock); returns old name -> new name. The new version names the new one with the old deletes file."""
    renamed: dict[str, str] = {}
    taken = {ref.name for ref in manifest.segments}
    for name in damaged:
        new_name = next_segment_name(index_dir, taken)
        taken.add(new_name)
        contents = segment_contents(index_dir, name, manifest)
        ivf = IvfSettings.of(manifest)
        # A big segment is rebuilt as IVF again when the index's stored centroids are intact (never trained here).
        centroids = (
            load_centroids(index_dir, manifest, ivf)
            if wants_ivf(manifest.vector_backend, sum(len(item[1]) for item in contents), ivf)
            else None
        )
        segment = build_segment(
            segment_dir(index_dir, new_name),
            contents,
            dim=manifest.model.dim,
            keyword=_segment_settings(index_dir, name, manifest),
            centroids=centroids,
            ivf_min_vectors=ivf.min_vectors,
        )
        if cache is not None:
            cache.put(index_dir, segment)
        renamed[name] = new_name
    return renamed


def check_rebuildable(index_dir: Path, manifest: Manifest, damaged: dict[str, list[str]]) -> str | None:
    """None when every damaged segment can be rebuilt (its store reads, the cache holds its vectors), else why."""
    for name in damaged:
        try:
            with contextlib.closing(connect(segment_dir(index_dir, name) / STORE_FILE, read_only=True)) as db:
                hashes = [r[0] for r in db.execute("SELECT content_hash FROM passages")]
            found = cached_vectors(index_dir / CACHE_PATH, manifest, hashes)
        except (IndexCorruptError, sqlite3.Error) as exc:
            return str(exc)
        lacking = sum(1 for h in hashes if h not in found)
        if lacking:
            return (
                f"the embedding cache lacks the vectors of {lacking} of {len(hashes)} passages of segment {name}, so "
                "they cannot be rebuilt without re-embedding (re-index the documents)"
            )
    return None


@dataclass(frozen=True, slots=True)
class VersionHealth:
    """The result of checking one version against its manifest (nothing is loaded)."""

    name: str
    manifest: Manifest | None  # None when manifest.json is missing or unreadable
    failed: dict[str, str]  # file (relative to the index folder) -> what is wrong with it
    problem: str | None = None  # why the manifest cannot be used, if it cannot
    legacy: bool = False  # written by the previous format (one folder per version): upgrade or re-index
    checked: tuple[str, ...] = field(default=())  # segments whose files were checksummed

    @property
    def ok(self) -> bool:
        return self.manifest is not None and self.problem is None and not self.failed

    @property
    def damage(self) -> Damage:
        return classify(self.failed)

    @property
    def rebuildable(self) -> bool:
        """Only derived files are damaged: the documents are intact and the rest can be rebuilt from them."""
        return self.manifest is not None and self.problem is None and self.damage.rebuildable

    @property
    def damaged_segments(self) -> dict[str, list[str]]:
        """Segment -> its damaged derived files (only meaningful when ``rebuildable``)."""
        out: dict[str, list[str]] = {}
        for name in self.failed:
            inside = _segment_file(name)
            if inside is not None:
                out.setdefault(inside[0], []).append(inside[1])
        return out

    def describe(self) -> str:
        if self.problem is not None:
            return self.problem
        return ", ".join(self.failed.values()) or "intact"


def inspect_version(index_dir: Path, name: str, *, trusted: set[str] | None = None) -> VersionHealth:
    """Read the manifest of version ``name`` and verify what it names: the deletes files and each segment's
    ``segment.json``, then every file of each segment not in ``trusted`` (segments this process loaded and verified
    already; None: verify every file)."""
    version_dir = Path(index_dir) / VERSIONS_DIR / name
    try:
        manifest = Manifest.read(version_dir)
    except FileNotFoundError:
        return VersionHealth(name, None, {}, f"version folder or its {MANIFEST_NAME} is missing")
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        return VersionHealth(name, None, {}, f"{MANIFEST_NAME} is unreadable ({type(exc).__name__}: {exc})")
    if manifest.format_version == LEGACY_FORMAT_VERSION:
        return VersionHealth(name, manifest, {}, f"format version {LEGACY_FORMAT_VERSION}", legacy=True)
    if manifest.format_version != FORMAT_VERSION:
        return VersionHealth(
            name, manifest, {}, f"format version {manifest.format_version}, this citesearch reads {FORMAT_VERSION}"
        )
    failed = failed_files(Path(index_dir), manifest.files)
    for ref in manifest.segments:
        key = f"{SEGMENTS_DIR}/{ref.name}/{SEGMENT_JSON}"
        if key not in manifest.files:
            failed[key] = f"{key} is not vouched for by {MANIFEST_NAME}"
        if ref.deletes is not None and ref.deletes not in manifest.files:
            failed[ref.deletes] = f"{ref.deletes} is not vouched for by {MANIFEST_NAME}"
        if ref.deletes is not None and not ref.deletes.startswith(f"{DELETES_DIR}/"):
            failed[ref.deletes] = f"{ref.deletes} is not a deletes file"
    checked = []
    for ref in manifest.segments:
        key = f"{SEGMENTS_DIR}/{ref.name}/{SEGMENT_JSON}"
        if key not in failed and trusted is not None and ref.name in trusted:
            continue
        checked.append(ref.name)
        try:
            files = segment_files(segment_dir(index_dir, ref.name))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Nothing vouches for the segment's store any more: its documents cannot be trusted.
            store = f"{SEGMENTS_DIR}/{ref.name}/{STORE_FILE}"
            failed[store] = f"{store} cannot be verified: segment {ref.name}'s {SEGMENT_JSON} is unreadable ({exc})"
            continue
        # A segment.json that fails the manifest's checksum but parses still vouches for the store: a damaged
        # store cannot match the sha256 it lists. So it is a derived file (the segment is rebuilt from its store)
        # unless the store fails too.
        for file, why in failed_files(segment_dir(index_dir, ref.name), files).items():
            failed[f"{SEGMENTS_DIR}/{ref.name}/{file}"] = f"{SEGMENTS_DIR}/{ref.name}/{why}"
    return VersionHealth(name, manifest, failed, checked=tuple(checked))
