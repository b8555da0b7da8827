"""Preference pairs: `prompt` + `chosen` + `rejected`, or implicit-prompt pairs (`chosen` and
`rejected` full transcripts; the prompt is what they share).

Texts may be strings or conversational message lists (TRL's "standard" and "conversational"
formats). Each record becomes one `pairwise` judgement: response_ids = [chosen, rejected],
scores = [1, 0].
"""

from __future__ import annotations

from prefkit.annotate.importers import fields
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

USED = {"prompt", "messages", "instruction", "input", "system", "chosen", "rejected", "chosen_model", "rejected_model"}


def convert(rec: Record, out: Rows) -> None:
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    if any(k in rec.data for k in fields.PROMPT_FIELDS):
        turns = fields.prompt(rec)
        good = fields.response(rec, "chosen", chosen, turns)
        bad = fields.response(rec, "rejected", rejected, turns)
    else:
        turns, good, bad = split_shared_prompt(rec, chosen, rejected)
    add_pair(rec, out, turns, good, bad)


def add_pair(rec: Record, out: Rows, turns: list[dict[str, str]], good: str, bad: str) -> None:
    if good == bad:
        # one response preferred to itself teaches nothing, and its id would be both sides of the pair
        raise ImportFailed(
            rec.where,
            "rejected",
            "is the same text as 'chosen'",
            "a pair needs two different responses: fix the record or drop it",
        )
    pid = out.prompt(rec, turns)
    rids = [
        out.response(rec, pid, good, _model(rec, "chosen_model")),
        out.response(rec, pid, bad, _model(rec, "rejected_model")),
    ]
    out.judgement(rec, pid, "pairwise", out.source, rids, [1.0, 0.0], metadata=fields.metadata(rec, USED))


def split_shared_prompt(rec: Record, chosen, rejected) -> tuple[list[dict[str, str]], str, str]:
    """Implicit prompt: the longest shared beginning of the two transcripts is the prompt."""
    if isinstance(chosen, list) and isinstance(rejected, list):
        a = fields.messages(rec, "chosen", chosen, answer=True)
        b = fields.messages(rec, "rejected", rejected, answer=True)
        n = 0
        while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
            n += 1
        if n == 0:
            raise ImportFailed(
                rec.where,
                "chosen",
                "shares no opening turns with 'rejected', so there is no prompt to find",
                "add a 'prompt' field, or give both full conversations",
            )
        return a[:n], fields.last_assistant(rec, "chosen", a[n:]), fields.last_assistant(rec, "rejected", b[n:])
    if isinstance(chosen, list) or isinstance(rejected, list):
        raise ImportFailed(
            rec.where,
            "rejected",
            "is not the same kind of value as 'chosen' (text vs messages)",
            "give both as text or both as message lists",
        )
    a = fields.text(rec, "chosen", chosen, allow_empty=False)
    b = fields.text(rec, "rejected", rejected, allow_empty=False)
    n = _common_prefix(a, b)
    if not a[:n].strip():
        raise ImportFailed(
            rec.where,
            "chosen",
            "shares no opening text with 'rejected', so there is no prompt to find",
            "add a 'prompt' field",
        )
    return [{"role": "user", "content": a[:n]}], a[n:], b[n:]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _model(rec: Record, name: str) -> str | None:
    value = rec.data.get(name)
    return str(value) if value else None
