"""Keeping the keyword signal fast on large libraries by leaving out a question's most common words.

BM25 scores every passage that contains any query term, so its cost grows with the terms' posting lists: on a
1M-chunk library a question with a few very common words took 0.5–2 s in SQLite FTS5. Common words carry
little BM25 weight (their idf is small), so the rarest terms are kept until their postings reach a budget and
the rest are dropped. Libraries whose postings fit the budget (every evaluation set, most personal libraries)
are searched with every term, exactly as before.

What it costs, measured on DRCD dev (1,893 chunks) with the budget scaled to the same share of the library as
100k postings are of 1M chunks (DOCQA_KEYWORD_POSTINGS_BUDGET=190): hybrid hit@1 / hit@5 0.930 / 0.994 against
0.935 / 0.997 unpruned; at half that budget 0.920 / 0.990.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence

DEFAULT_POSTINGS_BUDGET = 100_000


def terms_within_budget(
    terms: Sequence[str], document_frequency: Callable[[Sequence[str]], Mapping[str, int]], budget: int
) -> list[str]:
    """The query terms to search: all of them when their postings fit ``budget`` (0 = no limit), else the
    rarest ones that fit, and never fewer than the single rarest term that occurs at all."""
    unique = list(dict.fromkeys(t for t in terms if t.strip()))
    if budget <= 0 or len(unique) <= 1:
        return unique
    df = document_frequency(unique)
    present = [t for t in unique if df.get(t, 0) > 0]
    if sum(df[t] for t in present) <= budget:
        return present
    kept: list[str] = []
    total = 0
    for term in sorted(present, key=df.__getitem__):  # stable: ties keep the question's order
        if kept and total + df[term] > budget:
            break
        kept.append(term)
        total += df[term]
    return kept


class DocumentFrequencyCache:
    """Per-term passage counts, kept until the library's state (any value that changes with its contents)
    changes: a slightly stale count only shifts which common words are left out, never a score."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._state: Hashable = None
        self._lock = threading.Lock()

    def counts(
        self, terms: Sequence[str], state: Hashable, count_missing: Callable[[list[str]], Mapping[str, int]]
    ) -> dict[str, int]:
        with self._lock:
            if state != self._state:
                self._counts, self._state = {}, state
            missing = [t for t in dict.fromkeys(terms) if t not in self._counts]
        if missing:
            found = count_missing(missing)
            with self._lock:
                self._counts.update({t: int(found.get(t, 0)) for t in missing})
        with self._lock:
            return {t: self._counts.get(t, 0) for t in terms}
