"""Token vectors kept at index time, for the late-interaction rerank (``citesearch.late_interaction``).

A passage's token vectors are the model's contextual output before pooling (unit rows, one per wordpiece). Kept
whole they would cost 1.5 KB a token in float32; projected onto a 64-dimensional PCA basis and stored as int8 codes
with one float scale per token they cost 68 bytes a token, about 8 KB a SciFact passage. On SciFact train the rerank
on them gives nDCG@10 0.7512 against 0.7564 on exact token vectors and 0.7482 without it (docs/retrieval.md, "Stored
token vectors").

The basis (``TokenProjection``: the tokens' top principal directions) is fitted once, on the first write
that stores token vectors, and every later write and merge of the index reuses it, as IVF centroids are reused
(``index_store.centroids``): codes of different segments then live in one space and a merge copies them as they
are. Each segment that holds codes also holds the basis (``tokens/projection.npy``, 100 KB), so a segment is
self-contained and nothing outside the segments has to be named, checksummed or pruned.

Scoring against the codes: query and passage tokens are both projected onto the basis and scaled back to unit
length, and MaxSim is taken between those. Renormalising matters: the basis keeps about 55% of the tokens' variance
(MiniLM on SciFact), so plain projected inner products shrink the strongest matches most — two identical tokens score
well under 1 — while on the unit sphere of the basis they still score 1. Over the rerank's candidates this MaxSim
correlates 0.86 with exact MaxSim, against 0.78 for the plain projection (60 best passages of 30 SciFact queries).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOKEN_DIMS = 64
TOKENS_DIR = "tokens"
PROJECTION_FILE = "projection.npy"  # (dims, dim) float32: the principal directions
CODES_FILE = "codes.npy"  # (tokens, dims) int8
SCALES_FILE = "scales.npy"  # (tokens,) float32: code x scale = the coordinate of the unit projected token
STARTS_FILE = "starts.npy"  # (passages + 1,) int64: passage i's tokens are rows starts[i]:starts[i + 1]
# The basis is fitted on the first this many token vectors of the write that fits it (all of them when it brings
# fewer), held as float32 until then (150 MB at 384 dims).
FIT_SAMPLE = 100_000
# ... and on at least this many (about 130 SciFact passages): a basis fitted on a handful of documents spans little
# of what later ones say (fitted on news, MaxSim on SciFact correlates 0.73 with exact MaxSim, against 0.86 fitted on
# SciFact), so an index keeps no token codes until a write brings this many tokens.
FIT_MIN_TOKENS = 20_000
# The manifest's ``extra`` key saying why a write that wanted token codes kept none (too few tokens for a basis)
TOKENS_WAITING = "token_vectors_waiting"


def dequantized(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Token rows back from their int8 codes and per-token scales (float32)."""
    rows: np.ndarray = np.asarray(codes, dtype=np.float32) * np.asarray(scales, dtype=np.float32)[:, None]
    return rows


