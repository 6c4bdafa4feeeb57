"""Clean extracted text: the Unicode folding that is safe for Chinese and English, plus control characters.

PDF text layers often carry Kangxi/CJK radicals (U+2F00 ⽤) or CJK compatibility ideographs in place of the
ordinary characters (用): they look identical but never match a search. NFKC folds them, but NFKC over a whole
text would also turn full-width punctuation (，。！？；) into ASCII, which changes how Chinese is split into
sentences; so we fold per character and only in the ranges where that is safe. When the shared
``services.text_zh.normalize_text`` exists we call it as well, so ingestion and queries normalise alike.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from collections.abc import Callable

# CJK Radicals Supplement (U+2E80–U+2EF3): NFKC folds only two of these, yet PDFs use the ones that stand for
# whole characters (⻅ for 见). The table maps each to the character it is drawn as; pure component forms that
# are not characters on their own (⺀, ⺈, …) are left alone.
_RADICALS_SUPPLEMENT = {
    0x2E81: "厂", 0x2E82: "乛", 0x2E83: "乚", 0x2E85: "亻", 0x2E86: "冂", 0x2E87: "几", 0x2E89: "刂",
    0x2E8A: "卜", 0x2E8B: "㔾", 0x2E8C: "小", 0x2E8D: "小", 0x2E8E: "兀", 0x2E8F: "尣", 0x2E90: "尢",
    0x2E92: "巳", 0x2E93: "幺", 0x2E94: "彑", 0x2E96: "忄", 0x2E97: "心", 0x2E98: "扌", 0x2E99: "攵",
    0x2E9B: "旡", 0x2E9C: "日", 0x2E9D: "月", 0x2E9E: "歺", 0x2E9F: "母", 0x2EA0: "民", 0x2EA1: "氵",
    0x2EA2: "氺", 0x2EA3: "灬", 0x2EA4: "爫", 0x2EA6: "丬", 0x2EA7: "牛", 0x2EA8: "犭", 0x2EA9: "王",
    0x2EAA: "疋", 0x2EAB: "罒", 0x2EAC: "示", 0x2EAD: "礻", 0x2EAE: "竹", 0x2EAF: "糸", 0x2EB0: "纟",
    0x2EB2: "罒", 0x2EB6: "羊", 0x2EB7: "羊", 0x2EB8: "羊", 0x2EB9: "耂", 0x2EBA: "肀", 0x2EBB: "聿",
    0x2EBC: "月", 0x2EBD: "臼", 0x2EBE: "艹", 0x2EBF: "艹", 0x2EC0: "艹", 0x2EC1: "虎", 0x2EC2: "衤",
    0x2EC3: "襾", 0x2EC4: "西", 0x2EC5: "见", 0x2EC6: "角", 0x2EC8: "讠", 0x2EC9: "贝", 0x2ECB: "车",
    0x2ECC: "辶", 0x2ECD: "辶", 0x2ECE: "辶", 0x2ECF: "阝", 0x2ED0: "钅", 0x2ED1: "長", 0x2ED2: "镸",
    0x2ED3: "长", 0x2ED4: "门", 0x2ED6: "阝", 0x2ED7: "雨", 0x2ED8: "青", 0x2ED9: "韦", 0x2EDA: "页",
    0x2EDB: "风", 0x2EDC: "飞", 0x2EDD: "食", 0x2EDF: "飠", 0x2EE0: "饣", 0x2EE2: "马", 0x2EE3: "骨",
    0x2EE4: "鬼", 0x2EE5: "鱼", 0x2EE6: "鸟", 0x2EE7: "卤", 0x2EE8: "麦", 0x2EE9: "黄", 0x2EEA: "黾",
    0x2EEB: "斉", 0x2EEC: "齐", 0x2EED: "歯", 0x2EEE: "齿", 0x2EEF: "竜", 0x2EF0: "龙", 0x2EF1: "龜",
    0x2EF2: "亀", 0x2EF3: "龟",
}  # fmt: skip


def _nfkc_table() -> dict[int, str]:
    table: dict[int, str] = {}
    # Kangxi radicals and CJK compatibility ideographs: NFKC gives the unified ideograph.
    # Latin ligatures (ﬁ, ﬂ) from PDF text layers, and full-width letters and digits (Ａ１): NFKC gives ASCII.
    ranges = [(0x2F00, 0x2FD5), (0xF900, 0xFAFF), (0x2F800, 0x2FA1D), (0xFB00, 0xFB06), (0xFF10, 0xFF19)]
    ranges += [(0xFF21, 0xFF3A), (0xFF41, 0xFF5A)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            folded = unicodedata.normalize("NFKC", chr(cp))
            if folded != chr(cp):
                table[cp] = folded
    table.update({cp: ch for cp, ch in _RADICALS_SUPPLEMENT.items()})
    # Control characters carry no text; NUL and friends break later steps (SQLite FTS, JSON, display).
    for cp in [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)]:
        table[cp] = ""
    for cp in (0x0C, 0x0D, 0x85, 0x2028, 0x2029):  # form feed (a page break), lone CR, Unicode line breaks
        table[cp] = "\n"
    for cp in range(0xD800, 0xE000):  # a lone surrogate is never text, and cannot be stored as UTF-8
        table[cp] = ""
    table[0x00A0] = " "  # no-break space
    table[0x3000] = " "  # ideographic space (U+3000) between words is a space; it is never punctuation
    table[0xFEFF] = ""  # a stray byte-order mark or zero-width no-break space
    table[0x00AD] = ""  # soft hyphen: invisible, but splits words for search
    return table


_TABLE = _nfkc_table()


def fold_text(text: str) -> str:
    """The ingest-local normalisation: safe per-character NFKC, control characters, newlines.

    ``str.translate`` has a fast path for ASCII (50 MB in ~0.05 s) and does ~20 M CJK characters a second,
    which is faster than any regular expression over the same text.
    """
    return text.replace("\r\n", "\n").translate(_TABLE)


@functools.cache
def _shared_normalizer() -> Callable[[str], str] | None:
    """``services.text_zh.normalize_text`` when that module exists (it is written in parallel with this one)."""
    if importlib.util.find_spec("services.text_zh") is None:
        return None
    try:
        from services import text_zh
    except ImportError:
        return None
    normalize = getattr(text_zh, "normalize_text", None)
    return normalize if callable(normalize) else None


def normalize(text: str) -> str:
    """Normalise text extracted from any format (the same function for every parser)."""
    text = fold_text(text)
    shared = _shared_normalizer()
    return shared(text) if shared is not None else text
