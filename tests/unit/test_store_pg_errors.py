"""Clear, specific errors for a misconfigured or missing PostgreSQL store (no tracebacks for the user)."""

from __future__ import annotations

import socket

import pytest

from services.config import Settings
from services.errors import StoreUnavailable
from services.store_factory import open_store
from tests.unit.test_store_contract import DIM, add_doc, embed_all


def test_pgvector_without_a_url_says_what_to_set(tmp_path):
    with pytest.raises(StoreUnavailable, match="DOCQA_DATABASE_URL"):
        open_store(Settings(data_dir=tmp_path, store="pgvector"), "fake-model", DIM)


def test_unreachable_server_names_the_server_without_the_password(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://docqa:hunter2@127.0.0.1:{port}/docqa"
    with pytest.raises(StoreUnavailable, match="Cannot reach the PostgreSQL server") as info:
        open_store(Settings(data_dir=tmp_path, store="pgvector", database_url=url), "fake-model", DIM)
    assert "hunter2" not in info.value.message and f"127.0.0.1:{port}" in info.value.message


def test_missing_pgvector_extension_is_explained(pg_server, tmp_path):
    """A database without pgvector, opened by a role that may not install it."""
    pg_server.sql("CREATE ROLE plain LOGIN")
    pg_server.sql("CREATE DATABASE novector OWNER plain TEMPLATE template0")
    url = pg_server.url_for("novector").replace("postgres@", "plain@")
    with pytest.raises(StoreUnavailable, match="pgvector extension is not available"):
        open_store(Settings(data_dir=tmp_path, store="pgvector", database_url=url), "fake-model", DIM)


def test_a_server_going_away_becomes_a_store_error(pg_url):
    from services.store_pg import PgVectorStore

    store = PgVectorStore(pg_url, "fake-model", DIM)
    import psycopg

    # The server ends this session (as a restart or a failover would): the call fails with our error...
    other = psycopg.connect(pg_url, autocommit=True)
    other.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    other.close()
    with pytest.raises(StoreUnavailable, match="stopped answering"):
        store.counts()
    # ...and the next call reconnects, with the staging tables that ingest copies rows through.
    assert store.counts()["documents"] == 0
    assert add_doc(store, "a", ["alpha beta"]) and embed_all(store)
    assert store.get_document("a").status == "ready"
    store.close()
