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
from index_store.segments import (
    ClusterIndex,
    MergePolicy,
    NewDocument,
    Segment,
    SegmentedView,
    SegmentSize,
    allowed_segment_count,
    document_deletion_mask,
    merge_segments,
    pack_mask,
    plan_merges,
    plan_optimize,
    train_centroids,
    unpack_mask,
)
from index_store.shapes import searchable_title
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

    def __init__(self, root: Path, embedder: Any = None) -> None:
        self.root = root
        self.embedder = embedder or HashingEmbedder(dim=DIM)
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

    def segment(self, docs: Sequence[Document], clusters: ClusterIndex | None = None, **options: Any) -> Segment:
        self.count += 1
        items = self.new_documents(docs)
        if clusters is not None:
            items = clusters.assign(items)
        return Segment.build(
            self.root / f"s{self.count:04d}", items, dim=self.embedder.dim, settings=SETTINGS, **options
        )


def _mask(segment: Segment, doc_ids: set[str]) -> np.ndarray | None:
    return document_deletion_mask(segment, sorted(doc_ids))


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


def assert_same_search(view: SegmentedView, fresh: SegmentedView, embedder: Any = None) -> None:
    """Every signal citesearch.search combines, for every live passage, and the top 10 of each ranking."""
    assert view.live == fresh.live
    embedder = embedder or HashingEmbedder(dim=DIM)
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
    assert view.document_hashes() == fresh.document_hashes()
    listed = sorted((p.doc_id, p.ordinal, p.text) for p in view.iter_passages())
    assert listed == sorted((p.doc_id, p.ordinal, p.text) for p in fresh.iter_passages())
    for section in ("article", "comment"):
        assert len(view.passage_ids_where(section=section)) == len(fresh.passage_ids_where(section=section))
    deleted_ids = view.passage_ids[~view.live_mask]
    assert view.passages(deleted_ids.tolist()) == []
    assert (view.document_keys(deleted_ids) == -1).all()
    live_ids = view.passage_ids[view.live_mask]
    keys = view.document_keys(live_ids)
    owners = [p.doc_id for p in view.passages(live_ids.tolist())]
    assert len(set(zip(keys.tolist(), owners, strict=True))) == len(set(owners)) == len(set(keys.tolist()))
    for doc_id in fresh.document_ids():
        got_doc, want_doc = view.document(doc_id), fresh.document(doc_id)
        assert got_doc is not None and want_doc is not None and got_doc.text == want_doc.text
        assert len(view.passage_ids_where(doc_id=doc_id)) == len(fresh.passage_ids_where(doc_id=doc_id))
    assert_same_clusters(view, fresh)


def assert_same_clusters(view: SegmentedView, fresh: SegmentedView) -> None:
    """The same documents are copies of each other (the cluster of every live document), however they were written."""

    def clusters(v: SegmentedView) -> dict[str, list[str]]:
        docs = v.documents
        live = np.flatnonzero(docs.live_documents)
        return {str(docs.doc_ids[i]): sorted(docs.cluster_doc_ids(int(i))) for i in live}

    assert clusters(view) == clusters(fresh)
    assert view.documents.duplicate_documents == fresh.documents.duplicate_documents
    assert fresh.documents.duplicate_documents > 0  # the corpus has copies: the comparison means something


@pytest.fixture
def corpus(tmp_path: Path) -> list[Document]:
    return _corpus(tmp_path / "corpus")


