"""Figures and tables for the Topics page: the document map, keyword bars, the hierarchy, the similarity
heatmap, topics over time, and the CSV/HTML exports. Plotly only (no Streamlit), so the page stays thin and
every figure can be tested without a browser.

Plotly renders text (hover labels, legend entries, tick labels, annotations) as a small HTML subset: a
document containing ``<b>`` or ``<a href=...>`` would otherwise become markup there. Every piece of document
or model text goes through :func:`plotly_text` first; the only tags in our figures are the ``<br>`` and
``<b>`` we add ourselves around already-escaped text.
"""

from __future__ import annotations

import csv
import html
import io
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from services.store import ChunkRecord, DocumentRecord
from services.topics_model import OUTLIER_ID, TopicInfo, TopicResult

WEBGL_THRESHOLD = 1_000  # above this many points SVG scatter gets sluggish in the browser: WebGL
SNIPPET_CHARS = 220
MAX_MAP_LABELS = 15
OUTLIER_COLOR = "#b8b8b8"
HIGHLIGHT_COLOR = "#e4003a"
# Plotly's qualitative palettes, concatenated: distinct colours for the first 34 topics, then they repeat.
PALETTE = (
    "#636efa #ef553b #00cc96 #ab63fa #ffa15a #19d3f3 #ff6692 #b6e880 #ff97ff #fecb52 "
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#2e91e5 #e15f99 #1ca071 #fb0d0d #da16ff #750d86 #eb663b #511cfb #00a08b #fb00d1 "
    "#fc0080 #b2828d #6c7c32 #778aae"
).split()
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---- text ---------------------------------------------------------------------------------------------------
def plotly_text(text: str) -> str:
    """``text`` safe for Plotly's HTML-ish labels: ``&``, ``<`` and ``>`` escaped, whitespace folded."""
    return html.escape(" ".join(str(text).split()), quote=False)


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap_lines(text: str, width: int = 64) -> list[str]:
    """Greedy wrap by display width (a Han character is two columns), breaking at spaces when there are
    any: hover boxes otherwise grow as wide as the snippet."""
    lines: list[str] = []
    line, used = "", 0
    for word in re.findall(r"\S+\s*|\s+", " ".join(text.split())):
        w = sum(_width(c) for c in word)
        if used + w > width and line:
            lines.append(line.rstrip())
            line, used = "", 0
        while w > width:  # a long run without spaces (Chinese): cut it by width
            cut, acc = 0, 0
            while cut < len(word) and acc + _width(word[cut]) <= width - used:
                acc += _width(word[cut])
                cut += 1
            lines.append((line + word[:cut]).rstrip())
            line, used, word = "", 0, word[cut:]
            w = sum(_width(c) for c in word)
        line += word
        used += w
    if line.strip():
        lines.append(line.rstrip())
    return lines


