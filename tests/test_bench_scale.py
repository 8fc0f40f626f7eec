"""`citesearch bench scale` at a tiny size: runs in seconds, writes sane report files, rejects bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citesearch.cli import main
from eval.bench.scale import (
    keyword_queries,
    synthetic_texts,
    synthetic_vectors,
    vocabulary,
)


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["bench", "scale", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.subprocess
def test_bench_scale_smoke_writes_report_with_sane_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_json(capsys, "--sizes", "2000,4000", "--queries", "30", "--dim", "64", "--reports-dir", str(tmp_path))
    json_file, md_file = (Path(p) for p in report["report_files"])
    assert json_file.is_file() and md_file.is_file()
    assert json.loads(json_file.read_text())["benchmark"] == "scale"
    assert "| passages |" in md_file.read_text()
    rows = report["tables"]["per size"]
    assert [row["passages"] for row in rows] == [2000, 4000]
    for row in rows:
        assert row["backend"] == "faiss"  # small sizes stay exact
        assert row["recall_at_10"] == 1.0
        assert row["vector_p50_ms"] > 0 and row["exact_flat_p50_ms"] > 0
        assert row["bm25_p50_ms"] > 0 and row["store_10_p50_ms"] > 0
        assert row["vector_build_s"] >= 0 and row["bm25_build_s"] > 0 and row["store_build_s"] > 0
        assert 0 < row["process_rss_mb"] < 4096 and row["vector_files_mb"] > 0
    names = [t["target"] for t in report["targets"]]
    assert any(name.startswith("vector search p50 at 4,000 / at 2,000") for name in names)
    assert any("resident MB" in name for name in names)
    assert sum("recall@10" in name for name in names) == 2
    assert report["settings"]["exact_max_vectors"] >= 100_000


@pytest.mark.subprocess
def test_bench_scale_with_the_approximate_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_json(
        capsys,
        "--sizes",
        "3000",
        "--queries",
        "20",
        "--dim",
        "32",
        "--backend",
        "faiss-ivf-sq8",
        "--reports-dir",
        str(tmp_path),
    )
    (row,) = report["tables"]["per size"]
    assert row["backend"] == "faiss-ivf-sq8" and "/" in row["nlist/nprobe"]
    assert row["recall_at_10"] >= 0.95
    assert all(t["met"] for t in report["targets"] if "recall" in t["target"])


@pytest.mark.subprocess
def test_human_output_is_the_markdown_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["bench", "scale", "--sizes", "1000", "--queries", "5", "--dim", "16", "--reports-dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "### bench scale" in out and "| target | measured |" in out and "report: " in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "abc"], "comma-separated"),
        (["--sizes", "10"], "at least 1000"),
        (["--dim", "0"], "at least 8"),
        (["--queries", "x"], "whole number"),
        (["--backend", "annoy"], "invalid choice"),
    ],
)
def test_bad_arguments_fail_with_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "scale", *args])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_more_queries_than_passages_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scale", "--sizes", "1000", "--queries", "5000", "--reports-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("citesearch: error:") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_synthetic_data_is_deterministic_and_shaped() -> None:
    import numpy as np

    words = vocabulary()
    assert len(words) == len(set(words)) == 5000
    vectors, topics = synthetic_vectors(500, 24, np.random.default_rng(1), "clustered")
    again, _ = synthetic_vectors(500, 24, np.random.default_rng(1), "clustered")
    np.testing.assert_array_equal(vectors, again)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    texts = synthetic_texts(topics, words, np.random.default_rng(2))
    assert len(texts) == 500 and all(len(t.split()) == 40 for t in texts)
    assert all(set(q.split()) <= set(words) for q in keyword_queries(words, 10, np.random.default_rng(3)))
