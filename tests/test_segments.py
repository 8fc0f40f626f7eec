"""Segments (index_store.segments): a view over several segments with deletions searches exactly like one fresh
segment of the same live documents; postings BM25 equals bm25s; a damaged segment file is named.

Ids differ between builds (the fresh build allocates its own), so results are compared by (doc_id, ordinal).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from citesearch.part_evidence import part_scores
from index_store.errors import IndexCorruptError
from index_store.keyword import KeywordIndex, KeywordSettings
from index_store.segments import NewDocument, Segment, SegmentedView
from index_store.vectors.base import VectorHits
from indexer.chunker import Chunker
from indexer.documents import Document
from indexer.loaders import load_documents
from tests.fakes import HashingEmbedder

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
DIM = 48
SETTINGS = KeywordSettings()
QUERIES = (
    "Lavrov Armenia security alliance",
    "the observation mission of the European Union",
    "transport routes and regional communications infrastructure",
    "xyzzy plugh",  # unknown words only: bm25s falls back to its empty token
    "a",  # no word of two letters: the empty token
    "peace peace treaty with Azerbaijan",  # a repeated term counts twice
)


def _sentences() -> list[str]:
    text = " ".join(path.read_text(encoding="utf-8") for path in sorted(SEEDS.glob("*.txt")))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def _corpus(tmp: Path, count: int = 36) -> list[Document]:
    """Seed documents (articles with reader comments: several parts) plus short jsonl documents made of seed
    sentences, with dates, and one near-copy (a duplicate cluster)."""
    tmp.mkdir(parents=True, exist_ok=True)
    sentences = _sentences()
    lines = []
    for i in range(count):
        chosen = [sentences[(i * 7 + j * 3) % len(sentences)] for j in range(3 + i % 5)]
        record = {"_id": f"doc{i:03d}", "title": f"Story {i}", "text": " ".join(chosen)}
        if i % 3:
            record["published"] = f"2026-0{1 + i % 9}-1{i % 10}"
        lines.append(record)
    lines.append({"_id": "copy000", "title": "Story again", "text": lines[4]["text"] + " Copyright the agency."})
    (tmp / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    shutil.copytree(SEEDS, tmp / "seeds")
    return list(load_documents([tmp / "seeds", tmp / "corpus.jsonl"]).documents)


def _reload(doc: Document, text: str) -> Document:
    from dataclasses import replace

    from indexer.documents import Unit

    return replace(doc, text=text, units=(Unit("article", 0, len(text), None),))


class Writer:
    """Allocates increasing passage ids and writes segments, as a store writer would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.embedder = HashingEmbedder(dim=DIM)
        self.chunker = Chunker(self.embedder)
        self.next_id = 0
        self.count = 0

    def new_documents(self, docs: Sequence[Document]) -> list[NewDocument]:
        items = []
        for doc in docs:
            passages = self.chunker.chunk(doc)
            ids = list(range(self.next_id, self.next_id + len(passages)))
            self.next_id += len(passages)
            vectors = self.embedder.encode([p.embed_text for p in passages])
            items.append(NewDocument(doc, ids, passages, vectors))
        return items

    def segment(self, docs: Sequence[Document]) -> Segment:
        self.count += 1
        return Segment.build(self.root / f"s{self.count:04d}", self.new_documents(docs), dim=DIM, settings=SETTINGS)


def _mask(segment: Segment, doc_ids: set[str]) -> np.ndarray | None:
    doc_of = np.asarray(segment.doc_of)
    gone = np.array([str(d) in doc_ids for d in segment.doc_ids.tolist()], dtype=bool)
    mask = gone[doc_of] if len(doc_of) else np.zeros(0, bool)
    return mask if mask.any() else None


def _keys(view: SegmentedView, ids: np.ndarray) -> list[tuple[str, int]]:
    return [(p.doc_id, p.ordinal) for p in view.passages(ids.tolist())]


def _live_keyed(view: SegmentedView, scores: np.ndarray) -> dict[tuple[str, int], float]:
    live = view.passage_ids[view.live_mask]
    return dict(zip(_keys(view, live), scores[view.positions(live)].tolist(), strict=True))


