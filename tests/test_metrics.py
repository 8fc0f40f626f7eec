"""Operations: /metrics (Prometheus text), request ids, the one-line JSON request log, and graceful shutdown of the
real server on SIGTERM with a request in flight."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from citesearch.settings import Settings
from index_store import open_index
from indexer.pipeline import build_index
from service.app import create_app
from service.metrics import ServiceMetrics
from service.observability import JsonFormatter
from tests.conftest import SEEDS
from tests.fakes import HashingEmbedder
from tests.servicekit import start_server_process, wait_for

Q: dict[str, str | int] = {"q": "what conditions did Aliyev set?", "k": 1}


@pytest.fixture(scope="module")
def ops(fake_index, fake_embedder) -> Iterator[TestClient]:
    """The app over the fake index: what is counted and logged does not depend on the vectors."""
    settings = Settings(
        index_dir=fake_index, sentence_warmup=False, api_keys="ci:write:wk-Zt4q9XbL2mPq7sVn", _env_file=None
    )
    with TestClient(create_app(settings, embedder=fake_embedder), raise_server_exceptions=False) as client:
        yield client


def _samples(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of the exposition, by name with labels."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_after_a_few_requests(ops: TestClient, fake_index: Path) -> None:
    before = _samples(ops.get("/metrics").text)
    for _ in range(3):
        assert ops.get("/search", params=Q).status_code == 200
    assert ops.post("/ask", json={"question": Q["q"], "k": 1}).status_code == 200
    assert ops.get("/search", params={"q": "x", "k": 10**6}).status_code == 422
    assert ops.get("/documents/000_d73893d2131be99a.txt").status_code == 200
    assert ops.get("/documents/another-doc-that-is-not-there.txt").status_code == 404
    assert ops.get("/no/such/path").status_code == 404
    assert ops.get("/static/app.js").status_code == 200 and ops.get("/static/no-such-file.js").status_code == 404
    response = ops.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def delta(sample: str) -> float:
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    assert delta('citesearch_requests_total{method="GET",route="/search",status="200"}') == 3
    assert delta('citesearch_requests_total{method="GET",route="/search",status="422"}') == 1
    assert delta('citesearch_requests_total{method="POST",route="/ask",status="200"}') == 1
    # By route template, not by path: one series for every document.
    assert delta('citesearch_requests_total{method="GET",route="/documents/{doc_id:path}",status="200"}') == 1
    assert delta('citesearch_requests_total{method="GET",route="/documents/{doc_id:path}",status="404"}') == 1
    assert delta('citesearch_requests_total{method="GET",route="unmatched",status="404"}') == 1
    assert delta('citesearch_requests_total{method="GET",route="/static",status="200"}') == 1
    assert delta('citesearch_requests_total{method="GET",route="/static",status="404"}') == 1
    assert not any(part in name for name in after for part in ("another-doc", "no/such", "no-such-file", "app.js"))
    assert delta('citesearch_request_duration_seconds_count{method="GET",route="/search"}') == 4
    assert delta('citesearch_request_duration_seconds_bucket{le="+Inf",method="POST",route="/ask"}') == 1
    assert delta('citesearch_request_duration_seconds_sum{method="POST",route="/ask"}') > 0
    with open_index(fake_index) as reader:
        counts, version = reader.manifest.counts, reader.version
    assert after[f'citesearch_index_info{{version="{version}"}}'] == 1
    assert after["citesearch_index_loaded"] == 1
    assert after["citesearch_index_documents"] == counts["documents"] > 0
    assert after["citesearch_index_passages"] == counts["passages"] > 0
    assert after["citesearch_requests_in_progress"] == 1  # the scrape itself
    assert after["citesearch_abandoned_requests"] == 0


def test_update_queue_gauge_follows_the_journal_and_registries_are_per_app(ops: TestClient) -> None:
    metrics: ServiceMetrics = ops.app.state.metrics  # type: ignore[attr-defined]
    metrics.set_update_queue(7)  # a stale value: every scrape reads the journal (nothing waiting here)
    assert _samples(ops.get("/metrics").text)["citesearch_update_queue"] == 0
    assert _samples(metrics.render().decode())["citesearch_update_queue"] == 0  # without an app: as last set
    other = ServiceMetrics()  # another app's registry starts empty and does not see this app's requests
    assert "citesearch_requests_total{" not in other.render().decode()
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("citesearch_update_queue") is None  # nothing in the global registry


def test_request_id_is_echoed_or_generated(ops: TestClient) -> None:
    given = ops.get("/search", params=Q, headers={"X-Request-ID": "lb-1234.abc:7"})
    assert given.headers["x-request-id"] == "lb-1234.abc:7"
    generated = {ops.get("/health").headers["x-request-id"] for _ in range(2)}
    assert len(generated) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated)
    for bad in ("has spaces in it", "x" * 200, "ünïcode"):
        replaced = ops.get("/health", headers={b"X-Request-ID": bad.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    for response in (
        ops.get("/nope"),
        ops.post("/ask", content=b"{", headers={"content-type": "application/json"}),
        ops.post(
            "/search",
            content=b"x" * 70000,
            headers={"content-type": "application/json"},
        ),
    ):
        assert response.status_code in (400, 404, 413) and response.headers["x-request-id"]


def test_one_structured_log_line_per_request(ops: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="citesearch.access")
    ops.get("/search", params=Q, headers={"X-Request-ID": "req-42", "Authorization": "Bearer wk-Zt4q9XbL2mPq7sVn"})
    ops.get("/documents/000_d73893d2131be99a.txt")
    records = [r for r in caplog.records if r.name == "citesearch.access"]
    assert len(records) == 2
    first = records[0].fields  # type: ignore[attr-defined]
    assert first["request_id"] == "req-42" and first["method"] == "GET" and first["route"] == "/search"
    assert first["status"] == 200 and first["duration_ms"] > 0 and first["client"] == "testclient"
    assert first["key"] == "ci" and "aliyev" not in json.dumps(first).lower()  # the query string is not logged
    assert records[1].fields["route"] == "/documents/{doc_id:path}" and records[1].fields["key"] is None  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(records[0]))
    assert {
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "client",
        "key",
    } <= set(line)
    assert line["logger"] == "citesearch.access" and line["message"].startswith("GET /search 200")
    assert "wk-Zt4q9XbL2mPq7sVn" not in caplog.text


def test_an_unexpected_error_still_gets_the_headers_and_is_logged(
    ops: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = ops.app

    def broken() -> None:
        raise RuntimeError("boom")

    app.router.add_api_route("/test-broken", broken)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="citesearch.access")
    response = ops.get("/test-broken", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500 and "boom" not in response.text
    assert response.headers["x-request-id"] == "req-500"
    assert response.headers["x-content-type-options"] == "nosniff" and "content-security-policy" in response.headers
    access = [r.fields for r in caplog.records if r.name == "citesearch.access"]  # type: ignore[attr-defined]
    assert access[-1]["status"] == 500 and access[-1]["route"] == "/test-broken"


# -- graceful shutdown --------------------------------------------------------------------------------------------
SERVER = textwrap.dedent(
    """
    import sys, time
    import uvicorn
    from citesearch.settings import Settings
    from tests.fakes import HashingEmbedder
    from service.app import create_app

    class Slow(HashingEmbedder):
        def encode(self, texts, **kwargs):
            if any("zzslowzz" in t for t in texts):
                time.sleep(float(sys.argv[3]))
            return super().encode(texts, **kwargs)

    settings = Settings(index_dir=sys.argv[1], sentence_warmup=False, _env_file=None)
    uvicorn.run(create_app(settings, embedder=Slow()), host="127.0.0.1", port=int(sys.argv[2]), log_level="info")
    """
)


@pytest.fixture(scope="module")
def hashing_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small index of seeds/ with the test embedder (no model to load in the server process)."""
    index_dir = tmp_path_factory.mktemp("shutdown-index")
    build_index([SEEDS], index_dir, HashingEmbedder())
    return index_dir