@dataclass(frozen=True, slots=True)
class TokenProjection:
    """The fixed PCA basis that token vectors are stored in."""

    components: np.ndarray  # (dims, dim) float32, orthonormal rows, by decreasing variance

    @classmethod
    def fit(cls, tokens: np.ndarray, dims: int = TOKEN_DIMS, seed: int = 0) -> TokenProjection:
        """The top ``dims`` principal directions of ``tokens`` (rows), from their second moment, uncentred, as
        the tokens are projected (cheap for 384-d rows however many there are); on a sample of ``FIT_SAMPLE`` rows
        when given more."""
        rows = np.asarray(tokens, dtype=np.float32)
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError("fitting a token projection needs at least one token vector")
        if dims > rows.shape[1]:
            raise ValueError(f"cannot project {rows.shape[1]}-d token vectors onto {dims} dimensions")
        if len(rows) > FIT_SAMPLE:
            rows = rows[np.random.default_rng(seed).choice(len(rows), FIT_SAMPLE, replace=False)]
        wide = rows.astype(np.float64)
        _, vectors = np.linalg.eigh(wide.T @ wide)  # ascending eigenvalues
        components = vectors[:, ::-1][:, :dims].T
        return cls(np.ascontiguousarray(components, dtype=np.float32))

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def fingerprint(self) -> str:
        """Names the basis: segments whose codes share it can be scored and merged together."""
        return hashlib.sha256(self.to_array().tobytes()).hexdigest()[:16]

    def to_array(self) -> np.ndarray:
        return np.ascontiguousarray(self.components, dtype=np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray) -> TokenProjection:
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or len(array) < 1:
            raise ValueError(f"a token projection is (dims, dim), got {array.shape}")
        return cls(array.copy())

    def project(self, tokens: np.ndarray) -> np.ndarray:
        """Token vectors in the basis, each scaled to unit length (a token orthogonal to it stays 0)."""
        projected: np.ndarray = np.asarray(tokens, dtype=np.float32) @ self.components.T
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        np.divide(projected, norms, out=projected, where=norms > 0)
        return projected

    def codes(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One passage's token vectors as int8 codes and their per-token scales."""
        projected = self.project(tokens)
        scales = np.abs(projected).max(axis=1) / 127.0
        scales[scales == 0] = 1.0  # a token orthogonal to the basis: all codes 0, any scale
        codes = np.rint(projected / scales[:, None]).astype(np.int8)
        return codes, scales.astype(np.float32)

    def codes_to_rows(self, tokens: np.ndarray) -> np.ndarray:
        """Token vectors as the store would give them back: projected, through the int8 codes, so that a passage
        encoded at query time scores on the same footing as stored ones."""
        return dequantized(*self.codes(tokens))


@dataclass(frozen=True, slots=True)
class TokenCodes:
    """The int8 token codes of a segment's passages, by position."""

    codes: np.ndarray  # (tokens, dims) int8
    scales: np.ndarray  # (tokens,) float32
    starts: np.ndarray  # (passages + 1,) int64

    @classmethod
    def of(cls, per_passage: Sequence[tuple[np.ndarray, np.ndarray]], dims: int) -> TokenCodes:
        """Codes in position order from each passage's (codes, scales); a passage without codes (none rows) is
        one the rerank encodes from its text."""
        lengths = [len(codes) for codes, _ in per_passage]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        codes = np.concatenate([c for c, _ in per_passage]) if per_passage else np.zeros((0, dims), np.int8)
        scales = np.concatenate([s for _, s in per_passage]) if per_passage else np.zeros(0, np.float32)
        return cls(codes.astype(np.int8, copy=False), scales.astype(np.float32, copy=False), starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def rows(self, position: int) -> np.ndarray:
        """One passage's projected token vectors (tokens x dims, float32; no rows: it has no codes)."""
        start, end = int(self.starts[position]), int(self.starts[position + 1])
        return dequantized(self.codes[start:end], self.scales[start:end])

    def save(self, folder: Path, projection: TokenProjection) -> None:
        target = folder / TOKENS_DIR
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / PROJECTION_FILE, projection.to_array())
        np.save(target / CODES_FILE, self.codes)
        np.save(target / SCALES_FILE, self.scales)
        np.save(target / STARTS_FILE, self.starts)


MERGE_BLOCK = 20_000  # passages whose codes a merge copies at a time: memory stays bounded for big segments


def write_merged_codes(
    folder: Path, projection: TokenProjection, sources: Sequence[tuple[TokenCodes | None, np.ndarray]]
) -> None:
    """The token codes of a merged segment: for each source in order, the codes of the positions its ``keep``
    (bool) marks, renumbered; a source given as None (no codes in ``projection``) contributes passages without
    codes. Copied block by block into memory-mapped files, so a merge of big segments never holds their codes."""
    target = folder / TOKENS_DIR
    target.mkdir(parents=True, exist_ok=True)
    lengths: list[np.ndarray] = [
        np.diff(np.asarray(codes.starts))[np.flatnonzero(keep)].astype(np.int64)
        if codes is not None
        else np.zeros(int(keep.sum()), np.int64)
        for codes, keep in sources
    ]
    starts = np.concatenate([[0], np.cumsum(np.concatenate(lengths) if lengths else [])]).astype(np.int64)
    total = int(starts[-1])
    out_codes = np.lib.format.open_memmap(target / CODES_FILE, mode="w+", dtype=np.int8, shape=(total, projection.dims))
    out_scales = np.lib.format.open_memmap(target / SCALES_FILE, mode="w+", dtype=np.float32, shape=(total,))
    row = 0
    for (codes, keep), kept_lengths in zip(sources, lengths, strict=True):
        if codes is None:
            continue
        positions = np.flatnonzero(keep)
        old_starts = np.asarray(codes.starts)
        for block in range(0, len(positions), MERGE_BLOCK):
            chosen, sizes = positions[block : block + MERGE_BLOCK], kept_lengths[block : block + MERGE_BLOCK]
            # each kept passage's rows, in order: its old start plus 0 .. its length - 1
            firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            rows = np.repeat(old_starts[chosen] - firsts, sizes) + np.arange(int(sizes.sum()))
            out_codes[row : row + len(rows)] = np.asarray(codes.codes)[rows]
            out_scales[row : row + len(rows)] = np.asarray(codes.scales)[rows]
            row += len(rows)
    out_codes.flush()
    out_scales.flush()
    del out_codes, out_scales
    np.save(target / STARTS_FILE, starts)
    np.save(target / PROJECTION_FILE, projection.to_array())


def load_tokens(folder: Path, passages: int) -> tuple[TokenProjection, TokenCodes] | None:
    """A segment's basis and codes (memory-mapped), or None for a segment without token vectors. ValueError when
    the files do not fit together or the segment's ``passages``."""
    target = folder / TOKENS_DIR
    if not (target / CODES_FILE).is_file():
        return None
    projection = TokenProjection.from_array(np.load(target / PROJECTION_FILE))
    codes = np.asarray(np.load(target / CODES_FILE, mmap_mode="r"))
    scales = np.asarray(np.load(target / SCALES_FILE, mmap_mode="r"))
    starts = np.load(target / STARTS_FILE)
    if (
        len(starts) != passages + 1
        or codes.ndim != 2
        or codes.shape[1] != projection.dims
        or len(scales) != len(codes)
        or (len(starts) and int(starts[-1]) != len(codes))
    ):
        raise ValueError(f"token vector files of {len(starts) - 1} passages do not fit a segment of {passages}")
    return projection, TokenCodes(codes, scales, starts)


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """What a store keeps of some passages' token vectors: the basis, and each passage's projected rows (None for
    a passage of a segment without codes: the rerank encodes that one from its text)."""

    projection: TokenProjection
    rows: list[np.ndarray | None]


TokenEncoder = Callable[[Sequence[str]], list[np.ndarray]]


def encode_token_codes(
    encode: TokenEncoder,
    texts: Sequence[str],
    projection: TokenProjection | None,
    *,
    slice_size: int = 256,
    fit_min_tokens: int = FIT_MIN_TOKENS,
    progress: Callable[[int], None] | None = None,
) -> tuple[TokenProjection | None, list[tuple[np.ndarray, np.ndarray]]]:
    """Each text's token codes, encoded slice by slice so that only codes are held (float token vectors of a big
    write would not fit in memory). Without a ``projection`` one is fitted once the first ``fit_min_tokens``
    tokens are in; a write that brings fewer gets none and no codes: (None, []). ``progress(done)`` after each
    slice."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    pending: list[np.ndarray] = []  # float token vectors held until a basis is fitted on them
    held = 0
    for start in range(0, len(texts), slice_size):
        tokens = encode(list(texts[start : start + slice_size]))
        if projection is None:
            pending.extend(tokens)
            held += sum(len(t) for t in tokens)
            if held >= FIT_SAMPLE:
                projection = TokenProjection.fit(np.concatenate(pending))
                tokens, pending = pending, []
        if projection is not None:
            out.extend(projection.codes(t) for t in tokens)
        if progress is not None:
            progress(min(start + slice_size, len(texts)))
    if projection is None and held >= fit_min_tokens:  # the whole write, fewer tokens than a full sample
        projection = TokenProjection.fit(np.concatenate(pending))
        out = [projection.codes(t) for t in pending]
    if projection is None:
        return None, []
    return projection, out
