"""SQLite storage of documents and passages: the exact text every citation points into.

One database file per index version. Documents keep their full text and units; passages keep their span into that
text and a copy of the passage text (so a result needs one lookup, and a test can check the copy equals the slice).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FILE_NAME = "passages.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    url TEXT,
    metadata TEXT NOT NULL,       -- JSON object
    units TEXT NOT NULL,          -- JSON list of [section, char_start, char_end, comment_no, comment_author,
                                  --   comment_date, comment_date_iso, parent, depth] (older versions: first 4)
    content_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    passage_id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    ordinal INTEGER NOT NULL,
    section TEXT NOT NULL,
    comment_no INTEGER,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_by_doc ON passages(doc_id, ordinal);
CREATE INDEX IF NOT EXISTS passages_by_section ON passages(section);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredUnit:
    section: str
    char_start: int
    char_end: int
    comment_no: int | None
    comment_author: str | None = None
    comment_date: str | None = None  # as shown on the page
    comment_date_iso: str | None = None
    parent: int | None = None  # comment_no of the comment replied to
    depth: int = 0


@dataclass(frozen=True, slots=True)
class StoredDocument:
    doc_id: str
    title: str
    text: str
    source: str
    url: str | None
    metadata: dict[str, Any]
    units: tuple[StoredUnit, ...]
    content_hash: str


@dataclass(frozen=True, slots=True)
class StoredPassage:
    """A passage as stored, with what a citation needs from its document."""

    passage_id: int
    doc_id: str
    ordinal: int
    section: str
    comment_no: int | None
    char_start: int
    char_end: int
    text: str
    title: str
    source: str
    url: str | None
    unit: StoredUnit | None = None  # the part the passage lies in, with its comment author, date and parent
    metadata: dict[str, Any] | None = None  # the document's metadata (author, published, site_name, …)


_PASSAGE_COLUMNS = (
    "p.passage_id, p.doc_id, p.ordinal, p.section, p.comment_no, p.char_start, p.char_end, p.text, "
    "d.title, d.source, d.url, d.units, d.metadata"
)


def _passage(row: Sequence[Any], parsed: dict[str, tuple[tuple[StoredUnit, ...], dict[str, Any]]]) -> StoredPassage:
    """A passage row with its unit found in the document's units (parsed once per document and call)."""
    doc_id = row[1]
    if doc_id not in parsed:
        parsed[doc_id] = (tuple(StoredUnit(*u) for u in json.loads(row[11])), json.loads(row[12]))
    units, metadata = parsed[doc_id]
    unit = next(
        (
            u
            for u in units
            if (u.section, u.comment_no) == (row[3], row[4]) and u.char_start <= row[5] < max(u.char_end, row[5] + 1)
        ),
        None,
    )
    return StoredPassage(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], unit, metadata
    )


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """Open the store. A published version never changes, so readers open it immutable: no locks, no journal."""
    if read_only:
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.executescript(SCHEMA)
    return connection


