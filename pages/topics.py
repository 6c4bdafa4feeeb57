"""Topics page: build the topic map, explore it (map, list, hierarchy, similarity, time), edit it (rename,
merge, outliers), export it, and open the chat restricted to one topic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from components.errors import show_error, show_notices
from components.resources import current_settings, get_services
from components.text import escape_markdown, inline
from components.topic_charts import (
    MAP_KEY,
    TABLE_KEY,
    build_settings,
    export_section,
    hierarchy_section,
    keyword_charts,
    map_chart,
    overview_section,
    passages_list,
    run_build,
    search_matches_panel,
    selection_signature,
    similarity_section,
    timeline_section,
    topic_from_map_event,
    topic_keywords_chart,
    topic_table,
)
from services.app_services import AppServices
from services.errors import DocQAError
from services.topic_figures import MapPoint, map_figure, map_points, topic_name
from services.topic_service import MapState, TopicService
from services.topics_model import TopicInfo, TopicResult
from services.topics_store import TOPICS_FILE

SELECT_KEY = "topics_selected"
NEXT_SELECT_KEY = "_topics_select_next"  # a selection asked for after the selectbox was drawn
VIEW_KEY = "_topics_view"
FLASH_KEY = "_topics_flash"
SEARCH_KEY = "topics_search"
SEARCH_K = 20
AUTO_QUALITY_ITEMS = 300  # above this, measuring coherence (jieba over every item: ~4 ms each) waits for a click


@dataclass
class TopicView:
    """Everything the page derives from the saved map, kept per session until the map or library changes."""

    key: tuple
    state: MapState
    points: list[MapPoint]
    extras: dict[str, Any] = field(default_factory=dict)  # summary, overview, quality, searches


def _view_key(services: AppServices) -> tuple:
    path = services.settings.topics_dir / TOPICS_FILE
    try:
        stat = path.stat()
        stamp: tuple | None = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None
    counts = services.store.counts()
    docs = tuple(sorted(d.id for d in services.store.list_documents()))
    return (str(services.settings.data_dir.resolve()), stamp, counts["chunks"], counts["embedded"], hash(docs))


def _load_view(services: AppServices, service: TopicService) -> TopicView | None:
    key = _view_key(services)
    cached = st.session_state.get(VIEW_KEY)
    if isinstance(cached, TopicView) and cached.key == key:
        return cached
    try:
        state = service.refresh()
        points: list[MapPoint] = []
        if state.result is not None:
            chunks, _ = services.store.iter_embeddings()
            points = map_points(state.result, chunks, services.store.list_documents())
    except DocQAError as exc:
        show_error(exc)
        return None
    except Exception as exc:  # a bug: the page still offers a rebuild
        show_error(exc, doing="loading the topic map")
        return None
    view = TopicView(key, state, points)
    st.session_state[VIEW_KEY] = view
    return view


def _forget_view() -> None:
    st.session_state.pop(VIEW_KEY, None)


def _extra(view: TopicView, name: str, compute: Any) -> Any:
    if name not in view.extras:
        view.extras[name] = compute()
    return view.extras[name]


def _flash(message: str) -> None:
    st.session_state[FLASH_KEY] = message


def _show_flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(escape_markdown(message), icon=":material/check_circle:")


def _select_next(topic_id: int) -> None:
    st.session_state[NEXT_SELECT_KEY] = topic_id


def _open_services() -> AppServices:
    try:
        return get_services(current_settings())
    except DocQAError as exc:
        show_error(exc)
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


# ---- selection (map click, table row, or a request from an edit) ---------------------------------------------
def _apply_selection(result: TopicResult) -> None:
    """Turn this run's map/table selection into the selected topic. Runs before the selectbox exists, the
    only time its value may be set. A selection is applied once, when it changes, so the selectbox stays
    usable while the map keeps its highlighted points."""
    event = st.session_state.get(MAP_KEY)
    signature = selection_signature(event)
    if signature and signature != st.session_state.get("_topics_map_sig"):
        st.session_state["_topics_map_sig"] = signature
        topic = topic_from_map_event(event)
        if topic is not None:
            _select_next(topic)
    table = st.session_state.get(TABLE_KEY)
    signature = selection_signature(table)
    if signature and signature != st.session_state.get("_topics_table_sig"):
        st.session_state["_topics_table_sig"] = signature
        rows = (table or {}).get("selection", {}).get("rows", [])
        if rows and 0 <= rows[0] < len(result.topics):
            _select_next(result.topics[rows[0]].id)
    ids = {t.id for t in result.topics}
    wanted = st.session_state.pop(NEXT_SELECT_KEY, None)
    if wanted in ids:
        st.session_state[SELECT_KEY] = wanted
    if st.session_state.get(SELECT_KEY) not in ids:
        st.session_state.pop(SELECT_KEY, None)  # merged away or from an older map


# ---- sections ---------------------------------------------------------------------------------------------
def _topic_chat_model() -> tuple[Any, str | None]:
    """The configured LLM for topic labels and the library summary (None without one), and a notice
    when it is misconfigured (keyword labels then)."""
    from services.llm import make_chat_model

    try:
        return make_chat_model(current_settings()), None
    except DocQAError as exc:
        return None, f"{exc.message} Topic labels come from keywords until this is fixed."


def _llm_note(service: TopicService, result: TopicResult) -> None:
    from services.topic_labels import model_name

    if result.label_model:
        st.caption(f"Topic labels written by {inline(result.label_model, 60)}; renamed topics keep your names.")
    if service.chat_model is not None and st.button(
        "Relabel with LLM",
        key="topics_relabel",
        icon=":material/auto_awesome:",
        help=f"Ask {model_name(service.chat_model)} for a short name per topic (keywords and passages stay).",
    ):
        with st.spinner("Naming the topics…"):
            _edit(lambda: service.relabel(result), "Topics relabelled by the language model.")


def _empty_library() -> None:
    st.info("The library is empty: a topic map needs documents.", icon=":material/info:")
    st.page_link("pages/library.py", label="Add documents (or the samples) on the Library page", icon=":material/add:")


def _unit(result: TopicResult) -> str:
    return "documents" if result.params.level == "documents" else "passages"


def _notices(services: AppServices, view: TopicView) -> None:
    state, result = view.state, view.state.result
    assert result is not None
    if state.advice:
        st.warning(escape_markdown(state.advice), icon=":material/autorenew:")
    if state.placed:
        n = len(state.placed)
        st.info(
            f"New since the map was built: {n} {_unit(result)}, placed into the existing topics. "
            "Rebuild to let them form topics of their own.",
            icon=":material/add_location_alt:",
        )
    if state.removed:
        st.caption(
            f"Removed from the map: {len(state.removed)} {_unit(result)} deleted from the library since the build."
        )
    pending = services.store.pending_count()
    if pending:
        st.info(f"{pending} passages are still being embedded: they join the map once their vectors are ready.")
    show_notices(result.warnings)


def _build_controls(service: TopicService, result: TopicResult | None) -> None:
    params = build_settings(result.params if result else None)
    label = "Rebuild topics" if result else "Build topics"
    if st.button(
        label,
        type="secondary" if result else "primary",
        icon=":material/bubble_chart:",
        key="topics_build",
        help="Replaces the current map, renames and merges included." if result else None,
    ):
        built = run_build(service.build, params)
        if built is not None:
            n = len(built.real_topics)
            _flash(f"Built {n} topic{'s' * (n != 1)} over {len(built.assignments)} {_unit(built)}.")
            _forget_view()
            st.rerun()


def _search(services: AppServices, view: TopicView, query: str) -> list[tuple[MapPoint, float]]:
    """Library search (the chat's retriever), as points on the map: passages, or their documents."""
    query = query.strip()
    if not query:
        return []
    searches = view.extras.setdefault("searches", {})
    if query not in searches:
        result = view.state.result
        assert result is not None
        by_item = {p.item_id: p for p in view.points}
        found: dict[str, tuple[MapPoint, float]] = {}
        # The closest tenth of a small library, at most SEARCH_K: ringing everything would show nothing.
        k = max(3, min(SEARCH_K, len(view.points) // 10))
        for passage in services.retriever.search(query, k=k):
            item = passage.chunk.id if result.params.level == "chunks" else passage.chunk.document_id
            if item in by_item and item not in found:
                found[item] = (by_item[item], float(passage.score))
        searches[query] = list(found.values())
    return searches[query]


def _map_tab(services: AppServices, view: TopicView, result: TopicResult) -> None:
    query = st.text_input(
        "Find on the map",
        key=SEARCH_KEY,
        placeholder="Search the library, e.g. 颱風 or green tea",
        help="The same search as the chat (meaning and keywords); matching items are ringed in red.",
    )
    try:
        matches = _search(services, view, query)
    except DocQAError as exc:
        show_error(exc)
        matches = []
    if query.strip():
        st.caption(f"{len(matches)} matching {_unit(result)} ringed in red." if matches else "Nothing matched.")
    selected = st.session_state.get(SELECT_KEY)
    fig = map_figure(result, view.points, highlight=[p.item_id for p, _s in matches], selected_topic=selected)
    map_chart(fig)
    search_matches_panel(matches, {t.id: t.label for t in result.topics})


def _topics_tab(service: TopicService, result: TopicResult) -> None:
    topic_table(result)
    outliers = next((t.size for t in result.topics if t.is_outliers), 0)
    if outliers and st.button(
        f"Put the {outliers} outliers into their nearest topics", key="topics_reduce_all", icon=":material/join_inner:"
    ):
        _reduce_outliers(service, result)
    st.markdown("**Top words per topic**")
    keyword_charts(result)


def _structure_tab(service: TopicService, result: TopicResult) -> None:
    pair = hierarchy_section(result)
    if pair is not None:
        _merge(service, result, list(pair))


def _overview_tab(service: TopicService, view: TopicView, result: TopicResult) -> None:
    try:
        overview = _extra(view, "overview", lambda: service.overview(result))
    except DocQAError as exc:
        show_error(exc)
        return
    if "quality" not in view.extras and len(result.assignments) <= AUTO_QUALITY_ITEMS:
        view.extras["quality"] = service.quality(result)

    def measure() -> None:
        with st.spinner("Reading every item's words…"):
            view.extras["quality"] = service.quality(result)
        st.rerun()

    if service.chat_model is not None:
        if "llm_summary" not in view.extras and st.button(
            "Summarise with LLM", key="topics_summarise", icon=":material/auto_awesome:"
        ):
            with st.spinner("Writing a summary…"):
                view.extras["llm_summary"] = service.library_summary(overview)
        text, notice = view.extras.get("llm_summary", (None, None))
        if text:
            from services.topic_labels import model_name

            st.markdown(escape_markdown(text))
            st.caption(f"Summary written by {inline(model_name(service.chat_model), 60)} from the topics below.")
        if notice:
            st.info(escape_markdown(notice), icon=":material/info:")
    overview_section(overview, view.extras.get("quality"), measure)


# ---- actions ----------------------------------------------------------------------------------------------
def _edit(action: Any, message: str, select: int | None = None) -> None:
    try:
        action()
    except DocQAError as exc:
        show_error(exc)
        return
    except Exception as exc:
        show_error(exc, doing="editing the topics")
        return
    _flash(message)
    if select is not None:
        _select_next(select)
    _forget_view()
    st.rerun()


def _merge(service: TopicService, result: TopicResult, topic_ids: list[int]) -> None:
    names = ", ".join(topic_name(result.topic(t), 30) for t in topic_ids)
    target = min(topic_ids)
    _edit(lambda: service.merge(result, topic_ids), f"Merged {names} into topic {target}.", select=target)


def _reduce_outliers(service: TopicService, result: TopicResult) -> None:
    _edit(lambda: service.reduce_outliers(result), "The outliers joined their nearest topics.")


def _ask_about(result: TopicResult, topic_id: int, document_ids: list[str]) -> None:
    from components.chat_view import TOPIC_FILTER_KEY  # the chat's hook; imported here to keep this page light

    topic = result.topic(topic_id)
    st.session_state[TOPIC_FILTER_KEY] = {
        "topic_id": topic.id,
        "label": topic.label,
        "document_ids": list(document_ids),
    }
    # A document choice left over from an earlier chat would narrow the topic's documents further.
    st.session_state.pop("chat_documents", None)
    st.switch_page("pages/chat.py")


def _topic_documents(view: TopicView, topic_id: int) -> pd.DataFrame:
    per_doc: Counter[str] = Counter()
    first: dict[str, MapPoint] = {}
    for p in view.points:
        if p.topic_id == topic_id:
            per_doc[p.document_id] += 1
            first.setdefault(p.document_id, p)
    rows = [
        {"Document": first[d].source, "Title": first[d].title, "Date": first[d].date[:10], "Items": n}
        for d, n in per_doc.most_common()
    ]
    return pd.DataFrame(rows, columns=["Document", "Title", "Date", "Items"])


def _topic_panel(service: TopicService, view: TopicView, result: TopicResult) -> None:
    st.subheader("Topic", anchor=False)
    by_id = {t.id: t for t in result.topics}
    options = [t.id for t in result.real_topics] + [t.id for t in result.topics if t.is_outliers]
    topic_id = st.selectbox(
        "Topic",
        options,
        index=None,
        format_func=lambda t: f"{topic_name(by_id[t], 60)} ({by_id[t].size})" if t in by_id else str(t),
        key=SELECT_KEY,
        placeholder="Choose a topic",
        label_visibility="collapsed",
    )
    if topic_id is None:
        st.caption("Choose a topic here, select a row in the topic list, or click a point on the map.")
        return
    topic = by_id[topic_id]
    st.markdown(f"**{inline(topic.label, 100)}**")
    st.caption(
        f"{topic.size} {_unit(result)}" + (f" · {inline(', '.join(topic.keywords[:8]))}" if topic.keywords else "")
    )
    if topic.is_outliers:
        st.caption("Outliers fit no topic well. They can join their nearest topics:")
        if st.button(
            "Put the outliers into their nearest topics", key="topics_reduce_one", icon=":material/join_inner:"
        ):
            _reduce_outliers(service, result)
    else:
        doc_ids = _extra(view, f"documents_{topic_id}", lambda: service.topic_document_ids(result, topic_id))
        if st.button(
            "Ask about this topic",
            type="primary",
            icon=":material/forum:",
            key="topics_ask",
            disabled=not doc_ids,
            help=f"Open the chat restricted to this topic's {len(doc_ids)} documents.",
        ):
            _ask_about(result, topic_id, doc_ids)
        _edit_panel(service, result, topic)
        topic_keywords_chart(result, topic)

    st.markdown("**Documents**")
    table = _topic_documents(view, topic_id)
    st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * min(len(table), 8))
    passages = _extra(view, f"passages_{topic_id}", lambda: service.representative_passages(result, topic_id, 3))
    if passages:
        st.markdown("**Representative passages**")
        passages_list(passages)


def _edit_panel(service: TopicService, result: TopicResult, topic: TopicInfo) -> None:
    by_id = {t.id: t for t in result.topics}
    with st.expander("Rename or merge", icon=":material/edit:"):
        with st.form(f"topics_rename_form_{topic.id}", border=False):
            name = st.text_input("Name", value=topic.label, max_chars=80, key=f"topics_rename_{topic.id}")
            if st.form_submit_button("Rename", icon=":material/edit:"):
                _edit(lambda: service.rename(result, topic.id, name), f"Renamed topic {topic.id}.", select=topic.id)
        others = [t.id for t in result.real_topics if t.id != topic.id]
        chosen = st.multiselect(
            "Merge with",
            others,
            format_func=lambda t: topic_name(by_id[t], 60),
            key=f"topics_merge_{topic.id}",
            placeholder="Choose topics to merge into this one",
            disabled=not others,
        )
        if st.button("Merge topics", key=f"topics_merge_go_{topic.id}", icon=":material/merge:", disabled=not chosen):
            _merge(service, result, [topic.id, *chosen])


# ---- page ---------------------------------------------------------------------------------------------------
def topics_page() -> None:
    st.title("Topics")
    services = _open_services()
    chat_model, llm_notice = _topic_chat_model()
    service = TopicService(services.store, services.settings, embedder=services.embedder, chat_model=chat_model)
    _show_flash()
    if llm_notice:
        st.caption(escape_markdown(llm_notice))
    counts = services.store.counts()
    if not counts["documents"]:
        _empty_library()
        return
    view = _load_view(services, service)
    result = view.state.result if view else None
    if result is not None:
        st.caption(
            f"{len(result.real_topics)} topics over {len(result.assignments)} {_unit(result)}, "
            f"built {inline(result.created_at[:16].replace('T', ' '))} UTC."
        )
    _build_controls(service, result)
    if result is not None:
        _llm_note(service, result)
    if not counts["embedded"]:
        st.info("The documents' passages are still being embedded: build the topics once that has finished.")
        return
    if view is None or result is None:
        st.info(
            "No topic map yet. Build one: it takes a few seconds for a small library, about a minute for a large one."
        )
        return
    if not view.points:
        st.info("None of the mapped items are in the library any more: rebuild the topics.")
        return
    _notices(services, view)
    _apply_selection(result)

    main, side = st.columns([3, 2], gap="large")
    with main:
        tabs = st.tabs(
            ["Map", "Topic list", "Hierarchy", "Similarity", "Over time", "What is in my library?", "Export"]
        )
        with tabs[0]:
            _map_tab(services, view, result)
        with tabs[1]:
            _topics_tab(service, result)
        with tabs[2]:
            _structure_tab(service, result)
        with tabs[3]:
            similarity_section(result)
        with tabs[4]:
            timeline_section(result, view.points)
        with tabs[5]:
            _overview_tab(service, view, result)
        with tabs[6]:
            summary = _extra(view, "summary", lambda: service.summary(result))
            # The exported map has no search rings or selection fading.
            export_section(result, summary, lambda: map_figure(result, view.points, title="Topic map"))
    with side:
        _topic_panel(service, view, result)


topics_page()
