"""The fusion profile: "auto" takes the long-document or the short-document weights by the index's passages per
document, records what it took and why; guessed titles stay out of what is embedded and indexed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from citesearch.fusion import (
    LONG_DOCUMENT_PASSAGES,
    PROFILE_WEIGHTS,
    WEIGHT_NAMES,
    FusionSettings,
    passages_per_document,
)
from citesearch.search import Searcher, SearchRequest
from citesearch.settings import Settings
from index_store import open_index
from index_store.shapes import searchable_title
from indexer.chunker import Chunker, ChunkerSettings
from indexer.documents import Document, Unit
from indexer.loaders import load_documents
from indexer.pages import parse_page
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder


def _weights(fusion: FusionSettings) -> tuple[float, ...]:
    return tuple(getattr(fusion, name) for name in WEIGHT_NAMES)


def _profile(name: str) -> tuple[float, ...]:
    return tuple(asdict(PROFILE_WEIGHTS[name]).values())


def test_the_two_profiles_differ_and_short_is_the_default_weights() -> None:
    assert _profile("short") != _profile("long")
    assert _weights(FusionSettings()) == _profile("short")


@pytest.mark.parametrize(
    ("per_document", "chosen"),
    [
        (None, "short"),
        (1.0, "short"),
        (LONG_DOCUMENT_PASSAGES - 0.01, "short"),
        (LONG_DOCUMENT_PASSAGES, "long"),
        (15.0, "long"),
    ],
)
def test_auto_takes_the_profile_the_document_length_calls_for(per_document: float | None, chosen: str) -> None:
    resolved = FusionSettings(profile="auto", candidates=300).resolved(per_document)
    assert resolved.chosen == chosen and _weights(resolved) == _profile(chosen)
    assert resolved.profile == "auto" and resolved.candidates == 300  # only the weights change
    assert resolved.reason is not None and resolved.reason.startswith("auto:")
    assert resolved.resolved(per_document) == resolved  # resolving twice changes nothing


def test_a_named_profile_ignores_the_length_and_custom_keeps_its_weights() -> None:
    assert _weights(FusionSettings(profile="long").resolved(1.0)) == _profile("long")
    custom = FusionSettings(dense_weight=0.7, bm25_weight=0.3, context_weight=0.0)
    assert custom.profile == "custom" and _weights(custom.resolved(50.0)) == _weights(custom)
    assert custom.resolved(50.0).rerank_depth == 0  # custom: no rerank unless set
    # A record written before profiles existed keeps the weights it recorded.
    old = {"method": "convex", "dense_weight": 0.5, "bm25_weight": 0.2, "context_weight": 0.3}
    assert _weights(FusionSettings.from_dict(old).resolved(50.0)) == _weights(FusionSettings.from_dict(old))
    with pytest.raises(ValueError, match="fusion profile must be one of"):
        FusionSettings(profile="medium")  # type: ignore[arg-type]


def test_passages_per_document_of_counts() -> None:
    assert passages_per_document({"documents": 4, "passages": 30}) == 7.5
    assert passages_per_document({"documents": 0, "passages": 0}) is None
    assert passages_per_document({}) is None


def test_settings_ask_for_auto_unless_a_weight_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().fusion_settings().profile == "auto"
    assert Settings(fusion_bm25_weight=0.3).fusion_settings().profile == "custom"
    assert Settings(fusion_profile="long", fusion_bm25_weight=0.3).fusion_settings().profile == "long"
    monkeypatch.setenv("CITESEARCH_FUSION_DENSE_WEIGHT", "0.3")  # from the environment, as operators set it
    fusion = Settings().fusion_settings()
    assert fusion.profile == "custom" and fusion.dense_weight == 0.3


def _doc(doc_id: str, sentences: int) -> Document:
    text = " ".join(f"Sentence {i} of {doc_id} is about zebras and rivers number {i}." for i in range(sentences))
    return Document(doc_id, f"Title {doc_id}", text, f"{doc_id}.txt", (Unit("article", 0, len(text)),))


@pytest.mark.parametrize(("sentences", "chosen"), [(1, "short"), (20, "long")])
def test_an_index_searches_with_the_profile_its_documents_call_for_and_records_why(
    tmp_path: Path, sentences: int, chosen: str
) -> None:
    embedder = HashingEmbedder()
    options = BuildOptions(
        chunker=ChunkerSettings(target_tokens=16, overlap_tokens=0),
        record={"fusion": Settings().fusion_settings().to_dict()},
    )
    apply_changes(tmp_path, embedder, upserts=[_doc(d, sentences) for d in "abc"], options=options)
    with open_index(tmp_path) as reader:
        per_document = reader.manifest.counts["passages"] / reader.manifest.counts["documents"]
        assert (per_document >= LONG_DOCUMENT_PASSAGES) == (chosen == "long")
        searcher = Searcher(reader, embedder)
        assert searcher.fusion.chosen == chosen and _weights(searcher.fusion) == _profile(chosen)
        recorded = reader.manifest.extra["fusion_choice"]
        assert recorded["chosen"] == chosen and recorded["profile"] == "auto"
        assert f"{per_document:.1f} passages" in recorded["reason"]
        assert tuple(recorded[name] for name in WEIGHT_NAMES) == _profile(chosen)
        result = searcher.search(SearchRequest("zebras rivers", k=3, explain=True))
        assert result.hits  # the resolved weights search


def test_a_guessed_title_is_shown_but_not_embedded_or_indexed(tmp_path: Path) -> None:
    long_sentence = "The senate passed the budget bill on Tuesday " + "after a long and bitter debate " * 5 + "."
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "qzxvorp", "text": long_sentence},  # no headline, no short first sentence: the id is the title
        {"_id": "k-2", "title": "Vorpal report", "text": "The committee met again on Friday to discuss the harbour."},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    docs = {d.doc_id: d for d in load_documents([corpus]).documents}
    guessed, given = docs["qzxvorp"], docs["k-2"]
    assert guessed.title == "qzxvorp" and searchable_title(guessed.title, guessed.metadata) == ""
    assert searchable_title(given.title, given.metadata) == "Vorpal report"
    embedder = HashingEmbedder()
    assert all("qzxvorp" not in p.embed_text for p in Chunker(embedder).chunk(guessed))
    assert all(p.embed_text.startswith("Vorpal report\n") for p in Chunker(embedder).chunk(given))
    apply_changes(tmp_path / "index", embedder, upserts=list(docs.values()), options=BuildOptions())
    with open_index(tmp_path / "index") as reader:
        searcher = Searcher(reader, embedder)
        assert [h.citation.doc_id for h in searcher.search(SearchRequest("vorpal", k=5, mode="bm25")).hits] == ["k-2"]
        assert searcher.search(SearchRequest("qzxvorp", k=5, mode="bm25")).hits == []  # the id is not indexed
        hits = searcher.search(SearchRequest("senate budget", k=5, mode="bm25")).hits
        assert hits and hits[0].citation.title == "qzxvorp"  # but it is what the citation shows


@pytest.mark.parametrize(
    ("text", "title", "guessed"),
    [
        ("Short body of the page.", "From jsonl", False),  # a title the source gives
        ("Headline:\nThe marked headline\n\nThe body text of the page follows here.", None, False),  # a marked one
        ("Yerevan hosted a chess festival. It lasted a week.", None, True),  # the first sentence
        ("x" * 300, None, True),  # nothing that reads as a title: the fallback
    ],
)
def test_parse_page_says_when_its_title_is_a_guess(text: str, title: str | None, guessed: bool) -> None:
    parsed = parse_page(text, fallback_title="stem", title=title)
    assert parsed.title_guessed is guessed
