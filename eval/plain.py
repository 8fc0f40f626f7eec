"""The plain recipe, as a baseline that ``citesearch eval beir --baseline`` runs on any BEIR dataset.

Whole documents, no passages: BM25 (bm25s with its defaults, k1 1.5, b 0.75, Lucene variant, Snowball English
stemmer, English stopwords) over ``title + " " + text``, the model's embedding of the same text (truncated by the
model at its window, 256 word pieces for all-MiniLM-L6-v2), and their min-max normalised convex 0.5/0.5
combination over every document. That is what the issue's "plain hybrid" column measures, and what citesearch's
hybrid has to beat: keeping it a command means the comparison is re-run, never quoted.

The document vectors are computed once per corpus and model and kept beside the dataset's eval index
(``<index_dir>/plain/``), so a re-run costs the queries only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from citesearch.fusion import min_max
from eval.jsonl import read_objects
from indexer.embedder import Embedder

Baseline = Literal["plain-hybrid", "plain-bm25", "plain-dense"]
BASELINES: tuple[str, ...] = get_args(Baseline)
CACHE_DIR = "plain"
PLAIN_RULE = (
    "whole documents (title + ' ' + text): bm25s defaults (k1 1.5, b 0.75, lucene, english stemmer and stopwords) "
    "and the model's embedding truncated at its window; plain-hybrid = 0.5 min-max(dense) + 0.5 min-max(bm25) over "
    "all documents"
)


@dataclass(frozen=True, slots=True)
class PlainCorpus:
    """Whole-document BM25 and vectors of one corpus."""

    doc_ids: list[str]
    vectors: np.ndarray  # (documents, dim), L2-normalised
    retriever: bm25s.BM25
    tokenizer: Tokenizer

    def scores(self, query: str, query_vector: np.ndarray, baseline: Baseline) -> np.ndarray:
        dense: np.ndarray = self.vectors @ query_vector[0]
        if baseline == "plain-dense":
            return dense
        token_ids = next(iter(self.tokenizer.streaming_tokenize([query], update_vocab=False)))
        bm25 = (
            np.asarray(self.retriever.get_scores_from_ids(token_ids), dtype=np.float64)
            if token_ids
            else np.zeros(len(self.doc_ids))
        )
        if baseline == "plain-bm25":
            return bm25
        return 0.5 * min_max(dense) + 0.5 * min_max(bm25)

    def rank(self, query: str, query_vector: np.ndarray, baseline: Baseline, depth: int) -> list[str]:
        scores = self.scores(query, query_vector, baseline)
        order = np.argsort(-scores, kind="stable")[:depth]
        return [self.doc_ids[i] for i in order]


def _corpus_texts(corpus_path: Path) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for _, item in read_objects(corpus_path):
        doc_id = str(item.get("_id", item.get("id", "")))
        title, text = item.get("title") or "", item.get("text") or ""
        joined = f"{title} {text}".strip() if isinstance(title, str) and isinstance(text, str) else ""
        if doc_id in seen:  # the index loader keeps the first; so does the baseline
            continue
        seen[doc_id] = len(ids)
        ids.append(doc_id)
        texts.append(joined)
    return ids, texts


def load_plain_corpus(corpus_path: Path, embedder: Embedder, cache_dir: Path) -> PlainCorpus:
    """BM25 is rebuilt each time (seconds); the vectors are cached per corpus file content and model."""
    doc_ids, texts = _corpus_texts(corpus_path)
    digest = hashlib.sha256()
    digest.update(embedder.name.encode())
    for doc_id, text in zip(doc_ids, texts, strict=True):
        digest.update(f"{doc_id}\t{text}\n".encode())
    key = digest.hexdigest()[:16]
    vectors_path = cache_dir / f"vectors-{key}.npy"
    if vectors_path.is_file():
        vectors = np.load(vectors_path)
    else:
        vectors = embedder.encode(texts, batch_size=32).astype(np.float32)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = vectors_path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(vectors_path)  # a killed run leaves no half-written cache behind
        (cache_dir / "about.json").write_text(json.dumps({"rule": PLAIN_RULE, "vectors": vectors_path.name}))
    tokenizer = Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english"))
    retriever = bm25s.BM25()  # the library's defaults: k1 1.5, b 0.75, lucene
    tokens = tokenizer.tokenize(texts, update_vocab=True, return_as="tuple", show_progress=False)
    retriever.index(tokens, show_progress=False)
    return PlainCorpus(doc_ids, vectors, retriever, tokenizer)
