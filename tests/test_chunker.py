"""Chunking: exact spans, units never crossed, the model window never exceeded, overlap as configured."""

from __future__ import annotations

import pytest

from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import Document, Unit
from indexer.embedder import HashingEmbedder
from indexer.loaders import load_documents
from tests.conftest import SEEDS


def _one_unit_doc(text: str, title: str = "T") -> Document:
    return Document(doc_id="d", title=title, text=text, source="d", units=(Unit("article", 0, len(text)),))


def _assert_exact_and_within_units(doc: Document, chunker: Chunker) -> None:
    passages = chunker.chunk(doc)
    assert passages, "a document with text must give passages"
    for passage in passages:
        assert doc.text[passage.char_start : passage.char_end] == passage.text
        assert passage.text == passage.text.strip()
        containing = [
            u for u in doc.units if u.char_start <= passage.char_start and passage.char_end <= u.char_end
        ]
        assert len(containing) == 1, f"passage {passage.ordinal} crosses units"
        assert (containing[0].section, containing[0].comment_no) == (passage.section, passage.comment_no)


def test_seed_passages_are_exact_and_never_cross_units(real_embedder) -> None:
    chunker = Chunker(real_embedder)
    for doc in load_documents([SEEDS]).documents:
        _assert_exact_and_within_units(doc, chunker)


def test_no_seed_passage_exceeds_the_model_window(real_embedder) -> None:
    chunker = Chunker(real_embedder)
    for doc in load_documents([SEEDS]).documents:
        passages = chunker.chunk(doc)
        counts = real_embedder.count_tokens([p.embed_text for p in passages])
        assert max(counts) <= real_embedder.max_tokens


def test_oversized_target_is_split_to_fit_the_real_model_window(real_embedder) -> None:
    # A target far above the model window forces the window check to split passages instead of truncating.
    chunker = Chunker(real_embedder, ChunkerSettings(target_tokens=2000, overlap_tokens=0))
    doc = load_documents([SEEDS / "003_84eea950d14e0b91.txt"]).documents[0]
    passages = chunker.chunk(doc)
    assert chunker.stats.window_splits > 0
    counts = real_embedder.count_tokens([p.embed_text for p in passages])
    assert max(counts) <= real_embedder.max_tokens
    _assert_exact_and_within_units(doc, Chunker(real_embedder, ChunkerSettings(target_tokens=2000, overlap_tokens=0)))
    # Nothing is lost: every sentence character of each unit is inside some passage.
    covered = set()
    for passage in passages:
        covered.update(range(passage.char_start, passage.char_end))
    for unit in doc.units:
        for offset in range(unit.char_start, unit.char_end):
            assert offset in covered or doc.text[offset].isspace()


def test_a_sentence_without_punctuation_longer_than_the_target_is_cut_at_words() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunker = Chunker(HashingEmbedder(), ChunkerSettings(target_tokens=50, overlap_tokens=0))
    passages = chunker.chunk(_one_unit_doc(text))
    assert len(passages) > 5
    assert " ".join(p.text for p in passages) == text  # word-aligned, no gaps, no overlap


@pytest.mark.parametrize("overlap", [0, 20])
def test_overlap_is_whole_sentences_and_only_when_asked(overlap: int) -> None:
    text = " ".join(f"Sentence number {i} says something about topic {i % 7}." for i in range(60))
    chunker = Chunker(HashingEmbedder(), ChunkerSettings(target_tokens=60, overlap_tokens=overlap))
    passages = chunker.chunk(_one_unit_doc(text))
    overlaps = [b.char_start < a.char_end for a, b in zip(passages, passages[1:])]
    assert all(overlaps) if overlap else not any(overlaps)
    for passage in passages:
        assert passage.text.startswith("Sentence") and passage.text.endswith(".")


def test_any_unicode_keeps_exact_spans(real_embedder) -> None:
    text = (
        "مرحبا بالعالم. هذا نص عربي طويل.\n"
        "Emoji 😀👍🏽 and combining e\u0301 marks. A NUL \x00 inside.\n"
        "שלום עולם. Last line without a stop"
    )
    chunker = Chunker(real_embedder, ChunkerSettings(target_tokens=12, overlap_tokens=0))
    doc = _one_unit_doc(text)
    _assert_exact_and_within_units(doc, chunker)


def test_embed_text_carries_the_title_but_the_quote_does_not() -> None:
    doc = _one_unit_doc("Body   text\n\nspread over lines.", title="A Title")
    passage = Chunker(HashingEmbedder()).chunk(doc)[0]
    assert passage.embed_text == "A Title\nBody text spread over lines."
    assert passage.text == "Body   text\n\nspread over lines."
    untitled = Chunker(HashingEmbedder(), ChunkerSettings(title_in_embedding=False)).chunk(doc)[0]
    assert untitled.embed_text == "Body text spread over lines."


def test_invalid_settings_are_rejected_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkerSettings(target_tokens=50, overlap_tokens=50)
    with pytest.raises(ValueError, match="target_tokens"):
        ChunkerSettings(target_tokens=2)
