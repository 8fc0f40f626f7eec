"""The offline late-interaction measurement (eval/late_interaction.py): a real run on the tiny BEIR set whose baseline
is the figure ``eval beir`` prints and whose reranked figure is the one the searcher's own rerank gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citesearch.settings import Settings
from eval.beir import load_beir_dataset, run_beir
from eval.late_interaction import TokenEncoder
from eval.late_interaction import main as late_main
from tests.test_eval import _write_tiny_beir


def test_a_missing_index_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _write_tiny_beir(tmp_path / "ds")
    assert late_main([str(dataset), "--split", "test", "--index-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err == f"eval.late_interaction: error: no index in {tmp_path / 'none'}; build it with citesearch eval beir\n"
    for bad, message in ((["--weights", "one,two"], "--weights must be numbers"), (["--folds", "1"], "--folds must")):
        with pytest.raises(SystemExit) as refused:
            late_main([str(dataset), *bad])
        assert refused.value.code == 2 and message in capsys.readouterr().err


def test_token_vectors_pool_into_the_models_sentence_vector(real_embedder) -> None:
    """The token vectors are the ones the model mean-pools into a passage's vector, not some other layer."""
    texts = ["Aspirin lowers the risk of a second heart attack.", "Short text"]
    tokens = TokenEncoder(real_embedder).encode(texts)
    pooled = np.stack([t.astype(np.float32).mean(axis=0) for t in tokens])
    sentence = real_embedder.encode(texts)
    # Unit-length tokens pool to a slightly different direction than the raw ones; still the same vector
    cosine = np.sum(pooled * sentence, axis=1) / np.linalg.norm(pooled, axis=1)
    assert cosine.min() > 0.95


def test_a_real_run_reports_the_hybrid_as_eval_beir_does_and_weight_zero_changes_nothing(
    tmp_path: Path, real_embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _write_tiny_beir(tmp_path / "tiny")
    settings = Settings(_env_file=None)
    hybrid = run_beir(load_beir_dataset(dataset, "test"), real_embedder, settings, index_dir=tmp_path / "idx")
    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    argv = [str(dataset), "--split", "test", "--index-dir", str(tmp_path / "idx"), "--depth", "3", "--weights", "0,2"]
    assert late_main([*argv, "--folds", "2"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    # Choosing between the hybrid and the two weights, cross-validated: every query held out once
    validated = report["cross_validation"]
    assert validated["folds"] == 2 and sum(c["held_out_queries"] for c in validated["choices"]) == 5
    assert "cross-validated over 2 folds" in captured.err
    assert report["hybrid"]["ndcg@10"] == pytest.approx(hybrid.report.metrics["ndcg@10"])
    unchanged, weighted = report["late_interaction"]
    assert unchanged["weight"] == 0.0 and unchanged["ndcg@10"] == pytest.approx(report["hybrid"]["ndcg@10"])
    assert weighted["weight"] == 2.0 and 0.0 <= weighted["ndcg@10"] <= 1.0
    assert report["depth"] == 3 and report["passages_encoded"] > 0


def test_the_searchers_own_rerank_scores_what_the_offline_measure_says(
    tmp_path: Path, real_embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``CITESEARCH_FUSION_RERANK_DEPTH`` through the real search path (``eval beir``) gives the figure the offline
    command prints for the same depth and weight: one rerank, two ways of running it."""
    dataset = _write_tiny_beir(tmp_path / "tiny")
    settings = Settings(_env_file=None, fusion_rerank_depth=3, fusion_rerank_weight=2.0)
    served = run_beir(load_beir_dataset(dataset, "test"), real_embedder, settings, index_dir=tmp_path / "idx")
    assert served.report.settings["fusion"]["rerank_depth"] == 3  # recorded in the report
    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    argv = [str(dataset), "--split", "test", "--index-dir", str(tmp_path / "idx"), "--depth", "3", "--weights", "2"]
    assert late_main(argv) == 0
    (offline,) = json.loads(capsys.readouterr().out)["late_interaction"]
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert served.report.metrics[metric] == pytest.approx(offline[metric], abs=1e-6), metric


def test_the_stored_replay_scores_what_the_searcher_serves_on_the_index_s_codes(
    tmp_path: Path, real_embedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--stored`` replays the default rerank on the token codes the index keeps: the figure ``eval beir`` prints
    for the same index. (The tiny set's 20 documents are too few for a basis at the default floor: built lower.)"""
    from dataclasses import replace

    from eval.beir import EVAL_MARKER
    from indexer.loaders import load_documents
    from indexer.pipeline import apply_changes

    dataset = _write_tiny_beir(tmp_path / "tiny")
    settings = Settings(_env_file=None)
    options = replace(settings.build_options(record={EVAL_MARKER: "tiny"}), token_fit_min_tokens=1)
    apply_changes(
        tmp_path / "idx", real_embedder, upserts=load_documents([dataset / "corpus.jsonl"]).documents, options=options
    )
    served = run_beir(load_beir_dataset(dataset, "test"), real_embedder, settings, index_dir=tmp_path / "idx")
    assert served.prepared.reused and served.report.settings["fusion"]["rerank_depth"] == 30  # the short profile's
    monkeypatch.setattr(Settings, "load_embedder", lambda self: real_embedder)
    argv = [str(dataset), "--split", "test", "--index-dir", str(tmp_path / "idx"), "--weights", "1.5", "--stored"]
    assert late_main([*argv, "--folds", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    (offline,) = report["late_interaction"]
    assert report["stored"] and report["passages_encoded"] == 0  # every candidate's codes came from the index
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert served.report.metrics[metric] == pytest.approx(offline[metric], abs=1e-6), metric
    # An index without codes: --stored is refused in one line
    plain = tmp_path / "plain"
    run_beir(load_beir_dataset(dataset, "test"), real_embedder, settings, index_dir=plain)
    assert late_main([str(dataset), "--split", "test", "--index-dir", str(plain), "--stored"]) == 1
    assert "keeps no token vectors (--stored)" in capsys.readouterr().err
