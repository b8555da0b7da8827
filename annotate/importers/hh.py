"""Anthropic HH-style transcripts: `chosen` and `rejected` are whole conversations written as
"\\n\\nHuman: …\\n\\nAssistant: …", possibly many turns. The turns before the last Assistant turn are
the prompt (they must be the same in both); the last Assistant turns are the two responses.
"""

from __future__ import annotations

import re

from prefkit.annotate.importers import fields, pairs
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant): ?")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def looks_like(value) -> bool:
    return isinstance(value, str) and bool(re.match(r"\s*Human:", value)) and "\n\nAssistant:" in value


def parse(rec: Record, name: str, transcript) -> list[dict[str, str]]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' → [{user: a}, {assistant: b}]."""
    value = fields.text(rec, name, transcript, allow_empty=False).lstrip("\n ")
    marks = list(_TURN.finditer(value))
    if not marks or marks[0].start() != 0:
        raise ImportFailed(
            rec.where,
            name,
            "does not start with 'Human:'",
            "give an HH transcript ('\\n\\nHuman: …\\n\\nAssistant: …') or use --format pairs",
        )
    turns = []
    for mark, nxt in zip(marks, [*marks[1:], None], strict=True):
        end = nxt.start() if nxt else len(value)
        turns.append({"role": _ROLE[mark.group(1)], "content": value[mark.end() : end]})
    if turns[-1]["role"] != "assistant":
        raise ImportFailed(
            rec.where,
            name,
            "does not end with an 'Assistant:' turn",
            "the last turn of each transcript must be the response being compared",
        )
    for i, t in enumerate(turns[:-1]):
        if not t["content"].strip():
            raise ImportFailed(rec.where, name, f"turn {i + 1} ({t['role']}) is empty", "remove the empty turn")
    return turns


def convert(rec: Record, out: Rows) -> None:
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    head = rec.data.get("prompt")
    if isinstance(head, str) and looks_like(head + "\n\nAssistant:"):
        # the prompt column holds the conversation so far ("…\n\nAssistant:"), the others the answers
        chosen, rejected = (
            head + fields.text(rec, "chosen", chosen, allow_empty=True),
            head + fields.text(rec, "rejected", rejected, allow_empty=True),
        )
    a = parse(rec, "chosen", chosen)
    b = parse(rec, "rejected", rejected)
    if a[:-1] != b[:-1]:
        raise ImportFailed(
            rec.where,
            "rejected",
            "differs from 'chosen' before the last Assistant turn",
            "both transcripts must share every turn but the last",
        )
    pairs.add_pair(rec, out, a[:-1], a[-1]["content"], b[-1]["content"])
