"""Shared fixtures: the real model and a real index built once per session from seeds/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from index_store import IndexReader, open_index
from indexer.embedder import HashingEmbedder, SentenceTransformerEmbedder
from indexer.pipeline import BuildReport, build_index

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEEDS = PROJECT_ROOT / "seeds"
SEED_ARTICLE = "000_d73893d2131be99a.txt"
SEED_PAGE = "003_84eea950d14e0b91.txt"


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def seed_index(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder
) -> tuple[Path, BuildReport]:
    """An index of seeds/ built once with the real model; tests must not write to it."""
    index_dir = tmp_path_factory.mktemp("seed-index")
    report = build_index([SEEDS], index_dir, real_embedder)
    return index_dir, report


@pytest.fixture(scope="session")
def seed_reader(seed_index: tuple[Path, BuildReport]) -> Iterator[IndexReader]:
    reader = open_index(seed_index[0])
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def seed_api(seed_index: tuple[Path, BuildReport], real_embedder: SentenceTransformerEmbedder) -> Iterator[TestClient]:
    """The real HTTP app over the seed index (the session's model injected), started once for all API tests."""
    from citesearch.settings import Settings
    from service.app import create_app

    # No rate limit: the API tests send many requests from one client (tests/test_security.py tests the limit).
    settings = Settings(index_dir=seed_index[0], rate_limit_per_minute=0, _env_file=None)
    app = create_app(settings, embedder=real_embedder)
    with TestClient(app) as client:
        yield client
