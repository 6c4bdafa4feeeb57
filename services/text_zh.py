"""Chinese / English text utilities: normalisation, script detection, segmentation, keyword tokens.

jieba's dictionary is Simplified, so Traditional text is segmented through a length-preserving OpenCC t2s
copy and the words are mapped back by offset: 高速鐵路 / 颱風 / 臺北市 come out whole and keep their
original characters. Keyword tokens (BM25, c-TF-IDF) are folded to Simplified so a query in one script
matches documents in the other; display tokens keep the document's own script for people to read.

Everything heavy (OpenCC converters, the jieba dictionary, the stemmer, sklearn's stop words) is created
lazily, once per process, under a lock: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "CHINESE_STOP_WORDS",
    "detect_script",
    "detect_scripts",
    "display_analyzer",
    "display_tokens",
    "is_han",
    "keyword_analyzer",
    "keyword_tokens",
    "normalize_text",
    "segment",
    "to_simplified",
    "to_traditional_tw",
]

# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

# Full-width punctuation that Chinese text (and our sentence splitter) relies on. Plain NFKC would turn
# ！？；，：（） into ASCII, which changes how sentences split and how the text reads: keep them.
_KEEP_FULLWIDTH = frozenset("！？；，：（）")

# Characters NFKC may rewrite here: CJK radicals supplement + Kangxi radicals (PDFs from some tools emit
# ⼀⼆⾦ instead of 一二金), compatibility ideographs, ideographic space, Latin ligatures (ﬁ in PDFs),
# full-width / half-width forms. Everything else is only NFC-normalised: blind NFKC would also rewrite
# superscripts in formulae, circled numbers, ellipses "…" and the like.
_COMPAT_RE = re.compile("[\u2e80-\u2fdf\u3000\uf900-\ufaff\ufb00-\ufb06\uff01-\uffef\U0002f800-\U0002fa1f]")
# Line separators → \n; other C0/C1 controls (except \t \n) removed; BOM, zero-width space and soft
# hyphen removed (PDF extraction leaves them inside words, where they break search).
_NEWLINES_RE = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_DROP_RE = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\ufeff]")


def _compat_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _KEEP_FULLWIDTH:
        return ch
    mapped = unicodedata.normalize("NFKC", ch)
    return mapped if mapped else ch


def normalize_text(text: str) -> str:
    """Normalise extracted text for storage and chunking (length may change).

    NFC everywhere; NFKC only for radicals, compatibility ideographs, ligatures and full-width ASCII
    letters/digits/symbols, while keeping the CJK punctuation chunking relies on (。！？；，、「」 etc.).
    Line endings become ``\\n``; control characters other than ``\\n`` and ``\\t`` are removed.
    """
    if not text:
        return ""
    text = _NEWLINES_RE.sub("\n", text)
    text = _DROP_RE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _COMPAT_RE.sub(_compat_char, text)
    # A replaced character can compose with a following combining mark (Ａ + U+0301 → Á): NFC again so
    # normalising twice changes nothing.
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _build_fold_table() -> dict[int, str]:
    """A one-to-one character fold (same length) applied to the copy jieba sees, so offsets still map
    back to the original: full-width ASCII → ASCII, ideographic space → space, radicals and
    compatibility ideographs → unified ideographs."""
    table: dict[int, str] = {}
    ranges = [(0x2E80, 0x2FDF), (0x3000, 0x3000), (0xF900, 0xFAFF), (0xFF01, 0xFF5E)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            mapped = unicodedata.normalize("NFKC", chr(cp))
            if len(mapped) == 1 and mapped != chr(cp):
                table[cp] = mapped
    return table


_FOLD_TABLE = _build_fold_table()

# --------------------------------------------------------------------------------------------------
# Character classes
# --------------------------------------------------------------------------------------------------

# Han ideographs: CJK unified (extension A, the main block, extensions B-H), compatibility ideographs.
_HAN_RANGES = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2EBEF),
    (0x30000, 0x3134F),
    (0x2F800, 0x2FA1F),
)
_LATIN_RANGES = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))  # A-Z, a-z, Latin-1 and Extended-A/B letters
_HAN_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _HAN_RANGES)
_HAN_RE = re.compile(f"[{_HAN_CLASS}]")


def is_han(ch: str) -> bool:
    """True for one Han ideograph (CJK unified, extensions, compatibility)."""
    return bool(_HAN_RE.fullmatch(ch))


# --------------------------------------------------------------------------------------------------
# OpenCC
# --------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_converters: dict[str, Any] = {}


def _converter(config: str) -> Any:
    """One OpenCC converter per config per process (loading one reads its dictionaries: ~10 ms)."""
    conv = _converters.get(config)
    if conv is None:
        with _lock:
            conv = _converters.get(config)
            if conv is None:
                import opencc

                conv = opencc.OpenCC(config)
                _converters[config] = conv
    return conv


def _convert_same_length(text: str, config: str) -> str:
    conv = _converter(config)
    out: str = conv.convert(text)
    if len(out) == len(text):
        return out
    # Some phrase conversions change length; offsets must survive, so fall back to one character at a
    # time and keep any character whose conversion is not exactly one character.
    chars = []
    for ch in text:
        c = conv.convert(ch)
        chars.append(c if len(c) == 1 else ch)
    return "".join(chars)


def to_simplified(text: str) -> str:
    """OpenCC t2s, guaranteed to keep the length (so offsets into ``text`` stay valid)."""
    if not text:
        return ""
    return _convert_same_length(text, "t2s.json")


def to_traditional_tw(text: str) -> str:
    """OpenCC s2twp: Simplified → Traditional with Taiwan phrasing (软件 → 軟體); length may change."""
    if not text:
        return ""
    return str(_converter("s2twp.json").convert(text))


# --------------------------------------------------------------------------------------------------
# Script detection
# --------------------------------------------------------------------------------------------------


def detect_script(text: str) -> str:
    """Return "zh-Hant", "zh-Hans", "en", "mixed" or "unknown".

    Han share = Han characters / (Han + Latin letters). Chinese when it is at least 0.6, English when at
    most 0.05 (a name in Chinese inside an English text), "mixed" in between, "unknown" without letters.
    Traditional vs Simplified: how many Han characters t2s changes (Traditional-only characters) versus
    how many s2tw changes (Simplified-only ones); text using only shared characters (中文, 人口) cannot be
    told apart and is reported as "zh-Hant", the app's first language.
    """
    return detect_scripts([text])[0]


_SCRIPT_SAMPLE_CHARS = 20000  # plenty to decide; keeps detection cheap on whole books

# Character classes of script detection, one byte per code point up to the last Han extension.
_OTHER, _LATIN, _HAN_SHARED, _TRAD_ONLY, _SIMP_ONLY = range(5)
_script_classes: Any = None


def _character_classes() -> Any:
    """The class of every code point (numpy uint8, indexed by code point): Latin letter, Han used by
    both scripts, Han only Traditional uses (OpenCC t2s changes it), Han only Simplified uses (s2tw
    changes it), or other. Built once per process from OpenCC's character tables (~0.2 s)."""
    global _script_classes
    if _script_classes is None:
        import numpy as np

        converters = {config: _converter(config) for config in ("s2tw.json", "t2s.json")}  # takes _lock
        with _lock:
            if _script_classes is None:
                table = np.zeros(max(hi for _lo, hi in _HAN_RANGES) + 2, dtype=np.uint8)
                for lo, hi in _LATIN_RANGES:
                    table[lo : hi + 1] = _LATIN
                han = np.concatenate([np.arange(lo, hi + 1, dtype=np.uint32) for lo, hi in _HAN_RANGES])
                table[han] = _HAN_SHARED
                table[han[_changed_alone(han, converters["s2tw.json"])]] = _SIMP_ONLY
                table[han[_changed_alone(han, converters["t2s.json"])]] = _TRAD_ONLY
                _script_classes = table
    return _script_classes


