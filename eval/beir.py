"""BEIR-format benchmarks: load a dataset, index its corpus into its own folder, run every query of a split
through the shared ``Searcher`` and score the document rankings.

A BEIR dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``)
and ``qrels/SPLIT.tsv`` (``query-id``, ``corpus-id``, ``score``, header line first). The corpus is loaded by the same
loader as ``citesearch index`` and indexed with the same pipeline and settings, so the figures describe the system
that is shipped, not a side path.

Each dataset gets its own index folder (default ``var/eval/<dataset>``). It is reused as is when the corpus
fingerprint, the model, the chunker settings and the BM25 settings all equal what the current version recorded;
otherwise it is rebuilt (the embedding cache in the folder still saves re-embedding unchanged passages).
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from citesearch.fusion import passages_per_document
from citesearch.search import Searcher, check_model_matches
from citesearch.settings import Settings
from citesearch.store import SearchStore, open_store
from eval.jsonl import read_objects
from eval.metrics import BEIR_METRICS, evaluate_rankings
from eval.ranking import BEST_PASSAGE_RULE, search_documents
from eval.report import EvalReport, IndexInfo, LatencySummary
from index_store import IndexCorruptError, IndexNotFoundError, Manifest, open_index
from index_store.token_vectors import TOKENS_WAITING
from indexer.embedder import Embedder, embed_backend_of, recorded_backend

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
DEPTH = 100  # documents ranked per query: enough for Recall@100
EVAL_MARKER = "eval_dataset"  # recorded in the manifest's extra: this folder is an eval index, safe to replace
_LAYOUT = f"a BEIR dataset folder holds {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/SPLIT.tsv"


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """The queries and judgments of one split; the corpus stays on disk until it is indexed."""

    name: str
    root: Path
    split: str
    queries: dict[str, str]  # query id -> text, only queries of the split that have text, in queries.jsonl order
    qrels: dict[str, dict[str, int]]  # query id -> document id -> relevance
    queries_without_text: int = 0  # judged in the split but missing from queries.jsonl (skipped)
    # query id -> the date the question was asked (metadata.question_date/date/as_of), for the recency prior
    query_dates: dict[str, str] = field(default_factory=dict)

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS_FILE


def available_splits(root: Path) -> list[str]:
    qrels_dir = root / QRELS_DIR
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def load_beir_dataset(root: Path | str, split: str) -> BeirDataset:
    """Check the folder and read the split's queries and qrels. Cheap: call it before loading any model."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist or is not a folder; {_LAYOUT}")
    for name in (CORPUS_FILE, QUERIES_FILE):
        if not (root / name).is_file():
            raise ValueError(f"{root / name} is missing; {_LAYOUT}")
    qrels_path = root / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(root)
        known = f"available splits: {', '.join(splits)}" if splits else f"{root / QRELS_DIR} holds no .tsv file"
        raise ValueError(f"no qrels for split {split!r}: {qrels_path} is missing; {known}")
    qrels = read_qrels(qrels_path)
    if not qrels:
        raise ValueError(f"{qrels_path} holds no judgments")
    texts = read_queries(root / QUERIES_FILE)
    queries = {query_id: text for query_id, text in texts.items() if query_id in qrels}
    if not queries:
        raise ValueError(f"none of the {len(qrels)} queries of {qrels_path} is in {root / QUERIES_FILE}")
    return BeirDataset(
        name=root.resolve().name,
        root=root,
        split=split,
        queries=queries,
        qrels={query_id: qrels[query_id] for query_id in queries},
        queries_without_text=len(qrels) - len(queries),
        query_dates={q: d for q, d in read_query_dates(root / QUERIES_FILE).items() if q in queries},
    )


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id  corpus-id  score`` lines; the header line is optional."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if line_no == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) != 3:
                raise ValueError(
                    f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}"
                )
            query_id, doc_id, score = (cell.strip() for cell in row)
            try:
                relevance = int(float(score))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: score {score!r} is not a number") from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    """``{"_id": ..., "text": ...}`` lines (BEIR's queries.jsonl)."""
    queries: dict[str, str] = {}
    for where, item in read_objects(path):
        if "_id" not in item or not isinstance(item.get("text"), str):
            raise ValueError(f'{where}: expected an object with "_id" and a string "text"')
        queries[str(item["_id"])] = item["text"]
    return queries


QUERY_DATE_FIELDS = ("question_date", "as_of", "date")


def read_query_dates(path: Path) -> dict[str, str]:
    """When each question was asked, where queries.jsonl says (``metadata.question_date`` in RealTimeQA)."""
    from indexer.dates import parse_date

    dates: dict[str, str] = {}
    for _, item in read_objects(path):
        metadata = item["metadata"] if isinstance(item.get("metadata"), dict) else {}
        for name in QUERY_DATE_FIELDS:
            found = parse_date(metadata.get(name)) or parse_date(item.get(name))
            if found is not None:
                dates[str(item.get("_id"))] = found
                break
    return dates


# -- the dataset's index -----------------------------------------------------------------------------------------
def corpus_fingerprint(documents: Sequence[Any]) -> str:
    """The fingerprint index_store records for a corpus (``index_store.manifest.corpus_fingerprint``: order-free,
    kept up to date per write). Built from a dict like the pipeline does, so a doc id repeated in the corpus counts
    once (the last one wins)."""
    from index_store.manifest import corpus_fingerprint as fingerprint_of

    return fingerprint_of({doc.doc_id: doc.content_hash for doc in documents})


@dataclass(frozen=True, slots=True)
class PreparedIndex:
    index_dir: Path
    version: str
    reused: bool
    reason: str  # why it was reused or rebuilt, for the log and the report
    build_seconds: float | None = None
    build: dict[str, Any] = field(default_factory=dict)  # the build report's counts and timings, when built


def _keyword_recorded(manifest: Manifest) -> dict[str, Any] | None:
    recorded = manifest.extra.get("keyword")
    return recorded if isinstance(recorded, dict) else None


def why_rebuild(manifest: Manifest, fingerprint: str, embedder: Embedder, settings: Settings) -> str | None:
    """None when the current version already is this corpus under these settings, else what differs."""
    if manifest.corpus_fingerprint != fingerprint:
        return "the corpus changed"
    if (manifest.model.name, manifest.model.dim) != (embedder.name, embedder.dim):
        return f"the model changed ({manifest.model.name} -> {embedder.name})"
    backend = embed_backend_of(embedder)
    recorded = recorded_backend(manifest.extra)
    if backend is not None and recorded != backend:
        return f"the embedding backend changed ({recorded} -> {backend})"
    if manifest.chunker != settings.chunker_settings().to_dict():
        return "the chunker settings changed"
    wanted = settings.keyword_settings().to_dict()
    keyword = _keyword_recorded(manifest)
    if keyword is None or any(keyword.get(name) != value for name, value in wanted.items()):
        return "the BM25 settings changed"
    fusion = settings.fusion_settings().resolved(passages_per_document(manifest.counts))
    # TOKENS_WAITING: the last build wanted codes but brought too few tokens to fit a basis on; rebuilding won't help
    kept_or_waiting = "token_vectors" in manifest.extra or TOKENS_WAITING in manifest.extra
    if fusion.rerank_depth and not kept_or_waiting and callable(getattr(embedder, "encode_tokens", None)):
        return "the fusion reranks by late interaction and the index keeps no token vectors"
    return None


def prepare_index(
    index_dir: Path,
    dataset_name: str,
    documents: Sequence[Any],
    embedder: Embedder,
    settings: Settings,
    *,
    skipped: Sequence[Any] = (),
    show_progress: bool = False,
) -> PreparedIndex:
    """Reuse the dataset's index when nothing that shapes it changed, else (re)build it with the shared pipeline."""
    from indexer.pipeline import apply_changes

    fingerprint = corpus_fingerprint(documents)
    reason = "no index yet"
    try:
        with open_index(index_dir) as reader:
            manifest = reader.manifest
    except IndexNotFoundError:
        manifest = None
    except IndexCorruptError as exc:
        manifest, reason = None, f"the current version is unusable ({exc})"
    if manifest is not None:
        if EVAL_MARKER not in manifest.extra:
            # Rebuilding replaces every document: never do that to an index citesearch eval did not make.
            raise ValueError(
                f"{index_dir} holds an index that citesearch eval did not build (version {manifest.version}); "
                f"pass an empty folder or an earlier eval folder with --index-dir"
            )
        changed = why_rebuild(manifest, fingerprint, embedder, settings)
        if changed is None:
            return PreparedIndex(
                index_dir,
                manifest.version,
                reused=True,
                reason=f"reused {manifest.version}: corpus, model, chunker and BM25 settings unchanged",
            )
        reason = changed
    options = settings.build_options(show_progress=show_progress, record={EVAL_MARKER: dataset_name})
    report = apply_changes(
        index_dir, embedder, upserts=list(documents), replace_all=True, options=options, skipped=list(skipped)
    )
    build = {
        name: getattr(report, name)
        for name in (
            "documents",
            "added",
            "changed",
            "unchanged",
            "removed",
            "passages",
            "passages_embedded",
            "passages_from_cache",
            "window_splits",
        )
    }
    build["seconds"] = {name: round(value, 3) for name, value in report.seconds.items()}
    return PreparedIndex(
        index_dir,
        report.version,
        reused=False,
        reason=f"built {report.version}: {reason}",
        build_seconds=report.seconds.get("total"),
        build=build,
    )


# -- the run -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BeirRun:
    report: EvalReport
    prepared: PreparedIndex
    rankings: dict[str, list[str]]  # query id -> document ids, best first (for error analysis)


def default_index_dir(settings: Settings, dataset: BeirDataset) -> Path:
    return Path(settings.eval_dir) / dataset.name


def run_beir(
    dataset: BeirDataset,
    embedder: Embedder,
    settings: Settings,
    *,
    index_dir: Path | None = None,
    mode: str | None = None,
    limit: int | None = None,
    show_progress: bool = False,
    log: Any = None,
    baseline: str | None = None,
    ignore_identical_ids: bool = True,
    recency: bool = False,
    collapse_duplicates: bool = False,
) -> BeirRun:
    """Index (or reuse) the dataset's corpus, search every query of the split and score the rankings.

    ``mode=None`` uses ``SearchRequest``'s default mode. ``limit`` keeps the first N queries (a quick look, not a
    comparable figure). ``log`` is a text stream for progress lines (stderr by default). ``baseline`` (one of
    ``eval.plain.BASELINES``) ranks whole documents by the plain recipe instead of citesearch's search.
    ``ignore_identical_ids`` drops a ranked document whose id equals the query id, as BEIR's evaluation does
    (ArguAna and Quora queries are themselves corpus documents); recorded in the report. ``recency`` turns the
    recency prior on with each query's own date (``query_dates``) as ``as_of``; ``collapse_duplicates`` turns the
    search's duplicate collapsing on (off by default: qrels judge documents, and a collapsed copy of a judged
    document would hide it; like for like with the plain baseline and published figures).
    """
    if recency and not dataset.query_dates:
        raise ValueError(f"--recency needs query dates (metadata.question_date) in {dataset.root / QUERIES_FILE}")
    index_dir = Path(index_dir) if index_dir is not None else default_index_dir(settings, dataset)
    if baseline is not None:
        return _run_plain(dataset, embedder, index_dir, baseline, limit, ignore_identical_ids, log)
    from indexer.loaders import load_documents

    stream = log if log is not None else sys.stderr
    started = time.perf_counter()
    loaded = load_documents([dataset.corpus_path])
    for skipped in loaded.skipped:
        print(f"skipped {skipped.source}: {skipped.reason}", file=stream)
    print(
        f"loaded {len(loaded.documents)} documents from {dataset.corpus_path} in {time.perf_counter() - started:.1f}s",
        file=stream,
    )
    prepared = prepare_index(
        index_dir,
        dataset.name,
        loaded.documents,
        embedder,
        settings,
        skipped=loaded.skipped,
        show_progress=show_progress,
    )
    print(f"index {index_dir}: {prepared.reason}", file=stream)

    query_ids = list(dataset.queries)
    if limit is not None:
        query_ids = query_ids[:limit]
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    with open_index(index_dir) as reader, _eval_store(settings, index_dir, dataset.name) as store:
        check_model_matches(store, embedder)
        # The configured fusion, which is also what a fresh build records for the service: a reused index then
        # still follows CITESEARCH_FUSION_* (tuning fusion must not need a rebuild).
        searcher = Searcher(store, embedder, settings.fusion_settings())
        # One search before timing: the first call pays one-off costs (thread pools, lazy loads) no user sees twice.
        search_documents(searcher, "warm-up query", depth=DEPTH, mode=mode)
        undated = 0
        used_mode = ""
        # One more than the depth, so that dropping the query's own document still leaves DEPTH documents.
        depth = DEPTH + 1 if ignore_identical_ids else DEPTH
        for query_id in tqdm(query_ids, desc="queries", unit="q", file=sys.stderr, disable=not show_progress):
            options: dict[str, object] = {"collapse_duplicates": collapse_duplicates}
            if recency:
                as_of = dataset.query_dates.get(query_id)
                undated += as_of is None
                options.update(recency=as_of is not None, as_of=as_of)
            found = search_documents(
                searcher, dataset.queries[query_id], depth=depth, mode=mode, request_options=options
            )
            rankings[query_id] = _without_identical(
                [doc.doc_id for doc in found.documents], query_id, ignore_identical_ids
            )
            latencies.append(found.latency_ms)
            used_mode = found.mode
        manifest = reader.manifest
        settings_used = {
            "store": settings.store,
            "model": manifest.model.name,
            "embed_backend": settings.embed_backend,
            "chunker": manifest.chunker,
            "keyword": _keyword_recorded(manifest),
            "fusion": searcher.fusion.to_dict(),
            "fusion_recorded_in_index": manifest.extra.get("fusion"),
            "mode": used_mode,
            "mode_requested": mode,
            "k": DEPTH,
            "per_doc_cap": 1,
            "ranking_rule": BEST_PASSAGE_RULE,
            "ignore_identical_ids": ignore_identical_ids,
            "recency": recency,
            "collapse_duplicates": collapse_duplicates,
        }
        index_info = IndexInfo(
            index_dir=str(index_dir),
            version=manifest.version,
            documents=int(manifest.counts.get("documents", 0)),
            passages=int(manifest.counts.get("passages", 0)),
            reused=prepared.reused,
            build_seconds=prepared.build_seconds,
        )

    qrels = {query_id: dataset.qrels[query_id] for query_id in query_ids}
    scored = evaluate_rankings(qrels, rankings, BEIR_METRICS)
    notes = []
    if limit is not None and limit < len(dataset.queries):
        notes.append(f"--limit {limit}: only the first {len(query_ids)} of {len(dataset.queries)} queries")
    if dataset.queries_without_text:
        notes.append(f"{dataset.queries_without_text} judged queries have no text in {QUERIES_FILE}; skipped")
    if scored.queries_without_relevant:
        notes.append(f"{scored.queries_without_relevant} queries have no relevant document; not scored")
    if loaded.skipped:
        notes.append(f"{len(loaded.skipped)} corpus lines could not be loaded and were skipped")
    notes += _unreachable_notes(qrels, [document.doc_id for document in loaded.documents])
    if prepared.build:
        settings_used["build"] = prepared.build
    if recency:
        notes.append(f"recency prior on, as_of = each query's date ({undated} queries without one: prior off)")
    report = EvalReport(
        kind="beir",
        dataset=dataset.name,
        split=dataset.split,
        mode=used_mode,
        metrics=scored.metrics,
        per_query=scored.per_query,
        latency_ms=LatencySummary.of(latencies),
        queries=scored.queries,
        index=index_info,
        settings=settings_used,
        notes=notes,
    )
    return BeirRun(report=report, prepared=prepared, rankings=rankings)


def unreachable_relevant(qrels: Mapping[str, Mapping[str, int]], corpus_ids: Collection[str]) -> list[str]:
    """Judged-relevant documents (grade above 0) that are not in the corpus as loaded, sorted. No ranking can find
    them, yet each counts in its query's ideal ranking, as in BEIR: a corpus line that failed to load, or qrels that
    belong to another version of the corpus, lower every figure without any fault of the ranking."""
    return sorted(
        {doc_id for judged in qrels.values() for doc_id, grade in judged.items() if grade > 0} - set(corpus_ids)
    )


def _unreachable_notes(qrels: Mapping[str, Mapping[str, int]], corpus_ids: Collection[str]) -> list[str]:
    missing = unreachable_relevant(qrels, corpus_ids)
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    return [
        f"{len(missing)} judged-relevant {'document is' if len(missing) == 1 else 'documents are'} not in the corpus "
        f"as loaded ({shown}): no ranking can find them, and they still count against every metric, as in BEIR"
    ]


def _without_identical(ranking: list[str], query_id: str, ignore: bool) -> list[str]:
    """BEIR's ``ignore_identical_ids``: a query that is itself a corpus document must not be credited (or blamed)
    for finding itself; the ranking is cut to ``DEPTH`` either way."""
    if ignore:
        ranking = [doc_id for doc_id in ranking if doc_id != query_id]
    return ranking[:DEPTH]


def _run_plain(
    dataset: BeirDataset,
    embedder: Embedder,
    index_dir: Path,
    baseline: str,
    limit: int | None,
    ignore_identical_ids: bool,
    log: Any,
) -> BeirRun:
    """The plain recipe (``eval.plain``) on the same queries, qrels and metrics as citesearch's run."""
    from eval.plain import BASELINES, PLAIN_RULE, load_plain_corpus

    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    stream = log if log is not None else sys.stderr
    started = time.perf_counter()
    corpus = load_plain_corpus(dataset.corpus_path, embedder, index_dir / "plain")
    prepared_seconds = time.perf_counter() - started
    print(f"plain baseline over {len(corpus.doc_ids)} whole documents ready in {prepared_seconds:.1f}s", file=stream)
    query_ids = list(dataset.queries)[:limit] if limit is not None else list(dataset.queries)
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    for query_id in query_ids:
        t0 = time.perf_counter()
        query = dataset.queries[query_id]
        ranked = corpus.rank(query, embedder.encode([query]), baseline, DEPTH + 1)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t0) * 1000)
        rankings[query_id] = _without_identical(ranked, query_id, ignore_identical_ids)
    qrels = {query_id: dataset.qrels[query_id] for query_id in query_ids}
    scored = evaluate_rankings(qrels, rankings, BEIR_METRICS)
    notes = [f"baseline {baseline}: {PLAIN_RULE}"]
    if limit is not None and limit < len(dataset.queries):
        notes.append(f"--limit {limit}: only the first {len(query_ids)} of {len(dataset.queries)} queries")
    notes += _unreachable_notes(qrels, corpus.doc_ids)
    report = EvalReport(
        kind="beir",
        dataset=dataset.name,
        split=dataset.split,
        mode=baseline,
        metrics=scored.metrics,
        per_query=scored.per_query,
        latency_ms=LatencySummary.of(latencies),
        queries=scored.queries,
        index=IndexInfo(str(index_dir / "plain"), "plain", len(corpus.doc_ids), 0),
        settings={
            "model": embedder.name,
            "baseline": baseline,
            "ranking_rule": PLAIN_RULE,
            "k": DEPTH,
            "ignore_identical_ids": ignore_identical_ids,
        },
        notes=notes,
    )
    prepared = PreparedIndex(index_dir / "plain", "plain", reused=True, reason="plain baseline (no passage index)")
    return BeirRun(report=report, prepared=prepared, rankings=rankings)


@contextmanager
def _eval_store(settings: Settings, index_dir: Path, dataset: str) -> Iterator[SearchStore]:
    """The store the evaluation searches: the local index, or (CITESEARCH_STORE=milvus) its copy in Milvus under
    a prefix of its own per dataset, so evaluating never replaces the index a service serves."""
    if settings.store == "milvus":
        suffix = re.sub(r"[^A-Za-z0-9_]", "_", dataset)[:40]
        settings = settings.model_copy(
            update={"milvus_collection_prefix": f"{settings.milvus_collection_prefix}_eval_{suffix}"}
        )
    with open_store(settings, index_dir, sync_from_local=True) as store:
        yield store
