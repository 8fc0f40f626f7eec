"""Every error the API returns has one JSON shape, names the field at fault, and never shows a traceback::

    {"error": {"field": "k", "message": "must be at most 100, got 500"}, "errors": [...], "index_version": "v000003"}

Validation errors are 422 (400 for a body that is not JSON at all), an unknown document 404, a non-JSON content
type 415, a body over the size limit 413, no index loaded yet 503. Anything unexpected is logged with its traceback
and answered with a 500 that says nothing about the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from citesearch.search import InvalidSearchRequest
from service.models import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

# Where a request field lives in FastAPI's error locations; the API names the field without it.
_LOCATIONS = {"query", "body", "path", "header", "cookie"}


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
    detail = ErrorDetail(field=field, message=message)
    body = ErrorResponse(error=detail, errors=list(errors) or [detail], index_version=_served_version(request))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


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


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if isinstance(detail, dict):
        field, message = detail.get("field"), str(detail.get("message", ""))
    else:
        field, message = None, str(detail)
    return error_response(request, exc.status_code, field, message, headers=getattr(exc, "headers", None))


async def invalid_search(request: Request, exc: InvalidSearchRequest) -> JSONResponse:
    field = exc.field
    if field == "query":  # the searcher's name for it; the API calls it q (/search) or question (/ask)
        field = "question" if request.url.path.rstrip("/").endswith("/ask") else "q"
    return error_response(request, 404 if exc.not_found else 422, field, exc.message)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, None, "internal error; the service log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidSearchRequest, invalid_search)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
