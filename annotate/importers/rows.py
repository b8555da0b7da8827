"""A chunk of contract rows being built from input records, deduplicated as it grows.

Prompts and responses are named by content, so the same prompt met again (PandaLM has 999 records
over 170 prompts), or already in the store, is written once. Imported judgements are named by the
record they came from (`ids.import_judgement_id`), so re-importing a file adds nothing.

Rows are kept column by column and handed to the store as Arrow tables: converting a few lists is
much cheaper than converting a dict per row.
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

from annotate.contract import SCHEMAS
from annotate.ids import import_judgement_id, prompt_id, response_id
from annotate.importers.fields import Record

TABLE_ORDER = ("prompts", "responses", "judgements")
# Columns an import fills; the rest of each schema is constant for imported rows (see `table`).
_FILLED = {
    "prompts": ("prompt_id", "messages", "metadata"),
    "responses": ("response_id", "prompt_id", "content", "model", "generation"),
    "judgements": ("judgement_id", "prompt_id", "kind", "annotator", "response_ids", "scores", "aspect",
                   "rationale", "metadata"),
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
    """Rows for each table plus, per row, the input location it came from (for error messages)."""

    def __init__(self, seen: Seen, source: str, created_at: datetime):
        self.seen, self.source, self.created_at = seen, source, created_at
        self.cols: dict[str, dict[str, list]] = {t: {c: [] for c in _FILLED[t]} for t in TABLE_ORDER}
        self.where: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.text_bytes = 0  # rough size of the chunk, to flush before it gets large

    def count(self, table: str) -> int:
        return len(self.where[table])

    def _add(self, table: str, row_id: str, where: str, values: tuple) -> bool:
        ids = self.seen.ids[table]
        if row_id in ids:
            return False
        ids.add(row_id)
        for column, value in zip(self.cols[table].values(), (row_id, *values), strict=True):
            column.append(value)
        self.where[table].append(where)
        return True

    def prompt(self, rec: Record, messages: list[dict[str, str]], metadata: dict | None = None) -> str:
        pid = prompt_id(messages)
        if pid not in self.seen.ids["prompts"]:
            self.text_bytes += sum(len(m["content"]) for m in messages)
            self._add("prompts", pid, rec.where, (messages, _json(metadata)))
        return pid

    def response(self, rec: Record, pid: str, content: str, model: str | None = None) -> str:
        rid = response_id(pid, content)
        if rid not in self.seen.ids["responses"]:
            self.text_bytes += len(content)
            generation = "{}" if content.strip() else EMPTY_OUTPUT
            self._add("responses", rid, rec.where, (pid, content, model or "unknown", generation))
        return rid

    def judgement(self, rec: Record, pid: str, kind: str, annotator: str, response_ids: list[str],
                  scores: list[float], *, part: str = "", aspect: str = "overall", rationale: str = "",
                  metadata: dict | None = None) -> None:
        """One imported judgement. `part` tells apart several judgements made from one record and
        annotator (one per aspect and completion for ratings)."""
        jid = import_judgement_id(rec.hash, annotator + part, rec.occurrence)
        self._add("judgements", jid, rec.where,
                  (pid, kind, annotator, response_ids, scores, aspect, rationale, _json(metadata)))

    def table(self, table: str) -> pa.Table:
        """The chunk's rows of `table` as Arrow, every column of the contract filled."""
        schema, n = SCHEMAS[table], self.count(table)
        columns = {}
        for f in schema:
            if f.name in self.cols[table]:
                columns[f.name] = pa.array(self.cols[table][f.name], type=f.type)
            elif f.name == "created_at":
                columns[f.name] = pa.array([self.created_at] * n, type=f.type)
            elif f.name in _CONSTANT[table]:
                columns[f.name] = pa.array([_CONSTANT[table][f.name]] * n, type=f.type)
            else:
                columns[f.name] = pa.nulls(n, type=f.type)
        columns["source"] = pa.array([self.source] * n, type=pa.string()) if table == "prompts" else None
        return pa.table({k: v for k, v in columns.items() if v is not None}, schema=schema)


def _json(value: dict | None) -> str:
    if not value:
        return "{}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
