"""Task assignment: which item a person labels next, with leases so that concurrent annotators never
push an item past its k judgements and nobody judges the same item twice.

Two kinds of state:
- `Index` (in memory, one per app process, shared by its sessions): the items of each task and who
  has judged each one. Built once from the judgements table, then updated on the app's own writes,
  so choosing the next item never rescans the store.
- the queue (annotate/app/queue.py: SQLite in the store by default, or PostgreSQL for app servers
  on several machines), shared by every process on the store: the items served and not yet answered
  (with an expiry), and the items answered through the app. Each claim of an item runs in one
  transaction with the item locked, so two people can never take its last free slot together.

An item's judges are the union of the annotators the index knows from the Parquet store and those
the queue has recorded, so a judgement counted in both places is counted once. Each process also
reads the queue's new answers now and then, so its index (and everyone's progress) follows the
answers given through the other processes.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from prefkit.annotate.app.items import Item, build_items
from prefkit.annotate.app.project import Project
from prefkit.annotate.app.queue import Queue, Rows, open_queue
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import Store

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


class Assigner:
    """Serves items to people: `next_item` leases one, `complete` records the answer."""

    SYNC_SECONDS = 1.0  # how often a process reads the answers given through the others

    def __init__(self, store: Store, project: Project, index: Index, queue: Queue | str | None = None):
        self.project = project
        self.index = index
        self.queue = queue if isinstance(queue, Queue) else open_queue(queue, store)
        self.lease_seconds = project.lease_minutes * 60
        self._orders: dict[tuple[str, str], np.ndarray] = {}
        self._cursor: dict[tuple[str, str], int] = defaultdict(int)
        self._sync_lock = threading.Lock()
        self._mark: object = None
        self._synced = 0.0

    def sync(self, *, force: bool = False) -> None:
        """Note in the index the answers given through other processes since the last look. Only for
        progress and speed: every claim asks the queue itself."""
        if not force and time.monotonic() - self._synced < self.SYNC_SECONDS:
            return
        if not self._sync_lock.acquire(blocking=force):
            return  # another session of this process is reading them now
        try:
            self._mark, answers = self.queue.answers_since(self._mark)
            for key, annotator, status in answers:
                self.index.record(key, annotator, status)
            self._synced = time.monotonic()
        finally:
            self._sync_lock.release()

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
        self.sync()
        held = self.queue.held(annotator, kind)
        if held is not None and held not in self.index.keys[kind]:  # the project or store changed under it
            self.queue.release(held, annotator)
            held = None
        if held is not None:
            self.queue.renew(held, annotator, self.lease_seconds)
            return self._item(kind, held)
        return self._gold_item(annotator, kind) or self._claim(annotator, kind, self.project.task(kind).overlap)

    def _item(self, kind: str, key: str) -> Item:
        return self.index.items[kind][self.index.keys[kind][key]]

    def _claim(self, annotator: str, kind: str, k: int) -> Item | None:
        index, items = self.index, self.index.items[kind]
        order = self._order(annotator, kind)
        cursor = start = self._cursor[(annotator, kind)]
        skipped = index.skipped.get(annotator, set())
        for pos in range(start, len(order)):
            item = items[order[pos]]
            judges = index.judged.get(item.key, set())
            gone = [annotator in judges or item.key in skipped or len(judges) >= k]

            def take(rows: Rows, item: Item = item, gone: list = gone) -> bool:
                answered = {a for a, s in rows if s in COUNTED}
                for a in answered - index.judged.get(item.key, set()):  # answered in another process
                    index.record(item.key, a, "submitted")
                judges = index.judged.get(item.key, set())
                gone[0] = any(a == annotator for a, _ in rows) or len(judges) >= k
                busy = len(judges | {a for a, s in rows if s == "lease"}) >= k
                return not gone[0] and not busy

            if not gone[0] and self.queue.claim(item.key, annotator, kind, self.lease_seconds, take):
                self._cursor[(annotator, kind)] = cursor
                return item
            if gone[0] and pos == cursor:
                cursor += 1  # nothing before here can come back for this person
        self._cursor[(annotator, kind)] = cursor
        return None

    def _gold_item(self, annotator: str, kind: str) -> Item | None:
        index = self.index
        if kind != "pairwise" or not index.gold or self.project.gold_rate <= 0:
            return None
        draw = random.Random(content_hash([annotator, index.mine[(annotator, kind)], "gold"])).random()
        if draw >= self.project.gold_rate:
            return None
        for key in sorted(index.gold, key=lambda k: content_hash([annotator, k])):
            if annotator in index.judged.get(key, ()) or key in index.skipped.get(annotator, ()):
                continue

            def fresh(rows: Rows) -> bool:  # gold items have no k: only this person's own record counts
                return not any(a == annotator for a, _ in rows)

            if self.queue.claim(key, annotator, kind, self.lease_seconds, fresh):
                return self._item(kind, key)
        return None

    def still_open(self, annotator: str, item: Item) -> bool:
        """Whether `annotator` may still count on `item`: they hold its lease, or it has room left.

        False only when their lease ran out and others filled the item meanwhile."""
        if item.key in self.index.gold:
            return True
        rows = self.queue.others(item.key)
        if any(a == annotator and s == "lease" for a, s in rows):
            return True
        judges = self.index.judged.get(item.key, set()) | {a for a, s in rows if s in COUNTED or s == "lease"}
        return len(judges - {annotator}) < self.project.task(item.kind).overlap

    def is_gold(self, item: Item) -> str | None:
        return self.index.gold.get(item.key)

    def complete(self, annotator: str, item: Item, status: str, judgement_id: str) -> None:
        """Record that `annotator` answered (or skipped) `item`; call after the judgement is stored."""
        self.queue.complete(item.key, annotator, status, judgement_id)
        self.index.record(item.key, annotator, status)

    def release(self, annotator: str, item: Item) -> None:
        """Give a leased item back unanswered (switching task, logging out)."""
        self.queue.release(item.key, annotator)
