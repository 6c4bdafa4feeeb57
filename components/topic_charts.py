"""Topic page widgets: build settings with progress, the map with search, topic list, hierarchy, similarity,
topics over time, the overview and exports. Figures come from ``services.topic_figures`` (escaped there);
Markdown here goes through ``components.text``. Nothing here imports BERTopic or UMAP: the topic service
does that lazily, only when a build runs.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from components.errors import show_error
from components.text import escape_markdown, inline
from services.errors import DocQAError
from services.topic_figures import (
    MapPoint,
    dendrogram_figure,
    documents_csv,
    keyword_bars,
    map_html,
    merge_suggestions,
    short,
    similarity_figure,
    timeline_figure,
    topic_colors,
    topic_name,
    topics_csv,
)
from services.topics_model import OUTLIER_ID, TopicInfo, TopicParams, TopicResult

PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True}
MAP_KEY = "topics_map"
TABLE_KEY = "topics_table"
MAX_BAR_TOPICS = 12

LEVEL_CHOICES = ("auto", "documents", "chunks")
LEVEL_NAMES = {
    "auto": "Automatic",
    "documents": "Whole documents",
    "chunks": "Passages",
}
N_TOPICS_MODES = ("found", "auto", "count")
N_TOPICS_NAMES = {
    "found": "Keep the topics found",
    "auto": "Merge similar topics automatically",
    "count": "Merge down to a number",
}


def plot(fig: Any, key: str, **kwargs: Any) -> Any:
    return st.plotly_chart(fig, width="stretch", config=PLOTLY_CONFIG, key=key, **kwargs)


# ---- build ------------------------------------------------------------------------------------------------
def build_settings(saved: TopicParams | None) -> TopicParams:
    """The build parameters, in an expander (defaults: automatic everything; a previous build's choices)."""
    base = saved or TopicParams()
    with st.expander("Build settings", icon=":material/tune:"):
        level = st.radio(
            "Map items",
            LEVEL_CHOICES,
            format_func=LEVEL_NAMES.get,
            horizontal=True,
            key="topics_level",
            help="Automatic: whole documents when there are 30 or more, otherwise their passages (a few long "
            "documents still have topics inside them).",
        )
        left, middle, right = st.columns(3)
        min_size = left.number_input(
            "Minimum topic size",
            min_value=2,
            max_value=1000,
            value=base.min_topic_size,
            step=1,
            placeholder="automatic",
            key="topics_min_size",
            help="The smallest group that counts as a topic. Empty: about 1% of the items.",
        )
        neighbours = middle.number_input(
            "Neighbours",
            min_value=2,
            max_value=200,
            value=int(base.n_neighbors),
            step=1,
            key="topics_neighbors",
            help="How many neighbours shape the map (UMAP): fewer gives finer, more local topics.",
        )
        saved_mode = "auto" if base.n_topics == "auto" else ("count" if isinstance(base.n_topics, int) else "found")
        mode = right.selectbox(
            "Number of topics",
            N_TOPICS_MODES,
            index=N_TOPICS_MODES.index(saved_mode),
            format_func=N_TOPICS_NAMES.get,
            key="topics_n_mode",
        )
        n_topics: int | str | None = None
        if mode == "auto":
            n_topics = "auto"
        elif mode == "count":
            n_topics = int(
                right.number_input(
                    "Topics",
                    min_value=1,
                    max_value=500,
                    value=base.n_topics if isinstance(base.n_topics, int) else 10,
                    key="topics_n_count",
                )
            )
        reduce = st.checkbox(
            "Put outliers into their nearest topic",
            value=base.reduce_outliers,
            key="topics_reduce",
            help="Items that fit no topic well are otherwise kept apart as outliers.",
        )
    return TopicParams(
        level=level,
        min_topic_size=int(min_size) if min_size is not None else None,
        n_neighbors=int(neighbours),
        n_topics=n_topics,
        seed=base.seed,
        reduce_outliers=reduce,
        representation=base.representation,
    )


def run_build(build: Callable[..., TopicResult], params: TopicParams) -> TopicResult | None:
    """Run a build in this script run, with a live progress bar; errors are shown, never raised."""
    started = time.perf_counter()
    with st.status("Building topics…", expanded=True) as status:
        bar = st.progress(0.0, text="Reading the library")

        def progress(message: str, done: int, total: int) -> None:
            bar.progress(min(max(done / max(total, 1), 0.0), 1.0), text=inline(message, 120))

        try:
            result = build(params, progress)
        except DocQAError as exc:
            status.update(label="The topics could not be built", state="error", expanded=True)
            show_error(exc)
            return None
        except Exception as exc:  # a bug: report it in the page, keep the traceback in the log
            status.update(label="The topics could not be built", state="error", expanded=True)
            show_error(exc, doing="building topics")
            return None
        n = len(result.real_topics)
        status.update(
            label=f"Built {n} topic{'s' * (n != 1)} in {time.perf_counter() - started:.1f} s",
            state="complete",
            expanded=False,
        )
    return result


# ---- selection --------------------------------------------------------------------------------------------
def topic_from_map_event(event: Any) -> int | None:
    """The topic a map selection points at: the most common topic among the selected points."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    topics: Counter[int] = Counter()
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list | tuple) and len(data) >= 2:
            try:
                topics[int(data[1])] += 1
            except (TypeError, ValueError):
                continue
    return topics.most_common(1)[0][0] if topics else None


def selection_signature(event: Any) -> str:
    try:
        return json.dumps(event["selection"], sort_keys=True, default=str)
    except (KeyError, TypeError):
        return ""


# ---- map --------------------------------------------------------------------------------------------------
def map_chart(fig: Any) -> None:
    plot(fig, MAP_KEY, on_select="rerun", selection_mode=("points", "box", "lasso"))
    st.caption(
        "Scroll or drag to zoom, double-click to reset. Click a point (or draw a box or lasso) to open its "
        "topic; click a legend entry to hide a topic."
    )


def search_matches_panel(matches: Sequence[tuple[MapPoint, float]], labels: dict[int, str]) -> None:
    if not matches:
        return
    with st.expander(f"Matches ({len(matches)})", icon=":material/search:"):
        rows = [
            {
                "Document": p.source,
                "Topic": "Outliers" if p.topic_id == OUTLIER_ID else f"{p.topic_id}: {labels.get(p.topic_id, '')}",
                "Score": round(score, 3),
                "Passage": p.snippet,
            }
            for p, score in matches
        ]
        # A dataframe shows cells as plain text: no escaping needed.
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


# ---- topic list -------------------------------------------------------------------------------------------
def topic_table(result: TopicResult) -> None:
    total = sum(t.size for t in result.topics) or 1
    rows = [
        {
            "Topic": t.id,
            "Label": t.label,
            "Items": t.size,
            "Share": t.size / total,
            "Keywords": ", ".join(t.keywords[:10]),
        }
        for t in result.topics
    ]
    st.dataframe(
        pd.DataFrame(rows, columns=["Topic", "Label", "Items", "Share", "Keywords"]),
        hide_index=True,
        width="stretch",
        key=TABLE_KEY,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "Topic": st.column_config.NumberColumn(width="small", help="-1 holds the outliers"),
            "Share": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
        },
    )
    st.caption("Select a row to open the topic.")


def keyword_charts(result: TopicResult) -> None:
    topics = sorted(result.real_topics, key=lambda t: -t.size)
    if len(topics) > MAX_BAR_TOPICS and not st.toggle(
        f"Show all {len(topics)} topics", key="topics_all_bars", help="Otherwise the largest topics only."
    ):
        topics = topics[:MAX_BAR_TOPICS]
    fig = keyword_bars(topics, colors=topic_colors(result))
    if fig is None:
        st.caption("These topics have no keywords (their text has no words left after stop words).")
        return
    plot(fig, "topics_keyword_bars")


# ---- hierarchy, similarity, time --------------------------------------------------------------------------
def hierarchy_section(result: TopicResult) -> tuple[int, int] | None:
    """The dendrogram and merge suggestions; returns the pair whose "Merge" button was clicked."""
    fig = dendrogram_figure(result)
    if fig is None:
        st.caption("A hierarchy needs at least two topics.")
        return None
    st.caption("Topics that join close to the left are similar: good candidates to merge.")
    plot(fig, "topics_dendrogram")
    pairs = merge_suggestions(result)
    if not pairs:
        return None
    st.markdown("**Merge suggestions** (the most similar topics)")
    labels = {t.id: t for t in result.topics}
    chosen = None
    for a, b, sim in pairs:
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(
            f"{inline(topic_name(labels[a], 50))} \\+ {inline(topic_name(labels[b], 50))} · similarity {sim:.2f}"
        )
        if button.button("Merge", key=f"topics_suggest_{a}_{b}", icon=":material/merge:"):
            chosen = (a, b)
    return chosen


def similarity_section(result: TopicResult) -> None:
    fig = similarity_figure(result)
    if fig is None:
        st.caption("A similarity map needs at least two topics.")
        return
    st.caption("Cosine similarity between topic centres (1 = the same direction).")
    plot(fig, "topics_similarity")


def timeline_section(result: TopicResult, points: Sequence[MapPoint]) -> None:
    own = [p for p in points if p.dated]
    if own and len(own) < len(points):
        # Upload days of plain files would otherwise swamp the dates that tables carry.
        if not st.toggle(
            f"Include the {len(points) - len(own)} items without a date of their own (by the day they were added)",
            key="topics_timeline_all",
        ):
            points = own
    fig = timeline_figure(result, points)
    if fig is None:
        st.caption(
            "Topics over time need dates spread over two months or more: a table's date column (CSV/JSONL), "
            "otherwise the day each document was added."
        )
        return
    st.caption("Items per topic per month, by each document's date (a table's date column, else when it was added).")
    plot(fig, "topics_timeline")


# ---- overview ---------------------------------------------------------------------------------------------
def overview_section(overview: dict[str, Any], quality: dict[str, float] | None, measure: Callable[[], None]) -> None:
    """ "What is in my library?": the topics by size with keywords and example passages, and the map's
    coherence and diversity."""
    topics = overview["topics"]
    cols = st.columns(5)
    cols[0].metric("Documents", overview["documents"])
    cols[1].metric("Topics", len(topics))
    cols[2].metric("Outliers", overview["unassigned"], help="Items that fit no topic well.")
    if quality is None:
        with cols[3]:
            if st.button("Measure coherence", key="topics_measure", help="Reads every item's words once."):
                measure()
    else:
        cols[3].metric(
            "Coherence",
            f"{quality['npmi']:.3f}",
            help="NPMI: how often a topic's keywords occur together in your documents (-1 to 1; above 0.1 is good).",
        )
        cols[4].metric(
            "Diversity",
            f"{quality['diversity']:.2f}",
            help="Share of distinct words among all topics' top keywords (1 = no topic repeats another's words).",
        )
    if not topics:
        st.info("No topics yet: every item is an outlier. Rebuild with a smaller minimum topic size.")
        return
    for topic in topics:
        with st.container(border=True):
            st.markdown(f"**{inline(topic['label'], 100)}** · {topic['size']} items ({topic['share']:.0%})")
            if topic["keywords"]:
                st.caption(inline(" · ".join(topic["keywords"])))
            for example in topic["examples"]:
                where = f"{example['source']}, page {example['page']}" if example.get("page") else example["source"]
                st.markdown(f"> {escape_markdown(short(example['text'], 260))}  \n> — *{inline(where, 80)}*")


# ---- topic detail -----------------------------------------------------------------------------------------
def topic_keywords_chart(result: TopicResult, topic: TopicInfo) -> None:
    fig = keyword_bars([topic], columns=1, titles=False, colors=topic_colors(result))
    if fig is None:
        st.caption("No keywords for this topic.")
        return
    fig.update_layout(height=220)
    plot(fig, f"topics_detail_bars_{topic.id}")


def passages_list(passages: Sequence[Any]) -> None:
    for chunk in passages:
        with st.container(border=True):
            where = f"{chunk.source}, page {chunk.page}" if chunk.page else chunk.source
            st.caption(inline(where, 100))
            st.markdown(escape_markdown(short(chunk.text, 500)))


# ---- export -----------------------------------------------------------------------------------------------
def export_section(result: TopicResult, summary: dict[str, Any], make_map: Callable[[], Any]) -> None:
    st.caption(
        "Topics and each document's topic as CSV or JSON (the same JSON as `python cli.py topics export --json`), "
        "and the map as a standalone HTML page that opens offline."
    )
    cols = st.columns(4)
    cols[0].download_button(
        "Topics (CSV)",
        data=topics_csv(result),
        file_name="topics.csv",
        mime="text/csv",
        icon=":material/table:",
        key="topics_dl_csv",
        on_click="ignore",
    )
    cols[1].download_button(
        "Document topics (CSV)",
        data=documents_csv(summary),
        file_name="document_topics.csv",
        mime="text/csv",
        icon=":material/table_rows:",
        key="topics_dl_docs_csv",
        on_click="ignore",
    )
    cols[2].download_button(
        "Topics (JSON)",
        data=json.dumps(summary, ensure_ascii=False, indent=2),
        file_name="topics.json",
        mime="application/json",
        icon=":material/data_object:",
        key="topics_dl_json",
        on_click="ignore",
    )
    cols[3].download_button(
        "Map (HTML)",
        # Built on click: the page embeds plotly.js (~5 MB), too much to build and send on every redraw.
        data=lambda: map_html(make_map()),
        file_name="topic_map.html",
        mime="text/html",
        icon=":material/map:",
        key="topics_dl_html",
        on_click="ignore",
    )
