"""All configuration in one place: environment variables prefixed ``CITESEARCH_`` (or a ``.env`` file).

The CLI, the service and the evaluation scripts read the same class, so an index built with one configuration is
searched with the same model and chunking everywhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from citesearch.fusion import FusionSettings
from index_store.keyword import KeywordSettings
from indexer.chunker import ChunkerSettings
from indexer.embedder import DEFAULT_MODEL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITESEARCH_", env_file=".env", extra="ignore")

    # Index and model
    index_dir: Path = Field(Path("var/index"), description="Folder holding the versioned index")
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name or local folder")
    embed_backend: str = Field("torch", description="sentence-transformers backend: torch or onnx")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    chunk_target_tokens: int = Field(160, ge=8, le=4096)
    chunk_overlap_tokens: int = Field(32, ge=0, le=4095)
    title_in_embedding: bool = True

    # Hybrid retrieval (chosen on SciFact train; see README "Retrieval quality")
    bm25_k1: float = Field(1.2, ge=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    fusion_method: str = Field("convex", description="convex (weighted min-max scores) or rrf")
    fusion_dense_weight: float = Field(0.5, ge=0, le=1)
    fusion_candidates: int = Field(100, ge=1, le=10000, description="Depth of each ranking before fusing")

    # Search
    default_k: int = Field(10, ge=1)
    max_k: int = Field(100, ge=1)
    max_offset: int = Field(1000, ge=0)
    max_query_chars: int = Field(1000, ge=1)
    per_doc_cap: int | None = Field(None, ge=1, description="At most this many passages of one document in top k")

    # Service
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    reload_interval_seconds: float = Field(2.0, gt=0, description="How often the service checks for a new version")

    def keyword_settings(self) -> KeywordSettings:
        return KeywordSettings(k1=self.bm25_k1, b=self.bm25_b)

    def fusion_settings(self) -> FusionSettings:
        return FusionSettings(
            method=self.fusion_method,  # type: ignore[arg-type]  # validated by FusionSettings
            dense_weight=self.fusion_dense_weight,
            candidates=self.fusion_candidates,
        )

    def chunker_settings(self) -> ChunkerSettings:
        return ChunkerSettings(
            target_tokens=self.chunk_target_tokens,
            overlap_tokens=self.chunk_overlap_tokens,
            title_in_embedding=self.title_in_embedding,
        )
