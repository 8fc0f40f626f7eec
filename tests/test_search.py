"""The shared search path: fusion arithmetic against hand computation, modes, explain, filters and the cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citesearch.fusion import (
    FusionSettings,
    convex_combination,
    fuse,
    min_max,
    ranks_of,
    reciprocal_rank_fusion,
    z_score,
)
from citesearch.search import InvalidSearchRequest, Mode, Searcher, SearchRequest
from index_store import KeywordIndex, open_index
from indexer.documents import Document, Unit
from indexer.pipeline import BuildOptions, apply_changes
from tests.conftest import SEED_PAGE
from tests.fakes import HashingEmbedder

ALIYEV = "what conditions did Aliyev set?"


def test_convex_combination_by_hand() -> None:
    dense = np.array([0.9, 0.5, 0.7])
    bm25 = np.array([0.0, 10.0, 5.0])
    # minmax dense: 1, 0, .5 ; minmax bm25: 0, 1, .5
    np.testing.assert_allclose(convex_combination([(0.25, dense), (0.75, bm25)], "minmax"), [0.25, 0.75, 0.5])
    np.testing.assert_allclose(min_max(np.array([3.0, 3.0])), [1.0, 1.0])
    # z-scores: dense (0.2, -0.2, 0) / std 0.1633 ; bm25 (-5, 5, 0) / std 4.0825 ; context constant -> no evidence
    context = np.array([2.0, 2.0, 2.0])
    fused = convex_combination([(0.5, dense), (0.2, bm25), (0.3, context)], "zscore")
    np.testing.assert_allclose(fused, [0.5 * 1.2247 - 0.2 * 1.2247, -0.5 * 1.2247 + 0.2 * 1.2247, 0.0], atol=1e-4)
    np.testing.assert_allclose(z_score(context), [0.0, 0.0, 0.0])


def test_fuse_uses_the_context_signal() -> None:
    dense = np.array([0.5, 0.5])
    bm25 = np.array([1.0, 1.0])
    context = np.array([0.0, 4.0])  # same passage scores; the second sits in a part that matches the query
    fused = fuse(dense, bm25, context, FusionSettings())
    assert fused[1] > fused[0]
    without = fuse(dense, bm25, context, FusionSettings(context_weight=0.0))
    assert without[0] == without[1]
    # RRF ranks the keyword side by BM25 plus context: with the keyword side weighted up, the second passage wins
    rrf = fuse(dense, bm25, context, FusionSettings(method="rrf", dense_weight=0.3))
    assert rrf[1] > rrf[0]
    with pytest.raises(ValueError, match="normalization"):
        FusionSettings(normalization="softmax")  # type: ignore[arg-type]


def test_rrf_by_hand() -> None:
    dense = np.array([0.9, 0.5, 0.7])  # ranks 1, 3, 2
    bm25 = np.array([1.0, 10.0, 5.0])  # ranks 3, 1, 2
    assert ranks_of(dense).tolist() == [1, 3, 2]
    expected = [1 / 61 + 1 / 63, 1 / 63 + 1 / 61, 1 / 62 + 1 / 62]
    np.testing.assert_allclose(reciprocal_rank_fusion(dense, bm25, 60), expected)
    with pytest.raises(ValueError, match="dense_weight"):
        FusionSettings(dense_weight=1.5)


def _doc(doc_id: str, body: str, comments: tuple[str, ...] = ()) -> Document:
    text = body
    units = [Unit("article", 0, len(body))]
    for number, comment in enumerate(comments, start=1):
        text += "\n\n"
        units.append(Unit("comment", len(text), len(text) + len(comment), number))
        text += comment
    return Document(doc_id=doc_id, title=doc_id, text=text, source=doc_id, units=tuple(units))


@pytest.fixture
def tiny_searcher(tmp_path: Path):
    embedder = HashingEmbedder()
    docs = [
        _doc("a", "Zebras graze on the savanna near the river.", ("I love zebras.", "Lions hunt zebras at night.")),
        _doc("b", "Penguins live in Antarctica and swim in cold water."),
        _doc("c", "The river floods every spring and the savanna turns green."),
    ]
    apply_changes(tmp_path, embedder, upserts=docs, options=BuildOptions())
    reader = open_index(tmp_path)
    yield Searcher(reader, embedder)
    reader.close()


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_ranks_and_explains(tiny_searcher: Searcher, mode: Mode) -> None:
    result = tiny_searcher.search(SearchRequest("zebras savanna", k=5, mode=mode, explain=True))
    assert result.mode == mode and result.hits
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    for hit in result.hits:
        assert hit.explain is not None and hit.explain.fused_score == hit.score
        assert hit.explain.dense_score is not None and hit.explain.bm25_score is not None
    if mode == "bm25":
        assert all((h.explain.bm25_score or 0) > 0 for h in result.hits)  # no passage without a shared term
        assert result.query_vector is not None  # explain needs it for the dense score
    if mode == "hybrid":
        assert all(h.explain.dense_rank and h.explain.bm25_rank for h in result.hits)


def test_hybrid_scores_every_candidate_exactly(tiny_searcher: Searcher) -> None:
    """The fused ranking is the convex combination of exact scores, checked against a brute-force recomputation."""
    result = tiny_searcher.search(SearchRequest("river floods savanna", k=10, mode="hybrid", explain=True))
    reader = tiny_searcher.reader
    query = tiny_searcher.embed_query("river floods savanna")[0]
    ids = np.array([h.passage_id for h in result.hits])
    cosines = reader.vectors.vectors_for(ids) @ query
    dense = np.array([h.explain.dense_score for h in result.hits], dtype=np.float64)
    np.testing.assert_allclose(dense, cosines, rtol=1e-5)


def test_context_is_the_bm25_of_each_passages_own_part(tiny_searcher: Searcher) -> None:
    """Every hit's context score is its part's BM25 (an independent index over the parts' texts), and the fused
    score is the documented combination of the exact signals (recomputed by brute force over the candidates)."""
    query = "zebras savanna river"
    result = tiny_searcher.search(SearchRequest(query, k=10, mode="hybrid", explain=True))
    reader = tiny_searcher.reader
    keyword = reader.keyword
    assert keyword is not None and keyword.context is not None
    part_texts: dict[tuple[str, str, int | None], str] = {}
    for doc_id in reader.document_ids():
        doc = reader.document(doc_id)
        for unit in doc.units:
            part_texts[(doc_id, unit.section, unit.comment_no)] = KeywordIndex.text_for(
                doc.title, doc.text[unit.char_start : unit.char_end], keyword.settings
            )
    keys = sorted(part_texts)
    reference = KeywordIndex.build(enumerate(part_texts[key] for key in keys), keyword.settings.for_context())
    part_scores = dict(zip(keys, reference.scores(query), strict=True))
    for hit in result.hits:
        c = hit.citation
        assert hit.explain.context_score == pytest.approx(float(part_scores[(c.doc_id, c.section, c.comment_no)]))
    # the comments of document a are different parts: "I love zebras." and "Lions hunt zebras at night." differ
    comment_scores = {h.citation.comment_no: h.explain.context_score for h in result.hits if h.citation.comment_no}
    assert len(comment_scores) == 2 and comment_scores[1] != comment_scores[2]
    # all candidates here are in the hits (tiny index), so z-scores over the hits are the ones the searcher used
    signals = [
        (tiny_searcher.fusion.dense_weight, np.array([h.explain.dense_score for h in result.hits])),
        (tiny_searcher.fusion.bm25_weight, np.array([h.explain.bm25_score for h in result.hits])),
        (tiny_searcher.fusion.context_weight, np.array([h.explain.context_score for h in result.hits])),
        (tiny_searcher.fusion.lead_weight, np.array([h.explain.lead_score for h in result.hits])),
        (tiny_searcher.fusion.part_mean_weight, np.array([h.explain.part_mean_score for h in result.hits])),
    ]
    np.testing.assert_allclose([h.score for h in result.hits], convex_combination(signals, "zscore"), atol=1e-6)


def test_part_signals_are_the_cosines_of_the_parts_lead_and_mean_vector(tiny_searcher: Searcher) -> None:
    """lead = cosine of the first passage of the hit's document (also for a comment: its own first passage would be
    the comment again); part mean = cosine of its part's normalised mean passage vector, recomputed here from the
    stored passages of each part (grouped by document, section and comment number)."""
    query = "zebras savanna river"
    result = tiny_searcher.search(SearchRequest(query, k=10, mode="hybrid", explain=True))
    reader = tiny_searcher.reader
    q = tiny_searcher.embed_query(query)[0].astype(np.float64)
    leads, means = set(), set()
    for hit in result.hits:
        c = hit.citation
        passages = sorted(reader.passages(reader.passage_ids(doc_id=c.doc_id).tolist()), key=lambda p: p.ordinal)
        members = [p for p in passages if (p.section, p.comment_no) == (c.section, c.comment_no)]
        vectors = reader.vectors.vectors_for(np.array([p.passage_id for p in members])).astype(np.float64)
        mean = vectors.sum(axis=0)
        first = passages[0]
        lead = reader.vectors.vectors_for(np.array([first.passage_id]))[0].astype(np.float64) @ q
        assert hit.explain.lead_score == pytest.approx(float(lead), abs=1e-5)
        assert hit.explain.part_mean_score == pytest.approx(float(mean @ q / np.linalg.norm(mean)), abs=1e-5)
        leads.add(round(hit.explain.lead_score, 6))
        means.add(round(hit.explain.part_mean_score, 6))
    assert len(leads) > 1 and len(means) > 1  # not one constant: the parts differ
    comments = [h for h in result.hits if h.citation.section == "comment"]
    assert comments and all(h.explain.lead_score != h.explain.dense_score for h in comments)


def test_filters_and_per_document_cap(tiny_searcher: Searcher) -> None:
    comments = tiny_searcher.search(SearchRequest("zebras", k=10, section="comment"))
    assert comments.hits and {h.citation.section for h in comments.hits} == {"comment"}
    assert {h.citation.comment_no for h in comments.hits} <= {1, 2}
    only_b = tiny_searcher.search(SearchRequest("water", k=10, doc_id="b"))
    assert {h.citation.doc_id for h in only_b.hits} == {"b"}
    capped = tiny_searcher.search(SearchRequest("zebras savanna river", k=10, per_doc_cap=1))
    doc_ids = [h.citation.doc_id for h in capped.hits]
    assert len(doc_ids) == len(set(doc_ids)) == 3


def test_per_document_cap_matches_a_brute_force_reference(tmp_path: Path) -> None:
    """The cap works on in-memory document keys and fetches rows for the page only; the reference here fetches
    every candidate's row and caps by its doc_id, as the searcher once did."""
    embedder = HashingEmbedder()
    words = "zebra savanna river lion penguin ice flood spring grass water night hunt".split()
    docs = [
        _doc(
            f"d{n:02d}",
            " ".join(words[(n + i) % len(words)] for i in range(12)) + ".",
            tuple(" ".join(words[(n * i + j) % len(words)] for j in range(6)) + "." for i in range(1, 1 + n % 4)),
        )
        for n in range(25)
    ]
    apply_changes(tmp_path, embedder, upserts=docs, options=BuildOptions())
    with open_index(tmp_path) as reader:
        searcher = Searcher(reader, embedder)
        every = reader.passage_ids()
        doc_of = {p.passage_id: p.doc_id for p in reader.passages(every.tolist())}
        keys = reader.document_keys(every)
        assert len(set(keys.tolist())) == len(docs)  # one key per document ...
        assert all(
            (keys[i] == keys[j]) == (doc_of[a] == doc_of[b])  # ... shared exactly by its passages
            for i, a in enumerate(every)
            for j, b in enumerate(every)
        )
        assert reader.document_keys(np.array([every.max() + 1, -5])).tolist() == [-1, -1]
        for query in ("zebra river", "penguin ice water", "night hunt lion"):
            for cap, offset in ((None, 0), (1, 0), (2, 3), (3, 5)):
                got = searcher.search(SearchRequest(query, k=6, offset=offset, per_doc_cap=cap))
                full = searcher.search(SearchRequest(query, k=len(every), per_doc_cap=None))
                per_doc: dict[str, int] = {}
                expected = []
                for hit in full.hits:
                    if cap is None or per_doc.get(hit.citation.doc_id, 0) < cap:
                        per_doc[hit.citation.doc_id] = per_doc.get(hit.citation.doc_id, 0) + 1
                        expected.append(hit.passage_id)
                assert [h.passage_id for h in got.hits] == expected[offset : offset + 6], (query, cap, offset)
                assert [h.rank for h in got.hits] == list(range(offset + 1, offset + 1 + len(got.hits)))


