"""Unpaired feedback (thumbs up/down, KTO-style): `prompt` + `completion` + `label`.

Each record becomes one `binary` judgement: response_ids = [completion], scores = [1] for a good
label, [0] for a bad one.
"""

from __future__ import annotations

from prefkit.annotate.importers import fields
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

GOOD = {"true", "1", "yes", "up", "good", "thumbs_up", "positive", "+1"}
BAD = {"false", "0", "no", "down", "bad", "thumbs_down", "negative", "-1"}
USED = {"prompt", "messages", "instruction", "input", "system", "completion", "label", "model"}


def convert(rec: Record, out: Rows) -> None:
    turns = fields.prompt(rec)
    content = fields.response(rec, "completion", rec.get("completion"), turns)
    good = label(rec, rec.get("label"))
    pid = out.prompt(rec, turns)
    model = rec.data.get("model")
    rid = out.response(rec, pid, content, str(model) if model else None)
    out.judgement(rec, pid, "binary", out.source, [rid], [1.0 if good else 0.0], metadata=fields.metadata(rec, USED))


def label(rec: Record, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in GOOD | BAD:
        return value.strip().lower() in GOOD
    raise ImportFailed(
        rec.where, "label", f"is {value!r}", "give true/false (also accepted: 1/0, yes/no, up/down, good/bad)"
    )