def test_view_after_upserts_and_deletes_equals_a_fresh_build(tmp_path: Path, corpus: list[Document]) -> None:
    writer = Writer(tmp_path / "segments")
    first, second, rest = corpus[:20], corpus[20:30], corpus[30:]
    a = writer.segment(first)
    b = writer.segment(second, ClusterIndex.of(SegmentedView([(a, None)])))  # as a writer assigns every new document
    edited = [_reload(first[5], first[5].text + " Update: the peace treaty signing was delayed again."), rest[0]]
    deleted = {first[3].doc_id, second[2].doc_id}
    replaced = {first[5].doc_id}
    before_c = SegmentedView([(a, _mask(a, deleted | replaced)), (b, _mask(b, deleted))])
    c = writer.segment([*edited, *rest[1:]], ClusterIndex.of(before_c))
    view = SegmentedView([(a, _mask(a, deleted | replaced)), (b, _mask(b, deleted)), (c, None)])
    assert view.live < view.total
    live_docs = [d for d in first + second if d.doc_id not in deleted | replaced] + [*edited, *rest[1:]]
    fresh = SegmentedView([(Writer(tmp_path / "fresh").segment(live_docs), None)])
    assert_same_search(view, fresh)
    assert view.document(first[3].doc_id) is None
    replaced_doc = view.document(first[5].doc_id)
    assert replaced_doc is not None and "signing was delayed again" in replaced_doc.text
    # merging the first two (dropping their deleted passages), then everything: still the same search
    ab = merge_segments(tmp_path / "segments" / "m0001", [(a, _mask(a, deleted | replaced)), (b, _mask(b, deleted))])
    assert len(ab) == view.states[0].live + view.states[1].live
    merged = SegmentedView([(ab, None), (c, None)])
    assert merged.total == merged.live == fresh.live
    assert_same_search(merged, fresh)
    # a deletion after the merge, then optimize
    later = {rest[1].doc_id}
    after = SegmentedView([(ab, None), (c, _mask(c, later))])
    one = SegmentedView([(merge_segments(tmp_path / "segments" / "m0002", [(ab, None), (c, _mask(c, later))]), None)])
    fresh_after = SegmentedView(
        [(Writer(tmp_path / "fresh2").segment([d for d in live_docs if d.doc_id not in later]), None)]
    )
    assert_same_search(after, fresh_after)
    assert_same_search(one, fresh_after)
    assert len(one.segments) == 1 and one.live == one.total


def test_postings_bm25_equals_bm25s_on_the_seeds(tmp_path: Path, corpus: list[Document]) -> None:
    segment = Writer(tmp_path / "segments").segment(corpus)
    view = SegmentedView([(segment, None)])
    passages = list(segment.iter_passages())
    index = KeywordIndex.build(
        (
            (p.passage_id, KeywordIndex.text_for(searchable_title(p.title, p.metadata), p.text, SETTINGS))
            for p in passages
        ),
        SETTINGS,
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


def test_merge_refuses_segments_out_of_order(tmp_path: Path, corpus: list[Document]) -> None:
    writer = Writer(tmp_path / "segments")
    a, b = writer.segment(corpus[:4]), writer.segment(corpus[4:8])
    with pytest.raises(ValueError, match="adjacent"):
        merge_segments(tmp_path / "segments" / "m", [(b, None), (a, None)])
    assert not (tmp_path / "segments" / "m").exists()


def test_ivf_segments_reuse_the_given_centroids_and_skip_deleted_rows(tmp_path: Path, corpus: list[Document]) -> None:
    """Segments searched through IVF (a low threshold stands in for 100k rows): deleted rows never come back, the
    scores are exact, and a merge keeps the centroids it is given (no re-training)."""
    writer = Writer(tmp_path / "segments")
    sample = writer.new_documents(corpus)
    centroids = train_centroids(np.concatenate([item.vectors for item in sample]), 100, quantizer="flat")
    writer.next_id = 0
    options: dict[str, Any] = {"centroids": centroids, "ivf_min_vectors": 10}
    a, b = writer.segment(corpus[:20], **options), writer.segment(corpus[20:], **options)
    assert a.vectors.kind == "ivf-flat" and b.vectors.kind == "ivf-flat"
    gone = {corpus[2].doc_id, corpus[25].doc_id}
    view = SegmentedView([(a, _mask(a, gone)), (b, _mask(b, gone))])
    deleted_ids = set(view.passage_ids[~view.live_mask].tolist())
    assert deleted_ids
    embedder = HashingEmbedder(dim=DIM)
    for query in QUERIES[:3]:
        vector = embedder.encode([query])
        found = view.search_vectors(vector, 50)
        ids = found.ids[0][found.ids[0] >= 0]
        assert not deleted_ids & set(ids.tolist())
        np.testing.assert_allclose(found.scores[0][: len(ids)], view.vectors.vectors_for(ids) @ vector[0], atol=1e-5)
        exact = np.sort(view.vectors.vectors_for(view.passage_ids[view.live_mask]) @ vector[0])[::-1][:10]
        assert found.scores[0][0] == pytest.approx(exact[0], abs=1e-5)
    merged = merge_segments(tmp_path / "segments" / "m", [(a, _mask(a, gone)), (b, _mask(b, gone))], **options)
    assert merged.vectors.kind == "ivf-flat"
    assert merged.vectors.ivf is not None
    got = faiss_centroids(merged.vectors.ivf)
    np.testing.assert_array_equal(got, faiss_centroids(centroids.empty_index()))


def faiss_centroids(index: Any) -> np.ndarray:
    import faiss

    ivf = faiss.extract_index_ivf(index)
    return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.nlist))