def test_bm25_mode_without_explain_does_not_embed_the_query(tiny_searcher: Searcher) -> None:
    result = tiny_searcher.search(SearchRequest("zebras", k=3, mode="bm25"))
    assert result.query_vector is None and "encode" not in result.timings_ms


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (SearchRequest("   "), "query"),
        (SearchRequest("x", k=0), "k"),
        (SearchRequest("x", offset=-1), "offset"),
        (SearchRequest("x", section="footer"), "section"),
        (SearchRequest("x", doc_id="nope"), "doc_id"),
        (SearchRequest("x", mode="fuzzy"), "mode"),  # type: ignore[arg-type]
    ],
)
def test_invalid_requests_name_the_field(tiny_searcher: Searcher, request_: SearchRequest, field: str) -> None:
    with pytest.raises(InvalidSearchRequest) as caught:
        tiny_searcher.search(request_)
    assert caught.value.field == field


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_real_model_answers_the_aliyev_question_in_every_mode(seed_reader, real_embedder, mode: Mode) -> None:
    result = Searcher(seed_reader, real_embedder).search(SearchRequest(ALIYEV, k=3, mode=mode))
    top = result.hits[0]
    assert top.citation.doc_id == SEED_PAGE and top.citation.section == "article"
    assert "Minsk Group" in top.text


