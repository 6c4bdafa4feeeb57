"""Script-aware chunking: sentences → chunks of at most ``max_tokens`` tokens, offsets kept.

Chinese sentences end at 。！？； (closing quotes and brackets stay with them); English ones at . ! ?
followed by whitespace, with the usual abbreviations ("e.g.", "Dr.", "U.S.") and decimals ("3.14") left
alone. Blank lines always end a sentence. Every chunk is ``page_text[start:end]`` with surrounding
whitespace stripped, so a citation can point at the exact characters.

Token counting is the expensive part (the embedder's tokenizer), so each sentence is counted once and
chunks are packed on the sum; the packed chunk is then counted for real once and shrunk if the sum was
optimistic. A chunk never exceeds ``max_tokens`` by the real counter (unless one single character does).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from services.models import ChunkSpan, ParsedPage

__all__ = ["DEFAULT_MAX_SENTENCE_CHARS", "chunk_page", "chunk_pages", "split_sentences"]

TokenCounter = Callable[[str], int]

# A "sentence" longer than this (tables, lists, text without punctuation) is cut at softer points.
DEFAULT_MAX_SENTENCE_CHARS = 800

# Blank line (two line breaks with only spaces/tabs between) plus whatever whitespace follows it.
_HARD_BREAK_RE = re.compile(r"\n[^\S\n]*\n\s*")

_CLOSERS = "」』）\"”’'》〉】〕)］]"
# Chinese sentence ends, also ASCII ! ? ; directly after a Han character (mixed-width typing).
_CJK_END_RE = re.compile(rf"(?:[。！？；｡]+|(?<=[\u3400-\u9fff\uf900-\ufaff])[!?;]+)[{re.escape(_CLOSERS)}]*")
# English sentence ends: terminators (and closers) followed by whitespace or the end of the block.
_EN_END_RE = re.compile(rf"[.!?]+[{re.escape(_CLOSERS)}]*(?=\s|$)")

# Words followed by "." that do not end a sentence.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx inc ltd co corp dept univ gov gen col
    lt sgt capt rev hon jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    """.split()
)
# Abbreviations only when a number follows ("Fig. 3", "No. 5"); "I said no." still ends a sentence.
_NUMBERED_ABBREVIATIONS = frozenset("no nos fig figs eq eqs p pp vol ch sec art tab ref refs".split())
_INITIALS_RE = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")

# Soft break points for over-long pieces, best first: after a line break, after clause punctuation,
# after whitespace.
_SOFT_BREAKS = (
    re.compile(r"\n"),
    re.compile(r"[，、：；]|[,;:](?=\s)"),
    re.compile(r"\s+"),
)


# --------------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------------


def _is_english_end(text: str, match: re.Match[str], block_end: int) -> bool:
    """Decide whether an English terminator candidate really ends a sentence."""
    term = match.group(0).rstrip(_CLOSERS)
    pos = match.start()  # index of the first terminator character
    nxt = pos + len(match.group(0))
    while nxt < block_end and text[nxt].isspace():
        nxt += 1
    following = text[nxt] if nxt < block_end else ""
    if following.islower():
        return False  # "approx. five", "Yahoo! is": sentences start with a capital (or CJK, digit)
    if term != ".":
        return True  # "!", "?", "...", "?!": end unless a lower-case word follows (checked above)
    ws = pos
    while ws > 0 and not text[ws - 1].isspace():
        ws -= 1
    word = text[ws:pos].lstrip("\"'“‘([（「『").lower()
    if not word:
        return True
    if word in _ABBREVIATIONS or _INITIALS_RE.fullmatch(word):
        return False  # "Dr.", "e.g.", "U.S.", "J. Smith"
    if word in _NUMBERED_ABBREVIATIONS and following.isdigit():
        return False
    return True


def _sentence_ends(text: str, start: int, end: int) -> list[int]:
    """Positions (exclusive) where sentences end inside the block ``text[start:end]``."""
    ends = [m.end() for m in _CJK_END_RE.finditer(text, start, end)]
    for m in _EN_END_RE.finditer(text, start, end):
        if _is_english_end(text, m, end):
            ends.append(m.end())
    ends.sort()
    return ends


