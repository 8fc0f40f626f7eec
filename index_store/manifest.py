"""The manifest: what an index version holds, how it was built, and a checksum of every file in it.

It is written last, inside the version folder, just before the version is published; a reader trusts nothing in a
version folder that its manifest does not vouch for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["model"] = ModelInfo(**data["model"])
        data["files"] = {name: FileInfo(**info) for name, info in data["files"].items()}
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
