"""Late interaction (citesearch/late_interaction.py): MaxSim against brute force, the rescoring window, and the
searcher's opt-in rerank with a token embedder whose MaxSim is exact word matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citesearch.fusion import FusionSettings
from citesearch.late_interaction import maxsim, reranked_order, top_document_passages
from citesearch.search import Searcher, SearchRequest
from index_store import open_index
from indexer.documents import Document, Unit
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder, HashingTokenEmbedder


def _unit_rows(rng: np.random.Generator, rows: int, dim: int = 8) -> np.ndarray:
    vectors = rng.normal(size=(rows, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_maxsim_equals_the_brute_force_mean_of_each_query_tokens_best_match() -> None:
    rng = np.random.default_rng(7)
    query = _unit_rows(rng, 5)
    passages = [_unit_rows(rng, n) for n in (1, 3, 12, 2)]
    expected = [np.mean([max(float(q @ t) for t in passage) for q in query]) for passage in passages]
    assert maxsim(query, passages) == pytest.approx(expected, abs=1e-6)
    # A passage holding the query's own tokens matches each of them exactly
    assert maxsim(query, [np.vstack([query, passages[0]])])[0] == pytest.approx(1.0)
    assert maxsim(query, []).shape == (0,)
    with pytest.raises(ValueError, match="no token vectors"):
        maxsim(query, [passages[0], np.zeros((0, 8))])


def test_the_window_is_the_passages_of_the_top_documents_and_is_rescored_first() -> None:
    # Six passages of four documents; the fused order of documents is 0, 1, 2, 3.
    documents = np.array([0, 0, 1, 2, 2, 3])
    fused = np.array([3.0, 0.5, 2.0, 1.0, 0.2, 0.1])
    selected = top_document_passages(fused, documents, 2)
    assert selected.tolist() == [0, 1, 2]  # both passages of document 0, and document 1's
    assert top_document_passages(fused, documents, 10).tolist() == list(range(6))
    # Without weight the order is the fused one
    scores, order = reranked_order(fused, selected, np.array([0.1, 0.1, 0.9]), 0.0)
    assert order.tolist() == [0, 2, 1, 3, 4, 5] and scores.tolist() == fused.tolist()
    # Document 1's passage matches best: weighted, it overtakes; the rest stay below the window, in fused order,
    # even where a rescored passage now scores under them
    scores, order = reranked_order(fused, selected, np.array([0.1, 0.1, 0.9]), 5.0)
    assert order.tolist()[:3] == [2, 0, 1] and order.tolist()[3:] == [3, 4, 5]
    assert scores[1] < scores[3] and scores[3:].tolist() == fused[3:].tolist()


def _doc(doc_id: str, body: str) -> Document:
    return Document(doc_id=doc_id, title=doc_id, text=body, source=doc_id, units=(Unit("article", 0, len(body)),))


def _embedder() -> HashingTokenEmbedder:
    return HashingTokenEmbedder(dim=512)  # wide enough that these few words never share a dimension


@pytest.fixture
def token_index(tmp_path: Path) -> Path:
    docs = [
        _doc("zebra-river", "Zebras drink from the river at dawn while lions sleep."),
        _doc("zebra-only", "Zebras zebras zebras graze the savanna, zebras everywhere on the plains."),
        _doc("penguins", "Penguins swim in cold water far from any savanna."),
    ]
    apply_changes(tmp_path, _embedder(), upserts=docs, options=BuildOptions())
    return tmp_path


def test_the_searcher_reranks_its_top_documents_by_maxsim_when_asked(token_index: Path) -> None:
    # "zebras" four times puts zebra-only first; zebra-river holds more of the query's words
    request = SearchRequest(query="zebras dawn drink graze", k=3, explain=True)
    with open_index(token_index) as reader:
        plain = Searcher(reader, _embedder(), FusionSettings()).search(request)
        reranked = Searcher(reader, _embedder(), FusionSettings(rerank_depth=2, rerank_weight=1.0)).search(request)
    assert [hit.citation.doc_id for hit in plain.hits] == ["zebra-only", "zebra-river", "penguins"]
    assert all(hit.explain and hit.explain.late_interaction_score is None for hit in plain.hits)  # off: no rerank
    assert [hit.citation.doc_id for hit in reranked.hits] == ["zebra-river", "zebra-only", "penguins"]
    scores = {hit.citation.doc_id: hit.explain.late_interaction_score for hit in reranked.hits if hit.explain}
    # MaxSim here is the share of the query's words a passage holds: three of four, and two of four (through the
    # stored int8 codes, exact to their rounding: these few words span fewer dimensions than the basis keeps)
    assert scores == {
        "zebra-river": pytest.approx(0.75, abs=1e-3),
        "zebra-only": pytest.approx(0.5, abs=1e-3),
        "penguins": None,
    }
    # The window's scores moved by weight x z(MaxSim) (+1 and -1 for two passages); the third was not rescored
    before = {hit.citation.doc_id: hit.score for hit in plain.hits}
    after = {hit.citation.doc_id: hit.score for hit in reranked.hits}
    assert after["zebra-river"] == pytest.approx(before["zebra-river"] + 1.0)
    assert after["zebra-only"] == pytest.approx(before["zebra-only"] - 1.0)
    assert after["penguins"] == pytest.approx(before["penguins"])


def test_a_rerank_needs_an_embedder_with_token_vectors(token_index: Path) -> None:
    with open_index(token_index) as reader, pytest.raises(ValueError, match="CITESEARCH_FUSION_RERANK_DEPTH=0"):
        Searcher(reader, HashingEmbedder(), FusionSettings(rerank_depth=5))
    with pytest.raises(ValueError, match="rerank_depth and rerank_weight"):
        FusionSettings(rerank_depth=-1)
