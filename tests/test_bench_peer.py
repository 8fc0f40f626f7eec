"""``citesearch bench peer``: a clear one-line failure without the txtai venv, and a tiny end-to-end run with it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from citesearch.cli import main
from citesearch.settings import Settings
from eval.bench import peer
from indexer.embedder import SentenceTransformerEmbedder

DOCS = [
    ("d1", "Vitamin D and bones", "Vitamin D supplementation lowers the rate of hip fractures in elderly women."),
    ("d2", "Password reset", "To reset a forgotten password, open the login page and follow the email link."),
    ("d3", "Coffee and sleep", "Caffeine taken late in the evening delays sleep onset and shortens deep sleep."),
    ("d4", "Volcanoes", "Basaltic lava flows from shield volcanoes such as those on Hawaii are very fluid."),
    ("d5", "Tax deadlines", "Quarterly estimated tax payments are due in April, June, September and January."),
    ("d6", "Bees", "Honey bees communicate the direction of flowers to their hive mates with a waggle dance."),
    ("d7", "Outside the limit", "This document is beyond --limit 6 and answers the last query only."),
]
QUERIES = [
    ("q1", "does vitamin D prevent fractures in older women", "d1"),
    ("q2", "how to reset my password", "d2"),
    ("q3", "does caffeine affect sleep", "d3"),
    ("q4", "how do bees tell others where flowers are", "d6"),
    ("q5", "which document is beyond the limit", "d7"),  # its relevant document is not in the first 6: dropped
]


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS), encoding="utf-8"
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": x}) + "\n" for q, x, _ in QUERIES), encoding="utf-8"
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, _, d in QUERIES), encoding="utf-8"
    )
    return root


def test_missing_bench_venv_is_one_line_and_fails(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-venv"
    code = main(
        [
            "bench",
            "peer",
            str(tiny_beir),
            "--limit",
            "6",
            "--bench-venv",
            str(missing),
            "--reports-dir",
            str(tmp_path / "reports"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert str(missing) in err and "scripts/bench-peer-setup.sh" in err
    assert not (tmp_path / "reports").exists()


@pytest.mark.subprocess
def test_a_venv_without_txtai_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "venv"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "python").symlink_to(Path(__import__("sys").executable))  # citesearch's python: no txtai
    with pytest.raises(peer.PeerSetupError, match="txtai cannot be imported"):
        peer.check_bench_venv(fake)


def _bench_venv() -> Path:
    return peer.bench_venv_dir(None)


@pytest.mark.skipif(
    not (_bench_venv() / "bin" / "python").exists(),
    reason=f"no txtai bench venv at {_bench_venv()} (make one: bash {peer.SETUP_SCRIPT})",
)
def test_peer_bench_tiny_run(tiny_beir: Path, tmp_path: Path, real_embedder: SentenceTransformerEmbedder) -> None:
    args = argparse.Namespace(
        dataset_dir=tiny_beir,
        split=None,
        limit=6,
        json=True,
        reports_dir=tmp_path,
        bench_venv=None,
        index_dir=tmp_path / "index",
    )
    report = peer.run_peer(args, Settings(), embedder=real_embedder)
    assert report.settings["queries"] == 4 and report.settings["documents"] == 6  # q5's document is beyond --limit
    rows = next(iter(report.tables.values()))
    assert [(row["system"].split()[0], row["mode"]) for row in rows] == [
        ("citesearch", "hybrid"),
        ("citesearch", "dense"),
        ("txtai", "dense"),
    ]
    for row in rows:
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["p50_ms"] > 0 and row["index_s"] > 0
    assert rows[2]["ndcg@10"] > 0.5  # the same model finds these easy documents
    assert [t["target"].split(":")[0] for t in report.targets] == ["index seconds", "p50 latency", "nDCG@10"]
    assert (tmp_path / "index").is_dir()
