"""Index builds and incremental updates: documents in, one new atomically published index version out.

Every change, a full folder re-index from the CLI or one document posted over HTTP, goes through ``apply_changes``:
it starts from the current version, re-chunks only documents whose content changed, embeds only passages whose
text the embedding cache has not seen under this model, and publishes a new version. Nothing is visible to readers
until the publish switches the pointer, so an interrupted build changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from index_store import EmbeddingCache, IndexWriter, KeywordSettings, ModelInfo, SegmentCache, StoredPassage
from index_store.token_vectors import FIT_MIN_TOKENS, TOKENS_WAITING, TokenEncoder, encode_token_codes
from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import SECTIONS, Document, Passage
from indexer.embedder import Embedder, embed_backend_of, recorded_backend
from indexer.loaders import LoadResult, Skipped, load_documents

log = logging.getLogger(__name__)

# A derived index (BM25, for instance) rebuilt inside the transaction before publish. It receives the writer's
# folder and every passage the new version will hold, and returns what to record in the manifest's ``extra``.
DerivedIndexBuilder = Callable[[Path, Iterable[StoredPassage]], dict[str, object]]


EMBED_SLICE = 1024  # passages embedded between two writes to the embedding cache


@dataclass(slots=True)
class BuildReport:
    """What a build did, for people (``summary``) and programs (``to_dict``)."""

    version: str = ""
    documents: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    passages: int = 0
    passages_by_section: dict[str, int] = field(default_factory=dict)
    passages_embedded: int = 0
    passages_from_cache: int = 0
    window_splits: int = 0
    chrome_chars: int = 0  # characters of the given documents' text left out of every part (page chrome)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["skipped"] = [{"source": s.source, "reason": s.reason} for s in self.skipped]
        return data

    def summary(self) -> str:
        by_section = ", ".join(f"{name} {count}" for name, count in self.passages_by_section.items())
        return (
            f"published {self.version}: {self.documents} documents ({self.added} added, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.removed} removed), {self.passages} passages ({by_section}); "
            f"embedded {self.passages_embedded}, reused {self.passages_from_cache} from cache, "
            f"{self.window_splits} split to fit the model window; {self.chrome_chars} characters of page chrome "
            f"left out; {self.seconds.get('total', 0.0):.1f}s"
        )


@dataclass(frozen=True, slots=True)
class BuildOptions:
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    batch_size: int = 32
    show_progress: bool = False
    lock_timeout: float = 0.0
    vector_backend: str = "auto"  # "auto": exact below index_store.vectors.EXACT_MAX_VECTORS, IVF above
    # Segments with at least this many vectors get an IVF index from the index's trained centroids (None: what the
    # index recorded, by default EXACT_MAX_VECTORS + 1, the "auto" rule); recorded for later writes and merges.
    ivf_min_vectors: int | None = None
    keyword: KeywordSettings | None = field(default_factory=KeywordSettings)  # None: no BM25 (dense search only)
    derived_indexes: tuple[DerivedIndexBuilder, ...] = ()
    # Query-time settings to record in the manifest (e.g. the hybrid fusion), so every reader uses the same ones.
    record: dict[str, object] = field(default_factory=dict)
    # What a write does when the current version's documents cannot be trusted (index_store.versions.choose_base):
    # "stop" (the CLI's --add: a one-line error naming `citesearch check --repair`) or "fallback" (the service,
    # which re-applies its journal on the older version). A full re-index (replace_all) starts empty instead.
    on_damage: str = "stop"
    # Called as progress(phase, done, total) while a build runs ("chunking" documents, "embedding" passages,
    # "publishing"): the service shows it in GET /updates during a long apply.
    progress: Callable[[str, int, int], None] | None = None
    # Segments this process already loaded (index_store.SegmentCache): the service shares its readers' cache with
    # its writer, so a write reads nothing of the segments it does not change. None: a cache for this call.
    segment_cache: SegmentCache | None = None
    # Token vectors (index_store.token_vectors) are kept from the first write that brings this many tokens, the
    # least a basis for them is fitted on
    token_fit_min_tokens: int = FIT_MIN_TOKENS


def _embed_with_cache(
    embedder: Embedder, passages: Sequence[Passage], cache: EmbeddingCache, options: BuildOptions
) -> tuple[np.ndarray, int]:
    """Vectors for ``passages`` in order, and how many had to be computed (the rest came from the cache)."""
    hashes = [p.content_hash for p in passages]
    key = embedding_cache_key(embedder)
    cached = cache.get_many(key, sorted(set(hashes)))
    missing = sorted({h for h in hashes if h not in cached})
    if missing:
        text_by_hash = {p.content_hash: p.embed_text for p in passages}
        bar = tqdm(total=len(missing), desc="embedding", unit="passage", disable=not options.show_progress)
        if options.progress is not None:
            options.progress("embedding", 0, len(missing))
        # Cache slice by slice: an interrupted build of a large corpus resumes where it stopped.
        for start in range(0, len(missing), EMBED_SLICE):
            hashes_slice = missing[start : start + EMBED_SLICE]
            computed = embedder.encode([text_by_hash[h] for h in hashes_slice], batch_size=options.batch_size)
            fresh = dict(zip(hashes_slice, computed, strict=True))
            cache.put_many(key, fresh)
            cached.update(fresh)
            bar.update(len(hashes_slice))
            if options.progress is not None:
                options.progress("embedding", min(start + EMBED_SLICE, len(missing)), len(missing))
        bar.close()
    vectors = np.stack([cached[h] for h in hashes]) if hashes else np.zeros((0, embedder.dim), np.float32)
    return vectors.astype(np.float32, copy=False), len(missing)


def embedding_cache_key(embedder: Embedder) -> str:
    """Cached vectors are kept per model and backend: a re-index under another backend must not mix in the old
    backend's vectors. Torch keeps the bare model name, so caches written before backends existed stay valid."""
    backend = embed_backend_of(embedder)
    return embedder.name if backend in (None, "torch") else f"{embedder.name}#{backend}"


