"""Child processes of the test process, for checks that nothing is left running."""

from __future__ import annotations

import psutil


def parser_processes() -> list[psutil.Process]:
    """The sandboxed parser processes (``services.ingest.worker``) below this process that are still running."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "services.ingest.worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found
