"""Task assignment: which item a person labels next, with leases so that concurrent annotators never
push an item past its k judgements and nobody judges the same item twice.

Two kinds of state:
- `Index` (in memory, one per app process, shared by its sessions): the items of each task and who
  has judged each one. Built once from the judgements table, then updated on the app's own writes,
  so choosing the next item never rescans the store.
- `Leases` (SQLite in WAL mode at `<store>/app/assign.sqlite`, shared by every process on the
  store): the items served and not yet answered (with an expiry), and the items answered through
  the app. Claiming runs in one `BEGIN IMMEDIATE` transaction, which serialises claimers across
  threads and processes, so two people can never take the last free slot of an item together.

An item's judges are the union of the annotators the index knows from the Parquet store and those
the lease database has recorded, so a judgement counted in both places is counted once.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefkit.annotate.app.items import Item, build_items
from prefkit.annotate.app.project import Project
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import PRIVATE_DIR, PRIVATE_FILE, Store

COUNTED = ("submitted", "flagged")  # statuses that use up one of an item's k slots

_KEY_SQL = """CASE WHEN kind = 'revision' THEN 'edit|' || prompt_id || '|' || response_ids[1]
                   ELSE kind || '|' || prompt_id || '|' || array_to_string(list_sort(response_ids), '|') END"""


@dataclass
class Progress:
    mine: int  # items this person has answered in this task
    filled: int  # judgements counted towards k, over all items (capped at k per item)
    needed: int  # items × k
    items: int


class Index:
    """Items per task and who judged what; thread-safe, updated in place on the app's own writes."""

    def __init__(self, store: Store, project: Project):
        self.project = project
        self.lock = threading.Lock()
        con = store.connect()
        try:
            self.items: dict[str, list[Item]] = {
                t.kind: build_items(con, t.kind, t.max_responses) for t in project.tasks
            }
            self.judged: dict[str, set[str]] = defaultdict(set)  # item key → annotators (counted statuses)
            self.skipped: dict[str, set[str]] = defaultdict(set)  # annotator → item keys skipped
            self.mine: dict[tuple[str, str], int] = defaultdict(int)  # (annotator, kind) → answered
            rows = con.execute(
                f"SELECT {_KEY_SQL} AS key, annotator, status FROM judgements "
                "WHERE annotator_type = 'human' AND status IN ('submitted', 'flagged', 'skipped')"
            ).fetchall()
            for key, annotator, status in rows:
                self._note(key, annotator, status)
            self.gold = self._gold(con)
            self.ai = self._ai_verdicts(con)
        finally:
            con.close()
        self.keys = {kind: {it.key: i for i, it in enumerate(items)} for kind, items in self.items.items()}
        self.filled = {
            t.kind: sum(min(len(self.judged.get(it.key, ())), t.overlap) for it in self.items[t.kind])
            for t in project.tasks
        }

    def _note(self, key: str, annotator: str, status: str) -> bool:
        """Record one judgement; True when it added a new judge to the item."""
        if status == "skipped":
            self.skipped[annotator].add(key)
            return False
        judges = self.judged[key]
        if annotator in judges:
            return False
        judges.add(annotator)
        self.mine[(annotator, key.split("|", 1)[0])] += 1
        return True

    def record(self, key: str, annotator: str, status: str) -> None:
        with self.lock:
            kind = key.split("|", 1)[0]
            before = len(self.judged.get(key, ()))
            if self._note(key, annotator, status) and kind in self.filled:
                if before < self.project.task(kind).overlap:
                    self.filled[kind] += 1

    def _gold(self, con) -> dict[str, str]:
        """Pairwise item key → the response id its gold answer prefers."""
        from prefkit.annotate.app.items import gold_answers

        answers = gold_answers(con)
        return {
            it.key: answers[it.prompt_id]
            for it in self.items.get("pairwise", [])
            if answers.get(it.prompt_id) in it.response_ids
        }

    def _ai_verdicts(self, con) -> dict[str, dict]:
        """Pairwise item key → the latest AI verdict on it, for assist mode."""
        if self.project.mode != "assist":
            return {}
        rows = con.execute(
            f"""SELECT {_KEY_SQL} AS key, response_ids, scores, confidence, judgement_id FROM judgements
                WHERE annotator_type = 'ai' AND kind = 'pairwise' AND status = 'submitted' AND len(scores) = 2
                QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC) = 1"""
        ).fetchall()
        out = {}
        for key, rids, scores, confidence, jid in rows:
            verdict = "tie" if scores[0] == scores[1] else rids[0] if scores[0] > scores[1] else rids[1]
            out[key] = {"verdict": verdict, "confidence": confidence, "judgement_id": jid}
        return out

    def progress(self, annotator: str, kind: str) -> Progress:
        items = self.items.get(kind, [])
        k = self.project.task(kind).overlap
        return Progress(self.mine[(annotator, kind)], self.filled.get(kind, 0), len(items) * k, len(items))


