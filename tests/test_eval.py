"""The evaluation harness: ranx against hand computation, the passage-to-document rule, the question matching rule,
dataset errors, an end-to-end BEIR run on a tiny generated dataset, and the seed question set."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from citesearch.cli import main
from citesearch.search import Citation, Hit, Searcher
from citesearch.settings import Settings
from eval.beir import corpus_fingerprint, load_beir_dataset, prepare_index, run_beir
from eval.metrics import BEIR_METRICS, evaluate_rankings, rank_scores, success_metrics
from eval.questions import (
    PACKAGED_QUESTIONS,
    LabelledQuestion,
    QuestionSetError,
    Span,
    answer_spans,
    answers_question,
    load_questions,
    run_questions,
)
from eval.ranking import best_passage_ranking
from eval.report import LatencySummary, compare_reports, format_comparison, load_report, write_report
from eval.tune import default_grid
from eval.tune import main as tune_main
from index_store import current_version, list_versions, open_index
from indexer.documents import Document, Unit
from indexer.pipeline import BuildOptions, apply_changes
from tests.conftest import SEED_PAGE


# -- metrics -----------------------------------------------------------------------------------------------------
def _dcg(gains: list[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


@pytest.mark.slow  # ranx compiles its metrics with numba on first use (about 11 s)
def test_ranx_agrees_with_hand_computed_ndcg_recall_and_mrr() -> None:
    qrels = {
        "q1": {"a": 2, "b": 1},  # graded: a counts twice as much as b
        "q2": {"d": 1, "g": 1},  # g is never retrieved
        "q3": {"h": 1},  # nothing retrieved at all
        "q4": {"z": 0},  # no relevant document: not scored
        "q5": {"r": 1},  # relevant at rank 11: counts for Recall@100 only
    }
    rankings = {
        "q1": ["x", "a", "y", "b"],
        "q2": ["e", "f", "d"],
        "q5": [f"n{i}" for i in range(10)] + ["r"],
        "unjudged": ["a"],  # ignored
    }
    ndcg = {
        "q1": _dcg([0, 2, 0, 1]) / _dcg([2, 1]),  # (2/log2 3 + 1/log2 5) / (2 + 1/log2 3)
        "q2": _dcg([0, 0, 1]) / _dcg([1, 1]),  # (1/2) / (1 + 1/log2 3)
        "q3": 0.0,
        "q5": 0.0,
    }
    mrr = {"q1": 1 / 2, "q2": 1 / 3, "q3": 0.0, "q5": 0.0}
    recall = {"q1": 1.0, "q2": 1 / 2, "q3": 0.0, "q5": 1.0}
    result = evaluate_rankings(qrels, rankings)
    assert result.queries == 4 and result.queries_without_relevant == 1
    assert list(result.metrics) == list(BEIR_METRICS)
    assert result.metrics["ndcg@10"] == pytest.approx(sum(ndcg.values()) / 4, abs=1e-9)
    assert result.metrics["mrr@10"] == pytest.approx(sum(mrr.values()) / 4, abs=1e-9)
    assert result.metrics["recall@100"] == pytest.approx(sum(recall.values()) / 4, abs=1e-9)
    # The hand values themselves, so a wrong formula above cannot agree with ranx by accident.
    assert ndcg["q1"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3)))
    assert ndcg["q1"] == pytest.approx(0.6433, abs=1e-4) and ndcg["q2"] == pytest.approx(0.3066, abs=1e-4)


@pytest.mark.slow  # ranx compiles its metrics with numba on first use (about 11 s)
def test_rank_scores_keep_our_order_even_for_tied_retrieval_scores() -> None:
    scores = rank_scores(["c", "a", "b"])
    assert sorted(scores, key=lambda d: scores[d], reverse=True) == ["c", "a", "b"]
    # ranx would order tied scores by its own rule; with rank-derived scores the first-listed document wins.
    result = evaluate_rankings({"q": {"a": 1}}, {"q": ["c", "a", "b"]}, ("mrr@10",))
    assert result.metrics["mrr@10"] == pytest.approx(0.5)


def test_success_metrics_by_hand() -> None:
    metrics = success_metrics([1, 3, None, 7, 11])
    assert metrics == pytest.approx({"success@1": 1 / 5, "success@5": 2 / 5, "mrr@10": (1 + 1 / 3 + 1 / 7) / 5})


# -- passage hits to documents -----------------------------------------------------------------------------------
def _hit(
    rank: int, doc_id: str, passage_id: int, score: float, start: int = 0, end: int = 10, section: str = "article"
) -> Hit:
    citation = Citation(
        doc_id=doc_id, title=doc_id, source=doc_id, section=section, comment_no=None, char_start=start, char_end=end
    )
    return Hit(rank=rank, score=score, passage_id=passage_id, text="x", citation=citation)


def test_a_document_ranks_at_its_best_passage() -> None:
    hits = [
        _hit(1, "A", 11, 0.9),
        _hit(2, "B", 21, 0.8),
        _hit(3, "A", 12, 0.7),
        _hit(4, "C", 31, 0.6),
        _hit(5, "B", 22, 0.5),
    ]
    ranking = best_passage_ranking(hits, depth=100)
    assert [(d.doc_id, d.rank, d.passage_id, d.score) for d in ranking] == [
        ("A", 1, 11, 0.9),
        ("B", 2, 21, 0.8),
        ("C", 3, 31, 0.6),
    ]
    assert [d.doc_id for d in best_passage_ranking(hits, depth=2)] == ["A", "B"]


# -- question labels ---------------------------------------------------------------------------------------------
def _question(section: str | None = "article") -> LabelledQuestion:
    return LabelledQuestion("q", "?", "doc", section, ("twenty characters!!!",))


def test_answer_matching_needs_half_the_answer_in_the_labelled_doc_and_section() -> None:
    text = "x" * 100 + "twenty characters!!!" + "y" * 100 + "twenty characters!!!"
    spans = answer_spans(text, ["twenty characters!!!"])
    assert spans == [Span(100, 120), Span(220, 240)]
    q = _question()
    cite = _hit(1, "doc", 1, 1.0, 110, 300).citation  # covers 10 of 20 characters of the first occurrence
    assert answers_question(cite, q, spans[:1])
    assert not answers_question(_hit(1, "doc", 1, 1.0, 111, 200).citation, q, spans[:1])  # 9 of 20
    assert answers_question(_hit(1, "doc", 1, 1.0, 0, 105).citation, q, spans[:1]) is False  # 5 of 20
    assert answers_question(_hit(1, "doc", 1, 1.0, 200, 235).citation, q, spans)  # second occurrence, 15 of 20
    assert not answers_question(_hit(1, "other", 1, 1.0, 0, 400).citation, q, spans)  # another document
    in_comment = _hit(1, "doc", 1, 1.0, 0, 400, section="comment").citation
    assert not answers_question(in_comment, q, spans)  # right text, wrong section
    assert answers_question(in_comment, _question(section=None), spans)  # no section labelled: any part


def test_question_file_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.dumps({"id": "a", "question": "q?", "doc_id": "d", "section": None, "answers": ["x"]})
    path = tmp_path / "qs.jsonl"
    path.write_text(good + "\n" + json.dumps({"id": "b", "question": "q?", "doc_id": "d", "answers": []}) + "\n")
    with pytest.raises(QuestionSetError, match=r"qs\.jsonl:2: 'answers'"):
        load_questions(path)
    path.write_text(good + "\n\n{not json\n")
    assert main(["eval", "questions", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("citesearch: error: ") and "qs.jsonl:3: not JSON" in err and "\n" not in err


def test_packaged_question_set_is_valid() -> None:
    questions = load_questions(PACKAGED_QUESTIONS)
    assert len(questions) == 34 and len({q.id for q in questions}) == 34


# -- BEIR datasets -----------------------------------------------------------------------------------------------
TOPICS = [
    ("Volcanoes", "Volcanic eruptions eject ash and lava; magma chambers beneath the crust feed them."),
    ("Honeybees", "Honeybees communicate the location of flowers to the hive with a waggle dance."),
    ("Chess openings", "The Sicilian Defence is a chess opening answering 1.e4 with 1...c5."),
    ("Sourdough bread", "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria."),
    ("Penguins", "Emperor penguins breed during the Antarctic winter and males incubate the egg on their feet."),
    ("Solar panels", "Photovoltaic solar panels convert sunlight into electricity with silicon cells."),
    ("Jazz", "Bebop jazz of the 1940s featured fast tempos and complex chord progressions."),
    ("Coral reefs", "Coral reefs bleach when warm water makes corals expel their symbiotic algae."),
    ("Roman aqueducts", "Roman aqueducts carried water into cities using gravity and gentle gradients."),
    ("Vaccines", "Vaccines train the immune system to recognise a pathogen without causing the disease."),
    ("Black holes", "A black hole's event horizon is the boundary beyond which light cannot escape."),
    ("Tea", "Green tea and black tea come from the same plant; black tea leaves are oxidised."),
    ("Glaciers", "Glaciers carve U-shaped valleys as the moving ice grinds the bedrock."),
    ("Bicycles", "A bicycle derailleur moves the chain between sprockets to change gears."),
    ("Octopuses", "Octopuses change skin colour using chromatophores to camouflage themselves."),
    ("Compilers", "A compiler translates source code into machine code, optimising it on the way."),
    ("Tides", "Ocean tides are caused mainly by the gravitational pull of the Moon."),
    ("Origami", "Origami is the art of folding a single sheet of paper into a sculpture without cuts."),
    ("Earthquakes", "Earthquakes release stress built up where tectonic plates lock along a fault."),
    ("Saffron", "Saffron is harvested by hand from the stigmas of the crocus flower."),
]
QUERIES = {
    "q1": ("How do bees tell each other where flowers are?", {"d1": 1}),
    "q2": ("What causes coral bleaching?", {"d7": 2, "d0": 0}),
    "q3": ("Why does the Moon cause tides in the ocean?", {"d16": 1}),
    "q4": ("how is saffron collected", {"d19": 1}),
    "q5": ("What makes sourdough rise?", {"d3": 1, "d11": 1}),  # d11 (tea) is a wrong label: recall 0.5
}


def _write_tiny_beir(root: Path, *, changed: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for i, (title, body) in enumerate(TOPICS):
            text = body + " Pyroclastic flows are the deadliest hazard." if changed and i == 0 else body
            handle.write(json.dumps({"_id": f"d{i}", "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, (text, _) in QUERIES.items():
            handle.write(json.dumps({"_id": query_id, "text": text, "metadata": {}}) + "\n")
        handle.write(json.dumps({"_id": "q-unjudged", "text": "not in the split"}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{s}" for q, (_, judged) in QUERIES.items() for d, s in judged.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_tiny_beir(tmp_path_factory.mktemp("beir") / "tiny")


def test_beir_loader_reads_the_split(tiny_beir: Path) -> None:
    dataset = load_beir_dataset(tiny_beir, "test")
    assert dataset.name == "tiny" and dataset.split == "test"
    assert list(dataset.queries) == list(QUERIES)  # the unjudged query is not part of the split
    assert dataset.qrels["q2"] == {"d7": 2, "d0": 0}


@pytest.mark.parametrize(
    ("breakage", "args", "expected"),
    [
        (None, ["--split", "dev"], "no qrels for split 'dev'"),
        ("qrels/test.tsv", ["--split", "test"], "qrels/test.tsv is missing"),
        ("corpus.jsonl", ["--split", "test"], "corpus.jsonl is missing"),
        ("queries.jsonl", ["--split", "test"], "queries.jsonl is missing"),
    ],
    ids=["unknown-split", "missing-qrels", "missing-corpus", "missing-queries"],
)
def test_beir_dataset_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage: str | None, args: list[str], expected: str
) -> None:
    root = _write_tiny_beir(tmp_path / "ds")
    if breakage:
        (root / breakage).unlink()
    assert main(["eval", "beir", str(root), *args, "--index-dir", str(tmp_path / "idx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("citesearch: error: ") and expected in err and err.count("\n") == 1
    if breakage is None:
        assert "available splits: test" in err
    assert not (tmp_path / "idx").exists()  # failed before indexing anything


def test_beir_malformed_qrels_line_is_named(tmp_path: Path) -> None:
    root = _write_tiny_beir(tmp_path / "ds")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.tsv:2: expected 3 tab-separated columns"):
        load_beir_dataset(root, "test")


def test_eval_refuses_to_replace_an_index_it_did_not_build(tmp_path: Path, hashing_embedder) -> None:
    doc = Document("x", "x", "some text here.", "x", (Unit("article", 0, 15),))
    apply_changes(tmp_path / "idx", hashing_embedder, upserts=[doc], options=BuildOptions())
    before = current_version(tmp_path / "idx")
    with pytest.raises(ValueError, match="did not build"):
        prepare_index(tmp_path / "idx", "tiny", [doc], hashing_embedder, Settings(_env_file=None))
    assert current_version(tmp_path / "idx") == before


def test_beir_end_to_end_reuses_the_index_and_compares(
    tiny_beir: Path,
    tmp_path: Path,
    real_embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(_env_file=None, eval_dir=tmp_path / "eval", reports_dir=tmp_path / "reports")
    dataset = load_beir_dataset(tiny_beir, "test")
    index_dir = tmp_path / "eval" / "tiny"

    first = run_beir(dataset, real_embedder, settings, mode="dense")
    report = first.report
    assert not first.prepared.reused and report.index.build_seconds is not None and report.index.build_seconds > 0
    assert report.index.index_dir == str(index_dir) and report.index.documents == 20
    assert list(report.metrics) == ["ndcg@10", "recall@100", "mrr@10"]
    assert report.mode == "dense" and report.queries == 5 and report.split == "test"
    # Easy queries: every right document is first; q5's wrong second label (tea) ranks low, so nDCG < 1. All 20
    # documents are ranked (fewer than 100), so Recall@100 is 1.
    assert report.metrics["mrr@10"] == pytest.approx(1.0)
    assert report.metrics["recall@100"] == pytest.approx(1.0)
    assert 0.85 < report.metrics["ndcg@10"] < 1.0
    assert first.rankings["q1"][0] == "d1" and len(first.rankings["q1"]) == 20  # every document, each once
    assert 0 < report.latency_ms.p50 <= report.latency_ms.p99
    assert report.settings["model"] == real_embedder.name and report.settings["per_doc_cap"] == 1
    assert report.machine["cpu_count"] and report.timestamp
    versions = list_versions(index_dir)

    second = run_beir(dataset, real_embedder, settings, mode="dense")
    assert second.prepared.reused and second.report.index.build_seconds is None
    assert list_versions(index_dir) == versions  # nothing was written
    assert second.report.metrics == pytest.approx(report.metrics)

    changed = load_beir_dataset(_write_tiny_beir(tmp_path / "changed" / "tiny", changed=True), "test")
    third = run_beir(changed, real_embedder, settings, mode="dense", index_dir=index_dir)
    assert not third.prepared.reused and "corpus changed" in third.prepared.reason
    assert (third.prepared.build["changed"], third.prepared.build["unchanged"]) == (1, 19)  # incremental rebuild
    assert third.prepared.build["passages_embedded"] == 1

    # The human output of the CLI, with --compare, without loading the model a second time.
    earlier = write_report(report, tmp_path / "earlier")
    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    code = main(
        [
            "eval",
            "beir",
            str(tiny_beir),
            "--split",
            "test",
            "--mode",
            "dense",
            "--index-dir",
            str(tmp_path / "eval" / "tiny"),
            "--compare",
            str(earlier),
            "--reports-dir",
            str(tmp_path / "r2"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| ndcg@10 |" in out and "| latency p99 |" in out
    assert "compared with" in out and "| metric | before | now | delta |" in out
    # Back to the original corpus (rebuilt, from the cache): the same figures as the first run.
    assert "| mrr@10 | 1.0000 | 1.0000 | +0.0000 |" in out
    written = list((tmp_path / "r2").glob("beir-tiny-test-dense-*.json"))
    assert len(written) == 1 and load_report(written[0]).metrics.keys() == report.metrics.keys()


def test_tune_replays_the_default_as_eval_beir_scores_it_and_cross_validates(
    tiny_beir: Path,
    tmp_path: Path,
    real_embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(_env_file=None)
    hybrid = run_beir(load_beir_dataset(tiny_beir, "test"), real_embedder, settings, index_dir=tmp_path / "idx")
    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    assert tune_main([str(tiny_beir), "--split", "test", "--index-dir", str(tmp_path / "idx"), "--folds", "2"]) == 0
    captured = capsys.readouterr()
    output = json.loads(captured.out)
    default = output["best"][0]
    assert default["fusion"] == "default" and default["settings"]["chosen"] == "short"  # one passage a document
    # The offline replay of the default ranks exactly as the real search path did
    assert default["ndcg@10"] == pytest.approx(hybrid.report.metrics["ndcg@10"])
    with open_index(tmp_path / "idx") as reader:
        resolved = Searcher(reader, real_embedder, settings.fusion_settings()).fusion
    assert output["grid_points"] == len(default_grid(resolved))
    validated = output["cross_validation"]
    assert validated["folds"] == 2 and sum(c["held_out_queries"] for c in validated["choices"]) == 5
    assert validated["baseline_kept"] == sum(c["chosen"] == 0 for c in validated["choices"])
    assert validated["in_sample_best_mean"] >= max(validated["held_out_mean"], validated["baseline_mean"]) - 1e-9
    assert "cross-validated over 2 folds: choosing by this grid gives nDCG@10" in captured.err
    # Too many folds for the queries is refused before the grid runs, in one line
    with pytest.raises(SystemExit) as refused:
        tune_main([str(tiny_beir), "--split", "test", "--index-dir", str(tmp_path / "idx"), "--folds", "6"])
    assert refused.value.code == 2 and "6 folds need at least 6 queries, got 5" in capsys.readouterr().err


@pytest.mark.subprocess
def test_beir_cli_json_on_the_tiny_dataset(tiny_beir: Path, tmp_path: Path, real_embedder) -> None:
    """The one subprocess run: the documented --json shape, a report file, and --compare deltas."""
    settings = Settings(_env_file=None)
    earlier_run = run_beir(
        load_beir_dataset(tiny_beir, "test"), real_embedder, settings, mode="dense", index_dir=tmp_path / "idx"
    )
    earlier = write_report(earlier_run.report, tmp_path / "earlier")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "citesearch.cli",
            "eval",
            "beir",
            str(tiny_beir),
            "--split",
            "test",
            "--mode",
            "dense",
            "--index-dir",
            str(tmp_path / "idx"),
            "--reports-dir",
            str(tmp_path / "reports"),
            "--json",
            "--compare",
            str(earlier),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["metrics"]) == {"ndcg@10", "recall@100", "mrr@10"}
    assert data["index"]["reused"] is True  # built by the library call above with the same settings
    assert set(data["latency_ms"]) == {"p50", "p99", "mean"}
    assert data["settings"]["chunker"] and data["settings"]["mode"] == "dense"
    assert Path(data["report_path"]).is_file()
    deltas = data["comparison"]["deltas"]
    assert deltas["ndcg@10"]["delta"] == pytest.approx(0.0)
    assert deltas["ndcg@10"]["before"] == pytest.approx(earlier_run.report.metrics["ndcg@10"])
    assert "latency_p50_ms" in deltas


# -- the seed question set ---------------------------------------------------------------------------------------
def test_seed_questions_in_dense_mode(
    seed_index, tmp_path: Path, real_embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index_dir, _ = seed_index
    questions = load_questions(PACKAGED_QUESTIONS)
    with open_index(index_dir) as reader:
        run = run_questions(Searcher(reader, real_embedder), questions, dataset="seed_questions", mode="dense")
    metrics = run.report.metrics
    assert list(metrics) == ["success@1", "success@5", "mrr@10"]
    assert metrics["success@1"] <= metrics["success@5"] and metrics["success@1"] <= metrics["mrr@10"]
    assert metrics["success@5"] >= 0.8  # the seed questions are answerable; far lower means search broke
    assert len(run.report.misses) == round((1 - metrics["success@1"]) * len(questions))

    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    assert (
        main(["eval", "questions", "--index-dir", str(index_dir), "--mode", "dense", "--reports-dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    for name in ("success@1", "success@5", "mrr@10"):
        assert f"| {name} | {metrics[name]:.4f} |" in out
    for miss in run.report.misses:
        assert f"  {miss['id']}: " in out
    assert "misses" in out
    assert len(list(tmp_path.glob("questions-seed_questions-dense-*.json"))) == 1


def test_questions_about_documents_not_in_the_index_fail_clearly(seed_index, real_embedder) -> None:
    wrong = [
        LabelledQuestion("x1", "anything?", "no-such-doc.txt", None, ("text",)),
        LabelledQuestion("x2", "anything?", SEED_PAGE, "article", ("words the page never says",)),
    ]
    with open_index(seed_index[0]) as reader, pytest.raises(QuestionSetError) as caught:
        run_questions(Searcher(reader, real_embedder), wrong, dataset="x", mode="dense")
    message = str(caught.value)
    assert "x1: document 'no-such-doc.txt' is not in index" in message and "x2: no answer occurs" in message


def test_reports_round_trip_and_compare(tmp_path: Path) -> None:
    from eval.report import EvalReport, IndexInfo

    def report(ndcg: float, p50: float) -> EvalReport:
        return EvalReport(
            kind="beir",
            dataset="d",
            split="test",
            mode="dense",
            metrics={"ndcg@10": ndcg, "recall@100": 0.9, "mrr@10": 0.5},
            latency_ms=LatencySummary(p50, p50 * 2, p50),
            queries=10,
            index=IndexInfo("idx", "v000001", 20, 30, reused=False, build_seconds=1.5),
            settings={},
        )

    before = load_report(write_report(report(0.5, 10.0), tmp_path))
    comparison = compare_reports(report(0.55, 12.0), before, "old.json")
    deltas = {d.name: d.delta for d in comparison.deltas}
    assert deltas["ndcg@10"] == pytest.approx(0.05) and deltas["recall@100"] == pytest.approx(0.0)
    assert deltas["latency_p50_ms"] == pytest.approx(2.0)
    text = format_comparison(comparison)
    assert "| ndcg@10 | 0.5000 | 0.5500 | +0.0500 |" in text and "| latency_p50_ms | 10.0 | 12.0 | +2.0 |" in text
    with pytest.raises(ValueError, match="does not exist"):
        load_report(tmp_path / "nope.json")


def test_fingerprint_matches_what_the_index_records(tmp_path: Path, hashing_embedder) -> None:
    docs = [Document(f"d{i}", "t", f"text number {i}.", "s", (Unit("article", 0, 15),)) for i in range(3)]
    apply_changes(tmp_path / "idx", hashing_embedder, upserts=docs, options=BuildOptions())
    with open_index(tmp_path / "idx") as reader:
        assert corpus_fingerprint(list(reversed(docs))) == reader.manifest.corpus_fingerprint
