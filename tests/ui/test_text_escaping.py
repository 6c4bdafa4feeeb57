"""Document and model text shown through components.text: escaped, with only our own highlight markup."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from ui_helpers import unescape

from components.text import escape_answer_markdown, escape_markdown, highlight_markdown, inline

SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|~<>$:&]")


def unescaped_specials(markdown: str) -> list[str]:
    """Special characters left once every backslash escape pair is removed."""
    return SPECIAL.findall(re.sub(r"\\.", "", markdown))


def _strip_escapes_and_marks(markdown: str) -> str:
    return unescape(re.sub(r":orange-background\[((?:\\.|[^\]\\])*)\]", r"\1", markdown))


@given(st.text(max_size=200).filter(lambda s: "\n" not in s and "\r" not in s))
def test_one_line_round_trips(text):
    shown = inline(text)
    assert unescape(shown) == " ".join(text.split())
    # every special character is escaped: pairs of backslashes are escaped backslashes
    assert not unescaped_specials(shown)


def test_html_script_links_and_directives_are_inert():
    text = "<script>alert(1)</script> [x](javascript:y) ![i](http://e/x.png) $m$ :red[r] &amp; **b** `c`"
    shown = escape_markdown(text)
    assert unescape(shown) == text
    assert not unescaped_specials(shown)


def test_newlines_become_breaks_and_paragraphs():
    assert escape_markdown("a\nb\n\n\nc") == "a  \nb\n\nc"


@given(st.text(alphabet="ab<>*\n 颱風[]", max_size=60), st.integers(0, 60), st.integers(0, 60))
def test_highlight_only_adds_our_markup(text, a, b):
    start, end = min(a, b), max(a, b)
    shown = highlight_markdown(text, start, end)
    # The visible text is the original (modulo whitespace at line ends and blank-line runs).
    visible = _strip_escapes_and_marks(shown).replace("  \n", "\n")
    assert "".join(visible.split()) == "".join(text.split())
    assert "<" not in shown.replace("\\<", "")


def test_highlight_marks_the_cited_span_line_by_line():
    text = "第一句。\n第二句<b>。\n第三句。"
    shown = highlight_markdown(text, spans=[(5, 16)])
    assert ":orange-background[第二句\\<b\\>。]" in shown
    assert ":orange-background[第三句]。" in shown and "第一句" in shown and ":orange-background[第一" not in shown


def test_answers_keep_quote_markers_but_escape_their_text():
    answer = "Quoted from your documents:\n\n> <img src=x> tea [1]\n>\n> **b** [2]"
    shown = escape_answer_markdown(answer)
    assert shown.splitlines()[2] == "> \\<img src=x\\> tea \\[1\\]"
    assert shown.splitlines()[3] == ">"
    assert "\\*\\*b\\*\\*" in shown
