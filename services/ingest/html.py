"""HTML: the visible text (no scripts, styles, head), the <title>, and the charset the page declares.

We walk lxml's tree with ``iterwalk`` (C speed, no recursion) instead of editing a BeautifulSoup tree: bs4's
insert/decompose calls are linear in the number of siblings, which made a 300 KB page take 25 s and a deeply
nested one run into the timeout. libxml2's HTML parser never loads DTDs or resolves external entities.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

from services.ingest.encoding import decode_bytes
from services.models import ParsedDocument, ParsedPage

_INVISIBLE = frozenset(
    {"script", "style", "noscript", "template", "head", "iframe", "object", "embed", "svg", "canvas", "math"}
)
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "dd", "details", "dialog", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
        "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr",
        "ul", "body", "html",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_SOURCE_BREAKS = str.maketrans("\r\n", "  ")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# An internal DTD subset (<!DOCTYPE x [ <!ENTITY ...> ]>) has no business in HTML; the HTML parser would
# show it as text. It is only ever a probe for entity expansion, so it is cut before parsing.
_INTERNAL_SUBSET = re.compile(r"<!DOCTYPE[^\[>]*\[.*?\]\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
# A line break in the source inside a Chinese paragraph is rendered as nothing by browsers: drop the space.
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")
# WHATWG: these labels mean something broader in practice (GB2312 pages use GBK characters, and so on).
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "big5": "cp950", "big5-hkscs": "big5hkscs",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252",
    "utf-16": "utf-8", "utf-16le": "utf-8", "utf-16be": "utf-8",  # a <meta> can't declare UTF-16 (it'd be unreadable)
}  # fmt: skip


def parse(path: Path, name: str) -> ParsedDocument:
    text, encoding = decode_html(path.read_bytes(), name)
    title, body = html_text(text)
    return ParsedDocument(
        source=name,
        kind="html",
        pages=[ParsedPage(number=1, text=body)],
        title=title,
        metadata={"encoding": encoding},
    )


def decode_html(data: bytes, name: str) -> tuple[str, str]:
    """Decode with the BOM, else the <meta> charset when it decodes cleanly, else detection."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return decode_bytes(data, name)
    declared = _declared_charset(data[:4096])
    if declared is not None:
        try:
            return data.decode(declared), declared
        except UnicodeDecodeError:
            pass  # a wrong declaration is common (a page re-saved by an editor in another encoding)
    return decode_bytes(data, name)


def _declared_charset(head: bytes) -> str | None:
    found = _META_CHARSET.search(head)
    if not found:
        return None
    label = found.group(1).decode("ascii", "ignore").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def html_text(text: str) -> tuple[str, str]:
    """(title, visible text) of an HTML document."""
    from lxml import etree

    head = _INTERNAL_SUBSET.sub("", text[:65536], count=1)
    text = head + text[65536:]
    # huge_tree lifts libxml2's nesting limit of 256, past which it silently drops the rest of the page (real
    # generated pages go deeper); HTML mode never expands entities, so this opens no entity bomb.
    parser = etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        default_doctype=False,
        huge_tree=True,
    )
    root = etree.fromstring(text.encode("utf-8"), parser)
    if root is None:
        return "", ""
    title_node = root.find(".//title")
    title = _SPACES.sub(" ", title_node.text or "").strip() if title_node is not None else ""
    return title, _tidy(_visible_parts(root))


def _visible_parts(root: Any) -> list[str]:
    from lxml import etree

    parts: list[str] = []
    hidden: set[Any] = set()
    in_pre = 0  # inside <pre>, source line breaks are real; elsewhere they are just spaces

    def add(text: str | None) -> None:
        if text:
            parts.append(text if in_pre else text.translate(_SOURCE_BREAKS))

    walker = etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if event == "start":
            if tag in _INVISIBLE or _is_hidden(element):
                hidden.add(element)
                walker.skip_subtree()
                continue
            if tag in _BLOCKS or tag == "br":
                parts.append("\n")
            in_pre += tag == "pre"
            add(element.text)
            continue
        if element in hidden:
            hidden.discard(element)
        elif tag in _BLOCKS:
            in_pre -= tag == "pre"
            parts.append("\n")
        elif tag in _CELLS:
            parts.append(" | ")
        add(element.tail)
    return parts


def _tidy(parts: list[str]) -> str:
    lines = []
    for line in "".join(parts).split("\n"):
        line = _CJK_SPACE.sub("", _SPACES.sub(" ", line)).strip()
        while line.endswith("|"):
            line = line[:-1].rstrip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def _is_hidden(element: Any) -> bool:
    attributes = element.attrib
    if "hidden" in attributes or attributes.get("aria-hidden", "").lower() == "true":
        return True
    style = attributes.get("style", "").replace(" ", "").lower()
    return "display:none" in style or "visibility:hidden" in style
