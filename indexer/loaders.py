"""Loading files and folders into ``Document``s: page text (.txt, .md), HTML (.html, .htm) and jsonl.

Folders are read recursively in sorted order, hidden files and folders left out, so the same folder always gives
the same documents with the same ids: the path relative to the folder given (a file given directly: its name), or
the jsonl ``_id``/``id``. A jsonl file holds one document a line (``_id`` or ``id``, ``title``, ``text``, optional
``url`` and ``metadata``), so a BEIR corpus.jsonl loads as it is; a BEIR dataset folder (``corpus.jsonl`` beside
``qrels/``) loads as its corpus alone. A published date in the record or its metadata
(``published``, ``publish_date``, ``date``, …) is stored as ``metadata["published"]`` in ISO 8601.

Bytes are decoded strictly as UTF-8 (a BOM is dropped) and CRLF/CR become LF before any span is taken; the
normalised text is what a Document stores and cites. A problem with one file or line (binary, not UTF-8, malformed
JSON, a duplicate id, …) skips just that input with a one-line reason; only a path that does not exist and "nothing
indexable at all" raise ``IngestError``.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index_store.shapes import TITLE_GUESSED_KEY
from indexer.dates import METADATA_KEY as PUBLISHED_KEY
from indexer.dates import find_published
from indexer.documents import Document
from indexer.errors import IngestError, Skipped
from indexer.pages import parse_page
from indexer.records import DocumentRecord, RecordError, parse_record

__all__ = ["SUPPORTED_SUFFIXES", "LoadResult", "Skipped", "load_documents"]

TEXT_SUFFIXES = frozenset({".txt", ".md"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
JSONL_SUFFIX = ".jsonl"
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {JSONL_SUFFIX}


@dataclass(frozen=True, slots=True)
class LoadResult:
    documents: list[Document]
    skipped: list[Skipped]


class _Skip(Exception):
    """The current file or line cannot be loaded; the message is the one-line reason."""


def _source(path: Path) -> str:
    """The path as people should see it: relative to the working directory if under it, else as given."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> str:
    """Strict UTF-8 without BOM, line ends normalised; ``_Skip`` says what is wrong otherwise."""
    if b"\x00" in data:
        raise _Skip("binary file (contains NUL bytes)")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        raise _Skip(f"not valid UTF-8 (byte 0x{data[offset]:02x} at byte offset {offset})") from None
    if not text.strip():
        raise _Skip("empty file")
    return _normalise(text)


