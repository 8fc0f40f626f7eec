"""Term-frequency postings of one segment, scored with BM25 from collection statistics supplied from outside.

bm25s stores *precomputed* scores (idf x tf part), which bake in one index's N, document frequencies and average
length; a segment of a larger view needs the statistics of the whole view's live passages instead. So a segment keeps
what BM25 is computed from — per term the positions holding it and their term frequencies (a CSC matrix), each
position's length, the vocabulary of analysed terms — and the view supplies N, df and avgdl per query.

The analysis is bm25s's own ``Tokenizer`` (with the Snowball stemmer and stopword list of ``KeywordSettings``), so
terms and lengths are exactly what ``index_store.keyword.KeywordIndex`` indexes, including bm25s's empty token ``""``
for a text with no indexed word (length 1) and for a query none of whose words is known. The arithmetic follows
bm25s's ``method="lucene"`` step by step (idf = ln(1 + (N - df + 0.5) / (df + 0.5)) rounded to float32, tf part
tf / (k1 (1 - b + b dl / avgdl) + tf) in float64, their product rounded to float32, summed per query token in query
order, duplicates counted twice), so the scores equal bm25s's to the last bit or two (tests/test_segments.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from index_store.keyword import KeywordSettings

EMPTY_TERM = ""  # bm25s's token for a text without indexed words


def tokenizer_for(settings: KeywordSettings) -> Tokenizer:
    """The analysis ``KeywordIndex`` uses (same stemmer, same stopwords)."""
    stemmer = Stemmer.Stemmer(settings.stemmer) if settings.stemmer else None
    return Tokenizer(stopwords=settings.stopwords or [], stemmer=stemmer)


class QueryAnalyzer:
    """A query's analysed terms, as bm25s's ``streaming_tokenize(update_vocab=False)`` finds them: lower-cased words
    of the splitter, stopwords dropped, stemmed. Whether a term is *known* is decided by the caller (a term no live
    passage holds is unknown), because bm25s replaces an all-unknown query by the empty token."""

    def __init__(self, settings: KeywordSettings) -> None:
        self._tokenizer = tokenizer_for(settings)
        self._stopwords = set(self._tokenizer.stopwords or [])
        self._stems: dict[str, str] = {}  # bounded by the vocabulary of the queries seen; words are short

    def terms(self, query: str) -> list[str]:
        tokenizer = self._tokenizer
        text = query.lower() if tokenizer.lower else query
        words = list(tokenizer.splitter(text))
        if not words:
            return [EMPTY_TERM]
        terms = []
        for word in words:
            if word in self._stopwords:
                continue
            if tokenizer.stemmer is None:
                terms.append(word)
                continue
            stem = self._stems.get(word)
            if stem is None:
                if len(self._stems) > 100_000:
                    self._stems.clear()
                stem = self._stems[word] = tokenizer.stemmer(word)
            terms.append(stem)
        return terms


@dataclass(frozen=True, slots=True)
class Postings:
    """BM25 inputs of ``len(lengths)`` texts (positions 0..n-1): term ``t`` occurs at ``docs[indptr[t]:indptr[t+1]]``
    (ascending) with frequencies ``tf[...]``; ``terms[t]`` is its analysed form."""

    terms: tuple[str, ...]
    indptr: np.ndarray  # int64 (terms + 1)
    docs: np.ndarray  # int32 positions
    tf: np.ndarray  # float32 term frequencies
    lengths: np.ndarray  # float32 number of tokens of each position (bm25s's doc length)
    lookup: dict[str, int]  # term -> term id

    FILES = ("terms.json", "indptr.npy", "docs.npy", "tf.npy", "lengths.npy")

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def empty(cls) -> Postings:
        return cls.from_arrays((), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0))

    @classmethod
    def from_arrays(
        cls, terms: Sequence[str], indptr: np.ndarray, docs: np.ndarray, tf: np.ndarray, lengths: np.ndarray
    ) -> Postings:
        terms = tuple(terms)
        return cls(
            terms,
            np.asarray(indptr, dtype=np.int64),
            np.asarray(docs, dtype=np.int32),
            np.asarray(tf, dtype=np.float32),
            np.asarray(lengths, dtype=np.float32),
            {term: i for i, term in enumerate(terms)},
        )

    @classmethod
    def build(cls, texts: Sequence[str], settings: KeywordSettings) -> Postings:
        """Analyse ``texts`` (from ``KeywordIndex.text_for``) exactly as ``KeywordIndex`` does."""
        if not texts:
            return cls.empty()
        tokenizer = tokenizer_for(settings)
        tokenized = tokenizer.tokenize(list(texts), update_vocab=True, return_as="tuple", show_progress=False)
        vocab: dict[str, int] = tokenized.vocab
        terms = [""] * len(vocab)
        for term, tid in vocab.items():
            terms[tid] = term
        counts = np.fromiter((len(ids) for ids in tokenized.ids), dtype=np.int64, count=len(texts))
        flat = np.fromiter((t for ids in tokenized.ids for t in ids), dtype=np.int64, count=int(counts.sum()))
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        return cls._from_pairs(terms, owner, flat, np.ones(len(flat), np.float32), counts.astype(np.float32))

    @classmethod
    def _from_pairs(
        cls, terms: Sequence[str], docs: np.ndarray, term_ids: np.ndarray, counts: np.ndarray, lengths: np.ndarray
    ) -> Postings:
        """From (position, term id, count) triples, duplicates summed."""
        n_terms = len(terms)
        key = term_ids.astype(np.int64) * max(1, len(lengths)) + docs.astype(np.int64)
        unique, inverse = np.unique(key, return_inverse=True)
        tf = np.zeros(len(unique), dtype=np.float64)
        np.add.at(tf, inverse, counts)
        term_of = unique // max(1, len(lengths))
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=n_terms), out=indptr[1:])
        return cls.from_arrays(terms, indptr, unique % max(1, len(lengths)), tf, lengths)

    # -- storage -------------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "terms.json").write_text(json.dumps(list(self.terms), ensure_ascii=False), encoding="utf-8")
        for name in ("indptr", "docs", "tf", "lengths"):
            np.save(folder / f"{name}.npy", getattr(self, name))
        return [folder / name for name in self.FILES]

    @classmethod
    def load(cls, folder: Path) -> Postings:
        terms = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        # memory-mapped, but as plain ndarray views: slicing or reading an element of an np.memmap makes a new
        # memmap object each time, which costs more than the arithmetic on a small segment's postings
        arrays = [
            np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r")) for name in ("indptr", "docs", "tf", "lengths")
        ]
        return cls.from_arrays(terms, *arrays)

    # -- statistics and scoring ----------------------------------------------------------------------------------
    def live_df(self, term_id: int, deleted: np.ndarray | None) -> int:
        """Live positions holding the term (``deleted``: bool per position, or None)."""
        start, end = int(self.indptr[term_id]), int(self.indptr[term_id + 1])
        if deleted is None:
            return end - start
        return end - start - int(np.count_nonzero(deleted[self.docs[start:end]]))


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """What BM25 needs of the whole collection: live passage count and total length (``avgdl = total / n``)."""

    n: int
    total_length: float

    @property
    def avgdl(self) -> float:
        return self.total_length / self.n if self.n else 1.0


def lucene_idf(df: int, n: int) -> np.float32:
    """bm25s's lucene idf, rounded to float32 as its idf array is."""
    return np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5)))


