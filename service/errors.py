"""Every error the API returns has one JSON shape, names the field at fault, and never shows a traceback::

    {"error": {"field": "k", "message": "must be at most 100, got 500"}, "errors": [...], "index_version": "v000003"}

Validation errors are 422 (400 for a body that is not JSON at all), an unknown document 404, a non-JSON content
type 415, a body over the size limit 413, no index loaded yet 503. Anything unexpected is logged with its traceback
and answered with a 500 that says nothing about the internals.

This module is the one place that shape is built. Code inside the app raises ``ApiError``; ASGI middlewares, which
answer before the app is reached, call ``send_error``. Nothing else builds error JSON or an ``HTTPException``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from citesearch.search import InvalidSearchRequest
from service.models import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

# Where a request field lives in FastAPI's error locations; the API names the field without it.
_LOCATIONS = {"query", "body", "path", "header", "cookie"}


class ApiError(Exception):
    """An error answered in the API's shape: ``status``, the request field at fault (None: the request as a whole),
    a message for people, and extra response headers (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.headers = dict(headers) if headers else None


def _served_version(request: Request) -> str | None:
    services = getattr(request.app.state, "services", None)
    return None if services is None else services.holder.version


def error_response(
    request: Request,
    status: int,
    field: str | None,
    message: str,
    errors: Sequence[ErrorDetail] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(field, message, errors, index_version=_served_version(request))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_body(
    field: str | None, message: str, errors: Sequence[ErrorDetail] = (), index_version: str | None = None
) -> ErrorResponse:
    detail = ErrorDetail(field=field, message=message)
    return ErrorResponse(error=detail, errors=list(errors) or [detail], index_version=index_version)


def _field_name(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:] or parts  # a whole missing body is the field "body"
    return ".".join(parts) or None


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    # pydantic prefixes messages of custom validators with "Value error, "; the field name already says what.
    return message.removeprefix("Value error, ")


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "not valid JSON")
        return error_response(request, 400, "body", f"malformed JSON: {reason}")
    details = []
    for error in errors:
        field = _field_name(error.get("loc", ()))
        message = _message(error)
        if field == "body" and error.get("type") in {"missing", "model_attributes_type", "dict_type"}:
            message = "a JSON object with the request fields is required"
        details.append(ErrorDetail(field=field, message=message))
    first_detail = details[0] if details else ErrorDetail(field=None, message="invalid request")
    return error_response(request, 422, first_detail.field, first_detail.message, details)


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.field, exc.message, headers=exc.headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (no route: 404, wrong method: 405) in the API's shape."""
    return error_response(request, exc.status_code, None, str(exc.detail), headers=getattr(exc, "headers", None))


async def invalid_search(request: Request, exc: InvalidSearchRequest) -> JSONResponse:
    field = exc.field
    if field == "query":  # the searcher's name for it; the API calls it q (/search) or question (/ask)
        field = "question" if request.url.path.rstrip("/").endswith("/ask") else "q"
    return error_response(request, 404 if exc.not_found else 422, field, exc.message)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, None, "internal error; the service log has the details")


async def send_error(send: Send, status: int, field: str | None, message: str) -> None:
    """The API's error shape, sent by an ASGI middleware before the app is reached (so without an index version)."""
    payload = json.dumps(error_body(field, message).model_dump()).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidSearchRequest, invalid_search)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
