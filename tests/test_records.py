"""The document record (indexer/records.py): one model for jsonl lines and POST /documents, shown in OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.loaders import record_document
from indexer.records import MAX_ID_CHARS, RecordError, parse_record


def test_underscore_id_integer_ids_and_blank_optional_fields() -> None:
    record = parse_record({"_id": 42, "title": "  ", "text": "Body text.", "url": "", "metadata": None})
    assert (record.id, record.title, record.url, record.metadata) == ("42", None, None, {})
    # "_id" wins over "id" (BEIR files carry "_id"); a null "_id" falls back to "id".
    assert parse_record({"_id": "a", "id": "b", "text": "x"}).id == "a"
    assert parse_record({"_id": None, "id": "b", "text": "x"}).id == "b"


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"text": "x"}, "id", '"_id" or "id"'),
        ({"id": True, "text": "x"}, "id", "string or an integer"),
        ({"id": "  ", "text": "x"}, "id", "blank"),
        ({"id": "x" * (MAX_ID_CHARS + 1), "text": "x"}, "id", "printable"),
        ({"id": "a\nb", "text": "x"}, "id", "printable"),
        ({"id": "a"}, "text", "required"),
        ({"id": "a", "text": 5}, "text", "must be a string"),
        ({"id": "a", "text": "nul \x00 inside"}, "text", "NUL"),
        ({"id": "a", "text": "x", "title": 3}, "title", "must be a string"),
        ({"id": "a", "text": "x", "metadata": [1]}, "metadata", "JSON object"),
        ({"id": "a", "text": "x", "colour": "red"}, "colour", "unknown field"),
        (["not", "an", "object"], "body", "JSON object"),
    ],
)
def test_each_problem_names_its_field(raw: Any, field: str, message: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_record(raw)
    assert info.value.field == field and message in info.value.message


def test_the_loader_ignores_fields_that_are_not_a_documents() -> None:
    record = parse_record({"_id": "d", "text": "Some text.", "score": 3}, ignore_unknown=True)
    document = record_document(record, "corpus.jsonl:1")
    assert (document.doc_id, document.text, document.source) == ("d", "Some text.", "corpus.jsonl:1")
    with pytest.raises(RecordError, match="no text"):
        record_document(parse_record({"id": "p", "text": "Leave a Reply"}), "api")  # page chrome only


def test_openapi_shows_the_post_documents_body(fake_api: TestClient) -> None:
    body = fake_api.get("/openapi.json").json()["paths"]["/documents"]["post"]["requestBody"]
    one, batch = body["content"]["application/json"]["schema"]["anyOf"]
    assert one["required"] == ["id", "text"] and set(one["properties"]) == {"id", "title", "text", "url", "metadata"}
    assert one["additionalProperties"] is False
    assert batch["properties"]["documents"]["items"] == one and batch["properties"]["documents"]["minItems"] == 1
