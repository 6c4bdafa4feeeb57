"""Numbers and ordinals never become topic keywords, in any script."""

from __future__ import annotations

import pytest

from services.topic_keywords import is_keyword, is_numeral
from services.topics_ctfidf import read_words


@pytest.mark.parametrize(
    "word",
    [
        "十一",
        "十二",
        "二十三",
        "第三條",
        "第三条",
        "十二條",
        "第5章",
        "第一",
        "兩",
        "两",
        "〇",
        "2010",
        "２０１０",
        "3.5",
        "1,000",
        "50%",
        "3rd",
        "12th",
        "Ⅲ",
        "١٢",
    ],
)
def test_numbers_and_ordinals_are_not_keywords(word: str) -> None:
    assert is_numeral(word)
    assert not is_keyword(word)


@pytest.mark.parametrize(
    "word", ["十分", "一些", "百年", "第三世界", "條約", "iPhone4", "中華民國", "climate", "G20峰會"]
)
def test_words_containing_numerals_stay(word: str) -> None:
    assert not is_numeral(word)
    assert is_keyword(word)


def test_single_han_characters_and_long_tokens_are_not_keywords() -> None:
    assert not is_keyword("年")
    assert not is_keyword("x" * 31)
    assert is_keyword("颱風")


def test_tokenize_drops_article_numbers_from_a_regulation() -> None:
    text = "第十一條 颱風警報發布後，氣象局應通報。第十二條 十一 十二 2024 年度預算"
    (words,) = read_words([text], None, 0.0, 1.0)
    assert "颱風" in words and "氣象局" in words
    assert not [w for w in words if is_numeral(w)], words
