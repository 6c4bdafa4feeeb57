"""The web server is safe by default (.streamlit/config.toml) and its upload limit is configurable.

Checked twice: in the file itself, and as Streamlit resolves it (its own config loader, in a fresh process
started in the project root the way `streamlit run` is), including the documented environment override.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".streamlit" / "config.toml"
OPTIONS = (
    "server.address",
    "server.enableXsrfProtection",
    "server.enableCORS",
    "server.maxUploadSize",
    "server.headless",
    "browser.gatherUsageStats",
)


@pytest.fixture(scope="module")
def config() -> dict:
    with CONFIG.open("rb") as handle:
        return tomllib.load(handle)


def test_the_file_is_safe_by_default(config: dict) -> None:
    server, browser = config["server"], config["browser"]
    assert server["address"] == "127.0.0.1"  # loopback only unless someone decides otherwise
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # CORS protection stays on (Streamlit's default)
    assert browser["gatherUsageStats"] is False
    assert isinstance(server["maxUploadSize"], int) and 1 <= server["maxUploadSize"] <= 1024


def test_the_upload_limits_agree(config: dict) -> None:
    """Streamlit's limit and the library's (DOCQA_MAX_FILE_MB) are the same number of the same MB."""
    assert config["server"]["maxUploadSize"] == Settings.model_fields["max_file_mb"].default


def _resolved(env: dict[str, str] | None = None) -> dict:
    """What `streamlit config show` says, run in the project root (as `streamlit run` is) with ``env``: the
    file, environment variables (STREAMLIT_SERVER_MAX_UPLOAD_SIZE, ...) and defaults, as Streamlit merges them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    done = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = tomllib.loads(done.stdout[done.stdout.index("[global]") :])  # the banner above is not TOML
    return {name: shown[name.split(".")[0]][name.split(".")[1]] for name in OPTIONS}


def test_streamlit_reads_these_settings() -> None:
    resolved = _resolved()
    assert resolved == {
        "server.address": "127.0.0.1",
        "server.enableXsrfProtection": True,
        "server.enableCORS": True,
        "server.maxUploadSize": 200,
        "server.headless": True,
        "browser.gatherUsageStats": False,
    }


def test_the_upload_limit_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = _resolved({"STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "500"})
    assert resolved["server.maxUploadSize"] == 500
    assert resolved["server.enableXsrfProtection"] is True  # the rest stays as it was
    from services.config import load_settings

    monkeypatch.setenv("DOCQA_MAX_FILE_MB", "500")
    assert load_settings().max_file_mb == 500


def test_the_readme_documents_how() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for needle in ("DOCQA_MAX_FILE_MB", "server.maxUploadSize", "STREAMLIT_SERVER_MAX_UPLOAD_SIZE", "127.0.0.1"):
        assert needle in readme, needle
