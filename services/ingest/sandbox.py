"""Run a parser in a separate, killable process with a memory limit and a wall-clock timeout.

The child is a fresh interpreter (``python -m services.ingest.worker``), not a fork: it does not inherit the
app's memory (models, indexes) and starts with only what parsing needs. The request goes in on stdin and the
result comes back on stdout as JSON (``ParsedDocument.to_dict()``); nothing is pickled, so a hostile file can
at worst make the child report an error. A child that runs past the timeout is killed with its whole process
group (Tesseract included); one that hits the memory limit reports it, or dies and is reported as such.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from services import errors
from services.errors import DocQAError, ParseFailed, ParseMemoryExceeded, ParseTimeout
from services.ingest.dispatch import kind_of, parse_path
from services.models import ParsedDocument

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_log = logging.getLogger(__name__)
_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_STDERR_KEPT = 4000


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
    """Parse ``path`` in a child process; see the module docstring. Raises DocQAError subclasses only."""
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
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "services.ingest.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so a kill also reaches Tesseract
            close_fds=True,
        )
    except OSError as err:
        raise ParseFailed(f"{name} could not be read: the parser process could not start ({err})") from err
    try:
        out, err_bytes = child.communicate(json.dumps(request).encode("utf-8"), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(child)
        raise ParseTimeout(
            f"{name} took longer than {timeout_s:g} s to read and was stopped: the file may be broken or hostile"
        ) from None
    except BaseException:
        _kill(child)  # e.g. KeyboardInterrupt: never leave a parser running
        raise
    return _result(out, err_bytes, child.returncode, name, memory_mb)


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


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError, AttributeError):  # AttributeError: no killpg (Windows)
        child.kill()
    try:
        child.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


def _result(out: bytes, err: bytes, returncode: int, name: str, memory_mb: int) -> list[ParsedDocument]:
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


def _exit_label(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
