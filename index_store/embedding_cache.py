"""A persistent cache of passage embeddings keyed by (model, content hash).

It lives beside the versions, not inside one, so re-indexing after any change embeds only passages whose text the
model has never seen. It is a cache: losing it costs time, never correctness, and it is not part of a version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import numpy as np


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, content_hash TEXT NOT NULL, "
            "vector BLOB NOT NULL, PRIMARY KEY (model, content_hash))"
        )

    def get_many(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        wanted = list(hashes)
        for start in range(0, len(wanted), 900):
            batch = wanted[start : start + 900]
            rows = self._connection.execute(
                f"SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN "
                f"({','.join('?' * len(batch))})",
                [model, *batch],
            )
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def model_hashes(self, model: str) -> list[str]:
        """Every content hash cached under ``model``: what a distributed build need not send to its workers."""
        rows = self._connection.execute("SELECT content_hash FROM embeddings WHERE model = ?", (model,))
        return [content_hash for (content_hash,) in rows]

    def put_many(self, model: str, vectors: Mapping[str, np.ndarray]) -> None:
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO embeddings(model, content_hash, vector) VALUES (?, ?, ?)",
                ((model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()),
            )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