@pytest.mark.parametrize(
    "fusion",
    [
        FusionSettings(),
        FusionSettings(method="rrf", context_weight=0.3),
        FusionSettings(normalization="minmax", context_weight=0.0),
    ],
)
def test_offline_tuning_replays_the_searcher_exactly(tiny_searcher: Searcher, fusion: FusionSettings) -> None:
    """eval.tune chooses the fusion offline; its replay must rank documents exactly as the searcher does."""
    from eval.tune import QueryScores, all_part_scores, replay

    query = "zebras river"
    reader = tiny_searcher.reader
    keyword = reader.keyword
    ids = keyword.passage_ids
    doc_of = np.array([p.doc_id for p in reader.passages(ids.tolist())], dtype=object)
    query_vector = tiny_searcher.embed_query(query)
    dense = reader.vectors.vectors_for(ids) @ query_vector[0]
    parts = all_part_scores(tiny_searcher, query_vector)  # the lead and part-mean signals, as the tuner reads them
    assert parts is not None
    scores = QueryScores(dense, keyword.scores(query), keyword.context_scores(query), parts[0], parts[1])
    offline = replay(scores, fusion, doc_of)
    online = Searcher(reader, tiny_searcher.embedder, fusion).search(SearchRequest(query, k=10))
    best_passage_order = list(dict.fromkeys(h.citation.doc_id for h in online.hits))
    assert len(best_passage_order) == 3 and offline == best_passage_order
