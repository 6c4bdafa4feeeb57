"""Entry point: page configuration and navigation only (each page lives in pages/)."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="Ask your documents", page_icon=":material/menu_book:", layout="wide")

pages = [
    st.Page("pages/library.py", title="Library", icon=":material/library_books:", default=True),
    st.Page("pages/chat.py", title="Ask", icon=":material/forum:"),
]
# The topic map is optional: it appears once its page exists.
if (ROOT / "pages" / "topics.py").is_file():
    pages.insert(1, st.Page("pages/topics.py", title="Topics", icon=":material/bubble_chart:"))

st.navigation(pages).run()
