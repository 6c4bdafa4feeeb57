"""Upload helpers (names are labels, never paths) and the bundled sample documents."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from ui_helpers import HashEmbeddings

from components.uploader import guess_date_column, guess_text_column, peek_table, safe_suffix, save_upload
from services.samples import SAMPLES_DIR, load_samples, sample_files


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("report.PDF", ".pdf"),
        ("../../etc/passwd", ""),
        ("..\\..\\win.ini", ".ini"),
        ("a/b/c.txt ", ".txt"),
        ("x.tar.gz", ".gz"),
        ("weird.<script>", ""),
        ("no_extension", ""),
        ("dots...", ""),
        ("long.extensionthatistoolong", ""),
    ],
)
def test_safe_suffix(name, suffix):
    assert safe_suffix(name) == suffix


def test_save_upload_uses_a_generated_name_inside_incoming(tmp_path):
    incoming = tmp_path / "incoming"
    queued = save_upload(io.BytesIO(b"hello"), "../../../outside.txt", incoming)
    assert queued.path.parent == incoming and queued.path.suffix == ".txt"
    assert queued.path.read_bytes() == b"hello" and queued.name == "../../../outside.txt"
    assert not (tmp_path.parent / "outside.txt").exists()
    again = save_upload(io.BytesIO(b"hello"), "../../../outside.txt", incoming)
    assert again.path != queued.path


def test_peek_table_and_column_guesses():
    csv = "id,published,title,body\n1,2024/05/01,Tea,Oolong tea is partly oxidised and often roasted.\n"
    frame = peek_table(csv.encode(), "a.csv")
    assert list(frame.columns) == ["id", "published", "title", "body"]
    assert guess_text_column(frame) == "body" and guess_date_column(frame) == "published"
    jsonl = '{"內容": "颱風季節是七月到九月。", "日期": "2025-07-01"}\n{"內容": "高鐵通車。"\n'
    frame = peek_table(jsonl.encode("utf-8"), "b.jsonl")
    assert len(frame) == 1 and guess_text_column(frame) == "內容" and guess_date_column(frame) == "日期"
    tsv = "when\ttext\n2024-01-02\tRivers carry sediment to the sea.\n"
    frame = peek_table(tsv.encode("utf-16"), "c.csv")
    assert guess_text_column(frame) == "text" and guess_date_column(frame) == "when"
    assert guess_text_column(pd.DataFrame()) is None


def test_samples_are_short_original_and_varied():
    files = sample_files()
    assert 4 <= len(files) <= 6
    assert {p.suffix for p in files} >= {".md", ".txt", ".csv"}
    for path in files:
        assert 200 <= len(path.read_text(encoding="utf-8")) <= 1500, path.name
    readme = (SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC0" in readme and "written for this project" in readme


def test_load_samples_adds_every_sample(tmp_path):
    from services.app_services import build_services
    from services.config import load_settings

    services = build_services(load_settings(data_dir=tmp_path / "lib"), embedder=HashEmbeddings())
    results = load_samples(services.library)
    assert results and all(r.status == "added" for r in results), [r.message for r in results if not r.ok]
    docs = services.library.documents()
    assert all(d.status == "ready" for d in docs)
    assert sum(d.source.startswith("community_bulletin.csv") for d in docs) == 6
    assert {d.script for d in docs} >= {"zh-Hant", "en"}
    assert [r.status for r in load_samples(services.library)] == ["duplicate"] * len(results)
    services.store.close()