def test_cluster_assignment_across_segments(tmp_path: Path, corpus: list[Document]) -> None:
    """A copy written in a later segment joins the cluster of its original in an earlier one, as a fresh build
    clusters them; deleting the original leaves the copy standing alone."""
    writer = Writer(tmp_path / "segments")
    copy_index = next(i for i, d in enumerate(corpus) if d.doc_id == "copy000")
    original = next(d for d in corpus if d.doc_id == "doc004")
    others = [d for d in corpus if d.doc_id not in {"copy000", "doc004"}]
    a = writer.segment([original, *others[:10]])
    view = SegmentedView([(a, None)])
    clusters = ClusterIndex.of(view)
    b = writer.segment([corpus[copy_index], *others[10:]], clusters)
    both = SegmentedView([(a, None), (b, None)])
    fresh = SegmentedView([(Writer(tmp_path / "fresh").segment(corpus), None)])
    assert_same_clusters(both, fresh)
    copy_ordinal = int(np.flatnonzero(both.documents.doc_ids == "copy000")[0])
    assert both.documents.cluster_doc_ids(copy_ordinal) == ["doc004", "copy000"]
    assert both.documents.cluster_size(copy_ordinal) == 2
    without = SegmentedView([(a, _mask(a, {"doc004"})), (b, None)])
    assert without.documents.cluster_size(copy_ordinal) == 1
    assert without.documents.duplicate_documents == both.documents.duplicate_documents - 1


def test_deletion_masks_round_trip(tmp_path: Path, corpus: list[Document]) -> None:
    segment = Writer(tmp_path / "segments").segment(corpus[:6])
    mask = document_deletion_mask(segment, [corpus[1].doc_id, "not-there"])
    assert mask is not None and mask.sum() == len(segment.passage_ids_where(doc_id=corpus[1].doc_id))
    assert document_deletion_mask(segment, ["not-there"]) is None
    np.testing.assert_array_equal(unpack_mask(pack_mask(mask), len(mask)), mask)
    with pytest.raises(ValueError, match="does not fit"):
        unpack_mask(pack_mask(mask), len(mask) + 8)


