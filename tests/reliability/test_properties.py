"""Property tests that complete the ones in tests/unit (test_chunking.py, test_ingest_encoding.py).

Already covered there: one page's chunks tile its text (no loss, no duplication, offsets map back), sentence
splitting tiles text, any byte string either decodes or raises UnknownEncoding, real Chinese in Big5/GB18030/
UTF-16 is never garbled. Added here: the same guarantees across many pages and through the store (what a
citation's page and offsets point at), text in a Unicode encoding always comes back exactly, and any bytes
under any text extension end in a document or a DocQAError, never another exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.chunking import chunk_pages
from services.errors import DocQAError, UnknownEncoding
from services.ingest import parse_file_inprocess
from services.ingest.encoding import decode_bytes
from services.models import ParsedDocument, ParsedPage
from tests.reliability.conftest import close_services, open_services
from tests.ui.ui_helpers import HashEmbeddings

_WORDS = st.sampled_from(
    [
        "颱風",
        "臺北市",
        "高速鐵路",
        "台风",
        "。",
        "！",
        "？",
        "；",
        "」",
        "，",
        "tea",
        "Oolong",
        ". ",
        "? ",
        "\n",
        "\n\n",
        " ",
    ]
)
PAGE_TEXT = st.lists(st.one_of(_WORDS, st.text(max_size=6)), max_size=80).map("".join)


def _no_space(text: str) -> str:
    return re.sub(r"\s", "", text)


@given(pages=st.lists(PAGE_TEXT, min_size=1, max_size=6), max_tokens=st.integers(min_value=6, max_value=60))
@settings(max_examples=120, deadline=None)
def test_chunks_over_many_pages_lose_and_repeat_nothing(pages: list[str], max_tokens: int) -> None:
    counter = HashEmbeddings().count_tokens
    parsed = [ParsedPage(number=i + 1, text=t) for i, t in enumerate(pages)]
    chunks = chunk_pages(parsed, lambda t: counter(t) + 2, max_tokens)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)  # in reading order
    for number, text in enumerate(pages, start=1):
        own = [c for c in chunks if c.page == number]
        for c in own:
            assert c.text == text[c.start : c.end]  # offsets map back to the page
        starts = [c.start for c in own]
        assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(own, own[1:], strict=False))
        assert _no_space("".join(c.text for c in own)) == _no_space(text)  # each character exactly once


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    services = open_services(tmp_path_factory.mktemp("prop") / "library", chunk_tokens=32)
    yield services
    close_services(services)


@given(pages=st.lists(PAGE_TEXT.filter(lambda t: t.strip()), min_size=1, max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_stored_chunks_point_at_their_page_text(library, pages: list[str]) -> None:
    """What a citation shows (page number, start, end) is exactly the stored page's text."""
    doc = ParsedDocument(source="prop.txt", kind="txt", pages=[ParsedPage(i + 1, t) for i, t in enumerate(pages)])
    (result,) = library.library.ingest_parsed([doc], embed=False)
    if result.status == "duplicate":
        return
    assert result.status == "added", result.message
    try:
        stored = dict(library.store.pages_of(result.document_id))
        chunks = library.store.document_chunks(result.document_id)
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        for c in chunks:
            assert c.text == stored[c.page][c.start : c.end]
        for number, text in stored.items():
            assert _no_space("".join(c.text for c in chunks if c.page == number)) == _no_space(text)
    finally:
        library.library.delete(result.document_id)


@given(text=st.text(max_size=300), codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
@settings(max_examples=300, deadline=None)
def test_unicode_text_comes_back_exactly_or_is_refused(text: str, codec: str) -> None:
    """Text saved in a Unicode encoding (with its BOM where it has one) is never changed: it decodes to
    exactly what was written, or (text that is mostly control characters) is refused with a message.
    UTF-8 without a BOM and with NUL characters is left out: zero bytes are how BOM-less UTF-16 is
    recognised, and "0\\x00" really is also the UTF-16 for "0"."""
    assume(codec != "utf-8" or "\x00" not in text)
    data = text.encode(codec)
    try:
        decoded, _ = decode_bytes(data, "u.txt")
    except UnknownEncoding as err:
        assert "u.txt" in err.message
        return
    assert decoded == text.removeprefix("\ufeff") or decoded == text, (text, codec, decoded)


@given(data=st.binary(max_size=1500), suffix=st.sampled_from([".txt", ".md", ".csv", ".jsonl", ".html"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_under_a_text_name_parse_or_fail_cleanly(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        documents = parse_file_inprocess(path, ocr=False)
    except DocQAError as err:
        assert err.message and "fuzz" in err.message, err.message  # a message that names the file
        return
    for document in documents:
        assert document.pages and all(isinstance(p.text, str) for p in document.pages)
        assert any(p.text.strip() for p in document.pages)


@given(text=st.text(min_size=8, max_size=200))
@settings(max_examples=300, deadline=None)
def test_utf16_without_bom_is_right_or_refused(text: str) -> None:
    """UTF-16 without a BOM has to be guessed; the guess is the right text or a refusal, never other text.
    (A character or two is ambiguous in any detector, as in the unit tests, hence at least 8.)"""
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            decoded, _ = decode_bytes(text.encode(codec), "w.txt")
        except UnknownEncoding:
            continue
        assert decoded == text, (text, codec, decoded)
