"""ONNX Runtime inference for a sentence-transformers model: fp32, or int8 by dynamic quantization.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, whose releases pin ``transformers<4.58``, so
it cannot be installed next to the transformers 5 that citesearch uses. This module does the same job with only
``onnxruntime`` and ``onnx``:

* export: the whole sentence-transformers pipeline after tokenisation (transformer, pooling, normalisation) is
  traced once with ``torch.onnx.export`` from the model folder already on disk (no network), into a cache folder
  we control (``CITESEARCH_ONNX_CACHE``, default ``~/.cache/citesearch/onnx``), one sub-folder per model weights
  hash. The int8 file is made from the fp32 one by ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
  activations quantised per call at run time). Later starts find the files and skip both steps.
* inference: the model's own tokenizer (``SentenceTransformer.preprocess``, so truncation and special tokens are
  exactly as with torch), then an ONNX Runtime session; rows are L2-normalised again in float32.

The vectors live in the same space as the torch ones (fp32: cosine > 0.9999, int8: > 0.98 per text), so an index
keeps its model name whatever backend built it; the manifest records the backend (see ``SentenceTransformerEmbedder``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "pip install onnxruntime onnx (core dependencies of citesearch: reinstall it)"
ONNX_BACKENDS = ("onnx", "onnx-int8")
CACHE_ENV = "CITESEARCH_ONNX_CACHE"
OPSET = 17
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
# The same model up to the transformer's output, before pooling: one vector per token (late interaction, MaxSim).
SENTENCE_OUTPUT = "sentence_embedding"
TOKENS_OUTPUT = "token_embeddings"
_FILES = {SENTENCE_OUTPUT: (FP32_FILE, INT8_FILE), TOKENS_OUTPUT: ("tokens.onnx", "tokens_int8.onnx")}
INFO_FILE = "export.json"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


class OnnxBackendError(Exception):
    """The ONNX backend cannot be used; the message says what to install or fix."""


def _require_onnx() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxBackendError(f"the onnx embedding backends need onnxruntime and onnx: {INSTALL_HINT}") from exc
    return onnxruntime


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The folder exported models go to: the argument, else ``CITESEARCH_ONNX_CACHE``, else ``citesearch/onnx`` in
    the user's cache folder (``XDG_CACHE_HOME``, default ``~/.cache``). Not relative to the working directory: a
    server or CLI started from another folder would export the model all over again."""
    if cache_dir is not None:
        return Path(cache_dir)
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "citesearch" / "onnx"


def model_fingerprint(model_dir: Path) -> str:
    """Hash of the files that shape the model's output (weights, configs, tokenizer): a new model, a new export."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if rel.startswith(".") or path.suffix in (".md", ".onnx") or "/onnx/" in f"/{rel}":
            continue
        digest.update(rel.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_cache_dir(model_dir: Path, cache_dir: Path | str | None = None) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_dir.name) or "model"
    return cache_root(cache_dir) / f"{name}-{model_fingerprint(model_dir)}"


def _export_fp32(st_model: Any, target: Path, output: str = SENTENCE_OUTPUT) -> None:
    """Trace ``st_model`` (tokenised input -> normalised sentence embedding, or the token vectors before pooling)
    into ``target``."""
    import torch

    class _Pipeline(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(features)[output]

    transformer = st_model[0].auto_model
    previous = getattr(transformer.config, "_attn_implementation", None)
    # Eager attention traces into plain matmuls with the padding mask as an input (sdpa's mask shortcuts are
    # decided in Python and would be frozen by the trace).
    transformer.config._attn_implementation = "eager"
    # Dummy batch with padding, so the traced graph applies the attention mask rather than a constant.
    dummy = _preprocess(st_model, ["an example sentence to trace the model with", "short"])
    args = tuple(torch.as_tensor(dummy[name]) for name in _INPUTS)
    wrapper = _Pipeline(st_model).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    axes[output] = {0: "batch", 1: "tokens"} if output == TOKENS_OUTPUT else {0: "batch"}
    try:
        # The tracer's warnings are about Python branches and index ops that the parity tests cover; not user news.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                args,
                str(target),
                input_names=list(_INPUTS),
                output_names=[output],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
    finally:
        if previous is not None:
            transformer.config._attn_implementation = previous


def _preprocess(st_model: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Tokenise like ``SentenceTransformer.encode`` does; numpy int64 arrays for the three model inputs."""
    features = st_model.preprocess(list(texts)) if hasattr(st_model, "preprocess") else st_model.tokenize(list(texts))
    ids = features["input_ids"]
    out = {"input_ids": np.asarray(ids.cpu().numpy() if hasattr(ids, "cpu") else ids, dtype=np.int64)}
    for name in ("attention_mask", "token_type_ids"):
        value = features.get(name)
        if value is None:
            value = np.ones_like(out["input_ids"]) if name == "attention_mask" else np.zeros_like(out["input_ids"])
        out[name] = np.asarray(value.cpu().numpy() if hasattr(value, "cpu") else value, dtype=np.int64)
    return out


