"""docs/configuration.md is generated from Settings and kept equal to it."""

from __future__ import annotations

from citesearch import config_docs
from citesearch.settings import Settings


def test_the_configuration_reference_is_what_the_settings_generate() -> None:
    on_disk = config_docs.DOC_PATH.read_text(encoding="utf-8")
    assert on_disk == config_docs.render(), "run: python -m citesearch.config_docs > docs/configuration.md"
    assert config_docs.main(["--check"]) == 0


def test_every_setting_is_described_and_listed() -> None:
    text = config_docs.render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description (the reference would have an empty row)"
        assert f"| `CITESEARCH_{name.upper()}` |" in text
    assert "| `CITESEARCH_API_KEYS` | none |" in text  # a secret's default is shown as none, never a value