def apply_changes(
    index_dir: Path,
    embedder: Embedder,
    *,
    upserts: Sequence[Document] = (),
    deletes: Sequence[str] = (),
    replace_all: bool = False,
    options: BuildOptions | None = None,
    skipped: Sequence[Skipped] = (),
) -> BuildReport:
    """Upsert and delete documents and publish the result as a new version.

    With ``replace_all`` the new version holds exactly ``upserts``: documents not among them are removed.
    """
    options = options or BuildOptions()
    started = time.perf_counter()
    report = BuildReport(skipped=list(skipped))
    chunker = Chunker(embedder, options.chunker)
    model = ModelInfo(name=embedder.name, dim=embedder.dim, max_tokens=embedder.max_tokens)
    index_dir.mkdir(parents=True, exist_ok=True)
    with (
        EmbeddingCache(index_dir / "cache" / "embeddings.sqlite") as cache,
        IndexWriter.begin(
            index_dir,
            model=model,
            chunker=options.chunker.to_dict(),
            vector_backend=options.vector_backend,
            keyword=options.keyword,
            lock_timeout=options.lock_timeout,
            allow_model_change=replace_all,
            on_damage="empty" if replace_all else options.on_damage,
            cache=options.segment_cache,
            ivf_min_vectors=options.ivf_min_vectors,
        ) as writer,
    ):
        # Only the documents this write names are looked up (a full re-index needs them all, to remove the rest).
        existing = writer.document_hashes(None if replace_all else [doc.doc_id for doc in upserts])
        # Chunker settings changed since the last version: every document must be re-cut (embeddings of
        # passages whose text did not change still come from the cache).
        rechunk_all = writer.base_chunker is not None and writer.base_chunker != options.chunker.to_dict()
        backend = embed_backend_of(embedder)
        base_backend = None if writer.base is None else recorded_backend(writer.base.extra)
        # A full re-index under another embedding backend re-embeds everything, so the index holds one kind of
        # vector (int8 ones are close to torch ones, cosine > 0.98, but not equal); --add and HTTP updates embed
        # only what they bring, and the manifest then names both backends.
        re_embed_all = replace_all and backend is not None and base_backend not in (None, backend)
        # A full re-index of an index that keeps no token vectors, where the fusion's rerank wants them: every
        # document is written again (its vectors from the cache) so that each passage gets its token codes.
        encode_tokens = getattr(embedder, "encode_tokens", None)
        add_tokens = (
            replace_all
            and callable(encode_tokens)
            and writer.base is not None
            and "token_vectors" not in writer.base.extra
            and TOKENS_WAITING not in writer.base.extra  # it tried, with too few tokens: only new ones may fit a basis
            and writer.wants_token_vectors(options.record.get("fusion"))
        )
        incoming = {doc.doc_id: doc for doc in upserts}
        report.chrome_chars = sum(doc.chrome_chars for doc in incoming.values())
        to_write = _documents_to_write(
            incoming, existing, rewrite_all=rechunk_all or re_embed_all or add_tokens, report=report
        )
        removals = set(deletes) | (set(existing) - set(incoming) if replace_all else set())
        if rechunk_all and not replace_all:
            raise ValueError(
                "chunker settings differ from the current index; re-index the whole corpus "
                "(citesearch index PATH) or keep the previous settings"
            )

        t0 = time.perf_counter()
        passages_by_doc = _chunk_documents(chunker, to_write, options)
        report.seconds["chunk"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        all_new = [p for passages in passages_by_doc.values() for p in passages]
        vectors, computed = _embed_with_cache(embedder, all_new, cache, options)
        report.passages_embedded = computed
        report.passages_from_cache = len(all_new) - computed
        report.window_splits = chunker.stats.window_splits
        report.seconds["embed"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if options.progress is not None:
            options.progress("publishing", 0, 1)
        for doc_id in sorted(removals):
            if doc_id not in incoming and writer.delete_document(doc_id):
                report.removed += 1
        offset = 0
        for doc in to_write:
            passages = passages_by_doc[doc.doc_id]
            writer.upsert_document(doc, passages, vectors[offset : offset + len(passages)])
            offset += len(passages)
        waiting: str | None = None
        if to_write and callable(encode_tokens) and writer.wants_token_vectors(options.record.get("fusion")):
            t1 = time.perf_counter()
            kept = _store_token_codes(writer, encode_tokens, passages_by_doc, options)
            report.seconds["tokens"] = time.perf_counter() - t1
            if not kept:
                waiting = f"no basis yet: the write brought fewer than {options.token_fit_min_tokens} tokens to fit one"
        documents_now = writer.counts.get("documents", 0)
        extra: dict[str, object] = dict(options.record)
        if waiting is not None:  # recorded, so that a rebuild is not asked for the codes a basis does not allow
            extra[TOKENS_WAITING] = waiting
        if backend is not None:  # torch, onnx or onnx-int8: the same vector space, recorded for audits
            # Documents kept from the base keep their vectors, so their backend stays named.
            kept_base = None if re_embed_all or not documents_now else base_backend
            extra.setdefault("embed_backend", _backends_record(backend, kept_base))
        for build_derived in options.derived_indexes:
            extra.update(build_derived(writer.version_dir, writer.iter_passages()))
        report.seconds["total"] = time.perf_counter() - started
        report.passages_by_section = _passages_by_section(writer.counts)
        report.passages = sum(report.passages_by_section.values())
        report.documents = documents_now
        manifest = writer.publish(build=report.to_dict(), extra=extra)
        report.seconds["publish"] = time.perf_counter() - t0
        report.version = manifest.version
    report.seconds["total"] = time.perf_counter() - started
    return report


def _store_token_codes(
    writer: IndexWriter,
    encode_tokens: TokenEncoder,
    passages_by_doc: dict[str, list[Passage]],
    options: BuildOptions,
) -> bool:
    """Encode the token vectors of the passages this write brings (of what their vectors were made from) and keep
    them, as int8 codes in the index's basis (fitted now on the first of them for an index that has none), for the
    late-interaction rerank. False when it kept none: no basis, and too few tokens to fit one on."""
    new = list(passages_by_doc.items())
    texts = [p.embed_text for _, passages in new for p in passages]
    bar = tqdm(total=len(texts), desc="token vectors", unit="passage", disable=not options.show_progress)

    def advance(done: int) -> None:
        bar.update(done - bar.n)
        if options.progress is not None:
            options.progress("token vectors", done, len(texts))

    try:
        projection, codes = encode_token_codes(
            encode_tokens,
            texts,
            writer.base_token_projection(),
            fit_min_tokens=options.token_fit_min_tokens,
            progress=advance,
        )
    finally:
        bar.close()
    if projection is None:
        log.info(
            "token vectors not kept yet: the index has no basis for them and this write brings fewer than %d tokens "
            "to fit one on; its passages are reranked from their text",
            options.token_fit_min_tokens,
        )
        return False
    writer.token_projection = projection
    offset = 0
    for doc_id, passages in new:
        writer.set_token_codes(doc_id, codes[offset : offset + len(passages)])
        offset += len(passages)
    return True


def _documents_to_write(
    incoming: dict[str, Document], existing: dict[str, str], *, rewrite_all: bool, report: BuildReport
) -> list[Document]:
    """The incoming documents that are new or changed (all of them with ``rewrite_all``), counted in ``report``."""
    to_write: list[Document] = []
    for doc in incoming.values():
        previous = existing.get(doc.doc_id)
        if previous is None:
            report.added += 1
        elif previous != doc.content_hash or rewrite_all:
            report.changed += 1
        else:
            report.unchanged += 1
            continue
        to_write.append(doc)
    return to_write


def _chunk_documents(
    chunker: Chunker, documents: Sequence[Document], options: BuildOptions
) -> dict[str, list[Passage]]:
    passages_by_doc: dict[str, list[Passage]] = {}
    for done, doc in enumerate(_progress(documents, "chunking", options)):
        if options.progress is not None:
            options.progress("chunking", done, len(documents))
        passages_by_doc[doc.doc_id] = chunker.chunk(doc)
    return passages_by_doc


def _backends_record(backend: str, kept_base: str | None) -> str:
    """The manifest's ``embed_backend``: this build's backend plus those of the base's documents it keeps."""
    backends = {backend}
    if kept_base is not None:
        backends.update(kept_base.split("+"))
    return "+".join(sorted(backends))


def _passages_by_section(counts: dict[str, int]) -> dict[str, int]:
    """Passages per section from the writer's running counts (kept per write, not counted over the index)."""
    by_section = dict.fromkeys(SECTIONS, 0)
    for key, count in counts.items():
        if key.startswith("passages_"):
            by_section[key.removeprefix("passages_")] = count
    return by_section


def _progress(items: Sequence[Document], label: str, options: BuildOptions) -> Iterable[Document]:
    return tqdm(items, desc=label, unit="doc", disable=not options.show_progress or len(items) < 50)


def build_index(
    paths: Sequence[Path | str],
    index_dir: Path,
    embedder: Embedder,
    *,
    options: BuildOptions | None = None,
    replace_all: bool = True,
) -> BuildReport:
    """Load files and folders and make the index hold exactly those documents (or add them, ``replace_all=False``)."""
    started = time.perf_counter()
    loaded: LoadResult = load_documents(paths)
    load_seconds = time.perf_counter() - started
    report = apply_changes(
        index_dir,
        embedder,
        upserts=loaded.documents,
        replace_all=replace_all,
        options=options,
        skipped=loaded.skipped,
    )
    report.seconds["load"] = load_seconds
    report.seconds["total"] = time.perf_counter() - started
    return report
