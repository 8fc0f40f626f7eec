"""Access control, limits and security headers, against the real app over the session's fake (hashing) index.

API keys (formats, hashing, constant-time comparison, 401/403, read open or closed by configuration, writes refused
without a write key, keys never logged), the rate limit (429 + Retry-After), the request time limit (503 while the
worker finishes and releases its lease), the Content-Security-Policy and the other security headers, CORS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from citesearch.settings import Settings
from index_store.versions import current_version
from service import security
from service.app import create_app
from service.limits import RateLimiter
from service.routes.page import STATIC_DIR
from service.security import (
    ApiKeyConfigError,
    KeyStore,
    parse_keys,
    parse_keys_file,
    require_read,
    require_write,
)
from tests.servicekit import wait_for

WRITE_KEY = "wk-Zt4q9XbL2mPq7sVn"  # plain keys of the test configuration (never expected in a log or a response)
READ_KEY = "rk-8HcY2dWq1LpR5tKe"
OTHER_READ_KEY = "rk2-Mx7Pq0Lz3Vb9NnQe"
KEYS = f"ci:write:{WRITE_KEY},web:read:{READ_KEY},bot:read:sha256:{hashlib.sha256(OTHER_READ_KEY.encode()).hexdigest()}"
ALL_KEYS = (WRITE_KEY, READ_KEY, OTHER_READ_KEY)
Q: dict[str, str | int] = {"q": "what conditions did Aliyev set?", "k": 1}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@contextmanager
def client_for(index_dir: Path, embedder: Any, **overrides: Any) -> Iterator[TestClient]:
    """The real app over ``index_dir`` with these settings (no sentence warm-up: nothing to wait for). The tests here
    check access, limits and headers, which no vector decides, so they serve the session's fake index."""
    settings = Settings(index_dir=index_dir, sentence_warmup=False, _env_file=None, **overrides)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


@pytest.fixture(scope="module")
def keyed(fake_index, fake_embedder) -> Iterator[TestClient]:
    """Keys configured, reads open (the default)."""
    with client_for(fake_index, fake_embedder, api_keys=KEYS) as client:
        yield client


@pytest.fixture(scope="module")
def closed(fake_index, fake_embedder) -> Iterator[TestClient]:
    """Keys configured and required for reads."""
    with client_for(fake_index, fake_embedder, api_keys=KEYS, require_read_key=True) as client:
        yield client


def _error(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body["error"]) == {"field", "message"} and body["errors"] == [body["error"]]
    for key in ALL_KEYS:
        assert key not in response.text
    return body["error"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- key configuration ------------------------------------------------------------------------------------------
def test_key_formats_env_json_and_file(tmp_path: Path) -> None:
    keys = parse_keys(KEYS)
    assert [(k.name, k.scope) for k in keys] == [("ci", "write"), ("web", "read"), ("bot", "read")]
    assert [k.digest for k in keys] == [hashlib.sha256(k.encode()).digest() for k in ALL_KEYS]  # only digests kept
    as_json = parse_keys(
        f'[{{"name": "ci", "scope": "WRITE", "key": "{WRITE_KEY}"}},'
        f' {{"name": "bot", "scope": "read", "sha256": "{hashlib.sha256(OTHER_READ_KEY.encode()).hexdigest()}"}}]'
    )
    assert [(k.name, k.scope, k.digest) for k in as_json] == [(k.name, k.scope, k.digest) for k in (keys[0], keys[2])]
    path = tmp_path / "keys"
    path.write_text(
        f"# name scope key\n\nci write {WRITE_KEY}\n  web\tread  {READ_KEY}\n"
        f"bot read sha256:{hashlib.sha256(OTHER_READ_KEY.encode()).hexdigest().upper()}\n"
    )
    assert [(k.name, k.scope, k.digest) for k in parse_keys_file(path)] == [(k.name, k.scope, k.digest) for k in keys]
    store = KeyStore.from_settings(Settings(api_keys=f"web:read:{READ_KEY}", api_keys_file=None, _env_file=None))
    assert store.names == ["web"] and not store.has_write_keys
    assert parse_keys("") == [] and parse_keys(" , ") == []
    assert WRITE_KEY not in repr(keys) and WRITE_KEY not in repr(Settings(api_keys=KEYS, _env_file=None))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"ci:admin:{WRITE_KEY}", "scope must be read or write"),
        (f"c i:write:{WRITE_KEY}", "key name"),
        (f"ci:{WRITE_KEY}", "expected name:scope:key"),
        ("ci:write:short-key", "at least 16 characters"),
        ("ci:write:sha256:abc123", "64 hex digits"),
        (f"ci:write:{WRITE_KEY},ci2:read:{WRITE_KEY}", "configured more than once"),
        (f'[{{"name": "ci", "scope": "write", "key": "{WRITE_KEY}"', "not JSON"),
        (f'[{{"name": "ci", "scope": "write", "secret": "{WRITE_KEY}"}}]', "give the key"),
    ],
)
def test_bad_key_configuration_is_one_clear_error_without_the_key(text: str, message: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=message) as info:
        KeyStore(parse_keys(text))
    assert WRITE_KEY not in str(info.value)


