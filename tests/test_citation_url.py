"""Every citation carries its document's URL: /search results, /ask citations and the CLI's JSON (it was always
null in /ask, read from a citation type that had no url)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from citesearch.settings import Settings
from indexer.pipeline import build_index
from service.app import create_app
from tests.fakes import HashingEmbedder

DOCS = [
    {
        "id": "glacier",
        "title": "Glaciers",
        "url": "https://example.org/glacier",
        "text": "The glacier calves icebergs.",
    },
    {"id": "finch", "title": "Finches", "text": "Zebra finches nest in the dunes of the Outback."},
]


def test_search_and_ask_citations_name_the_document_url(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    embedder = HashingEmbedder()
    build_index([corpus], tmp_path / "index", embedder)
    settings = Settings(index_dir=tmp_path / "index", answer_min_score=0.1, sentence_warmup=False, _env_file=None)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        results = client.get("/search", params={"q": "glacier calves icebergs", "k": 2}).json()["results"]
        assert {r["citation"]["doc_id"]: r["citation"]["url"] for r in results} == {
            "glacier": "https://example.org/glacier",
            "finch": None,
        }
        answer = client.post("/ask", json={"question": "What does the glacier calve?", "k": 2}).json()
        assert answer["answer"] and answer["citations"]
        cited = {c["doc_id"]: c["url"] for c in answer["citations"]}
        assert cited["glacier"] == "https://example.org/glacier"
        assert client.get("/documents/glacier").json()["url"] == cited["glacier"]  # the same url as the document's
