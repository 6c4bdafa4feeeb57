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