class PassageStore:
    """Queries and updates over one store connection. Not thread-safe by itself; callers serialise access."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    # -- reads ---------------------------------------------------------------------------------------------------
    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        """Passages in the order asked for; ids that do not exist are left out."""
        if not passage_ids:
            return []
        found: dict[int, StoredPassage] = {}
        parsed: dict[str, tuple[tuple[StoredUnit, ...], dict[str, Any]]] = {}
        ids = [int(i) for i in passage_ids]
        for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
            batch = ids[start : start + 900]
            marks = ",".join("?" * len(batch))
            rows = self.connection.execute(
                f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d USING (doc_id) "
                f"WHERE p.passage_id IN ({marks})",
                batch,
            )
            found.update((row[0], _passage(row, parsed)) for row in rows)
        return [found[i] for i in ids if i in found]

    def document_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Every passage id (ascending) with a small integer standing for its document: what a per-document cap
        needs, in two arrays (12 bytes a passage) instead of a row fetch per candidate."""
        rows = self.connection.execute(
            "SELECT p.passage_id, d.rowid FROM passages p JOIN documents d USING (doc_id) ORDER BY p.passage_id"
        ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        keys = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        return ids, keys

    def iter_passages(self) -> Iterator[StoredPassage]:
        rows = self.connection.execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d USING (doc_id) ORDER BY p.passage_id"
        )
        parsed: dict[str, tuple[tuple[StoredUnit, ...], dict[str, Any]]] = {}
        for row in rows:
            if len(parsed) > 64:
                parsed.clear()  # bounded: iterating a large index must not keep every document's units
            yield _passage(row, parsed)

    def passage_ids(self, *, section: str | None = None, doc_id: str | None = None) -> np.ndarray:
        clauses, params = [], []
        if section is not None:
            clauses.append("section = ?")
            params.append(section)
        if doc_id is not None:
            clauses.append("doc_id = ?")
            params.append(doc_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.connection.execute(f"SELECT passage_id FROM passages{where} ORDER BY passage_id", params)
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def document(self, doc_id: str) -> StoredDocument | None:
        row = self.connection.execute(
            "SELECT doc_id, title, text, source, url, metadata, units, content_hash FROM documents WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            return None
        units = tuple(StoredUnit(*unit) for unit in json.loads(row[6]))
        return StoredDocument(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), units, row[7])

    def iter_parts(self) -> Iterator[tuple[StoredDocument, StoredUnit, list[int]]]:
        """Every document part (article body, author bio, one comment) with the ids of its passages, in document
        order. A passage belongs to the part of its section and comment number whose span holds its start."""
        doc_rows = self.connection.execute("SELECT doc_id FROM documents ORDER BY doc_id").fetchall()
        for (doc_id,) in doc_rows:
            document = self.document(doc_id)
            assert document is not None
            members: dict[int, list[int]] = {i: [] for i in range(len(document.units))}
            rows = self.connection.execute(
                "SELECT passage_id, section, comment_no, char_start FROM passages WHERE doc_id = ? ORDER BY ordinal",
                (doc_id,),
            )
            for passage_id, section, comment_no, char_start in rows:
                for i, unit in enumerate(document.units):
                    if (unit.section, unit.comment_no) == (section, comment_no) and (
                        unit.char_start <= char_start < unit.char_end
                    ):
                        members[i].append(passage_id)
                        break
            for i, unit in enumerate(document.units):
                yield document, unit, members[i]

    def document_ids(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        rows = self.connection.execute(
            "SELECT doc_id FROM documents ORDER BY doc_id LIMIT ? OFFSET ?", (-1 if limit is None else limit, offset)
        )
        return [row[0] for row in rows]

    def document_hashes(self) -> dict[str, str]:
        return dict(self.connection.execute("SELECT doc_id, content_hash FROM documents"))

    def counts(self) -> dict[str, int]:
        counts = {"documents": self.connection.execute("SELECT COUNT(*) FROM documents").fetchone()[0]}
        counts["passages"] = 0
        for section, count in self.connection.execute("SELECT section, COUNT(*) FROM passages GROUP BY section"):
            counts[f"passages_{section}"] = count
            counts["passages"] += count
        return counts

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    # -- writes --------------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self.connection.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_document(self, doc_id: str) -> list[int]:
        """Delete a document and its passages; returns the passage ids removed (empty if it was not there)."""
        removed = [
            row[0] for row in self.connection.execute("SELECT passage_id FROM passages WHERE doc_id = ?", (doc_id,))
        ]
        self.connection.execute("DELETE FROM passages WHERE doc_id = ?", (doc_id,))
        self.connection.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return removed

    def insert_document(
        self,
        *,
        doc_id: str,
        title: str,
        text: str,
        source: str,
        url: str | None,
        metadata: dict[str, Any],
        units: Iterable[tuple[str, int, int, int | None]],
        content_hash: str,
    ) -> None:
        self.connection.execute(
            "INSERT INTO documents(doc_id, title, text, source, url, metadata, units, content_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc_id,
                title,
                text,
                source,
                url,
                json.dumps(metadata, ensure_ascii=False),
                json.dumps(list(units)),
                content_hash,
            ),
        )

    def insert_passages(self, rows: Iterable[tuple[int, str, int, str, int | None, int, int, str, str]]) -> None:
        """Rows of (passage_id, doc_id, ordinal, section, comment_no, char_start, char_end, text, content_hash)."""
        self.connection.executemany(
            "INSERT INTO passages(passage_id, doc_id, ordinal, section, comment_no, char_start, char_end, text, "
            "content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