@pytest.mark.subprocess
def test_sigterm_lets_the_request_in_flight_finish(hashing_index: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    process, base = start_server_process(
        lambda port: [sys.executable, "-c", SERVER, str(hashing_index), str(port), "2.0"], log_path
    )
    try:
        result: dict[str, Any] = {}

        def slow_request() -> None:
            try:
                result["response"] = httpx.get(f"{base}/search", params={"q": "Aliyev zzslowzz", "k": 3}, timeout=60)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                result["error"] = exc

        thread = threading.Thread(target=slow_request)
        thread.start()

        def in_flight() -> bool:  # the scrape counts itself: 2 means the slow request is being served
            text = httpx.get(f"{base}/metrics", timeout=5).text
            return "citesearch_requests_in_progress 2.0" in text

        wait_for(in_flight, timeout=30, interval=0.05, what="the slow request to be in flight")
        process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        assert "error" not in result, result
        response = result["response"]
        assert response.status_code == 200 and response.json()["results"], response.text
        # uvicorn re-raises the signal it caught once it has shut down cleanly, so the exit status is "killed by
        # SIGTERM" (what a process manager expects); a crash would be 1, a hang a timeout here.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        log = log_path.read_text()
        assert "Shutting down" in log and "Waiting for" in log  # uvicorn waited for the connection
        with pytest.raises(httpx.TransportError):  # and then stopped listening
            httpx.get(f"{base}/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
