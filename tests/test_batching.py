"""Micro-batching of concurrent query encodes: same vectors as one-by-one, fewer model calls under concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from indexer.batching import MicroBatchingEmbedder
from tests.fakes import HashingEmbedder


class SlowCountingEmbedder(HashingEmbedder):
    """A fake model whose every call takes a while, so concurrent callers pile up behind the leader."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(0.05)
        return super().encode(texts, batch_size=batch_size)


def _concurrently(embedder: MicroBatchingEmbedder, queries: list[str]) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    barrier = threading.Barrier(len(queries))

    def run(query: str) -> None:
        barrier.wait()
        results[query] = embedder.encode([query])

    threads = [threading.Thread(target=run, args=(q,)) for q in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_concurrent_queries_share_model_calls_and_get_their_own_vectors() -> None:
    inner = SlowCountingEmbedder()
    batching = MicroBatchingEmbedder(inner)
    queries = [f"question number {i}" for i in range(16)]
    results = _concurrently(batching, queries)
    reference = HashingEmbedder()
    for query in queries:
        np.testing.assert_allclose(results[query], reference.encode([query]), rtol=1e-6)
    assert sum(inner.calls) == 16 and len(inner.calls) < 16  # batched: fewer calls than queries
    assert batching.batched_queries == 16


def test_a_lone_query_and_bulk_calls_go_straight_through() -> None:
    inner = SlowCountingEmbedder()
    batching = MicroBatchingEmbedder(inner)
    batching.encode(["one"])
    batching.encode(["a", "b", "c"])
    assert inner.calls == [1, 3]
    assert (batching.name, batching.dim) == (inner.name, inner.dim)


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_call_works() -> None:
    class Failing(SlowCountingEmbedder):
        def encode(self, texts, *, batch_size=32, show_progress=False):
            if any("boom" in t for t in texts):
                raise RuntimeError("model failed")
            return super().encode(texts, batch_size=batch_size)

    batching = MicroBatchingEmbedder(Failing())
    with pytest.raises(RuntimeError, match="model failed"):
        batching.encode(["boom"])
    assert batching.encode(["fine"]).shape == (1, batching.dim)


def test_real_model_batched_vectors_equal_single_encodes(real_embedder) -> None:
    batching = MicroBatchingEmbedder(real_embedder)
    queries = ["what conditions did Aliyev set?", "Lavrov visit Yerevan", "Was ist das?", "readers on the CSTO"]
    results = _concurrently(batching, queries)
    for query in queries:
        np.testing.assert_allclose(results[query], real_embedder.encode([query]), atol=1e-5)


class _BatchableModel:
    """The real model presented as one that gains from shared calls (as torch and fp32 ONNX do)."""

    one_text_per_call = False

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.max_tokens = inner, inner.name, inner.dim, inner.max_tokens

    def encode(self, texts, *, batch_size=32, show_progress=False):
        return self.inner.encode(texts, batch_size=batch_size)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)


def test_the_service_micro_batches_queries_only_for_models_that_gain_from_it(seed_index, real_embedder) -> None:
    """int8 encodes one text per call, so queueing requests behind one leader would only serialise them: the
    service lets each request encode its own query there, and coalesces them for the other backends."""
    from fastapi.testclient import TestClient

    from citesearch.settings import Settings
    from service.app import create_app

    settings = Settings(index_dir=seed_index[0], sentence_warmup=False, _env_file=None)
    assert settings.query_batching and real_embedder.one_text_per_call
    for model, batched in ((real_embedder, False), (_BatchableModel(real_embedder), True)):
        with TestClient(create_app(settings, embedder=model)) as client:
            assert client.get("/search", params={"q": "what conditions did Aliyev set?"}).status_code == 200
            services = client.app.state.services  # type: ignore[attr-defined]
            assert isinstance(services.holder.embedder, MicroBatchingEmbedder) is batched
