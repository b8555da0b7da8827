"""A chunk of contract rows being built from input records, deduplicated as it grows.

Prompts and responses are named by content, so the same prompt met again (PandaLM has 999 records
over 170 prompts), or already in the store, is written once. Imported judgements are named by the
record they came from (`ids.import_judgement_id`), so re-importing a file adds nothing.

A judgement is named by what it says (prompt, responses, scores, aspect, annotator, the record's
other fields) and by how many identical judgements came earlier in the same file: re-importing gives
the same ids, while genuine repeats stay distinct.

Rows are kept as tuples and handed to the store as Arrow tables built column by column: much
cheaper than converting a dict per row.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import pyarrow as pa
from prefkit.annotate.contract import SCHEMAS
from prefkit.annotate.importers import fastids
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fastids import import_judgement_id, prompt_id, response_id
from prefkit.annotate.importers.fields import Record

TABLE_ORDER = ("prompts", "responses", "judgements")
# Columns an import fills; the rest of each schema is constant for imported rows (see `table`).
_FILLED = {
    "prompts": ("prompt_id", "messages", "metadata"),
    "responses": ("response_id", "prompt_id", "content", "model", "generation"),
    "judgements": (
        "judgement_id",
        "prompt_id",
        "kind",
        "annotator",
        "response_ids",
        "scores",
        "aspect",
        "rationale",
        "metadata",
    ),
}
_CONSTANT = {
    "prompts": {},
    "responses": {"origin": "imported"},
    "judgements": {"annotator_type": "import", "both_bad": False, "status": "submitted", "guidelines": ""},
}
EMPTY_OUTPUT = '{"empty_output":true}'  # declares an empty imported answer deliberate (see validate.py)


class Seen:
    """Ids already in the store or already written by this import, per table."""

    def __init__(self, existing: dict[str, set[str]] | None = None):
        self.ids: dict[str, set[str]] = {t: set((existing or {}).get(t, ())) for t in TABLE_ORDER}


class Rows:
    """Rows for each table plus, per row, the input location it came from (for error messages).

    `occurrences` counts judgements per content key across the whole file (shared between chunks).
    """

    def __init__(self, seen: Seen, source: str, created_at: datetime, occurrences: Counter | None = None):
        self.seen, self.source, self.created_at = seen, source, created_at
        self.occurrences = occurrences if occurrences is not None else Counter()
        self.rows: dict[str, list[tuple]] = {t: [] for t in TABLE_ORDER}
        self.where: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.text_bytes = 0  # rough size of the chunk, to flush before it gets large

    def count(self, table: str) -> int:
        return len(self.where[table])

    def _add(self, table: str, row: tuple, where: str) -> None:
        ids = self.seen.ids[table]
        if row[0] not in ids:
            ids.add(row[0])
            self.rows[table].append(row)
            self.where[table].append(where)

    def prompt(self, rec: Record, messages: list[dict[str, str]], metadata: dict | None = None) -> str:
        pid = _checked(rec, prompt_id, messages)
        if pid not in self.seen.ids["prompts"]:
            self.text_bytes += sum(len(m["content"]) for m in messages)
            self._add("prompts", (pid, messages, _json(metadata)), rec.where)
        return pid

    def response(self, rec: Record, pid: str, content: str, model: str | None = None) -> str:
        rid = _checked(rec, response_id, pid, content)
        if rid not in self.seen.ids["responses"]:
            self.text_bytes += len(content)
            generation = "{}" if content.strip() else EMPTY_OUTPUT
            self._add("responses", (rid, pid, content, model or "unknown", generation), rec.where)
        return rid

    def judgement(
        self,
        rec: Record,
        pid: str,
        kind: str,
        annotator: str,
        response_ids: list[str],
        scores: list[float],
        *,
        part: str = "",
        aspect: str = "overall",
        rationale: str = "",
        metadata: dict | None = None,
    ) -> None:
        """One imported judgement. `part` tells apart several judgements made from one record and
        annotator (one per aspect and completion for ratings)."""
        meta = _json(metadata)
        key = _checked(
            rec, fastids.key, pid, kind, annotator + part, " ".join(response_ids), repr(scores), aspect, rationale, meta
        )
        jid = import_judgement_id(key, annotator + part, self.occurrences[key])
        self.occurrences[key] += 1
        self._add("judgements", (jid, pid, kind, annotator, response_ids, scores, aspect, rationale, meta), rec.where)

    def table(self, table: str) -> pa.Table:
        """The chunk's rows of `table` as Arrow, every column of the contract filled."""
        schema, n = SCHEMAS[table], self.count(table)
        filled = dict(zip(_FILLED[table], zip(*self.rows[table], strict=True), strict=True)) if n else {}
        columns = {}
        for f in schema:
            if f.name in _FILLED[table]:
                columns[f.name] = _array(filled.get(f.name, ()), f.type)
            elif f.name == "created_at":
                columns[f.name] = pa.array([self.created_at] * n, type=f.type)
            elif f.name in _CONSTANT[table]:
                columns[f.name] = pa.array([_CONSTANT[table][f.name]] * n, type=f.type)
            else:
                columns[f.name] = pa.nulls(n, type=f.type)
        columns["source"] = pa.array([self.source] * n, type=pa.string()) if table == "prompts" else None
        return pa.table({k: v for k, v in columns.items() if v is not None}, schema=schema)


def _array(values, type_: pa.DataType) -> pa.Array:
    """Python values → Arrow. Lists (messages, response_ids, scores) are flattened and given
    offsets directly: several times faster than letting pyarrow walk a dict per message."""
    if not pa.types.is_list(type_):
        return pa.array(values, type=type_)
    offsets, flat, total = [0], [], 0
    for items in values:
        total += len(items)
        offsets.append(total)
        flat.extend(items)
    child = type_.value_type
    if pa.types.is_struct(child):
        fields = [child.field(i) for i in range(child.num_fields)]
        inner = pa.StructArray.from_arrays(
            [pa.array([m[f.name] for m in flat], type=f.type) for f in fields], fields=fields
        )
    else:
        inner = pa.array(flat, type=child)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner, type=type_)


def _checked(rec: Record, make_id, *args) -> str:
    try:
        return make_id(*args)
    except UnicodeEncodeError as exc:
        raise ImportFailed(
            rec.where,
            None,
            f"text holds an unpaired surrogate escape ({exc.object[exc.start]!r}), which is not valid Unicode",
            "fix or remove that \\uXXXX escape",
        ) from None


def _json(value: dict | None) -> str:
    if not value:
        return "{}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
