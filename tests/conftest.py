"""Test-wide guards: no network except loopback (nothing may download at run time), shared data paths."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise OSError(f"network access blocked in tests: {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise OSError(f"network access blocked in tests: {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (CI has it; a plain clone does not)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedder():
    from services.embeddings import E5Embeddings

    return E5Embeddings()


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL + pgvector on 127.0.0.1 for the whole session (started here, stopped afterwards)."""
    from tests.helpers.pg_server import LocalPostgres, ServerUnavailable

    try:
        server = LocalPostgres().start()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):  # CI installs the pinned server wheel: not starting is a failure there
            pytest.fail(f"PostgreSQL + pgvector test server did not start: {exc}")
        pytest.skip(f"no PostgreSQL + pgvector test server could be started here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the session's server."""
    import uuid

    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
