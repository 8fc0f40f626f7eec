"""``citesearch`` subcommands of the service package (registered by citesearch.cli): ``citesearch serve``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from citesearch.settings import Settings

LOG_LEVEL_ENV = "CITESEARCH_SERVE_LOG_LEVEL"  # how `serve --workers N` hands --log-level to its worker processes


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP service with uvicorn until interrupted (``--workers N``: N processes on one index folder)."""
    # Heavy imports here, not at module level: `citesearch index` and `search` never pay for the web stack.
    from service.observability import configure_logging

    # One handler on the root logger for the service's loggers and uvicorn's: JSON lines by default
    # (CITESEARCH_LOG_FORMAT=text for the plain format).
    configure_logging(args.log_level, settings.log_format)
    updates: dict[str, object] = {}
    if args.index_dir is not None:
        updates["index_dir"] = args.index_dir
    if args.host is not None:
        updates["host"] = args.host
    if args.port is not None:
        updates["port"] = args.port
    if not args.access_log:
        updates["access_log"] = False
    if args.workers is not None:
        updates["workers"] = args.workers
    settings = settings.model_copy(update=updates)
    if settings.workers > 1:
        return _serve_workers(settings, args.log_level)

    # Before FAISS and torch are loaded: OpenMP reads its thread count once, when the library loads.
    openmp_threads = apply_openmp_threads(settings.search_threads, os.environ)
    from service.app import create_app

    # Load the model before uvicorn starts, so a missing model is one clear line (EmbedderError), not a failed
    # lifespan traceback.
    embedder = settings.load_embedder()
    app = create_app(settings, embedder=embedder)
    print(
        f"citesearch: serving {settings.index_dir} on http://{settings.host}:{settings.port} (API docs at /docs; "
        f"OpenMP threads: {openmp_threads or 'default'})",
        flush=True,
    )
    _log_network_settings(settings, workers=1)
    import uvicorn

    server = uvicorn.Server(serve_config(app, settings, args.log_level))
    # uvicorn re-raises the SIGINT/SIGTERM it handled once it has shut down cleanly (uvicorn.run swallows it too).
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1


def serve_config(app: Any, settings: Settings, log_level: str, **options: Any) -> Any:
    """The uvicorn configuration of `citesearch serve`: proxy headers only from CITESEARCH_TRUSTED_PROXIES (uvicorn
    otherwise believes X-Forwarded-For from 127.0.0.1, so anyone on the host could pick the address the rate limit
    and the log see), and the header-read deadline for slow clients (service/slow_clients.py)."""
    from service.slow_clients import ServeConfig, protocol_class

    trusted = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    # The app logs one line per request itself (service/observability.py), so uvicorn's access log stays off;
    # log_config=None leaves uvicorn's loggers to the root handler configured by configure_logging.
    return ServeConfig(
        app,
        header_timeout=settings.header_timeout_seconds,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        log_config=None,
        http=protocol_class(),
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        **options,
    )


def _serve_workers(settings: Settings, log_level: str) -> int:
    """N uvicorn worker processes sharing one socket; each loads the model and serves the same index folder. One
    of them applies the update journal (writer.lock elects it); the others serve and journal (see
    docs/reliability.md)."""
    from uvicorn.supervisors import Multiprocess

    # The workers are spawned processes: they read their settings from the environment, so the command-line
    # overrides travel there.
    os.environ["CITESEARCH_INDEX_DIR"] = str(settings.index_dir)
    os.environ["CITESEARCH_HOST"] = settings.host
    os.environ["CITESEARCH_PORT"] = str(settings.port)
    os.environ["CITESEARCH_ACCESS_LOG"] = "true" if settings.access_log else "false"
    os.environ[LOG_LEVEL_ENV] = log_level
    config = serve_config("service.commands:worker_app", settings, log_level, factory=True, workers=settings.workers)
    print(
        f"citesearch: serving {settings.index_dir} on http://{settings.host}:{settings.port} with "
        f"{settings.workers} worker processes (API docs at /docs)",
        flush=True,
    )
    _log_network_settings(settings, workers=settings.workers)
    sock = config.bind_socket()
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()
    return 0


def worker_app() -> Any:
    """The app of one `serve --workers N` worker process (a uvicorn factory; settings from the environment)."""
    from service.observability import configure_logging

    settings = Settings()
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"), settings.log_format)
    apply_openmp_threads(settings.search_threads, os.environ)
    from service.app import create_app

    return create_app(settings, embedder=settings.load_embedder())


def _log_network_settings(settings: Settings, *, workers: int) -> None:
    log = logging.getLogger("citesearch.serve")
    proxies = settings.trusted_proxies.strip()
    log.info(
        "proxy headers %s; header-read deadline %s",
        f"believed from {proxies}" if proxies else "ignored (CITESEARCH_TRUSTED_PROXIES is empty)",
        f"{settings.header_timeout_seconds:g}s" if settings.header_timeout_seconds > 0 else "off",
    )
    if settings.rate_limit_per_minute > 0:
        # Buckets live in each process: a client whose connections land on different workers gets each one's.
        log.info(
            "rate limit %d/min (burst %d) per client in each of %d worker process(es): effectively up to %d/min "
            "(burst %d) per client",
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
            workers,
            settings.rate_limit_per_minute * workers,
            settings.rate_limit_burst * workers,
        )


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


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands. Handlers import their heavy dependencies lazily."""
    serve = subparsers.add_parser("serve", help="serve search, answers and the search page over HTTP")
    serve.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    serve.add_argument("--host", help="interface to listen on (default: $CITESEARCH_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default: $CITESEARCH_PORT or 8000)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log each request")
    serve.add_argument(
        "--workers", type=_workers, help="worker processes on one index folder (default: $CITESEARCH_WORKERS or 1)"
    )
    serve.set_defaults(handler=cmd_serve)
