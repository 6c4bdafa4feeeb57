"""Clean-up for e-mail and newsgroup style text: headers, quoted replies and signatures say little about what
a message is about and swamp topic keywords with names and addresses."""

from __future__ import annotations

import re

_QUOTE = re.compile(r"^\s*(>|\|>|:|\|)")
_WRITES = re.compile(r"(writes|wrote|said|says)\s*:\s*$", re.I)
_IN_ARTICLE = re.compile(r"^\s*In (article|message) <", re.I)
_EMAIL = re.compile(r"\S+@\S+")


def email_body(raw: str) -> str:
    """The subject (without "Re:") and the body of a message, without quoted lines, attribution lines,
    e-mail addresses and a short trailing signature (after a "--" line, as sklearn's 20 Newsgroups loader)."""
    head, sep, body = raw.partition("\n\n")
    if not sep:
        head, body = "", raw
    subject = ""
    for line in head.splitlines():
        if line.lower().startswith("subject:"):
            subject = re.sub(r"^(re:\s*)+", "", line[8:].strip(), flags=re.I)
    lines = body.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() in ("--", "-- "):
            if len(lines) - i < 12:
                lines = lines[:i]
            break
    kept = [line for line in lines if not (_QUOTE.match(line) or _WRITES.search(line) or _IN_ARTICLE.match(line))]
    text = _EMAIL.sub(" ", subject + "\n" + "\n".join(kept))
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()