def score_segments(
    query_terms: Sequence[str],
    postings: Sequence[Postings],
    deleted: Sequence[np.ndarray | None],
    offsets: Sequence[int | np.ndarray],
    total: int,
    stats: CollectionStats,
    k1: float,
    b: float,
) -> np.ndarray:
    """BM25 of every position of the concatenated segments (``offsets[i]`` is where segment i starts, or an int64
    array of the output position of each of its positions: a pool of segments), with the document frequencies of
    the live positions of all of them; deleted positions score 0."""
    out = np.zeros(total, dtype=np.float32)
    if stats.n == 0:
        return out
    per_term: dict[str, tuple[int, list[tuple[int, int]]]] = {}  # term -> (live df, [(segment, term id)])
    for term in dict.fromkeys(query_terms):
        df, where = 0, []
        for s, segment in enumerate(postings):
            tid = segment.lookup.get(term)
            if tid is not None:
                df += segment.live_df(tid, deleted[s])
                where.append((s, tid))
        per_term[term] = (df, where)
    known = [term for term in query_terms if per_term[term][0] > 0]
    if not known:
        # bm25s scores an all-unknown query as the empty token (texts with no indexed word), when there are any
        if EMPTY_TERM not in per_term:
            df, where = 0, []
            for s, segment in enumerate(postings):
                tid = segment.lookup.get(EMPTY_TERM)
                if tid is not None:
                    df += segment.live_df(tid, deleted[s])
                    where.append((s, tid))
            per_term[EMPTY_TERM] = (df, where)
        known = [EMPTY_TERM] if per_term[EMPTY_TERM][0] > 0 else []
    for term in known:
        df, where = per_term[term]
        idf = np.float64(lucene_idf(df, stats.n))
        # one vectorised pass per query token over the postings of every segment (a small segment costs a slice,
        # not a round of numpy calls)
        docs, tf, lengths = [], [], []
        for s, tid in where:
            segment = postings[s]
            start, end = int(segment.indptr[tid]), int(segment.indptr[tid + 1])
            local = segment.docs[start:end]
            where_to = offsets[s]
            docs.append(where_to[local] if isinstance(where_to, np.ndarray) else local.astype(np.int64) + where_to)
            tf.append(segment.tf[start:end])
            lengths.append(segment.lengths[local])
        if len(docs) == 1:
            all_docs, all_tf, all_lengths = docs[0], tf[0], lengths[0]
        else:
            all_docs, all_tf, all_lengths = np.concatenate(docs), np.concatenate(tf), np.concatenate(lengths)
        # bm25s: tf (float32) / (k1 * ((1 - b) + b * l_d / l_avg) + tf) evaluated in float64, times the float32
        # idf, stored as float32
        tfc = all_tf / (k1 * ((1 - b) + b * all_lengths.astype(np.float64) / stats.avgdl) + all_tf)
        out[all_docs] += (idf * tfc).astype(np.float32)
    for s, mask in enumerate(deleted):
        if mask is None:
            continue
        where_to = offsets[s]
        if isinstance(where_to, np.ndarray):
            out[where_to[mask]] = 0.0
        else:
            out[where_to : where_to + len(postings[s])][mask] = 0.0
    return out


