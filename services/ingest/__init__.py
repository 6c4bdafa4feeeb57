"""Parsing uploaded files into ParsedDocuments, one parser per format, in a killable process.

    from services.ingest import SUPPORTED_EXTENSIONS, parse_file
    documents = parse_file(Path("report.pdf"), timeout_s=120, memory_mb=2048)

Only light modules are imported here: the worker process imports this package too, and its startup time is
most of the time a small file takes.
"""

from services.ingest.dispatch import SUPPORTED_EXTENSIONS, SUPPORTED_LABEL
from services.ingest.sandbox import parse_file, parse_file_inprocess

__all__ = ["SUPPORTED_EXTENSIONS", "SUPPORTED_LABEL", "parse_file", "parse_file_inprocess"]
