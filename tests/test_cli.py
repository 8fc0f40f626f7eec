"""The command line: the documented search, its JSON shape, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citesearch.cli import main
from tests.conftest import SEED_PAGE, SEEDS

ALIYEV = "what conditions did Aliyev set?"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "citesearch.cli", *args], capture_output=True, text=True, timeout=300)


def test_documented_search_lists_aliyevs_conditions_first(seed_index) -> None:
    index_dir, _ = seed_index
    result = _run("search", ALIYEV, "--k", "3", "--index-dir", str(index_dir), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["query"] == ALIYEV and data["index_version"]
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    top = data["results"][0]
    assert "Constitutional amendments in Armenia" in top["text"]
    assert "Dissolution of the OSCE Minsk Group" in top["text"]
    assert top["citation"]["doc_id"] == SEED_PAGE
    assert top["citation"]["section"] == "article"
    assert set(top["citation"]) == {
        "doc_id",
        "title",
        "source",
        "section",
        "comment_no",
        "char_start",
        "char_end",
        "published",
    }
    assert top["citation"]["published"] is None and top["also_in"] == []  # seed pages carry no date, no copies
    text = (SEEDS / SEED_PAGE).read_text(encoding="utf-8")
    assert text[top["citation"]["char_start"] : top["citation"]["char_end"]] == top["text"]


def test_human_output_has_rank_score_and_citation(seed_index, capsys) -> None:
    index_dir, _ = seed_index
    assert (
        main(
            [
                "search",
                "what did readers say about Lavrov?",
                "--k",
                "2",
                "--section",
                "comment",
                "--index-dir",
                str(index_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "  1. score " in out and "  2. score " in out
    assert "comment #" in out and "chars " in out


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no indexable documents"),
        (lambda root: (root / "bin.txt").write_bytes(b"\x00\x01\x02binary") and root / "bin.txt", "no indexable"),
        (lambda root: (root / "bad.txt").write_bytes(b"caf\xe9 au lait") and root / "bad.txt", "no indexable"),
        (lambda root: (root / "c.jsonl").write_text('{"_id": 1, "text": "ok"\n') and root / "c.jsonl", "no indexable"),
    ],
    ids=["nonexistent", "empty-folder", "binary", "invalid-utf8", "malformed-jsonl"],
)
def test_bad_input_is_one_line_nonzero_and_publishes_nothing(tmp_path: Path, capsys, setup, expected) -> None:
    path = setup(tmp_path)
    index_dir = tmp_path / "index"
    code = main(["index", str(path), "--index-dir", str(index_dir)])
    err = capsys.readouterr().err
    assert code != 0
    error_lines = [line for line in err.splitlines() if line.startswith("citesearch: error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert "Traceback" not in err
    assert not (index_dir / "CURRENT").exists()


def test_skipped_files_are_listed_but_the_rest_is_indexed(tmp_path: Path, capsys, real_embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("Lavrov met Mirzoyan in Yerevan.", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"caf\xe9")
    (folder / "c.jsonl").write_text('{"_id": "a", "text": "fine line"}\nnot json\n', encoding="utf-8")
    code = main(["index", str(folder), "--index-dir", str(tmp_path / "index")])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped" in captured.err and "bad.txt" in captured.err and "c.jsonl:2" in captured.err
    assert "2 documents" in captured.out


def test_search_without_an_index_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(["search", "anything", "--index-dir", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "citesearch index" in err


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITESEARCH_PORT", "eighty")
    monkeypatch.setenv("CITESEARCH_FUSION_DENSE_WEIGHT", "3")
    code = main(["search", "anything", "--index-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1
    assert "CITESEARCH_PORT" in err and "CITESEARCH_FUSION_DENSE_WEIGHT" in err


def test_console_script_runs_end_to_end(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    built = _run("index", str(SEEDS), "--index-dir", str(index_dir), "--json")
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["documents"] == 2 and report["passages"] > 10
    found = _run("search", ALIYEV, "--k", "1", "--index-dir", str(index_dir))
    assert found.returncode == 0 and "Constitutional amendments" in found.stdout and "article, chars" in found.stdout