def short(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def topic_name(topic: TopicInfo, limit: int = 40) -> str:
    """ "3: 颱風 · 防災" (plain text). The id keeps names unique: two topics may share a label, and a
    categorical axis would silently merge them."""
    if topic.is_outliers:
        return "Outliers"
    return f"{topic.id}: {short(topic.label, limit)}"


def topic_colors(result: TopicResult) -> dict[int, str]:
    colors = {OUTLIER_ID: OUTLIER_COLOR}
    for n, topic in enumerate(result.real_topics):
        colors[topic.id] = PALETTE[n % len(PALETTE)]
    return colors


# ---- the map's points ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapPoint:
    item_id: str
    document_id: str
    topic_id: int
    x: float
    y: float
    title: str
    source: str
    snippet: str
    date: str  # the document's own date (a table's date column), else the day it was added; may be ""
    dated: bool = False  # True when ``date`` is the document's own date


def map_points(
    result: TopicResult, chunks: Sequence[ChunkRecord], documents: Sequence[DocumentRecord]
) -> list[MapPoint]:
    """One point per mapped item (a document or a passage, by ``result.params.level``), with what the hover
    box shows. Items whose passages are gone from the library are left out."""
    docs = {d.id: d for d in documents}
    by_chunk = {c.id: c for c in chunks}
    first_chunk: dict[str, ChunkRecord] = {}
    for c in chunks:
        first_chunk.setdefault(c.document_id, c)
    points: list[MapPoint] = []
    for item_id, (x, y) in result.coords.items():
        topic = result.assignments.get(item_id)
        if topic is None:
            continue
        chunk = by_chunk.get(item_id)
        doc_id = chunk.document_id if chunk is not None else item_id
        doc = docs.get(doc_id)
        chunk = chunk or first_chunk.get(doc_id)
        if doc is None and chunk is None:
            continue
        source = doc.source if doc else chunk.source  # type: ignore[union-attr]
        title = (doc.title if doc else "") or (chunk.title if chunk else "") or source
        date = (doc.doc_date or doc.added_at or "") if doc else ""
        points.append(
            MapPoint(
                item_id=item_id,
                document_id=doc_id,
                topic_id=int(topic),
                x=float(x),
                y=float(y),
                title=title,
                source=source,
                snippet=short(chunk.text, SNIPPET_CHARS) if chunk else "",
                date=date,
                dated=bool(doc and doc.doc_date),
            )
        )
    return points


def hover_text(point: MapPoint, topic_label: str = "") -> str:
    """Hover box text: title in bold, source (and page topic), then the wrapped snippet, all escaped."""
    parts = [f"<b>{plotly_text(short(point.title, 80))}</b>"]
    if point.source and point.source != point.title:
        parts.append(plotly_text(short(point.source, 80)))
    if topic_label:
        parts.append(f"<i>{plotly_text(short(topic_label, 60))}</i>")
    parts.extend(plotly_text(line) for line in wrap_lines(point.snippet)[:5])
    return "<br>".join(parts)


def _centre(points: Sequence[MapPoint]) -> tuple[float, float]:
    # The median resists the odd far-away member that would drag a mean off the cluster.
    xs = sorted(p.x for p in points)
    ys = sorted(p.y for p in points)
    return xs[len(xs) // 2], ys[len(ys) // 2]


def map_figure(
    result: TopicResult,
    points: Sequence[MapPoint],
    *,
    highlight: Iterable[str] = (),
    selected_topic: int | None = None,
    webgl_threshold: int = WEBGL_THRESHOLD,
    title: str | None = None,
) -> go.Figure:
    """The document map: one trace per topic (items: ``meta="items"``, ``customdata`` = [item id, topic id]),
    topic labels at their centres (``meta="labels"``), and the search matches ringed on top
    (``meta="matches"``). ``selected_topic`` fades the other topics."""
    webgl = len(points) > webgl_threshold
    scatter = go.Scattergl if webgl else go.Scatter
    colors = topic_colors(result)
    by_topic: dict[int, list[MapPoint]] = defaultdict(list)
    for p in points:
        by_topic[p.topic_id].append(p)
    labels = {t.id: t.label for t in result.topics}
    size = 11 if len(points) <= 200 else (7 if len(points) <= 2_000 else 4)
    fig = go.Figure()
    # Outliers first, so they are drawn underneath the topics.
    order = [t.id for t in result.topics if t.id in by_topic] + [t for t in by_topic if t not in labels]
    for topic_id in sorted(order, key=lambda t: t != OUTLIER_ID):
        members = by_topic[topic_id]
        faded = selected_topic is not None and topic_id != selected_topic
        name = "Outliers" if topic_id == OUTLIER_ID else f"{topic_id}: {short(labels.get(topic_id, ''), 40)}"
        fig.add_trace(
            scatter(
                x=[p.x for p in members],
                y=[p.y for p in members],
                mode="markers",
                name=f"{plotly_text(name)} ({len(members)})",
                legendgroup=str(topic_id),
                meta="items",
                marker={
                    "size": size + (3 if selected_topic == topic_id else 0),
                    "color": colors.get(topic_id, OUTLIER_COLOR),
                    "opacity": 0.15 if faded else (0.5 if topic_id == OUTLIER_ID else 0.85),
                    "line": {"width": 0},
                },
                customdata=[[p.item_id, topic_id] for p in members],
                hovertext=[hover_text(p, labels.get(topic_id, "")) for p in members],
                hoverinfo="text",
            )
        )
    wanted = set(highlight)
    matches = [p for p in points if p.item_id in wanted]
    if matches:
        fig.add_trace(
            scatter(
                x=[p.x for p in matches],
                y=[p.y for p in matches],
                mode="markers",
                name=f"Search matches ({len(matches)})",
                meta="matches",
                marker={
                    "size": size + 9,
                    "symbol": "circle-open",
                    "color": HIGHLIGHT_COLOR,
                    "line": {"width": 2.5, "color": HIGHLIGHT_COLOR},
                },
                customdata=[[p.item_id, p.topic_id] for p in matches],
                hovertext=[hover_text(p, labels.get(p.topic_id, "")) for p in matches],
                hoverinfo="text",
            )
        )
    # Labels for the largest topics only: a few dozen labels pile up unreadably in the dense middle.
    labelled = sorted((t for t in result.real_topics if by_topic.get(t.id)), key=lambda t: -len(by_topic[t.id]))
    centres = [(t, _centre(by_topic[t.id])) for t in labelled[:MAX_MAP_LABELS]]
    if centres:
        fig.add_trace(
            go.Scatter(  # few points: SVG text renders crisper than WebGL and mixes fine with it
                x=[c[0] for _t, c in centres],
                y=[c[1] for _t, c in centres],
                mode="text",
                textposition="top center",  # just above the centre, not on top of the point there
                text=[plotly_text(short(t.label, 28 if len(centres) <= 10 else 20)) for t, _c in centres],
                textfont={
                    "size": 13 if len(centres) <= 10 else 11,
                    "color": "#1f1f1f",
                    "weight": "bold",
                    "shadow": "auto",
                },
                hoverinfo="skip",
                showlegend=False,
                meta="labels",
                name="Topic labels",
            )
        )
    # The legend sits below the plot and takes its rows out of the figure's height: add them back.
    legend_rows = -(-len(fig.data) // 3)
    fig.update_layout(
        title=plotly_text(title) if title else None,
        height=580 + 22 * legend_rows,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        hovermode="closest",
        dragmode="zoom",
        # Below the map: a long legend on the side would squeeze the plot in a narrow column.
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0, "itemsizing": "constant"},
        plot_bgcolor="white",
        uirevision="topic-map",  # keep the user's zoom when the page redraws (search, selection)
        hoverlabel={"align": "left"},
    )
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "title": None}
    fig.update_xaxes(**axis, range=_padded([p.x for p in points]))
    fig.update_yaxes(**axis, range=_padded([p.y for p in points]))
    return fig


def _padded(values: Sequence[float], share: float = 0.12) -> list[float] | None:
    """The axis range with a margin, so labels at the topic centres near the edge are not cut off."""
    if not values:
        return None
    low, high = min(values), max(values)
    pad = (high - low) * share or 1.0
    return [low - pad, high + pad]


def map_html(fig: go.Figure) -> str:
    """The map as one self-contained HTML page (plotly.js embedded: opens offline, no CDN)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False, "responsive": True})


# ---- keywords ---------------------------------------------------------------------------------------------
def keyword_bars(
    topics: Sequence[TopicInfo],
    *,
    n_words: int = 8,
    columns: int = 2,
    titles: bool = True,
    colors: dict[int, str] | None = None,
) -> go.Figure | None:
    """Horizontal bars of each topic's top words by c-TF-IDF score, one small chart per topic.
    ``colors``: topic id -> colour (:func:`topic_colors`, so bars match the map)."""
    from plotly.subplots import make_subplots

    shown = [t for t in topics if t.keywords]
    if not shown:
        return None
    columns = max(1, min(columns, len(shown)))
    rows = -(-len(shown) // columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[plotly_text(topic_name(t, 26)) for t in shown] if titles else None,
        horizontal_spacing=0.18,
        vertical_spacing=min(0.12, 0.6 / rows),
    )
    if colors is None:
        colors = {t.id: PALETTE[n % len(PALETTE)] for n, t in enumerate(t for t in topics if not t.is_outliers)}
    for n, topic in enumerate(shown):
        words = topic.keywords[:n_words]
        scores = list(topic.keyword_scores[: len(words)]) + [0.0] * (len(words) - len(topic.keyword_scores))
        fig.add_trace(
            go.Bar(
                x=scores[::-1],
                y=[plotly_text(w) for w in words[::-1]],
                orientation="h",
                marker_color=colors.get(topic.id, OUTLIER_COLOR),
                hovertemplate="%{y}: %{x:.3f}<extra></extra>",
                showlegend=False,
            ),
            row=n // columns + 1,
            col=n % columns + 1,
        )
    fig.update_layout(height=max(240, 230 * rows), margin={"l": 10, "r": 10, "t": 40 if titles else 10, "b": 10})
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_annotations(font_size=13)  # the subplot titles
    return fig


# ---- hierarchy and similarity -----------------------------------------------------------------------------
def linkage_matrix(result: TopicResult) -> tuple[list[TopicInfo], list[list[float]]] | None:
    """``result.hierarchy`` as a scipy linkage matrix over the real topics (leaf i = the i-th real topic);
    None when there is no complete hierarchy (fewer than two topics, or a map edited into an odd shape)."""
    leaves = result.real_topics
    n = len(leaves)
    if n < 2 or len(result.hierarchy) != n - 1:
        return None
    index = {t.id: i for i, t in enumerate(leaves)}
    counts = {i: 1 for i in range(n)}
    rows: list[list[float]] = []
    for step, merge in enumerate(sorted(result.hierarchy, key=lambda m: m.parent)):
        if merge.left not in index or merge.right not in index:
            return None
        a, b = index.pop(merge.left), index.pop(merge.right)
        node = n + step
        index[merge.parent] = node
        counts[node] = counts[a] + counts[b]
        rows.append([float(a), float(b), max(0.0, float(merge.distance)), float(counts[node])])
    # scipy wants distances that never decrease up the tree; average linkage gives that up to rounding.
    for i in range(1, len(rows)):
        rows[i][2] = max(rows[i][2], rows[i - 1][2])
    return leaves, rows


def dendrogram_figure(result: TopicResult) -> go.Figure | None:
    """The topic hierarchy drawn from the saved merges (leaves on the left, merge distance to the right)."""
    import numpy as np
    from scipy.cluster.hierarchy import dendrogram

    built = linkage_matrix(result)
    if built is None:
        return None
    leaves, rows = built
    names = [plotly_text(topic_name(t, 36)) for t in leaves]
    tree = dendrogram(np.asarray(rows, dtype=float), no_plot=True, orientation="right", labels=names)
    fig = go.Figure()
    for ys, xs in zip(tree["icoord"], tree["dcoord"], strict=True):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": "#5b6b7f", "width": 1.6},
                hovertemplate="distance %{x:.3f}<extra></extra>",
                showlegend=False,
            )
        )
    positions = [5 + 10 * i for i in range(len(tree["ivl"]))]
    fig.update_layout(
        height=max(260, 28 * len(leaves) + 80),
        margin={"l": 10, "r": 10, "t": 10, "b": 40},
        plot_bgcolor="white",
        xaxis={"title": {"text": "cosine distance between topic centres"}, "zeroline": False},
        yaxis={"tickvals": positions, "ticktext": tree["ivl"], "showgrid": False, "zeroline": False},
    )
    return fig


def merge_suggestions(result: TopicResult, n: int = 5) -> list[tuple[int, int, float]]:
    """The ``n`` most similar pairs of real topics (cosine of their centres): candidates to merge."""
    ids = [t.id for t in result.topics]
    sim = result.similarity
    if len(sim) != len(ids):
        return []
    pairs: list[tuple[int, int, float]] = []
    for i, a in enumerate(ids):
        for j in range(i + 1, len(ids)):
            b = ids[j]
            if OUTLIER_ID in (a, b):
                continue
            pairs.append((a, b, float(sim[i][j])))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:n]


def similarity_figure(result: TopicResult) -> go.Figure | None:
    """Heatmap of cosine similarity between topic centres (real topics only)."""
    rows = [i for i, t in enumerate(result.topics) if not t.is_outliers]
    if len(rows) < 2 or len(result.similarity) != len(result.topics):
        return None
    names = [plotly_text(topic_name(result.topics[i], 28)) for i in rows]
    z = [[round(float(result.similarity[i][j]), 3) for j in rows] for i in rows]
    off = [z[a][b] for a in range(len(rows)) for b in range(len(rows)) if a != b]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Blues",
            zmin=min(off) if off else 0.0,
            zmax=1.0,
            texttemplate="%{z:.2f}" if len(rows) <= 15 else None,
            hovertemplate="%{y}<br>%{x}<br>similarity %{z:.3f}<extra></extra>",
            colorbar={"title": {"text": "cosine"}},
        )
    )
    fig.update_layout(
        height=max(320, 26 * len(rows) + 160),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"autorange": "reversed"},
        xaxis={"tickangle": -35},
    )
    return fig


# ---- topics over time -------------------------------------------------------------------------------------
def month_of(date: str) -> str | None:
    m = _DATE_RE.match(date or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        return None
    return f"{m.group(1)}-{m.group(2)}"


def _month_range(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last and len(out) < 1200:  # 100 years of months is plenty
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def monthly_counts(points: Sequence[MapPoint]) -> tuple[list[str], dict[int, list[int]]]:
    """Months (every month from the first to the last, "YYYY-MM") and, per topic, the items per month."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for p in points:
        month = month_of(p.date)
        if month:
            counts[p.topic_id][month] += 1
    seen = sorted({m for c in counts.values() for m in c})
    if not seen:
        return [], {}
    months = _month_range(seen[0], seen[-1])
    return months, {t: [c.get(m, 0) for m in months] for t, c in counts.items()}


AREA_MIN_MONTHS = 36  # a few months read better as stacked bars; a long span as a stacked area


def timeline_figure(result: TopicResult, points: Sequence[MapPoint]) -> go.Figure | None:
    """Items per topic per month, stacked (bars for a short span, an area for a long one); None when the
    dates cover fewer than two months."""
    months, series = monthly_counts(points)
    if len(months) < 2:
        return None
    colors = topic_colors(result)
    area = len(months) >= AREA_MIN_MONTHS
    x = [f"{m}-01" for m in months]
    fig = go.Figure()
    for topic in result.topics:
        values = series.get(topic.id)
        if not values or not any(values):
            continue
        color = colors.get(topic.id, OUTLIER_COLOR)
        common = {
            "x": x,
            "y": values,
            "name": plotly_text(topic_name(topic, 32)),
            "hovertemplate": "%{x|%Y-%m}: %{y}<extra>%{fullData.name}</extra>",
        }
        if area:
            fig.add_trace(go.Scatter(**common, mode="lines", stackgroup="topics", line={"width": 0.8, "color": color}))
        else:
            fig.add_trace(go.Bar(**common, marker_color=color, xperiod="M1", xperiodalignment="middle"))
    fig.update_layout(
        height=380,
        barmode="stack",
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": None, "tickformat": "%Y-%m"},
        yaxis={"title": {"text": "items per month"}, "rangemode": "tozero"},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
    )
    return fig


# ---- exports ----------------------------------------------------------------------------------------------
def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading apostrophe."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(header: list[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([v if isinstance(v, int | float) else _cell(v) for v in row])
    # A BOM makes Excel read the file as UTF-8 (Chinese labels otherwise turn into mojibake).
    return "\ufeff" + buf.getvalue()


def topics_csv(result: TopicResult) -> str:
    return _csv(
        ["id", "label", "size", "keywords"],
        ([t.id, t.label, t.size, " ".join(t.keywords)] for t in result.topics),
    )


def documents_csv(summary: dict) -> str:
    """Each document's topic, from :meth:`TopicService.summary` (the CLI's export contract)."""
    labels = {t["id"]: t["label"] for t in summary["topics"]}
    return _csv(
        ["document", "source", "topic", "topic_label"],
        ([d["document"], d["source"], d["topic"], labels.get(d["topic"], "")] for d in summary["documents"]),
    )
