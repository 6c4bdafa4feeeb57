"""The no-LLM answer: the most relevant sentences of the top passages, quoted, each with its citation.

Sentences are scored by how much of the question they cover (keyword terms, weighted by length so that
名詞 outweigh particles, plus Han-character bigrams for the words jieba segments differently in question
and passage) and by the rank of their passage. The answer is clearly labelled as quoted passages in the
question's language and script; nothing is paraphrased, so nothing can be invented.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.retrieval import Passage

LABELS = {
    "zh-Hant": "以下摘自您的文件：",
    "zh-Hans": "以下摘自您的文件：",  # the same characters in Simplified
    "en": "Quoted from your documents:",
}

# Tuned on DRCD dev (gold answer containment, see services/evaluate.py and the README).
MAX_SENTENCES = 4
MIN_SENTENCES = 2
MAX_PASSAGES = 3  # sentences come from the top passages only
MAX_CHARS = 700  # total quoted characters (a long sentence still counts as one)
RANK_BONUS = (0.12, 0.04, 0.0)  # added to a sentence's coverage by its passage's rank
NEIGHBOUR_WEIGHT = 0.35  # the sentence after the best one often carries the answer ("...。它位於...")

_HAN_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class Citation:
    """One cited passage: where it is (document, page, offsets) and which span of it was quoted/cited.

    ``start``/``end`` locate the chunk in its page's text; ``highlight_start``/``highlight_end`` locate
    the main cited span inside the chunk's text (``quote == chunk_text[highlight_start:highlight_end]``);
    ``spans`` lists every cited span inside the chunk.
    """

    n: int
    document: str
    source: str
    page: int
    chunk_id: str
    quote: str
    start: int
    end: int
    highlight_start: int
    highlight_end: int
    title: str = ""
    text: str = ""  # the whole chunk, for the sources panel
    spans: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "document": self.document,
            "source": self.source,
            "title": self.title,
            "page": self.page,
            "chunk_id": self.chunk_id,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "highlight_start": self.highlight_start,
            "highlight_end": self.highlight_end,
            "spans": [list(s) for s in self.spans],
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Citation:
        data = dict(data)
        data["spans"] = [tuple(s) for s in data.get("spans", [])]
        return cls(**data)


def make_citation(n: int, passage: Passage, spans: Sequence[tuple[int, int]]) -> Citation:
    chunk = passage.chunk
    spans = sorted(set(spans)) or [(0, len(chunk.text))]
    main = spans[0]
    return Citation(
        n=n,
        document=chunk.document_id,
        source=chunk.source,
        title=chunk.title,
        page=chunk.page,
        chunk_id=chunk.id,
        quote=chunk.text[main[0] : main[1]],
        start=chunk.start,
        end=chunk.end,
        highlight_start=main[0],
        highlight_end=main[1],
        text=chunk.text,
        spans=list(spans),
    )


# ---- scoring ---------------------------------------------------------------------------------------------


def han_bigrams(text: str) -> set[str]:
    """Pairs of adjacent Han characters (after t2s, so the two scripts compare equal)."""
    from services.text_zh import to_simplified

    han = "".join(_HAN_RE.findall(to_simplified(text)))
    return {han[i : i + 2] for i in range(len(han) - 1)}


@dataclass
class QueryProfile:
    """What a question is made of, computed once and compared against many sentences."""

    terms: dict[str, float]  # keyword term → weight
    bigrams: set[str]

    @classmethod
    def of(cls, question: str) -> QueryProfile:
        from services.text_zh import CHINESE_STOP_WORDS, keyword_tokens

        terms: dict[str, float] = {}
        for term in keyword_tokens(question):
            # Longer words are rarer and more telling; single characters are mostly noise.
            terms[term] = max(terms.get(term, 0.0), min(len(term), 4) / 4 if _HAN_RE.search(term) else 1.0)
        stop_chars = {w for w in CHINESE_STOP_WORDS if len(w) == 2}
        bigrams = {b for b in han_bigrams(question) if b not in stop_chars}
        return cls(terms, bigrams)

    def coverage(self, text: str, text_terms: set[str] | None = None) -> float:
        """Share of the question (0..1) that ``text`` covers."""
        from services.text_zh import keyword_tokens

        if text_terms is None:
            text_terms = set(keyword_tokens(text))
        total = sum(self.terms.values())
        term_cov = sum(w for t, w in self.terms.items() if t in text_terms) / total if total else 0.0
        if not self.bigrams:
            return term_cov
        bigram_cov = len(self.bigrams & han_bigrams(text)) / len(self.bigrams)
        return 0.6 * term_cov + 0.4 * bigram_cov


@dataclass
class QuotedSentence:
    passage: int  # index into the passages list
    start: int  # offsets inside the chunk text, whitespace stripped
    end: int
    score: float


def _sentences(text: str) -> list[tuple[int, int]]:
    from services.chunking import split_sentences

    out = []
    for start, end in split_sentences(text, max_chars=400):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start >= 2:
            out.append((start, end))
    return out


def select_sentences(
    question: str,
    passages: Sequence[Passage],
    *,
    max_sentences: int = MAX_SENTENCES,
    min_sentences: int = MIN_SENTENCES,
    max_passages: int = MAX_PASSAGES,
    max_chars: int = MAX_CHARS,
) -> list[QuotedSentence]:
    """The sentences to quote, in reading order (passage rank, then position)."""
    profile = QueryProfile.of(question)
    scored: list[QuotedSentence] = []
    for i, passage in enumerate(passages[:max_passages]):
        text = passage.chunk.text
        spans = _sentences(text)
        covers = [profile.coverage(text[s:e]) for s, e in spans]
        bonus = RANK_BONUS[i] if i < len(RANK_BONUS) else 0.0
        for j, (s, e) in enumerate(spans):
            # A sentence right after a strong one inherits part of its score: answers often sit in the
            # sentence that follows the one repeating the question's words.
            prev = covers[j - 1] if j else 0.0
            score = max(covers[j], NEIGHBOUR_WEIGHT * prev) + bonus
            scored.append(QuotedSentence(i, s, e, score))
    if not scored:
        return []
    ranked = sorted(scored, key=lambda q: (-q.score, q.passage, q.start))
    chosen: list[QuotedSentence] = []
    seen: set[str] = set()
    chars = 0
    for cand in ranked:
        if len(chosen) >= max_sentences:
            break
        text = passages[cand.passage].chunk.text[cand.start : cand.end]
        if text in seen:
            continue  # the same sentence in an overlapping chunk
        weak = cand.score - (RANK_BONUS[cand.passage] if cand.passage < len(RANK_BONUS) else 0.0) <= 0
        if chosen and (weak and len(chosen) >= min_sentences):
            break
        if chosen and chars + len(text) > max_chars and len(chosen) >= min_sentences:
            continue
        chosen.append(cand)
        seen.add(text)
        chars += len(text)
    return sorted(chosen, key=lambda q: (q.passage, q.start))


def label_for(script: str) -> str:
    return LABELS.get(script, LABELS["en"])


def extractive_answer(
    question: str, passages: Sequence[Passage], script: str
) -> tuple[str, list[Citation], list[Passage]]:
    """``(text, citations, passages cited)``: the labelled quotes, one citation number per passage."""
    quotes = select_sentences(question, passages)
    numbers: dict[int, int] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    lines: list[str] = []
    for q in quotes:
        n = numbers.setdefault(q.passage, len(numbers) + 1)
        spans.setdefault(q.passage, []).append((q.start, q.end))
        sentence = " ".join(passages[q.passage].chunk.text[q.start : q.end].split())
        lines.append(f"> {sentence} [{n}]")
    citations = [make_citation(n, passages[i], spans[i]) for i, n in numbers.items()]
    text = label_for(script) + "\n\n" + "\n>\n".join(lines) if lines else ""
    return text, citations, [passages[i] for i in numbers]
