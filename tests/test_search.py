"""The shared search path: fusion arithmetic against hand computation, modes, explain, filters and the cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citesearch.fusion import FusionSettings, convex_combination, min_max, ranks_of, reciprocal_rank_fusion
from citesearch.search import InvalidSearchRequest, SearchRequest, Searcher
from index_store import open_index
from indexer.documents import Document, Unit
from indexer.embedder import HashingEmbedder
from indexer.pipeline import BuildOptions, apply_changes
from tests.conftest import SEED_PAGE

ALIYEV = "what conditions did Aliyev set?"


def test_convex_combination_by_hand() -> None:
    dense = np.array([0.9, 0.5, 0.7])
    bm25 = np.array([0.0, 10.0, 5.0])
    # minmax dense: 1, 0, .5 ; minmax bm25: 0, 1, .5
    np.testing.assert_allclose(convex_combination(dense, bm25, 0.25), [0.25, 0.75, 0.5])
    np.testing.assert_allclose(min_max(np.array([3.0, 3.0])), [1.0, 1.0])


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
def test_each_mode_ranks_and_explains(tiny_searcher: Searcher, mode: str) -> None:
    result = tiny_searcher.search(SearchRequest("zebras savanna", k=5, mode=mode, explain=True))
    assert result.mode == mode and result.hits
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    for hit in result.hits:
        assert hit.explain is not None and hit.explain.fused_score == hit.score
        assert hit.explain.dense_score is not None and hit.explain.bm25_score is not None
    if mode == "bm25":
        assert all(h.explain.bm25_score > 0 for h in result.hits)  # no passage without a shared term
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
    np.testing.assert_allclose([h.explain.dense_score for h in result.hits], cosines, rtol=1e-5)


def test_filters_and_per_document_cap(tiny_searcher: Searcher) -> None:
    comments = tiny_searcher.search(SearchRequest("zebras", k=10, section="comment"))
    assert comments.hits and {h.citation.section for h in comments.hits} == {"comment"}
    assert {h.citation.comment_no for h in comments.hits} <= {1, 2}
    only_b = tiny_searcher.search(SearchRequest("water", k=10, doc_id="b"))
    assert {h.citation.doc_id for h in only_b.hits} == {"b"}
    capped = tiny_searcher.search(SearchRequest("zebras savanna river", k=10, per_doc_cap=1))
    doc_ids = [h.citation.doc_id for h in capped.hits]
    assert len(doc_ids) == len(set(doc_ids)) == 3


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
def test_real_model_answers_the_aliyev_question_in_every_mode(seed_reader, real_embedder, mode: str) -> None:
    result = Searcher(seed_reader, real_embedder).search(SearchRequest(ALIYEV, k=3, mode=mode))
    top = result.hits[0]
    assert top.citation.doc_id == SEED_PAGE and top.citation.section == "article"
    assert "Minsk Group" in top.text
