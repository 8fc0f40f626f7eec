"""eval beir's BEIR parity (ignore_identical_ids), the plain baseline, query dates, and eval answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citesearch.settings import Settings
from eval.answers import contains_answer, read_answers, run_answers
from eval.beir import load_beir_dataset, run_beir, unreachable_relevant
from tests.fakes import HashingEmbedder

CORPUS = {
    "q-self": ("", "which volcano erupted in iceland this spring"),  # a query that is itself a corpus document
    "d-volcano": ("Volcano", "The Fagradalsfjall volcano in Iceland erupted again in spring, lava reached the valley."),
    "d-bees": ("Bees", "Honey bees dance to tell the hive where flowers are; the waggle dance encodes distance."),
    "d-tea": ("Tea", "Green tea and black tea come from the same plant; black tea leaves are oxidised."),
    "d-tides": ("Tides", "Ocean tides are caused mainly by the gravitational pull of the Moon on the oceans."),
}
QUERIES = [
    ("q-self", "which volcano erupted in iceland this spring", {"d-volcano": 1}, ["Fagradalsfjall"], "2022/06/16"),
    ("q-bees", "how do honey bees tell the hive where flowers are", {"d-bees": 1}, ["waggle dance"], "2022-06-01"),
    ("q-moon", "what causes ocean tides", {"d-tides": 1}, ["penguins"], None),  # an answer no document holds
]


def _dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, (title, text) in CORPUS.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text, _, answers, date in QUERIES:
            metadata = {"answers": answers, **({"question_date": date} if date else {})}
            handle.write(json.dumps({"_id": query_id, "text": text, "metadata": metadata}) + "\n")
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, _, rel, _, _ in QUERIES for d, s in rel.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def news_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    root = tmp_path_factory.mktemp("news-like")
    settings = Settings(eval_dir=root / "eval", reports_dir=root / "reports", answer_min_score=-1.0, _env_file=None)
    return _dataset(root / "data"), settings


@pytest.mark.slow  # ranx compiles its metrics with numba on first use
def test_identical_ids_are_dropped_by_default_and_recorded(news_like: tuple[Path, Settings]) -> None:
    data, settings = news_like
    dataset = load_beir_dataset(data, "test")
    embedder = HashingEmbedder()
    dropped = run_beir(dataset, embedder, settings, mode="bm25")
    kept = run_beir(dataset, embedder, settings, mode="bm25", ignore_identical_ids=False)
    assert kept.rankings["q-self"][0] == "q-self"  # the query finds itself first
    assert "q-self" not in dropped.rankings["q-self"] and dropped.rankings["q-self"][0] == "d-volcano"
    assert dropped.report.settings["ignore_identical_ids"] is True
    assert kept.report.settings["ignore_identical_ids"] is False
    assert dropped.report.metrics["mrr@10"] > kept.report.metrics["mrr@10"]


def test_unreachable_relevant_are_the_judged_relevant_ids_missing_from_the_corpus() -> None:
    qrels = {"q1": {"d1": 1, "gone": 2, "unjudged": 0}, "q2": {"d2": 1, "also-gone": 1}}
    assert unreachable_relevant(qrels, ["d1", "d2"]) == ["also-gone", "gone"]  # grade 0 is not relevant: not named
    assert unreachable_relevant(qrels, ["d1", "d2", "gone", "also-gone"]) == []


def test_relevant_documents_missing_from_the_corpus_are_named_and_still_counted(
    news_like: tuple[Path, Settings],
) -> None:
    data, settings = news_like
    lines = ["query-id\tcorpus-id\tscore", "q-bees\td-bees\t1", "q-moon\td-tides\t1", "q-moon\td-gone\t1"]
    (data / "qrels" / "partial.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial = load_beir_dataset(data, "partial")
    for baseline in (None, "plain-bm25"):
        run = run_beir(partial, HashingEmbedder(), settings, mode="bm25", baseline=baseline)
        named = [note for note in run.report.notes if "not in the corpus" in note]
        assert len(named) == 1 and named[0].startswith("1 judged-relevant document is not") and "(d-gone)" in named[0]
        # Counted as BEIR counts it: the tides article is found, the missing one cannot be.
        assert run.report.per_query["recall@100"]["q-moon"] == 0.5
    complete = run_beir(load_beir_dataset(data, "test"), HashingEmbedder(), settings, mode="bm25")
    assert not [note for note in complete.report.notes if "not in the corpus" in note]


def test_plain_baseline_ranks_whole_documents(news_like: tuple[Path, Settings]) -> None:
    data, settings = news_like
    dataset = load_beir_dataset(data, "test")
    run = run_beir(dataset, HashingEmbedder(), settings, baseline="plain-bm25")
    assert run.report.mode == "plain-bm25" and run.report.index.passages == 0
    assert run.rankings["q-bees"][0] == "d-bees" and run.rankings["q-moon"][0] == "d-tides"
    assert "q-self" not in run.rankings["q-self"]  # parity applies to the baseline too
    assert any("bm25s defaults" in note for note in run.report.notes)
    with pytest.raises(ValueError, match="baseline must be one of"):
        run_beir(dataset, HashingEmbedder(), settings, baseline="plain-rrf")


def test_query_dates_are_read_for_the_recency_prior(news_like: tuple[Path, Settings]) -> None:
    data, _ = news_like
    dataset = load_beir_dataset(data, "test")
    assert dataset.query_dates == {"q-self": "2022-06-16", "q-bees": "2022-06-01"}


def test_answer_matching_folds_case_quotes_and_space() -> None:
    assert contains_answer("Netflix renewed “Squid  Game” on Sunday", ['"squid game"'])
    assert not contains_answer("Netflix renewed a show", ["Squid Game"])
    assert not contains_answer("anything", ["", "  "])


def test_eval_answers_counts_answers_passages_and_nulls(news_like: tuple[Path, Settings]) -> None:
    data, settings = news_like
    dataset = load_beir_dataset(data, "test")
    assert read_answers(data / "queries.jsonl")["q-bees"] == ["waggle dance"]
    run = run_answers(dataset, HashingEmbedder(), settings)
    metrics = run.report.metrics
    assert run.report.kind == "answers" and run.report.queries == 3
    assert metrics["null_rate"] == 0.0  # the threshold is -1 here: every question is answered
    assert metrics["passages_contain@5"] == pytest.approx(2 / 3)  # nobody mentions penguins
    assert metrics["passages_contain@1"] <= metrics["passages_contain@5"]
    assert "q-moon" in {m["id"] for m in run.misses}
    strict = Settings(**{**settings.model_dump(), "answer_min_score": 1.0}, _env_file=None)
    nulls = run_answers(dataset, HashingEmbedder(), strict)
    # at 1.0 only a sentence identical to the question passes: the q-self document, which is no answer
    assert nulls.report.metrics["null_rate"] == pytest.approx(2 / 3) and nulls.report.metrics["answer_contains"] == 0
    assert {m["id"] for m in nulls.misses if m["answer"] is None} == {"q-bees", "q-moon"}
