"""The ONNX Runtime backends (indexer/onnx_backend.py): same vectors as torch, exported once into our cache folder.

onnx-int8 is the default backend, so the session's ``real_embedder`` is one; the reference here is torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import onnx_backend
from indexer.embedder import DEFAULT_MODEL, EmbedderError, SentenceTransformerEmbedder, resolve_model_path

pytestmark = pytest.mark.model  # every test here loads the bundled model (torch and its ONNX exports)

TEXTS = [
    "Vitamin D supplementation reduces the risk of fractures in elderly women.",
    "How do I reset my password?",
    "The mitochondrial membrane potential drops before apoptosis in cultured neurons, measured by TMRM imaging "
    "over 48 hours; the effect is blocked by cyclosporin A but not by FK506, which points to the permeability "
    "transition pore rather than calcineurin signalling." * 3,  # longer than the window: truncated like torch
    "a",
    "Ünïcödé, émojis 🙂 and   irregular\twhitespace.",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return Path(resolve_model_path(DEFAULT_MODEL))


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend="torch")


@pytest.fixture(scope="module")
def encoders(
    torch_embedder: SentenceTransformerEmbedder, model_dir: Path, onnx_cache: Path
) -> dict[str, onnx_backend.OnnxEncoder]:
    """fp32 and int8 encoders on the torch model; the first use exports both into ``onnx_cache``."""
    model = torch_embedder._model
    return {
        "onnx": onnx_backend.OnnxEncoder(model, model_dir, quantized=False, cache_dir=onnx_cache),
        "onnx-int8": onnx_backend.OnnxEncoder(model, model_dir, quantized=True, cache_dir=onnx_cache),
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize(("backend", "bound"), [("onnx", 0.999), ("onnx-int8", 0.98)])
def test_onnx_vectors_match_torch(
    torch_embedder: SentenceTransformerEmbedder,
    encoders: dict[str, onnx_backend.OnnxEncoder],
    backend: str,
    bound: float,
) -> None:
    expected = torch_embedder.encode(TEXTS)
    got = encoders[backend].encode(TEXTS, batch_size=2)  # several batches, padded differently than torch's
    assert got.dtype == np.float32 and got.shape == expected.shape and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(got, expected)
    assert cosines.min() > bound, f"{backend}: per-text cosine with torch {cosines.round(5).tolist()}"


@pytest.mark.parametrize(("backend", "bound"), [("onnx", 0.999), ("onnx-int8", 0.97)])
def test_onnx_token_vectors_match_torch_token_by_token(
    torch_embedder: SentenceTransformerEmbedder,
    encoders: dict[str, onnx_backend.OnnxEncoder],
    onnx_cache: Path,
    model_dir: Path,
    backend: str,
    bound: float,
) -> None:
    """The second export (the transformer's output before pooling) gives torch's token vectors, one row per token."""
    expected = torch_embedder.encode_tokens(TEXTS)
    got = encoders[backend].encode_tokens(TEXTS)
    assert len(got) == len(TEXTS)
    for text, vectors, reference in zip(TEXTS, got, expected, strict=True):
        assert vectors.shape == reference.shape, text  # no padding rows: one text per call
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert _cosines(vectors, reference).min() > bound, f"{backend}: {text!r}"
    # Their mean points where the sentence vector does: the same model, up to its pooling layer (which averages
    # the raw rows, not the unit ones, hence the looser bound)
    pooled = np.stack([v.mean(axis=0) for v in got])
    assert _cosines(pooled, encoders[backend].encode(TEXTS)).min() > 0.95
    folder = onnx_backend.model_cache_dir(model_dir, onnx_cache)
    assert (folder / ("tokens_int8.onnx" if backend == "onnx-int8" else "tokens.onnx")).is_file()
    assert encoders[backend].encode_tokens([]) == []


def test_batching_does_not_change_vectors(encoders: dict[str, onnx_backend.OnnxEncoder]) -> None:
    one_by_one = np.vstack([encoders["onnx"].encode([text]) for text in TEXTS])
    batched = encoders["onnx"].encode(TEXTS, batch_size=32)
    assert _cosines(one_by_one, batched).min() > 0.99999


def test_exports_land_in_the_cache_folder_and_are_reused(
    real_embedder: SentenceTransformerEmbedder,
    encoders: dict[str, onnx_backend.OnnxEncoder],
    model_dir: Path,
    onnx_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = onnx_backend.model_cache_dir(model_dir, onnx_cache)
    assert folder.parent == onnx_cache
    assert encoders["onnx"].path == folder / onnx_backend.FP32_FILE
    assert encoders["onnx-int8"].path == folder / onnx_backend.INT8_FILE
    # int8 weights: about a quarter of fp32
    assert encoders["onnx-int8"].path.stat().st_size < 0.5 * encoders["onnx"].path.stat().st_size
    assert not any(model_dir.rglob("*.onnx")), "nothing may be written into the installed model package"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(onnx_backend, "_export_fp32", no_export)
    import onnxruntime.quantization

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", no_export)
    again = onnx_backend.OnnxEncoder(real_embedder._model, model_dir, quantized=True, cache_dir=onnx_cache)
    assert again.path == encoders["onnx-int8"].path
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} == stamps
    assert not list(folder.glob(".export-*")), "temporary export folders are removed"


def test_cache_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(onnx_backend.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    # The user's cache, not the working directory: a server started elsewhere must find the same export.
    assert onnx_backend.cache_root() == Path.home() / ".cache" / "citesearch" / "onnx"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_backend.cache_root() == tmp_path / "xdg" / "citesearch" / "onnx"
    monkeypatch.setenv(onnx_backend.CACHE_ENV, str(tmp_path))
    assert onnx_backend.cache_root() == tmp_path
    assert onnx_backend.cache_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_embedder_backend_setting_uses_the_cache(
    onnx_cache: Path, encoders: dict[str, onnx_backend.OnnxEncoder], torch_embedder: SentenceTransformerEmbedder
) -> None:
    embedder = SentenceTransformerEmbedder(backend="onnx-int8", onnx_cache_dir=onnx_cache)
    assert (embedder.name, embedder.dim, embedder.max_tokens) == (
        torch_embedder.name,
        torch_embedder.dim,
        torch_embedder.max_tokens,
    )
    assert embedder.backend == "onnx-int8"
    assert _cosines(embedder.encode(TEXTS[:2]), torch_embedder.encode(TEXTS[:2])).min() > 0.98
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_int8_is_the_default_backend(real_embedder: SentenceTransformerEmbedder) -> None:
    from citesearch.settings import Settings

    assert Settings(_env_file=None).embed_backend == "onnx-int8"
    assert real_embedder.backend == "onnx-int8"


def test_fp32_small_calls_run_on_one_thread_and_bulk_calls_on_all(
    encoders: dict[str, onnx_backend.OnnxEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = encoders["onnx"]
    used: list[str] = []
    for name in ("_small", "_bulk"):
        session = getattr(encoder, name)

        class _Recording:
            def __init__(self, inner: object, label: str) -> None:
                self.inner, self.label = inner, label

            def run(self, *args: object) -> object:
                used.append(self.label)
                return self.inner.run(*args)  # type: ignore[attr-defined]

        monkeypatch.setattr(encoder, name, _Recording(session, name))
    small = encoder.encode(TEXTS[:1])
    assert used == ["_small"]
    bulk = encoder.encode(TEXTS[:1] * (onnx_backend.SMALL_CALL + 1), batch_size=64)
    assert used == ["_small", "_bulk"]
    assert _cosines(small, bulk[:1]).min() > 0.99999  # the thread count does not change the vector


def test_int8_vectors_depend_on_the_text_alone(encoders: dict[str, onnx_backend.OnnxEncoder]) -> None:
    """Dynamic quantization scales activations over the whole input: batched, a text's vector would change with its
    neighbours. int8 runs one text per call, so alone, among others, or in a bulk call spread over worker threads,
    a text gets exactly the same vector."""
    int8 = encoders["onnx-int8"]
    assert int8.one_text_per_call and not encoders["onnx"].one_text_per_call
    alone = np.vstack([int8.encode([text]) for text in TEXTS])
    together = int8.encode(TEXTS, batch_size=32)
    np.testing.assert_array_equal(together, alone)
    bulk_texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(onnx_backend.SMALL_CALL * 2 + 3)]
    bulk = int8.encode(bulk_texts)  # more than SMALL_CALL: the worker pool
    np.testing.assert_array_equal(bulk, np.vstack([int8.encode([t]) for t in bulk_texts]))


def test_an_unwritable_cache_folder_is_one_clear_error(tmp_path: Path, model_dir: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(onnx_backend.OnnxBackendError, match=f"set {onnx_backend.CACHE_ENV} to a writable folder"):
        onnx_backend.ensure_exported(object(), model_dir, quantized=True, cache_dir=blocker)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(EmbedderError, match="unknown embedding backend 'openvino'"):
        SentenceTransformerEmbedder(backend="openvino")


def test_missing_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(onnx_backend.OnnxBackendError, match="pip install onnxruntime onnx"):
        onnx_backend.ensure_exported(object(), tmp_path, quantized=False, cache_dir=tmp_path)


def test_settings_accept_the_three_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from citesearch.settings import Settings

    for backend in ("torch", "onnx", "onnx-int8"):
        monkeypatch.setenv("CITESEARCH_EMBED_BACKEND", backend)
        assert Settings().embed_backend == backend
    monkeypatch.setenv("CITESEARCH_EMBED_BACKEND", "int8")
    with pytest.raises(ValidationError):
        Settings()


def test_a_failing_bulk_call_stops_its_workers_at_once(
    encoders: dict[str, onnx_backend.OnnxEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in one worker (or Ctrl-C in the caller) ends the call after at most one more text per worker,
    not after each worker's whole share."""
    int8 = encoders["onnx-int8"]
    real_run = int8._run
    calls = 0

    def failing_run(session, texts):
        nonlocal calls
        calls += 1
        if texts[0].startswith("boom"):
            raise RuntimeError("model failed")
        return real_run(session, texts)

    monkeypatch.setattr(int8, "_run", failing_run)
    texts = ["fine"] + ["boom"] + [f"text {i}" for i in range(400)]
    with pytest.raises(RuntimeError, match="model failed"):
        int8.encode(texts)
    assert calls < 50, calls  # far fewer than the 402 texts
