"""Where a test finds the files of a segmented index version (index_store.layout), to damage them on purpose."""

from __future__ import annotations

from pathlib import Path

from index_store import current_version
from index_store.manifest import Manifest


def segment_names(index_dir: Path, version: str | None = None) -> list[str]:
    """The segments of ``version`` (default: the published one), in id order."""
    name = version or current_version(index_dir) or ""
    return [ref.name for ref in Manifest.read(Path(index_dir) / "versions" / name).segments]


def segment_path(index_dir: Path, version: str | None = None, which: int = -1) -> Path:
    """The folder of one segment of ``version``: by default its newest (the one its own write added)."""
    return Path(index_dir) / "segments" / segment_names(index_dir, version)[which]