def test_bad_key_file_names_the_line_and_a_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"ci write {WRITE_KEY}\nweb read\n")
    with pytest.raises(ApiKeyConfigError, match="line 2") as info:
        parse_keys_file(path)
    assert WRITE_KEY not in str(info.value)
    with pytest.raises(ApiKeyConfigError, match="cannot read"):
        parse_keys_file(tmp_path / "missing")
    with pytest.raises(ApiKeyConfigError):  # create_app refuses to build an app with a bad configuration
        create_app(Settings(api_keys="ci:write:short", _env_file=None))


def test_lookup_compares_digests_in_constant_time_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(parse_keys(KEYS))
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert store.lookup(WRITE_KEY).name == "ci"
    # No early exit on the match (the first key): every stored digest is compared, always with the presented hash.
    assert len(calls) == 3 and {a for a, _ in calls} == {hashlib.sha256(WRITE_KEY.encode()).digest()}
    calls.clear()
    assert store.lookup("not-a-configured-key-at-all") is None and len(calls) == 3
    assert store.lookup(hashlib.sha256(WRITE_KEY.encode()).hexdigest()) is None  # the digest is not the key


# -- reads --------------------------------------------------------------------------------------------------------
def test_reads_are_open_by_default_but_a_wrong_key_is_401(keyed: TestClient, fake_index: Path) -> None:
    assert keyed.get("/search", params=Q).status_code == 200
    assert keyed.post("/ask", json={"question": Q["q"], "k": 1}).status_code == 200
    for headers in (bearer(READ_KEY), {"X-API-Key": OTHER_READ_KEY}, bearer(WRITE_KEY)):  # write implies read
        assert keyed.get("/search", params=Q, headers=headers).status_code == 200
    wrong = keyed.get("/search", params=Q, headers=bearer("rk-not-a-key-0000000"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert _error(wrong) == {"field": "authorization", "message": "the API key is not valid"}
    assert wrong.json()["index_version"] == current_version(fake_index)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/search", None),
        ("POST", "/search", {"q": "Aliyev", "k": 1}),
        ("POST", "/ask", {"question": "Aliyev"}),
        ("GET", "/documents/000_d73893d2131be99a.txt", None),
        ("GET", "/metrics", None),
    ],
)
def test_reads_need_a_key_when_configured(closed: TestClient, method: str, path: str, body: Any) -> None:
    missing = closed.request(method, path, json=body, params=Q if path == "/search" and method == "GET" else None)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == 'Bearer realm="citesearch"'
    assert "API key is required" in _error(missing)["message"]
    for headers in (bearer(READ_KEY), {"x-api-key": READ_KEY}, bearer(WRITE_KEY), {"X-API-Key": OTHER_READ_KEY}):
        ok = closed.request(
            method, path, json=body, headers=headers, params=Q if path == "/search" and method == "GET" else None
        )
        assert ok.status_code == 200, ok.text
    assert closed.request(method, path, json=body, headers={"Authorization": f"Basic {READ_KEY}"}).status_code == 401


def test_health_page_static_and_docs_stay_open(closed: TestClient) -> None:
    for path in (
        "/health",
        "/ready",
        "/",
        "/static/app.js",
        "/static/embed.js",
        "/openapi.json",
        "/docs",
        "/page-config",
    ):
        assert closed.get(path).status_code == 200, path


# -- writes -------------------------------------------------------------------------------------------------------
def _write_app(keys: str) -> TestClient:
    """A bare app with one write endpoint guarded like the live-update routes (no index is touched)."""
    app = FastAPI()
    app.state.keys = KeyStore(parse_keys(keys))
    from service import errors

    errors.install(app)

    @app.post("/change", dependencies=[Depends(require_write)])
    def change() -> dict[str, str]:
        return {"status": "accepted"}

    @app.get("/read", dependencies=[Depends(require_read)])
    def read() -> dict[str, str]:
        return {"status": "ok"}

    return TestClient(app)


