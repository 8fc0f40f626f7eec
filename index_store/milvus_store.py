"""The Milvus backend: everything a query needs lives in Milvus, so ``citesearch serve`` holds no index state and any
number of replicas serve one index (docs/milvus.md).

One index version is three collections, ``{prefix}_{stamp}_passages`` / ``_parts`` / ``_documents``, and the alias
``{prefix}_current`` names the documents collection of the version served: a full re-index writes a new set and
switches that one alias, which is atomic in Milvus. ``index_version`` is the stamp.

* **passages**: vector, the exact text and citation fields, section, comment number, document key, part id, the
  document's published date and duplicate cluster as scalar fields with scalar indexes (filters run in Milvus), and
  the BM25 function over the passage's analysed text (``keyword_text``).
* **parts**: one row per document part (article body, bio, a comment): BM25 over its analysed text (the context
  signal), its normalised mean passage vector and its document's lead passage (``citesearch.part_evidence``).
* **documents**: the stored document (text, units, metadata) as JSON split into VARCHAR chunks, so
  ``GET /documents/{id}`` and every citation stay exact; one ``meta`` row records the build (model, keyword
  settings, fusion, counts).

Text is analysed by the same tokenizer as the local keyword index (bm25s with the Snowball stemmer and stop words)
before it reaches Milvus, whose ``standard`` analyzer then only splits on the spaces: the terms, and so the BM25
scores, are those of the local index (Milvus Lite has no stemming analyzer).

pymilvus is an optional dependency, imported here only: ``pip install citesearch[milvus]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

try:
    from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker, WeightedRanker
    from pymilvus.exceptions import MilvusException
except ImportError as exc:  # pragma: no cover - the optional extra
    raise ImportError("the Milvus store needs pymilvus and milvus-lite: pip install citesearch[milvus]") from exc

from citesearch.fusion import FusionSettings, keyword_score
from citesearch.part_evidence import MAX_PART_PASSAGES, PartScores
from citesearch.store import Candidates, PassageDocuments, SearchFilter, StoreInfo, Where
from index_store.errors import IndexIncompatibleError, IndexNotFoundError, IndexStoreError
from index_store.keyword import KeywordIndex, KeywordSettings, _tokenizer
from index_store.manifest import ModelInfo
from index_store.sqlite_store import StoredDocument, StoredPassage, StoredUnit
from index_store.versions import IndexReader

log = logging.getLogger(__name__)

VARCHAR_MAX = 65535  # bytes: Milvus's largest VARCHAR
CHUNK_CHARS = 16000  # characters per document chunk: at most 4 UTF-8 bytes each, so always under VARCHAR_MAX
SEARCH_MAX = 16384  # Milvus's largest limit (topk) and a safe size for one ``in [...]`` list
WRITE_BATCH = 500
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
POSTED_ID_BIT = 1 << 62  # passage and part ids of documents posted to a running service (built ones stay below)


class MilvusStoreError(IndexStoreError):
    """Milvus refused, is unreachable, or lacks a feature the request needs."""


def key_of(*parts: object) -> int:
    """A stable 62-bit integer for a document id (document keys, duplicate clusters) or an id tuple."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def _literal(text: str) -> str:
    """A Milvus string literal (JSON string escaping is what its expression parser accepts)."""
    return json.dumps(text, ensure_ascii=False)


