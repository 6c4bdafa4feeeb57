"""Helpers shared by the UI tests (a fast fake embedder, waiting for the ingest worker, finding widgets, reading
the Topics page's map)."""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from streamlit.testing.v1 import AppTest

from services.embeddings import OfflineEmbeddings

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


class HashEmbeddings(OfflineEmbeddings):
    """Character-bigram hashing: similar strings get similar vectors; no model, microseconds per text."""

    name = "test/hash-bigrams"
    dimension = 64

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dimension, dtype=np.float32)
        text = text.lower()
        for a, b in zip(text, text[1:], strict=False):
            vec[zlib.crc32((a + b).encode()) % self.dimension] += 1.0
        norm = float(np.linalg.norm(vec)) or 1.0
        return vec / norm

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self._one(text)

    def count_tokens(self, text: str) -> int:
        return sum(1 for ch in text if "\u3400" <= ch <= "\u9fff") + len(text.split())


def start_app() -> AppTest:
    """The app, run once (on the Library page, its default)."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def wait_idle(at: AppTest, timeout: float = 60) -> AppTest:
    """Wait until the background ingest worker is idle, then rerun the app (as the live fragment would)."""
    from components.resources import get_services

    queue = get_services().ingest_queue
    deadline = time.monotonic() + timeout
    while queue.active():
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest still running: {[j.summary() for j in queue.active()]}")
        time.sleep(0.05)
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def unescape(markdown: str) -> str:
    """What a reader sees of our escaped Markdown (backslash escapes removed, and the invisible word joiner
    components.text puts into "http://" and "www." so they do not become links)."""
    markdown = re.sub(r"(?i)(https?|www)\u2060(?=\\[:.])", r"\1", markdown)
    return re.sub(r"\\(.)", r"\1", markdown)


def all_markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# ---- the Topics page ---------------------------------------------------------------------------------------
_DTYPES = {"f8": "<f8", "f4": "<f4", "i1": "i1", "u1": "u1", "i2": "<i2", "u2": "<u2", "i4": "<i4", "u4": "<u4"}


def topic_service():
    """The topic service of the library the app has open (whichever store backs it)."""
    from components.resources import get_services
    from services.topic_service import TopicService

    services = get_services()
    return TopicService(services.store, services.settings, embedder=services.embedder)


def decode(value: Any) -> list:
    """A Plotly array from the figure JSON: a plain list, or Plotly 7's base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=_DTYPES[value["dtype"]])
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(n) for n in str(shape).split(",")])
        return arr.tolist()
    return list(value or [])


def figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def map_spec(at: AppTest) -> dict:
    maps = [f for f in figures(at) if any(t.get("meta") == "items" for t in f["data"])]
    assert len(maps) == 1, f"expected one map, found {len(maps)}"
    return maps[0]


def traces(spec: dict, meta: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("meta") == meta]


def map_item_ids(at: AppTest) -> list[str]:
    return [row[0] for t in traces(map_spec(at), "items") for row in decode(t["customdata"])]


def select_topic(at: AppTest, topic_id: int) -> AppTest:
    box = next(s for s in at.selectbox if s.key == "topics_selected")
    box.set_value(topic_id).run()
    assert not at.exception, at.exception
    return at
