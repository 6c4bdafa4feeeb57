"""The app as a user meets it: cold start in a real browser, time to the first answer token, install size.

- Cold start: ``streamlit run app.py`` on a free 127.0.0.1 port with a fresh data dir, until the library
  page's "Load sample documents" button is visible and enabled in headless Chromium (launched beforehand:
  the user's browser is already open). Also split into server start → /_stcore/health and health → page.
- Time to first answer token, through ``ChatService.stream_answer`` on the DRCD library from
  ``bench/.cache/drcd-base`` (1,000 paragraphs; built by bench_retrieval.py), real DRCD questions, question
  embedding included: with no LLM (extractive, the answer arrives whole) and with the fake streaming
  OpenAI-compatible server from tests/helpers (what we add before a real model's first token).
- Install size of the environment (``du`` of .venv, and its largest packages).

    .venv/bin/python bench/bench_app.py --cold-starts 5 --questions 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, ROOT, SHARED_DATA, dir_size_bytes, summary, write_result  # noqa: E402
from tests.helpers.app_server import (  # noqa: E402
    CHROMIUM,
    FIRST_PAGE_READY_BUTTON,
    free_port,
    launch_chromium,
    start_streamlit,
    stop_streamlit,
    wait_healthy,
)

DRCD = SHARED_DATA / "qa" / "drcd_dev.json"


def cold_start(browser, work: Path) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(data_dir.parent / f"streamlit-{port}.log", "w") as log:
        started = time.perf_counter()
        proc = start_streamlit(data_dir, port, log)
        try:
            wait_healthy(url, proc, timeout=120)
            healthy = time.perf_counter()
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                page = context.new_page()
                page.goto(url)
                button = page.get_by_role("button", name=FIRST_PAGE_READY_BUTTON)
                button.wait_for(timeout=120_000)
                if not button.is_enabled():
                    raise RuntimeError("the first page rendered with its button disabled")
                interactive = time.perf_counter()
            finally:
                context.close()
        finally:
            stop_streamlit(proc)
    return {
        "server_start_to_interactive_s": interactive - started,
        "server_start_to_healthy_s": healthy - started,
        "healthy_to_interactive_s": interactive - healthy,
    }


def measure_cold_starts(runs: int) -> dict:
    if not os.path.exists(CHROMIUM):
        return {"not_measured": "Chromium is not installed (scripts/install_system_deps.sh)"}
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="docqa-bench-app-"))
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                cold_start(browser, work)  # the first run warms the OS file cache: a "cold" app, not a cold disk
                samples = [cold_start(browser, work) for _ in range(runs)]
            finally:
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {key: summary([s[key] for s in samples]) for key in samples[0]}


def drcd_questions(n: int) -> list[str]:
    from services.evaluate import load_squad

    qs = [q.question for p in load_squad(DRCD) for q in p.questions]
    step = max(len(qs) // n, 1)
    return qs[::step][:n]


def first_token_seconds(chat, question: str) -> tuple[float, str]:
    """Seconds from asking to the first piece of answer text (a token, or the whole extractive answer)."""
    started = time.perf_counter()
    for event in chat.stream_answer(question):
        if event.kind == "token":
            return time.perf_counter() - started, "token"
        if event.kind == "done":
            kind = "abstained" if event.answer and event.answer.abstained else "answer"
            return time.perf_counter() - started, kind
        if event.kind == "error":
            raise RuntimeError(event.text)
    raise RuntimeError("the answer stream ended without an answer")


def measure_first_token(questions: list[str]) -> dict:
    from services.app_services import build_services
    from services.config import load_settings
    from tests.helpers.fake_openai_server import FakeOpenAIServer

    base = CACHE / "drcd-base"
    if not (base / "library.sqlite3").exists():
        return {"not_measured": f"{base} is missing: run bench/bench_retrieval.py first (it builds it)"}
    work = Path(tempfile.mkdtemp(prefix="docqa-bench-answer-"))
    try:
        library = work / "library"
        shutil.copytree(base, library)  # the cache stays untouched
        services = build_services(load_settings(data_dir=library, llm_provider="none"))
        services.store.open_index()
        out: dict = {"library_chunks": services.store.counts()["chunks"], "questions": len(questions)}
        extractive = services.chat_service()
        first_token_seconds(extractive, questions[0])  # warm-up: index pages, jieba dictionary
        timings = [first_token_seconds(extractive, q) for q in questions]
        out["no_llm_extractive"] = summary([t for t, _ in timings]) | {
            "abstained": sum(kind == "abstained" for _, kind in timings)
        }
        with FakeOpenAIServer() as fake:
            settings = load_settings(
                data_dir=library, llm_provider="openai", llm_base_url=fake.base_url, llm_model="fake", llm_api_key="x"
            )
            streaming = services.chat_service(settings)
            first_token_seconds(streaming, questions[0])
            timings = [first_token_seconds(streaming, q) for q in questions]
        out["fake_streaming_llm"] = summary([t for t, _ in timings]) | {
            "streamed": sum(kind == "token" for _, kind in timings)
        }
        services.store.close()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_size() -> dict:
    venv = (ROOT / ".venv").resolve()
    out: dict = {"venv": str(venv), "total_mb": round(dir_size_bytes(venv) / 1e6, 1)}
    try:  # du counts blocks (what the disk holds); the sum above counts bytes
        du = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
        out["du_mb"] = int(du.stdout.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    site = next(venv.glob("lib/python*/site-packages"), None)
    if site is not None:
        sizes = {p.name: dir_size_bytes(p) for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")}
        out["largest_packages_mb"] = {
            name: round(size / 1e6, 1) for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--questions", type=int, default=20, help="questions timed per answer mode")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {
        "settings": {"cold_starts": args.cold_starts, "questions": args.questions},
        "cold_start": measure_cold_starts(args.cold_starts),
        "first_answer_token": measure_first_token(drcd_questions(args.questions)),
        "install_size": install_size(),
    }
    print(write_result("app", result, args.out))


if __name__ == "__main__":
    main()
