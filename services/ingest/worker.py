"""The parser process: ``python -m services.ingest.worker --memory-mb M --timeout-s T --max-files N`` reads
JSON requests on stdin, one per line, and writes one JSON result line on stdout for each, until stdin closes.
Limits are set before any parser is imported. Started by :mod:`services.ingest.sandbox`, which sends a child at
most N files and replaces it after any failure that might have left it in a bad state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from typing import Any, BinaryIO

# Share of the wall-clock timeout OCR may use; the rest is for text extraction and sending the result back.
_OCR_SHARE = 0.8
# CPU seconds a file may use beyond its wall-clock timeout before the kernel ends the child (SIGXCPU).
_CPU_MARGIN_S = 10


def _cpu_seconds_per_file(timeout_s: float) -> int:
    return math.ceil(timeout_s) + _CPU_MARGIN_S


def _set_limits(memory_mb: int, timeout_s: float, max_files: int) -> None:
    try:
        import resource
    except ImportError:  # not on this platform (Windows): the parent's timeout still applies
        return

    def limit(kind: int, soft: int, hard: int | None = None) -> None:
        current_soft, current_hard = resource.getrlimit(kind)
        cap = current_hard if current_hard != resource.RLIM_INFINITY else None
        wanted_hard = hard if hard is not None else soft
        if cap is not None:
            soft, wanted_hard = min(soft, cap), min(wanted_hard, cap)
        try:
            resource.setrlimit(kind, (soft, wanted_hard))
        except (ValueError, OSError):
            pass

    limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    # CPU time backs up the parent's wall-clock timeout (SIGXCPU ends a child whose parent was itself stopped).
    # The soft limit is moved before each file (_limit_cpu_for_next_file); the hard one covers all of them.
    per_file = _cpu_seconds_per_file(timeout_s)
    limit(resource.RLIMIT_CPU, per_file, max(max_files, 1) * per_file + 5)
    limit(resource.RLIMIT_CORE, 0)


def _limit_cpu_for_next_file(timeout_s: float) -> None:
    """Give the next file its own CPU-time budget: the soft limit is what this process used so far plus one
    file's share (never above the hard limit, which only ever goes down)."""
    try:
        import resource
    except ImportError:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    wanted = math.ceil(usage.ru_utime + usage.ru_stime) + _cpu_seconds_per_file(timeout_s)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (wanted, hard))
    except (ValueError, OSError):
        pass


def _private_stdout() -> BinaryIO:
    """Keep fd 1 for our JSON; anything a library prints goes to stderr instead of corrupting it."""
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return result


def _encode(payload: dict[str, Any]) -> bytes:
    """One line of JSON (json.dumps escapes newlines inside strings, so the result never contains one)."""
    try:
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from a JSON Lines "\\ud800" escape) cannot be UTF-8: escape everything instead.
        return json.dumps(payload).encode("ascii")


def _run(request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    from services.errors import DocQAError
    from services.ingest.dispatch import parse_path

    name = request.get("source_name") or os.path.basename(request["path"])
    deadline = time.monotonic() + timeout_s * _OCR_SHARE
    try:
        documents = parse_path(
            request["path"],
            source_name=name,
            text_column=request.get("text_column"),
            id_column=request.get("id_column"),
            date_column=request.get("date_column"),
            ocr=bool(request.get("ocr", True)),
            deadline=deadline,
        )
        return {"ok": True, "documents": [document.to_dict() for document in documents]}
    except DocQAError as err:
        return {"ok": False, "error": type(err).__name__, "message": err.message}
    except MemoryError:
        return {"ok": False, "error": "ParseMemoryExceeded", "message": ""}
    except RecursionError:
        return {"ok": False, "error": "ParseFailed", "message": f"{name} could not be read: it is nested too deeply"}
    except Exception as err:  # noqa: BLE001 - any parser bug becomes a message; the traceback goes to the log
        traceback.print_exc(file=sys.stderr)
        return {
            "ok": False,
            "error": "ParseFailed",
            "message": f"{name} could not be read ({type(err).__name__}: {err})",
        }


def _answer(request_line: bytes, timeout_s: float) -> bytes:
    try:
        payload = _run(json.loads(request_line.decode("utf-8")), timeout_s)
        return _encode(payload)
    except MemoryError:
        return b'{"ok": false, "error": "ParseMemoryExceeded", "message": ""}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parse files sent as JSON lines on stdin (one child, many files).")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, required=True)
    parser.add_argument("--max-files", type=int, required=True)
    args = parser.parse_args(argv)
    out = _private_stdout()
    _set_limits(args.memory_mb, args.timeout_s, args.max_files)
    for request_line in sys.stdin.buffer:
        if not request_line.strip():
            continue
        _limit_cpu_for_next_file(args.timeout_s)
        out.write(_answer(request_line, args.timeout_s) + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