def _page_document(
    doc_id: str,
    source: str,
    text: str,
    *,
    fallback_title: str,
    title: str | None = None,
    url: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Document:
    parsed = parse_page(text, fallback_title=fallback_title, title=title)
    if not parsed.units:
        raise _Skip("no text to index")
    metadata = dict(metadata or {})
    metadata.pop(TITLE_GUESSED_KEY, None)  # the key is the loader's own, whatever a record's metadata said
    if parsed.title_guessed:
        metadata[TITLE_GUESSED_KEY] = True  # shown, not embedded or indexed (index_store.shapes.searchable_title)
    return Document(
        doc_id=doc_id,
        title=parsed.title,
        text=text,
        source=source,
        units=parsed.units,
        url=url,
        metadata=metadata,
    )


def _html_document(doc_id: str, source: str, html: str) -> Document:
    """The page's article as trafilatura extracts it (boilerplate removed), plus the author bio and every reader
    comment read from the markup (indexer.html_pages), each its own unit; metadata from the page's meta tags."""
    from indexer.html_document import build_html_document

    try:
        built = build_html_document(html, fallback_title=Path(doc_id).stem)
    except ValueError as exc:
        raise _Skip(str(exc)) from None
    return Document(
        doc_id=doc_id,
        title=built.title,
        text=built.text,
        source=source,
        units=built.units,
        url=built.url,
        metadata=built.metadata,
    )


def _jsonl_document(line: str, line_no: int, source: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Skip(f"malformed JSON on line {line_no}: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise _Skip(f"line {line_no} is not a JSON object")
    try:  # the record model POST /documents validates with too (fields other than a document's are ignored)
        parsed = parse_record(record, ignore_unknown=True)
        # A date field at the top of the line (BEIR-style corpora put "published" there) is read before the
        # record model drops the fields it does not know.
        return record_document(parsed, source, published=find_published(record, parsed.metadata))
    except RecordError as exc:
        raise _Skip(f'line {line_no}: "{exc.field}" {exc.message}') from None


def record_document(record: DocumentRecord, source: str, *, published: str | None = None) -> Document:
    """The ``Document`` a record becomes, its text parsed as a page (a news page gets its article, author and comment
    units): one step for jsonl lines and ``POST /documents``. ``RecordError`` when it holds nothing to index.
    ``published``: the record's date already found; by default the one its metadata names (indexer/dates.py)."""
    metadata = record.metadata
    published = published or find_published(metadata)
    if published is not None:  # one field, one format, whatever the source called it
        metadata = {**metadata, PUBLISHED_KEY: published}
    try:
        return _page_document(
            record.id,
            source,
            _normalise(record.text),
            fallback_title=record.id,
            title=record.title,
            url=record.url,
            metadata=metadata,
        )
    except _Skip as exc:
        raise RecordError("text", str(exc)) from None


def _jsonl_documents(text: str, source: str) -> tuple[list[Document], list[Skipped]]:
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{source}:{line_no}"
        try:
            documents.append(_jsonl_document(line, line_no, where))
        except _Skip as exc:
            skipped.append(Skipped(where, str(exc)))
    return documents, skipped


def _load_file(path: Path, doc_id: str) -> tuple[list[Document], list[Skipped]]:
    source = _source(path)
    suffix = path.suffix.lower()
    try:
        if suffix not in SUPPORTED_SUFFIXES:
            raise _Skip(f"unsupported file type {suffix or '(no extension)'}")
        if not path.is_file():
            raise _Skip("not a regular file")  # a FIFO or device would block or never end
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _Skip(f"cannot read file ({exc.strerror or exc})") from None
        text = _decode(data)
        if suffix == JSONL_SUFFIX:
            return _jsonl_documents(text, source)
        if suffix in HTML_SUFFIXES:
            return [_html_document(doc_id, source, text)], []
        return [_page_document(doc_id, source, text, fallback_title=Path(doc_id).stem)], []
    except _Skip as exc:
        return [], [Skipped(source, str(exc))]


BEIR_CORPUS = "corpus.jsonl"
BEIR_QRELS = "qrels"


def _folder_files(root: Path, skipped: list[Skipped]) -> list[tuple[Path, str]]:
    """Supported files under ``root`` with their ids (path relative to ``root``), sorted; hidden ones left out.
    Unsupported files in a folder are ignored silently: folders often hold images or notes next to documents."""

    def unreadable(exc: OSError) -> None:
        skipped.append(Skipped(_source(Path(exc.filename or root)), f"cannot read folder ({exc.strerror or exc})"))

    found: list[tuple[Path, str]] = []
    for folder, dirs, names in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = names
        if BEIR_CORPUS in names and BEIR_QRELS in dirs:
            # A BEIR dataset folder: its documents are the corpus; queries.jsonl and the qrels are the questions
            # and answers about it, which indexed as documents would answer the questions with themselves.
            dirs.clear()
            files = [BEIR_CORPUS]
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append((path, path.relative_to(root).as_posix()))
    return sorted(found, key=lambda item: Path(item[1]).parts)


def load_documents(paths: Sequence[Path | str]) -> LoadResult:
    """Load the files and folders in ``paths``; see the module docstring for ids, formats and what is skipped."""
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise IngestError(f"{root} does not exist")
    documents: list[Document] = []
    skipped: list[Skipped] = []
    first_source: dict[str, str] = {}
    seen_files: set[Path] = set()
    for root in roots:
        files = _folder_files(root, skipped) if root.is_dir() else [(root, root.name)]
        for path, doc_id in files:
            if path.resolve() in seen_files:
                continue  # the same file reached twice (a folder and a file in it): load it once
            seen_files.add(path.resolve())
            loaded, file_skipped = _load_file(path, doc_id)
            skipped += file_skipped
            for doc in loaded:
                if doc.doc_id in first_source:
                    reason = f"duplicate document id {doc.doc_id!r} (first in {first_source[doc.doc_id]})"
                    skipped.append(Skipped(doc.source, reason))
                    continue
                first_source[doc.doc_id] = doc.source
                documents.append(doc)
    if not documents:
        names = ", ".join(str(root) for root in roots) or "(no paths given)"
        detail = f" ({len(skipped)} skipped)" if skipped else ""
        raise IngestError(f"no indexable documents in {names}{detail}", skipped)
    return LoadResult(documents, skipped)
