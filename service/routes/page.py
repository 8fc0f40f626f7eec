"""``GET /``: the internal site's search page (static files from service/static)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def search_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static")
def static_folder() -> RedirectResponse:
    """``/static`` -> ``/static/`` with a relative Location: never a URL built from the client's Host header."""
    return RedirectResponse("/static/", status_code=307)
