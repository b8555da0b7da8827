"""Bare prompts, to generate responses for or label later: `prompt` (or `messages`, or
`instruction` + `input`). Every other field goes into the prompt's metadata (category, tags, gold
answer), where curation and the app can read it.
"""

from __future__ import annotations

from prefkit.annotate.importers import fields
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

USED = {"prompt", "messages", "instruction", "input", "system", "metadata"}


def convert(rec: Record, out: Rows) -> None:
    turns = fields.prompt(rec)
    out.prompt(rec, turns, prompt_metadata(rec, USED))


def prompt_metadata(rec: Record, used: set[str]) -> dict:
    meta = fields.metadata(rec, used)
    given = rec.data.get("metadata")
    if isinstance(given, dict):
        meta.update(given)
    elif given not in (None, "", "{}"):
        meta["metadata"] = given
    return meta
