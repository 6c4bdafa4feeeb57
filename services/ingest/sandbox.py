"""Run parsers in a separate, killable process with a memory limit and a wall-clock timeout for each file.

The child is a fresh interpreter (``python -m services.ingest.worker``), not a fork: it does not inherit the
app's memory (models, indexes) and starts with only what parsing needs. Requests go in on stdin and results
come back on stdout, one JSON line each (``ParsedDocument.to_dict()``); nothing is pickled, so a hostile file
can at worst make the child report an error. A child that runs past a file's timeout is killed with its whole
process group (Tesseract included); one that hits the memory limit reports it, or dies and is reported as such.

A :class:`SandboxedParser` parses files one after another in one child, so a batch of small files pays for
starting the interpreter (and importing pypdf) once instead of once per file. Each file keeps its own
guarantees: its own wall-clock timeout and CPU-time budget, and the child's memory limit. After a file that
ended in a kill, a crash, a memory failure or a parser error, the next file gets a fresh child; a file that
runs out of memory in a child that had parsed other files first is tried once more in a fresh one, so no file
fails for memory that an earlier file left behind. A child is also replaced after ``max_files_per_child``
files. :func:`parse_file` is the one-file form.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from services import errors
from services.errors import DocQAError, ParseCancelled, ParseFailed, ParseMemoryExceeded, ParseTimeout
from services.ingest.dispatch import kind_of, parse_path
from services.models import ParsedDocument

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_log = logging.getLogger(__name__)
_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_STDERR_KEPT = 4000
MAX_FILES_PER_CHILD = 50


def parse_file(
    path: Path,
    *,
    source_name: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
    timeout_s: float = 120,
    memory_mb: int = 2048,
    ocr: bool = True,
) -> list[ParsedDocument]:
    """Parse ``path`` in a child process of its own; see the module docstring. Raises DocQAError subclasses only."""
    with SandboxedParser(timeout_s=timeout_s, memory_mb=memory_mb) as parser:
        return parser.parse(
            path,
            source_name=source_name,
            text_column=text_column,
            id_column=id_column,
            date_column=date_column,
            ocr=ocr,
        )


class SandboxedParser:
    """Parse files one at a time in a reused, limited child process (see the module docstring).

    One file at a time: :meth:`parse` is called from one thread. :meth:`cancel` may be called from any other
    thread; it kills the child, the :meth:`parse` in progress raises :class:`ParseCancelled`, and so does every
    later one. Use it as a context manager (or call :meth:`close`) so that no child outlives the batch."""

    def __init__(
        self, *, timeout_s: float = 120, memory_mb: int = 2048, max_files_per_child: int = MAX_FILES_PER_CHILD
    ):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_files_per_child = max(max_files_per_child, 1)
        self.children_started = 0
        self._child: _ParserChild | None = None
        self._child_lock = threading.Lock()
        self._cancelled = threading.Event()

    def __enter__(self) -> SandboxedParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def parse(
        self,
        path: Path,
        *,
        source_name: str | None = None,
        text_column: str | None = None,
        id_column: str | None = None,
        date_column: str | None = None,
        ocr: bool = True,
    ) -> list[ParsedDocument]:
        """Parse one file in the child. Raises DocQAError subclasses only."""
        path = Path(path).absolute()
        name = source_name or path.name
        kind_of(path, name)  # an unsupported name needs no process
        request = {
            "path": str(path),
            "source_name": name,
            "text_column": text_column,
            "id_column": id_column,
            "date_column": date_column,
            "ocr": ocr,
        }
        child = self._running_child(name)
        try:
            return self._ask(child, request, name)
        except ParseMemoryExceeded:
            if child.files_before_this_one == 0:
                raise
            _log.info("%s ran out of memory in a parser that had read other files first: trying a fresh one", name)
            return self._ask(self._running_child(name), request, name)

    def cancel(self) -> None:
        """Stop: kill the child now (from any thread); this and every later :meth:`parse` raise ParseCancelled."""
        self._cancelled.set()
        with self._child_lock:
            child, self._child = self._child, None
        if child is not None:
            child.kill()

    def close(self) -> None:
        """End the child (it exits when its input closes; it is killed if it does not)."""
        with self._child_lock:
            child, self._child = self._child, None
        if child is not None:
            child.close()

    # ---- one file ----------------------------------------------------------------------------------------
    def _running_child(self, name: str) -> _ParserChild:
        """The child for the next file: the current one, or a fresh one when it has served its share of files
        or is no longer running (e.g. the system ended it while it waited)."""
        with self._child_lock:
            if self._cancelled.is_set():
                raise ParseCancelled(f"{name} was not read: the ingest was stopped.")
            child = self._child
            if child is not None and (child.files_served >= self.max_files_per_child or not child.running()):
                child.close()
                child = None
            if child is None:
                try:
                    child = _ParserChild(self.memory_mb, self.timeout_s, self.max_files_per_child)
                except OSError as err:
                    raise ParseFailed(f"{name} could not be read: the parser process could not start ({err})") from err
                self.children_started += 1
            self._child = child
            return child

    def _retire(self, child: _ParserChild, *, kill: bool) -> None:
        with self._child_lock:
            if self._child is child:
                self._child = None
        if kill:
            child.kill()
        else:
            child.close()

    def _ask(self, child: _ParserChild, request: dict[str, Any], name: str) -> list[ParsedDocument]:
        try:
            reply = child.ask(request, self.timeout_s)
        except subprocess.TimeoutExpired:
            self._retire(child, kill=True)
            if self._cancelled.is_set():
                raise ParseCancelled(f"{name} was not read: the ingest was stopped.") from None
            raise ParseTimeout(
                f"{name} took longer than {self.timeout_s:g} s to read and was stopped: the file may be broken or "
                "hostile"
            ) from None
        except BaseException:
            self._retire(child, kill=True)  # e.g. KeyboardInterrupt: never leave a parser running
            raise
        if reply is None:  # the child died (or was killed by cancel())
            returncode = child.wait_for_exit()
            self._retire(child, kill=True)
            if self._cancelled.is_set():
                raise ParseCancelled(f"{name} was not read: the ingest was stopped.")
            return _result(b"", child.stderr_tail(), returncode, name, self.memory_mb)
        try:
            return _result(reply, child.stderr_tail(), None, name, self.memory_mb)
        except ParseFailed:
            # A parser error or a memory failure may have left the child in a bad state: the next file gets a
            # fresh one. A file refused for a reason (encrypted, no text, ...) leaves it as healthy as it was.
            self._retire(child, kill=True)
            raise


class _ParserChild:
    """One worker process and the threads that read its output: replies line by line, and a short tail of
    its stderr (drained all along, so a chatty parser can never block on a full pipe)."""

    def __init__(self, memory_mb: int, timeout_s: float, max_files: int):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONIOENCODING"] = "utf-8"
        command = [
            sys.executable,
            "-m",
            "services.ingest.worker",
            "--memory-mb",
            str(memory_mb),
            "--timeout-s",
            repr(float(timeout_s)),
            "--max-files",
            str(max_files),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so a kill also reaches Tesseract
            close_fds=True,
        )
        self.files_served = 0
        self.files_before_this_one = 0
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(
            target=self._read_replies, args=(self.process.stdout,), name="docqa-parser-replies", daemon=True
        ).start()
        threading.Thread(
            target=self._read_stderr, args=(self.process.stderr,), name="docqa-parser-stderr", daemon=True
        ).start()

    def ask(self, request: dict[str, Any], timeout_s: float) -> bytes | None:
        """Send one request; its reply line, or None when the child died first. Raises TimeoutExpired."""
        with self._stderr_lock:
            self._stderr.clear()  # this file's messages only
        self.files_before_this_one = self.files_served
        self.files_served += 1
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):  # ValueError: the pipe was closed by a kill()
            pass  # the reply reader sees the end of the output and says so
        try:
            return self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise subprocess.TimeoutExpired(self.process.args, timeout_s) from None

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> bytes:
        with self._stderr_lock:
            return bytes(self._stderr)

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode if self.process.returncode is not None else -signal.SIGKILL

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError, AttributeError):  # AttributeError: no killpg (Windows)
            try:
                self.process.kill()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass

    def _read_replies(self, stdout: IO[bytes]) -> None:
        try:
            for line in stdout:
                if not line.endswith(b"\n"):
                    break  # cut off by the child's death: not a reply
                self._replies.put(line[:-1])
        except (OSError, ValueError):
            pass
        finally:
            self._replies.put(None)
            stdout.close()

    def _read_stderr(self, stderr: IO[bytes]) -> None:
        try:
            for block in iter(lambda: stderr.read1(65536), b""):
                with self._stderr_lock:
                    self._stderr += block
                    del self._stderr[:-_STDERR_KEPT]
        except (OSError, ValueError):
            pass
        finally:
            stderr.close()


def parse_file_inprocess(
    path: Path,
    *,
    source_name: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
    ocr: bool = True,
) -> list[ParsedDocument]:
    """The same parse in this process, without limits: for debugging and tests only."""
    return parse_path(
        Path(path),
        source_name=source_name,
        text_column=text_column,
        id_column=id_column,
        date_column=date_column,
        ocr=ocr,
    )


def _result(out: bytes, err: bytes, returncode: int | None, name: str, memory_mb: int) -> list[ParsedDocument]:
    """The documents a child reported, or the error it reported (or its death) as a DocQAError.
    ``returncode`` is None for a child that answered and is still running."""
    stderr_tail = err[-_STDERR_KEPT:].decode("utf-8", "replace")
    memory_message = (
        f"{name} needed more than {memory_mb} MB of memory to read and was stopped: the file may be broken or hostile"
    )
    payload: dict[str, Any] | None = None
    if out:
        try:
            payload = json.loads(out)
        except ValueError:
            payload = None
    if payload is None or not payload.get("ok"):
        # Tracebacks and library warnings go to the log; the user gets the message. A crash is worth a warning,
        # a file we refused with a reason (encrypted, scanned, ...) only an info line.
        level = logging.WARNING if payload is None or payload.get("error") == "ParseFailed" else logging.INFO
        _log.log(level, "parser for %s ended with %s: %s", name, _exit_label(returncode), stderr_tail.strip() or "-")
    if payload is None:
        if any(sign in stderr_tail for sign in _MEMORY_SIGNS) or returncode == -signal.SIGKILL:
            raise ParseMemoryExceeded(memory_message)
        raise ParseFailed(
            f"{name} could not be read: the parser stopped unexpectedly ({_exit_label(returncode)}); "
            "the file may be damaged"
        )
    if payload.get("ok"):
        return [ParsedDocument.from_dict(document) for document in payload["documents"]]
    error_type = getattr(errors, str(payload.get("error")), None)
    if not (isinstance(error_type, type) and issubclass(error_type, DocQAError)):
        error_type = ParseFailed
    message = str(payload.get("message") or "")
    if error_type is ParseMemoryExceeded:
        message = memory_message
    raise error_type(message or f"{name} could not be read")


def _exit_label(returncode: int | None) -> str:
    if returncode is None:
        return "an error report"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
