"""Access control for the HTTP API (API keys with read or write scope) and the security headers of every response.

``require_read`` guards the read endpoints (open unless ``CITESEARCH_REQUIRE_READ_KEY=true``); ``require_write`` guards
every endpoint that changes the index. Routes take them as dependencies: ``dependencies=[Depends(require_write)]``.

Keys come from ``CITESEARCH_API_KEYS`` and/or ``CITESEARCH_API_KEYS_FILE`` (formats in :func:`parse_keys` and
:func:`parse_keys_file`). Only their SHA-256 digests are kept in memory; a presented key is hashed and compared with
every stored digest with ``hmac.compare_digest`` (no early exit, so the time taken says nothing about which key or
how much of it matched). A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Answers: no key where one is needed, or an unknown key anywhere: 401 with ``WWW-Authenticate: Bearer``; a read key
on a write endpoint: 403; any write while no write key is configured: 403 saying how to configure one. Keys never
appear in logs or error messages: errors name the key's *name* at most, and configuration errors the entry's
position and name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citesearch.settings import Settings
from service.errors import ApiError

Scope_ = Literal["read", "write"]
SCOPES: tuple[Scope_, ...] = ("read", "write")
MIN_KEY_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
HASH_PREFIX = "sha256:"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="citesearch"'}
HOW_TO_CONFIGURE = (
    "configure one with CITESEARCH_API_KEYS='name:write:<key>' or a line 'name write <key>' in CITESEARCH_API_KEYS_FILE"
)


class ApiKeyConfigError(ValueError):
    """The configured keys cannot be read. The message never contains a key."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scope: Scope_
    digest: bytes  # SHA-256 of the key's UTF-8 bytes

    def __repr__(self) -> str:  # the digest is not the key, but there is no reason to print it either
        return f"ApiKey(name={self.name!r}, scope={self.scope!r})"

    def allows(self, needed: Scope_) -> bool:
        return needed == "read" or self.scope == "write"  # write implies read


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _entry(name: str, scope: str, secret: str, where: str) -> ApiKey:
    name, scope, secret = name.strip(), scope.strip().lower(), secret.strip()
    if not _NAME.match(name):
        raise ApiKeyConfigError(f"{where}: the key name must be 1-64 letters, digits or _.@- (got {name!r})")
    if scope not in SCOPES:
        raise ApiKeyConfigError(f"{where} ({name}): the scope must be read or write (got {scope!r})")
    if secret.lower().startswith(HASH_PREFIX):
        hexdigest = secret[len(HASH_PREFIX) :]
        if not _HEX_DIGEST.match(hexdigest):
            raise ApiKeyConfigError(f"{where} ({name}): after 'sha256:' give the 64 hex digits of the key's SHA-256")
        digest = bytes.fromhex(hexdigest)
    else:
        if len(secret) < MIN_KEY_CHARS or any(c.isspace() for c in secret):
            raise ApiKeyConfigError(
                f"{where} ({name}): a plain key must be at least {MIN_KEY_CHARS} characters without spaces "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        digest = hash_key(secret)
    return ApiKey(name=name, scope=scope, digest=digest)


def parse_keys(text: str) -> list[ApiKey]:
    """``CITESEARCH_API_KEYS``: comma-separated ``name:scope:key`` entries, or a JSON list of objects.

    The key is the plain key or ``sha256:<64 hex digits>`` of it (so the plain key need not be in the environment).
    JSON: ``[{"name": "ci", "scope": "write", "key": "..."}, {"name": "web", "scope": "read", "sha256": "..."}]``.
    """
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiKeyConfigError(
                f"CITESEARCH_API_KEYS starts with '[' but is not JSON (at character {exc.pos})"
            ) from None
        if not isinstance(items, list):
            raise ApiKeyConfigError("CITESEARCH_API_KEYS: the JSON must be a list of objects")
        keys = []
        for i, item in enumerate(items, 1):
            where = f"CITESEARCH_API_KEYS entry {i}"
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("scope"), str)
            ):
                raise ApiKeyConfigError(f"{where}: expected an object with string fields name, scope and key or sha256")
            if isinstance(item.get("sha256"), str):
                secret = HASH_PREFIX + item["sha256"]
            elif isinstance(item.get("key"), str):
                secret = item["key"]
            else:
                raise ApiKeyConfigError(f"{where} ({item['name']}): give the key as 'key' or its digest as 'sha256'")
            keys.append(_entry(item["name"], item["scope"], secret, where))
        return keys
    keys = []
    for i, part in enumerate((p for p in text.split(",") if p.strip()), 1):
        fields = part.split(":", 2)  # the key itself may contain ':' (sha256:<hex> does)
        if len(fields) != 3:
            raise ApiKeyConfigError(f"CITESEARCH_API_KEYS entry {i}: expected name:scope:key")
        name, scope, secret = fields
        keys.append(_entry(name, scope, secret, f"CITESEARCH_API_KEYS entry {i}"))
    return keys