def test_write_scope() -> None:
    client = _write_app(KEYS)
    assert client.post("/change", headers=bearer(WRITE_KEY)).json() == {"status": "accepted"}
    assert client.post("/change", headers={"X-API-Key": WRITE_KEY}).status_code == 200
    missing = client.post("/change")
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    assert client.post("/change", headers=bearer("wk-not-a-key-0000000")).status_code == 401
    read_only = client.post("/change", headers=bearer(READ_KEY))
    assert read_only.status_code == 403 and "read scope" in _error(read_only)["message"]
    assert client.get("/read").status_code == 200


def test_writes_are_refused_while_no_write_key_is_configured() -> None:
    for keys in ("", f"web:read:{READ_KEY}"):
        client = _write_app(keys)
        for headers in ({}, bearer(READ_KEY), bearer(WRITE_KEY)):
            refused = client.post("/change", headers=headers)
            assert refused.status_code == 403
            assert "CITESEARCH_API_KEYS" in _error(refused)["message"]


def test_the_live_update_routes_need_a_write_key(keyed: TestClient, fake_index, fake_embedder) -> None:
    """Only refusals here: an accepted write would change the shared seed index."""
    for method, path in (("POST", "/documents"), ("DELETE", "/documents/000_d73893d2131be99a.txt")):
        body = {"id": "x.txt", "title": "x", "text": "nothing"} if method == "POST" else None
        assert keyed.request(method, path, json=body).status_code == 401
        assert keyed.request(method, path, json=body, headers=bearer(READ_KEY)).status_code == 403
    with client_for(fake_index, fake_embedder) as no_keys:
        refused = no_keys.delete("/documents/000_d73893d2131be99a.txt", headers=bearer(WRITE_KEY))
        assert refused.status_code == 403 and "no write key is configured" in _error(refused)["message"]


def test_keys_never_appear_in_logs(fake_index, fake_embedder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(fake_index, fake_embedder, api_keys=KEYS, require_read_key=True) as client:
        client.get("/search", params=Q, headers=bearer(READ_KEY))
        client.get("/search", params=Q, headers={"X-API-Key": WRITE_KEY})
        client.get("/search", params=Q, headers=bearer(OTHER_READ_KEY + "x"))
        client.post("/documents", json={"id": "x"}, headers=bearer(READ_KEY))
    access = [vars(r) for r in caplog.records if r.name == "citesearch.access"]
    access = [r for r in access if r["fields"]["route"] == "/search"]
    assert [(r["fields"]["status"], r["fields"]["key"]) for r in access] == [(200, "web"), (200, "ci"), (401, None)]
    assert any("API keys: ci (write), web (read), bot (read)" in r.getMessage() for r in caplog.records)
    text = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for key in ALL_KEYS:
        assert key not in text


# -- limits -------------------------------------------------------------------------------------------------------
def test_rate_limit_is_429_with_retry_after_per_client(fake_index, fake_embedder) -> None:
    with client_for(fake_index, fake_embedder, api_keys=KEYS, rate_limit_per_minute=6, rate_limit_burst=2) as client:
        assert [client.get("/search", params=Q).status_code for _ in range(2)] == [200, 200]
        limited = client.post("/ask", json={"question": "Aliyev"})  # /ask shares the client's bucket
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 10  # whole seconds: one token per 10 s
        assert "too many requests" in _error(limited)["message"]
        assert client.get("/search", params=Q).status_code == 429
        assert client.get("/health").status_code == 200  # only /search and /ask are limited
        assert client.get("/documents/000_d73893d2131be99a.txt").status_code == 200
        # A key is its own client, apart from the address's bucket and from other keys.
        assert client.get("/search", params=Q, headers=bearer(READ_KEY)).status_code == 200
        assert client.get("/search", params=Q, headers=bearer(WRITE_KEY)).status_code == 200
        assert "citesearch_rate_limited_total 2.0" in client.get("/metrics").text


def test_token_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(per_minute=60, burst=2)
    limiter._clock = lambda: now[0]
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0
    now[0] += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    now[0] += 3600
    assert [limiter.take("a"), limiter.take("a"), limiter.take("a") > 0] == [0.0, 0.0, True]  # never above burst
    assert RateLimiter(per_minute=0, burst=1).take("a") == 0.0  # 0: no limit


class SlowEmbedder:
    """The real model, except that encoding a text containing SLOW takes ``delay`` seconds longer."""

    SLOW = "zzslowzz"

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.finished = threading.Event()

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        slow = any(self.SLOW in t for t in texts)
        if slow:
            time.sleep(self.delay)
        try:
            return self.inner.encode(texts, **kwargs)
        finally:
            if slow:
                self.finished.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_request_over_the_time_limit_is_503_and_its_worker_finishes(fake_index, fake_embedder) -> None:
    slow = SlowEmbedder(fake_embedder, delay=2.0)
    with client_for(fake_index, slow, request_timeout_seconds=0.5) as client:
        app: Any = client.app  # the FastAPI app (TestClient types it as any ASGI callable)
        started = time.monotonic()
        response = client.get("/search", params={"q": f"Aliyev {SlowEmbedder.SLOW}", "k": 1})
        waited = time.monotonic() - started
        assert response.status_code == 503 and waited < 1.9, waited
        assert "longer than the limit of 0.5 s" in _error(response)["message"]
        assert response.headers["x-request-id"] and response.headers["x-content-type-options"] == "nosniff"
        assert not slow.finished.is_set()  # the worker is still running...
        services = app.state.services
        wait_for(lambda: len(app.state.abandoned) == 0, timeout=30, what="the abandoned request to finish")
        assert slow.finished.is_set()
        assert services.holder._current.refs == 0  # ...and released its lease when it finished
        assert client.get("/search", params=Q).status_code == 200  # quick requests are unaffected
        metrics = client.get("/metrics").text
        assert "citesearch_request_timeouts_total 1.0" in metrics
        assert 'citesearch_requests_total{method="GET",route="/search",status="503"} 1.0' in metrics


def test_settings_for_limits_have_documented_defaults() -> None:
    settings = Settings(_env_file=None)
    assert (settings.rate_limit_per_minute, settings.rate_limit_burst) == (600, 60)
    assert settings.request_timeout_seconds == 30 and settings.max_batch_documents == 100
    assert settings.require_read_key is False and settings.api_keys.get_secret_value() == ""


# -- headers -----------------------------------------------------------------------------------------------------
def test_csp_and_security_headers_on_the_page_the_api_and_errors(keyed: TestClient) -> None:
    responses = {
        "page": keyed.get("/"),
        "static": keyed.get("/static/app.js"),
        "search": keyed.get("/search", params=Q),
        "404": keyed.get("/no-such-route"),
        "401": keyed.get("/search", params=Q, headers=bearer("nope-nope-nope-nope")),
        "413": keyed.post("/search", content=b"x" * 70000, headers={"content-type": "application/json"}),
        "422": keyed.get("/search", params={"q": "x", "k": 10**6}),
    }
    for name, response in responses.items():
        assert response.headers["content-security-policy"] == PAGE_CSP, name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["referrer-policy"] == "no-referrer", name
        assert response.headers["x-frame-options"] == "DENY", name
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), name
    assert responses["413"].status_code == 413 and responses["422"].status_code == 422
    assert responses["static"].headers["content-type"].startswith("text/javascript")  # nosniff needs a JS type
    assert "cross-origin-resource-policy" not in responses["static"].headers  # embed.js loads from other sites
    docs = keyed.get("/docs").headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in docs and "frame-ancestors 'none'" in docs
    assert keyed.get("/openapi.json").headers["content-security-policy"] == PAGE_CSP


