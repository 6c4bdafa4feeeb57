"""House rules on imports, checked by parsing every module (nothing is imported or run).

services/ never imports Streamlit (it is used by the CLI and benchmarks too); pages/, components/ and app.py
never import the heavy or low-level libraries directly (FAISS, BERTopic, UMAP, HDBSCAN, LangChain): they go
through services/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_FORBIDDEN = ("faiss", "bertopic", "umap", "hdbscan", "langchain")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file (also inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def files(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        target = ROOT / part
        out.extend([target] if target.is_file() else sorted(target.rglob("*.py")))
    return [p for p in out if p.is_file()]


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", files("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_never_import_streamlit(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _top(m) == "streamlit")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: services must stay importable without Streamlit"


@pytest.mark.parametrize("path", files("app.py", "pages", "components"), ids=lambda p: str(p.relative_to(ROOT)))
def test_ui_never_imports_heavy_libraries(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _top(m).startswith(UI_FORBIDDEN))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: call a service instead"


def test_only_resources_uses_cache_resource() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for p in files("app.py", "pages", "components")
        if "cache_resource" in p.read_text(encoding="utf-8")
    ]
    assert users == ["components/resources.py"], users


def test_the_checker_sees_imports() -> None:
    # Guard against a checker that silently finds nothing.
    assert "streamlit" in imported_modules(ROOT / "components" / "resources.py")
    assert files("services") and files("pages")
