"""Index builds on the real model, FAISS and SQLite: incremental counts, atomicity, the seeds' structure."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index_store import current_version, list_versions, open_index
from indexer.pipeline import BuildOptions, apply_changes, build_index
from tests.conftest import SEED_ARTICLE, SEED_PAGE, SEEDS


def test_seed_index_report_counts_parts(seed_index) -> None:
    _, report = seed_index
    assert report.documents == 2
    assert report.added == 2 and report.removed == 0
    assert report.passages == sum(report.passages_by_section.values())
    assert report.passages_by_section["comment"] >= 5  # five comments, each at least one passage
    assert report.passages_by_section["author"] == 1  # the bio, once
    assert report.window_splits == 0  # the default target leaves room for the title


def test_seed_passages_cite_exact_spans_of_stored_text(seed_reader) -> None:
    ids = seed_reader.passage_ids()
    assert len(ids) > 10
    for stored in seed_reader.passages(list(ids)):
        doc = seed_reader.document(stored.doc_id)
        assert doc is not None
        assert doc.text[stored.char_start : stored.char_end] == stored.text


def test_seed_comments_are_numbered_and_told_apart(seed_reader) -> None:
    comments = seed_reader.passages(list(seed_reader.passage_ids(section="comment")))
    assert {p.doc_id for p in comments} == {SEED_PAGE}
    assert sorted({p.comment_no for p in comments}) == [1, 2, 3, 4, 5]
    article = seed_reader.passages(list(seed_reader.passage_ids(section="article", doc_id=SEED_PAGE)))
    assert all(p.comment_no is None for p in article)
    assert not any("Leave a Reply" in p.text or "(see all)" in p.text for p in article + comments)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(SEEDS, folder, ignore=shutil.ignore_patterns("README.md"))
    return folder


def test_reindex_embeds_only_what_changed(tmp_path: Path, corpus: Path, real_embedder) -> None:
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir, real_embedder)
    assert (first.added, first.unchanged, first.removed) == (2, 0, 0)
    assert first.passages_embedded == first.passages

    again = build_index([corpus], index_dir, real_embedder)
    assert (again.added, again.changed, again.unchanged, again.removed) == (0, 0, 2, 0)
    assert again.passages_embedded == 0
    assert again.version != first.version

    article = corpus / SEED_ARTICLE
    article.write_text(article.read_text(encoding="utf-8") + "\n\nA new closing paragraph about trade.\n")
    (corpus / "new.md").write_text("Yerevan hosted a chess festival this week.\n", encoding="utf-8")
    (corpus / SEED_PAGE).unlink()
    changed = build_index([corpus], index_dir, real_embedder)
    assert (changed.added, changed.changed, changed.unchanged, changed.removed) == (1, 1, 0, 1)
    # Only the passages whose text changed are embedded again; the rest of 000 comes from the cache.
    assert 0 < changed.passages_embedded <= 3
    assert changed.passages_from_cache >= 1

    with open_index(index_dir) as reader:
        assert reader.document(SEED_PAGE) is None
        assert reader.document("new.md") is not None
        assert reader.manifest.counts["documents"] == 2


class _BackendEmbedder:
    """The hashing test embedder under a named backend (as the real one reports torch, onnx or onnx-int8)."""

    def __init__(self, backend: str) -> None:
        from tests.fakes import HashingEmbedder

        self.inner, self.backend = HashingEmbedder(), backend
        self.name, self.dim, self.max_tokens = self.inner.name, self.inner.dim, self.inner.max_tokens

    def encode(self, texts, *, batch_size=32, show_progress=False):
        return self.inner.encode(texts)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)


def test_a_full_reindex_under_another_backend_re_embeds_everything(tmp_path: Path, corpus: Path) -> None:
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir, _BackendEmbedder("torch"))
    assert first.passages_embedded == first.passages
    same = build_index([corpus], index_dir, _BackendEmbedder("torch"))
    assert same.passages_embedded == 0
    # Another backend: every document is re-chunked and every passage embedded again, not taken from the cache of
    # the other backend's vectors, so the index holds one kind of vector.
    switched = build_index([corpus], index_dir, _BackendEmbedder("onnx-int8"))
    assert (switched.changed, switched.passages_embedded) == (2, first.passages)
    with open_index(index_dir) as reader:
        assert reader.manifest.extra["embed_backend"] == "onnx-int8"
    # Back again: the torch vectors are still in the cache, kept apart from the int8 ones.
    back = build_index([corpus], index_dir, _BackendEmbedder("torch"))
    assert (back.changed, back.passages_embedded, back.passages_from_cache) == (2, 0, first.passages)
    # An --add under another backend embeds only what it brings, and the manifest names both backends.
    (corpus / "new.md").write_text("Yerevan hosted a chess festival this week.\n", encoding="utf-8")
    added = build_index([corpus / "new.md"], index_dir, _BackendEmbedder("onnx-int8"), replace_all=False)
    assert added.passages_embedded == added.passages - first.passages >= 1
    with open_index(index_dir) as reader:
        assert reader.manifest.extra["embed_backend"] == "onnx-int8+torch"


def test_failure_before_publish_keeps_the_previous_version(tmp_path: Path, corpus: Path, real_embedder) -> None:
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir, real_embedder)
    (corpus / "extra.txt").write_text("Another document that will never be published.", encoding="utf-8")

    def explode(version_dir, passages):
        raise RuntimeError("derived index failed")

    with pytest.raises(RuntimeError):
        build_index([corpus], index_dir, real_embedder, options=BuildOptions(derived_indexes=(explode,)))
    assert current_version(index_dir) == first.version
    with open_index(index_dir) as reader:
        assert reader.document("extra.txt") is None
    assert not list((index_dir / "versions").glob(".tmp-*"))


@pytest.mark.subprocess
def test_kill_during_build_leaves_the_old_version_loadable(tmp_path: Path, corpus: Path, real_embedder) -> None:
    index_dir = tmp_path / "index"
    first = build_index([corpus], index_dir, real_embedder)
    # Enough new text that embedding takes a few seconds, so the kill lands mid-build.
    for i in range(40):
        body = " ".join(f"Paragraph {i}.{j} discusses regional trade routes and border crossings." for j in range(60))
        (corpus / f"bulk{i:02d}.txt").write_text(body, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "citesearch.cli", "index", str(corpus), "--index-dir", str(index_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    lock = index_dir / "write.lock"
    # The writer writes its pid into the lock file when it starts (before chunking and embedding).
    while (not lock.is_file() or lock.read_text().strip() != str(process.pid)) and time.monotonic() < deadline:
        assert process.poll() is None, "the build finished before it could be interrupted"
        time.sleep(0.05)
    time.sleep(1.0)
    assert process.poll() is None, "the build finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert current_version(index_dir) == first.version
    with open_index(index_dir) as reader:
        assert reader.document("bulk00.txt") is None
        assert reader.document(SEED_PAGE) is not None
    # The next writer cleans up the abandoned folder and publishes normally.
    report = apply_changes(index_dir, real_embedder, upserts=[], deletes=[SEED_ARTICLE])
    assert report.removed == 1
    assert not list((index_dir / "versions").glob(".tmp-*")) and not list((index_dir / "segments").glob(".tmp-*"))
    assert report.version in list_versions(index_dir)
