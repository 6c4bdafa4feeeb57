"""`cli.py topics build|export` as a user runs them (subprocesses) on the bundled samples, checking the JSON
contract {"topics": [{"id","label","keywords","size"}], "documents": [{"document","source","topic"}]}.

The library is ingested once per module in this process with the app's real embedding model (the CLI
opens the library with it); each test works on a copy. A build in a fresh process imports BERTopic and
the Chinese segmenter (~10 s here), hence those tests are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_json(data_dir: Path, *args: str) -> dict:
    out = run_cli(data_dir, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)  # stdout is exactly one JSON document (progress goes to stderr)


@pytest.fixture(scope="module")
def samples_library(tmp_path_factory, embedder) -> Path:
    from services.app_services import build_services
    from services.config import load_settings
    from services.samples import load_samples

    data = tmp_path_factory.mktemp("cli_topics") / "data"
    services = build_services(load_settings(data_dir=data), embedder=embedder)
    load_samples(services.library)
    services.store.close()
    return data


@pytest.fixture
def library(samples_library: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(samples_library, data)
    return data


def _store(data_dir: Path):
    from services.app_services import build_services
    from services.config import load_settings

    return build_services(load_settings(data_dir=data_dir)).store


def check_contract(summary: dict, data_dir: Path) -> None:
    assert {"topics", "documents"} <= set(summary)
    topic_ids = set()
    for topic in summary["topics"]:
        assert {"id", "label", "keywords", "size"} <= set(topic)
        assert isinstance(topic["id"], int) and isinstance(topic["size"], int) and topic["size"] >= 0
        assert isinstance(topic["label"], str) and topic["label"]
        assert isinstance(topic["keywords"], list) and all(isinstance(w, str) for w in topic["keywords"])
        topic_ids.add(topic["id"])
    assert len(topic_ids) == len(summary["topics"])
    store = _store(data_dir)
    sources = {d.id: d.source for d in store.list_documents()}
    store.close()
    documents = summary["documents"]
    assert sorted(d["document"] for d in documents) == sorted(sources)  # every document, once
    for row in documents:
        assert {"document", "source", "topic"} <= set(row)
        assert row["source"] == sources[row["document"]]
        assert row["topic"] in topic_ids


def test_export_before_any_build_is_a_clear_error(tmp_path: Path) -> None:
    out = run_cli(tmp_path / "data", "topics", "export", "--json")
    assert out.returncode == 2
    assert "error:" in out.stderr and "build topics first" in out.stderr
    assert "Traceback" not in out.stderr and not out.stdout.strip()


def test_an_unknown_level_is_rejected_by_the_parser(tmp_path: Path) -> None:
    out = run_cli(tmp_path / "data", "topics", "build", "--level", "sentences", "--json")
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.mark.slow
def test_build_then_export_json_contract(library: Path) -> None:
    built = run_json(library, "topics", "build", "--json")
    check_contract(built, library)
    assert built["level"] == "chunks"  # 11 documents: "auto" maps passages
    exported = run_json(library, "topics", "export", "--json")
    check_contract(exported, library)
    assert exported["topics"] == built["topics"] and exported["documents"] == built["documents"]

    # Over passages, a document's topic is the topic of most of its passages.
    from services.topics_store import load_topics

    result = load_topics(library / "topics")
    store = _store(library)
    votes: dict[str, Counter] = defaultdict(Counter)
    for chunk in store.iter_embeddings()[0]:
        votes[chunk.document_id][result.assignments[chunk.id]] += 1
    store.close()
    for row in exported["documents"]:
        assert votes[row["document"]][row["topic"]] == max(votes[row["document"]].values())
    assert sum(t["size"] for t in exported["topics"]) == len(result.assignments)

    # Text output: one line per topic.
    text = run_cli(library, "topics", "export")
    assert text.returncode == 0
    assert len(text.stdout.strip().splitlines()) == len(exported["topics"])


@pytest.mark.slow
def test_build_over_documents_with_a_minimum_size(library: Path) -> None:
    built = run_json(library, "topics", "build", "--level", "documents", "--min-topic-size", "2", "--json")
    check_contract(built, library)
    assert built["level"] == "documents"
    sizes = Counter(d["topic"] for d in built["documents"])
    assert {t["id"]: t["size"] for t in built["topics"] if t["size"]} == dict(sizes)

    # A bad minimum size is the service's message, not a traceback.
    out = run_cli(library, "topics", "build", "--min-topic-size", "1", "--json")
    assert out.returncode == 2 and "at least 2" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_export_includes_documents_added_after_the_build(library: Path, tmp_path: Path) -> None:
    run_json(library, "topics", "build", "--json")
    note = tmp_path / "more_typhoons.txt"
    note.write_text("颱風季節來臨，氣象署發布颱風警報，請民眾注意強風豪雨與淹水。", encoding="utf-8")
    added = run_cli(library, "ingest", str(note), "--json")
    assert added.returncode == 0, added.stderr[-2000:]
    exported = run_json(library, "topics", "export", "--json")
    check_contract(exported, library)
    assert "more_typhoons.txt" in {d["source"] for d in exported["documents"]}


def test_topics_build_takes_the_configured_llm_unless_no_llm_labels(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sys.path.insert(0, str(ROOT))
    import cli
    from services.config import Settings

    assert cli.build_parser().parse_args(["topics", "build", "--no-llm-labels"]).no_llm_labels is True
    assert cli.build_parser().parse_args(["topics", "build"]).no_llm_labels is False
    assert cli._topic_chat_model(Settings(llm_provider="none")) is None
    # Misconfigured (openai without URL or key): keyword labels, and the reason on stderr.
    assert cli._topic_chat_model(Settings(llm_provider="openai", llm_api_key="")) is None
    assert "Using keyword labels" in capsys.readouterr().err
    model = cli._topic_chat_model(Settings(llm_provider="openai", llm_base_url="http://127.0.0.1:9/v1"))
    assert model is not None
