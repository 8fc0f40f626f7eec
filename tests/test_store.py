"""The storage seam (citesearch/store.py): the searcher reaches storage only through a ``SearchStore``, and the
local one gives exactly what the reader holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citesearch.part_evidence import PartLayout, PartVectors
from citesearch.search import Searcher, SearchRequest
from citesearch.store import LocalStore, SearchFilter
from index_store import IndexReader, open_index
from indexer.documents import Document, Unit
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder


def _doc(doc_id: str, body: str, comment: str) -> Document:
    text = f"{body}\n\n{comment}"
    units = (Unit("article", 0, len(body)), Unit("comment", len(body) + 2, len(text), 1))
    return Document(doc_id=doc_id, title=doc_id, text=text, source=doc_id, units=units)


@pytest.fixture
def reader(tmp_path: Path) -> Any:
    docs = [
        _doc("a", "Zebras graze on the savanna near the river.", "Lions hunt zebras at night."),
        _doc("b", "Penguins live in Antarctica and swim in cold water.", "Penguins cannot fly."),
    ]
    apply_changes(tmp_path, HashingEmbedder(), upserts=docs, options=BuildOptions())
    opened = open_index(tmp_path)
    yield opened
    opened.close()


def test_local_store_resolves_filters_to_the_readers_ids(reader: IndexReader) -> None:
    store = LocalStore(reader)
    comments = store.resolve(SearchFilter(section="comment"))
    assert comments.allowed_ids is not None
    assert comments.allowed_ids.tolist() == reader.passage_ids(section="comment").tolist()
    assert store.resolve(SearchFilter()).everything
    assert store.resolve(SearchFilter(doc_id="nope")).nothing
    rows = store.passages(comments.allowed_ids.tolist())
    assert {row.section for row in rows} == {"comment"}


def test_local_store_keyword_scores_are_the_indexs(reader: IndexReader) -> None:
    store, keyword = LocalStore(reader), reader.keyword
    assert keyword is not None
    query = store.keyword_query("penguins fly", with_context=True)
    bm25, context = query.scores(keyword.passage_ids)
    np.testing.assert_array_equal(bm25, keyword.scores("penguins fly"))
    assert context is not None
    top = query.top(1, store.resolve(SearchFilter()), None)
    assert top.ids.tolist() == [int(keyword.passage_ids[int(np.argmax(bm25))])]


class _ReaderWithParts:
    """A reader that keeps its own part layout and part vectors, as the segmented reader does."""

    def __init__(self, reader: IndexReader) -> None:
        self._reader = reader
        keyword = reader.keyword
        assert keyword is not None and keyword.context is not None
        self.layout = PartLayout.of(keyword.context.part_of)
        # Deliberately different from what LocalStore would derive: each part's mean is the first axis.
        means = np.zeros((len(self.layout.starts) - 1, reader.vectors.dim), dtype=np.float32)
        means[:, 0] = 1.0
        self.vectors_table = PartVectors(means)
        self.calls = 0

    def part_layout(self) -> PartLayout:
        self.calls += 1
        return self.layout

    def part_vectors(self) -> PartVectors:
        self.calls += 1
        return self.vectors_table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def test_local_store_uses_the_readers_part_tables_when_it_has_them(reader: IndexReader) -> None:
    wrapped = _ReaderWithParts(reader)
    store = LocalStore(wrapped)  # type: ignore[arg-type]
    query = np.zeros((1, reader.vectors.dim), dtype=np.float32)
    query[0, 0] = 1.0
    assert reader.keyword is not None
    scores = store.part_scores(reader.keyword.passage_ids, query)
    assert scores is not None and wrapped.calls == 2
    np.testing.assert_allclose(scores.mean, 1.0)  # the reader's table, not one derived from the vectors
    derived = LocalStore(reader).part_scores(reader.keyword.passage_ids, query)
    assert derived is not None and not np.allclose(derived.mean, 1.0)


def test_searcher_reads_through_the_store(reader: IndexReader) -> None:
    searcher = Searcher(LocalStore(reader), HashingEmbedder())
    assert searcher.reader is reader and searcher.index_version == reader.version
    result = searcher.search(SearchRequest("penguins", k=3, section="comment"))
    assert result.hits and all(h.citation.section == "comment" for h in result.hits)
