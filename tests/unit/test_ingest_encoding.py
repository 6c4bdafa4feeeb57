"""Text decoding: BOMs, UTF-16 without BOM, Big5 vs GB18030 by plausibility, clean refusals."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import UnknownEncoding
from services.ingest.encoding import decode_bytes

TRAD_SHORT = "今天天氣很好，我們一起去公園散步吧。"
TRAD_LONG = (
    "中華民國基於三民主義，為民有民治民享之民主共和國。中華民國之主權屬於國民全體。"
    "臺灣的高速鐵路從臺北到高雄只需要大約一個半小時，颱風季節時班次可能會調整。"
    "人民有居住及遷徙之自由，有言論、講學、著作及出版之自由，有集會及結社之自由。"
)
SIMP_SHORT = "今天天气很好，我们一起去公园散步吧。"
SIMP_LONG = (
    "北京时间四月十二日，在和马刺的比赛中，湖人队的中锋倒下的那一瞬间，整个城市都揪心了。"
    "化学方程式又称化学反应式，是用化学式来描述各种物质之间的不同化学反应的式子。"
    "经济学家认为，今年的消费市场将继续保持稳定增长，但是出口面临的压力依然很大。"
)
ENGLISH = "The quick brown fox jumps over the lazy dog.\nSecond line.\n"
SENTENCES = [TRAD_SHORT, TRAD_LONG, SIMP_SHORT, SIMP_LONG]


@pytest.mark.parametrize("text", [ENGLISH, TRAD_LONG, SIMP_SHORT, "混合 mixed 文字 text"])
def test_utf8_with_and_without_bom(text: str) -> None:
    assert decode_bytes(text.encode("utf-8"), "a.txt") == (text, "utf-8")
    assert decode_bytes(codecs.BOM_UTF8 + text.encode("utf-8"), "a.txt") == (text, "utf-8-sig")


@pytest.mark.parametrize("text", [ENGLISH, TRAD_LONG, SIMP_LONG, TRAD_SHORT])
@pytest.mark.parametrize(
    ("bom", "codec"),
    [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF32_LE, "utf-32-le")],
)
def test_utf16_and_utf32_with_bom(text: str, bom: bytes, codec: str) -> None:
    assert decode_bytes(bom + text.encode(codec), "a.txt") == (text, codec)


@pytest.mark.parametrize("text", [ENGLISH, TRAD_LONG, SIMP_LONG, TRAD_SHORT + "\n" + SIMP_SHORT])
@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom(text: str, codec: str) -> None:
    # English: detected by the NUL pattern; all-Chinese: by reading like Chinese.
    assert decode_bytes(text.encode(codec), "a.txt") == (text, codec)


@pytest.mark.parametrize("text", [TRAD_SHORT, TRAD_LONG, TRAD_LONG * 30, "第 1 條\n" + TRAD_SHORT + " (ROC)"])
@pytest.mark.parametrize("codec", ["big5", "cp950"])
def test_traditional_in_big5(text: str, codec: str) -> None:
    assert decode_bytes(text.encode(codec), "zh-tw.txt") == (text, "cp950")


@pytest.mark.parametrize("text", [SIMP_SHORT, SIMP_LONG, SIMP_LONG * 30, TRAD_SHORT, TRAD_LONG])
def test_chinese_in_gb18030(text: str) -> None:
    # GB18030 covers Traditional characters too: Traditional text saved as GB18030 must not be read as Big5.
    assert decode_bytes(text.encode("gb18030"), "zh-cn.txt") == (text, "gb18030")


def test_gb2312_and_gbk_files_decode_as_gb18030() -> None:
    assert decode_bytes(SIMP_LONG.encode("gb2312"), "a.txt") == (SIMP_LONG, "gb18030")
    assert decode_bytes(SIMP_LONG.encode("gbk"), "a.txt") == (SIMP_LONG, "gb18030")


def test_windows_1252_english() -> None:
    text = "He said \u201chello\u201d and didn\u2019t stay \u2013 caf\u00e9, na\u00efve, r\u00e9sum\u00e9.\n"
    assert decode_bytes(text.encode("cp1252"), "old.txt") == (text, "cp1252")


def test_mixed_big5_and_utf8_fails_clearly() -> None:
    data = (TRAD_LONG + "\n").encode("cp950") * 3 + (TRAD_LONG + "\n").encode("utf-8") * 3
    with pytest.raises(UnknownEncoding) as caught:
        decode_bytes(data, "mixed.txt")
    assert "mixed.txt mixes text encodings" in caught.value.message
    assert "UTF-8" in caught.value.message


def test_mixed_without_line_breaks_is_refused_not_garbled() -> None:
    data = TRAD_LONG.encode("cp950") + TRAD_LONG.encode("utf-8")
    with pytest.raises(UnknownEncoding):
        decode_bytes(data, "mixed.txt")


def test_mixed_big5_and_gb18030_is_refused() -> None:
    data = (TRAD_LONG * 3).encode("cp950") + (SIMP_LONG * 3).encode("gb18030")
    with pytest.raises(UnknownEncoding):
        decode_bytes(data, "mixed.txt")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
        b"\x7fELF\x02\x01\x01" + bytes(9) + bytes(range(256)) * 4,
        bytes(range(256)) * 8,
        b"\xfb\xfc\xfd\xfe\xff" * 200,
        bytes([0x81, 0x30]) * 300,  # invalid in every candidate
    ],
    ids=["png", "elf", "all-bytes", "high-bytes", "invalid-gb"],
)
def test_binary_and_garbage_raise_unknown_encoding(data: bytes) -> None:
    with pytest.raises(UnknownEncoding) as caught:
        decode_bytes(data, "x.txt")
    message = caught.value.message
    assert message.startswith("could not determine the text encoding of x.txt")
    assert message.endswith("save it as UTF-8 and try again")


def test_truncated_utf8_keeps_what_is_complete() -> None:
    data = TRAD_SHORT.encode("utf-8")[:-1]
    assert decode_bytes(data, "cut.txt") == (TRAD_SHORT[:-1], "utf-8")


@pytest.mark.parametrize("codec", ["cp950", "gb18030"])
def test_cut_in_the_last_character_keeps_what_is_complete(codec: str) -> None:
    """An upload preview reads only the first bytes, which may end inside a character."""
    data = TRAD_LONG.encode(codec)[:-1]
    assert decode_bytes(data, "peek.csv") == (TRAD_LONG[:-1], codec)


def test_stray_nul_in_utf8_is_not_binary() -> None:
    text, codec = decode_bytes(("line one\n" * 200 + "\x00" + TRAD_SHORT).encode("utf-8"), "a.csv")
    assert codec == "utf-8" and text.endswith(TRAD_SHORT)


def test_empty_input() -> None:
    assert decode_bytes(b"", "empty.txt") == ("", "utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_raise_unknown_encoding(data: bytes) -> None:
    try:
        text, codec = decode_bytes(data, "fuzz.txt")
    except UnknownEncoding as err:
        assert "fuzz.txt" in err.message
        return
    assert isinstance(text, str)
    assert codecs.lookup(codec)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SENTENCES),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=10, max_value=400),
    st.sampled_from(["cp950", "gb18030", "utf-16-le", "utf-16-be"]),
)
def test_real_chinese_is_never_garbled(sentence: str, start: int, length: int, codec: str) -> None:
    """Slices of real sentences in any of the encodings: the right text, or a clean refusal; never garbage."""
    text = (sentence * 3)[start : start + length]
    if len(text) < 8:  # a character or two is ambiguous in any detector (Big5 "。" is also Windows-1252 "¡C")
        return
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:  # Simplified characters that Big5 lacks
        return
    try:
        decoded, _ = decode_bytes(data, "zh.txt")
    except UnknownEncoding:
        return
    assert decoded == data.decode(codec)
