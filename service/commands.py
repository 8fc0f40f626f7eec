"""``citesearch`` subcommands of the service package (registered by citesearch.cli): ``citesearch serve``."""

from __future__ import annotations

import argparse
import os
from collections.abc import MutableMapping
from pathlib import Path

from citesearch.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP service with uvicorn until interrupted."""
    # Heavy imports here, not at module level: `citesearch index` and `search` never pay for the web stack.
    import uvicorn

    from service.observability import configure_logging

    # One handler on the root logger for the service's loggers and uvicorn's: JSON lines by default
    # (CITESEARCH_LOG_FORMAT=text for the plain format).
    configure_logging(args.log_level, settings.log_format)

    # Before FAISS and torch are loaded: OpenMP reads its thread count once, when the library loads.
    openmp_threads = apply_openmp_threads(settings.search_threads, os.environ)
    from service.app import create_app

    updates: dict[str, object] = {}
    if args.index_dir is not None:
        updates["index_dir"] = args.index_dir
    if args.host is not None:
        updates["host"] = args.host
    if args.port is not None:
        updates["port"] = args.port
    if not args.access_log:
        updates["access_log"] = False
    settings = settings.model_copy(update=updates)
    # Load the model before uvicorn starts, so a missing model is one clear line (EmbedderError), not a failed
    # lifespan traceback.
    embedder = settings.load_embedder()
    app = create_app(settings, embedder=embedder)
    print(
        f"citesearch: serving {settings.index_dir} on http://{settings.host}:{settings.port} (API docs at /docs; "
        f"OpenMP threads: {openmp_threads or 'default'})",
        flush=True,
    )
    # The app logs one line per request itself (service/observability.py), so uvicorn's access log stays off;
    # log_config=None leaves uvicorn's loggers to the root handler configured above.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False, log_config=None
    )
    return 0


def apply_openmp_threads(threads: int, environ: MutableMapping[str, str]) -> str | None:
    """Set ``OMP_NUM_THREADS`` for this process unless the environment already does; returns the value in force.

    OpenMP (used by FAISS and torch) runs a pool of threads per parallel region, and after each region the idle ones
    spin-wait for more work. A server's concurrent requests keep the cores busy on their own, so that spinning only
    burns a core other requests need: measured on the seeds index (2 cores), one /search with a new question cost
    14.6 ms of server CPU with the default two OpenMP threads and 6.7 ms with one, for the same latency.
    """
    if threads > 0:
        environ.setdefault("OMP_NUM_THREADS", str(threads))
    return environ.get("OMP_NUM_THREADS")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands. Handlers import their heavy dependencies lazily."""
    serve = subparsers.add_parser("serve", help="serve search, answers and the search page over HTTP")
    serve.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    serve.add_argument("--host", help="interface to listen on (default: $CITESEARCH_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default: $CITESEARCH_PORT or 8000)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log each request")
    serve.set_defaults(handler=cmd_serve)
