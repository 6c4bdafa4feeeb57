"""A stand-in for the Streamlit server's ingest worker, run as its own process so a test can kill -9 it.

``python -m tests.reliability.background_ingest DATA_DIR [FILE...]`` opens the library the way the app does
(services + the IngestQueue worker thread, which resumes unfinished embeddings on start), submits the files
as one job, and exits 0 once nothing is queued or pending. Embedding is slowed down on purpose so that kills
land in the middle of it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.app_services import build_services
from services.config import load_settings
from services.jobs import QueuedFile
from tests.ui.ui_helpers import HashEmbeddings

PER_PASSAGE_S = 0.05


class SlowHashEmbeddings(HashEmbeddings):
    """The UI tests' hashing embedder (same name and vectors), at roughly a real model's pace."""

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(PER_PASSAGE_S * len(texts))
        return super().encode_passages(texts)


def main(argv: list[str]) -> int:
    data_dir, files = Path(argv[0]), [Path(a) for a in argv[1:]]
    services = build_services(load_settings(data_dir=data_dir, embed_batch_size=4), embedder=SlowHashEmbeddings())
    queue = services.ingest_queue  # starts the worker; it resumes pending embeddings by itself
    if files:
        queue.submit([QueuedFile(path=f, name=f.name, remove_after=False) for f in files])
    deadline = time.monotonic() + 300
    while queue.active() or services.store.pending_count():
        if time.monotonic() > deadline:
            print("still busy after 300 s", flush=True)
            return 1
        time.sleep(0.05)
    print("idle", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
