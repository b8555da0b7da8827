"""Prompt and response texts held in memory (Arrow), looked up by id in O(1), and made safe to
render.

Loaded once per app process: showing the next item must not query Parquet. Arrow keeps the strings
compactly (about the size of the text itself).
"""

from __future__ import annotations

import re

import pyarrow as pa
from prefkit.annotate.store import Store


class Content:
    def __init__(self, store: Store):
        con = store.connect()
        try:
            self.prompts: pa.Table = con.sql("SELECT prompt_id, messages, metadata FROM prompts").to_arrow_table()
            self.responses: pa.Table = con.sql(
                "SELECT response_id, content, model, origin, parent_id FROM responses"
            ).to_arrow_table()
        finally:
            con.close()
        self._prompt_row = {pid: i for i, pid in enumerate(self.prompts.column("prompt_id").to_pylist())}
        self._response_row = {rid: i for i, rid in enumerate(self.responses.column("response_id").to_pylist())}
        self._added: dict[str, str] = {}  # responses written by this process (edits)

    def messages(self, prompt_id: str) -> list[dict[str, str]]:
        return self.prompts.column("messages")[self._prompt_row[prompt_id]].as_py()

    def text(self, response_id: str) -> str:
        if response_id in self._added:
            return self._added[response_id]
        return self.responses.column("content")[self._response_row[response_id]].as_py()

    def add(self, response_id: str, content: str) -> None:
        self._added[response_id] = content


# `![` opens a Markdown image (inline `![a](url)` or reference `![a][ref]`); a zero-width space after
# the `!` breaks every form of it, and is invisible, code spans and blocks included.
_IMAGE_OPENER = re.compile(r"!\[")


def inert_images(text: str) -> str:
    """Model text with its Markdown images turned into links: the browser fetches nothing by itself.

    A model (or whoever wrote an imported file) could otherwise make every annotator's browser
    request a URL of its choosing (a tracking pixel that learns who labels, when, from where). The
    link text and address stay readable; following one is the annotator's choice. Raw HTML, `<img>`
    included, is already shown as text by st.markdown.
    """
    return _IMAGE_OPENER.sub("!\u200b[", text)
