"""PDF: one ParsedPage per page (1-based), text from pypdf, OCR for scanned pages when Tesseract exists.

Hostile files are contained by the parser process (memory limit, wall-clock timeout) and by pypdf's own limits
on decompressed stream sizes; this module turns everything pypdf raises into a message naming file and page.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

from services.errors import EncryptedPdf, NoTextLayer, ParseFailed
from services.ingest import ocr
from services.models import ParsedDocument, ParsedPage

# Fewer letters/digits than this on a page that carries an image: a scan (maybe with a stray page number).
_MIN_TEXT_CHARS = 8
# Images smaller than this are logos and rules, not scans worth OCR.
_MIN_OCR_PIXELS = 100
_MAX_OCR_IMAGES_PER_PAGE = 8
_OCR_PNG_FORMATS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def parse(path: Path, name: str, *, ocr_enabled: bool = True, deadline: float | None = None) -> ParsedDocument:
    """Parse ``path``; ``deadline`` (time.monotonic) is when OCR must stop so the parse finishes in time."""
    # pypdf logs every recoverable oddity of a file, some with whole font dictionaries: keep the log readable.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    with path.open("rb") as handle:
        return _parse(handle, name, ocr_enabled, deadline)


def _parse(handle: Any, name: str, ocr_enabled: bool, deadline: float | None) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError, PyPdfError

    try:
        reader = PdfReader(handle, strict=False)
        _unlock(reader, name)
        page_count = len(reader.pages)
    except (EncryptedPdf, ParseFailed):
        raise
    except DependencyError as err:
        raise ParseFailed(f"{name} could not be read: it needs a PDF feature this installation lacks ({err})") from err
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise ParseFailed(
            f"{name} could not be read as a PDF: the file is damaged or incomplete (for example, a download "
            f"that was cut off); save or download it again ({_short(err)})"
        ) from err
    if page_count == 0:
        raise ParseFailed(f"{name} has no pages: the file is damaged or incomplete")

    pages: list[ParsedPage] = []
    warnings: list[str] = []
    unreadable: list[str] = []
    empty: list[int] = []  # pages without a text layer worth keeping
    with_images: set[int] = set()
    for number in range(1, page_count + 1):
        text, has_images, problem = _page_text(reader, number)
        if problem:
            unreadable.append(f"page {number} could not be read ({problem})")
        if _alnum(text) >= _MIN_TEXT_CHARS or (text.strip() and not has_images):
            pages.append(ParsedPage(number=number, text=text))
            continue
        pages.append(ParsedPage(number=number, text=text.strip()))
        empty.append(number)
        if has_images:
            with_images.add(number)

    warnings.extend(unreadable)
    skipped, ocr_problems = _ocr_pages(reader, name, pages, empty, with_images, warnings, ocr_enabled, deadline)
    if len(skipped) == page_count and unreadable:
        # Not a scan: pypdf failed on the pages (damage, or limits such as a decompression bomb's).
        raise ParseFailed(f"{name} could not be read: {unreadable[0]}; the file may be damaged or hostile")
    if len(skipped) == page_count:
        raise NoTextLayer(_no_text_message(name, skipped, ocr_enabled, bool(with_images), ocr_problems))
    return ParsedDocument(
        source=name,
        kind="pdf",
        pages=pages,
        title=_title(reader),
        date=_date(reader),
        metadata=_metadata(reader, page_count),
        warnings=warnings,
        skipped_pages=skipped,
    )


def _unlock(reader: Any, name: str) -> None:
    """Open an encrypted PDF with the empty password (most "protected" PDFs only restrict printing)."""
    if not reader.is_encrypted:
        return
    from pypdf import PasswordType
    from pypdf.errors import DependencyError

    message = f"{name} is password-protected; remove the password and upload it again"
    try:
        result = reader.decrypt("")
    except DependencyError as err:  # AES without the cryptography package
        raise EncryptedPdf(f"{message} (its encryption needs the 'cryptography' package)") from err
    except (NotImplementedError, ValueError, KeyError) as err:
        raise EncryptedPdf(f"{message} (unsupported encryption: {_short(err)})") from err
    if result == PasswordType.NOT_DECRYPTED:
        raise EncryptedPdf(message)


def _page_text(reader: Any, number: int) -> tuple[str, bool, str]:
    """Text of one page, whether it has images, and a problem description ('' if none)."""
    try:
        page = reader.pages[number - 1]
    except Exception as err:  # noqa: BLE001 - pypdf raises many types on broken page trees
        return "", False, _short(err)
    try:
        text = page.extract_text() or ""
        problem = ""
    except RecursionError:
        text, problem = "", "its content is nested too deeply"
    except Exception as err:  # noqa: BLE001 - one bad page must not lose the others
        text, problem = "", _short(err)
    return text, _has_images(page), problem


def _has_images(page: Any) -> bool:
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        for obj in xobjects.get_object().values():
            obj = obj.get_object()
            if obj.get("/Subtype") in ("/Image", "/Form"):
                return True
    except Exception:  # noqa: BLE001 - a malformed resource dictionary: treat as no image
        return False
    return False


def _ocr_pages(
    reader: Any,
    name: str,
    pages: list[ParsedPage],
    empty: list[int],
    with_images: set[int],
    warnings: list[str],
    ocr_enabled: bool,
    deadline: float | None,
) -> tuple[list[int], list[str]]:
    """OCR the empty pages that carry images; return the pages left without text, and why OCR failed."""
    languages = ocr.available_languages() if ocr_enabled and with_images else ()
    skipped: list[int] = []
    problems: list[str] = []
    for number in empty:
        if number in with_images and languages:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining < 5:
                problems.append("the time limit was reached")
                warnings.append(f"page {number} has no text: scanned? (not OCR'd: the time limit was reached)")
                skipped.append(number)
                continue
            try:
                text = _ocr_page(reader.pages[number - 1], languages, remaining)
            except Exception as err:  # noqa: BLE001 - OCR failures only lose this page
                problems.append(_short(err))
                warnings.append(f"page {number} has no text: scanned? (OCR failed: {_short(err)})")
                skipped.append(number)
                continue
            if _alnum(text):
                pages[number - 1] = ParsedPage(number=number, text=text)
                warnings.append(f"page {number} was OCR'd")
                continue
        warnings.append(f"page {number} has no text: scanned?")
        skipped.append(number)
    scans = [number for number in skipped if number in with_images]
    if scans and not languages:
        why = "OCR is turned off" if not ocr_enabled else "Tesseract OCR is not installed"
        warnings.append(f"{name}: {_pages_label(scans)} would need OCR, but {why}")
    return skipped, problems


def _ocr_page(page: Any, languages: tuple[str, ...], remaining: float | None) -> str:
    """OCR the page's embedded images (for a scan, the scan itself), largest first."""
    started = time.monotonic()
    images = []
    for image in page.images:
        pil = image.image
        if pil is None or min(pil.size) < _MIN_OCR_PIXELS:
            continue
        images.append((pil.size[0] * pil.size[1], image))
    images.sort(key=lambda item: item[0], reverse=True)
    texts = []
    for _, image in images[:_MAX_OCR_IMAGES_PER_PAGE]:
        budget = 60.0 if remaining is None else remaining - (time.monotonic() - started)
        texts.append(ocr.ocr_image(_image_bytes(image), languages, min(60.0, budget)))
    return "\n".join(t for t in texts if t)