class Leases:
    """The SQLite side of assignment; one connection per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path):
        # private like the store around it: SQLite gives its -wal and -shm files the database's mode
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE))
        self.path = path
        self._local = threading.local()
        con = self.con
        con.execute("PRAGMA journal_mode = WAL")
        con.executescript(
            """CREATE TABLE IF NOT EXISTS leases (item TEXT, annotator TEXT, kind TEXT, expires REAL,
                   PRIMARY KEY (item, annotator));
               CREATE INDEX IF NOT EXISTS leases_by_annotator ON leases (annotator, kind);
               CREATE TABLE IF NOT EXISTS done (item TEXT, annotator TEXT, status TEXT, judgement_id TEXT,
                   at REAL, PRIMARY KEY (item, annotator));"""
        )

    @property
    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA busy_timeout = 60000")
            con.execute("PRAGMA synchronous = NORMAL")
            self._local.con = con
        return con

    def held(self, annotator: str, kind: str, now: float) -> str | None:
        row = self.con.execute(
            "SELECT item FROM leases WHERE annotator = ? AND kind = ? AND expires > ? ORDER BY expires LIMIT 1",
            (annotator, kind, now),
        ).fetchone()
        return row[0] if row else None

    def others(self, item: str, now: float) -> list[tuple[str, str]]:
        """(annotator, status) of everyone recorded on `item`: answers, and live leases as 'lease'."""
        return self.con.execute(
            "SELECT annotator, status FROM done WHERE item = ? "
            "UNION ALL SELECT annotator, 'lease' FROM leases WHERE item = ? AND expires > ?",
            (item, item, now),
        ).fetchall()


class Assigner:
    """Serves items to people: `next_item` leases one, `complete` records the answer."""

    def __init__(self, store: Store, project: Project, index: Index):
        self.project = project
        self.index = index
        self.leases = Leases(Path(store.root) / "app" / "assign.sqlite")
        self.lease_seconds = project.lease_minutes * 60
        self._orders: dict[tuple[str, str], np.ndarray] = {}
        self._cursor: dict[tuple[str, str], int] = defaultdict(int)

    def _order(self, annotator: str, kind: str) -> np.ndarray:
        """This person's own shuffled order of the task's items, so people spread over the pool."""
        key = (annotator, kind)
        if key not in self._orders:
            seed = int(content_hash([annotator, kind])[:16], 16)
            order = np.random.default_rng(seed).permutation(len(self.index.items[kind]))
            gold = self.index.gold
            if gold:  # gold items are served on their own schedule, never from the main pool
                keep = [i for i in order if self.index.items[kind][i].key not in gold]
                order = np.asarray(keep, dtype=np.int64)
            self._orders[key] = order
        return self._orders[key]

    def next_item(self, annotator: str, kind: str) -> Item | None:
        """The item this person should label next in `kind` (leased to them), or None when none is left."""
        now = time.time()
        task = self.project.task(kind)
        con = self.leases.con
        held = self.leases.held(annotator, kind, now)
        if held is not None and held not in self.index.keys[kind]:  # the project or store changed under it
            self.leases.con.execute("DELETE FROM leases WHERE item = ? AND annotator = ?", (held, annotator))
            held = None
        if held is not None:
            con.execute(
                "UPDATE leases SET expires = ? WHERE item = ? AND annotator = ?",
                (now + self.lease_seconds, held, annotator),
            )
            return self._item(kind, held)
        con.execute("BEGIN IMMEDIATE")
        try:
            item = self._gold_item(annotator, kind, now) or self._claim(annotator, kind, task.overlap, now)
            if item is not None:
                con.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                    (item.key, annotator, kind, now + self.lease_seconds),
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return item

    def _item(self, kind: str, key: str) -> Item:
        return self.index.items[kind][self.index.keys[kind][key]]

    def _claim(self, annotator: str, kind: str, k: int, now: float) -> Item | None:
        index, items = self.index, self.index.items[kind]
        order = self._order(annotator, kind)
        cursor = start = self._cursor[(annotator, kind)]
        skipped = index.skipped.get(annotator, set())
        for pos in range(start, len(order)):
            item = items[order[pos]]
            judges = index.judged.get(item.key, set())
            gone = annotator in judges or item.key in skipped or len(judges) >= k
            busy = False
            if not gone:
                rows = self.leases.others(item.key, now)
                answered = {a for a, s in rows if s in COUNTED}
                if answered - judges:  # answered in another process: remember it here too
                    for a in answered - judges:
                        index.record(item.key, a, "submitted")
                    judges = index.judged[item.key]
                gone = any(a == annotator for a, _ in rows) or len(judges) >= k
                busy = len(judges | {a for a, s in rows if s == "lease"}) >= k
            if gone and pos == cursor:
                cursor += 1  # nothing before here can come back for this person
            elif not gone and not busy:
                self._cursor[(annotator, kind)] = cursor
                return item
        self._cursor[(annotator, kind)] = cursor
        return None

    def _gold_item(self, annotator: str, kind: str, now: float) -> Item | None:
        index = self.index
        if kind != "pairwise" or not index.gold or self.project.gold_rate <= 0:
            return None
        draw = random.Random(content_hash([annotator, index.mine[(annotator, kind)], "gold"])).random()
        if draw >= self.project.gold_rate:
            return None
        for key in sorted(index.gold, key=lambda k: content_hash([annotator, k])):
            if annotator in index.judged.get(key, ()) or key in index.skipped.get(annotator, ()):
                continue
            if not any(a == annotator for a, _ in self.leases.others(key, now)):
                return self._item(kind, key)
        return None

    def still_open(self, annotator: str, item: Item) -> bool:
        """Whether `annotator` may still count on `item`: they hold its lease, or it has room left.

        False only when their lease ran out and others filled the item meanwhile."""
        now = time.time()
        if item.key in self.index.gold:
            return True
        rows = self.leases.others(item.key, now)
        if any(a == annotator and s == "lease" for a, s in rows):
            return True
        judges = self.index.judged.get(item.key, set()) | {a for a, s in rows if s in COUNTED or s == "lease"}
        return len(judges - {annotator}) < self.project.task(item.kind).overlap

    def is_gold(self, item: Item) -> str | None:
        return self.index.gold.get(item.key)

    def complete(self, annotator: str, item: Item, status: str, judgement_id: str) -> None:
        """Record that `annotator` answered (or skipped) `item`; call after the judgement is stored."""
        con = self.leases.con
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, ?)",
                (item.key, annotator, status, judgement_id, time.time()),
            )
            con.execute("DELETE FROM leases WHERE item = ? AND annotator = ?", (item.key, annotator))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self.index.record(item.key, annotator, status)

    def release(self, annotator: str, item: Item) -> None:
        """Give a leased item back unanswered (switching task, logging out)."""
        self.leases.con.execute("DELETE FROM leases WHERE item = ? AND annotator = ?", (item.key, annotator))
