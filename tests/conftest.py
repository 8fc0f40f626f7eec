"""Shared fixtures and the test tiers (tests/README.md).

Two index fixtures, built once per session from seeds/: ``fake_index`` with the hashing embedder of tests/fakes.py
(instant; for everything that needs an index but not meaningful vectors: auth, limits, headers, errors, routing) and
``seed_index`` with the real model (for anything whose result depends on the vectors).

Tiers are markers. ``model`` is added here to every test that asks for the real model (``real_embedder``, directly
or through ``seed_index``/``seed_reader``/``seed_api``); ``browser``, ``subprocess`` and ``slow`` are set by the test
modules; ``unit`` is every test with none of those, and is what ``python -m pytest -m unit`` runs while working. A
unit test that loads the real model or starts a Python process anyway fails, naming the marker it needs, so the fast
tier stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from index_store import IndexReader, open_index
from indexer import embedder as embedder_module
from indexer.embedder import SentenceTransformerEmbedder
from indexer.pipeline import BuildReport, build_index
from tests.fakes import HashingEmbedder

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEEDS = PROJECT_ROOT / "seeds"
SEED_ARTICLE = "000_d73893d2131be99a.txt"
SEED_PAGE = "003_84eea950d14e0b91.txt"
# The keys of every citation in /search and `citesearch search --json`: the shape clients rely on. The comment and
# article fields are null where a page does not show them.
CITATION_FIELDS = frozenset(
    {"doc_id", "title", "source", "section", "comment_no", "char_start", "char_end", "url"}
    | {"comment_author", "comment_date", "comment_date_iso", "parent", "depth", "author", "published", "site_name"}
)

# Tiers other than unit; a test carrying none of them is a unit test. ``slow`` is for a test that needs none of the
# others but still takes seconds (ranx compiles its metrics with numba on first use: about 11 s).
SLOW_TIERS = ("model", "browser", "subprocess", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "real_embedder" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)
        if not any(item.get_closest_marker(name) for name in SLOW_TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_stay_fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a unit test, loading the real model or starting a Python process (a server, the CLI) is an error that names
    the marker it needs. Other commands (``uname`` for the machine description of a report) are fine."""
    if request.node.get_closest_marker("unit") is None:
        return

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test may not load the model: use the real_embedder fixture (tier model)")

    popen_init = subprocess.Popen.__init__

    def no_python(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        program = str(args[0] if isinstance(args, list | tuple) else args)
        if program == sys.executable or Path(program).name.startswith("python"):
            raise AssertionError(f"a unit test may not start {program}: mark it @pytest.mark.subprocess")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(embedder_module.SentenceTransformerEmbedder, "__init__", no_model)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_python)


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def fake_embedder() -> HashingEmbedder:
    """One hashing embedder for the session's fake index and the apps served over it."""
    return HashingEmbedder()


@pytest.fixture(scope="session")
def fake_index(tmp_path_factory: pytest.TempPathFactory, fake_embedder: HashingEmbedder) -> Path:
    """An index of seeds/ built with the hashing embedder, in well under a second; tests must not write to it."""
    index_dir = tmp_path_factory.mktemp("fake-index")
    build_index([SEEDS], index_dir, fake_embedder)
    return index_dir


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


@pytest.fixture(scope="session")
def fake_api(fake_index: Path, fake_embedder: HashingEmbedder) -> Iterator[TestClient]:
    """The real HTTP app over the fake index: for request validation, errors and routing, which no vector decides."""
    from citesearch.settings import Settings
    from service.app import create_app

    settings = Settings(index_dir=fake_index, rate_limit_per_minute=0, sentence_warmup=False, _env_file=None)
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        yield client
