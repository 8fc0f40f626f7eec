"""Live updates over HTTP: POST/DELETE /documents are journaled before the 202, applied by one background writer,
published atomically, and never lost — not even to a kill -9 right after the 202 or in the middle of a publish.

In-process tests use the session's real model on a copy of the seed index. The kill -9 tests run the service in a
subprocess (tests/updates_server.py) with the test HashingEmbedder, so a restart takes a second, not a model load.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from index_store import IndexReader, current_version, list_versions, write_lock
from index_store.manifest import Manifest
from indexer.live_updates import JOURNAL_NAME, Journal
from indexer.pipeline import BuildOptions, apply_changes, build_index
from tests.conftest import SEED_ARTICLE, SEED_PAGE, SEEDS
from tests.fakes import HashingEmbedder
from tests.servicekit import start_server_process, wait_for
from tests.updates_server import KEY, updates_app

AUTH = {"X-API-Key": KEY}
ZEBRA = {
    "id": "zebra-finch",
    "title": "Zebra finches",
    "text": "Zebra finches learn their courtship song from their fathers during the first ninety days.",
}
GLACIER = {
    "id": "glacier",
    "title": "Perito Moreno",
    "text": "The Perito Moreno glacier advances across Lago Argentino and calves into the lake.",
}


def _copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("journal.sqlite*", "writer.lock", "write.lock"))
    return target


@pytest.fixture
def live(tmp_path: Path, seed_index, real_embedder) -> Iterator[tuple[TestClient, Path]]:
    """The real app with live updates on a private copy of the seed index."""
    index_dir = _copy_index(seed_index[0], tmp_path / "index")
    with TestClient(updates_app(index_dir, real_embedder, max_batch_documents=3), headers=AUTH) as client:
        yield client, index_dir


@pytest.fixture(scope="module")
def validating(tmp_path_factory: pytest.TempPathFactory, seed_index, real_embedder) -> Iterator[TestClient]:
    """One app for the tests that only send bad input (nothing is ever journaled, so they can share it)."""
    index_dir = _copy_index(seed_index[0], tmp_path_factory.mktemp("validating") / "index")
    with TestClient(updates_app(index_dir, real_embedder, max_batch_documents=3), headers=AUTH) as client:
        yield client


def _published(client: Any, seq: int, timeout: float = 40.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = client.get(f"/updates/{seq}").json()
        return status if status["status"] == "published" else None

    return wait_for(check, timeout=timeout, interval=0.1, what=f"update {seq} to be published")


def _top_doc_ids(client: Any, q: str, k: int = 5) -> list[str]:
    response = client.get("/search", params={"q": q, "k": k})
    assert response.status_code == 200, response.text
    return [hit["citation"]["doc_id"] for hit in response.json()["results"]]


def _error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# -- in process, real model ---------------------------------------------------------------------------------------
def test_post_is_journaled_then_published_and_found(live) -> None:
    client, index_dir = live
    before = client.get("/health").json()["index_version"]
    # A service that was never written to leaves the index folder as it was (works on a read-only one too).
    assert not (index_dir / JOURNAL_NAME).exists() and not (index_dir / "writer.lock").exists()
    response = client.post("/documents", json=ZEBRA)
    assert response.status_code == 202, response.text
    assert (index_dir / JOURNAL_NAME).exists()
    body = response.json()
    assert body["status"] == "accepted" and body["doc_ids"] == ["zebra-finch"] and len(body["seq"]) == 1
    status = _published(client, body["seq"][0])
    assert status["op"] == "upsert" and status["index_version"] > before
    assert status["served_version"] >= status["index_version"]  # "published" means this server searches it
    results = client.get("/search", params={"q": "how do zebra finches learn to sing?", "k": 3}).json()
    assert results["results"][0]["citation"]["doc_id"] == "zebra-finch"
    assert results["results"][0]["text"].startswith("Zebra finches learn")
    # The other documents are kept (an update is an --add, never a replace-all).
    with IndexReader.open(index_dir) as reader:
        assert reader.document(SEED_PAGE) is not None and reader.document(SEED_ARTICLE) is not None
        assert reader.manifest.extra["journal"]["last_seq"] == body["seq"][0]


def test_a_posted_news_page_is_cut_into_article_author_and_comments(live) -> None:
    client, _ = live
    text = (SEEDS / SEED_PAGE).read_text(encoding="utf-8")
    response = client.post(
        "/documents",
        json={
            "documents": [
                {"_id": "page-copy", "text": text, "url": "https://x.test/p", "metadata": {"via": "api"}},
                GLACIER,
            ]
        },
    )
    assert response.status_code == 202, response.text
    seqs = response.json()["seq"]
    assert len(seqs) == 2 and seqs[1] == seqs[0] + 1
    _published(client, seqs[1])
    ours = client.get("/documents/page-copy").json()
    original = client.get(f"/documents/{SEED_PAGE}").json()
    assert ours["text"] == original["text"] and ours["title"] == original["title"]
    assert [(p["section"], p["comment_no"]) for p in ours["parts"]] == [
        (p["section"], p["comment_no"]) for p in original["parts"]
    ]
    assert {p["section"] for p in ours["parts"]} == {"article", "author", "comment"}
    assert ours["source"] == "api" and ours["url"] == "https://x.test/p" and ours["metadata"] == {"via": "api"}


def test_delete_removes_the_document_and_replace_updates_it(live) -> None:
    client, _ = live
    seq = client.post("/documents", json={"documents": [ZEBRA, GLACIER]}).json()["seq"][-1]
    _published(client, seq)
    assert "glacier" in _top_doc_ids(client, "glacier calving into a lake")
    response = client.delete("/documents/glacier")
    assert response.status_code == 202, response.text
    replaced = client.post("/documents", json={**ZEBRA, "text": "Zebra finches now nest in the Outback dunes."})
    _published(client, replaced.json()["seq"][0])
    deleted = client.get(f"/updates/{response.json()['seq'][0]}").json()
    assert deleted["status"] == "published" and deleted["op"] == "delete"
    assert client.get("/documents/glacier").status_code == 404
    assert "glacier" not in _top_doc_ids(client, "glacier calving into a lake", k=10)
    assert client.get("/documents/zebra-finch").json()["text"] == "Zebra finches now nest in the Outback dunes."
    assert client.delete("/documents/glacier").status_code == 404  # already gone


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"title": "no id", "text": "Some text that is long enough."}, 422, "id"),
        ({"id": "a"}, 422, "text"),
        ({"id": "a", "text": "   \n "}, 422, "text"),
        ({"id": "a", "text": 5}, 422, "text"),
        ({"id": True, "text": "Some text."}, 422, "id"),
        ({"id": "a", "text": "Some text.", "metadata": [1]}, 422, "metadata"),
        ({"id": "a", "text": "Some text.", "body": "typo"}, 422, "body"),
        ({"documents": []}, 422, "documents"),
        ({"documents": {"id": "a"}}, 422, "documents"),
        ({"documents": [ZEBRA, {"id": "b"}]}, 422, "documents[1].text"),
        ({"documents": [ZEBRA, GLACIER, ZEBRA]}, 422, "documents[2].id"),
        ({"documents": [ZEBRA, GLACIER, {**ZEBRA, "id": "c"}, {**ZEBRA, "id": "d"}]}, 413, "documents"),
        ([ZEBRA], 422, "body"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field_and_journals_nothing(
    validating, body: Any, status: int, field: str
) -> None:
    client = validating
    response = client.post("/documents", json=body)
    assert response.status_code == status, response.text
    assert _error(response)["field"] == field
    assert client.get("/updates").json()["accepted"] == 0


def test_other_bad_requests(validating) -> None:
    client = validating
    assert client.post("/documents", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    response = client.post("/documents", content=b"id=a", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    response = client.delete("/documents/never-indexed")
    assert response.status_code == 404 and _error(response)["field"] == "doc_id"
    response = client.get("/updates/12345")
    assert response.status_code == 404 and _error(response)["field"] == "seq"
    assert client.get("/updates/x").status_code == 422
    anonymous = client.post("/documents", json=ZEBRA, headers={"X-API-Key": ""})
    assert anonymous.status_code in (401, 403)
    assert client.get("/updates").json()["accepted"] == 0


def test_writer_waits_for_the_cli_lock_and_searches_go_on(live) -> None:
    client, index_dir = live
    with write_lock(index_dir):  # what `citesearch index` holds while it builds
        seq = client.post("/documents", json=ZEBRA).json()["seq"][0]
        wait_for(
            lambda: client.get("/updates").json()["writer"]["state"] == "waiting_for_lock",
            timeout=20,
            what="the writer to notice the lock",
        )
        summary = client.get("/updates").json()
        assert str(os.getpid()) in summary["writer"]["last_error"]  # names who holds the lock
        assert client.get(f"/updates/{seq}").json()["status"] == "pending"
        # Searches are served meanwhile, from the version before the change (never blocked by the writer).
        search = client.get("/search", params={"q": "Aliyev conditions"})
        assert search.status_code == 200 and search.json()["index_version"] == summary["served_version"]
        assert _update_queue(client) == 1  # /metrics shows the change waiting
    _published(client, seq)
    assert client.get("/documents/zebra-finch").status_code == 200
    assert _update_queue(client) == 0


def _update_queue(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("citesearch_update_queue "):
            return float(line.split()[1])
    raise AssertionError("citesearch_update_queue missing from /metrics")


def test_changes_published_before_a_crash_are_marked_not_reapplied(tmp_path: Path, seed_index, real_embedder) -> None:
    """The writer died after publishing a batch but before marking it: the manifest's journal marker says so."""
    index_dir = _copy_index(seed_index[0], tmp_path / "index")
    journal = Journal(index_dir)
    seqs = journal.append([("upsert", "zebra-finch", {**ZEBRA, "url": None, "metadata": {}})])
    from indexer.live_updates import document_from_record

    published = apply_changes(
        index_dir,
        real_embedder,
        upserts=[document_from_record(journal.get(seqs[0]).document or {})],
        options=BuildOptions(record={"journal": {"id": journal.journal_id, "last_seq": seqs[0]}}),
    ).version
    journal.close()
    with TestClient(updates_app(index_dir, real_embedder), headers=AUTH) as client:
        status = _published(client, seqs[0], timeout=20)
        assert status["index_version"] == published
        assert current_version(index_dir) == published  # nothing re-applied, no extra version
        assert client.get("/documents/zebra-finch").status_code == 200


