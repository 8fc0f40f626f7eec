"""Backends by name: the vector-store and embedder registries, and the settings that build from them."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import index_store.vectors as vectors
from citesearch.settings import Settings
from indexer import embedder as embedder_module
from indexer.embedder import EMBEDDERS, EmbedBackend, EmbedderError, create_embedder
from tests.fakes import HashingEmbedder


class RegisteredEmbedder(HashingEmbedder):
    """What a registered embedder class looks like to the registry: built as ``Class(model, backend=name)``."""

    def __init__(self, model: str, *, backend: str) -> None:
        super().__init__(name=model)
        self.backend = backend


def test_every_configurable_embed_backend_is_registered() -> None:
    assert set(get_args(EmbedBackend)) == set(EMBEDDERS)


def test_an_embedder_is_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDERS, "hashing", "tests.test_registries:RegisteredEmbedder")
    made = create_embedder("hashing", "some-model")
    assert isinstance(made, RegisteredEmbedder) and (made.name, made.backend) == ("some-model", "hashing")
    with pytest.raises(EmbedderError, match="unknown embedding backend 'nope'; choose one of torch"):
        create_embedder("nope")


def test_settings_build_the_embedder_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDERS, "onnx", "tests.test_registries:RegisteredEmbedder")
    made = Settings(embed_backend="onnx", model="m", _env_file=None).load_embedder()
    assert isinstance(made, RegisteredEmbedder) and made.name == "m"
    assert embedder_module.EMBEDDERS["torch"] == "indexer.embedder:SentenceTransformerEmbedder"


def test_build_options_come_from_the_settings() -> None:
    settings = Settings(chunk_target_tokens=100, embed_batch_size=8, bm25_k1=1.1, fusion_method="rrf", _env_file=None)
    options = settings.build_options(lock_timeout=2.0, record={"eval_dataset": "scifact"})
    assert options.chunker.target_tokens == 100 and options.batch_size == 8 and options.lock_timeout == 2.0
    assert options.keyword is not None and options.keyword.k1 == 1.1
    assert options.record == {"fusion": settings.fusion_settings().to_dict(), "eval_dataset": "scifact"}
    assert options.record["fusion"]["method"] == "rrf"  # type: ignore[index]


def test_a_vector_backend_is_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend registered under a new name is written, recorded and loaded like the built-in ones."""
    monkeypatch.setitem(
        vectors.REGISTRY, "flat-copy", vectors.Backend("index_store.vectors.faiss_backend:FaissVectorIndex")
    )
    rng = np.random.default_rng(0)
    data = rng.standard_normal((50, 8)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = vectors.create_vector_index("auto", 8)
    index.add(np.arange(50, dtype=np.int64), data)
    backend, files = vectors.save_vector_index(index, tmp_path, "flat-copy")
    assert backend == "flat-copy" and [f.name for f in files] == ["vectors.faiss"]
    loaded = vectors.load_vector_index("flat-copy", tmp_path)
    assert loaded.search(data[7:8], 1).ids[0, 0] == 7
    with pytest.raises(ValueError, match="unknown vector backend 'nope'; available: faiss"):
        vectors.load_vector_index("nope", tmp_path)