def _image_bytes(image: Any) -> bytes:
    if image.name.lower().endswith(_OCR_PNG_FORMATS):
        return image.data
    buffer = io.BytesIO()
    pil = image.image
    if pil.mode not in ("1", "L", "RGB"):
        pil = pil.convert("RGB")
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def _no_text_message(name: str, skipped: list[int], ocr_enabled: bool, scanned: bool, problems: list[str]) -> str:
    where = _pages_label(skipped)
    if not scanned:
        return f"{name} has no text on {where}: it contains no text layer and no scanned images"
    if not ocr_enabled:
        hint = "turn OCR on, or run OCR on it first"
    elif not ocr.available_languages():
        hint = "install Tesseract OCR (with chi_tra, chi_sim, eng) or run OCR on it first"
    elif problems:
        hint = f"OCR could not read it ({problems[0]}); run OCR on it with another tool first"
    else:
        hint = "OCR found no text in it"
    return f"{name} has no text layer on {where}: it looks scanned; {hint}"


def _pages_label(numbers: list[int]) -> str:
    """'page 3', 'pages 1–3, 7'."""
    spans: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ("page " if len(numbers) == 1 else "pages ") + ", ".join(spans)


def _alnum(text: str) -> int:
    return sum(1 for ch in text if ch.isalnum())


def _title(reader: Any) -> str:
    try:
        meta = reader.metadata
        title = (meta.title or "").strip() if meta is not None else ""
    except Exception:  # noqa: BLE001 - broken metadata is not worth failing over
        return ""
    return title if len(title) >= 2 else ""


def _date(reader: Any) -> str | None:
    try:
        meta = reader.metadata
        when = meta.creation_date if meta is not None else None
    except Exception:  # noqa: BLE001
        return None
    return when.date().isoformat() if when is not None else None


def _metadata(reader: Any, page_count: int) -> dict[str, Any]:
    data: dict[str, Any] = {"page_count": page_count}
    try:
        meta = reader.metadata
        if meta is not None and meta.author:
            data["author"] = str(meta.author).strip()
    except Exception:  # noqa: BLE001
        pass
    return data


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."