# -- subprocess servers killed with SIGKILL ------------------------------------------------------------------------
@pytest.fixture
def hashing_index(tmp_path: Path) -> Path:
    index_dir = tmp_path / "index"
    build_index([SEEDS], index_dir, HashingEmbedder())
    return index_dir


class Server:
    """tests/updates_server.py in a subprocess, on a free loopback port."""

    def __init__(
        self, index_dir: Path, log_path: Path, *, publish_sleep: float = 0.0, reload_interval: float = 0.2
    ) -> None:
        self.log_path = log_path
        extra = ["--publish-sleep", str(publish_sleep)] if publish_sleep else []
        extra += ["--reload-interval", str(reload_interval)]
        self.process, self.url = start_server_process(
            lambda port: [sys.executable, "-m", "tests.updates_server", str(index_dir), str(port), "--hashing", *extra],
            log_path,
            timeout=60,
        )
        self.http = httpx.Client(base_url=self.url, headers=AUTH, timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.http.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.http.close()


def _check_consistent(index_dir: Path) -> IndexReader:
    """The published version opens with every checksum verified, and its passages and vectors agree."""
    reader = IndexReader.open(index_dir, verify=True, fallback=False)
    assert reader.version == current_version(index_dir)
    assert reader.manifest.counts["passages"] == len(reader.vectors)
    return reader


@pytest.mark.subprocess
def test_kill9_right_after_202_loses_nothing(tmp_path: Path, hashing_index: Path) -> None:
    server = Server(hashing_index, tmp_path / "server.log")
    try:
        before = current_version(hashing_index)
        response = server.http.post("/documents", json=ZEBRA)
        assert response.status_code == 202
        seq = response.json()["seq"][0]
    finally:
        server.kill9()  # at once: the writer has at best just started
    _check_consistent(hashing_index).close()
    with Journal(hashing_index) as journal:
        assert journal.get(seq) is not None  # the 202 was on disk
    server = Server(hashing_index, tmp_path / "server.log")
    try:
        status = _published(server.http, seq, timeout=30)
        assert status["index_version"] > before
        assert server.http.get("/documents/zebra-finch").status_code == 200
        assert "zebra-finch" in _top_doc_ids(server.http, "zebra finches courtship song")
    finally:
        server.stop()
    _check_consistent(hashing_index).close()


def _only_merges_since(index_dir: Path, version: str) -> bool:
    """Whether ``version`` is the current version or every version published after it is a background merge."""
    current = current_version(index_dir)
    assert current is not None and version <= current
    later = [v for v in list_versions(index_dir) if version < v <= current]
    return all("merge" in Manifest.read(index_dir / "versions" / v).build for v in later)


@pytest.mark.subprocess
def test_kill9_during_publish_then_restart_reapplies(tmp_path: Path, hashing_index: Path) -> None:
    before = current_version(hashing_index)
    server = Server(hashing_index, tmp_path / "server.log", publish_sleep=30)
    try:
        seq = server.http.post("/documents", json={"documents": [ZEBRA, GLACIER]}).json()["seq"][-1]
        wait_for(lambda: "PUBLISH-SLEEP" in server.log(), timeout=30, what="the publish to reach the switch")
        assert server.http.get(f"/updates/{seq}").json()["status"] == "pending"
    finally:
        server.kill9()
    # The new version's folder is complete but CURRENT was never switched: the old version is served.
    assert current_version(hashing_index) == before
    with _check_consistent(hashing_index) as reader:
        assert reader.document("zebra-finch") is None
    server = Server(hashing_index, tmp_path / "server.log")
    try:
        status = _published(server.http, seq, timeout=30)
        # The re-applied change is what was published after the restart; only the background merge may have
        # published versions since (it runs after each publish), and it carries the change along.
        assert _only_merges_since(hashing_index, status["index_version"])
        assert {"zebra-finch", "glacier"} <= set(_top_doc_ids(server.http, "zebra finches glacier", k=10))
    finally:
        server.stop()
    with _check_consistent(hashing_index) as reader:
        assert reader.document(SEED_PAGE) is not None
        assert reader.manifest.extra["journal"]["last_seq"] == seq


@pytest.mark.subprocess
def test_kill9_at_random_points_never_loses_an_accepted_document(tmp_path: Path, hashing_index: Path) -> None:
    rng = random.Random(7)
    accepted: dict[str, int] = {}
    for round_no in range(3):
        server = Server(hashing_index, tmp_path / "server.log")
        try:
            for i in range(4):
                doc_id = f"r{round_no}-{i}"
                response = server.http.post(
                    "/documents",
                    json={"id": doc_id, "text": f"Round {round_no} item {i}: the quokka{round_no}x{i} eats leaves."},
                )
                assert response.status_code == 202, response.text
                accepted[doc_id] = response.json()["seq"][0]
                time.sleep(rng.uniform(0.0, 0.3))
        finally:
            server.kill9()
        _check_consistent(hashing_index).close()
    server = Server(hashing_index, tmp_path / "server.log")
    try:
        for doc_id, seq in accepted.items():
            status = _published(server.http, seq, timeout=30)
            assert status["index_version"] is not None
            assert server.http.get(f"/documents/{doc_id}").status_code == 200, doc_id
        summary = server.http.get("/updates").json()
        assert summary["pending"] == 0 and summary["accepted"] == len(accepted)
    finally:
        server.stop()
    with _check_consistent(hashing_index) as reader:
        assert set(accepted) <= set(reader.document_ids())
        assert reader.document(SEED_ARTICLE) is not None
    assert (hashing_index / JOURNAL_NAME).exists()


# -- the soak command ----------------------------------------------------------------------------------------------
def test_soak_smoke(tmp_path: Path, seed_index, real_embedder) -> None:
    """`python -m eval.soak` for ~10 s against an in-process server: nothing lost, nothing 5xx."""
    from eval.soak import run_soak
    from tests.servicekit import running_server

    index_dir = _copy_index(seed_index[0], tmp_path / "index")
    with running_server(updates_app(index_dir, real_embedder)) as base:
        result = run_soak(
            base, api_key=KEY, duration=10, search_rate=4, updates=6, publish_timeout=60, max_requests=500
        )
    assert result.ok, result.table()
    assert result.lost == 0 and result.deleted_still_present == 0 and result.status_5xx == 0
    assert result.updates_accepted >= 5 and result.published == result.updates_accepted
    assert result.documents_checked >= 4 and result.searches >= 20
    assert "lost" in result.table() and result.to_dict()["ok"] is True


# -- two servers on one folder --------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_the_standby_of_two_servers_never_says_published_for_a_version_it_does_not_serve(
    tmp_path: Path, hashing_index: Path
) -> None:
    """Posted to the standby: the writer (the other server) publishes it, but until the standby serves a version
    holding it, the standby says "published_elsewhere", naming both versions; then "published"."""
    writer = Server(hashing_index, tmp_path / "writer.log")
    standby = Server(hashing_index, tmp_path / "standby.log", reload_interval=15.0)
    try:
        first = writer.http.post("/documents", json=GLACIER).json()["seq"][0]
        _published(writer.http, first)  # the writer role is now taken by `writer`
        served_before = standby.http.get("/ready").json()["index_version"]
        seq = standby.http.post("/documents", json=ZEBRA).json()["seq"][0]
        status = wait_for(
            lambda: (s := standby.http.get(f"/updates/{seq}").json())["status"] != "pending" and s,
            timeout=30,
            interval=0.05,
            what="the writer to publish the standby's change",
        )
        # The standby reloads every 15 s from its start; the writer publishes within about a second.
        assert status["served_version"] == served_before, status
        assert status["status"] == "published_elsewhere", status
        assert status["index_version"] > status["served_version"]
        assert "zebra-finch" not in _top_doc_ids(standby.http, "zebra finches courtship song", k=10)
        published = _published(standby.http, seq, timeout=30)
        assert published["served_version"] >= published["index_version"]
        assert "zebra-finch" in _top_doc_ids(standby.http, "zebra finches courtship song", k=10)
        assert writer.http.get(f"/updates/{seq}").json()["status"] == "published"
    finally:
        standby.stop()
        writer.stop()


