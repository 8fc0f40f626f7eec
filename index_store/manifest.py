"""The manifest: what an index version holds, how it was built, and a checksum of every file it names.

It is written last, inside the version folder, just before the version is published; a reader trusts nothing that
its manifest does not vouch for. Since format 2 a version is a list of immutable segments (``segments/<name>/``,
shared by versions) plus, per segment, the deletion bitmap of this version (``deletes/<segment>.<version>.npy``,
written once, shared by later versions until the segment loses another passage). ``files`` names, relative to the
index folder, each segment's ``segment.json`` (which checksums the segment's own files) and each deletes file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1  # one folder per version with passages.sqlite, vectors and bm25/ copied whole
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The embedding model that produced the vectors; queries must be embedded by the same one."""

    name: str
    dim: int
    max_tokens: int


@dataclass(frozen=True, slots=True)
class FileInfo:
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """One segment of a version, in id order: its folder name, this version's deletes file of it (relative to the
    index folder; None when nothing of it is deleted), and its passage counts (all, and deleted in this version)."""

    name: str
    deletes: str | None
    passages: int
    deleted: int = 0

    @property
    def live(self) -> int:
        return self.passages - self.deleted


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    version: str
    created_at: str  # ISO 8601, UTC
    model: ModelInfo
    vector_backend: str
    chunker: dict[str, Any]
    counts: dict[str, int]  # documents, passages, and passages per section
    corpus_fingerprint: str  # hash over (doc_id, content hash) of every document: equal corpora, equal fingerprints
    files: dict[str, FileInfo]  # path relative to the version folder -> checksum and size
    build: dict[str, Any] = field(default_factory=dict)  # the build report
    extra: dict[str, Any] = field(default_factory=dict)  # what derived indexes record (BM25 settings, fusion, ...)
    base_version: str | None = None
    segments: tuple[SegmentRef, ...] = ()  # format 2: the version's segments in passage-id order
    next_passage_id: int = 0  # the id the next passage written gets (ids grow, never reused)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["model"] = ModelInfo(**data["model"])
        data["files"] = {name: FileInfo(**info) for name, info in data["files"].items()}
        data["segments"] = tuple(SegmentRef(**ref) for ref in data.get("segments", ()))
        return cls(**data)

    @classmethod
    def read(cls, version_dir: Path) -> Manifest:
        return cls.from_json((version_dir / MANIFEST_NAME).read_text(encoding="utf-8"))


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def file_info(path: Path) -> FileInfo:
    return FileInfo(sha256=file_sha256(path), bytes=path.stat().st_size)


def checksum_files(version_dir: Path) -> dict[str, FileInfo]:
    """Checksums of every file under ``version_dir`` except the manifest itself."""
    files = {}
    for path in sorted(p for p in version_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        files[path.relative_to(version_dir).as_posix()] = FileInfo(sha256=file_sha256(path), bytes=path.stat().st_size)
    return files


def failed_files(version_dir: Path, files: dict[str, FileInfo]) -> dict[str, str]:
    """File name -> what is wrong with it, for every listed file that is missing, of the wrong size or checksum."""
    problems: dict[str, str] = {}
    for name, info in files.items():
        path = version_dir / name
        if not path.is_file():
            problems[name] = f"{name} is missing"
        elif path.stat().st_size != info.bytes:
            problems[name] = f"{name} has {path.stat().st_size} bytes, expected {info.bytes} (truncated?)"
        elif file_sha256(path) != info.sha256:
            problems[name] = f"{name} does not match its checksum"
    return problems


def verify_files(version_dir: Path, files: dict[str, FileInfo]) -> list[str]:
    """Problems found, one line each; empty when every file is present, of the right size and checksum."""
    return list(failed_files(version_dir, files).values())


def fingerprint_add(fingerprint: str, doc_id: str, content_hash: str, sign: int = 1) -> str:
    """The corpus fingerprint with one document added (``sign`` 1) or removed (-1): the sum modulo 2**256 of
    sha256(``doc_id<TAB>content_hash``) over every document. Order-independent, so a write updates it for the
    documents it touches instead of hashing the whole corpus again; equal corpora still give equal fingerprints."""
    term = int(hashlib.sha256(f"{doc_id}\t{content_hash}".encode()).hexdigest(), 16)
    value = (int(fingerprint or "0", 16) + sign * term) % (1 << 256)
    return f"{value:064x}"


def corpus_fingerprint(hashes: dict[str, str]) -> str:
    """The fingerprint of a whole corpus (doc id -> content hash), as ``fingerprint_add`` maintains it."""
    fingerprint = ""
    for doc_id, content_hash in hashes.items():
        fingerprint = fingerprint_add(fingerprint, doc_id, content_hash)
    return fingerprint or f"{0:064x}"