def test_tiered_policy() -> None:
    policy = MergePolicy(segments_per_tier=10, max_merge_at_once=10, floor_passages=1000)
    # one big segment and 50 one-document segments: the small ones merge, ten at a time, the big one stays
    sizes = [SegmentSize(1_000_000)] + [SegmentSize(5) for _ in range(50)]
    runs = plan_merges(sizes, policy)
    assert runs and all(start >= 1 for start, _ in runs)
    assert all(end - start <= 10 for start, end in runs)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(runs))  # disjoint, in order
    remaining = len(sizes) - sum(end - start - 1 for start, end in runs)
    assert remaining <= allowed_segment_count(sizes, policy) < len(sizes)
    # fifty tiny segments alone fit one tier's floor: merged down to a few segments
    tiny = [SegmentSize(5) for _ in range(50)]
    assert allowed_segment_count(tiny, policy) == 1
    assert len(tiny) - sum(end - start - 1 for start, end in plan_merges(tiny, policy)) <= 5
    # within budget: nothing to do
    assert plan_merges([SegmentSize(1_000_000), SegmentSize(50_000)], policy) == []
    # too many deletes: the segment is rewritten even within budget
    assert plan_merges([SegmentSize(100_000, deleted=30_000), SegmentSize(1_000_000)], policy) == [(0, 1)]
    # the size cap: never a merge above max_merged_passages
    capped = MergePolicy(segments_per_tier=2, max_merge_at_once=2, max_merged_passages=1500, floor_passages=10)
    assert all(
        sum(s.live for s in sizes_[a:b]) <= 1500
        for sizes_ in ([SegmentSize(1000), SegmentSize(1000), SegmentSize(400), SegmentSize(400)],)
        for a, b in plan_merges(sizes_, capped)
    )
    assert plan_optimize([SegmentSize(10), SegmentSize(20)]) == [(0, 2)]
    assert plan_optimize([SegmentSize(10)]) == []
    assert plan_optimize([SegmentSize(10, deleted=1)]) == [(0, 1)]


def test_real_model_segments_search_like_a_fresh_build(tmp_path: Path, real_embedder: Any) -> None:
    """With the real model's vectors: two segments, an updated and a deleted document, then a merge, against one
    fresh segment of the same documents; and the top dense hit for a seed question is the passage that answers it."""
    corpus = _corpus(tmp_path / "corpus", count=12)
    writer = Writer(tmp_path / "segments", real_embedder)
    first, second = corpus[:8], corpus[8:]
    a = writer.segment(first)
    edited = _reload(first[3], first[3].text + " Update: the peace treaty signing was delayed again.")
    b = writer.segment([edited, *second], ClusterIndex.of(SegmentedView([(a, None)])))
    gone = {first[5].doc_id}
    view = SegmentedView([(a, _mask(a, gone | {edited.doc_id})), (b, None)])
    live_docs = [d for d in first if d.doc_id not in gone | {edited.doc_id}] + [edited, *second]
    fresh = SegmentedView([(Writer(tmp_path / "fresh", real_embedder).segment(live_docs), None)])
    assert_same_search(view, fresh, real_embedder)
    merged = SegmentedView(
        [(merge_segments(tmp_path / "segments" / "m", [(a, _mask(a, gone | {edited.doc_id})), (b, None)]), None)]
    )
    assert_same_search(merged, fresh, real_embedder)
    hit = view.search_vectors(real_embedder.encode(["What did Lavrov say about the observer mission in 2022?"]), 1)
    (passage,) = view.passages(hit.ids[0].tolist())
    assert "observation mission" in passage.text


def test_a_segment_emptied_by_deletes_merges_to_nothing(tmp_path: Path, corpus: list[Document]) -> None:
    writer = Writer(tmp_path / "segments")
    a, b, c = writer.segment(corpus[:5]), writer.segment(corpus[5:8]), writer.segment(corpus[8:12])
    emptied = merge_segments(tmp_path / "segments" / "m", [(b, _mask(b, {d.doc_id for d in corpus[5:8]}))])
    assert len(emptied) == 0 and emptied.n_documents == 0
    with_empty = SegmentedView([(a, None), (emptied, None), (c, None)])
    without = SegmentedView([(a, None), (c, None)])
    assert with_empty.live == without.live == len(a) + len(c)
    for query in QUERIES[:3]:
        np.testing.assert_array_equal(with_empty.scores(query), without.scores(query))
    assert with_empty.document(corpus[6].doc_id) is None
    assert with_empty.passages(c.ids[:3].tolist()) == c.passages(c.ids[:3].tolist())
    assert len(with_empty.passages(c.ids[:3].tolist())) == 3


