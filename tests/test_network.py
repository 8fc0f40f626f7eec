"""Network edges on a real uvicorn configured as `citesearch serve` configures it (service.commands.serve_config):
forged X-Forwarded-For, slow clients that never finish their headers, redirects that must not follow the Host
header."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from citesearch.settings import Settings
from indexer.pipeline import build_index
from service.app import create_app
from service.commands import serve_config
from tests.conftest import SEEDS
from tests.fakes import HashingEmbedder
from tests.servicekit import running_server


@pytest.fixture(scope="module")
def hashing_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index_dir = tmp_path_factory.mktemp("network") / "index"
    build_index([SEEDS], index_dir, HashingEmbedder())
    return index_dir


@contextmanager
def serving(index_dir: Path, **overrides: Any) -> Iterator[str]:
    """The app on a real uvicorn with `citesearch serve`'s own configuration (proxy headers, header deadline)."""
    settings = Settings(index_dir=index_dir, sentence_warmup=False, _env_file=None, **overrides)
    app = create_app(settings, embedder=HashingEmbedder())
    with running_server(app, config=serve_config(app, settings, "warning")) as base:
        yield base


def _forged_search(base: str, count: int) -> list[int]:
    with httpx.Client(base_url=base, timeout=20) as client:
        return [
            client.get("/search", params={"q": "lavrov"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(count)
        ]


def test_a_forged_forwarded_for_neither_escapes_the_rate_limit_nor_reaches_the_log(
    hashing_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="citesearch.access")
    with serving(hashing_index, rate_limit_per_minute=6, rate_limit_burst=5) as base:
        statuses = _forged_search(base, 20)
    assert statuses.count(200) <= 6 and statuses.count(429) >= 14, statuses  # one bucket: the real address
    clients = {getattr(r, "fields", {}).get("client") for r in caplog.records if r.name == "citesearch.access"}
    assert clients == {"127.0.0.1"}, clients


def test_trusted_proxies_are_believed(hashing_index: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="citesearch.access")
    with serving(hashing_index, rate_limit_per_minute=6, rate_limit_burst=5, trusted_proxies="127.0.0.1") as base:
        statuses = _forged_search(base, 12)
    assert statuses == [200] * 12  # a bucket per forwarded client, as a proxy in front would mean
    clients = {getattr(r, "fields", {}).get("client") for r in caplog.records if r.name == "citesearch.access"}
    assert "203.0.113.7" in clients


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (recv gives b""), or None if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        try:
            sock.sendall(b"X")  # one more byte of an unfinished header every 0.2 s: the slowloris pattern
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    return None


@pytest.mark.slow  # waits out the header deadline: seconds
def test_a_client_that_never_finishes_its_headers_is_disconnected(hashing_index: Path) -> None:
    assert Settings(_env_file=None).header_timeout_seconds == 10.0  # on by default
    with serving(hashing_index, header_timeout_seconds=1.5) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            closed_after = _closed_within(slow, 8.0)
        assert closed_after is not None and 1.0 <= closed_after <= 4.0, closed_after
        # A kept-alive connection that pauses between requests for less than the limit is served normally, and a
        # request whose headers are complete may take longer than the limit.
        with httpx.Client(base_url=base, timeout=20) as client:
            assert client.get("/health").status_code == 200
            time.sleep(1.0)
            assert client.get("/health").status_code == 200


@pytest.mark.slow  # waits out a slow client: seconds
def test_uvicorn_without_the_deadline_keeps_a_slow_client_forever(hashing_index: Path) -> None:
    """The default uvicorn behaviour the deadline exists for (and that header_timeout_seconds=0 keeps)."""
    with serving(hashing_index, header_timeout_seconds=0) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            assert _closed_within(slow, 3.0) is None


def test_redirects_are_relative_whatever_the_host_header(hashing_index: Path) -> None:
    with serving(hashing_index) as base, httpx.Client(base_url=base, timeout=20) as client:
        response = client.get("/static", headers={"Host": "evil.example"})
        assert response.status_code == 307 and response.headers["location"] == "/static/"
        for path in ("/health/", "/search/"):  # no slash redirect built from the Host header either
            response = client.get(path, headers={"Host": "evil.example"})
            assert "evil.example" not in response.headers.get("location", ""), path
