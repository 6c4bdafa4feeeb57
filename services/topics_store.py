"""Persist topic maps without pickle: one JSON file plus the topic centroids as ``.npy``.

Both files are written atomically (temp file, fsync, ``os.replace``). The centroid file gets a fresh name
on every save and the JSON names it, so the JSON replace is the single commit point: a reader never pairs
a new JSON with old centroids, and a crash mid-save leaves the previous map intact. Saves are serialised
by a file lock in the directory (a second app process may save at the same time).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from services.errors import StoreCorrupt
from services.topics_model import TopicResult

__all__ = ["TOPICS_FILE", "load_topics", "save_topics"]

logger = logging.getLogger(__name__)

TOPICS_FILE = "topics.json"
_EMB_PREFIX = "topic_embeddings-"
_LOCK_FILE = ".topics.lock"
_LOCK_TIMEOUT_S = 60.0


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_topics(result: TopicResult, directory: Path) -> Path:
    """Write ``result`` under ``directory`` (created if needed); returns the JSON path."""
    from filelock import FileLock

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    emb = np.ascontiguousarray(np.asarray(result.topic_embeddings, dtype=np.float32))
    with FileLock(str(directory / _LOCK_FILE), timeout=_LOCK_TIMEOUT_S):
        emb_name = f"{_EMB_PREFIX}{uuid.uuid4().hex[:16]}.npy"
        _atomic_write(directory / emb_name, lambda f: np.save(f, emb, allow_pickle=False))
        data = result.to_dict(include_embeddings=False)
        data["embeddings_file"] = emb_name
        payload = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
        json_path = directory / TOPICS_FILE
        _atomic_write(json_path, lambda f: f.write(payload))
        _fsync_dir(directory)
        # Older centroid files are unreferenced now; a reader that still holds the old JSON retries.
        for old in directory.glob(f"{_EMB_PREFIX}*.npy"):
            if old.name != emb_name:
                try:
                    old.unlink()
                except OSError:
                    logger.warning("could not remove old topic centroid file %s", old)
    return json_path


def load_topics(directory: Path) -> TopicResult | None:
    """The saved topic map, or None when none was saved. Raises StoreCorrupt (with a "rebuild the
    topics" message) when the files are damaged."""
    json_path = Path(directory) / TOPICS_FILE
    for attempt in range(3):
        try:
            text = json_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreCorrupt(f"The saved topic map {json_path} cannot be read ({exc}): rebuild the topics.") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreCorrupt(f"The saved topic map {json_path} is not valid JSON: rebuild the topics.") from exc
        if not isinstance(data, dict):
            raise StoreCorrupt(f"The saved topic map {json_path} is not a JSON object: rebuild the topics.")
        name = data.get("embeddings_file")
        emb = None
        if name is not None:
            if not isinstance(name, str) or Path(name).name != name or not name.startswith(_EMB_PREFIX):
                raise StoreCorrupt(
                    f"The saved topic map {json_path} names an invalid centroid file: rebuild the topics."
                )
            try:
                emb = np.load(json_path.parent / name, allow_pickle=False)
            except FileNotFoundError:
                if attempt < 2:
                    continue  # a concurrent save replaced both files between our two reads
                raise StoreCorrupt(f"The topic centroids {name} are missing: rebuild the topics.") from None
            except ValueError as exc:
                raise StoreCorrupt(f"The topic centroids {name} are damaged ({exc}): rebuild the topics.") from exc
        return TopicResult.from_dict(data, topic_embeddings=emb)
    return None  # pragma: no cover - loop always returns or raises
