"""Topic maps: the public API of the topic service (the UI, the CLI and the store use only this).

BERTopic runs on the library's stored embeddings and never embeds documents itself; results are plain
dataclasses persisted as JSON + ``.npy`` (no pickle). The pieces:

- ``topics_model``: TopicParams, TopicInfo, TopicMerge, TopicResult and their JSON form;
- ``topics_build``: the fitting pipeline (UMAP → HDBSCAN → c-TF-IDF keywords → labels → 2-d map), with
  the fallbacks that keep tiny, identical or stop-word-only corpora from ever raising a numerical error;
- ``topics_edit``: what happens after a fit (new items, rebuild advice, rename, merge, outliers);
- ``topics_store``: atomic save/load.

Importing this module is cheap: bertopic, umap, hdbscan and sklearn load inside the functions that need
them.
"""

from __future__ import annotations

from services.topics_build import (
    MIN_ITEMS,
    SMALL_CORPUS,
    Embedder,
    Labeler,
    Progress,
    build_topics,
    default_min_topic_size,
    keyword_label,
    resolve_level,
)
from services.topics_edit import assign_new_items, merge_topics, reduce_outliers, refit_advised, rename_topic
from services.topics_model import OUTLIER_ID, OUTLIER_LABEL, TopicInfo, TopicMerge, TopicParams, TopicResult
from services.topics_store import load_topics, save_topics

__all__ = [
    "MIN_ITEMS",
    "OUTLIER_ID",
    "OUTLIER_LABEL",
    "SMALL_CORPUS",
    "Embedder",
    "Labeler",
    "Progress",
    "TopicInfo",
    "TopicMerge",
    "TopicParams",
    "TopicResult",
    "assign_new_items",
    "build_topics",
    "default_min_topic_size",
    "keyword_label",
    "load_topics",
    "merge_topics",
    "reduce_outliers",
    "refit_advised",
    "rename_topic",
    "resolve_level",
    "save_topics",
]
