"""The parser process: ``python -m services.ingest.worker`` reads one JSON request on stdin, writes one JSON
result on stdout. Limits are set before any parser is imported. Started by :mod:`services.ingest.sandbox`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from typing import Any, BinaryIO

# Share of the wall-clock timeout OCR may use; the rest is for text extraction and sending the result back.
_OCR_SHARE = 0.8


def _set_limits(memory_mb: int, timeout_s: float) -> None:
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
    cpu = math.ceil(timeout_s) + 10
    limit(resource.RLIMIT_CPU, cpu, cpu + 5)
    limit(resource.RLIMIT_CORE, 0)


def _private_stdout() -> BinaryIO:
    """Keep fd 1 for our JSON; anything a library prints goes to stderr instead of corrupting it."""
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return result


def _encode(payload: dict[str, Any]) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from a JSON Lines "\\ud800" escape) cannot be UTF-8: escape everything instead.
        return json.dumps(payload).encode("ascii")


def _run(request: dict[str, Any]) -> dict[str, Any]:
    from services.errors import DocQAError
    from services.ingest.dispatch import parse_path

    name = request.get("source_name") or os.path.basename(request["path"])
    deadline = time.monotonic() + float(request["timeout_s"]) * _OCR_SHARE
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


def main() -> int:
    out = _private_stdout()
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    _set_limits(int(request["memory_mb"]), float(request["timeout_s"]))
    payload = _run(request)
    try:
        encoded = _encode(payload)
    except MemoryError:
        encoded = b'{"ok": false, "error": "ParseMemoryExceeded", "message": ""}'
    del payload
    out.write(encoded)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
