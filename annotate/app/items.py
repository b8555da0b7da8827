"""Items to label, built from the store, and the small pure helpers the annotate page needs.

An item is what one person judges once: a kind, a prompt, and the responses shown. Its key is
`kind|prompt_id|sorted response ids`, computable from any judgement row too (a `revision` judgement
counts for the `edit` item of its original response), so "who judged what" is derived from the
judgements table without any extra bookkeeping column.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass

import duckdb
from prefkit.annotate.ids import content_hash

ORIGINAL = ("imported", "generated")  # responses that are labelled; edits and revisions are not
PER_RESPONSE = ("binary", "rating", "edit", "steps")


@dataclass(frozen=True)
class Item:
    kind: str  # a task kind: pairwise, ranking, binary, rating, edit, steps
    prompt_id: str
    response_ids: tuple[str, ...]  # sorted: the canonical order, not the order shown

    @property
    def key(self) -> str:
        return item_key(self.kind, self.prompt_id, self.response_ids)


def item_key(kind: str, prompt_id: str, response_ids) -> str:
    return "|".join([kind, prompt_id, *sorted(response_ids)])


def judgement_item_key(kind: str, prompt_id: str, response_ids: list[str]) -> str:
    """The item a judgement row counts for."""
    if kind == "revision":
        return item_key("edit", prompt_id, response_ids[:1])
    return item_key(kind, prompt_id, response_ids)


def parse_key(key: str) -> Item:
    kind, prompt_id, *rids = key.split("|")
    return Item(kind, prompt_id, tuple(rids))


# SQL that lists the items of each kind; `?` is the most responses a ranking item shows.
_ITEM_SQL = {
    "pairwise": """SELECT prompt_id, list_sort(list(response_id))[1:2] AS rids FROM r
                   GROUP BY prompt_id HAVING count(*) >= 2""",
    "ranking": """SELECT prompt_id, list_sort(list(response_id))[1:?] AS rids FROM r
                  GROUP BY prompt_id HAVING count(*) >= 3""",
    "per_response": "SELECT prompt_id, [response_id] AS rids FROM r",
}


def build_items(con: duckdb.DuckDBPyConnection, kind: str, max_responses: int = 4) -> list[Item]:
    """Every item of `kind` in the store behind `con` (a `Store.connect()` connection), in key order."""
    # a view cannot take ? parameters; ORIGINAL is a constant of this module, not user input
    origins = ", ".join(f"'{o}'" for o in ORIGINAL)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW r AS SELECT prompt_id, response_id FROM responses WHERE origin IN ({origins})"
    )
    if kind == "ranking":
        rows = con.execute(_ITEM_SQL["ranking"], [max_responses]).fetchall()
    else:
        rows = con.execute(_ITEM_SQL["per_response" if kind in PER_RESPONSE else kind]).fetchall()
    items = [Item(kind, pid, tuple(rids)) for pid, rids in rows]
    items.sort(key=lambda it: it.key)
    return items


def gold_answers(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """prompt_id → the response_id a gold item must prefer, from prompt metadata `{"gold": {"preferred": id}}`."""
    rows = con.execute(
        """SELECT prompt_id, json_extract_string(metadata, '$.gold.preferred') FROM prompts
           WHERE json_extract_string(metadata, '$.gold.preferred') IS NOT NULL"""
    ).fetchall()
    return dict(rows)


def display_order(login: str, key: str, response_ids) -> list[str]:
    """The responses in the order this person sees them: shuffled, but the same on every rerun."""
    order = list(response_ids)
    random.Random(content_hash([login, key])).shuffle(order)
    return order


# -- steps --------------------------------------------------------------------------------------

_STEP_MARK = re.compile(r"^\s*(?:step\s*\d+\s*[:.)\-]|\d+[.)]\s|[-*]\s)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def split_steps(text: str) -> list[str]:
    """A response cut into reasoning steps: at "Step N"/numbered/bulleted lines when there are
    several, else at blank lines, else at sentence ends. Joining the steps gives the text back
    (whitespace aside)."""
    lines = text.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if _STEP_MARK.match(line)]
    if len(starts) >= 2:
        if starts[0] != 0:
            starts.insert(0, 0)
        bounds = [*starts, len(lines)]
        steps = ["\n".join(lines[a:b]).strip() for a, b in zip(bounds, bounds[1:], strict=False)]
    else:
        steps = [p.strip() for p in re.split(r"\n\s*\n", text.strip())]
        if len(steps) < 2:
            steps = [s.strip() for s in _SENTENCE_END.split(text.strip())]
    return [s for s in steps if s]


# -- edits --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(before: str, after: str) -> str:
    """A word-level diff as plain text: `[-removed-]{+added+}` (shown as text, never as HTML)."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
            continue
        if i2 > i1:
            out.append("[-" + "".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + "".join(b[j1:j2]) + "+}")
    return "".join(out)


def edit_ratio(before: str, after: str) -> float:
    """Share of word tokens changed (0 = identical)."""
    a, b = before.split(), after.split()
    return 1.0 - difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def metadata(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
