"""The FastAPI application: ``create_app(settings)`` builds it; uvicorn runs it (``citesearch serve``).

Nothing is loaded at import time and nothing lives in module globals: the lifespan loads the model (unless one is
injected, as the tests do with their session's model), opens the published index version if there is one, and
starts the task that picks up newly published versions. Routes reach all of it through ``app.state.services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from citesearch.answer import SentenceScorer
from citesearch.settings import Settings
from indexer.batching import MicroBatchingEmbedder
from indexer.embedder import Embedder
from indexer.live_updates import UpdateService, start_updates
from service import errors
from service.index_holder import IndexHolder
from service.limits import RateLimiter
from service.metrics import ServiceMetrics
from service.metrics import router as metrics_router
from service.middleware import AbandonedRequests, BodySizeLimit, RequestTimeout
from service.observability import RequestLog, wrap_outermost
from service.routes import ask, documents, health, page, search, updates
from service.routes.page import STATIC_DIR
from service.security import KeyStore, SecurityHeaders, key_names
from service.state import Services
from service.warmup import SentenceWarmer

log = logging.getLogger(__name__)

API_DESCRIPTION = """Semantic search and extractive answers over the indexed documents, with exact citations:
every quote is the stored document text at the cited character span (`GET /documents/{doc_id}` shows it).
Every response names the `index_version` it was served from."""


def _start_updates(settings: Settings, model: Embedder, holder: IndexHolder) -> UpdateService | None:
    """The update journal and its writer (POST/DELETE /documents); without them the service still searches."""
    try:
        return start_updates(
            settings.index_dir,
            model,
            settings,
            on_published=lambda _version: holder.refresh(),
            segment_cache=holder.segments,
        )
    except (OSError, sqlite3.Error) as exc:  # a read-only index folder, for instance
        log.warning("live updates are off: cannot open the journal in %s (%s)", settings.index_dir, exc)
        return None


def _holder(settings: Settings, model: Embedder) -> IndexHolder:
    """The local index folder's holder, or (CITESEARCH_STORE=milvus) the one that follows the Milvus alias."""
    if settings.store == "milvus":
        from service.milvus_holder import MilvusHolder

        return MilvusHolder(settings.milvus_config(), model)
    return IndexHolder(settings.index_dir, model)


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app. ``embedder`` skips loading the model (tests pass the one their session already loaded)."""
    settings = settings if settings is not None else Settings()
    keys = KeyStore.from_settings(settings)  # a bad key configuration stops the start here, naming no key
    abandoned = AbandonedRequests()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder if embedder is not None else await asyncio.to_thread(settings.load_embedder)
        # Concurrent requests' query encodes share one model call, where that is cheaper than one call each. int8
        # encodes one text per call (indexer/onnx_backend.py), so there each request encodes its own query, in
        # parallel with the others on the other cores.
        if settings.query_batching and not getattr(model, "one_text_per_call", False):
            model = MicroBatchingEmbedder(model)
        holder = _holder(settings, model)
        scorer = SentenceScorer(model, cache_size=settings.sentence_cache_size)
        warmer = SentenceWarmer(holder, scorer)
        if settings.sentence_warmup and settings.sentence_cache_size > 0:
            holder.on_loaded(warmer)
        await asyncio.to_thread(holder.refresh, initial=True)
        log.info("API keys: %s; read key required: %s", key_names(keys.keys), keys.require_read_key)
        if holder.ready:
            log.info("serving index version %s", holder.version)
        else:  # start anyway: /ready says 503 until a version is published, then the watcher loads it
            log.warning(
                "no index loaded yet (%s); waiting for one to be published",
                holder.last_error or f"nothing published in {holder.describe_location()}",
            )
        milvus = settings.store == "milvus"
        live = None if milvus else await asyncio.to_thread(_start_updates, settings, model, holder)
        app.state.services = Services(
            settings=settings, embedder=model, holder=holder, scorer=scorer, updates=live, direct_writes=milvus
        )
        watcher = asyncio.create_task(holder.watch(settings.reload_interval_seconds), name="citesearch-reload")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await abandoned.drain(timeout=30.0)  # requests answered 503 by the time limit still hold leases
            if live is not None:  # the batch in progress is published (or discarded and re-applied at restart)
                await asyncio.to_thread(live.close)
            await asyncio.to_thread(warmer.close)
            holder.close()
            app.state.services = None

    app = FastAPI(
        title="citesearch",
        description=API_DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        # Starlette's slash redirect (/x/ -> /x) writes an absolute Location from the Host header the client sent;
        # the one redirect the service needs (/static) is relative (service/routes/page.py).
        redirect_slashes=False,
    )
    app.state.services = None
    app.state.keys = keys
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.metrics = metrics = ServiceMetrics(app)
    app.state.abandoned = abandoned
    errors.install(app)
    for module in (search, ask, documents, updates, health, page):
        app.include_router(module.router)
    app.include_router(metrics_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_middlewares(app, settings, abandoned, metrics)
    return app


def _add_middlewares(app: FastAPI, settings: Settings, abandoned: AbandonedRequests, metrics: ServiceMetrics) -> None:
    """The middleware stack, innermost first: body size, time limit, CORS, then (outside Starlette's own error
    middleware) request ids, security headers, metrics and the request log."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        RequestTimeout, seconds=settings.request_timeout_seconds, abandoned=abandoned, on_timeout=metrics.timeouts.inc
    )
    if settings.cors_origins:
        # Only the configured internal origins may call the API from their pages (the embeddable search box).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )
    # Outside everything, Starlette's error middleware included: request id, security headers, metrics and the
    # request log on every response (service/observability.py, service/security.py).
    wrap_outermost(app, lambda inner: RequestLog(SecurityHeaders(inner), metrics, enabled=settings.access_log))
