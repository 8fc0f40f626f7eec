"""Published dates (parsed from jsonl fields, stored, returned, filterable), the recency prior, and duplicate
stories collapsed into one hit: unit tests with the hashing embedder, then the real model over HTTP and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from citesearch.search import InvalidSearchRequest, Searcher, SearchRequest
from index_store import open_index
from index_store.duplicates import duplicate_clusters
from indexer.dates import find_published, parse_date
from indexer.loaders import load_documents
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder

WIRE = (
    "The city council approved a new budget for the harbour bridge repairs on Tuesday after a long debate. "
    "Council members argued for hours about the cost of steel, the closure of two lanes and the schedule of "
    "the works, which are expected to last until next autumn. The mayor said the repairs could not wait."
)


def test_parse_date_normalises_the_usual_forms() -> None:
    assert parse_date("2022/06/12") == "2022-06-12"
    assert parse_date("2022-06-12") == "2022-06-12"
    assert parse_date("2022-06-12T09:30:00Z") == "2022-06-12T09:30:00Z"
    assert parse_date("2022-06-12T11:30:00+02:00") == "2022-06-12T09:30:00Z"  # to UTC
    assert parse_date("Sun, 12 Jun 2022 09:30:00 GMT") == "2022-06-12T09:30:00Z"
    assert parse_date(1655026200) == "2022-06-12T09:30:00Z"  # epoch seconds
    assert parse_date("June 5 2022") == "2022-06-05"
    for not_a_date in ("gold", "", None, True, [2022], "next week-ish maybe", -5, "10:30", "June 5"):
        assert parse_date(not_a_date) is None, not_a_date


def test_find_published_reads_record_fields_then_metadata() -> None:
    assert find_published({"publish_date": "2022/06/12"}) == "2022-06-12"
    assert find_published({"title": "x"}, {"published": "2021-01-02"}) == "2021-01-02"
    assert find_published({"date": "nonsense"}, {"date": "2020-03-04"}) == "2020-03-04"
    assert find_published({"title": "x"}, {"role": "gold"}) is None


def test_jsonl_loader_stores_the_date_in_metadata(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    rows = [
        {"_id": "a", "text": "One text.", "metadata": {"publish_date": "2022/06/12", "role": "gold"}},
        {"_id": "b", "text": "Two text.", "published": "2021-05-01T10:00:00Z"},
        {"_id": "c", "text": "Three text.", "metadata": {"date": "not a date"}},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    docs = {d.doc_id: d for d in load_documents([corpus]).documents}
    assert docs["a"].metadata == {
        "publish_date": "2022/06/12",
        "role": "gold",
        "published": "2022-06-12",
        "title_guessed": True,  # no title given: the one shown is the text's first sentence
    }
    assert docs["b"].metadata["published"] == "2021-05-01T10:00:00Z"
    assert "published" not in docs["c"].metadata


def test_duplicate_clusters_find_planted_copies_only() -> None:
    other = "Penguins live in Antarctica and swim in cold water " * 5
    texts = [
        WIRE,
        "Some unrelated story about football and the cup final in the capital, with goals and fans " * 3,
        WIRE.replace("Tuesday", "Tuesday evening") + " Reporting by the wire service.",  # a syndicated copy
        other,
        WIRE,  # an exact copy
        "short text",  # too short to judge
    ]
    clusters = duplicate_clusters(texts)
    assert clusters.tolist() == [0, 1, 0, 3, 0, 5]


def _corpus(tmp_path: Path) -> Path:
    rows = [
        {"_id": "old", "text": "Harbour bridge closed for repairs, the council says. " * 6, "date": "2020-01-10"},
        {"_id": "new", "text": "Harbour bridge repairs finished early, the council says. " * 6, "date": "2022-06-10"},
        {"_id": "mid", "text": "Harbour bridge toll rises again, the council says. " * 6, "date": "2022-03-01"},
        {"_id": "undated", "text": "Harbour bridge painted blue by the council. " * 6},
        {"_id": "wire-1", "text": WIRE, "published": "2022-06-14"},
        {"_id": "wire-2", "text": WIRE + " Copyright the wire.", "published": "2022-06-15"},
        {"_id": "wire-3", "text": WIRE, "title": "A new headline for the same story", "published": "2022-06-15"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def dated_searcher(tmp_path: Path):
    embedder = HashingEmbedder()
    apply_changes(tmp_path / "idx", embedder, upserts=load_documents([_corpus(tmp_path)]).documents,
                  options=BuildOptions())  # fmt: skip
    reader = open_index(tmp_path / "idx")
    yield Searcher(reader, embedder)
    reader.close()


def _docs(searcher: Searcher, query: str, **fields: object) -> list[str]:
    result = searcher.search(SearchRequest(query, k=20, per_doc_cap=1, **fields))  # type: ignore[arg-type]
    return [h.citation.doc_id for h in result.hits]


def test_date_filters_keep_only_documents_inside_the_bounds(dated_searcher: Searcher) -> None:
    every = _docs(dated_searcher, "harbour bridge council", collapse_duplicates=False)
    assert {"old", "new", "mid", "undated"} <= set(every)
    after = _docs(dated_searcher, "harbour bridge council", published_after="2022-01-01", collapse_duplicates=False)
    assert set(after) == {"new", "mid", "wire-1", "wire-2", "wire-3"}  # undated ones are left out
    window = _docs(dated_searcher, "harbour bridge council", published_after="2022-02-01",
                   published_before="2022-06-10")  # fmt: skip
    assert set(window) == {"new", "mid"}  # a day-only upper bound includes that day
    assert _docs(dated_searcher, "harbour bridge council", published_before="2019-12-31") == []
    hit = dated_searcher.search(SearchRequest("harbour bridge closed", k=1, published_before="2020-12-31")).hits[0]
    assert hit.citation.doc_id == "old" and hit.citation.published == "2020-01-10"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"published_after": "last tuesday-ish"}, "published_after"),
        ({"published_after": "2022-06-10", "published_before": "2022-01-01"}, "published_before"),
        ({"recency": True, "as_of": "soon"}, "as_of"),
        ({"recency": True, "mode": "bm25"}, "recency"),
    ],
)
def test_bad_date_fields_name_the_field(dated_searcher: Searcher, fields: dict, field: str) -> None:
    with pytest.raises(InvalidSearchRequest) as caught:
        dated_searcher.search(SearchRequest("harbour bridge", **fields))
    assert caught.value.field == field


def test_recency_prior_favours_documents_shortly_before_as_of(dated_searcher: Searcher) -> None:
    query = "harbour bridge council says"
    plain = dated_searcher.search(SearchRequest(query, k=20, per_doc_cap=1, explain=True))
    recent = dated_searcher.search(
        SearchRequest(query, k=20, per_doc_cap=1, explain=True, recency=True, as_of="2022-06-11")
    )
    position = {h.citation.doc_id: h.rank for h in recent.hits}
    assert position["new"] < min(position["mid"], position["old"])
    priors: dict[str, float] = {}
    for h in recent.hits:
        assert h.explain is not None and h.explain.recency_score is not None  # asked for: every hit has its prior
        priors[h.citation.doc_id] = h.explain.recency_score
    half_life = dated_searcher.fusion.recency_half_life_days
    assert priors["new"] == pytest.approx(0.5 ** (1 / half_life), rel=1e-3)  # one day before as_of
    assert priors["undated"] == 0.0 and priors["old"] < priors["mid"] < priors["new"] and priors["old"] < 1e-6
    assert all(h.explain.recency_score is None for h in plain.hits)
    moved = dated_searcher.search(
        SearchRequest(query, k=20, per_doc_cap=1, explain=True, recency=True, as_of="2020-01-11")
    )
    assert moved.hits[0].citation.doc_id == "old"  # as_of moves the prior: one day before it now
    later = {h.citation.doc_id: h.explain.recency_score for h in moved.hits}
    assert later["new"] == later["mid"] == 0.0  # published after as_of: not recent as of then


def test_duplicates_collapse_into_one_hit_and_expand_on_request(dated_searcher: Searcher) -> None:
    keyword = dated_searcher.reader.keyword
    assert keyword is not None and keyword.documents is not None and keyword.documents.duplicate_documents == 2
    query = "council budget harbour bridge repairs steel"
    collapsed = dated_searcher.search(SearchRequest(query, k=10, per_doc_cap=1)).hits
    wires = [h for h in collapsed if h.citation.doc_id.startswith("wire")]
    assert len(wires) == 1
    assert sorted((wires[0].citation.doc_id, *wires[0].also_in)) == ["wire-1", "wire-2", "wire-3"]
    expanded = dated_searcher.search(SearchRequest(query, k=10, per_doc_cap=1, collapse_duplicates=False)).hits
    assert sorted(h.citation.doc_id for h in expanded if h.citation.doc_id.startswith("wire")) == [
        "wire-1",
        "wire-2",
        "wire-3",
    ]
    assert all(h.also_in == () for h in expanded)
    assert not [h for h in collapsed if not h.citation.doc_id.startswith("wire") and h.also_in]


# -- the real model, over HTTP and the CLI ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_dated_index(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> Path:
    root = tmp_path_factory.mktemp("dated")
    index_dir = root / "idx"
    apply_changes(index_dir, real_embedder, upserts=load_documents([_corpus(root)]).documents,
                  options=BuildOptions())  # fmt: skip
    return index_dir


def test_real_date_filters_and_recency_over_http(real_dated_index: Path, real_embedder) -> None:
    from citesearch.settings import Settings
    from service.app import create_app
    from tests.servicekit import running_server

    settings = Settings(index_dir=real_dated_index, rate_limit_per_minute=0, _env_file=None)
    with running_server(create_app(settings, embedder=real_embedder)) as base, httpx.Client(base_url=base) as client:
        got = client.get("/search", params={"q": "harbour bridge repairs", "k": 10, "published_after": "2022-01-01"})
        assert got.status_code == 200, got.text
        results = got.json()["results"]
        assert results and all(r["citation"]["published"] >= "2022-01-01" for r in results)
        assert not {"old", "undated"} & {r["citation"]["doc_id"] for r in results}
        body = {"q": "harbour bridge", "k": 10, "per_doc_cap": 1, "recency": True, "as_of": "2022-06-11"}
        ranked = [r["citation"]["doc_id"] for r in client.post("/search", json=body).json()["results"]]
        assert ranked.index("new") < ranked.index("old")
        wires = [r for r in client.get("/search", params={"q": "council budget steel", "k": 10}).json()["results"]
                 if r["citation"]["doc_id"].startswith("wire")]  # fmt: skip
        assert len({r["citation"]["doc_id"] for r in wires}) == 1 and len(wires[0]["also_in"]) == 2
        ask = client.post(
            "/ask", json={"question": "Why was the harbour bridge closed?", "published_before": "2020-12-31"}
        )
        assert ask.status_code == 200, ask.text
        assert ask.json()["citations"] and {c["doc_id"] for c in ask.json()["citations"]} == {"old"}
        assert ask.json()["citations"][0]["published"] == "2020-01-10"
        bad = client.get("/search", params={"q": "bridge", "published_after": "someday"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "published_after"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "citesearch.cli", *args], capture_output=True, text=True, timeout=300)


def test_real_date_filters_on_the_cli(real_dated_index: Path) -> None:
    index = ["--index-dir", str(real_dated_index)]
    got = _cli("search", "harbour bridge", "--k", "10", "--published-before", "2022-03-01", "--json", *index)
    assert got.returncode == 0, got.stderr
    docs = {r["citation"]["doc_id"] for r in json.loads(got.stdout)["results"]}
    assert docs == {"old", "mid"}
    people = _cli("search", "council budget steel", "--k", "3", *index)
    assert people.returncode == 0 and "also in 2 documents" in people.stdout
    bad = _cli("search", "harbour bridge", "--published-after", "someday", *index)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "published_after" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_recency_prior_is_off_unless_asked(dated_searcher: Searcher) -> None:
    query = "harbour bridge council says"
    a = dated_searcher.search(SearchRequest(query, k=20)).hits
    b = dated_searcher.search(SearchRequest(query, k=20, as_of="2022-06-11")).hits  # as_of alone: no prior
    assert [h.passage_id for h in a] == [h.passage_id for h in b]
    assert np.isfinite([h.score for h in a]).all()