def test_the_page_has_no_inline_script_style_or_handlers() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # every script is a file
    assert "<style" not in html and not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
    assert not re.search(r"(href|src)\s*=\s*[\"']?(https?:)?//", html)  # nothing from another origin
    assert not re.search(r"javascript:", html, flags=re.IGNORECASE)
    for script in ("app.js", "embed.js"):
        code = (STATIC_DIR / script).read_text(encoding="utf-8")
        assert not re.search(r"\beval\(|new Function\(|innerHTML|outerHTML|insertAdjacentHTML|document\.write", code)
        assert not re.search(r"setAttribute\(\s*[\"'](on[a-z]+|style)[\"']", code)


def test_cors_lets_configured_origins_send_keys_and_read_the_headers(fake_index, fake_embedder) -> None:
    origin = {"origin": "http://intranet.example"}
    with client_for(
        fake_index,
        fake_embedder,
        cors_origins=["http://intranet.example"],
        api_keys=KEYS,
        rate_limit_per_minute=6,
        rate_limit_burst=1,
    ) as client:
        preflight = client.options(
            "/search",
            headers={
                **origin,
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization,x-api-key",
            },
        )
        assert preflight.status_code == 200
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "x-api-key" in allowed
        evil = client.options(
            "/search",
            headers={
                "origin": "http://evil.example",
                "access-control-request-method": "GET",
                "access-control-request-headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in evil.headers
        assert client.get("/search", params=Q, headers=origin).status_code == 200
        limited = client.get("/search", params=Q, headers=origin)
        assert limited.status_code == 429  # the embedding page can read the error and when to retry
        assert limited.headers["access-control-allow-origin"] == "http://intranet.example"
        exposed = limited.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed and "x-request-id" in exposed
