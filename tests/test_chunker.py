"""Chunking: exact spans, units never crossed, the model window never exceeded, overlap as configured."""

from __future__ import annotations

import itertools

import pytest

from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import Document, Unit
from indexer.loaders import load_documents
from tests.conftest import SEEDS
from tests.fakes import HashingEmbedder


def _one_unit_doc(text: str, title: str = "T") -> Document:
    return Document(doc_id="d", title=title, text=text, source="d", units=(Unit("article", 0, len(text)),))


def _assert_exact_and_within_units(doc: Document, chunker: Chunker) -> None:
    passages = chunker.chunk(doc)
    assert passages, "a document with text must give passages"
    for passage in passages:
        assert doc.text[passage.char_start : passage.char_end] == passage.text
        assert passage.text == passage.text.strip()
        containing = [u for u in doc.units if u.char_start <= passage.char_start and passage.char_end <= u.char_end]
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
    covered: set[int] = set()
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
    overlaps = [b.char_start < a.char_end for a, b in itertools.pairwise(passages)]
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


def test_token_counts_are_exact_and_untruncated_while_other_threads_encode(real_embedder) -> None:
    """Counting must see the whole text, and encoding must still truncate at the window, while both run at once on
    different threads, as in the service when a live update is chunked during searches. (Counting with the model's
    own tokenizer switched its truncation off for everyone: a concurrent encode got 562 tokens and failed.)"""
    import threading

    long_text = "The mitochondrial membrane potential drops before apoptosis in cultured neurons. " * 40
    texts = [long_text, "short", "Ünïcödé and émojis 🙂"]
    reference = real_embedder._model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    expected = [len(ids) for ids in reference]
    assert expected[0] > real_embedder.max_tokens  # the case that matters: longer than the model's window
    stop = threading.Event()
    errors: list[BaseException] = []

    def encode_queries() -> None:
        while not stop.is_set():
            try:
                real_embedder.encode([long_text])  # truncates at the window on the model's own tokenizer
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
                return

    threads = [threading.Thread(target=encode_queries) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        counts = [real_embedder.count_tokens(texts) for _ in range(200)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(count == expected for count in counts)
    assert not errors, errors[0]


def test_fast_sentence_offsets_equal_blingfires_own_wrapper() -> None:
    """indexer.sentences.sentence_offsets maps the native call's byte offsets with numpy; blingfire's Python wrapper
    is the reference, on every line of the seeds, whole seed paragraphs joined, and hand-made non-ASCII text."""
    import blingfire

    from indexer.sentences import sentence_offsets

    lines = [line for path in sorted(SEEDS.glob("*")) for line in path.read_text(encoding="utf-8").splitlines()]
    lines += [" ".join(lines[i : i + 7]) for i in range(0, len(lines), 7)]  # long multi-sentence lines
    lines += [
        "Ünïcödé text. Émojis 🙂 here! And 中文句子。 Then more.",
        "Zero\u200bwidth joiner‍s and combining é marks. Right-to-left: مرحبا بالعالم. End.",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP. Second sentence 🎉🎉. Third.",
        "a",
        " ",
        "Mr. Smith went to Washington. He met Dr. Jones at 5 p.m. yesterday.",
    ]
    checked = 0
    for line in lines:
        if not line.strip():
            continue
        assert sentence_offsets(line) == blingfire.text_to_sentences_and_offsets(line)[1], line
        checked += 1
    assert checked > 50


def test_a_run_longer_than_the_model_window_is_split_never_one_unknown_token(real_embedder) -> None:
    """WordPiece reads a 100+ character word as one [UNK]: a 30,000-character run used to become one passage the
    model saw as a single token. Now it is split to fit the window, and the splits are counted."""
    import random
    import string

    rng = random.Random(3)
    run = "".join(rng.choice(string.ascii_lowercase) for _ in range(30_000))
    doc = _one_unit_doc(f"An ordinary opening sentence about rivers. {run} A closing sentence about lakes.")
    chunker = Chunker(real_embedder)
    passages = chunker.chunk(doc)
    _assert_exact_and_within_units(doc, chunker)
    assert len(passages) > 10 and chunker.stats.window_splits > 0
    counts = real_embedder.count_tokens([p.embed_text for p in passages])
    assert max(counts) <= real_embedder.max_tokens
    assert min(counts[1:-1]) > 20  # every piece of the run is seen as many word pieces, not one [UNK]
    start = doc.text.index(run)
    covered = [False] * len(run)
    for p in passages:
        for i in range(max(p.char_start, start), min(p.char_end, start + len(run))):
            covered[i - start] = True
    assert all(covered)  # nothing of the run is dropped