def ensure_exported(
    st_model: Any,
    model_dir: Path,
    *,
    quantized: bool,
    cache_dir: Path | str | None = None,
    output: str = SENTENCE_OUTPUT,
) -> Path:
    """Path of the ONNX file for this model (int8 or fp32; its sentence vectors or its token vectors), exporting it
    into the cache folder first if needed."""
    _require_onnx()
    folder = model_cache_dir(model_dir, cache_dir)
    fp32_name, int8_name = _FILES[output]
    fp32, int8 = folder / fp32_name, folder / int8_name
    wanted = int8 if quantized else fp32
    if wanted.is_file():
        return wanted
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OnnxBackendError(
            f"cannot create the ONNX cache folder {folder} ({exc.strerror or exc}); set {CACHE_ENV} to a writable "
            "folder"
        ) from None
    log.info("exporting %s to ONNX%s once, into %s", model_dir, " int8" if quantized else "", folder)
    # Write into a temporary folder beside the target, then rename: a crash never leaves a half-written model
    # that a later start would load, and two processes exporting at once both end with a complete file.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        tmp_dir = Path(tmp)
        if not fp32.is_file():
            try:
                _export_fp32(st_model, tmp_dir / fp32_name, output)
            except Exception as exc:
                raise OnnxBackendError(f"cannot export {model_dir} to ONNX ({type(exc).__name__}: {exc})") from exc
            os.replace(tmp_dir / fp32_name, fp32)
        if quantized:
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError as exc:
                raise OnnxBackendError(f"int8 quantization needs onnx and onnxruntime: {INSTALL_HINT}") from exc
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing tip on the root logger
            try:
                quantize_dynamic(str(fp32), str(tmp_dir / int8_name), weight_type=QuantType.QInt8, per_channel=True)
            except Exception as exc:
                raise OnnxBackendError(f"cannot quantize {fp32} to int8 ({type(exc).__name__}: {exc})") from exc
            finally:
                root.setLevel(level)
            os.replace(tmp_dir / int8_name, int8)
    info = {"model_dir": str(model_dir), "opset": OPSET, "files": sorted(p.name for p in folder.glob("*.onnx"))}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return wanted


