"""Smoke tests of ``citesearch bench index`` and ``citesearch bench query`` at a tiny size: the report files exist,
the figures are sane (positive throughputs, zero errors) and the targets are recorded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citesearch.cli import main
from citesearch.settings import Settings
from eval.bench.index import CHANGED_SENTENCE, RecordingEmbedder, run_index_bench
from eval.bench.query import PREFIXES, SUFFIXES, QuestionPool, _concurrency_list, run_query_bench
from eval.server_process import stop_server
from index_store import IndexStoreError

WORDS = (
    "protein expression in tumour cells rises after treatment with the inhibitor while controls stay flat "
    "and the effect persists across cohorts of patients followed for several years in the trial"
).split()


def write_corpus(folder: Path, documents: int = 6) -> Path:
    """A small BEIR-format dataset folder: corpus.jsonl only (all the index benchmark reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n in range(documents):
        sentences = [
            " ".join(WORDS[(n + s) % len(WORDS) :] + WORDS[: (n + s) % len(WORDS)]).capitalize() + "."
            for s in range(3 + n % 3)
        ]
        lines.append(
            json.dumps({"_id": f"doc{n}", "title": f"Study {n} of protein expression", "text": " ".join(sentences)})
        )
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _report_files(reports: Path, name: str) -> tuple[dict, str]:
    json_files = sorted(reports.glob(f"bench-{name}-*.json"))
    md_files = sorted(reports.glob(f"bench-{name}-*.md"))
    assert len(json_files) == 1 and len(md_files) == 1
    return json.loads(json_files[0].read_text(encoding="utf-8")), md_files[0].read_text(encoding="utf-8")


def test_bench_index_cli_with_the_real_model(tmp_path, real_embedder, monkeypatch, capsys) -> None:
    dataset = write_corpus(tmp_path / "dataset")
    monkeypatch.setattr("indexer.embedder.SentenceTransformerEmbedder", lambda *a, **k: real_embedder)
    reports = tmp_path / "reports"
    code = main(["bench", "index", str(dataset), "--limit", "4", "--reports-dir", str(reports), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    data, markdown = _report_files(reports, "index")
    assert printed["tables"] == data["tables"] and data["settings"]["documents"] == 4
    first, raw, unchanged, one = data["tables"]["Indexing"]
    assert first["documents"] == 4 and first["passages"] >= 4 and first["embedded"] == first["passages"]
    assert first["passages_per_s"] > 0 and first["embedded_per_s"] > 0 and first["seconds"] > 0
    # The default backend is onnx-int8, so the raw call is the ONNX Runtime encoder the pipeline itself uses.
    assert raw["step"].startswith("raw OnnxEncoder.encode (onnx-int8") and raw["embedded"] == first["embedded"]
    assert raw["passages_per_s"] > 0
    assert (unchanged["embedded"], unchanged["changed_docs"], unchanged["passages"]) == (0, 0, first["passages"])
    assert one["changed_docs"] == 1 and 1 <= one["embedded"] <= first["passages"]
    targets = {t["target"].split(" (")[0]: t for t in data["targets"]}
    assert set(targets) == {
        "indexing throughput / raw encode throughput",
        "unchanged re-index seconds / first build seconds",
        "indexing throughput / raw encode throughput by CPU time",
        "share of the first build's wall time spent inside the model's encode",
        "passages embedded by the unchanged re-index",
        "passages embedded with 1 document changed",
    }
    assert all(isinstance(t["met"], bool) and t["measured"] >= 0 for t in data["targets"])
    assert targets["passages embedded by the unchanged re-index"]["met"]
    assert targets["passages embedded with 1 document changed"]["met"]
    assert "| target | measured | limit | met |" in markdown and "re-index, 1 document changed" in markdown


def test_bench_index_logic_with_the_hashing_embedder(tmp_path, hashing_embedder) -> None:
    dataset = write_corpus(tmp_path / "dataset", documents=8)
    index_dir = tmp_path / "kept-index"
    log = io.StringIO()
    report = run_index_bench(dataset, hashing_embedder, Settings(_env_file=None), index_dir=index_dir, log=log)
    first, raw, unchanged, one = report.tables["Indexing"]
    assert first["documents"] == 8 and unchanged["embedded"] == 0 and one["embedded"] >= 1
    assert "HashingEmbedder.encode" in raw["step"] and raw["embedded"] == first["embedded"]
    assert (index_dir / "CURRENT").is_file()  # a given --index-dir is kept
    assert "first build" in log.getvalue() and "one document changed" in log.getvalue()
    with pytest.raises(ValueError, match="not empty"):
        run_index_bench(dataset, hashing_embedder, Settings(_env_file=None), index_dir=index_dir, log=log)
    with pytest.raises(ValueError, match=r"corpus\.jsonl is missing"):
        run_index_bench(tmp_path, hashing_embedder, Settings(_env_file=None), log=log)


def test_recording_embedder_records_what_it_encodes(hashing_embedder) -> None:
    recorder = RecordingEmbedder(hashing_embedder)
    vectors = recorder.encode(["a b", "c"], batch_size=2)
    assert vectors.shape == (2, hashing_embedder.dim) and recorder.texts == ["a b", "c"] and recorder.calls == 1
    assert recorder.count_tokens(["a b"]) == hashing_embedder.count_tokens(["a b"])
    assert CHANGED_SENTENCE.startswith(" ")


def test_question_pool_is_distinct_until_it_wraps() -> None:
    pool = QuestionPool.packaged()
    assert len(pool.base) >= 60 and pool.size == len(pool.base) * len(PREFIXES) * len(SUFFIXES)
    questions = pool.slice(0, pool.size)
    assert len(set(questions)) == pool.size and pool.distinct_used == pool.size
    assert pool[pool.size] == pool[0]
    assert _concurrency_list("1,4,16") == [1, 4, 16]
    with pytest.raises(Exception, match="at least 1"):
        _concurrency_list("0,4")


def test_bench_query_fails_fast_without_an_index(tmp_path) -> None:
    with pytest.raises(IndexStoreError):
        run_query_bench(tmp_path / "no-index", Settings(_env_file=None), requests=1, log=io.StringIO())


@pytest.mark.subprocess
def test_stop_server_stops_a_process_it_started() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    started = time.monotonic()
    assert stop_server(process, grace=5) is not None
    assert time.monotonic() - started < 10 and process.poll() is not None


def test_bench_query_cli_against_a_real_server(seed_index, real_embedder, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("indexer.embedder.SentenceTransformerEmbedder", lambda *a, **k: real_embedder)
    reports = tmp_path / "reports"
    code = main(
        [
            "bench",
            "query",
            "--index-dir",
            str(seed_index[0]),
            "--requests",
            "4",
            "--concurrency",
            "1,2",
            "--warmup",
            "1",
            "--in-process",
            "3",
            "--time-limit",
            "30",
            "--reports-dir",
            str(reports),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "server stopped (exit code 0)" in captured.err
    data, markdown = _report_files(reports, "query")
    rows = data["tables"]["HTTP load (citesearch serve, loopback)"]
    assert [(r["endpoint"], r["concurrency"]) for r in rows] == [
        ("/search", 1),
        ("/ask", 1),
        ("/search", 2),
        ("/ask", 2),
    ]
    for row in rows:
        assert row["requests"] == 4 and row["errors"] == 0 and row["throughput_rps"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    stages = {row["stage"]: row for row in data["tables"]["In-process cost of one query (ms)"]}
    assert stages["encode (query embedding)"]["/search work p50 ms"] > 0
    assert stages["total"]["/search work p50 ms"] > 0 and stages["total"]["/ask work p50 ms"] > 0
    targets = [t["target"] for t in data["targets"]]
    assert any(t.startswith("/search p50 at concurrency 1 / in-process p50") for t in targets)
    assert "/search throughput at concurrency 2 / at concurrency 1" in targets
    assert "/ask throughput at concurrency 2 / at concurrency 1" in targets
    assert {"target": "errors over all load runs", "measured": 0, "limit": 0, "met": True} in data["targets"]
    assert any("distinct questions" in note for note in data["notes"])
    assert "**HTTP p50 vs in-process p50**" in markdown
