"""The Topics page's figures and exports (services/topic_figures.py) on hand-made topic maps: one point per
item, WebGL for large maps, escaped hover text, a valid hierarchy, merge suggestions, topics over time,
and CSV/HTML exports."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
from scipy.cluster.hierarchy import is_valid_linkage

from services.store import ChunkRecord, DocumentRecord
from services.topic_figures import (
    MapPoint,
    documents_csv,
    keyword_bars,
    linkage_matrix,
    map_figure,
    map_html,
    map_points,
    merge_suggestions,
    monthly_counts,
    plotly_text,
    similarity_figure,
    timeline_figure,
    topics_csv,
    wrap_lines,
)
from services.topics_model import TopicInfo, TopicMerge, TopicParams, TopicResult


def _topic(tid: int, label: str, size: int, keywords: list[str] | None = None) -> TopicInfo:
    words = keywords if keywords is not None else [f"w{tid}{n}" for n in range(5)]
    return TopicInfo(tid, label, words, [1.0 - n / 10 for n in range(len(words))], size, [])


def _result(sizes: list[int], outliers: int = 0, hierarchy: list[TopicMerge] | None = None) -> TopicResult:
    topics = ([_topic(-1, "Outliers", outliers)] if outliers else []) + [
        _topic(i, f"topic {i}", s) for i, s in enumerate(sizes)
    ]
    assignments, coords = {}, {}
    rng = np.random.default_rng(0)
    for t in topics:
        for n in range(t.size):
            item = f"c{t.id}-{n}"
            assignments[item] = t.id
            coords[item] = (float(t.id + rng.normal() * 0.1), float(rng.normal() * 0.1))
    k = len(topics)
    sim = [[1.0 if i == j else 0.5 + 0.01 * (i + j) for j in range(k)] for i in range(k)]
    return TopicResult(
        topics=topics,
        assignments=assignments,
        probabilities={i: 1.0 for i in assignments},
        coords=coords,
        params=TopicParams(level="chunks"),
        hierarchy=hierarchy or [],
        similarity=sim,
        created_at="2026-01-01T00:00:00+00:00",
    )


def _points(result: TopicResult, text: str = "plain text", dates: list[str] | None = None) -> list[MapPoint]:
    out = []
    for n, (item, (x, y)) in enumerate(result.coords.items()):
        date = dates[n % len(dates)] if dates else "2025-01-05"
        out.append(MapPoint(item, f"d{n}", result.assignments[item], x, y, f"title {n}", f"s{n}.txt", text, date, True))
    return out


def _item_traces(fig) -> list:
    return [t for t in fig.data if t.meta == "items"]


def test_map_has_one_point_per_item_and_one_trace_per_topic() -> None:
    result = _result([5, 3], outliers=2)
    fig = map_figure(result, _points(result))
    items = _item_traces(fig)
    assert sum(len(t.x) for t in items) == len(result.assignments)
    assert {row[0] for t in items for row in t.customdata} == set(result.assignments)
    assert len(items) == len(result.topics) and items[0].name.startswith("Outliers")  # drawn underneath
    labels = [t for t in fig.data if t.meta == "labels"][0]
    assert list(labels.text) == ["topic 0", "topic 1"]
    assert all(t.type == "scatter" for t in items)


def test_large_maps_use_webgl() -> None:
    result = _result([30, 20])
    fig = map_figure(result, _points(result), webgl_threshold=40)
    assert {t.type for t in _item_traces(fig)} == {"scattergl"}
    assert [t.type for t in fig.data if t.meta == "labels"] == ["scatter"]


def test_search_matches_are_ringed_and_selection_fades_the_rest() -> None:
    result = _result([4, 4])
    points = _points(result)
    fig = map_figure(result, points, highlight=["c0-1", "c1-2", "not-on-map"], selected_topic=1)
    matches = [t for t in fig.data if t.meta == "matches"]
    assert len(matches) == 1 and [r[0] for r in matches[0].customdata] == ["c0-1", "c1-2"]
    opacity = {t.customdata[0][1]: t.marker.opacity for t in _item_traces(fig)}
    assert opacity[1] > 0.5 > opacity[0]


def test_hover_text_escapes_document_html() -> None:
    result = _result([2])
    evil = "<script>alert(1)</script> <a href='x'>link</a> & <b>bold</b>"
    fig = map_figure(result, _points(result, text=evil))
    hover = _item_traces(fig)[0].hovertext[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hover
    assert "&lt;a href='x'&gt;link&lt;/a&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in hover
    assert "<script>" not in hover and "<a " not in hover
    assert hover.startswith("<b>title 0</b>")  # our own markup around escaped text
    assert plotly_text("a <b> & c") == "a &lt;b&gt; &amp; c"


def test_labels_and_legend_are_escaped() -> None:
    result = _result([2])
    result.topics[0].label = "<img src=x onerror=alert(1)>"
    fig = map_figure(result, _points(result))
    assert "<img" not in fig.data[0].name and "&lt;img" in fig.data[0].name
    assert "<img" not in [t for t in fig.data if t.meta == "labels"][0].text[0]


def test_wrap_lines_counts_han_characters_double() -> None:
    lines = wrap_lines("颱" * 50, width=20)
    assert all(len(line) <= 10 for line in lines) and "".join(lines) == "颱" * 50
    lines = wrap_lines("green tea " * 10, width=20)
    assert all(len(line) <= 20 for line in lines) and " ".join(lines).split() == ("green tea " * 10).split()


def test_map_points_for_passages_and_documents() -> None:
    chunks = [
        ChunkRecord(1, "c1", "d1", "a.txt", "A", 0, 1, 0, 5, "alpha text"),
        ChunkRecord(2, "c2", "d1", "a.txt", "A", 1, 2, 5, 9, "beta"),
    ]
    doc = DocumentRecord("d1", "a.txt", "txt", "Title A", None, 1, 2, "en", "ready", None, [], {}, None, "2025-03-04")
    result = _result([2])
    result.coords = {"c1": (0.0, 0.0), "c2": (1.0, 1.0), "gone": (2.0, 2.0)}
    result.assignments = {"c1": 0, "c2": 0, "gone": 0}
    points = map_points(result, chunks, [doc])
    assert [(p.item_id, p.document_id, p.snippet, p.title) for p in points] == [
        ("c1", "d1", "alpha text", "Title A"),
        ("c2", "d1", "beta", "Title A"),
    ]
    assert not points[0].dated and points[0].date == "2025-03-04"
    # At document level an item is a document: its first passage is the snippet.
    result.params = TopicParams(level="documents")
    result.coords, result.assignments = {"d1": (0.0, 0.0)}, {"d1": 0}
    (point,) = map_points(result, chunks, [doc])
    assert point.document_id == "d1" and point.snippet == "alpha text"


def test_hierarchy_becomes_a_valid_linkage_and_dendrogram() -> None:
    merges = [TopicMerge(3, 0, 1, 0.1), TopicMerge(4, 2, 3, 0.3)]
    result = _result([3, 2, 2], hierarchy=merges)
    leaves, rows = linkage_matrix(result)
    assert [t.id for t in leaves] == [0, 1, 2]
    assert is_valid_linkage(np.asarray(rows))
    from services.topic_figures import dendrogram_figure

    fig = dendrogram_figure(result)
    assert fig is not None and len(fig.data) == 2
    assert sorted(fig.layout.yaxis.ticktext) == ["0: topic 0", "1: topic 1", "2: topic 2"]
    assert dendrogram_figure(_result([3])) is None
    assert linkage_matrix(_result([3, 2], hierarchy=[TopicMerge(5, 0, 9, 0.2)])) is None  # unknown id


def test_merge_suggestions_are_the_closest_real_pairs() -> None:
    result = _result([3, 2, 2], outliers=1)
    pairs = merge_suggestions(result, n=2)
    assert len(pairs) == 2
    assert all(-1 not in (a, b) for a, b, _s in pairs)
    assert pairs[0][2] >= pairs[1][2]
    assert pairs[0][:2] == (1, 2)  # highest off-diagonal similarity in the fake matrix


def test_similarity_heatmap_over_real_topics() -> None:
    fig = similarity_figure(_result([3, 2, 2], outliers=1))
    assert fig is not None and len(fig.data[0].z) == 3
    assert similarity_figure(_result([3])) is None


def test_keyword_bars_skip_topics_without_words() -> None:
    topics = [_topic(0, "a", 3), _topic(1, "b", 2, keywords=[]), _topic(2, "<c>", 2)]
    fig = keyword_bars(topics)
    assert fig is not None and len(fig.data) == 2
    assert keyword_bars([_topic(0, "a", 3, keywords=[])]) is None
    assert all("<c>" not in a.text for a in fig.layout.annotations)


def test_topics_over_time_fill_missing_months() -> None:
    result = _result([2, 2])
    points = _points(result, dates=["2024-11-30", "2025-02-01T10:00:00", "not a date", "2025-13-01"])
    months, series = monthly_counts(points)
    assert months == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert series == {0: [1, 0, 0, 1]}  # topic 1 has no usable date
    fig = timeline_figure(result, points)
    assert fig is not None and {t.type for t in fig.data} == {"bar"}
    same_month = _points(result, dates=["2025-01-01"])
    assert timeline_figure(result, same_month) is None


def test_long_spans_are_drawn_as_areas() -> None:
    result = _result([3])
    fig = timeline_figure(result, _points(result, dates=["2020-01-01", "2023-06-01", "2024-01-01"]))
    assert fig is not None and fig.data[0].type == "scatter" and fig.data[0].stackgroup == "topics"


def test_csv_exports_are_spreadsheet_safe() -> None:
    result = _result([2])
    result.topics[0].label = '=HYPERLINK("http://x")'
    text = topics_csv(result)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["id", "label", "size", "keywords"]
    assert rows[1][1].startswith("'=")
    summary = {
        "topics": [{"id": 0, "label": "颱風", "keywords": [], "size": 1}],
        "documents": [{"document": "d1", "source": "-a.txt", "topic": 0}],
    }
    rows = list(csv.reader(io.StringIO(documents_csv(summary).lstrip("\ufeff"))))
    assert rows[1] == ["d1", "'-a.txt", "0", "颱風"]


def test_map_html_is_standalone() -> None:
    result = _result([3])
    html = map_html(map_figure(result, _points(result), title="Topic map"))
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing loaded from a CDN
    assert len(html) > 1_000_000  # plotly.js itself is inside