def _id_list(ids: Iterable[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


@dataclass(frozen=True, slots=True)
class MilvusConfig:
    """Where the index lives: ``uri`` a path ending in ``.db`` (Milvus Lite, in-process) or ``http://host:19530``."""

    uri: str
    token: str = ""
    prefix: str = "citesearch"
    consistency: str = "Strong"

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"Milvus consistency level must be one of {', '.join(CONSISTENCY_LEVELS)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,120}", self.prefix):
            raise ValueError(f"Milvus collection prefix must be letters, digits and _, got {self.prefix!r}")

    @property
    def is_lite(self) -> bool:
        return not re.match(r"^[a-z]+://", self.uri)

    @property
    def alias(self) -> str:
        return f"{self.prefix}_current"


# pymilvus pings every 10 s even on an idle connection; a server with gRPC's default ping policy (`milvus-lite
# server`; a proxy may do the same) counts those as strikes and closes the connection after ~30 s of idleness
# ("too_many_pings" GOAWAY), and the reconnect can then fail. Pings only while a call is in flight: an idle
# connection a proxy drops is simply re-established by gRPC on the next call.
IDLE_SAFE_GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": 0}


def connect(config: MilvusConfig) -> MilvusClient:
    if config.is_lite:
        Path(config.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {} if config.is_lite else {"grpc_options": IDLE_SAFE_GRPC_OPTIONS}
    try:
        return MilvusClient(uri=config.uri, token=config.token or "", timeout=30, **options)
    except MilvusException as exc:
        raise MilvusStoreError(f"cannot connect to Milvus at {config.uri}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str
    has_bm25: bool  # the BM25 function and hybrid search: Milvus Lite, or a server of 2.5 or later

    @property
    def is_lite(self) -> bool:
        """Milvus Lite (milvus-lite 3.x), not the 2.3 server the PyPI package ``milvus`` calls "v2.3.5-lite"."""
        return self.version.startswith("milvus_lite")

    @property
    def release(self) -> tuple[int, int]:
        found = re.search(r"(\d+)\.(\d+)", self.version)
        return (int(found.group(1)), int(found.group(2))) if found else (0, 0)

    @property
    def has_inverted_index(self) -> bool:
        """The INVERTED scalar index (Milvus 2.4 and later, and Lite); older servers get Trie and STL_SORT."""
        return self.is_lite or self.release >= (2, 4)

    @classmethod
    def of(cls, client: MilvusClient) -> ServerInfo:
        version = str(client.get_server_version())
        info = cls(version, False)
        return cls(version, info.is_lite or info.release >= (2, 5))


class _Names:
    def __init__(self, prefix: str, stamp: str) -> None:
        self.stamp = stamp
        self.passages = f"{prefix}_{stamp}_passages"
        self.parts = f"{prefix}_{stamp}_parts"
        self.documents = f"{prefix}_{stamp}_documents"

    @classmethod
    def from_documents(cls, prefix: str, documents: str) -> _Names:
        stamp = documents[len(prefix) + 1 : -len("_documents")]
        return cls(prefix, stamp)


def analysed(settings: KeywordSettings, texts: Sequence[str]) -> list[str]:
    """Texts as the local keyword index sees them: stemmed terms without stop words, space separated. A fresh
    tokenizer each call: a bm25s tokenizer keeps the vocabulary of its first call and drops unknown words after."""
    if not texts:
        return []
    tokens = _tokenizer(settings).tokenize(list(texts), return_as="string", show_progress=False)
    return [" ".join(t)[: VARCHAR_MAX // 4] for t in tokens]


# -- schema ----------------------------------------------------------------------------------------------------------
def _passages_schema(client: MilvusClient, dim: int, bm25: bool) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("doc_key", DataType.INT64)
    schema.add_field("ordinal", DataType.INT64)
    schema.add_field("section", DataType.VARCHAR, max_length=64)
    schema.add_field("comment_no", DataType.INT64)  # -1: not a comment
    schema.add_field("char_start", DataType.INT64)
    schema.add_field("char_end", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("title", DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("source", DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("url", DataType.VARCHAR, max_length=VARCHAR_MAX)  # "" when none
    schema.add_field("unit", DataType.VARCHAR, max_length=VARCHAR_MAX)  # the passage's part as JSON, "" when none
    schema.add_field("metadata", DataType.VARCHAR, max_length=VARCHAR_MAX)  # the document's metadata as JSON
    schema.add_field("part_id", DataType.INT64)
    schema.add_field("lead_id", DataType.INT64)  # the first passage of the document (the lead signal)
    schema.add_field("published", DataType.VARCHAR, max_length=32)  # ISO 8601 as normalised at indexing, or ""
    schema.add_field("published_ts", DataType.DOUBLE)  # epoch seconds; 0 with dated false
    schema.add_field("dated", DataType.BOOL)
    schema.add_field("cluster", DataType.INT64)  # duplicate cluster: the document key of its first document
    if bm25:
        _add_bm25(schema, "passage_bm25")
    return schema


def _add_bm25(schema: Any, name: str) -> None:
    """The full-text side of a collection: the analysed ``keyword_text`` (our analyser's tokens, so Milvus's BM25
    scores what the local store scores) and Milvus's BM25 function filling the ``sparse`` field from it."""
    schema.add_field("keyword_text", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name=name,
            function_type=FunctionType.BM25,
            input_field_names=["keyword_text"],
            output_field_names=["sparse"],
        )
    )


def _parts_schema(client: MilvusClient, dim: int, bm25: bool) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("part_id", DataType.INT64, is_primary=True)
    schema.add_field("doc_key", DataType.INT64)
    schema.add_field("mean", DataType.FLOAT_VECTOR, dim=dim)  # normalised mean of its first passages' vectors
    if bm25:
        _add_bm25(schema, "part_bm25")
    return schema


def _documents_schema(client: MilvusClient) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=VARCHAR_MAX)  # "" on the meta row
    schema.add_field("doc_key", DataType.INT64)
    schema.add_field("chunk", DataType.INT64)
    schema.add_field("chunks", DataType.INT64)
    schema.add_field("body", DataType.VARCHAR, max_length=VARCHAR_MAX)  # a piece of the document's JSON
    schema.add_field("cluster", DataType.INT64)
    schema.add_field("doc_ordinal", DataType.INT64)  # document order (duplicate clusters list in it)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
    schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in a collection
    return schema


def _scalar_index(server: ServerInfo, field: str) -> str:
    if server.has_inverted_index:
        return "INVERTED"
    return "Trie" if field in ("doc_id", "section") else "STL_SORT"


def _add_bm25_index(index: Any, k1: float, b: float) -> None:
    """The BM25 index over a collection's ``sparse`` field, with our k1 and b (the local store's, so scores match)."""
    index.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        # Nested: pymilvus 3 flattens a plain params dict into top-level keys, which Milvus Lite ignores (it reads
        # the "params" JSON, as the servers also accept).
        params={"params": {"bm25_k1": k1, "bm25_b": b}},
    )


def _create_collections(
    client: MilvusClient, names: _Names, dim: int, server: ServerInfo, keyword: KeywordSettings, config: MilvusConfig
) -> None:
    bm25 = server.has_bm25
    # Exact search on Milvus Lite (its HNSW is no faster at test sizes); HNSW on a server, at scale.
    dense_index = (
        {"index_type": "FLAT", "metric_type": "IP"}
        if server.is_lite
        else {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 200}}
    )
    index = client.prepare_index_params()
    index.add_index("vector", **dense_index)
    for name in ("doc_id", "section", "doc_key", "part_id", "cluster", "published_ts"):
        index.add_index(name, index_type=_scalar_index(server, name))
    if bm25:
        _add_bm25_index(index, keyword.k1, keyword.b)
    client.create_collection(
        names.passages,
        schema=_passages_schema(client, dim, bm25),
        index_params=index,
        consistency_level=config.consistency,
    )
    index = client.prepare_index_params()
    index.add_index("mean", index_type="FLAT", metric_type="IP")
    index.add_index("doc_key", index_type=_scalar_index(server, "doc_key"))
    if bm25:
        _add_bm25_index(index, keyword.context_k1, keyword.context_b)
    client.create_collection(
        names.parts, schema=_parts_schema(client, dim, bm25), index_params=index, consistency_level=config.consistency
    )
    index = client.prepare_index_params()
    index.add_index("placeholder", index_type="FLAT", metric_type="L2")
    for name in ("doc_id", "doc_key", "cluster"):
        index.add_index(name, index_type=_scalar_index(server, name))
    client.create_collection(
        names.documents,
        schema=_documents_schema(client),
        index_params=index,
        consistency_level=config.consistency,
    )


# -- rows ------------------------------------------------------------------------------------------------------------
def document_rows(document: StoredDocument, *, cluster: int, ordinal: int) -> list[dict[str, Any]]:
    """The document as JSON in VARCHAR-sized chunks (reassembled exactly by ``_document_from_rows``)."""
    body = json.dumps(asdict(document), ensure_ascii=False)
    pieces = [body[i : i + CHUNK_CHARS] for i in range(0, len(body), CHUNK_CHARS)] or [""]
    doc_key = key_of(document.doc_id)
    return [
        {
            "key": f"d{doc_key}:{i}",
            "doc_id": document.doc_id,
            "doc_key": doc_key,
            "chunk": i,
            "chunks": len(pieces),
            "body": piece,
            "cluster": cluster,
            "doc_ordinal": ordinal,
            "content_hash": document.content_hash,
            "placeholder": [0.0, 0.0],
        }
        for i, piece in enumerate(pieces)
    ]


def _document_from_rows(rows: Sequence[dict[str, Any]]) -> StoredDocument | None:
    rows = sorted(rows, key=lambda r: int(r["chunk"]))
    if not rows or len(rows) != int(rows[0]["chunks"]):
        return None  # a document being replaced right now: not all of its chunks are visible
    data = json.loads("".join(str(r["body"]) for r in rows))
    data["units"] = tuple(StoredUnit(**u) for u in data["units"])
    return StoredDocument(**data)


def _meta_row(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": "meta",
        "doc_id": "",
        "doc_key": -1,
        "chunk": 0,
        "chunks": 1,
        "body": json.dumps(meta, ensure_ascii=False),
        "cluster": -1,
        "doc_ordinal": -1,
        "content_hash": "",
        "placeholder": [0.0, 0.0],
    }


@dataclass(frozen=True, slots=True)
class _DocumentFacts:
    published: str
    timestamp: float  # NaN when undated
    cluster: int


def _passage_row(
    passage: StoredPassage,
    vector: np.ndarray,
    *,
    passage_id: int,
    part_id: int,
    lead_id: int,
    facts: _DocumentFacts,
    keyword_text: str | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": passage_id,
        "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "doc_id": passage.doc_id,
        "doc_key": key_of(passage.doc_id),
        "ordinal": passage.ordinal,
        "section": passage.section,
        "comment_no": -1 if passage.comment_no is None else passage.comment_no,
        "char_start": passage.char_start,
        "char_end": passage.char_end,
        "text": passage.text,
        "title": passage.title,
        "source": passage.source,
        "url": passage.url or "",
        "unit": "" if passage.unit is None else json.dumps(asdict(passage.unit), ensure_ascii=False),
        "metadata": json.dumps(passage.metadata or {}, ensure_ascii=False),
        "part_id": part_id,
        "lead_id": lead_id,
        "published": facts.published,
        "published_ts": 0.0 if math.isnan(facts.timestamp) else facts.timestamp,
        "dated": not math.isnan(facts.timestamp),
        "cluster": facts.cluster,
    }
    if keyword_text is not None:
        row["keyword_text"] = keyword_text
    return row


PASSAGE_FIELDS = [
    "id",
    "doc_id",
    "ordinal",
    "section",
    "comment_no",
    "char_start",
    "char_end",
    "text",
    "title",
    "source",
    "url",
    "unit",
    "metadata",
]


def _stored_passage(row: dict[str, Any]) -> StoredPassage:
    unit = StoredUnit(**json.loads(row["unit"])) if row["unit"] else None
    return StoredPassage(
        passage_id=int(row["id"]),
        doc_id=str(row["doc_id"]),
        ordinal=int(row["ordinal"]),
        section=str(row["section"]),
        comment_no=None if int(row["comment_no"]) < 0 else int(row["comment_no"]),
        char_start=int(row["char_start"]),
        char_end=int(row["char_end"]),
        text=str(row["text"]),
        title=str(row["title"]),
        source=str(row["source"]),
        url=str(row["url"]) or None,
        unit=unit,
        metadata=json.loads(row["metadata"]),
    )


# -- export of a local build -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExportedRows:
    passages: list[dict[str, Any]]
    parts: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    duplicates: int


def rows_from_reader(reader: IndexReader, *, bm25: bool, posted: bool = False, ordinal_base: int = 0) -> ExportedRows:
    """Every row of a local index version, as the Milvus collections hold them. ``posted``: ids for documents
    posted to a running service (hashed from the document id, so they never collide with a build's ids)."""
    from citesearch.store import LocalStore  # the part layout and part vectors, exactly as local search uses them

    keyword = reader.keyword
    if keyword is None or keyword.context is None or keyword.documents is None:
        raise IndexIncompatibleError(
            f"index {reader.version} has no keyword, part or document tables; the Milvus export needs a current "
            "build (re-index with the default keyword settings)"
        )
    local = LocalStore(reader)
    layout = local.part_layout()
    assert layout is not None
    part_vectors = local.part_vectors(layout)
    table = keyword.documents
    settings = keyword.settings
    # Live passages only, in ascending id; everything else is addressed by the passages' positions in the reader's
    # arrays, which on a segmented index also hold deleted passages, and part and document ordinals as the reader
    # numbers them (per segment), never by enumeration order.
    passages = list(reader.iter_passages())
    live_ids = np.array([p.passage_id for p in passages], dtype=np.int64)
    positions = keyword.positions(live_ids)
    vectors = reader.vectors.vectors_for(live_ids)
    doc_keys = [key_of(str(d)) for d in table.doc_ids.tolist()]
    at_position = dict(zip(positions.tolist(), passages, strict=True))

    def passage_id(position: int) -> int:
        p = at_position[position]
        return key_of(p.doc_id, p.ordinal) | POSTED_ID_BIT if posted else p.passage_id

    # Parts: each live passage's part, its text the unit of its document that holds the passage.
    stored: dict[str, StoredDocument] = {}
    part_text: dict[int, str] = {}
    part_doc: dict[int, str] = {}
    doc_ordinal: dict[str, int] = {}
    for position, p in zip(positions.tolist(), passages, strict=True):
        doc_ordinal.setdefault(p.doc_id, int(table.doc_of[position]))
        ordinal = int(layout.part_of[position])
        if ordinal in part_text:
            continue
        document = stored.get(p.doc_id) or reader.document(p.doc_id)
        assert document is not None
        stored[p.doc_id] = document
        unit = next(u for u in document.units if u.char_start <= p.char_start < u.char_end)
        part_text[ordinal] = KeywordIndex.text_of(document, document.text[unit.char_start : unit.char_end], settings)
        part_doc[ordinal] = document.doc_id
    part_ordinals = sorted(part_text)

    def part_key(ordinal: int) -> int:
        return key_of(part_doc[ordinal], "part", ordinal) | POSTED_ID_BIT if posted else ordinal

    facts = [
        _DocumentFacts(str(table.published[o]), float(table.timestamps[o]), doc_keys[int(table.cluster[o])])
        for o in range(len(table.doc_ids))
    ]
    passage_texts = analysed(settings, [KeywordIndex.text_of(p, p.text, settings) for p in passages]) if bm25 else None
    passage_rows = [
        _passage_row(
            p,
            vectors[i],
            passage_id=passage_id(position),
            part_id=part_key(int(layout.part_of[position])),
            lead_id=passage_id(int(layout.lead[int(layout.part_of[position])])),
            facts=facts[int(table.doc_of[position])],
            keyword_text=None if passage_texts is None else passage_texts[i],
        )
        for i, (position, p) in enumerate(zip(positions.tolist(), passages, strict=True))
    ]
    context_texts = analysed(settings.for_context(), [part_text[o] for o in part_ordinals]) if bm25 else None
    means = part_vectors.means[np.array(part_ordinals, dtype=np.int64)] if part_ordinals else np.zeros((0, 0))
    part_rows = []
    for i, ordinal in enumerate(part_ordinals):
        row: dict[str, Any] = {
            "part_id": part_key(ordinal),
            "doc_key": key_of(part_doc[ordinal]),
            "mean": np.asarray(means[i], dtype=np.float32).tolist(),
        }
        if context_texts is not None:
            row["keyword_text"] = context_texts[i]
        part_rows.append(row)
    document_rows_: list[dict[str, Any]] = []
    for doc_id in sorted(stored):
        ordinal = doc_ordinal[doc_id]
        document_rows_ += document_rows(stored[doc_id], cluster=facts[ordinal].cluster, ordinal=ordinal_base + ordinal)
    return ExportedRows(passage_rows, part_rows, document_rows_, table.duplicate_documents)


def _insert(
    client: MilvusClient,
    collection: str,
    rows: Sequence[dict[str, Any]],
    *,
    upsert: bool = False,
    batch: int = WRITE_BATCH,
) -> None:
    for start in range(0, len(rows), batch):
        chunk = list(rows[start : start + batch])
        if upsert:
            client.upsert(collection, chunk)
        else:
            client.insert(collection, chunk)


# -- publishing a version: create, insert (from the driver or from many writers), switch -----------------------------
ROW_KINDS = ("passages", "parts", "documents")


@dataclass(frozen=True, slots=True)
class PendingVersion:
    """A version whose collections exist but which no alias names yet: everything a writer needs to insert its rows
    (picklable, so a Ray actor is built from it). Rows inserted here are served only once ``switch_to`` runs."""

    config: MilvusConfig
    stamp: str
    bm25: bool

    def collection(self, kind: str) -> str:
        if kind not in ROW_KINDS:
            raise ValueError(f"unknown Milvus row kind {kind!r} (one of {', '.join(ROW_KINDS)})")
        return f"{self.config.prefix}_{self.stamp}_{kind}"

    @property
    def names(self) -> _Names:
        return _Names(self.config.prefix, self.stamp)


@dataclass(frozen=True, slots=True)
class WriteReport:
    """Who inserted a version's rows: ``writers`` "driver" or "ray", ``per_writer`` rows of each kind by writer
    (the driver, or each Ray actor's host:pid)."""

    writers: str
    rows: dict[str, int]
    per_writer: dict[str, dict[str, int]]
    seconds: float
    pool: int = 0  # Ray actors started for the job (each wrote unless the others took every batch first)

    def to_dict(self) -> dict[str, object]:
        total = sum(self.rows.values())
        return {
            "writers": self.writers,
            "pool": self.pool,
            "actors": len(self.per_writer) if self.writers.startswith("ray") else 0,
            "rows": dict(self.rows),
            "per_writer": {name: dict(kinds) for name, kinds in self.per_writer.items()},
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(total / self.seconds, 1) if self.seconds > 0 else None,
        }


@dataclass(frozen=True, slots=True)
class PublishReport:
    stamp: str
    write: WriteReport


# What inserts a pending version's rows: the driver itself (``insert_from_driver``) or a job of many writers
# (indexer/ray_milvus.py). It returns who wrote what; an exception leaves the version unpublished.
RowSink = Callable[[PendingVersion, ExportedRows, int], WriteReport]


def new_stamp() -> str:
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%f")


def create_version(
    client: MilvusClient, config: MilvusConfig, *, dim: int, keyword: KeywordSettings, server: ServerInfo | None = None
) -> PendingVersion:
    """Three new, empty collections for a version, not aliased (so not served)."""
    server = server or ServerInfo.of(client)
    pending = PendingVersion(config, new_stamp(), server.has_bm25)
    _create_collections(client, pending.names, dim, server, keyword, config)
    return pending


def insert_rows(
    client: MilvusClient,
    pending: PendingVersion,
    kind: str,
    rows: Sequence[dict[str, Any]],
    *,
    batch: int = WRITE_BATCH,
) -> int:
    """Insert rows of one kind (``ROW_KINDS``) into a pending version; returns how many."""
    _insert(client, pending.collection(kind), rows, batch=batch)
    return len(rows)


class RowWriter:
    """One client on a pending version, for a writer that is not the driver (a Ray actor): ``write(kind, rows)``."""

    def __init__(self, pending: PendingVersion) -> None:
        self.pending = pending
        self.client = connect(pending.config)

    def write(self, kind: str, rows: Sequence[dict[str, Any]]) -> int:
        try:
            return insert_rows(self.client, self.pending, kind, rows, batch=max(1, len(rows)))
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus insert into {self.pending.collection(kind)} failed: {exc}") from None

    def close(self) -> None:
        self.client.close()


def insert_from_driver(
    pending: PendingVersion, rows: ExportedRows, batch: int, *, label: str = "driver"
) -> WriteReport:
    """The single-process insert: this process writes every row over one client."""
    started = time.perf_counter()
    client = connect(pending.config)
    try:
        counts = {kind: insert_rows(client, pending, kind, getattr(rows, kind), batch=batch) for kind in ROW_KINDS}
    finally:
        client.close()
    return WriteReport(label, counts, {"driver": dict(counts)}, time.perf_counter() - started)


def version_meta(
    reader: IndexReader, pending: PendingVersion, server: ServerInfo, duplicates: int, extra: dict[str, Any] | None
) -> dict[str, Any]:
    keyword = reader.keyword
    assert keyword is not None
    return {
        "stamp": pending.stamp,
        "model": asdict(reader.manifest.model),
        "keyword": keyword.settings.to_dict(),
        "keyword_recorded": reader.manifest.extra.get("keyword"),
        "chunker": reader.manifest.chunker,
        "fusion": reader.manifest.extra.get("fusion"),
        "bm25": server.has_bm25,
        "server": server.version,
        "source_version": reader.version,
        "source_dir": str(reader.index_dir.resolve()),
        "corpus_fingerprint": reader.manifest.corpus_fingerprint,
        "duplicates": duplicates,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def switch_to(client: MilvusClient, pending: PendingVersion, meta: dict[str, Any]) -> str | None:
    """Complete a version and serve it: the meta row (what ``MilvusStore`` opens a version by), a flush, then the
    alias switch, atomic in Milvus, which is the commit point. Returns the stamp served until now (None: none)."""
    names = pending.names
    _insert(client, names.documents, [_meta_row(meta)])
    for name in (names.passages, names.parts, names.documents):
        client.flush(name)  # sealed segments: BM25 statistics cover the whole collection (not a filter)
    previous = _current_documents(client, pending.config)
    if previous is None:
        client.create_alias(names.documents, pending.config.alias)
    else:
        client.alter_alias(names.documents, pending.config.alias)  # the switch: atomic in Milvus
    return None if previous is None else _Names.from_documents(pending.config.prefix, previous).stamp


def prune_after(client: MilvusClient, pending: PendingVersion, previous: str | None) -> None:
    """After a switch: drop the versions older than the new one except the one served until now (replicas still
    switching read it), which includes any an interrupted run left unaliased. Only logged when it fails: the new
    version is published either way, and the next publish prunes again."""
    keep = {pending.stamp} | ({previous} if previous else set())
    try:
        _prune(client, pending.config, keep=keep, before=pending.stamp)
    except MilvusException as exc:
        log.warning("could not drop old Milvus versions (the next publish tries again): %s", exc)


def abandon(client: MilvusClient, pending: PendingVersion) -> None:
    """Drop a version that will not be published (never a half-written version left behind); a Milvus that cannot
    be reached now leaves them to the next publish's pruning."""
    try:
        for name in (pending.names.passages, pending.names.parts, pending.names.documents):
            if client.has_collection(name):
                client.drop_collection(name)
    except MilvusException as exc:
        log.warning(
            "could not drop the unpublished Milvus version %s (the next publish drops it): %s", pending.stamp, exc
        )


def publish_from_reader(reader: IndexReader, config: MilvusConfig, *, extra: dict[str, Any] | None = None) -> str:
    """Copy a local index version into a new set of Milvus collections and switch the alias to it; returns the new
    version's stamp. The version served until then stays (replicas still switching read it), older ones go."""
    return publish_version(reader, config, extra=extra).stamp


def publish_version(
    reader: IndexReader,
    config: MilvusConfig,
    *,
    sink: RowSink | None = None,
    batch: int = WRITE_BATCH,
    extra: dict[str, Any] | None = None,
) -> PublishReport:
    """``publish_from_reader`` with the row insert handed to ``sink`` (default: this process). Whatever fails, or
    an interrupt, before the alias switch drops the new collections and leaves the served version served."""
    client = connect(config)
    try:
        server = ServerInfo.of(client)
        keyword = reader.keyword
        if keyword is None:
            raise IndexIncompatibleError(f"index {reader.version} has no keyword index; re-index")
        rows = rows_from_reader(reader, bm25=server.has_bm25)  # before any collection exists: it may refuse
        pending = create_version(client, config, dim=reader.manifest.model.dim, keyword=keyword.settings, server=server)
        try:
            written = (sink or insert_from_driver)(pending, rows, batch)
            writers = {k: v for k, v in written.to_dict().items() if k in ("writers", "pool", "actors", "rows")}
            meta = version_meta(reader, pending, server, rows.duplicates, {"writers": writers, **(extra or {})})
            previous = switch_to(client, pending, meta)
        except BaseException:  # Ctrl-C too: the alias still names the old version
            abandon(client, pending)
            raise
        prune_after(client, pending, previous)
        log.info("published Milvus index %s (%d passages) at %s", pending.stamp, len(rows.passages), config.uri)
        return PublishReport(pending.stamp, written)
    except MilvusException as exc:
        raise MilvusStoreError(f"publishing to Milvus at {config.uri} failed: {exc}") from None
    finally:
        client.close()


def _current_documents(client: MilvusClient, config: MilvusConfig) -> str | None:
    try:
        # Listed first: describing a missing alias is an error pymilvus logs at ERROR level.
        if config.alias not in (client.list_aliases() or {}).get("aliases", []):
            return None
        described = client.describe_alias(config.alias)
    except MilvusException:
        return None
    name = described.get("collection_name") if isinstance(described, dict) else None
    return str(name) if name else None


def _versions(client: MilvusClient, config: MilvusConfig) -> list[str]:
    pattern = re.compile(rf"^{re.escape(config.prefix)}_(v\d{{8}}T\d+)_documents$")
    return sorted(m.group(1) for name in client.list_collections() if (m := pattern.match(name)))


def _prune(client: MilvusClient, config: MilvusConfig, *, keep: set[str], before: str) -> None:
    """Drop every version of the prefix older than ``before`` except ``keep`` (the new one and the one served until
    now). Versions newer than ``before`` are another build still writing: left alone."""
    for stamp in _versions(client, config):
        if stamp in keep or stamp >= before:
            continue
        names = _Names(config.prefix, stamp)
        for name in (names.passages, names.parts, names.documents):
            if client.has_collection(name):
                client.drop_collection(name)


def current_stamp(config: MilvusConfig, client: MilvusClient | None = None) -> str | None:
    """The version the alias names now (None: nothing published)."""
    own = client is None
    client = client or connect(config)
    try:
        name = _current_documents(client, config)
        return None if name is None else _Names.from_documents(config.prefix, name).stamp
    finally:
        if own:
            client.close()


# -- the store -------------------------------------------------------------------------------------------------------
class _MilvusKeywordQuery:
    """One query's BM25 against Milvus: passages for the passage score, parts for the context score."""

    def __init__(self, store: MilvusStore, query: str, with_context: bool) -> None:
        self._store = store
        settings = store.keyword_settings
        self.terms = analysed(settings, [query])[0]
        self.context_terms = analysed(settings.for_context(), [query])[0] if with_context else None
        self._part_of: dict[int, int] = {}

    def _bm25(self, collection: str, terms: str, limit: int, expression: str | None, field: str) -> dict[int, float]:
        if not terms or limit <= 0:
            return {}
        found = self._store.search(collection, terms, "sparse", limit, expression, [], metric="BM25")
        settings = self._store.keyword_settings
        k1 = settings.context_k1 if collection == self._store.names.parts else settings.k1
        # Milvus Lite answers BM25 negated, a server positive: the magnitude is the score. Milvus scores the
        # classic form, tf * (k1 + 1) / (...); dividing by k1 + 1 gives the Lucene form the local index (bm25s)
        # scores, so the raw BM25 + context sum of hybrid weighs both as it does locally.
        return {int(hit[field]): abs(float(hit["distance"])) / (k1 + 1.0) for hit in found}

    def top(self, k: int, where: Where, fusion: FusionSettings | None) -> Candidates:
        store = self._store
        limit = min(k, SEARCH_MAX)
        scores = self._bm25(store.names.passages, self.terms, limit, where.expression, "id")
        if fusion is None or self.context_terms is None or fusion.context_weight <= 0:
            return _ranked(scores, k)
        # Hybrid ranks keyword candidates by passage BM25 plus part BM25: the passages of the best parts join the
        # passage BM25 candidates, then every candidate gets both exact scores.
        parts = self._bm25(store.names.parts, self.context_terms, limit, None, "part_id")
        members: list[int] = []
        for part_ids in _batches(list(parts), 1024):
            expression = f"part_id in {_id_list(part_ids)}"
            if where.expression:
                expression = f"({expression}) and ({where.expression})"
            members += [int(r["id"]) for r in store.query(store.names.passages, expression, ["id"])]
            if len(members) >= limit:
                break
        union = np.unique(np.array(list(scores) + members, dtype=np.int64))
        bm25, context = self.scores(union)
        assert context is not None
        combined = keyword_score(bm25, context, fusion)
        return _ranked({int(i): float(s) for i, s in zip(union.tolist(), combined.tolist(), strict=True)}, k)

    def scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        store, ids = self._store, np.asarray(ids, dtype=np.int64)
        bm25 = np.zeros(len(ids), dtype=np.float32)
        found: dict[int, float] = {}
        for batch in _batches(ids.tolist(), SEARCH_MAX):
            found.update(self._bm25(store.names.passages, self.terms, len(batch), f"id in {_id_list(batch)}", "id"))
        bm25[:] = [found.get(int(i), 0.0) for i in ids.tolist()]
        if self.context_terms is None:
            return bm25, None
        part_of = store.part_ids(ids)
        wanted = sorted(set(part_of.values()))
        part_scores: dict[int, float] = {}
        for batch in _batches(wanted, SEARCH_MAX):
            part_scores.update(
                self._bm25(
                    store.names.parts, self.context_terms, len(batch), f"part_id in {_id_list(batch)}", "part_id"
                )
            )
        context = np.array([part_scores.get(part_of.get(int(i), -1), 0.0) for i in ids.tolist()], dtype=np.float32)
        return bm25, context


def _ranked(scores: dict[int, float], k: int) -> Candidates:
    positive = [(pid, s) for pid, s in scores.items() if s > 0]
    positive.sort(key=lambda item: (-item[1], item[0]))
    positive = positive[:k]
    return Candidates(
        np.array([p for p, _ in positive], dtype=np.int64), np.array([s for _, s in positive], dtype=np.float32)
    )


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class MilvusStore:
    """One published Milvus index version behind the search seam (``citesearch.store.SearchStore``). Holds a
    client and what the version's meta row says, nothing else: every answer comes from Milvus."""

    def __init__(self, config: MilvusConfig, client: MilvusClient | None = None, stamp: str | None = None) -> None:
        self.config = config
        self.client = client or connect(config)
        self._lock = threading.Lock()
        self.server = ServerInfo.of(self.client)
        stamp = stamp or current_stamp(config, self.client)
        if stamp is None:
            raise IndexNotFoundError(
                f"no citesearch index in Milvus at {config.uri} (alias {config.alias}); build one with "
                "CITESEARCH_STORE=milvus citesearch index PATH"
            )
        self.names = _Names(config.prefix, stamp)
        try:
            for name in (self.names.passages, self.names.parts, self.names.documents):
                self.client.load_collection(name)  # a no-op when loaded; after a restart, collections are released
        except MilvusException as exc:
            raise IndexNotFoundError(f"cannot load Milvus index {stamp} at {config.uri}: {exc}") from None
        rows = self.query(self.names.documents, 'key == "meta"', ["body"])
        if not rows:
            raise IndexNotFoundError(f"Milvus index {stamp} at {config.uri} has no meta row; re-index")
        self.meta: dict[str, Any] = json.loads(rows[0]["body"])
        known = set(KeywordSettings.__dataclass_fields__)
        self.keyword_settings = KeywordSettings(**{k: v for k, v in self.meta["keyword"].items() if k in known})
        self.bm25 = bool(self.meta.get("bm25")) and self.server.has_bm25

    # -- Milvus calls --------------------------------------------------------------------------------------------
    def search(
        self,
        collection: str,
        data: Any,
        field: str,
        limit: int,
        expression: str | None,
        output: list[str],
        *,
        metric: str = "IP",
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"metric_type": metric}
        if metric == "IP" and not self.server.is_lite:
            params["params"] = {"ef": max(limit, 64)}
        try:
            result = self.client.search(
                collection,
                data=[data],
                anns_field=field,
                limit=limit,
                filter=expression or "",
                output_fields=output or ["doc_key"],  # Milvus Lite answers every field when none is named
                search_params=params,
                consistency_level=self.config.consistency,
            )
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus search on {collection} failed: {exc}") from None
        return [dict(hit) for hit in result[0]]

    def query(self, collection: str, expression: str, output: list[str]) -> list[dict[str, Any]]:
        options: dict[str, Any] = {} if "count(*)" in output else {"limit": SEARCH_MAX}
        try:
            rows = self.client.query(
                collection,
                filter=expression,
                output_fields=output,
                consistency_level=self.config.consistency,
                **options,
            )
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus query on {collection} failed: {exc}") from None
        return [dict(row) for row in rows]

    def _rows(self, ids: Sequence[int], output: list[str]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for batch in _batches([int(i) for i in ids], SEARCH_MAX):
            if batch:
                for row in self.query(self.names.passages, f"id in {_id_list(batch)}", ["id", *output]):
                    found[int(row["id"])] = row
        return found

    def part_ids(self, ids: np.ndarray) -> dict[int, int]:
        return {pid: int(row["part_id"]) for pid, row in self._rows(ids.tolist(), ["part_id"]).items()}

    # -- SearchStore ---------------------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.names.stamp

    @property
    def model(self) -> ModelInfo:
        return ModelInfo(**self.meta["model"])

    @property
    def recorded_fusion(self) -> dict[str, object] | None:
        fusion = self.meta.get("fusion")
        return fusion if isinstance(fusion, dict) else None

    @property
    def has_keyword(self) -> bool:
        return self.bm25

    @property
    def why_no_keyword(self) -> str:
        return (
            f"Milvus {self.server.version} at {self.config.uri} has no BM25 function (it needs Milvus 2.5 or later, "
            "or Milvus Lite): use mode 'dense'"
        )

    @property
    def has_dates(self) -> bool:
        return True

    @property
    def duplicate_documents(self) -> int:
        return int(self.meta.get("duplicates", 0))

    @property
    def counts(self) -> dict[str, int]:
        passages = self.query(self.names.passages, "", ["count(*)"])
        documents = self.query(self.names.documents, "chunk == 0 and doc_key >= 0", ["count(*)"])
        return {"passages": int(passages[0]["count(*)"]), "documents": int(documents[0]["count(*)"])}

    def describe(self) -> StoreInfo:
        counts = self.counts
        return StoreInfo(
            f"{self.config.uri} ({self.config.alias})",
            self.version,
            counts["documents"],
            counts["passages"],
            str(self.meta["model"]["name"]),
            dict(self.meta.get("chunker") or {}),
            self.meta.get("keyword_recorded"),
        )

    def serves(self, reader: IndexReader) -> bool:
        """Whether this version is a copy of that local version (nothing to publish)."""
        return (
            self.meta.get("source_version") == reader.version
            and self.meta.get("corpus_fingerprint") == reader.manifest.corpus_fingerprint
            and self.meta.get("source_dir") == str(reader.index_dir.resolve())
        )

    def document(self, doc_id: str) -> StoredDocument | None:
        rows = self.query(self.names.documents, f"doc_id == {_literal(doc_id)}", ["chunk", "chunks", "body"])
        return _document_from_rows(rows)

    def passages(self, passage_ids: Sequence[int]) -> list[StoredPassage]:
        found = self._rows(passage_ids, PASSAGE_FIELDS)
        return [_stored_passage(found[int(i)]) for i in passage_ids if int(i) in found]

    def token_vectors(self, passage_ids: Sequence[int]) -> None:
        """The collections keep no token vectors (yet): a rerank set by an operator encodes the candidates per
        query, and a profile's rerank is off on Milvus (``citesearch.search.Searcher``)."""
        return

    def resolve(self, where: SearchFilter) -> Where:
        clauses = []
        if where.section is not None:
            clauses.append(f"section == {_literal(where.section)}")
        if where.doc_id is not None:
            clauses.append(f"doc_id == {_literal(where.doc_id)}")
        if where.published_after is not None or where.published_before is not None:
            clauses.append("dated == true")
        if where.published_after is not None:
            clauses.append(f"published_ts >= {where.published_after!r}")
        if where.published_before is not None:
            clauses.append(f"published_ts <= {where.published_before!r}")
        return Where(expression=" and ".join(clauses)) if clauses else Where()

    def dense_top(self, query_vector: np.ndarray, k: int, where: Where) -> Candidates:
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1).tolist()
        found = self.search(self.names.passages, vector, "vector", min(k, SEARCH_MAX), where.expression, [])
        return Candidates(
            np.array([int(h["id"]) for h in found], dtype=np.int64),
            np.array([float(h["distance"]) for h in found], dtype=np.float32),
        )

    def keyword_query(self, query: str, *, with_context: bool) -> _MilvusKeywordQuery:
        if not self.bm25:
            raise MilvusStoreError(self.why_no_keyword)
        return _MilvusKeywordQuery(self, query, with_context)

    def vectors(self, passage_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(passage_ids, dtype=np.int64).tolist()
        found = self._rows(ids, ["vector"])
        dim = int(self.meta["model"]["dim"])
        return np.array([found[i]["vector"] if i in found else np.zeros(dim) for i in ids], dtype=np.float32).reshape(
            len(ids), dim
        )

    def part_scores(self, passage_ids: np.ndarray, query_vector: np.ndarray) -> PartScores | None:
        ids = np.asarray(passage_ids, dtype=np.int64).tolist()
        if not ids:
            empty = np.zeros(0, dtype=np.float64)
            return PartScores(empty, empty)
        rows = self._rows(ids, ["part_id", "lead_id"])
        part_ids = sorted({int(r["part_id"]) for r in rows.values()})
        lead_ids = sorted({int(r["lead_id"]) for r in rows.values()})
        means: dict[int, np.ndarray] = {}
        for batch in _batches(part_ids, SEARCH_MAX):
            for row in self.query(self.names.parts, f"part_id in {_id_list(batch)}", ["part_id", "mean"]):
                means[int(row["part_id"])] = np.asarray(row["mean"], dtype=np.float64)
        leads = dict(zip(lead_ids, self.vectors(np.array(lead_ids, dtype=np.int64)).astype(np.float64), strict=True))
        query = np.asarray(query_vector, dtype=np.float64).reshape(-1)
        zero = np.zeros_like(query)
        lead = np.array([float(leads.get(int(rows[i]["lead_id"]), zero) @ query) if i in rows else 0.0 for i in ids])
        mean = np.array([float(means.get(int(rows[i]["part_id"]), zero) @ query) if i in rows else 0.0 for i in ids])
        return PartScores(lead, mean)

    def document_keys(self, passage_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(passage_ids, dtype=np.int64).tolist()
        found = self._rows(ids, ["doc_key"])
        return np.array([int(found[i]["doc_key"]) if i in found else -1 for i in ids], dtype=np.int64)

    def passage_documents(self, passage_ids: np.ndarray) -> PassageDocuments:
        ids = np.asarray(passage_ids, dtype=np.int64).tolist()
        found = self._rows(ids, ["doc_key", "cluster", "published", "published_ts", "dated"])
        missing = {"doc_key": -1, "cluster": -1, "published": "", "published_ts": 0.0, "dated": False}
        rows = [found.get(i, missing) for i in ids]
        return PassageDocuments(
            np.array([int(r["doc_key"]) for r in rows], dtype=np.int64),
            np.array([int(r["cluster"]) for r in rows], dtype=np.int64),
            np.array([float(r["published_ts"]) if r["dated"] else np.nan for r in rows], dtype=np.float64),
            np.array([str(r["published"]) for r in rows], dtype=str),
        )

    def cluster_doc_ids(self, ordinal: int) -> list[str]:
        own = self.query(self.names.documents, f"doc_key == {int(ordinal)} and chunk == 0", ["cluster"])
        if not own:
            return []
        members = self.query(
            self.names.documents, f"cluster == {int(own[0]['cluster'])} and chunk == 0", ["doc_id", "doc_ordinal"]
        )
        return [str(r["doc_id"]) for r in sorted(members, key=lambda r: (int(r["doc_ordinal"]), str(r["doc_id"])))]

    def close(self) -> None:
        self.client.close()

    def milvus_hybrid(self, query_vector: np.ndarray, query: str, k: int, ranker: str) -> Candidates:
        """Milvus's own ``hybrid_search``: dense and passage BM25 lists fused by its ``rrf`` or ``weighted`` (0.5
        each) ranker. Measured against the project's fusion in docs/milvus.md; not used by the search path."""
        if not self.bm25:
            raise MilvusStoreError(self.why_no_keyword)
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1).tolist()
        requests = [
            AnnSearchRequest(data=[vector], anns_field="vector", param={"metric_type": "IP"}, limit=k),
            AnnSearchRequest(
                data=[analysed(self.keyword_settings, [query])[0] or "_"],
                anns_field="sparse",
                param={"metric_type": "BM25"},
                limit=k,
            ),
        ]
        fuse = RRFRanker(60) if ranker == "rrf" else WeightedRanker(0.5, 0.5)
        try:
            found = self.client.hybrid_search(
                self.names.passages, requests, ranker=fuse, limit=k, output_fields=["doc_key"]
            )[0]
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus hybrid_search failed: {exc}") from None
        return Candidates(
            np.array([int(h["id"]) for h in found], dtype=np.int64),
            np.array([float(h["distance"]) for h in found], dtype=np.float32),
        )

    # -- writes (POST / DELETE /documents) -----------------------------------------------------------------------
    def delete_document(self, doc_id: str) -> bool:
        """Remove a document's rows; False when the version holds no such document."""
        with self._lock:
            doc_key = key_of(doc_id)
            known = bool(self.query(self.names.documents, f"doc_key == {doc_key} and chunk == 0", ["key"]))
            self._delete_rows(doc_key)
            self._flush()
            return known

    def _delete_rows(self, doc_key: int) -> None:
        try:
            for name in (self.names.passages, self.names.parts, self.names.documents):
                self.client.delete(name, filter=f"doc_key == {doc_key}")
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus delete failed: {exc}") from None

    def _flush(self) -> None:
        # BM25 statistics of growing segments are computed over a filter's rows only (Milvus Lite): sealing keeps
        # every score the collection-wide one.
        try:
            for name in (self.names.passages, self.names.parts, self.names.documents):
                self.client.flush(name)
        except MilvusException as exc:
            raise MilvusStoreError(f"Milvus flush failed: {exc}") from None

    def write_rows(self, rows: ExportedRows, doc_ids: Sequence[str]) -> None:
        """Replace these documents by the given rows (their old rows are deleted first)."""
        with self._lock:
            try:
                for doc_id in doc_ids:
                    self._delete_rows(key_of(doc_id))
                _insert(self.client, self.names.passages, rows.passages, upsert=True)
                _insert(self.client, self.names.parts, rows.parts, upsert=True)
                _insert(self.client, self.names.documents, rows.documents, upsert=True)
            except MilvusException as exc:
                raise MilvusStoreError(f"Milvus write failed: {exc}") from None
            self._flush()


def posted_ordinal() -> int:
    """Document order for a posted document: after every built one (a build numbers from 0)."""
    return 1 << 40 | int(time.time() * 1000)


__all__ = [
    "CONSISTENCY_LEVELS",
    "MAX_PART_PASSAGES",
    "ROW_KINDS",
    "WRITE_BATCH",
    "ExportedRows",
    "MilvusConfig",
    "MilvusStore",
    "MilvusStoreError",
    "PendingVersion",
    "PublishReport",
    "RowSink",
    "RowWriter",
    "ServerInfo",
    "WriteReport",
    "abandon",
    "create_version",
    "current_stamp",
    "insert_from_driver",
    "insert_rows",
    "key_of",
    "posted_ordinal",
    "prune_after",
    "publish_from_reader",
    "publish_version",
    "rows_from_reader",
    "switch_to",
]
