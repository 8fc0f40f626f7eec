"""An immutable segment: the whole documents one write (or one merge) produced, in one checksummed folder.

Layout of ``segments/<name>/`` (row/position ``i`` of every per-passage array is passage ``ids[i]``, ids ascending;
parts and documents are numbered by local ordinals: in a written segment documents in doc-id order as
``PassageStore.iter_parts`` gives them, in a merged one the sources' orders one after the other)::

    segment.json          name, counts, id range, keyword settings, vector kind, dim, and file -> sha256/bytes
    passages.sqlite       the documents and passages (index_store.sqlite_store schema and code: citations stay exact)
    ids.npy               int64 passage ids
    vectors.f32.npy       float32 (n, dim) vectors (memory-mapped by readers)
    vectors.ivf.*         IVF index over the rows, for big segments built with trained centroids (segments.vectors)
    bm25/passages/*       term-frequency postings of the passages (segments.postings; no precomputed scores)
    bm25/parts/*          the same over whole document parts (the context signal), when settings.context
    part_of.npy           int64 local part ordinal of each position
    part_doc.npy          int64 local document ordinal of each part
    part_members.npy      int64 positions grouped by part; part_starts.npy: CSR starts (citesearch.part_evidence)
    part_lead.npy         int64 lead position of each part: the first passage of its document
    part_means.npy        float32 (parts, dim) normalised mean of each part's first 64 passage vectors
    doc_of.npy            int64 local document ordinal of each position
    doc_ids.npy           str doc ids; published.npy: ISO date or ""; timestamps.npy: float64 epoch s (NaN unknown)
    cluster_key.npy       int64 duplicate-cluster key of each document (segments.clusters)
    minhash.npy           (documents, 64) MinHash hash values (datasketch's dtype) of the article text
    has_signature.npy     bool: the article text is long enough to compare
    tokens/*              optional: the passages' token vectors as int8 codes in the index's fixed basis, and the
                          basis itself (index_store.token_vectors), for the late-interaction rerank

``Segment.build`` writes into a temporary sibling folder, fsyncs every file and the folder, and renames it into place,
so a segment folder either does not exist or is complete. ``Segment.load(path, verify=True)`` checks every file
against ``segment.json`` and raises ``IndexCorruptError`` naming the file that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHash

from citesearch.part_evidence import PartLayout, PartVectors
from index_store.duplicates import NUM_PERM, _shingles, _signature, duplicate_clusters
from index_store.errors import IndexCorruptError
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.manifest import FileInfo, failed_files, file_sha256
from index_store.segments.postings import Postings
from index_store.segments.vectors import IVF_MIN_VECTORS, Centroids, SegmentVectors
from index_store.shapes import DocumentLike, PassageLike, UnitLike
from index_store.sqlite_store import FILE_NAME as STORE_FILE
from index_store.sqlite_store import PassageStore, StoredDocument, StoredPassage, connect
from index_store.token_vectors import TokenCodes, TokenProjection, load_tokens

META_FILE = "segment.json"
SEGMENT_FORMAT = 1
PASSAGE_POSTINGS = Path("bm25") / "passages"
PART_POSTINGS = Path("bm25") / "parts"
_ARRAYS = (
    "ids",
    "part_of",
    "part_doc",
    "part_members",
    "part_starts",
    "part_lead",
    "part_means",
    "doc_of",
    "doc_ids",
    "published",
    "timestamps",
    "cluster_key",
    "minhash",
    "has_signature",
)


@dataclass(frozen=True, slots=True)
class NewDocument:
    """One document to write into a segment: its passages with the ids the writer allocated, and their vectors."""

    doc: DocumentLike
    passage_ids: Sequence[int]
    passages: Sequence[PassageLike]
    vectors: np.ndarray  # (len(passages), dim) float32, L2-normalised
    cluster_key: int | None = None  # from segments.clusters.ClusterIndex.assign; None: found within this segment
    # Each passage's token codes and scales in the index's basis (index_store.token_vectors); None: not kept
    tokens: Sequence[tuple[np.ndarray, np.ndarray]] | None = None


def unit_row(unit: UnitLike) -> tuple[Any, ...]:
    """A unit as stored (the same row as ``index_store.versions`` writes)."""
    return (
        unit.section,
        unit.char_start,
        unit.char_end,
        unit.comment_no,
        getattr(unit, "comment_author", None),
        getattr(unit, "comment_date", None),
        getattr(unit, "comment_date_iso", None),
        getattr(unit, "parent", None),
        getattr(unit, "depth", 0),
    )


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_folder_atomically(target: Path, fill: Any) -> None:
    """Run ``fill(tmp_folder)``, fsync what it wrote, rename the folder to ``target`` and fsync the parent. A crash
    leaves at most a ``.tmp-*`` folder, which a writer removes."""
    if target.exists():
        raise FileExistsError(f"segment {target} already exists")
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        for path in sorted(tmp.rglob("*")):
            fsync_path(path)
        fsync_path(tmp)
        os.rename(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True, slots=True)
class DocumentRows:
    """The document table rows of a segment (local document ordinals)."""

    doc_ids: np.ndarray
    published: np.ndarray
    timestamps: np.ndarray
    cluster_key: np.ndarray
    minhash: np.ndarray
    has_signature: np.ndarray


def document_rows(
    docs: Sequence[tuple[str, str, str | None]],
    keys: Sequence[int | None],
    first_ids: Sequence[int],
    shingle_words: int,
) -> DocumentRows:
    """Rows for (doc_id, article text, published) documents; a ``None`` key is found among these documents with
    ``duplicate_clusters`` (key = the first passage id of the cluster's first document)."""
    from indexer.dates import parse_date, timestamp  # here: the indexer package imports index_store

    published = np.array([parse_date(p) or "" for _, _, p in docs], dtype="<U20")
    stamps = np.array([timestamp(p) if p else np.nan for p in published.tolist()], dtype=np.float64)
    probe = MinHash(num_perm=NUM_PERM, seed=1).hashvalues  # the dtype datasketch's scheme produces
    signatures = np.zeros((len(docs), NUM_PERM), dtype=probe.dtype)
    has = np.zeros(len(docs), dtype=bool)
    for i, (_, text, _) in enumerate(docs):
        shingles = _shingles(text, shingle_words)
        if shingles:
            signatures[i] = _signature(shingles).hashvalues
            has[i] = True
    cluster_key = np.array([-1 if k is None else k for k in keys], dtype=np.int64)
    if any(k is None for k in keys):
        roots = duplicate_clusters([text for _, text, _ in docs], shingle_words=shingle_words)
        missing = np.array([k is None for k in keys], dtype=bool)
        cluster_key[missing] = np.asarray(first_ids, dtype=np.int64)[roots[missing]]
    return DocumentRows(np.array([d for d, _, _ in docs], dtype=str), published, stamps, cluster_key, signatures, has)


class Segment:
    """A loaded segment. Immutable and safe to share between threads and between the views of several versions."""

    def __init__(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.name = path.name
        self.meta = meta
        recorded = meta.get("keyword")
        known = set(KeywordSettings.__dataclass_fields__)  # a newer release may record more; read what this knows
        self.settings = (
            KeywordSettings(**{k: v for k, v in recorded.items() if k in known}) if isinstance(recorded, dict) else None
        )
        self.dim = int(meta["dim"])
        self.ids: np.ndarray = arrays["ids"]
        self.part_of: np.ndarray = arrays["part_of"]
        self.part_doc: np.ndarray = arrays["part_doc"]
        self.part_members: np.ndarray = arrays["part_members"]
        self.part_starts: np.ndarray = arrays["part_starts"]
        self.part_lead: np.ndarray = arrays["part_lead"]
        self.part_means: np.ndarray = arrays["part_means"]
        self.doc_of: np.ndarray = arrays["doc_of"]
        self.doc_ids: np.ndarray = arrays["doc_ids"]
        self.published: np.ndarray = arrays["published"]
        self.timestamps: np.ndarray = arrays["timestamps"]
        self.cluster_key: np.ndarray = arrays["cluster_key"]
        self.minhash: np.ndarray = arrays["minhash"]
        self.has_signature: np.ndarray = arrays["has_signature"]
        self.postings = Postings.load(path / PASSAGE_POSTINGS) if (path / PASSAGE_POSTINGS).is_dir() else None
        self.part_postings = Postings.load(path / PART_POSTINGS) if (path / PART_POSTINGS).is_dir() else None
        self.vectors = SegmentVectors.load(path, self.dim)
        tokens = load_tokens(path, len(self.ids))
        # The basis its token codes live in, and the codes by position; both None for a segment without them
        self.token_projection: TokenProjection | None = None if tokens is None else tokens[0]
        self.tokens: TokenCodes | None = None if tokens is None else tokens[1]
        self.token_basis = None if tokens is None else tokens[0].fingerprint  # computed once: views compare it
        self._connection = connect(path / STORE_FILE, read_only=True)
        self._store = PassageStore(self._connection)
        self._lock = threading.Lock()  # one sqlite connection, many request threads
        self.total_length = float(self.postings.lengths.sum(dtype=np.float64)) if self.postings else 0.0
        self.part_total_length = float(self.part_postings.lengths.sum(dtype=np.float64)) if self.part_postings else 0.0
        self._doc_index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Segment({self.name}, {len(self)} passages, {self.n_documents} documents)"

    @property
    def n_documents(self) -> int:
        return len(self.doc_ids)

    @property
    def n_parts(self) -> int:
        return len(self.part_doc)

    @property
    def files(self) -> dict[str, FileInfo]:
        return {name: FileInfo(**info) for name, info in self.meta["files"].items()}

    # -- building ------------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        path: Path,
        documents: Sequence[NewDocument],
        *,
        dim: int,
        settings: KeywordSettings | None,
        centroids: Centroids | None = None,
        ivf_min_vectors: int = IVF_MIN_VECTORS,
        token_projection: TokenProjection | None = None,
    ) -> Segment:
        """Write a new segment at ``path`` (which must not exist) holding ``documents``, and load it. With a
        ``token_projection`` every document brings its passages' token codes in that basis, and the segment keeps
        them."""
        seen: set[str] = set()
        for item in documents:
            if token_projection is not None and (item.tokens is None or len(item.tokens) != len(item.passages)):
                raise ValueError(f"{item.doc.doc_id!r}: token codes are missing for some of its passages")
            if item.doc.doc_id in seen:
                raise ValueError(f"document {item.doc.doc_id!r} appears twice in one segment")
            seen.add(item.doc.doc_id)
            if len(item.passage_ids) != len(item.passages) or len(item.vectors) != len(item.passages):
                raise ValueError(
                    f"{item.doc.doc_id!r}: {len(item.passages)} passages, {len(item.passage_ids)} ids, "
                    f"{len(item.vectors)} vectors"
                )

        def fill(folder: Path) -> None:
            connection = connect(folder / STORE_FILE, read_only=False)
            try:
                store = PassageStore(connection)
                for item in documents:
                    doc = item.doc
                    store.insert_document(
                        doc_id=doc.doc_id,
                        title=doc.title,
                        text=doc.text,
                        source=doc.source,
                        url=doc.url,
                        metadata=doc.metadata,
                        units=[unit_row(u) for u in doc.units],
                        content_hash=doc.content_hash,
                    )
                    store.insert_passages(
                        (
                            int(pid),
                            doc.doc_id,
                            p.ordinal,
                            p.section,
                            p.comment_no,
                            p.char_start,
                            p.char_end,
                            p.text,
                            p.content_hash,
                        )
                        for pid, p in zip(item.passage_ids, item.passages, strict=True)
                    )
                connection.commit()
                vectors_by_id = {
                    int(pid): row
                    for item in documents
                    for pid, row in zip(item.passage_ids, np.asarray(item.vectors, np.float32), strict=True)
                }
                keys = {item.doc.doc_id: item.cluster_key for item in documents}
                tokens = None
                if token_projection is not None:
                    codes_by_id = {
                        int(pid): codes
                        for item in documents
                        for pid, codes in zip(item.passage_ids, item.tokens or (), strict=True)
                    }
                    tokens = (token_projection, codes_by_id.__getitem__)
                _write_derived(
                    folder, store, dim, settings, centroids, vectors_by_id.__getitem__, keys, ivf_min_vectors, tokens
                )
            finally:
                connection.close()

        write_folder_atomically(path, fill)
        return cls.load(path, verify=False)

    @classmethod
    def load(cls, path: Path, *, verify: bool = True) -> Segment:
        """Open a segment folder; ``verify`` checks every file's sha256 (``IndexCorruptError`` names the file)."""
        meta_path = path / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            files = {name: FileInfo(**info) for name, info in meta["files"].items()}
        except FileNotFoundError:
            raise IndexCorruptError(f"segment {path.name}: {META_FILE} is missing") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise IndexCorruptError(f"segment {path.name}: {META_FILE} is unreadable ({exc})") from None
        if meta.get("format") != SEGMENT_FORMAT:
            raise IndexCorruptError(f"segment {path.name}: format {meta.get('format')}, expected {SEGMENT_FORMAT}")
        if verify:
            problems = failed_files(path, files)
            if problems:
                raise IndexCorruptError(f"segment {path.name}: " + "; ".join(problems.values()))
        else:
            missing = [name for name in files if not (path / name).is_file()]
            if missing:
                raise IndexCorruptError(f"segment {path.name}: {missing[0]} is missing")
        try:
            arrays = {
                name: np.asarray(np.load(path / f"{name}.npy", mmap_mode="r"))  # plain views: see Postings.load
                for name in _ARRAYS
                if name != "doc_ids"
            }
            arrays["doc_ids"] = np.load(path / "doc_ids.npy")
            return cls(path, meta, arrays)
        except (ValueError, OSError, KeyError, sqlite3.Error) as exc:
            raise IndexCorruptError(f"segment {path.name}: cannot load ({exc})") from None

    # -- lookups -------------------------------------------------------------------------------------------------
    def positions_of(self, passage_ids: np.ndarray) -> np.ndarray:
        """Local positions of these ids; -1 for an id this segment does not hold."""
        ids = np.asarray(passage_ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[at] == ids, at, -1)

    def document_ordinal(self, doc_id: str) -> int | None:
        if self._doc_index is None:
            self._doc_index = {str(d): i for i, d in enumerate(self.doc_ids.tolist())}
        return self._doc_index.get(doc_id)

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        with self._lock:
            return self._store.passages(passage_ids)

    def document(self, doc_id: str) -> StoredDocument | None:
        with self._lock:
            return self._store.document(doc_id)

    def passage_ids_where(self, *, section: str | None = None, doc_id: str | None = None) -> np.ndarray:
        with self._lock:
            return self._store.passage_ids(section=section, doc_id=doc_id)

    def iter_passages(self) -> Iterator[StoredPassage]:
        with self._lock:
            passages = list(self._store.iter_passages())
        return iter(passages)

    def passage_rows(self) -> list[tuple[Any, ...]]:
        """Every passage row as stored (passage_id, doc_id, ordinal, section, comment_no, char_start, char_end, text,
        content_hash): what a merge copies."""
        with self._lock:
            return self._connection.execute(
                "SELECT passage_id, doc_id, ordinal, section, comment_no, char_start, char_end, text, content_hash "
                "FROM passages ORDER BY passage_id"
            ).fetchall()

    def document_hashes(self) -> dict[str, str]:
        with self._lock:
            return self._store.document_hashes()

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def _write_derived(
    folder: Path,
    store: PassageStore,
    dim: int,
    settings: KeywordSettings | None,
    centroids: Centroids | None,
    vector_of: Any,
    cluster_keys: dict[str, int | None],
    ivf_min_vectors: int,
    tokens: tuple[TokenProjection, Any] | None = None,
) -> None:
    """Everything of a segment beside its store, derived from the store (as a version's keyword index is); with
    ``tokens`` (the basis, and passage id -> (codes, scales)) the token codes too."""
    passages = list(store.iter_passages())
    ids = np.fromiter((p.passage_id for p in passages), dtype=np.int64, count=len(passages))
    position = {int(pid): i for i, pid in enumerate(ids.tolist())}
    rows = np.zeros((len(ids), dim), dtype=np.float32)
    for i, pid in enumerate(ids.tolist()):
        rows[i] = vector_of(pid)
    _, vector_kind = SegmentVectors.write(folder, rows, centroids, min_vectors=ivf_min_vectors)
    all_parts = list(store.iter_parts())
    part_texts: list[str] = []
    part_of = np.full(len(ids), -1, dtype=np.int64)
    doc_of = np.full(len(ids), -1, dtype=np.int64)
    part_doc = np.zeros(len(all_parts), dtype=np.int64)
    docs: dict[str, tuple[str, str, str | None]] = {}
    doc_ordinal: dict[str, int] = {}
    keyword = settings or KeywordSettings()
    for ordinal, (doc, unit, members) in enumerate(all_parts):
        d = doc_ordinal.setdefault(doc.doc_id, len(doc_ordinal))
        part_doc[ordinal] = d
        _, article, published = docs.get(doc.doc_id, (doc.doc_id, "", doc.metadata.get("published")))
        if unit.section == "article":
            article += "\n" + doc.text[unit.char_start : unit.char_end]
        docs[doc.doc_id] = (doc.doc_id, article, published)
        part_texts.append(KeywordIndex.text_of(doc, doc.text[unit.char_start : unit.char_end], keyword))
        for pid in members:
            part_of[position[pid]] = ordinal
            doc_of[position[pid]] = d
    if (part_of < 0).any():
        raise ValueError(f"{int((part_of < 0).sum())} passages belong to no part; every passage needs its part")
    for doc_id in (str(row[0]) for row in store.connection.execute("SELECT doc_id FROM documents ORDER BY doc_id")):
        if doc_id not in doc_ordinal:  # a document without units
            doc_ordinal[doc_id] = len(doc_ordinal)
            docs[doc_id] = (doc_id, "", None)
    layout = PartLayout.of(part_of, doc_of)
    means = (
        PartVectors.build(layout, lambda positions: rows[positions], dim).means
        if len(ids)
        else np.zeros((len(all_parts), dim), np.float32)
    )
    if len(means) < len(all_parts):  # trailing parts without passages
        means = np.concatenate([means, np.zeros((len(all_parts) - len(means), dim), np.float32)])
    starts = layout.starts
    if len(starts) < len(all_parts) + 1:
        starts = np.concatenate([starts, np.full(len(all_parts) + 1 - len(starts), len(ids), np.int64)])
    lead = np.concatenate([layout.lead, np.zeros(len(all_parts) - len(layout.lead), np.int64)])
    first_ids = np.full(len(doc_ordinal), -1, dtype=np.int64)
    for i in range(len(ids) - 1, -1, -1):
        first_ids[doc_of[i]] = ids[i]
    doc_list = sorted(doc_ordinal, key=doc_ordinal.__getitem__)
    rows_of_docs = document_rows(
        [docs[d] for d in doc_list],
        [cluster_keys.get(d) for d in doc_list],
        first_ids.tolist(),
        keyword.duplicate_shingle_words,
    )
    arrays: dict[str, np.ndarray] = {
        "ids": ids,
        "part_of": part_of,
        "part_doc": part_doc,
        "part_members": layout.members,
        "part_starts": starts,
        "part_lead": lead,
        "part_means": means,
        "doc_of": doc_of,
        "doc_ids": rows_of_docs.doc_ids,
        "published": rows_of_docs.published,
        "timestamps": rows_of_docs.timestamps,
        "cluster_key": rows_of_docs.cluster_key,
        "minhash": rows_of_docs.minhash,
        "has_signature": rows_of_docs.has_signature,
    }
    if settings is not None:
        Postings.build([KeywordIndex.text_of(p, p.text, settings) for p in passages], settings).save(
            folder / PASSAGE_POSTINGS
        )
        if settings.context:
            Postings.build(part_texts, settings.for_context()).save(folder / PART_POSTINGS)
    if tokens is not None:
        projection, codes_of = tokens
        TokenCodes.of([codes_of(pid) for pid in ids.tolist()], projection.dims).save(folder, projection)
    write_meta(folder, arrays, dim=dim, settings=settings, vector_kind=vector_kind)


def write_meta(
    folder: Path, arrays: dict[str, np.ndarray], *, dim: int, settings: KeywordSettings | None, vector_kind: str
) -> None:
    """Save the arrays, then ``segment.json`` with the checksum of every file in the folder (written last)."""
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    ids = arrays["ids"]
    files = {
        path.relative_to(folder).as_posix(): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META_FILE)
    }
    meta = {
        "format": SEGMENT_FORMAT,
        "counts": {
            "passages": len(ids),
            "documents": len(arrays["doc_ids"]),
            "parts": len(arrays["part_doc"]),
        },
        "ids": [int(ids[0]), int(ids[-1])] if len(ids) else None,
        "dim": dim,
        "keyword": None if settings is None else settings.to_dict(),
        "vectors": vector_kind,
        "files": files,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")


# -- deletion masks ----------------------------------------------------------------------------------------------
def deletion_mask(segment: Segment, passage_ids: np.ndarray, base: np.ndarray | None = None) -> np.ndarray | None:
    """``base`` (or nothing deleted) plus the positions of these ids that the segment holds; None if nothing is
    deleted. Ids the segment does not hold are ignored (a writer can pass every id it deletes to every segment)."""
    mask = np.zeros(len(segment), dtype=bool) if base is None else np.array(base, dtype=bool)
    at = segment.positions_of(np.asarray(passage_ids, dtype=np.int64))
    mask[at[at >= 0]] = True
    return mask if mask.any() else None


def document_deletion_mask(
    segment: Segment, doc_ids: Sequence[str], base: np.ndarray | None = None
) -> np.ndarray | None:
    """``base`` plus every passage of these documents (those the segment holds); None if nothing is deleted."""
    mask = np.zeros(len(segment), dtype=bool) if base is None else np.array(base, dtype=bool)
    ordinals = [o for o in (segment.document_ordinal(d) for d in doc_ids) if o is not None]
    if ordinals:
        gone = np.zeros(segment.n_documents, dtype=bool)
        gone[ordinals] = True
        mask |= gone[np.asarray(segment.doc_of)]
    return mask if mask.any() else None


def pack_mask(mask: np.ndarray) -> bytes:
    """A deletion mask as bytes (one bit per position, little bit order: what ``IDSelectorBitmap`` reads)."""
    return np.packbits(np.asarray(mask, dtype=bool), bitorder="little").tobytes()


def unpack_mask(data: bytes, length: int) -> np.ndarray:
    """The inverse of ``pack_mask``; ValueError when ``data`` does not fit ``length`` positions."""
    if len(data) != (length + 7) // 8:
        raise ValueError(f"a deletion mask of {len(data)} bytes does not fit {length} positions")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=length, bitorder="little").astype(bool)