def _best_break(text: str, lo: int, hi: int) -> int:
    """A cut position in ``[lo, hi]`` (``lo`` ≥ 1 above the piece start), the softest available."""
    for pattern in _SOFT_BREAKS:
        best = -1
        for m in pattern.finditer(text, max(lo - 1, 0), hi):
            if lo <= m.end() <= hi:
                best = m.end()
        if best >= 0:
            return best
    # Hard cut: avoid the middle of an ASCII word or a base character and its combining mark.
    for p in range(hi, lo - 1, -1):
        if p >= len(text):
            return p
        a, b = text[p - 1], text[p]
        if not (a.isascii() and b.isascii() and a.isalnum() and b.isalnum()) and not _combining(b):
            return p
    return hi


def _combining(ch: str) -> bool:
    return unicodedata.combining(ch) != 0 or "\u200c" <= ch <= "\u200d"


def _split_by_chars(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    spans = []
    cur = start
    while end - cur > max_chars:
        cut = _best_break(text, cur + max(1, max_chars // 2), cur + max_chars)
        spans.append((cur, cut))
        cur = cut
    spans.append((cur, end))
    return spans


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` that tile ``text`` exactly (contiguous, nothing lost).

    Whitespace after a sentence belongs to it. A sentence longer than ``max_chars`` is cut at a line
    break, a comma-like mark, whitespace, or (last resort) anywhere outside a word.
    """
    if not text:
        return []
    max_chars = max(1, max_chars)
    spans: list[tuple[int, int]] = []
    block_starts = [0] + [m.end() for m in _HARD_BREAK_RE.finditer(text)]
    for i, bstart in enumerate(block_starts):
        bend = block_starts[i + 1] if i + 1 < len(block_starts) else len(text)
        if bstart >= bend:
            continue
        cur = bstart
        for e in _sentence_ends(text, bstart, bend):
            if e <= cur:
                continue
            while e < bend and text[e].isspace():
                e += 1
            spans.extend(_split_by_chars(text, cur, e, max_chars))
            cur = e
        if cur < bend:
            spans.extend(_split_by_chars(text, cur, bend, max_chars))
    return spans


# --------------------------------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------------------------------


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_to_fit(
    text: str, start: int, end: int, n_tokens: int, count: TokenCounter, max_tokens: int, overhead: int
) -> list[tuple[int, int, int]]:
    """Cut a stripped piece that counts ``n_tokens`` > ``max_tokens`` into pieces that fit.

    Guesses each cut from the token density (tokens per character) and counts only the piece it cuts
    off (plus the remainder once it looks small enough), so a long piece costs a few counts of its own
    length rather than a binary search's worth.
    """
    budget = max_tokens - overhead
    out: list[tuple[int, int, int]] = []
    density = max(n_tokens - overhead, 1) / (end - start)
    cur = start
    while cur < end:
        remaining = end - cur
        if cur > start and overhead + density * remaining <= max_tokens:
            rn = count(text[cur:end])
            if rn <= max_tokens:
                out.append((cur, end, rn))
                break
            density = max(density, max(rn - overhead, 1) / remaining)
        length = min(remaining - 1, max(1, int(budget / density * 0.95)))
        if length < 1:  # a single character left that does not fit: nothing smaller exists
            out.append((cur, end, count(text[cur:end])))
            break
        while True:
            cut = _best_break(text, cur + max(1, length // 2), cur + length)
            s, e = _strip(text, cur, cut)
            pn = count(text[s:e]) if s < e else 0
            if pn <= max_tokens or cut - cur <= 1:
                break
            # Too many: shrink in proportion to the overshoot, always by at least one character.
            length = min(cut - cur - 1, max(1, int((cut - cur) * budget / max(pn - overhead, 1) * 0.9)))
        if s < e:
            out.append((s, e, pn))
            density = max(pn - overhead, 1) / (e - s)
        cur, _ = _strip(text, cut, end)
    return out


def _pieces(text: str, count: TokenCounter, max_tokens: int, overhead: int) -> list[tuple[int, int, int]]:
    """Stripped sentence pieces ``(start, end, real token count)``, each within ``max_tokens``."""
    pieces: list[tuple[int, int, int]] = []
    for s0, e0 in split_sentences(text):
        s, e = _strip(text, s0, e0)
        if s >= e:
            continue
        n = count(text[s:e])
        if n <= max_tokens:
            pieces.append((s, e, n))
        else:
            pieces.extend(_split_to_fit(text, s, e, n, count, max_tokens, overhead))
    return pieces


def chunk_page(
    text: str,
    page: int,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_sentences: int = 0,
) -> list[ChunkSpan]:
    """Pack whole sentences into chunks of at most ``max_tokens`` (as ``count_tokens`` counts them).

    ``count_tokens`` is the embedder's tokenizer (``E5().token_count``); what it returns for "" (the
    special tokens and prefix every text pays) is charged once per chunk, not once per sentence.
    ``overlap_sentences`` repeats that many trailing sentences of a chunk at the start of the next.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not text or text.isspace():
        return []
    overhead = max(0, count_tokens(""))
    if overhead >= max_tokens:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text: an empty text already counts {overhead}")
    overlap = max(0, overlap_sentences)
    pieces = _pieces(text, count_tokens, max_tokens, overhead)
    content = [max(n - overhead, 0) for _s, _e, n in pieces]
    budget = max_tokens - overhead

    chunks: list[ChunkSpan] = []
    i = 0
    prev_last = -1  # index of the last piece in the previous chunk
    while i < len(pieces):
        j, total = i, content[i]
        while j + 1 < len(pieces) and total + content[j + 1] <= budget:
            j += 1
            total += content[j]
        j, real = _fit_real(text, pieces, i, j, count_tokens, max_tokens)
        if j <= prev_last:
            # The overlap left no room for anything new: start fresh after the previous chunk.
            i = prev_last + 1
            continue
        start, end = pieces[i][0], pieces[j][1]
        chunks.append(ChunkSpan(page=page, start=start, end=end, text=text[start:end], tokens=real))
        prev_last = j
        nxt = max(i + 1, j + 1 - overlap)
        # Keep only as much overlap as leaves room (by the estimate) for the next new sentence.
        while nxt <= j and j + 1 < len(pieces) and sum(content[nxt : j + 2]) > budget:
            nxt += 1
        i = nxt
    return chunks


def _fit_real(
    text: str,
    pieces: Sequence[tuple[int, int, int]],
    i: int,
    j: int,
    count: TokenCounter,
    max_tokens: int,
) -> tuple[int, int]:
    """Largest ``j' ≤ j`` whose chunk ``pieces[i..j']`` really fits; returns ``(j', real count)``.

    Sums of per-sentence counts can be off by a token or two at the joins, so the packed chunk is
    counted once; if that is over, binary-search the number of pieces (each piece alone fits).
    """
    if i == j:
        return i, pieces[i][2]
    real = count(text[pieces[i][0] : pieces[j][1]])
    if real <= max_tokens:
        return j, real
    lo, hi = i, j - 1  # pieces[i] alone fits; find the largest fitting end in [lo, hi]
    lo_real = pieces[i][2]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        n = count(text[pieces[i][0] : pieces[mid][1]])
        if n <= max_tokens:
            lo, lo_real = mid, n
        else:
            hi = mid - 1
    return lo, lo_real


def chunk_pages(
    pages: Sequence[ParsedPage],
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_sentences: int = 0,
) -> list[ChunkSpan]:
    """:func:`chunk_page` over every page, in order (chunks never cross a page: citations name one)."""
    out: list[ChunkSpan] = []
    for p in pages:
        out.extend(chunk_page(p.text, p.number, count_tokens, max_tokens, overlap_sentences))
    return out