def test_out_of_range_update_numbers_are_4xx(hashing_index: Path) -> None:
    with TestClient(updates_app(hashing_index, HashingEmbedder()), headers=AUTH) as client:
        assert client.post("/documents", json=ZEBRA).status_code == 202  # the journal exists: SQLite is asked
        for seq in ("9223372036854775808", "-1", "0", "99999999999999999999999"):
            response = client.get(f"/updates/{seq}")
            assert 400 <= response.status_code < 500, (seq, response.status_code)
        assert client.get("/updates/9223372036854775807").status_code == 404


def test_format_characters_alone_are_blank_and_oversized_documents_are_413(tmp_path: Path, hashing_index: Path) -> None:
    with TestClient(updates_app(hashing_index, HashingEmbedder(), max_document_chars=200), headers=AUTH) as client:
        for text in ("\u200b\u200c\u200d", "\ufeff \u2060\n\u200b", "\u00ad\u200e"):
            response = client.post("/documents", json={"id": "zw", "text": text})
            assert response.status_code == 422 and _error(response)["field"] == "text", (text, response.text)
        response = client.post("/documents", json={"id": "big", "text": "Walruses haul out on ice floes. " * 10})
        assert response.status_code == 413 and "CITESEARCH_MAX_DOCUMENT_CHARS" in _error(response)["message"]
        batch = {"documents": [{"id": "ok", "text": "Otters sleep."}, {"id": "big", "text": "x " * 150}]}
        response = client.post("/documents", json=batch)
        assert response.status_code == 413 and _error(response)["field"] == "documents[1].text"
        assert client.get("/updates").json()["accepted"] == 0  # nothing journaled
        assert client.post("/documents", json={"id": "ok", "text": "Otters \u200bsleep."}).status_code == 202


