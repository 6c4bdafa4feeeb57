"""Decode the bytes of a text file without guessing silently.

Order of evidence, strongest first: a byte-order mark; the NUL pattern of UTF-16/UTF-32; strict UTF-8; then the
legacy encodings our users actually have (Big5/CP950 from Taiwan, GB18030/GBK from mainland China, UTF-16
without a BOM, Windows-1252 from old English files). Big5 and GB18030 both accept many of the same byte strings,
so a legacy candidate only wins when its decoded text reads like Chinese: adjacent characters must form words of
jieba's bundled dictionary (scored on an OpenCC t2s copy, because that dictionary is Simplified). When nothing
reads plausibly we raise :class:`UnknownEncoding` instead of returning garbled text.
"""

from __future__ import annotations

import codecs
import functools
import importlib.util
import re
import unicodedata
from pathlib import Path
from typing import Any

from services.errors import UnknownEncoding

# Scoring a sample is enough to choose an encoding; the whole file is then decoded strictly with it.
_SAMPLE_BYTES = 64 * 1024
# A file is "binary" when more than this share of its characters are control characters.
_MAX_CONTROL_RATIO = 0.01
# Share of decoded characters that may be private-use/unassigned before a candidate is implausible; a little is
# tolerated because real Big5 files carry some user-defined (EUDC) characters.
_MAX_BAD_RATIO = 0.01
# Plausibility thresholds for Chinese text (see _chinese_score for the measurements behind them).
_MIN_BIGRAM_RATE = 0.12
_MIN_PAIRS_FOR_BIGRAMS = 4
_MIN_COMMON_CHAR_RATE = 0.8
_COMMON_FREQUENCY = 50
_MIN_MARGIN = 0.25

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def _failure(name: str, detail: str = "") -> UnknownEncoding:
    extra = f" ({detail})" if detail else ""
    return UnknownEncoding(f"could not determine the text encoding of {name}{extra}; save it as UTF-8 and try again")


def decode_bytes(data: bytes, name: str) -> tuple[str, str]:
    """Return ``(text, encoding)``; raise :class:`UnknownEncoding` when the encoding cannot be determined.

    The encoding is a Python codec name (``utf-8``, ``utf-8-sig``, ``utf-16-le``, ``cp950``, ``gb18030``, …).
    The text is returned as decoded: no newline or Unicode normalisation happens here.
    """
    if not data:
        return "", "utf-8"
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                raise _failure(
                    name, f"it starts with a {_label(encoding)} byte-order mark but is not valid {_label(encoding)}"
                ) from None
            _reject_binary(text, name)
            return text, encoding
    if b"\x00" in data:
        nul_text = _decode_with_nuls(data, name)
        if nul_text is not None:
            return nul_text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        text = _decode_truncated_utf8(data, err)
        if text is None:
            return _decode_legacy(data, name)
    _reject_binary(text, name)
    return text, "utf-8"


def _label(encoding: str) -> str:
    return {"utf-8-sig": "UTF-8", "cp950": "Big5"}.get(encoding, encoding.upper().replace("-LE", "").replace("-BE", ""))


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:_SAMPLE_BYTES]
    controls = sum(1 for ch in sample if (ch < " " or "\x7f" <= ch < "\xa0") and ch not in _ALLOWED_CONTROLS)
    return controls / len(sample)


def _reject_binary(text: str, name: str) -> None:
    if _control_ratio(text) > _MAX_CONTROL_RATIO:
        raise _failure(name, "it contains binary data, so it may not be a text file")


_TRUNCATION_REASONS = ("unexpected end of data", "incomplete multibyte sequence", "truncated data")


def _decode_truncated_utf8(data: bytes, err: UnicodeDecodeError) -> str | None:
    """A UTF-8 file cut inside its last character (an interrupted copy) is still UTF-8: drop the stub."""
    if err.reason in _TRUNCATION_REASONS and len(data) - err.start < 4:
        return data[: err.start].decode("utf-8")
    return None


