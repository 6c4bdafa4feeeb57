"""Command line: the same services as the app, for batch work and evaluation.

python cli.py [--data-dir DIR] ingest PATH... [--text-column C] [--id-column C]
python cli.py [--data-dir DIR] documents list --json | documents delete ID
python cli.py [--data-dir DIR] search "QUERY" -k K --json | search --queries FILE.jsonl -k K --json
python cli.py [--data-dir DIR] ask "QUESTION" [--document ID ...] --json
python cli.py [--data-dir DIR] topics build [--level documents|chunks] [--min-topic-size N] [--no-llm-labels] --json
python cli.py [--data-dir DIR] topics export --json
python cli.py eval retrieval --dataset FILE.json [--script simplified] -k 10 --json
python cli.py eval topics --dataset FILE --text-field F --label-field L --json
python cli.py [--data-dir DIR] reindex | doctor
python cli.py [--data-dir DIR] migrate --to pgvector|sqlite [--database-url URL] [--queries N] --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from services.config import load_settings
from services.errors import DocQAError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def _services(args: argparse.Namespace):
    from services.app_services import build_services

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    services = build_services(settings)
    for notice in services.store.notices:
        print(notice, file=sys.stderr)
    return services


def _progress_printer(enabled: bool):
    last = {"stage": ""}

    def progress(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        if stage != last["stage"] or done == total:
            print(f"  {stage}: {done}/{total}", file=sys.stderr)
            last["stage"] = stage

    return progress


def cmd_ingest(args: argparse.Namespace) -> int:
    services = _services(args)
    paths = [Path(p) for p in args.paths]
    results = services.library.ingest_paths(
        paths,
        text_column=args.text_column,
        id_column=args.id_column,
        date_column=args.date_column,
        progress=_progress_printer(not args.json and not args.quiet),
    )
    for r in results:
        if args.json:
            _print_json(r.to_dict())
        else:
            detail = f"{r.pages} pages, {r.chunks} chunks" if r.status == "added" else r.message
            extra = f" ({r.message})" if r.status == "added" and r.message else ""
            print(f"{r.status.upper():9} {r.source}: {detail}{extra}")
    failed = sum(not r.ok for r in results)
    if not args.json:
        added = sum(r.status == "added" for r in results)
        dupes = sum(r.status == "duplicate" for r in results)
        print(f"{added} added, {dupes} duplicates, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_documents(args: argparse.Namespace) -> int:
    services = _services(args)
    if args.action == "list":
        docs = services.library.documents()
        if args.json:
            _print_json([d.to_dict() for d in docs])
        else:
            for d in docs:
                print(f"{d.id}  {d.status:9} {d.pages:4}p {d.chunks:5}c  {d.script:8} {d.source}")
        return 0
    if not args.id:
        raise DocQAError("documents delete needs a document ID (see `documents list`).")
    record = services.library.delete(args.id)
    if args.json:
        _print_json({"deleted": record.id, "source": record.source})
    else:
        print(f"deleted {record.id} ({record.source})")
    return 0


def _filter(args: argparse.Namespace):
    from services.retrieval import SearchFilter

    if not (args.document or args.date_from or args.date_to):
        return None
    return SearchFilter(document_ids=args.document or None, date_from=args.date_from, date_to=args.date_to)


def cmd_search(args: argparse.Namespace) -> int:
    services = _services(args)
    search_filter = _filter(args)
    if args.queries:
        with open(args.queries, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                item = json.loads(line)
                passages = services.retriever.search(
                    item["query"], args.k, search_filter, dense_weight=args.dense_weight
                )
                _print_json({"id": item.get("id"), "hits": [p.to_hit() for p in passages]})
        return 0
    if not args.query:
        raise DocQAError('search needs a query: search "QUERY" or search --queries FILE.jsonl')
    passages = services.retriever.search(args.query, args.k, search_filter, dense_weight=args.dense_weight)
    if args.json:
        _print_json({"query": args.query, "hits": [p.to_hit() for p in passages]})
    else:
        for n, p in enumerate(passages, 1):
            print(f"[{n}] {p.score:.3f} {p.chunk.source} p.{p.chunk.page}: {p.chunk.text[:160]!r}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    services = _services(args)
    chat = services.chat_service()
    answer = chat.answer(args.question, [], _filter(args))
    if args.json:
        _print_json(answer.to_dict())
    else:
        print(answer.text)
        for c in answer.citations:
            print(f"  [{c.n}] {c.source} p.{c.page}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from services.topic_service import TopicService

    services = _services(args)
    chat_model = _topic_chat_model(services.settings) if args.action == "build" and not args.no_llm_labels else None
    topics = TopicService(services.store, services.settings, embedder=services.embedder, chat_model=chat_model)
    if args.action == "build":
        from services.topics import TopicParams

        params = TopicParams(level=args.level, min_topic_size=args.min_topic_size)
        result = topics.build(params, progress=_progress_printer(not args.json))
        summary = topics.summary(result)
    else:
        summary = topics.export()
    if args.json:
        _print_json(summary)
    else:
        for t in summary["topics"]:
            print(f"{t['id']:4} {t['size']:5}  {t['label']}  [{', '.join(t['keywords'][:8])}]")
        if summary.get("label_model"):
            print(f"labels written by {summary['label_model']}")
        for warning in summary.get("warnings", []):
            print(f"note: {warning}", file=sys.stderr)
    return 0


def _topic_chat_model(settings):
    """The configured LLM for topic labels, or None (none configured, or misconfigured: said on stderr)."""
    from services.errors import LLMUnavailable
    from services.llm import make_chat_model

    try:
        return make_chat_model(settings)
    except LLMUnavailable as exc:
        print(f"topic labels: {exc.message} Using keyword labels.", file=sys.stderr)
        return None


def _eval_dir(args: argparse.Namespace, suffix: str = "") -> Path:
    """Evaluation stores live apart from the user's library; the same dataset's store is reused (no re-embedding)."""
    if args.data_dir:
        return Path(args.data_dir)
    return Path(".eval-stores") / (Path(args.dataset).stem + suffix)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.what == "retrieval":
        from services.evaluate import evaluate_retrieval

        report = evaluate_retrieval(
            Path(args.dataset),
            _eval_dir(args),
            script=args.script,
            k=args.k,
            limit=args.limit,
            dense_weight=args.dense_weight,
            compare_signals=args.compare_signals,
        )
    elif args.what == "extractive":
        from services.evaluate import evaluate_extractive

        report = evaluate_extractive(Path(args.dataset), _eval_dir(args), limit=args.limit)
    elif args.what == "abstention":
        from services.evaluate import evaluate_abstention

        report = evaluate_abstention(
            Path(args.dataset), _eval_dir(args, f"-half-{args.split}"), split=args.split, limit=args.limit
        )
    else:
        from services.topic_service import evaluate_topics_file

        report = evaluate_topics_file(
            Path(args.dataset),
            text_field=args.text_field,
            label_field=args.label_field,
            per_label=args.per_label,
            limit=args.limit,
            compare_defaults=args.compare_defaults,
            traditional=args.traditional,
            clean=args.clean,
            max_chars=args.max_chars,
            data_dir=Path(args.data_dir) if args.data_dir else None,
        )
    if args.json:
        _print_json(report)
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from services.embeddings import make_embedder
    from services.store_factory import reset_embedding_model

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    embedder = make_embedder(settings.embedder)
    reset_embedding_model(settings, embedder.name, embedder.dimension)
    services = _services(args)
    done = services.library.embed_pending(progress=_progress_printer(True))
    print(f"re-embedded {done} passages with {embedder.name}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    services = _services(args)
    report = services.store.check_consistency()
    _print_json(report)
    bad = report["faiss_not_in_sqlite"] or report["embedded_not_in_faiss"] or report["terms_mismatch"]
    return 1 if bad or report["duplicate_chunks"] else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.migrate import migrate, open_pair

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    url = args.database_url or settings.database_url
    if not url:
        raise DocQAError("migrate needs a PostgreSQL URL: --database-url postgresql://... or DOCQA_DATABASE_URL.")
    source, target = open_pair(settings.data_dir, url, args.to)
    report = migrate(source, target, sample_queries=args.queries, k=args.k)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"migrated {report.direction} in {report.seconds} s")
        for key in ("documents", "chunks", "embedded"):
            a, b = report.counts_source[key], report.counts_target[key]
            print(f"  {key:10} source {a:>9}  target {b:>9}  {'ok' if a == b else 'MISMATCH'}")
        for signal, same in report.identical.items():
            print(
                f"  {signal:8} top-{args.k}: identical for {same}/{report.queries} queries, "
                f"mean overlap {report.overlap[signal]:.4f}"
            )
        print("verified: the two stores agree" if report.ok else "NOT verified: the stores differ (see above)")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Ask your documents, from the shell.")
    parser.add_argument("--data-dir", help="library folder (default ./data or $DOCQA_DATA_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add files or folders to the library")
    p.add_argument("paths", nargs="+")
    p.add_argument("--text-column")
    p.add_argument("--id-column")
    p.add_argument("--date-column")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("documents", help="list or delete documents")
    p.add_argument("action", choices=["list", "delete"])
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_documents)

    def add_filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--document", action="append", help="restrict to this document id (repeatable)")
        p.add_argument("--date-from")
        p.add_argument("--date-to")

    p = sub.add_parser("search", help="hybrid search")
    p.add_argument("query", nargs="?")
    p.add_argument("--queries", help="JSON lines file of {id, query}")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--dense-weight", type=float)
    p.add_argument("--json", action="store_true")
    add_filters(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="ask a question; answers cite their sources")
    p.add_argument("question")
    p.add_argument("--json", action="store_true")
    add_filters(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("topics", help="build or export the topic map")
    p.add_argument("action", choices=["build", "export"])
    p.add_argument("--level", choices=["documents", "chunks", "auto"], default="auto")
    p.add_argument("--min-topic-size", type=int)
    p.add_argument(
        "--no-llm-labels", action="store_true", help="keyword labels even when an LLM is configured (DOCQA_LLM_*)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("eval", help="evaluate retrieval or topics on a dataset")
    p.add_argument("what", choices=["retrieval", "extractive", "abstention", "topics"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--script", choices=["simplified", "traditional"])
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--limit", type=int, help="use only the first N questions / documents")
    p.add_argument("--dense-weight", type=float)
    p.add_argument("--compare-signals", action="store_true", help="retrieval: also dense-only and keyword-only")
    p.add_argument("--split", choices=["article", "paragraph"], default="article", help="abstention split")
    p.add_argument("--text-field", default="text", help="topics: JSON field, or 0-based column of a .txt/.tsv file")
    p.add_argument("--label-field", default="label", help="topics: JSON field, or 0-based column of a .txt/.tsv file")
    p.add_argument("--per-label", type=int, help="topics: first N items of each label, in file order")
    p.add_argument("--traditional", action="store_true", help="topics: convert texts to Traditional (s2twp)")
    p.add_argument("--clean", choices=["email"], help="topics: strip e-mail headers, quotes and signatures")
    p.add_argument("--max-chars", type=int, help="topics: keep the first N characters of each text")
    p.add_argument("--compare-defaults", action="store_true", help="topics: also score BERTopic defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("reindex", help="re-embed every passage with the configured embedding model")
    p.set_defaults(func=cmd_reindex)
    p = sub.add_parser("doctor", help="check that the database and the vector index agree")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("migrate", help="copy the library between the local store and PostgreSQL + pgvector")
    p.add_argument("--to", choices=["pgvector", "sqlite"], required=True)
    p.add_argument("--database-url", help="PostgreSQL URL (default $DOCQA_DATABASE_URL)")
    p.add_argument("--queries", type=int, default=50, help="sample queries compared after copying")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except DocQAError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