def merge_postings(sources: Sequence[tuple[Postings, np.ndarray]]) -> Postings:
    """One ``Postings`` of the kept positions of several, in order (``keep``: bool per position of each source): the
    union vocabulary, positions renumbered, nothing re-tokenised — exact, since a text's terms and length do not
    depend on the other texts."""
    terms: list[str] = []
    lookup: dict[str, int] = {}
    term_chunks, doc_chunks, tf_chunks, length_chunks = [], [], [], []
    offset = 0
    for postings, kept_positions in sources:
        keep = np.asarray(kept_positions, dtype=bool)
        remap_terms = np.empty(len(postings.terms), dtype=np.int64)
        for i, term in enumerate(postings.terms):
            tid = lookup.get(term)
            if tid is None:
                tid = lookup[term] = len(terms)
                terms.append(term)
            remap_terms[i] = tid
        new_position = np.cumsum(keep, dtype=np.int64) - 1 + offset
        docs = np.asarray(postings.docs)
        term_of = np.repeat(np.arange(len(postings.terms), dtype=np.int64), np.diff(np.asarray(postings.indptr)))
        kept = keep[docs] if len(docs) else np.zeros(0, bool)
        term_chunks.append(remap_terms[term_of[kept]])
        doc_chunks.append(new_position[docs[kept]])
        tf_chunks.append(np.asarray(postings.tf)[kept])
        length_chunks.append(np.asarray(postings.lengths)[keep])
        offset += int(np.count_nonzero(keep))
    if not terms:
        lengths = np.concatenate(length_chunks) if length_chunks else np.zeros(0, np.float32)
        return Postings.from_arrays((), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), lengths)
    term_ids = np.concatenate(term_chunks)
    # stable: within a term, sources come in order and each source's positions ascend, so (term, position) sorts
    order = np.argsort(term_ids, kind="stable")
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_ids, minlength=len(terms)), out=indptr[1:])
    return Postings.from_arrays(
        terms,
        indptr,
        np.concatenate(doc_chunks)[order],
        np.concatenate(tf_chunks)[order],
        np.concatenate(length_chunks),
    )