def _decode_tolerating_cut(data: bytes, encoding: str) -> str:
    """Decode strictly, except that a last character cut in half (a sample, a peek, a cut-off copy) is dropped."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        if err.reason in _TRUNCATION_REASONS and err.end >= len(data) and len(data) - err.start < 4:
            return data[: err.start].decode(encoding)
        raise


def _decode_with_nuls(data: bytes, name: str) -> tuple[str, str] | None:
    """Text with NUL bytes is UTF-16/UTF-32 without a BOM, or binary; None means "neither: read on".

    Latin characters leave a zero byte in every UTF-16 unit, a clear pattern; Chinese text has only a few
    (newlines, 一 U+4E00), so when the pattern is weak the UTF-16 readings must also read like Chinese.
    A stray NUL or two in a UTF-8 file (an export bug) is neither: the caller goes on and the control
    character check decides.
    """
    for encoding in _nul_pattern_encodings(data):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _control_ratio(text) <= _MAX_CONTROL_RATIO and _bad_ratio(text[:_SAMPLE_BYTES]) <= _MAX_BAD_RATIO:
            return text, encoding
    encoding = _choose(data, ["utf-16-le", "utf-16-be"]) if len(data) % 2 == 0 else None
    if encoding is not None:
        return _decode_whole(data, name, encoding)
    if data.count(b"\x00") <= len(data) * _MAX_CONTROL_RATIO:
        return None
    raise _failure(name, "it contains binary data, so it may not be a text file")


def _nul_pattern_encodings(data: bytes) -> list[str]:
    sample = data[:_SAMPLE_BYTES]
    units = len(sample) // 4 * 4
    if units >= 4:
        # UTF-32: three zero bytes in every four for Latin text, at the end (LE) or start (BE).
        le32 = sum(1 for i in range(0, units, 4) if sample[i + 1 : i + 4] == b"\0\0\0")
        be32 = sum(1 for i in range(0, units, 4) if sample[i : i + 3] == b"\0\0\0")
        if len(data) % 4 == 0 and max(le32, be32) >= units // 4 * 0.5:
            return ["utf-32-le" if le32 >= be32 else "utf-32-be"]
    if len(data) % 2:
        return []
    odd = sample[1::2].count(0)
    even = sample[0::2].count(0)
    pairs = len(sample) // 2
    found = []
    if odd >= pairs * 0.1 and even <= odd * 0.1:
        found.append("utf-16-le")
    if even >= pairs * 0.1 and odd <= even * 0.1:
        found.append("utf-16-be")
    return found


def _decode_legacy(data: bytes, name: str) -> tuple[str, str]:
    if _looks_mixed_with_utf8(data):
        raise UnknownEncoding(
            f"{name} mixes text encodings (part of it is UTF-8, part is not, e.g. Big5 or GB18030); "
            "save the whole file as UTF-8 and try again"
        )
    encoding = _choose(data, _legacy_candidates(data))
    if encoding is None:
        if _control_ratio(_sample(data).decode("latin-1")) > _MAX_CONTROL_RATIO:
            raise _failure(name, "it contains binary data, so it may not be a text file")
        raise _failure(name, "it is not UTF-8, and it does not read as Big5, GB18030 or UTF-16 text")
    return _decode_whole(data, name, encoding)


def _choose(data: bytes, candidates: list[str]) -> str | None:
    """The candidate whose decoding of a sample reads most plausibly, or None when none does."""
    sample = _sample(data)
    scored: list[tuple[float, str]] = []
    for encoding in candidates:
        try:
            text = _decode_tolerating_cut(sample, encoding)
        except UnicodeDecodeError:
            continue
        score = _plausibility(text, encoding)
        if score is not None:
            scored.append((score, encoding))
    if not scored:
        return None
    scored.sort(reverse=True)
    # Two Chinese readings that both look fine (only happens for a few characters): refuse rather than guess.
    if len(scored) > 1 and scored[1][0] >= 1.0 and scored[0][0] - scored[1][0] < _MIN_MARGIN:
        return None
    return scored[0][1]


def _decode_whole(data: bytes, name: str, encoding: str) -> tuple[str, str]:
    try:
        text = _decode_tolerating_cut(data, encoding)
    except UnicodeDecodeError as err:
        label = _label(encoding)
        raise _failure(name, f"it looks like {label}, but byte {err.start} is not valid {label}") from None
    _reject_binary(text, name)
    return text, encoding


def _sample(data: bytes) -> bytes:
    """The first 64 KiB, cut back to the last newline so no multi-byte character is split."""
    if len(data) <= _SAMPLE_BYTES:
        return data
    cut = data.rfind(b"\n", 0, _SAMPLE_BYTES)
    if cut <= 0:
        cut = _SAMPLE_BYTES
    return data[: cut + 1] if data[cut : cut + 1] == b"\n" else data[:cut]


def _legacy_candidates(data: bytes) -> list[str]:
    candidates = ["cp950", "gb18030", "cp1252"]
    if len(data) % 2 == 0:
        # UTF-16 without a BOM and without ASCII (so without NULs): all-CJK text.
        candidates += ["utf-16-le", "utf-16-be"]
    return candidates


def _looks_mixed_with_utf8(data: bytes) -> bool:
    """True when whole lines are valid UTF-8 Chinese although the file as a whole is not UTF-8.

    Measured: a Big5 or GB18030 line of 8+ Chinese characters is valid UTF-8 by accident in under 1.5% of cases
    (single characters often are, so bytes are not counted one by one).
    """
    valid = invalid = 0
    for line in data[: _SAMPLE_BYTES * 4].splitlines():
        if sum(1 for b in line if b >= 0x80) < 16:
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            invalid += 1
        else:
            valid += 1
    return valid >= 2 and valid >= (valid + invalid) * 0.2


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x3134F or 0xF900 <= cp <= 0xFAFF


def _bad_ratio(text: str) -> float:
    """Share of characters no real document contains: private use, unassigned, surrogates, replacement."""
    if not text:
        return 0.0
    bad = 0
    for ch in text:
        if ch.isascii():
            continue
        if ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cn", "Cs"):
            bad += 1
    return bad / len(text)


# Scripts a Chinese or English document may contain. Text decoded with a wrong codec lands all over the
# code space (Hangul, Yi, CJK Extension B, symbols), which this rejects.
_EXPECTED_RANGES: tuple[tuple[int, int], ...] = (
    (0x00A0, 0x024F),  # Latin-1 supplement, Latin extended
    (0x0370, 0x045F),  # Greek, Cyrillic (both in GB2312 and Big5)
    (0x2000, 0x27BF),  # punctuation, symbols, arrows, maths, box drawing, enclosed numbers (①)
    (0x2E80, 0x2FDF),  # radicals (some PDFs' text layers)
    (0x3000, 0x30FF),  # CJK punctuation, kana
    (0x3100, 0x312F),  # Bopomofo (zh-TW)
    (0x3200, 0x33FF),  # enclosed CJK, compatibility
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),  # vertical punctuation forms (Big5)
    (0xFF00, 0xFFEF),  # full-width forms
)


def _expected(ch: str) -> bool:
    if ch.isascii():
        return ch >= " " or ch in _ALLOWED_CONTROLS
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _EXPECTED_RANGES)


def _plausibility(text: str, encoding: str) -> float | None:
    """A score for how much ``text`` reads like a real document, or None when it does not at all."""
    if not text or _control_ratio(text) > _MAX_CONTROL_RATIO or _bad_ratio(text) > _MAX_BAD_RATIO:
        return None
    non_ascii = [ch for ch in text if not ch.isascii()]
    if not non_ascii:
        return 0.5
    if sum(1 for ch in non_ascii if _expected(ch)) < len(non_ascii) * 0.97:
        return None
    han_count = sum(1 for ch in non_ascii if _is_han(ch))
    if encoding == "cp1252":
        # Western text: accented letters and typographic punctuation, never letters of a CJK codec.
        return 0.3 if not han_count and _latin_plausible(text) else None
    if han_count < len(non_ascii) * 0.3:
        return None
    simplified = _to_simplified(text)
    whole = _chinese_score(simplified)
    if whole is None:
        return None
    # Judge windows too, so that a file whose second half is in another encoding cannot hide behind its first.
    for start in range(_WINDOW, len(simplified), _WINDOW):
        if _chinese_score(simplified[start : start + _WINDOW], min_han=_WINDOW // 10) is None:
            return None
    return whole


_WINDOW = 500


def _chinese_score(simplified: str, min_han: int = 1) -> float | None:
    """How much a (t2s-converted) text reads like Chinese: common characters that pair into dictionary words.

    Measured on DRCD (zh-TW) and THUCNews (zh-CN) passages: in 200-character samples of real text at least 93%
    of the Han characters are common (jieba frequency >= 50) and >= 26% of adjacent pairs are words; decoded
    with the wrong one of Big5/GB18030 the same bytes give <= 79% common characters and <= 6% words.
    """
    bigrams, unigrams = _dictionary()
    han = [ch for ch in simplified if _is_han(ch)]
    if len(han) < min_han:
        return 0.0 if min_han > 1 else None
    pairs = hits = 0
    for a, b in zip(simplified, simplified[1:], strict=False):
        if _is_han(a) and _is_han(b):
            pairs += 1
            hits += (a + b) in bigrams
    common = sum(1 for ch in han if unigrams.get(ch, 0) >= _COMMON_FREQUENCY) / len(han)
    rate = hits / pairs if pairs else 0.0
    if common < _MIN_COMMON_CHAR_RATE:
        return None
    # Lists of names or codes form few dictionary words; accept them only with very common characters.
    words_ok = pairs < _MIN_PAIRS_FOR_BIGRAMS or rate >= _MIN_BIGRAM_RATE or (len(han) >= 50 and common >= 0.95)
    if not words_ok:
        return None
    return 1.0 + rate + common


_LATIN_NEIGHBOUR = re.compile(r"[A-Za-z0-9\s.,;:!?()'\"-]")


def _latin_plausible(text: str) -> bool:
    """Windows-1252 text: its non-ASCII characters sit among Latin letters and are letters or punctuation."""
    non_ascii = [(i, ch) for i, ch in enumerate(text) if not ch.isascii()]
    ok = 0
    for i, ch in non_ascii:
        category = unicodedata.category(ch)
        if category[0] not in "LPSZ" or (category == "So" and ch not in "©®°™"):
            continue
        neighbours = text[max(0, i - 1) : i] + text[i + 1 : i + 2]
        if any(_LATIN_NEIGHBOUR.match(n) for n in neighbours) or not neighbours:
            ok += 1
    return ok >= len(non_ascii) * 0.9


def _to_simplified(text: str) -> str:
    converter = _t2s()
    if converter is None:
        return text
    return converter.convert(text)


@functools.cache
def _t2s() -> Any:  # opencc has no type stubs
    try:
        import opencc
    except ImportError:  # scoring still works on Simplified text, and Traditional scores lower but passes
        return None
    return opencc.OpenCC("t2s")


@functools.cache
def _dictionary() -> tuple[frozenset[str], dict[str, int]]:
    """Two-character words and single-character frequencies from jieba's bundled dict.txt (Simplified).

    Read with two regular expressions over the whole file (~0.1 s) rather than line by line (~0.7 s): this runs
    in the parser process for every non-UTF-8 file. Without jieba every legacy-encoded file is refused (nothing
    can be judged plausible), so it is a dependency of ingestion.
    """
    # find_spec locates jieba without importing it (its import alone costs ~80 ms).
    spec = importlib.util.find_spec("jieba")
    if spec is None or spec.origin is None:
        return frozenset(), {}
    try:
        data = (Path(spec.origin).parent / "dict.txt").read_text(encoding="utf-8")
    except OSError:
        return frozenset(), {}
    bigrams = frozenset(re.findall(r"^(\S\S) ", data, re.M))
    unigrams = {w: int(n) for w, n in re.findall(r"^(\S) (\d+)", data, re.M)}
    return bigrams, unigrams