def assert_same_top(view: SegmentedView, got: VectorHits, fresh: SegmentedView, want: VectorHits) -> None:
    """Same scores rank by rank (1e-5) and the same passages; among equal scores (the passages of one part share
    its context score) in any order, and at the cut-off any of the tied ones."""
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    scores = want.scores[0]
    if not len(scores):
        return
    above = scores > scores[-1] + 1e-5
    got_keys, want_keys = _keys(view, got.ids[0]), _keys(fresh, want.ids[0])
    for rank_score in np.unique(scores[above]):
        same = np.abs(scores - rank_score) <= 1e-5
        assert {k for k, s in zip(got_keys, same, strict=True) if s} == {
            k for k, s in zip(want_keys, same, strict=True) if s
        }


def assert_same_search(view: SegmentedView, fresh: SegmentedView) -> None:
    """Every signal citesearch.search combines, for every live passage, and the top 10 of each ranking."""
    assert view.live == fresh.live
    embedder = HashingEmbedder(dim=DIM)
    for query in QUERIES:
        for signal in ("scores", "context_scores"):
            got, want = getattr(view, signal)(query), getattr(fresh, signal)(query)
            got_keyed, want_keyed = _live_keyed(view, got), _live_keyed(fresh, want)
            assert got_keyed.keys() == want_keyed.keys()
            for key, value in want_keyed.items():
                assert got_keyed[key] == pytest.approx(value, abs=1e-5), (query, signal, key)
            assert float(got[~view.live_mask].max(initial=0)) == 0.0  # deleted positions never score
            assert_same_top(view, view.top(got, 10), fresh, fresh.top(want, 10))
        hybrid_got = view.scores(query) + view.context_scores(query)  # fusion.keyword_score with context
        hybrid_want = fresh.scores(query) + fresh.context_scores(query)
        assert_same_top(view, view.top(hybrid_got, 10), fresh, fresh.top(hybrid_want, 10))
        vector = embedder.encode([query])
        got_dense, want_dense = view.search_vectors(vector, 10), fresh.search_vectors(vector, 10)
        assert_same_top(view, got_dense, fresh, want_dense)
        # the part-level dense signals of the candidates, from the stored per-segment part vectors and leads
        got_layout, want_layout = view.part_layout(), fresh.part_layout()
        assert got_layout is not None and want_layout is not None
        ids = got_dense.ids[0]
        fresh_ids = fresh.passage_ids[fresh.positions(np.array(want_dense.ids[0]))]
        got_parts = part_scores(
            got_layout,
            cast(Any, view.part_vectors()),
            view.positions(ids),
            lambda p: view.vectors.vectors_for(view.passage_ids[p]),
            vector,
        )
        want_parts = part_scores(
            want_layout,
            cast(Any, fresh.part_vectors()),
            fresh.positions(fresh_ids),
            lambda p: fresh.vectors.vectors_for(fresh.passage_ids[p]),
            vector,
        )
        np.testing.assert_allclose(got_parts.lead, want_parts.lead, atol=1e-5)
        np.testing.assert_allclose(got_parts.mean, want_parts.mean, atol=1e-5)
    # lookups see only live documents
    assert view.document_ids() == fresh.document_ids()
    for doc_id in fresh.document_ids():
        got_doc, want_doc = view.document(doc_id), fresh.document(doc_id)
        assert got_doc is not None and want_doc is not None and got_doc.text == want_doc.text
        assert len(view.passage_ids_where(doc_id=doc_id)) == len(fresh.passage_ids_where(doc_id=doc_id))
    # duplicate clusters across segments: test_cluster_assignment_across_segments


@pytest.fixture
def corpus(tmp_path: Path) -> list[Document]:
    return _corpus(tmp_path / "corpus")