@pytest.mark.slow  # embeds a large document: about 20 s
def test_a_large_document_does_not_hold_back_small_updates_and_its_progress_shows(
    tmp_path: Path, hashing_index: Path
) -> None:
    from indexer.live_updates import LARGE_DOCUMENT_CHARS

    words = " ".join(f"walrus{i} hauls out on the ice floe number {i} near the colony." for i in range(6000))
    assert len(words) > 3 * LARGE_DOCUMENT_CHARS
    # A slow embedder (4 ms a passage, as a real model on a busy CPU): the large document takes seconds to embed.
    embedder = HashingEmbedder()
    original = embedder.encode

    def slow_encode(texts: Any, **kwargs: Any) -> Any:
        time.sleep(0.004 * len(texts))
        return original(texts, **kwargs)

    embedder.encode = slow_encode  # type: ignore[method-assign]
    app = updates_app(hashing_index, embedder, max_request_bytes=4_000_000)
    with TestClient(app, headers=AUTH) as client:
        big = client.post("/documents", json={"id": "big", "text": words}).json()["seq"][0]
        progress: list[dict[str, Any]] = []

        def embedding_started() -> bool:
            writer = client.get("/updates").json()["writer"]
            if writer["progress"]:
                progress.append(writer["progress"])
            return any(p.get("phase") == "embedding" and p["done"] > 0 for p in progress)

        wait_for(embedding_started, timeout=120, interval=0.02, what="the large document to be embedding")
        small = client.post("/documents", json=ZEBRA).json()["seq"][0]
        small_status = _published(client, small, timeout=60)
        # Open the small change's version at once, while the large document is still being embedded: the reader's
        # lease keeps it, whereas opening it later races the pruning of old versions (background merges publish
        # versions of their own, so the small change's version can be pruned before the large one is published).
        with IndexReader.open(hashing_index, small_status["index_version"], fallback=False) as reader:
            assert reader.document("big") is None and reader.document("zebra-finch") is not None
            big_status = _published(client, big, timeout=180)
        # The small change, posted while the large one was being embedded, was published first, without it.
        assert small_status["index_version"] < big_status["index_version"]
        assert all(p["seq_first"] == big and p["total"] > 0 for p in progress if p.get("phase") == "embedding")
    with _check_consistent(hashing_index) as reader:
        assert {"big", "zebra-finch"} <= set(reader.document_ids())
