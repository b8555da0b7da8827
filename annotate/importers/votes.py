"""Multi-annotator pairwise votes (PandaLM's layout): a prompt, `response1` and `response2`, and one
column per annotator (`annotator1`, `annotator2`, …) voting 0 (tie), 1 (response1 better) or
2 (response2 better).

Each vote becomes one `pairwise` judgement with annotator `<source>:<column>` and
annotator_type `import`; response_ids = [response1, response2] (the order shown), scores [1, 0],
[0, 1] or [0.5, 0.5]. A null vote means that annotator did not vote on the record: no judgement.
"""

from __future__ import annotations

import re

from prefkit.annotate.importers import fields
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

VOTER = re.compile(r"^annotator_?\d+$")
SCORES = {0: [0.5, 0.5], 1: [1.0, 0.0], 2: [0.0, 1.0]}


def voters(keys) -> list[str]:
    return sorted((k for k in keys if VOTER.match(k)), key=lambda k: int(re.sub(r"\D", "", k)))


def convert(rec: Record, out: Rows, columns: list[str]) -> None:
    """`columns`: the annotator columns found in the file's first record (every record needs them)."""
    turns = fields.prompt(rec)
    pid = out.prompt(rec, turns)
    rids = [
        out.response(rec, pid, fields.response(rec, name, rec.get(name), turns), _model(rec, name))
        for name in ("response1", "response2")
    ]
    used = {
        "prompt",
        "messages",
        "instruction",
        "input",
        "system",
        "response1",
        "response2",
        "model1",
        "model2",
        *columns,
    }
    meta = fields.metadata(rec, used)
    for column in columns:
        vote = _vote(rec, column)
        if vote is not None:
            out.judgement(rec, pid, "pairwise", f"{out.source}:{column}", rids, SCORES[vote], metadata=meta)


def _vote(rec: Record, column: str) -> int | None:
    value = rec.get(column, fix="every record needs the annotator columns of the first record (null when no vote)")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value not in SCORES:
        raise ImportFailed(
            rec.where,
            column,
            f"is {value!r}",
            "a vote is 0 (tie), 1 (response1 better) or 2 (response2 better), or null for no vote",
        )
    return value


def _model(rec: Record, name: str) -> str | None:
    value = rec.data.get("model" + name[-1])
    return str(value) if value else None
