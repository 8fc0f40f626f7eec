"""``citesearch`` subcommands of the service package (registered by citesearch.cli): ``citesearch serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from citesearch.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP service with uvicorn until interrupted."""
    # Heavy imports here, not at module level: `citesearch index` and `search` never pay for the web stack.
    import logging

    import uvicorn

    # uvicorn configures only its own loggers; this makes the service's (index swaps, warm-up) visible too.
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")

    from service.app import create_app, load_embedder

    updates: dict[str, object] = {}
    if args.index_dir is not None:
        updates["index_dir"] = args.index_dir
    if args.host is not None:
        updates["host"] = args.host
    if args.port is not None:
        updates["port"] = args.port
    settings = settings.model_copy(update=updates)
    # Load the model before uvicorn starts, so a missing model is one clear line (EmbedderError), not a failed
    # lifespan traceback.
    embedder = load_embedder(settings)
    app = create_app(settings, embedder=embedder)
    print(f"citesearch: serving {settings.index_dir} on http://{settings.host}:{settings.port} (API docs at /docs)",
          flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=args.access_log)
    return 0


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
