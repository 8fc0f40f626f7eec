"""The layering the architecture promises: indexing and storage import no web framework, so the CLI, the
evaluation and a future non-HTTP front end use them without FastAPI (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):  # every import, also the ones inside functions
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", ["indexer", "index_store"])
def test_indexing_and_storage_import_no_web_framework(package: str) -> None:
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] in WEB_FRAMEWORKS
        )
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
    }
    offenders = {name: modules for name, modules in offenders.items() if modules}
    assert not offenders, f"{package}/ must not import a web framework: {offenders}"
    assert (PROJECT_ROOT / package / "__init__.py").is_file()  # the scan looked at the real package


def test_the_service_layer_is_not_imported_by_indexing_or_storage() -> None:
    for package in ("indexer", "index_store"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            assert not any(m.split(".")[0] == "service" for m in _imported_modules(path)), path