# fp32: calls of up to this many texts (one query, a micro-batch of concurrent queries) run on a one-thread
# session, bulk calls (indexing, the sentence warm-up) on one with every core. Measured on 2 cores, one SciFact claim
# per call: one thread 4.8 ms wall / 4.8 ms CPU, two spinning threads 3.1 ms wall / 6.1 ms CPU: the second thread
# buys 1.7 ms of latency for a third more CPU, which concurrent requests need more. Spinning is off everywhere: ORT's
# idle threads spin-wait, burning CPU that other requests could use (bulk throughput was the same or better without).
# int8: calls of up to this many texts run in the caller's thread, larger ones on a pool of workers.
SMALL_CALL = 32


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """Encodes texts with an exported model in ONNX Runtime; the tokenizer is the sentence-transformers one.

    int8 runs **one text per model call**. Dynamic quantization scales activations over the whole input tensor, so
    in a batch a text's vector would depend on its neighbours and their padding (up to 0.02 per coordinate, measured):
    a query micro-batched with others, or a passage embedded beside a different one, would get another vector. One
    text per call makes a vector a function of its text alone, and costs nothing: without padding, one-text calls
    used less CPU per passage than batches of 32 (31 vs 41 ms on SciFact passages). Bulk int8 calls spread the texts
    over one worker thread per core (ONNX Runtime releases the GIL), each on the shared one-thread session.
    """

    def __init__(
        self,
        st_model: Any,
        model_dir: Path,
        *,
        quantized: bool,
        cache_dir: Path | str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = ensure_exported(st_model, Path(model_dir), quantized=quantized, cache_dir=cache_dir)
        self._model_dir = Path(model_dir)
        self._cache_dir = cache_dir
        self._tokens: Any = None  # the token-vector session, exported and loaded on first use (encode_tokens)
        self._tokens_lock = threading.Lock()
        self.quantized = quantized
        self.workers = threads or _cores()
        self._st_model = st_model
        self._small = self._session(1)
        self._bulk = None if quantized else self._session(threads)
        self._inputs = [item.name for item in self._small.get_inputs()]

    @property
    def one_text_per_call(self) -> bool:
        """Whether texts are run one per model call (int8): then encoding concurrent queries together saves nothing
        and the service lets each request encode its own (``indexer.batching``, ``service.app``)."""
        return self.quantized

    def _session(self, threads: int | None, path: Path | None = None) -> Any:
        path = path or self.path
        ort = _require_onnx()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise OnnxBackendError(
                f"cannot load {path} ({type(exc).__name__}: {exc}); delete the folder {path.parent} to export it again"
            ) from exc

    def _run(self, session: Any, texts: Sequence[str]) -> np.ndarray:
        features = _preprocess(self._st_model, texts)
        (vectors,) = session.run(None, {name: features[name] for name in self._inputs})
        return np.asarray(vectors, dtype=np.float32)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="text")
        try:
            out = self._one_by_one(texts, bar) if self.quantized else self._batched(texts, batch_size, bar)
        finally:
            if bar is not None:
                bar.close()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token vectors (tokens x dim, unit rows, special tokens included): the transformer's output
        before pooling, from a second export of the same model. One text per call, fp32 and int8 alike, so there is
        no padding to trim and a text's vectors depend on it alone; spread over one worker per core."""
        with self._tokens_lock:
            if self._tokens is None:
                path = ensure_exported(
                    self._st_model,
                    self._model_dir,
                    quantized=self.quantized,
                    cache_dir=self._cache_dir,
                    output=TOKENS_OUTPUT,
                )
                self._tokens = self._session(1, path)
        session = self._tokens

        def encode_one(text: str) -> np.ndarray:
            vectors: np.ndarray = self._run(session, [text])[0]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
            return vectors

        if len(texts) <= 1 or self.workers <= 1:
            return [encode_one(t) for t in texts]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="citesearch-onnx") as pool:
            return list(pool.map(encode_one, texts))

    def _one_by_one(self, texts: Sequence[str], bar: Any) -> np.ndarray:
        first = self._run(self._small, texts[:1])
        out = np.empty((len(texts), first.shape[1]), dtype=np.float32)
        out[0] = first[0]
        if bar is not None:
            bar.update(1)

        stop = threading.Event()  # set when the caller gives up (an error, Ctrl-C): workers end after one text

        def encode_slice(rows: range) -> None:
            for row in rows:
                if stop.is_set():
                    return
                out[row] = self._run(self._small, texts[row : row + 1])[0]
                if bar is not None:
                    bar.update(1)

        rest = range(1, len(texts))
        workers = min(self.workers, len(rest))
        if workers <= 1 or len(texts) <= SMALL_CALL:  # a query or a few: the caller's thread, no pool to start
            encode_slice(rest)
            return out
        from concurrent.futures import ThreadPoolExecutor

        # Interleaved slices (every n-th text): a run of long texts is shared between the workers, not left to one.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="citesearch-onnx") as pool:
            try:
                for done in [pool.submit(encode_slice, rest[w::workers]) for w in range(workers)]:
                    done.result()
            finally:
                stop.set()
        return out

    def _batched(self, texts: Sequence[str], batch_size: int, bar: Any) -> np.ndarray:
        # Longest texts first, like sentence-transformers: batches of similar length pad less.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        session = self._small if len(texts) <= SMALL_CALL else self._bulk
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors = self._run(session, [texts[i] for i in rows])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            if bar is not None:
                bar.update(len(rows))
        assert out is not None
        return out
