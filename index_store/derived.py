"""Derived files of a version (BM25, context, vectors) rebuilt from what they derive from.

A version's documents and passages live in ``passages.sqlite``; everything else in the folder is derived from it:
the BM25 indexes from the passage texts, the vectors from the embedding cache (keyed by the passage's embed-text
hash, which the store keeps). So a derived file that fails its checksum is a loss of time, not of data: as long as
the store is intact, it is rebuilt instead of abandoning the version (and with it every document only that version
holds).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index_store.errors import IndexCorruptError
from index_store.keyword import DIR_NAME as KEYWORD_DIR
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.manifest import Manifest
from index_store.sqlite_store import FILE_NAME as STORE_FILE
from index_store.sqlite_store import PassageStore
from index_store.vectors import VectorIndex, create_vector_index

CACHE_PATH = Path("cache") / "embeddings.sqlite"  # relative to the index folder (see indexer.pipeline)
VECTOR_FILES = frozenset(
    {"vectors.faiss", "vectors.ids.npy", "vectors.f32.npy", "vectors.ivf.faiss", "vectors.ivf.json"}
)


@dataclass(frozen=True, slots=True)
class Damage:
    """What in a version failed its checks, sorted by what it costs."""

    store: bool  # passages.sqlite itself: the documents of this version cannot be trusted
    keyword: bool  # a file under bm25/ (BM25 or its context index): rebuilt from the store
    vectors: bool  # a vector file: rebuilt from the embedding cache
    other: tuple[str, ...]  # files the manifest lists that are none of these (nothing known rebuilds them)

    @property
    def rebuildable(self) -> bool:
        return not self.store and not self.other and (self.keyword or self.vectors)

    def describe(self) -> str:
        parts = (["bm25"] if self.keyword else []) + (["vectors"] if self.vectors else [])
        return " and ".join(parts) or "nothing"


def classify(problem_files: list[str]) -> Damage:
    """Sort the names of files that failed verification (``manifest.verify_files`` lines start with the name)."""
    store = keyword = vectors = False
    other: list[str] = []
    for name in problem_files:
        if name == STORE_FILE or name.startswith(f"{STORE_FILE}-"):
            store = True
        elif name == KEYWORD_DIR or name.startswith(f"{KEYWORD_DIR}/"):
            keyword = True
        elif name in VECTOR_FILES:
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


def keyword_index_from_store(store: PassageStore, settings: KeywordSettings) -> KeywordIndex:
    """BM25 over every passage of ``store`` (and its parts, for the context signal): what a publish writes."""
    parts = (
        [
            (KeywordIndex.text_for(doc.title, doc.text[unit.char_start : unit.char_end], settings), members)
            for doc, unit, members in store.iter_parts()
        ]
        if settings.context
        else None
    )
    return KeywordIndex.build(
        ((p.passage_id, KeywordIndex.text_for(p.title, p.text, settings)) for p in store.iter_passages()),
        settings,
        parts,
    )


def cache_keys_of(manifest: Manifest) -> list[str]:
    """The embedding-cache model keys the version's vectors were stored under (indexer.pipeline.embedding_cache_key:
    the bare model name for torch, ``name#backend`` otherwise; a mixed version names several backends)."""
    name = manifest.model.name
    backends = [b for b in str(manifest.extra.get("embed_backend") or "").split("+") if b]
    keys = [name if b == "torch" else f"{name}#{b}" for b in backends]
    return list(dict.fromkeys([*keys, name]))


def vectors_from_cache(store: PassageStore, manifest: Manifest, cache_path: Path) -> VectorIndex:
    """An exact, writable vector index of every passage of ``store``, read from the embedding cache. Raises
    ``IndexCorruptError`` naming how many passages the cache lacks (those would need re-embedding)."""
    rows = store.connection.execute("SELECT passage_id, content_hash FROM passages ORDER BY passage_id").fetchall()
    if not cache_path.is_file():
        raise IndexCorruptError(f"the embedding cache {cache_path} is missing, so the vectors cannot be rebuilt")
    wanted = sorted({h for _, h in rows})
    found: dict[str, np.ndarray] = {}
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
    lacking = sum(1 for _, h in rows if h not in found)
    if lacking:
        raise IndexCorruptError(
            f"the embedding cache lacks the vectors of {lacking} of {len(rows)} passages, so the vectors cannot be "
            "rebuilt without re-embedding (re-index the documents)"
        )
    index = create_vector_index("faiss", manifest.model.dim)
    if rows:
        ids = np.fromiter((pid for pid, _ in rows), dtype=np.int64, count=len(rows))
        index.add(ids, np.stack([found[h] for _, h in rows]).astype(np.float32, copy=False))
    return index


@dataclass(frozen=True, slots=True)
class VersionHealth:
    """The result of checking one version folder against its manifest (nothing is loaded)."""

    name: str
    manifest: Manifest | None  # None when manifest.json is missing or unreadable
    failed: dict[str, str]  # file -> what is wrong with it
    problem: str | None = None  # why the manifest cannot be used, if it cannot

    @property
    def ok(self) -> bool:
        return self.manifest is not None and self.problem is None and not self.failed

    @property
    def damage(self) -> Damage:
        return classify(list(self.failed))

    @property
    def rebuildable(self) -> bool:
        """Only derived files are damaged: the documents are intact and the rest can be rebuilt from them."""
        return self.manifest is not None and self.problem is None and self.damage.rebuildable

    def describe(self) -> str:
        if self.problem is not None:
            return self.problem
        return ", ".join(self.failed.values()) or "intact"


def inspect_version(version_dir: Path, *, format_version: int) -> VersionHealth:
    """Read the manifest of ``version_dir`` and verify every file it lists."""
    from index_store.manifest import MANIFEST_NAME, failed_files

    name = version_dir.name
    try:
        manifest = Manifest.read(version_dir)
    except FileNotFoundError:
        return VersionHealth(name, None, {}, f"version folder or its {MANIFEST_NAME} is missing")
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        return VersionHealth(name, None, {}, f"{MANIFEST_NAME} is unreadable ({type(exc).__name__}: {exc})")
    if manifest.format_version != format_version:
        return VersionHealth(
            name, manifest, {}, f"format version {manifest.format_version}, this citesearch reads {format_version}"
        )
    return VersionHealth(name, manifest, failed_files(version_dir, manifest.files))
