"""Ingestion throughput: our whole path against the embedder alone and against the plain LangChain recipe.

The corpus is real and mixed: the shared PDFs plus a fixed sample of DRCD (Traditional Chinese) and SQuAD
(English) paragraphs, written as one text file per article (paragraphs separated by blank lines), the way a
user's own notes or exports arrive. OCR is off on both sides: LangChain's PyPDFLoader has none, and the three
image-only PDFs are then refused by us ("no text") and yield empty pages there, so both index the same text.

Per repeat, on the same loaded embedder:
- ours: ``Library.ingest_paths`` into a fresh data dir (sandboxed parse → chunk → keyword terms → SQLite →
  embed in batches → FAISS save), chunks/s. The library parses the next files in the background while the
  embedder works, so the parse costs the user only the time the ingest had to wait for it;
- raw: ``encode_passages`` on exactly the chunk texts ours produced, same batch size, chunks/s; our overhead
  is ``1 − ours / raw``;
- overhead within our own run (the target): what the user waits for beyond the embedder, ``(wall time −
  time inside encode_passages) / wall time``. Parsing hidden behind encoding shortens the wall time and so
  counts for nothing, as it should; but a parse running beside the encoder on the same cores can also slow the
  encoder, which would move parse cost into "encode": ``encode_inside_vs_alone`` (our encode time / the raw
  run's, paired per repeat) shows whether it did;
- LangChain: PyPDFLoader / TextLoader → RecursiveCharacterTextSplitter (chunk_size in characters = the mean
  length of our chunks, no overlap: a token-counting length function makes the splitter sum per-piece counts,
  each with the model's special tokens, and cut 5× smaller chunks) → ``FAISS.from_documents`` with the same
  embedder, chunks/s and seconds for the corpus;
- re-ingest: the unchanged corpus into the same data dir again (``--reingest-repeats`` times): chunks embedded
  (must be 0) and seconds.

    .venv/bin/python bench/bench_ingest.py --paragraphs 300 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_DATA, summary, write_result  # noqa: E402

PDF_DIR = SHARED_DATA / "pdfs"
DATASETS = {"drcd": SHARED_DATA / "qa" / "drcd_dev.json", "squad": SHARED_DATA / "qa" / "squad_dev_a.json"}


class CountingEmbedder:
    """Our embedder with a tally of passages encoded and seconds spent encoding them (delegates the rest)."""

    def __init__(self, inner):
        self.inner = inner
        self.passages = 0
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        out = self.inner.encode_passages(texts)
        self.seconds += time.perf_counter() - started
        self.passages += len(texts)
        return out


def write_corpus(target: Path, paragraphs_per_dataset: int, pdf_glob: str = "*.pdf") -> dict[str, int]:
    """The shared PDFs plus the first N paragraphs of each QA set, one UTF-8 text file per article."""
    target.mkdir(parents=True, exist_ok=True)
    counts = {"pdf_files": 0, "text_files": 0, "paragraphs": 0, "characters": 0}
    for pdf in sorted(PDF_DIR.glob(pdf_glob)) if pdf_glob else []:
        shutil.copyfile(pdf, target / pdf.name)
        counts["pdf_files"] += 1
    for name, path in DATASETS.items():
        taken = 0
        for a, article in enumerate(json.loads(path.read_text(encoding="utf-8"))["data"]):
            if taken >= paragraphs_per_dataset:
                break
            contexts = [p["context"].strip() for p in article["paragraphs"]][: paragraphs_per_dataset - taken]
            text = "\n\n".join([article.get("title", f"{name} {a}"), *contexts]) + "\n"
            (target / f"{name}-{a:04d}.txt").write_text(text, encoding="utf-8")
            taken += len(contexts)
            counts["text_files"] += 1
            counts["characters"] += len(text)
        counts["paragraphs"] += taken
    return counts


class ParserTimes:
    """For one ingest: seconds the sandboxed parser spent on files (on the background thread, beside the
    embedder) and seconds the ingest waited for a file's parse (the part of parsing a user waits for)."""

    def __init__(self) -> None:
        self.parsing_s = 0.0
        self.waiting_s = 0.0
        self._restore: list[tuple[type, str, object]] = []

    def __enter__(self) -> ParserTimes:
        from services.ingest.sandbox import SandboxedParser
        from services.pipeline import ParseAhead

        self._timed(SandboxedParser, "parse", "parsing_s")
        self._timed(ParseAhead, "next_file", "waiting_s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        for owner, name, original in self._restore:
            setattr(owner, name, original)

    def _timed(self, owner: type, name: str, tally: str) -> None:
        original = getattr(owner, name)
        self._restore.append((owner, name, original))

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                setattr(self, tally, getattr(self, tally) + time.perf_counter() - started)

        setattr(owner, name, timed)


def run_ours(corpus: Path, data_dir: Path, embedder: CountingEmbedder) -> dict:
    """One full ingest into ``data_dir``: wall time, time inside the embedder, time waiting for the parser."""
    from services.app_services import build_services
    from services.config import load_settings

    settings = load_settings(data_dir=data_dir, ocr="off")
    services = build_services(settings, embedder=embedder)
    encoded_before, encode_s_before = embedder.passages, embedder.seconds
    with ParserTimes() as parser_times:
        started = time.perf_counter()
        results = services.library.ingest_paths([corpus])
        seconds = time.perf_counter() - started
    encode_s = embedder.seconds - encode_s_before
    chunks = services.store.counts()["chunks"]
    services.store.close()
    return {
        "seconds": seconds,
        "chunks": chunks,
        "embedded": embedder.passages - encoded_before,
        "files_added": sum(r.status == "added" for r in results),
        "files_duplicate": sum(r.status == "duplicate" for r in results),
        "files_failed": sum(r.status == "failed" for r in results),
        # What the wall time is made of (they add up to it): the main thread encodes, waits for a parse, or
        # does the rest (chunking, keyword terms, SQLite, copies of the originals, vector writes, FAISS save).
        "phase_encode_s": encode_s,
        "phase_waiting_for_parser_s": parser_times.waiting_s,
        "phase_chunk_store_and_index_s": seconds - encode_s - parser_times.waiting_s,
        # Beside those, on the background thread (not part of the sum): the sandboxed parse of every file.
        "parse_in_background_s": parser_times.parsing_s,
    }


def stored_chunk_texts(data_dir: Path) -> list[str]:
    import sqlite3

    db = sqlite3.connect(data_dir / "library.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT text FROM chunks ORDER BY vector_id")]
    finally:
        db.close()


