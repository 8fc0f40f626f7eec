"""indexer: documents in, cited passages and a published index version out.

The public API is small: load documents, build or update an index, and the embedders.
"""

from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import SECTIONS, Document, Passage, Section, Unit
from indexer.embedder import DEFAULT_MODEL, Embedder, EmbedderError, SentenceTransformerEmbedder
from indexer.errors import IngestError
from indexer.loaders import LoadResult, Skipped, load_documents
from indexer.pipeline import BuildOptions, BuildReport, apply_changes, build_index

__all__ = [
    "DEFAULT_MODEL",
    "SECTIONS",
    "BuildOptions",
    "BuildReport",
    "Chunker",
    "ChunkerSettings",
    "Document",
    "Embedder",
    "EmbedderError",
    "IngestError",
    "LoadResult",
    "Passage",
    "Section",
    "SentenceTransformerEmbedder",
    "Skipped",
    "Unit",
    "apply_changes",
    "build_index",
    "load_documents",
]
