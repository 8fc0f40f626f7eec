"""The load generator used for the latency figures: counts, percentiles, errors and its loopback-only guard."""

from __future__ import annotations

import pytest

from citesearch.settings import Settings
from eval.loadgen import RequestSpec, load_questions, question_requests, run_load
from service.app import create_app
from tests.servicekit import running_server


def test_run_load_against_the_real_service(seed_index, real_embedder) -> None:
    app = create_app(Settings(index_dir=seed_index[0], _env_file=None), embedder=real_embedder)
    questions = load_questions()[:3]
    with running_server(app) as base:
        result = run_load(
            base, question_requests("search", questions, k=3), total=6, concurrency=2, warmup=1, label="/search"
        )
        assert (result.sent, result.ok, result.errors) == (6, 6, 0)
        assert result.status_counts == {"200": 6}
        assert result.min_ms is not None and result.p50_ms is not None and result.p95_ms is not None
        assert result.p99_ms is not None and result.max_ms is not None
        assert 0 < result.min_ms <= result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
        assert result.throughput_rps > 0 and "/search: 6 requests (6 ok, 0 errors)" in result.summary()
        bad = run_load(base, [RequestSpec("GET", "/search", params={"q": " "})], total=3)
        assert (bad.ok, bad.errors, bad.p50_ms) == (0, 3, None) and bad.status_counts == {"422": 3}
        assert "HTTP 422" in bad.error_samples[0]
        limited = run_load(base, question_requests("ask", questions), total=1000, time_limit=0.5)
        assert limited.stopped_by_time_limit and limited.sent < 1000


def test_only_loopback_unless_allowed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_load("http://example.com", [RequestSpec("GET", "/health")], total=1)
    with pytest.raises(ValueError, match="at least 1"):
        run_load("http://127.0.0.1:1", [RequestSpec("GET", "/health")], total=0)