def parse_keys_file(path: Path) -> list[ApiKey]:
    """``CITESEARCH_API_KEYS_FILE``: one key per line, ``name scope key`` separated by spaces or tabs, where key is
    the plain key or ``sha256:<64 hex digits>``; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ApiKeyConfigError(f"cannot read CITESEARCH_API_KEYS_FILE {path}: {exc.strerror or exc}") from None
    keys = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{path} line {number}"
        if len(fields) != 3:
            raise ApiKeyConfigError(f"{where}: expected 'name scope key' (three fields separated by spaces)")
        name, scope, secret = fields
        keys.append(_entry(name, scope, secret, where))
    return keys


class KeyStore:
    """The configured keys, as digests. ``lookup`` compares in constant time against all of them."""

    def __init__(self, keys: Iterable[ApiKey] = (), *, require_read_key: bool = False) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        self.require_read_key = require_read_key
        digests = [k.digest for k in self.keys]
        if len(set(digests)) != len(digests):
            dupes = sorted({k.name for k in self.keys if digests.count(k.digest) > 1})
            raise ApiKeyConfigError(f"the same key is configured more than once (names: {', '.join(dupes)})")

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        keys = parse_keys(settings.api_keys.get_secret_value())
        if settings.api_keys_file is not None:
            keys += parse_keys_file(settings.api_keys_file)
        return cls(keys, require_read_key=settings.require_read_key)

    @property
    def has_write_keys(self) -> bool:
        return any(k.scope == "write" for k in self.keys)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def lookup(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None. Every stored digest is compared (no early exit)."""
        digest = hash_key(presented)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def presented_key(request: Request) -> str | None:
    """The key the client sent: ``Authorization: Bearer <key>`` or else ``X-API-Key``; None if neither."""
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _store(request: Request) -> KeyStore:
    store = getattr(request.app.state, "keys", None)
    return store if isinstance(store, KeyStore) else KeyStore()  # an app without a store: no keys, writes refused


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, field="authorization", headers=WWW_AUTHENTICATE)


def _authenticate(request: Request, store: KeyStore, *, required: bool) -> ApiKey | None:
    presented = presented_key(request)
    if presented is None:
        if required:
            raise _unauthorized(
                "an API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        return None
    key = store.lookup(presented)
    if key is None:
        raise _unauthorized("the API key is not valid")
    request.state.api_key_name = key.name  # for the request log and the rate limiter (the name, never the key)
    return key


async def require_read(request: Request) -> None:
    """Allow the request to read (search, ask, documents): open unless a read key is required; a key that is sent
    must be valid either way."""
    store = _store(request)
    _authenticate(request, store, required=store.require_read_key)


async def require_write(request: Request) -> None:
    """Allow the request to change the index (add, replace or delete documents): a write key is always required."""
    store = _store(request)
    if not store.has_write_keys:
        raise ApiError(
            403, f"writes are disabled: no write key is configured; {HOW_TO_CONFIGURE}", field="authorization"
        )
    key = _authenticate(request, store, required=True)
    assert key is not None
    if not key.allows("write"):
        raise ApiError(403, f"the key {key.name!r} has read scope; this needs a write key", field="authorization")


# -- security headers -------------------------------------------------------------------------------------------
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# FastAPI's /docs (Swagger UI) and /redoc load their scripts and styles from a CDN and start with an inline script, so
# only they get a policy that allows those; they have no user content. Offline they do not render (openapi.json does).
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Add the security headers and a Content-Security-Policy to every HTTP response.

    The strict policy goes on everything (the page, the API's JSON, static files): it forbids inline script and
    style and any other origin. It applies to documents this service serves, not to a page on another site that
    loads ``/static/embed.js`` with a script tag, so the embeddable box keeps working. No Cross-Origin-Resource-Policy
    header, for the same reason.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = DOCS_CSP if path.rstrip("/") in DOCS_PATHS else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def key_names(keys: Sequence[ApiKey]) -> str:
    """For a start-up log line: the names and scopes, never the keys."""
    return ", ".join(f"{k.name} ({k.scope})" for k in keys) or "none"
