"""Which display tokens may become topic keywords.

Numbers say nothing about what a topic is about, yet in legal texts, reports and news they are frequent
enough to top c-TF-IDF lists: "十一", "十二" (article numbers of a regulation), "第三條", "2010", "３".
They are left out in every script: Arabic and full-width digits, Chinese numerals (一二三…十百千萬,
〇, 兩/两, 廿, 卅), Roman numerals, decimals and thousands separators, and ordinals or numbered units
built from them (第三, 第三條, 十一條, 第5章, 3rd).
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_KEYWORD_CHARS = 30

# Characters Python does not count as numeric but that spell numbers in Chinese text.
_EXTRA_NUMERALS = "两兩几幾"
_NUMBER_PUNCT = ".,，．、%％+-−/:："
# Counters and units that only number things: 第三條, 十一章, 5節, 3rd.
_ORDINAL_SUFFIXES = "條条款項项章節节編编篇卷冊册頁页次屆届期號号回版輯辑集部樓楼層层段目則则點点名位個个"
_ENGLISH_ORDINAL = re.compile(r"^\d+(st|nd|rd|th|s)$", re.IGNORECASE)


def _numeral_char(ch: str) -> bool:
    return ch.isnumeric() or ch in _EXTRA_NUMERALS


def is_numeral(word: str) -> bool:
    """True for a number or ordinal in any script: "2010", "３.５", "十一", "第三條", "十二條", "3rd"."""
    core = word.strip()
    if not core:
        return False
    if _ENGLISH_ORDINAL.match(core):
        return True
    if core[0] == "第":
        core = core[1:]
    if len(core) > 1 and core[-1] in _ORDINAL_SUFFIXES:
        core = core[:-1]
    if not core or not any(_numeral_char(ch) for ch in core):
        return False
    return all(_numeral_char(ch) or ch in _NUMBER_PUNCT for ch in core)


def _single_han(word: str) -> bool:
    return len(word) == 1 and ("\u3400" <= word <= "\u9fff" or "\uf900" <= word <= "\ufaff")


@lru_cache(maxsize=200_000)  # a pure test on a word, asked once per token: words repeat across passages
def is_keyword(word: str) -> bool:
    """Display tokens that make useful topic keywords: not numbers or ordinals (see the module notes),
    not single Han characters (年, 说, 将 are mostly function-like and crowd out real words), not very
    long tokens (URLs or garbage)."""
    if not word or len(word) > MAX_KEYWORD_CHARS or _single_han(word):
        return False
    return not is_numeral(word)


def not_traditional(words: list[str]) -> list[str]:
    """The words that are not written in Traditional script: those OpenCC ``s2tw`` (characters and
    phrases, Taiwan standard, without s2twp's vocabulary changes) would rewrite, e.g. "经济", "软件".
    Shared characters (中文) and English pass; phrase-aware conversion keeps 皇后 (not 皇後)."""
    from services.text_zh import _converter

    conv = _converter("s2tw.json")
    return [w for w in dict.fromkeys(words) if w and conv.convert(w) != w]


def passage_words(text: str) -> list[str]:
    """The words of a passage that may become topic keywords: its display tokens (Chinese in the text's own
    script, English lower-cased) less numerals and over-long tokens. Read once per passage at ingest and
    stored, because segmenting Chinese is the slowest step of a topic build."""
    from services.text_zh import display_tokens

    return [w for w in display_tokens(text or "") if is_keyword(w) and not any(c.isspace() for c in w)]