def run_raw(texts: list[str], embedder, batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        embedder.encode_passages(texts[start : start + batch_size])
    return time.perf_counter() - started


def run_langchain(corpus: Path, embedder, chunk_chars: int) -> dict:
    """The recipe from LangChain's RAG tutorial, with our embedder (it implements LangChain's Embeddings)."""
    import logging
    import warnings

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # font-encoding notes per page would flood the output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.document_loaders import PyPDFLoader, TextLoader
        from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    docs = []
    for path in sorted(corpus.iterdir()):
        loader = PyPDFLoader(str(path)) if path.suffix == ".pdf" else TextLoader(str(path), encoding="utf-8")
        docs.extend(loader.load())
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=0)
    chunks = [c for c in splitter.split_documents(docs) if c.page_content.strip()]
    split_s = time.perf_counter() - started
    FAISS.from_documents(chunks, embedder)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "chunks": len(chunks), "phase_load_split_s": split_s}


def summarise(run_settings: dict, corpus_counts: dict, ours: list, raw: list, langchain: list, reingest: list) -> dict:
    """Medians and spreads of the repeated runs, and the two ingestion targets."""
    ours_rate = [r["chunks"] / r["seconds"] for r in ours]
    raw_rate = [r["chunks"] / r["seconds"] for r in raw]
    overhead = [1 - o / w for o, w in zip(ours_rate, raw_rate, strict=True)]  # paired: same repeat, same noise
    # Also within each run: the share of our wall time spent outside encode_passages (the same calls, same
    # batches, same moment), which a busy machine cannot skew the way it skews two runs minutes apart. A parse
    # hidden behind encoding is not in it (the wall time is that much shorter); whether the parse running beside
    # the encoder slowed it down shows in encode_inside_vs_alone (above 1: some parse cost is counted as encode).
    outside_embedder = [(r["seconds"] - r["phase_encode_s"]) / r["seconds"] for r in ours]
    encode_inside_vs_alone = [o["phase_encode_s"] / w["seconds"] for o, w in zip(ours, raw, strict=True)]
    return {
        "settings": run_settings,
        "corpus": corpus_counts,
        "ours": {
            "chunks": ours[0]["chunks"],
            "files_added": ours[0]["files_added"],
            "files_failed": ours[0]["files_failed"],
            "seconds": summary([r["seconds"] for r in ours]),
            "chunks_per_s": summary(ours_rate),
            "phases_s": {
                key.removeprefix("phase_").removesuffix("_s"): summary([r[key] for r in ours])
                for key in ours[0]
                if key.startswith("phase_")
            },
            "parse_in_background_s": summary([r["parse_in_background_s"] for r in ours]),
        },
        "raw_embedder": {"chunks": raw[0]["chunks"], "chunks_per_s": summary(raw_rate)},
        "overhead_vs_raw": summary(overhead, 4),
        "overhead_within_run": summary(outside_embedder, 4),
        "encode_inside_vs_alone": summary(encode_inside_vs_alone, 3),
        "langchain": {
            "recipe": "PyPDFLoader/TextLoader + RecursiveCharacterTextSplitter + FAISS.from_documents",
            "chunk_size_chars": langchain[0]["chunk_chars"],
            "chunks": langchain[0]["chunks"],
            "seconds": summary([r["seconds"] for r in langchain]),
            "chunks_per_s": summary([r["chunks"] / r["seconds"] for r in langchain]),
            "load_split_s": summary([r["phase_load_split_s"] for r in langchain]),
        },
        "reingest_unchanged": {
            "chunks_embedded": max(r["embedded"] for r in reingest),
            "files_duplicate": reingest[0]["files_duplicate"],
            "seconds": summary([r["seconds"] for r in reingest]),
            "runs": len(reingest),
        },
        "targets": [
            {
                "name": "ingestion overhead over the raw embedder",
                "target": "< 10%",
                "value": round(float(np.median(outside_embedder)) * 100, 1),
                "unit": "%",
                "met": bool(np.median(outside_embedder) < 0.10),
                "note": "wall time outside the embedder within our own runs (parsing overlaps embedding); the "
                f"separate raw-embedder runs give {float(np.median(overhead)) * 100:.1f}%; our encode time was "
                f"{float(np.median(encode_inside_vs_alone)):.2f}× the embedder alone's",
            },
            {
                "name": "re-ingesting the unchanged corpus embeds nothing",
                "target": "0 chunks",
                "value": max(r["embedded"] for r in reingest),
                "unit": "chunks",
                "met": max(r["embedded"] for r in reingest) == 0,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=300, help="paragraphs taken from each of DRCD and SQuAD")
    parser.add_argument("--repeats", type=int, default=3, help="full ingests of each kind (median + spread)")
    parser.add_argument("--reingest-repeats", type=int, default=5, help="re-ingests of the unchanged corpus")
    parser.add_argument("--pdfs", default="*.pdf", help="which shared PDFs (a glob; '' for none)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from services.config import load_settings
    from services.embeddings import make_embedder

    settings = load_settings(ocr="off")
    embedder = CountingEmbedder(make_embedder(settings.embedder))
    embedder.encode_passages(["warm up"])  # model load is not ingestion
    work = Path(tempfile.mkdtemp(prefix="docqa-bench-ingest-"))
    try:
        corpus = work / "corpus"
        corpus_counts = write_corpus(corpus, args.paragraphs, args.pdfs)
        ours, raw, langchain, reingest = [], [], [], []
        for repeat in range(args.repeats):
            data_dir = work / f"data-{repeat}"
            run = run_ours(corpus, data_dir, embedder)
            ours.append(run)
            texts = stored_chunk_texts(data_dir)
            raw.append({"seconds": run_raw(texts, embedder.inner, settings.embed_batch_size), "chunks": len(texts)})
            for _ in range(args.reingest_repeats if repeat == 0 else 0):
                reingest.append(run_ours(corpus, data_dir, embedder))
            chunk_chars = round(sum(map(len, texts)) / max(len(texts), 1))
            langchain.append(run_langchain(corpus, embedder.inner, chunk_chars) | {"chunk_chars": chunk_chars})
            print(
                json.dumps(
                    {"repeat": repeat, "ours": run, "raw": raw[-1], "reingest": reingest, "langchain": langchain[-1]}
                ),
                flush=True,
            )
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    run_settings = {
        "embedder": embedder.name,
        "batch_size": settings.embed_batch_size,
        "chunk_tokens": settings.chunk_tokens,
        "ocr": "off",
        "paragraphs_per_dataset": args.paragraphs,
        "pdfs": args.pdfs,
        "repeats": args.repeats,
    }
    result = summarise(run_settings, corpus_counts, ours, raw, langchain, reingest)
    print(write_result("ingest", result, args.out))


if __name__ == "__main__":
    main()
