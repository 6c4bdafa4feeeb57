"""A separate app process for the concurrency tests: ingests files into a pgvector library, then prints a JSON
summary. ``python -m tests.helpers.ingest_worker DATABASE_URL DATA_DIR START_AT FILE...`` (it waits until the
wall-clock time START_AT, so that several workers start their ingest at the same moment)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.ui.ui_helpers import HashEmbeddings


def main(url: str, data_dir: str, start_at: float, files: list[str]) -> None:
    from services.app_services import build_services
    from services.config import load_settings

    settings = load_settings(data_dir=Path(data_dir), store="pgvector", database_url=url)
    services = build_services(settings, embedder=HashEmbeddings())
    time.sleep(max(0.0, start_at - time.time()))
    results = services.library.ingest_paths([Path(f) for f in files])
    print(json.dumps([r.status for r in results]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:])
