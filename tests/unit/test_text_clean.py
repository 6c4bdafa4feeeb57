from services.text_clean import email_body
from services.topic_service import read_labelled

POST = """From: someone@example.edu (Some One)
Subject: Re: Re: Clipper chip and key escrow
Organization: A University
Lines: 9

In article <1993Apr1@foo.bar> other@host.com writes:
> The government keeps a copy of the keys.
> That is the point.

Key escrow means a third party holds the keys; mail me at me@example.org.

--
Some One, Department of Something
"""


def test_email_body_keeps_subject_and_own_words_only():
    text = email_body(POST)
    assert text.startswith("Clipper chip and key escrow")
    assert "Key escrow means a third party holds the keys" in text
    assert "government keeps a copy" not in text  # quoted reply
    assert "@" not in text and "Organization" not in text and "Department of Something" not in text


def test_plain_text_without_headers_is_kept():
    assert email_body("Just a note.\nSecond line.") == "Just a note.\nSecond line."


def test_read_labelled_per_label_cap_and_cleaning(tmp_path):
    import json

    path = tmp_path / "posts.jsonl"
    rows = [{"text": POST, "label": i % 2} for i in range(6)] + [{"text": "", "label": 0}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    texts, labels = read_labelled(path, "text", "label", per_label=2, clean="email", max_chars=30)
    assert labels == ["0", "1", "0", "1"]
    assert all(len(t) <= 30 and "From:" not in t for t in texts)


def test_read_labelled_tsv_by_column_index(tmp_path):
    path = tmp_path / "titles.txt"
    path.write_text("颱風來襲\t3\n股市大漲\t1\n", encoding="utf-8")
    assert read_labelled(path, "0", "1") == (["颱風來襲", "股市大漲"], ["3", "1"])


def test_eval_topics_on_a_tsv_converted_to_traditional_checks_the_keyword_script(tmp_path, monkeypatch):
    """`eval topics --traditional` on a Simplified TSV: every keyword comes out in Traditional script."""
    import zlib

    import numpy as np

    import services.app_services as app_services
    from services.embeddings import OfflineEmbeddings
    from services.topic_service import evaluate_topics_file

    class HashEmbeddings(OfflineEmbeddings):
        name, dimension = "test/hash", 64

        def _one(self, text):
            vec = np.zeros(self.dimension, dtype=np.float32)
            for a, b in zip(text, text[1:], strict=False):
                vec[zlib.crc32((a + b).encode()) % self.dimension] += 1.0
            return vec / (float(np.linalg.norm(vec)) or 1.0)

        def encode_passages(self, texts):
            return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, 64), np.float32)

        def encode_query(self, text):
            return self._one(text)

        def count_tokens(self, text):
            return len(text)

    monkeypatch.setattr(app_services, "make_embedder", lambda _kind: HashEmbeddings())
    themes = {
        "0": ["台风", "气象局", "暴雨", "预警"],
        "1": ["股票", "证券", "投资者", "经济"],
        "2": ["篮球", "球队", "比赛", "教练"],
    }
    rows = [f"{'，'.join(np.roll(words, i)[:3])}第{i}条\t{label}" for label, words in themes.items() for i in range(8)]
    path = tmp_path / "titles.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = evaluate_topics_file(path, text_field="0", label_field="1", traditional=True, data_dir=tmp_path / "store")
    assert report["documents"] == 24 and report["n_topics"] >= 1
    assert report["keywords_checked"] > 0
    assert report["keywords_not_traditional"] == []
    words = {w for t in report["topics"] for w in t["keywords"]}
    assert words & {"颱風", "氣象局", "證券", "經濟", "球隊"}
    assert not any("第" in w and "條" in w for w in words)  # ordinals are not keywords