def _changed_alone(code_points: Any, converter: Any) -> Any:
    """Which of these characters the OpenCC ``converter`` changes when each is converted on its own
    (one per line: no phrase spans two)."""
    import numpy as np

    chars = [chr(c) for c in code_points.tolist()]
    converted = converter.convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # a character became a line break: convert one at a time
        converted = [converter.convert(c) for c in chars]
    return np.array([new != old for new, old in zip(converted, chars, strict=True)])


def detect_scripts(texts: Sequence[str], sample_chars: int = _SCRIPT_SAMPLE_CHARS) -> list[str]:
    """:func:`detect_script` of each text (of its first ``sample_chars`` characters), counted for all
    texts at once with a per-code-point class table (20,000 passages: ~0.03 s; OpenCC per text: ~7 s)."""
    import numpy as np

    if not texts:
        return []
    samples = [(t or "")[:sample_chars] for t in texts]
    table = _character_classes()
    points = _code_points("".join(samples))
    classes = table[np.minimum(points, len(table) - 1)]  # the table's last entry is "other"
    owner = np.repeat(np.arange(len(samples)), [len(s) for s in samples])
    counts = np.bincount(owner * 5 + classes, minlength=len(samples) * 5).reshape(len(samples), 5)
    out: list[str] = []
    for n_latin, n_shared, n_trad_only, n_simp_only in counts[:, 1:].tolist():
        n_han = n_shared + n_trad_only + n_simp_only
        if not n_han and not n_latin:
            out.append("unknown")
            continue
        share = n_han / (n_han + n_latin)
        if share <= 0.05:
            out.append("en")
        elif share < 0.6:
            out.append("mixed")
        else:
            out.append("zh-Hans" if n_simp_only > n_trad_only else "zh-Hant")
    return out


