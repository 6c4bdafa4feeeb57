"""Typed errors that carry a message meant for a person.

Every service raises a subclass of :class:`DocQAError`; the UI and the CLI show ``err.message`` and never a
traceback. Keep messages specific: what went wrong, with which file, and what the user can do.
"""

from __future__ import annotations


class DocQAError(Exception):
    """Base class: ``message`` is shown to the user as is."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnsupportedFile(DocQAError):
    pass


class EncryptedPdf(DocQAError):
    pass


class NoTextLayer(DocQAError):
    pass


class UnknownEncoding(DocQAError):
    pass


class EmptyDocument(DocQAError):
    pass


class ParseFailed(DocQAError):
    pass


class ParseTimeout(ParseFailed):
    pass


class ParseMemoryExceeded(ParseFailed):
    pass


class ParseCancelled(ParseFailed):
    """The ingest was stopped while this file waited for (or was in) the parser."""


class FileTooLarge(DocQAError):
    pass


class MissingColumn(DocQAError):
    pass


class EmbeddingModelMismatch(DocQAError):
    pass


class DocumentNotFound(DocQAError):
    pass


class StoreCorrupt(DocQAError):
    pass


class LLMUnavailable(DocQAError):
    pass


class TopicsUnavailable(DocQAError):
    pass


class StorageFull(DocQAError):
    """The disk holding the library ran out of space during a write (which was rolled back)."""


class StoreUnavailable(DocQAError):
    """The configured store backend cannot be used (no database URL, server unreachable, extension missing)."""
