"""A chunk of contract rows being built from input records, deduplicated as it grows.

Prompts and responses are named by content, so the same prompt met again (PandaLM has 999 records
over 170 prompts), or already in the store, is written once. Imported judgements are named by the
record they came from (`ids.import_judgement_id`), so re-importing a file adds nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from annotate.ids import import_judgement_id, prompt_id, response_id
from annotate.importers.fields import Record

TABLE_ORDER = ("prompts", "responses", "judgements")


class Seen:
    """Ids already in the store or already written by this import, per table."""

    def __init__(self, existing: dict[str, set[str]] | None = None):
        self.ids: dict[str, set[str]] = {t: set((existing or {}).get(t, ())) for t in TABLE_ORDER}

    def add(self, table: str, row_id: str) -> bool:
        """True when `row_id` is new (and remember it)."""
        ids = self.ids[table]
        if row_id in ids:
            return False
        ids.add(row_id)
        return True


class Rows:
    """Rows for each table plus, per row, the input location it came from (for error messages)."""

    def __init__(self, seen: Seen, source: str, created_at: datetime):
        self.seen, self.source, self.created_at = seen, source, created_at
        self.tables: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLE_ORDER}
        self.where: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.text_bytes = 0  # rough size of the chunk, to flush before it gets large

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.tables.values())

    def _add(self, table: str, row_id: str, row: dict[str, Any], where: str) -> None:
        if self.seen.add(table, row_id):
            row["created_at"] = self.created_at
            self.tables[table].append(row)
            self.where[table].append(where)

    def prompt(self, rec: Record, messages: list[dict[str, str]], metadata: dict | None = None) -> str:
        pid = prompt_id(messages)
        if pid not in self.seen.ids["prompts"]:
            self.text_bytes += sum(len(m["content"]) for m in messages)
            meta = json.dumps(metadata or {}, ensure_ascii=False, sort_keys=True, default=str)
            row = {"prompt_id": pid, "messages": messages, "source": self.source, "metadata": meta}
            self._add("prompts", pid, row, rec.where)
        return pid

    def response(self, rec: Record, pid: str, content: str, model: str | None = None) -> str:
        rid = response_id(pid, content)
        if rid not in self.seen.ids["responses"]:
            self.text_bytes += len(content)
            row = {
                "response_id": rid, "prompt_id": pid, "content": content, "model": model or "unknown",
                "origin": "imported", "parent_id": None,
                # an empty answer is kept as data, declared so validation knows it is deliberate
                "generation": '{"empty_output":true}' if not content.strip() else "{}",
            }
            self._add("responses", rid, row, rec.where)
        return rid

    def judgement(self, rec: Record, pid: str, kind: str, annotator: str, response_ids: list[str],
                  scores: list[float], *, part: str = "", **columns: Any) -> None:
        """One imported judgement. `part` tells apart several judgements made from one record and
        annotator (one per aspect and completion for ratings)."""
        jid = import_judgement_id(rec.hash, annotator + part, rec.occurrence)
        meta = columns.pop("metadata", None)
        row = {
            "judgement_id": jid, "prompt_id": pid, "kind": kind, "annotator": annotator,
            "annotator_type": "import", "response_ids": response_ids, "scores": scores,
            "both_bad": False, "aspect": "overall", "rationale": "", "status": "submitted",
            "guidelines": "", "metadata": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True, default=str),
            **columns,
        }
        self._add("judgements", jid, row, rec.where)