def _code_points(text: str) -> Any:
    import numpy as np

    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------

_tokenizer: Any = None


def _jieba() -> Any:
    """The jieba Tokenizer, initialised once (≈0.7 s from its cache in the temp dir, ≈1.5 s cold)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                # jieba logs "Building prefix dict..." at DEBUG/INFO on every initialisation.
                jieba.setLogLevel(logging.WARNING)
                logging.getLogger("jieba").setLevel(logging.WARNING)
                tk = jieba.Tokenizer()
                tk.initialize()  # dictionary is inside the package; cache file goes to tempfile's dir
                _tokenizer = tk
    return _tokenizer


def _segmentation_copy(text: str) -> str:
    """Same length as ``text``: full-width folded, then t2s (jieba's dictionary is Simplified)."""
    return to_simplified(text.translate(_FOLD_TABLE))


def _tokens(copy: str, search: bool, hmm: bool) -> Iterator[tuple[int, int]]:
    mode = "search" if search else "default"
    for _word, start, end in _jieba().tokenize(copy, mode=mode, HMM=hmm):
        yield start, end


def segment(text: str) -> list[tuple[str, int, int]]:
    """Words as ``(word, start, end)`` with ``word == text[start:end]`` (original script kept).

    Whitespace is dropped; punctuation comes back as its own tokens (callers filter what they need).
    """
    if not text:
        return []
    copy = _segmentation_copy(text)
    out = []
    for start, end in _tokens(copy, search=False, hmm=True):
        word = text[start:end]
        if not word.isspace():
            out.append((word, start, end))
    return out


# --------------------------------------------------------------------------------------------------
# Keyword tokens
# --------------------------------------------------------------------------------------------------

# Function words, pronouns, question words and very common verbs/adverbs, in Simplified form (tokens
# are compared after t2s). Question words matter for search: DRCD/CMRC questions are full of them and
# passages are not.
CHINESE_STOP_WORDS: frozenset[str] = frozenset(
    """
    的 地 得 了 着 过 是 在 和 也 就 都 而 及 与 或 之 等 这 那 其 与其 以及 或者 还是 并且 而且
    把 被 让 给 对 从 向 于 以 为 由 因 所 将 把 跟 同 替 比 至 自 到 往 按 照 据 依 经 经过 通过 关于 对于
    我 你 您 他 她 它 我们 你们 他们 她们 它们 咱们 自己 人家 大家 彼此
    这个 那个 这些 那些 这里 那里 这样 那样 这么 那么 这种 那种 此 该 本 每 各 某 另 另外 其他 其它 其中
    吗 呢 吧 啊 呀 哦 嗯 哈 啦 嘛 么 罢了 而已 似的
    什么 怎么 怎样 怎么样 如何 为何 为什么 哪 哪里 哪儿 哪个 哪些 哪一 谁 多少 几 何 何时 何地 何种 啥
    是否 是不是 有没有 能否 可否
    个 位 种 些 点 次
    不 没 没有 无 非 未 别 勿 莫
    很 更 最 太 极 挺 非常 十分 比较 相当 越 越来越 都 总 总是 常 常常 经常 往往 一直 一向
    又 再 还 也 仍 仍然 依然 才 刚 刚刚 已 已经 曾 曾经 正 正在 将要 就要 便 即 即将 则 乃 却 倒 竟
    要 会 能 能够 可以 可 应 应该 应当 须 必须 得以 愿意 想
    有 具有 拥有 属于 成为 作为 进行 加以 予以 使 使得 令
    但 但是 可是 然而 不过 只是 而是 虽然 虽 尽管 如果 假如 若 要是 即使 哪怕 因为 由于 所以 因此
    因而 于是 然后 接着 此外 并 且 况且 甚至 以便 以免 为了 除了 除 只要 只有 无论 不论 不管 否则
    之后 之前 以后 以前 以来 之间 之中 之内 之外 之上 之下 当中 时 时候 的时候 当 当时
    一 一个 一些 一种 一样 一般 一切 一起 就是 就是说 也是 还有 等等 等到 例如 比如 诸如 像
    上 下 中 里 内 外 前 后
    """.split()
)

_ASCII_WORD_RE = re.compile(r"[0-9A-Za-z\u00c0-\u024f]")
_NUMBER_RE = re.compile(r"^[0-9]+(?:[.,:/\-][0-9]+)*%?$")


# sklearn's ENGLISH_STOP_WORDS (318 words), copied so that tokenising never imports sklearn (1-4 s).
_ENGLISH_STOP_WORDS = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
    are around as at back be became because become becomes becoming been before beforehand behind being
    below beside besides between beyond bill both bottom but by call can cannot cant co con could
    couldnt cry de describe detail do done down due during each eg eight either eleven else elsewhere
    empty enough etc even ever every everyone everything everywhere except few fifteen fifty fill find
    fire first five for former formerly forty found four from front full further get give go had has
    hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself his how
    however hundred i ie if in inc indeed interest into is it its itself keep last latter latterly least
    less ltd made many may me meanwhile might mill mine more moreover most mostly move much must my
    myself name namely neither never nevertheless next nine no nobody none noone nor not nothing now
    nowhere of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she should
    show side since sincere six sixty so some somehow someone something sometime sometimes somewhere
    still such system take ten than that the their them themselves then thence there thereafter thereby
    therefore therein thereupon these they thick thin third this those though three through throughout
    thru thus to together too top toward towards twelve twenty two un under until up upon us very via
    was we well were what whatever when whence whenever where whereafter whereas whereby wherein
    whereupon wherever whether which while whither who whoever whole whom whose why will with within
    without would yet you your yours yourself yourselves
    """.split()
)


def _english_stop_words() -> frozenset[str]:
    return _ENGLISH_STOP_WORDS


# A snowball stemmer keeps the word being stemmed in its own fields: one shared instance garbles words (or
# raises IndexError) when two sessions stem at once. One stemmer per thread instead.
_stemmers = threading.local()


def _stem(word: str) -> str:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import snowballstemmer

        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


def _classify(word: str) -> str:
    """ "han" (contains a Han character), "latin" (letters/digits), or "" (punctuation, symbols)."""
    if _HAN_RE.search(word):
        return "han"
    if _ASCII_WORD_RE.search(word) or any(c.isalnum() for c in word):
        return "latin"
    return ""


def _iter_terms(text: str, search: bool) -> Iterator[tuple[str, str, str]]:
    """Yield ``(kind, simplified_or_lower, original)`` for every content word of ``text``.

    ``search=True`` (keyword tokens): jieba's search mode (高速铁路 also yields 高速, 铁路, so a query for
    铁路 finds it) without the HMM (dictionary words only: the same string always splits the same way
    in queries and documents). ``search=False`` (display tokens): default mode with the HMM, which
    joins unseen names into one word. Measured with BM25 (k1 1.2, b 0.75) on DRCD dev, CMRC 2018 dev
    and SQuAD dev: dropping single Han characters costs 2-3 points of hit@1, removing stop words gains
    ~0.5, stemming English gains 2.
    """
    if not text:
        return
    # Compare in a fully compatibility-folded form: keyword tokens need no offsets, so plain NFKC is
    # fine here (full-width ＡＢＣ typed in a query must match ABC in a document).
    text = unicodedata.normalize("NFKC", text)
    copy = to_simplified(text)
    stop_en = _english_stop_words()
    for start, end in _tokens(copy, search=search, hmm=not search):
        simp = copy[start:end]
        kind = _classify(simp)
        if kind == "han":
            if simp in CHINESE_STOP_WORDS:
                continue
            yield kind, simp, text[start:end]
        elif kind == "latin":
            low = simp.lower()
            if _NUMBER_RE.match(low) or low in stop_en:
                continue
            if len(low) == 1 and low.isascii():
                continue  # the "s" of "world's", stray initials: noise for BM25 and topic words
            yield kind, low, low


def keyword_tokens(text: str) -> list[str]:
    """Tokens for BM25 / c-TF-IDF: Chinese words in Simplified form, English lower-cased and stemmed,
    stop words, punctuation and pure numbers removed."""
    out = []
    for kind, term, _orig in _iter_terms(text, search=True):
        out.append(_stem(term) if kind == "latin" and term.isascii() else term)
    return out


def display_tokens(text: str) -> list[str]:
    """Like :func:`keyword_tokens` but for showing words to people: Chinese words in the text's own
    script (Traditional documents get Traditional keywords), English lower-cased and not stemmed."""
    return [orig for _kind, _term, orig in _iter_terms(text, search=False)]


def keyword_analyzer(doc: str) -> list[str]:
    """``CountVectorizer(analyzer=keyword_analyzer)``: a module-level function, so it can be referenced
    by name (no lambdas in fitted models)."""
    return keyword_tokens(doc)


def display_analyzer(doc: str) -> list[str]:
    """``CountVectorizer(analyzer=display_analyzer)`` for topic keywords shown to users."""
    return display_tokens(doc)
