"""`citesearch bench update` at a tiny size: the write path's figures come out sane, the report files are written,
and a one-document write costs the change (a few files), not the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citesearch.cli import main


@pytest.mark.slow
def test_bench_update_smoke_reports_writes_that_cost_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    args = ["bench", "update", "--sizes", "1000,2000", "--dim", "32", "--json", "--reports-dir", str(reports)]
    assert main([*args, "--work-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    json_file, md_file = (Path(p) for p in report["report_files"])
    assert json.loads(json_file.read_text())["benchmark"] == "update"
    assert "| passages |" in md_file.read_text()
    rows = report["tables"]["raw"]
    assert [row["passages"] for row in rows] == [1000, 2000]
    for row in rows:
        assert row["segments_before_optimize"] == 50
        # one new segment (its files) + a manifest, the same at both sizes: the write does not copy the index
        assert 0 < row["one_doc_files_written"] < 40
        assert row["one_doc_bytes_written"] < row["batch_bytes_written"]
        assert row["disk_ratio"] <= 1.2 and row["disk_mb_one_version"] > 0
        assert row["search_p50_ms_segments"] > 0 and row["search_p50_ms_optimized"] > 0
        assert row["one_doc_publish_s"] > 0 and row["one_doc_visible_s"] >= row["one_doc_publish_s"]
    assert rows[0]["one_doc_files_written"] == rows[1]["one_doc_files_written"]
    assert {t["target"].split(" at ")[0] for t in report["targets"]} >= {"1-doc publish", "100-doc publish"}
    assert not any(tmp_path.glob("citesearch-bench-update-*"))  # the temporary indexes are removed


def test_bench_update_refuses_a_work_dir_that_is_not_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "update", "--sizes", "1000", "--work-dir", str(tmp_path / "missing")])
    assert code != 0
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
