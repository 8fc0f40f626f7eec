"""All configuration in one place: environment variables prefixed ``CITESEARCH_`` (or a ``.env`` file).

The CLI, the service and the evaluation scripts read the same class, so an index built with one configuration is
searched with the same model and chunking everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from citesearch.fusion import WEIGHT_NAMES, FusionMethod, FusionProfile, FusionSettings, Normalization
from index_store.keyword import KeywordSettings
from indexer.chunker import ChunkerSettings
from indexer.embedder import DEFAULT_BACKEND, DEFAULT_MODEL, EmbedBackend

if TYPE_CHECKING:
    from index_store.milvus_store import MilvusConfig
    from indexer.embedder import Embedder
    from indexer.pipeline import BuildOptions


# The settings that are the five convex fusion weights (``fusion_settings``: setting one means "custom").
FUSION_WEIGHT_FIELDS = tuple(f"fusion_{name}" for name in WEIGHT_NAMES)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITESEARCH_", env_file=".env", extra="ignore")

    # Index and model
    index_dir: Path = Field(Path("var/index"), description="Folder holding the versioned index")
    store: Literal["local", "milvus"] = Field(
        "local",
        description="Where the index is served from: local (FAISS + SQLite files in CITESEARCH_INDEX_DIR) or milvus "
        "(collections in CITESEARCH_MILVUS_URI; `citesearch index` still builds in CITESEARCH_INDEX_DIR, then "
        "copies the version into Milvus; docs/milvus.md). milvus needs `pip install citesearch[milvus]`",
    )
    milvus_uri: str = Field(
        "",
        description="Milvus to use with CITESEARCH_STORE=milvus: a path ending in .db (Milvus Lite, in-process, one "
        "process per folder) or http://host:19530 (a Standalone or Distributed server); empty: "
        "CITESEARCH_INDEX_DIR/milvus.db",
    )
    milvus_token: SecretStr = Field(
        SecretStr(""), description="Milvus token (user:password or an API key); empty: none"
    )
    milvus_collection_prefix: str = Field(
        "citesearch", description="Prefix of the Milvus collections and of the alias {prefix}_current"
    )
    milvus_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Strong",
        description="Milvus consistency level of every read: Strong (a write acknowledged by any replica is seen by "
        "the next search everywhere), Bounded (reads may lag writes by a few seconds), Session (a client sees its own "
        "writes), Eventually (no guarantee); see docs/milvus.md",
    )
    milvus_write_batch: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Rows per Milvus insert call when a version is published (with `index --ray` and a Milvus "
        "server: per Ray actor call; docs/ray.md)",
    )
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name or local folder")
    embed_backend: EmbedBackend = Field(
        DEFAULT_BACKEND,
        description="onnx-int8 (ONNX Runtime, int8 dynamic quantization; the default), onnx (ONNX Runtime, fp32) or "
        "torch (sentence-transformers on PyTorch); the onnx ones export the model once, offline, into "
        "CITESEARCH_ONNX_CACHE (default ~/.cache/citesearch/onnx). All three embed into the same vector space: an "
        "index built with one is searchable with another, and its manifest records the backend that built it",
    )
    embed_batch_size: int = Field(
        32, ge=1, le=1024, description="Encode batch size (torch and onnx; onnx-int8 runs one text per call)"
    )
    chunk_target_tokens: int = Field(160, ge=8, le=4096, description="Passage target size in cl100k tokens")
    chunk_overlap_tokens: int = Field(
        32, ge=0, le=4095, description="Whole-sentence overlap between passages of one part, in cl100k tokens"
    )
    title_in_embedding: bool = Field(
        True, description="Embed 'title, newline, passage' (quotes and citations stay the bare passage)"
    )

    # Distributed indexing on Ray (indexer/ray_indexing.py, docs/ray.md)
    ray_address: str = Field(
        "",
        description="`citesearch index` chunks and embeds on Ray: local (a private Ray on this machine, bound to "
        "loopback), HOST:PORT or ray://HOST[:PORT] (an existing cluster), auto (the cluster this machine belongs "
        "to); empty: the local path unless --ray is given",
    )
    ray_workers: int = Field(
        0, ge=0, le=4096, description="Model actors per Ray job; 0: one per CPU (local Ray: one per core here)"
    )
    ray_gpus_per_worker: float = Field(
        0.0,
        ge=0,
        le=8,
        description="GPU share each Ray embed actor asks for (0: CPU only); with the torch backend the model then "
        "runs on the GPU (vectors equal to the CPU ones only to about 1e-6)",
    )

    # Hybrid retrieval (chosen on news dev and SciFact train together; see docs/retrieval.md)
    bm25_k1: float = Field(0.9, ge=0, description="BM25 k1 of the passage-level keyword index")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 b of the passage-level keyword index")
    bm25_context: bool = Field(True, description="Also index each document part whole (the context signal)")
    bm25_context_k1: float = Field(1.5, ge=0, description="BM25 k1 of the part-level (context) index")
    bm25_context_b: float = Field(0.75, ge=0, le=1, description="BM25 b of the part-level (context) index")
    fusion_method: FusionMethod = Field("convex", description="convex (weighted normalised scores) or rrf")
    fusion_normalization: Normalization = Field("zscore", description="convex: zscore or minmax over the candidates")
    fusion_profile: FusionProfile = Field(
        "auto",
        description="Fusion weights: auto (short or long by the index's passages per document), short, long, or "
        "custom (the five weights below); setting any weight below makes the default custom",
    )
    fusion_dense_weight: float = Field(0.4, ge=0, le=1, description="Weight of the dense (cosine) score")
    fusion_bm25_weight: float = Field(0.1, ge=0, le=1, description="Weight of the passage's BM25 score")
    fusion_context_weight: float = Field(0.4, ge=0, le=1, description="Weight of the passage's part's BM25 score")
    fusion_lead_weight: float = Field(
        0.0, ge=0, le=1, description="Weight of the cosine of the passage's document's first passage (its lead)"
    )
    fusion_part_mean_weight: float = Field(
        0.2, ge=0, le=1, description="Weight of the cosine of the passage's part's mean passage vector"
    )
    recency_weight: float = Field(
        0.2, ge=0, le=1, description="Weight of the recency prior in hybrid mode, for requests that ask for it"
    )
    recency_half_life_days: float = Field(
        7.0, gt=0, description="Recency prior: a document's prior halves for every this many days before as_of"
    )
    fusion_candidates: int = Field(1000, ge=1, le=10000, description="Depth of each ranking before fusing")
    fusion_rerank_depth: int | None = Field(
        None,
        ge=0,
        le=200,
        description="Late interaction: rerank the passages of this many top documents by MaxSim over the model's "
        "token vectors (hybrid mode; 0: off). Unset: the profile's (short: 30, where the index keeps token vectors; "
        "long: off). Passages without stored token vectors are encoded per query, a model call each "
        "(docs/retrieval.md)",
    )
    fusion_rerank_weight: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Late interaction: weight of the MaxSim z-score added to the fused score. Unset: the "
        "profile's (short: 1.5)",
    )

    # Evaluation (eval/): where benchmark indexes are built (one folder per dataset) and reports are written
    eval_dir: Path = Field(Path("var/eval"), description="Folder holding one index per evaluated dataset")
    reports_dir: Path = Field(Path("reports"), description="Folder the evaluation reports (JSON) are written to")

    # Search
    default_k: int = Field(10, ge=1, description="/search results when k is not given")
    max_k: int = Field(100, ge=1, description="Largest k of /search")
    max_offset: int = Field(1000, ge=0, description="Largest offset of /search")
    max_query_chars: int = Field(1000, ge=1, description="Longest q (/search) or question (/ask)")
    per_doc_cap: int | None = Field(None, ge=1, description="At most this many passages of one document in top k")

    # Service
    host: str = Field("127.0.0.1", description="Interface `citesearch serve` listens on")
    port: int = Field(8000, ge=0, le=65535, description="Port `citesearch serve` listens on")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API: a JSON list or comma-separated"
    )
    reload_interval_seconds: float = Field(2.0, gt=0, description="How often the service checks for a new version")
    max_request_bytes: int = Field(65536, ge=1024, description="Largest accepted request body (413 beyond)")
    page_per_doc_cap: int | None = Field(
        2, ge=1, description="Per-document cap the search page asks for (the API default is per_doc_cap)"
    )

    # Access control and limits (service/security.py, service/limits.py; docs/operations.md).
    # The keys are secrets: SecretStr keeps them out of reprs, and service/security.py parses them (never pydantic,
    # whose validation errors would echo the value).
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="API keys: comma-separated name:scope:key (scope read or write; key plain or sha256:<64 hex>), or "
        'a JSON list of {"name", "scope", "key" or "sha256"}',
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one 'name scope key' per line (key plain or sha256:<64 hex>; # comments)"
    )
    require_read_key: bool = Field(False, description="Require a read (or write) key for /search, /ask, /documents")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Sustained /search + /ask requests per minute per client (API key name or IP); 0: off"
    )
    rate_limit_burst: int = Field(60, ge=1, description="Requests a client may make at once before the rate applies")
    request_timeout_seconds: float = Field(
        30.0, ge=0, description="Answer 503 when a request runs longer (its worker finishes in the background); 0: off"
    )
    max_batch_documents: int = Field(100, ge=1, description="Most documents one POST /documents may carry")
    max_document_chars: int = Field(
        2_000_000,
        ge=1,
        description="Longest document text (characters) indexed: POST /documents answers 413 above it, "
        "`citesearch index` skips the file naming the reason",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For / "
        "X-Forwarded-Proto are believed (e.g. 127.0.0.1,10.0.0.0/8; * for any); empty: proxy headers are ignored, "
        "so the client is always the connection's address",
    )
    header_timeout_seconds: float = Field(
        10.0,
        ge=0,
        description="Close a connection whose request line and headers are not complete this many seconds after it "
        "opened or after its previous response (slow clients, slowloris); 0: off",
    )
    workers: int = Field(1, ge=1, le=64, description="`citesearch serve` worker processes (see docs/reliability.md)")
    access_log: bool = Field(True, description="Log one JSON line per request (service/observability.py)")
    log_format: Literal["json", "text"] = Field("json", description="citesearch serve's log lines: json or text")

    # Answers and highlights (citesearch/answer.py); `citesearch eval threshold` measures the threshold on eval/data
    # (docs/evaluation.md, "Answer threshold")
    answer_min_score: float = Field(
        0.38,
        ge=-1.0,
        le=1.0,
        description="Best sentence cosine below which /ask answers null instead of quoting. Chosen recall-first by "
        "`citesearch eval threshold` on the seeds index: the lowest answerable question's best score (0.432, "
        "onnx-int8) minus a 0.05 margin, rounded down; tests/test_threshold.py fails when the calibration drifts "
        "from this value",
    )
    answer_passages: int = Field(5, ge=1, description="Top passages /ask draws sentences from by default")
    answer_max_passages: int = Field(20, ge=1, description="Largest k /ask accepts (each passage is embedded)")
    answer_max_sentences: int = Field(4, ge=1, le=20, description="Most sentences quoted in one answer")
    answer_margin: float = Field(
        0.12, ge=0.0, le=2.0, description="A sentence joins the answer if within this cosine of the best one"
    )
    highlight_max_sentences: int = Field(2, ge=1, le=10, description="Most sentences highlighted per passage")
    highlight_margin: float = Field(0.05, ge=0.0, le=2.0, description="Second highlight within this of the best")
    sentence_cache_size: int = Field(20000, ge=0, description="Sentence vectors kept in memory (0: no cache)")
    sentence_warmup: bool = Field(True, description="Embed all sentences of a loaded index ahead if they fit the cache")
    search_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="OpenMP threads per parallel region (FAISS searches, torch) in `citesearch serve` "
        "(0: the OpenMP default, one per core); 1 lets concurrent requests share the cores instead of idle OpenMP "
        "threads spin-waiting between searches. An OMP_NUM_THREADS in the environment wins",
    )
    query_batching: bool = Field(
        True,
        description="Encode the queries of concurrent requests in one model call (service; no added wait; "
        "not with onnx-int8, which encodes one text per call so that a vector depends on its text alone)",
    )
    highlight_encode_budget: int = Field(
        64, ge=0, description="Uncached sentences one /search may embed; later passages are highlighted by word overlap"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_cors_origins(cls, value: Any) -> Any:
        """``CITESEARCH_CORS_ORIGINS`` as a JSON list or comma-separated (``https://a.example,https://b.example``)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)  # not JSON: a ValueError, reported as a validation error of this field
        return [origin.strip() for origin in text.split(",") if origin.strip()]

    def milvus_config(self) -> MilvusConfig:
        """Where the Milvus store lives (imports pymilvus: only call it with CITESEARCH_STORE=milvus)."""
        from index_store.milvus_store import MilvusConfig

        return MilvusConfig(
            uri=self.milvus_uri or str(self.index_dir / "milvus.db"),
            token=self.milvus_token.get_secret_value(),
            prefix=self.milvus_collection_prefix,
            consistency=self.milvus_consistency,
        )

    def load_embedder(self) -> Embedder:
        """The configured embedder (model and backend), from the registry in indexer/embedder.py. The one place the
        CLI, the service and the evaluation commands build it."""
        from indexer.embedder import create_embedder

        return create_embedder(self.embed_backend, self.model)

    def build_options(
        self, *, show_progress: bool = False, lock_timeout: float = 0.0, record: Mapping[str, object] | None = None
    ) -> BuildOptions:
        """How an index is built and what its manifest records, the same for ``citesearch index``, the live-update
        writer and the evaluation indexes: chunking, batch size, BM25 and the query-time fusion settings (``record``
        adds more)."""
        from indexer.pipeline import BuildOptions

        return BuildOptions(
            chunker=self.chunker_settings(),
            batch_size=self.embed_batch_size,
            show_progress=show_progress,
            lock_timeout=lock_timeout,
            keyword=self.keyword_settings(),
            record={"fusion": self.fusion_settings().to_dict(), **(record or {})},
        )

    def keyword_settings(self) -> KeywordSettings:
        return KeywordSettings(
            k1=self.bm25_k1,
            b=self.bm25_b,
            context=self.bm25_context,
            context_k1=self.bm25_context_k1,
            context_b=self.bm25_context_b,
        )

    def fusion_settings(self) -> FusionSettings:
        # An operator who sets a weight means those weights, unless they also name a profile.
        weights_set = any(name in self.model_fields_set for name in FUSION_WEIGHT_FIELDS)
        profile = self.fusion_profile if "fusion_profile" in self.model_fields_set or not weights_set else "custom"
        return FusionSettings(
            profile=profile,
            method=self.fusion_method,
            normalization=self.fusion_normalization,
            dense_weight=self.fusion_dense_weight,
            bm25_weight=self.fusion_bm25_weight,
            context_weight=self.fusion_context_weight,
            lead_weight=self.fusion_lead_weight,
            part_mean_weight=self.fusion_part_mean_weight,
            recency_weight=self.recency_weight,
            recency_half_life_days=self.recency_half_life_days,
            candidates=self.fusion_candidates,
            rerank_depth=self.fusion_rerank_depth,
            rerank_weight=self.fusion_rerank_weight,
        )

    def chunker_settings(self) -> ChunkerSettings:
        return ChunkerSettings(
            target_tokens=self.chunk_target_tokens,
            overlap_tokens=self.chunk_overlap_tokens,
            title_in_embedding=self.title_in_embedding,
        )
