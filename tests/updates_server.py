"""The service in a subprocess for tests/test_updates.py, so a test can kill -9 it.

    python -m tests.updates_server INDEX_DIR PORT [--hashing] [--publish-sleep SECONDS] [--reload-interval SECONDS]

``--hashing`` serves with the test HashingEmbedder (starts in a second instead of loading the model); the index must
have been built with it. ``--publish-sleep`` makes every publish sleep just before it switches ``CURRENT`` (the
version folder is written and renamed, the pointer not yet moved): the window a kill -9 "during a publish" hits.
The write key is ``KEY``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

KEY = "updates-test-key-0123456789"


def updates_app(index_dir: Path, embedder: Any, **overrides: Any) -> Any:
    """The app the update tests serve: a write key (``KEY``), a quick reload check, no rate limit, no warm-up."""
    from citesearch.settings import Settings
    from service.app import create_app

    settings = Settings(
        index_dir=index_dir,
        api_keys=f"tests:write:{KEY}",
        reload_interval_seconds=0.2,
        rate_limit_per_minute=0,
        sentence_warmup=False,
        _env_file=None,
        **overrides,
    )
    return create_app(settings, embedder=embedder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--hashing", action="store_true")
    parser.add_argument("--publish-sleep", type=float, default=0.0)
    parser.add_argument("--reload-interval", type=float, default=0.2, help="seconds between checks for a new version")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")

    import uvicorn

    from citesearch.settings import Settings
    from index_store import versions
    from indexer.embedder import SentenceTransformerEmbedder
    from service.app import create_app
    from tests.fakes import HashingEmbedder

    if args.publish_sleep > 0:
        original = versions.write_atomically

        def slow_switch(path: Path, data: str | bytes) -> None:
            if path.name == versions.CURRENT_NAME:
                print(f"PUBLISH-SLEEP {str(data).strip()}", file=sys.stderr, flush=True)
                time.sleep(args.publish_sleep)
            original(path, data)

        versions.write_atomically = slow_switch

    settings = Settings(
        index_dir=args.index_dir,
        api_keys=f"tests:write:{KEY}",
        reload_interval_seconds=args.reload_interval,
        rate_limit_per_minute=0,
        _env_file=None,
    )
    embedder = HashingEmbedder() if args.hashing else SentenceTransformerEmbedder()
    app = create_app(settings, embedder=embedder)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
