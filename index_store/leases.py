"""Leases: which segments live readers still use, so that pruning never deletes a segment folder under them.

A reader (in any process on the host) writes ``leases/<uuid>.lease`` naming its version's segments and holds an
exclusive flock on it for as long as it lives; closing the reader (or the process dying, kill -9 included) releases
it. The pruner reads every lease file whose lock it cannot take; one it can take belongs to a reader that is gone
and is removed. So a reader keeps every segment of its version readable while merges drop them from newer
versions, and nothing accumulates after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LEASES_DIR = "leases"
SUFFIX = ".lease"


class SegmentLease:
    """One reader's hold on a set of segments. ``release`` is idempotent."""

    def __init__(self, handle: IO[str] | None, path: Path | None) -> None:
        self._handle = handle
        self._path = path

    @classmethod
    def take(cls, index_dir: Path, segments: Iterable[str]) -> SegmentLease:
        """Lease ``segments``. On a folder the process cannot write (a read-only index) there is nothing to
        protect against either (no writer can prune it), so the lease is empty."""
        folder = Path(index_dir) / LEASES_DIR
        name = uuid.uuid4().hex
        path = folder / f"{name}{SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{name}.tmp"
            handle = tmp.open("w", encoding="utf-8")
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps({"pid": os.getpid(), "segments": sorted(set(segments))}))
            handle.flush()
            # Renamed into place complete and locked (the lock belongs to the file, not the name): a pruner never
            # reads half a lease.
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("no lease on %s: %s", index_dir, exc)
            return cls(None, None)
        return cls(handle, path)

    def release(self) -> None:
        if self._handle is None:
            return
        assert self._path is not None
        with contextlib.suppress(OSError):
            self._path.unlink()
        self._handle.close()  # releases the flock
        self._handle = None


def leased_segments(index_dir: Path) -> set[str]:
    """Every segment a live reader holds. Lease files of readers that are gone are removed on the way."""
    folder = Path(index_dir) / LEASES_DIR
    held: set[str] = set()
    if not folder.is_dir():
        return held
    for stale in folder.glob("*.tmp"):  # a reader killed while taking its lease
        with contextlib.suppress(OSError), stale.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            stale.unlink()
    for path in folder.glob(f"*{SUFFIX}"):
        try:
            handle = path.open("r", encoding="utf-8")
        except OSError:
            continue  # released meanwhile
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a live reader
                with contextlib.suppress(ValueError):
                    held.update(json.loads(handle.read() or "{}").get("segments", []))
                continue
            with contextlib.suppress(OSError):  # nobody holds it: the reader is gone
                path.unlink()
    return held