def test_view_after_upserts_and_deletes_equals_a_fresh_build(tmp_path: Path, corpus: list[Document]) -> None:
    writer = Writer(tmp_path / "segments")
    first, second, rest = corpus[:20], corpus[20:30], corpus[30:]
    a, b = writer.segment(first), writer.segment(second)
    edited = [_reload(first[5], first[5].text + " Update: the peace treaty signing was delayed again."), rest[0]]
    c = writer.segment([*edited, *rest[1:]])
    deleted = {first[3].doc_id, second[2].doc_id}
    replaced = {first[5].doc_id}
    view = SegmentedView([(a, _mask(a, deleted | replaced)), (b, _mask(b, deleted)), (c, None)])
    assert view.live < view.total
    live_docs = [d for d in first + second if d.doc_id not in deleted | replaced] + [*edited, *rest[1:]]
    fresh = SegmentedView([(Writer(tmp_path / "fresh").segment(live_docs), None)])
    assert_same_search(view, fresh)
    assert view.document(first[3].doc_id) is None
    replaced_doc = view.document(first[5].doc_id)
    assert replaced_doc is not None and "signing was delayed again" in replaced_doc.text


def test_postings_bm25_equals_bm25s_on_the_seeds(tmp_path: Path, corpus: list[Document]) -> None:
    segment = Writer(tmp_path / "segments").segment(corpus)
    view = SegmentedView([(segment, None)])
    passages = list(segment.iter_passages())
    index = KeywordIndex.build(
        ((p.passage_id, KeywordIndex.text_for(p.title, p.text, SETTINGS)) for p in passages), SETTINGS
    )
    for query in QUERIES:
        np.testing.assert_allclose(view.scores(query), index.scores(query), atol=1e-5, rtol=0)
    assert np.count_nonzero(view.scores(QUERIES[0])) > 0


@pytest.mark.skipif(not SCIFACT.is_file(), reason="needs ../shared/datasets/scifact (the shared datasets folder)")
def test_postings_bm25_equals_bm25s_on_scifact(tmp_path: Path) -> None:
    from index_store.segments.postings import CollectionStats, Postings, QueryAnalyzer, score_segments

    records = [json.loads(line) for line in SCIFACT.read_text(encoding="utf-8").splitlines()[:1500]]
    texts = [KeywordIndex.text_for(r["title"], r["text"], SETTINGS) for r in records]
    index = KeywordIndex.build(enumerate(texts), SETTINGS)
    # three segments with global statistics against one bm25s index of everything
    cuts = [0, 400, 1100, len(texts)]
    postings = [Postings.build(texts[a:b], SETTINGS) for a, b in itertools.pairwise(cuts)]
    stats = CollectionStats(len(texts), float(sum(p.lengths.sum(dtype=np.float64) for p in postings)))
    analyzer = QueryAnalyzer(SETTINGS)
    queries = [json.loads(line)["text"] for line in (SCIFACT.parent / "queries.jsonl").read_text().splitlines()[:60]]
    for query in queries:
        got = score_segments(
            analyzer.terms(query), postings, [None, None, None], cuts[:-1], len(texts), stats, SETTINGS.k1, SETTINGS.b
        )
        np.testing.assert_allclose(got, index.scores(query), atol=1e-5, rtol=0)


def test_a_damaged_segment_file_is_named(tmp_path: Path, corpus: list[Document]) -> None:
    segment = Writer(tmp_path / "segments").segment(corpus[:5])
    segment.close()
    Segment.load(segment.path).close()  # intact: loads and verifies
    target = segment.path / "bm25" / "passages" / "tf.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"bm25/passages/tf\.npy"):
        Segment.load(segment.path)
    (segment.path / "part_means.npy").unlink()
    with pytest.raises(IndexCorruptError, match=r"part_means\.npy"):
        Segment.load(segment.path, verify=False)


def test_build_writes_nothing_on_bad_input(tmp_path: Path, corpus: list[Document]) -> None:
    writer = Writer(tmp_path / "segments")
    items = writer.new_documents(corpus[:2])
    with pytest.raises(ValueError, match="appears twice"):
        Segment.build(tmp_path / "segments" / "bad", [items[0], items[0]], dim=DIM, settings=SETTINGS)
    assert not (tmp_path / "segments" / "bad").exists()
    assert not list((tmp_path / "segments").glob(".tmp-*"))