def _doc_mask(segment: Segment, doc_ids: set[str]) -> np.ndarray | None:
    return _mask(segment, doc_ids & {str(d) for d in segment.doc_ids.tolist()})


def assert_pooled_equals_unpooled(pooled: SegmentedView, unpooled: SegmentedView) -> None:
    """Same position space, so every score array must match position for position, and every top 10."""
    embedder = HashingEmbedder(dim=DIM)
    live_ids = pooled.passage_ids[pooled.live_mask]
    for query in QUERIES:
        np.testing.assert_allclose(pooled.scores(query), unpooled.scores(query), atol=1e-5)
        got_context, want_context = pooled.context_scores(query), unpooled.context_scores(query)
        assert got_context is not None and want_context is not None
        np.testing.assert_allclose(got_context, want_context, atol=1e-5)
        got, want = pooled.search(query, 10), unpooled.search(query, 10)
        assert got.ids.tolist() == want.ids.tolist()
        vector = embedder.encode([query])
        for allowed in (None, live_ids[::3], live_ids[:5]):
            got, want = pooled.search_vectors(vector, 10, allowed), unpooled.search_vectors(vector, 10, allowed)
            assert got.ids.tolist() == want.ids.tolist(), (query, allowed is None)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        deleted = set(pooled.passage_ids[~pooled.live_mask].tolist())
        assert not deleted & set(pooled.search_vectors(vector, 50).ids[0].tolist())


def test_a_pooled_view_equals_an_unpooled_one(
    tmp_path: Path, corpus: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    import index_store.segments.pool as pool_module

    writer = Writer(tmp_path / "segments")
    segments = [writer.segment(corpus[:16])] + [writer.segment(corpus[i : i + 3]) for i in range(16, 31, 3)]
    # the first segment counts as big (searched on its own), the five others are pooled
    monkeypatch.setattr(pool_module, "POOL_MAX_SEGMENT_PASSAGES", len(segments[0]) - 1)
    gone = {corpus[2].doc_id, corpus[17].doc_id, corpus[25].doc_id}
    entries = [(s, _doc_mask(s, gone)) for s in segments]
    pooled, unpooled = SegmentedView(entries), SegmentedView(entries, pool=False)
    assert pooled.live < pooled.total
    pooled.warm()
    assert [len(p.members) for p in pooled.pools] == [5] and pooled.pooled_passages_built == sum(
        len(s) for s in segments[1:]
    )
    assert SegmentedView(entries, pool=False).pools == ()
    assert_pooled_equals_unpooled(pooled, unpooled)
    # the next version: one new segment and a later delete; the previous pool is reused, only the new one pooled
    new = writer.segment(corpus[31:33])
    gone |= {corpus[20].doc_id}
    entries = [(s, _doc_mask(s, gone)) for s in [*segments, new]]
    nxt = SegmentedView(entries, previous=pooled)
    assert nxt.pooled_passages_built == len(new)
    assert sorted(len(p.members) for p in nxt.pools) == [1, 5]
    assert_pooled_equals_unpooled(nxt, SegmentedView(entries, pool=False))
    # a merge of two pooled segments: the pool holding them is dropped, the rest pooled again
    merged = merge_segments(tmp_path / "segments" / "m0001", [entries[1], entries[2]])
    entries = [entries[0], (merged, None), *entries[3:]]
    after = SegmentedView(entries, previous=nxt)
    after.warm()
    members = [m.path for p in after.pools for m in p.members]
    assert sorted(members) == sorted(s.path for s, _ in entries[1:])  # every small segment in exactly one pool
    assert any(p.members == (new,) for p in after.pools)  # reused: the new segment was not pooled again
    assert after.pooled_passages_built == sum(len(s) for s, _ in entries[1:]) - len(new)
    assert sum(len(p) for p in after.pools) == sum(len(s) for s, _ in entries[1:])
    assert_pooled_equals_unpooled(after, SegmentedView(entries, pool=False))
