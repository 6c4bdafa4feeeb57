"""The one way the UI reports a failure: the error's message for the person, the traceback for the log."""

from __future__ import annotations

import logging

import streamlit as st

from components.text import escape_markdown
from services.errors import DocQAError

log = logging.getLogger("docqa.ui")


def show_error(exc: BaseException, *, doing: str = "") -> None:
    """Show ``exc`` in the page. A DocQAError's message is meant for people and shown as is (escaped: it
    may quote a file name); anything else is a bug, logged with its traceback and shown as a short notice."""
    if isinstance(exc, DocQAError):
        log.info("user-facing error%s: %s", f" while {doing}" if doing else "", exc.message)
        st.error(escape_markdown(exc.message), icon=":material/error:")
        return
    log.error("unexpected error%s", f" while {doing}" if doing else "", exc_info=exc)
    what = f" while {doing}" if doing else ""
    st.error(
        escape_markdown(f"Something went wrong{what}. The details are in the server log ({type(exc).__name__})."),
        icon=":material/error:",
    )


def show_notices(notices: list[str]) -> None:
    """Messages from services about repairs or fallbacks (index rebuilt, LLM unreachable, …)."""
    for notice in dict.fromkeys(notices):  # the same repair reported twice is shown once
        st.info(escape_markdown(notice), icon=":material/info:")


_DISMISSED = "_dismissed_notices"


def show_shared_notices(notices: list[str], *, key: str) -> None:
    """Notices that every session shares (the library's repair reports): each session can dismiss them, so a
    repair made at start-up does not stay on everyone's pages until the server restarts."""
    dismissed: set[str] = st.session_state.setdefault(_DISMISSED, set())
    pending = [n for n in dict.fromkeys(notices) if n not in dismissed]
    if not pending:
        return
    show_notices(pending)
    if st.button("Dismiss", key=f"{key}_dismiss_notices", icon=":material/close:", type="tertiary"):
        dismissed.update(pending)
        st.rerun()
