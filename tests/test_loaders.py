"""Loading files and folders: formats, stable ids and sources, text normalisation, and a one-line reason for
everything skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_store.shapes import searchable_title
from indexer.errors import IngestError
from indexer.loaders import LoadResult, Skipped, load_documents
from tests.conftest import PROJECT_ROOT, SEED_ARTICLE, SEED_PAGE, SEEDS


def _reason(result: LoadResult | IngestError, source_end: str) -> str:
    reasons = [s.reason for s in result.skipped if s.source.endswith(source_end)]
    assert len(reasons) == 1, result.skipped
    return reasons[0]


def _assert_units_exact(result: LoadResult) -> None:
    for doc in result.documents:
        assert doc.units
        for unit in doc.units:
            quoted = doc.unit_text(unit)
            assert quoted and quoted == quoted.strip()


# -- seeds, ids and sources ----------------------------------------------------------------------------------------
def test_seed_folder_loads_both_seeds_with_relative_ids_and_sources(monkeypatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    result = load_documents(["seeds"])
    assert result.skipped == []
    assert [d.doc_id for d in result.documents] == [SEED_ARTICLE, SEED_PAGE]
    assert [d.source for d in result.documents] == [f"seeds/{SEED_ARTICLE}", f"seeds/{SEED_PAGE}"]
    page = result.documents[1]
    assert page.text == (SEEDS / SEED_PAGE).read_text(encoding="utf-8")
    assert page.title == "Lavrov’s visit to Yerevan highlights regional tensions and shifting alliances"
    assert [u.comment_no for u in page.units if u.section == "comment"] == [1, 2, 3, 4, 5]
    assert [u.section for u in result.documents[0].units] == ["article"]
    _assert_units_exact(result)


def test_folder_ids_are_relative_to_the_root_sorted_and_stable(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "corpus"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("Second file.", encoding="utf-8")
    (root / "a.md").write_text("First file.", encoding="utf-8")
    (root / "sub" / "deeper" / "c.txt").write_text("Nested file.", encoding="utf-8")
    (root / "sub" / "photo.png").write_bytes(b"\x89PNG\x00")  # unsupported in a folder: ignored silently
    (root / ".hidden.txt").write_text("Hidden file.", encoding="utf-8")
    (root / ".git" / "notes.txt").write_text("Hidden folder.", encoding="utf-8")

    first = load_documents([root])
    monkeypatch.chdir(root / "sub")  # ids do not depend on the working directory
    second = load_documents([str(root)])
    assert [d.doc_id for d in first.documents] == ["a.md", "b.txt", "sub/deeper/c.txt"]
    assert first.skipped == second.skipped == []

    def ids_and_hashes(result: LoadResult) -> list[tuple[str, str]]:
        return [(d.doc_id, d.content_hash) for d in result.documents]

    assert ids_and_hashes(first) == ids_and_hashes(second)
    assert second.documents[2].source == "deeper/c.txt"  # the source, unlike the id, is for people at this cwd


def test_a_file_given_directly_has_its_name_as_id_and_source_relative_to_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "note.txt"
    path.write_text("Lavrov met Mirzoyan in Yerevan.", encoding="utf-8")
    outside = load_documents([path])
    assert outside.documents[0].doc_id == "note.txt" and outside.documents[0].source == str(path)
    monkeypatch.chdir(tmp_path)
    inside = load_documents([path])
    assert inside.documents[0].doc_id == "note.txt" and inside.documents[0].source == "docs/note.txt"
    assert inside.documents[0].title == "Lavrov met Mirzoyan in Yerevan."


# -- text normalisation --------------------------------------------------------------------------------------------
def test_crlf_cr_and_bom_are_normalised_before_spans(tmp_path: Path) -> None:
    (tmp_path / "crlf.txt").write_bytes(b"\xef\xbb\xbfFirst line.\r\nSecond line.\rThird line.\r\n\r\nNext para.\r\n")
    doc = load_documents([tmp_path / "crlf.txt"]).documents[0]
    assert doc.text == "First line.\nSecond line.\nThird line.\n\nNext para.\n"
    assert doc.title == "First line."
    assert [doc.unit_text(u) for u in doc.units] == [doc.text.strip()]


# -- what is skipped, and why ----------------------------------------------------------------------------------------
def test_bad_files_are_skipped_with_reasons_and_the_rest_loads(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("A good document.", encoding="utf-8")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "bom-bad.txt").write_bytes(b"\xef\xbb\xbfab\xff")
    (tmp_path / "empty.md").write_bytes(b" \r\n\t\n")
    (tmp_path / "chrome.txt").write_text("Leave a Reply\n\nBack to top button\n", encoding="utf-8")
    result = load_documents([tmp_path])
    assert [d.doc_id for d in result.documents] == ["good.txt"]
    assert "binary" in _reason(result, "/bin.txt")
    assert _reason(result, "/bad.txt") == "not valid UTF-8 (byte 0xe9 at byte offset 3)"
    assert "byte offset 5" in _reason(result, "/bom-bad.txt")  # offsets count the BOM's bytes too
    assert _reason(result, "/empty.md") == "empty file"
    assert _reason(result, "/chrome.txt") == "no text to index"
    assert all("\n" not in s.reason for s in result.skipped)


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "good.txt").write_text("Readable.", encoding="utf-8")
    (tmp_path / "locked.txt").write_text("Not readable.", encoding="utf-8")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":  # chmod does not stop root, so the refusal is simulated
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = load_documents([tmp_path])
    assert [d.doc_id for d in result.documents] == ["good.txt"]
    assert _reason(result, "/locked.txt") == "cannot read file (Permission denied)"


def test_unsupported_file_given_explicitly_is_listed(tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.7")
    (tmp_path / "ok.txt").write_text("Fine.", encoding="utf-8")
    result = load_documents([tmp_path / "doc.pdf", tmp_path / "ok.txt"])
    assert [d.doc_id for d in result.documents] == ["ok.txt"]
    assert result.skipped == [Skipped(str(tmp_path / "doc.pdf"), "unsupported file type .pdf")]


def test_nonexistent_path_is_an_ingest_error(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("Fine.", encoding="utf-8")
    with pytest.raises(IngestError, match="does not exist") as caught:
        load_documents([tmp_path / "ok.txt", tmp_path / "missing"])
    assert str(caught.value) == f"{tmp_path / 'missing'} does not exist"


def test_empty_folder_is_an_ingest_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no indexable documents") as caught:
        load_documents([tmp_path])
    assert caught.value.skipped == []


def test_nothing_indexable_lists_what_was_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    (tmp_path / "c.jsonl").write_text('{"_id": 1, "text": "ok"\n', encoding="utf-8")
    with pytest.raises(IngestError) as caught:
        load_documents([tmp_path])
    message = str(caught.value)
    assert "no indexable documents" in message and "(2 skipped)" in message and "\n" not in message
    assert sorted(Path(s.source).name for s in caught.value.skipped) == ["bad.txt", "c.jsonl:1"]


# -- jsonl ------------------------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_beir_corpus_loads_as_is_with_int_like_ids(tmp_path: Path) -> None:
    records = [
        {
            "_id": "4983",
            "title": "Microstructural development",
            "text": "Alterations of the architecture.",
            "metadata": {"year": 2002},
        },
        {"_id": 5836, "title": "", "text": "Induction of myelodysplasia.\r\nSecond line."},
        {"id": "x-1", "text": "Uses id instead of _id.", "url": "https://example.org/x-1"},
    ]
    path = _write_jsonl(tmp_path / "corpus.jsonl", [json.dumps(r) for r in records])
    docs = load_documents([path]).documents
    assert [d.doc_id for d in docs] == ["4983", "5836", "x-1"]
    assert [d.source for d in docs] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert docs[0].title == "Microstructural development" and docs[0].metadata == {"year": 2002}
    assert docs[0].text == "Alterations of the architecture."  # the title is kept apart from the text
    assert docs[1].title == "Induction of myelodysplasia."  # an empty title: the first sentence
    assert docs[1].text == "Induction of myelodysplasia.\nSecond line."
    # A title guessed from the text is shown, not embedded or indexed (index_store.shapes.searchable_title).
    assert docs[1].metadata == {"title_guessed": True} and searchable_title(docs[1].title, docs[1].metadata) == ""
    assert searchable_title(docs[0].title, docs[0].metadata) == "Microstructural development"
    assert docs[2].url == "https://example.org/x-1" and docs[2].metadata == {"title_guessed": True}
    for doc in docs:
        assert [(u.section, u.char_start, u.char_end) for u in doc.units] == [("article", 0, len(doc.text))]


def test_bad_jsonl_lines_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [
            json.dumps({"_id": "a", "text": "fine line"}),
            "",
            "not json",
            json.dumps({"title": "no id", "text": "x"}),
            json.dumps({"_id": "b", "title": "no text"}),
            json.dumps({"_id": True, "text": "a boolean is not an id"}),
            json.dumps(["a", "list"]),
            json.dumps({"_id": "a", "text": "second a"}),
            json.dumps({"_id": "c", "text": "last line"}),
        ],
    )
    result = load_documents([path])
    assert [(d.doc_id, d.text) for d in result.documents] == [("a", "fine line"), ("c", "last line")]
    reasons = {s.source.rsplit(":", 1)[1]: s.reason for s in result.skipped}
    assert sorted(reasons, key=int) == ["3", "4", "5", "6", "7", "8"]  # the blank line 2 is not an error
    assert reasons["3"].startswith("malformed JSON on line 3: Expecting value")
    assert '"_id" or "id"' in reasons["4"] and '"_id" or "id"' in reasons["6"]
    assert '"text"' in reasons["5"]
    assert "not a JSON object" in reasons["7"]
    assert reasons["8"] == f"duplicate document id 'a' (first in {path}:1)"


def test_duplicate_ids_across_files_keep_the_first(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.txt").write_text(f"From folder {name}.", encoding="utf-8")
    result = load_documents([tmp_path / "one", tmp_path / "two"])
    assert [d.text for d in result.documents] == ["From folder one."]
    assert result.skipped == [
        Skipped(
            str(tmp_path / "two" / "x.txt"), f"duplicate document id 'x.txt' (first in {tmp_path / 'one' / 'x.txt'})"
        )
    ]


def test_the_same_file_reached_twice_loads_once(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("Only once.", encoding="utf-8")
    result = load_documents([tmp_path, tmp_path / "x.txt"])
    assert [d.doc_id for d in result.documents] == ["x.txt"] and result.skipped == []


# -- html ------------------------------------------------------------------------------------------------------------
HTML = """<!DOCTYPE html>
<html><head><title>Chess in Yerevan | Example Media</title>
<link rel="canonical" href="https://example.org/chess"></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/sport">Sport section navigation</a></li></ul></nav>
<article><h1>Chess festival opens in Yerevan</h1>
<p>Yerevan hosted an international chess festival this week, drawing players from twenty countries.</p>
<p>The organisers said the event would return next year with a larger prize fund and youth tournaments.</p>
</article>
<footer><p>Copyright 2025 Example Media. All rights reserved. Subscribe to our newsletter.</p></footer>
</body></html>
"""


def test_html_main_content_is_extracted_without_boilerplate(tmp_path: Path) -> None:
    (tmp_path / "chess.html").write_text(HTML, encoding="utf-8")
    (tmp_path / "empty.htm").write_text(
        "<html><head><title>Only a title</title></head><body><script>var a = 1;</script></body></html>",
        encoding="utf-8",
    )
    result = load_documents([tmp_path])
    assert [d.doc_id for d in result.documents] == ["chess.html"]
    doc = result.documents[0]
    assert "drawing players from twenty countries" in doc.text and "youth tournaments" in doc.text
    assert "navigation" not in doc.text and "Copyright" not in doc.text and "<p>" not in doc.text
    assert doc.title == "Chess festival opens in Yerevan"
    assert doc.url == "https://example.org/chess"
    _assert_units_exact(result)
    assert "main content" in _reason(result, "/empty.htm")


def test_a_beir_dataset_folder_loads_as_its_corpus_alone(tmp_path: Path) -> None:
    """queries.jsonl, the qrels and a README beside corpus.jsonl are about the corpus, not documents of it."""
    dataset = tmp_path / "dataset"
    (dataset / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Glaciers", "text": "Glaciers retreat."}, {"_id": "d2", "text": "Rivers flood."}]
    (dataset / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (dataset / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "Do glaciers retreat?"}) + "\n")
    (dataset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    (dataset / "README.md").write_text("# A dataset\n\nWhere it came from.\n", encoding="utf-8")
    loaded = load_documents([dataset])
    assert sorted(d.doc_id for d in loaded.documents) == ["d1", "d2"]
    # without the qrels folder it is an ordinary folder: every supported file is read
    (dataset / "qrels" / "test.tsv").unlink()
    (dataset / "qrels").rmdir()
    assert {d.doc_id for d in load_documents([dataset]).documents} == {"d1", "d2", "q1", "README.md"}
