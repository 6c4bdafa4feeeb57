"""The Ask page through AppTest: extractive answers with citations, new chat, export, escaping, LLM choice."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from ui_helpers import all_markdown, button, start_app, unescape

TYPHOON = (
    "台灣的颱風季節\n\n台灣每年夏天到秋天，特別是七月到九月，是颱風最常來的季節。"
    "颱風帶來強風與豪雨，容易造成淹水與土石流。中央氣象署會發布颱風警報。"
)
TEA = "Oolong tea is partly oxidised. Green tea is heated soon after picking, which stops oxidation."
EVENTS = (
    "date,text\n"
    "2024-03-01,Green tea workshop: green tea is heated soon after picking so that oxidation stops.\n"
    "2025-07-15,Typhoon drill: residents practise the route to the shelter before the typhoon season.\n"
)
EVIL = "Night market notes. <script>alert('xss')</script> Oyster omelette is sold at the night market."


@pytest.fixture(scope="module")
def library_template(tmp_path_factory, embedder) -> Path:
    """A small library built once per module (real model); each test works on its own copy."""
    from services.app_services import build_services
    from services.config import load_settings

    root = tmp_path_factory.mktemp("chat_library")
    files = []
    for name, text in (("typhoon.txt", TYPHOON), ("tea.txt", TEA), ("market.txt", EVIL)):
        path = root / name
        path.write_text(text, encoding="utf-8")
        files.append(path)
    services = build_services(load_settings(data_dir=root / "data"), embedder=embedder)
    results = services.library.ingest_paths(files)
    events = root / "events.csv"
    events.write_text(EVENTS, encoding="utf-8")
    results += services.library.ingest_paths([events], text_column="text", date_column="date")
    assert [r.status for r in results] == ["added"] * 5, [r.message for r in results]
    services.ingest_queue.stop()
    services.store.close()
    return root / "data"


@pytest.fixture
def library(library_template, data_dir, real_embedder):
    """The Ask page on a copy of the small library."""
    shutil.copytree(library_template, data_dir)
    at = start_app()
    at.switch_page("pages/chat.py").run()
    assert not at.exception, at.exception
    return at


def ask(at, question: str):
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def test_chat_page_renders_with_settings_and_retrieval_test(library):
    assert [t.value for t in library.title] == ["Ask your documents"]
    assert [s.value for s in library.sidebar.selectbox if s.label == "LLM backend"] == ["none"]
    assert any(e.label.endswith("Retrieval test") for e in library.expander)


def test_extractive_answer_cites_the_page(library):
    ask(library, "颱風季節是幾月？")
    roles = [m.name for m in library.chat_message]
    assert roles == ["user", "assistant"]
    assistant = library.chat_message[1]
    assert any("Quoted passages" in c.value for c in assistant.caption)
    cards = [m.value for m in assistant.markdown if m.value.startswith("**\\[")]
    assert cards and "typhoon.txt" in unescape(cards[0]) and "page 1" in cards[0]
    assert ":orange-background[" in all_markdown(library)  # the cited span is highlighted
    answer = library.session_state["chat_messages"][-1]["answer"]
    assert answer.mode == "extractive" and not answer.abstained and answer.citations


def test_new_chat_clears_the_history(library):
    ask(library, "What stops oxidation in green tea?")
    assert len(library.chat_message) == 2
    assert library.session_state["chat_messages"]
    button(library, "New chat").click()
    library.run()
    assert len(library.chat_message) == 0
    assert "chat_messages" not in library.session_state or not library.session_state["chat_messages"]


def test_export_offers_markdown_with_sources(library):
    ask(library, "What stops oxidation in green tea?")
    downloads = library.get("download_button")
    assert downloads, "no export button"
    assert "Export chat" in downloads[0].proto.label
    from services.rag import export_markdown

    text = export_markdown(library.session_state["chat_messages"])
    assert "**Q:** What stops oxidation in green tea?" in text and "tea.txt, page 1" in text


def test_script_in_a_document_shows_as_text_in_the_chat(library):
    ask(library, "What is sold at the night market?")
    shown = [m for m in library.markdown if "alert" in m.value]
    assert shown, all_markdown(library)
    for element in shown:
        assert not element.proto.allow_html
        assert not re.search(r"(?<!\\)<", element.value), element.value
    assert not library.get("html")


def test_retrieval_test_shows_each_signal(library):
    library.text_input(key="rt_query").input("oolong oxidation")
    library.button[[b.label for b in library.button].index("Search")].click()
    library.run()
    assert not library.exception
    frames = [d.value for d in library.dataframe if "Fused score" in d.value.columns]
    assert frames, "no retrieval table"
    table = frames[0]
    assert {"Dense rank", "Dense score", "Keyword rank", "Keyword score (BM25)"} <= set(table.columns)
    assert table["Document"][0] == "tea.txt" and table["Rank"][0] == 1


def test_document_filter_restricts_the_answer(library):
    chooser = library.sidebar.multiselect[0]
    chooser.select(next(o for o in chooser.options if o == "tea.txt")).run() if False else None
    ids = {
        d.source: d.id for d in __import__("components.resources", fromlist=["x"]).get_services().library.documents()
    }
    library.sidebar.multiselect[0].set_value([ids["tea.txt"]]).run()
    ask(library, "颱風季節是幾月？")
    answer = library.session_state["chat_messages"][-1]["answer"]
    assert all(c.source == "tea.txt" for c in answer.citations)


def test_a_misconfigured_llm_falls_back_with_a_notice(library):
    backend = [s for s in library.sidebar.selectbox if s.label == "LLM backend"][0]
    backend.set_value("ollama").run()  # no model name: LLMUnavailable
    assert any("Ollama" in unescape(i.value) for i in library.info), [i.value for i in library.info]
    ask(library, "What stops oxidation in green tea?")
    assert library.session_state["chat_messages"][-1]["answer"].mode == "extractive"


def test_llm_answer_streams_with_citations(library, monkeypatch):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    import services.llm

    reply = "Green tea is heated soon after picking, which stops oxidation [1]."
    monkeypatch.setattr(
        services.llm, "make_chat_model", lambda settings: GenericFakeChatModel(messages=iter([AIMessage(reply)]))
    )
    [s for s in library.sidebar.selectbox if s.label == "LLM backend"][0].set_value("openai").run()
    ask(library, "What stops oxidation in green tea?")
    answer = library.session_state["chat_messages"][-1]["answer"]
    assert answer.mode == "llm", answer.notices
    assert answer.citations and answer.citations[0].source in {"tea.txt", "events.csv#row-2"}
    assert any("language model" in c.value for c in library.chat_message[1].caption)


def test_date_range_restricts_the_answer(library):
    library.sidebar.checkbox(key="chat_use_dates").check().run()
    import datetime as dt

    library.sidebar.date_input(key="chat_dates").set_value((dt.date(2024, 1, 1), dt.date(2024, 12, 31))).run()
    ask(library, "What stops oxidation in green tea?")
    answer = library.session_state["chat_messages"][-1]["answer"]
    assert answer.citations, answer.text
    assert {c.source for c in answer.citations} == {"events.csv#row-2"}, [c.source for c in answer.citations]


def test_llm_choice_survives_a_page_switch(library):
    [s for s in library.sidebar.selectbox if s.label == "LLM backend"][0].set_value("ollama").run()
    library.switch_page("pages/library.py").run()
    library.switch_page("pages/chat.py").run()
    assert [s.value for s in library.sidebar.selectbox if s.label == "LLM backend"] == ["ollama"]
