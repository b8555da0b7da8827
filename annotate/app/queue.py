"""The task queue: which items are leased to whom (until when), and which the app has seen answered.
It is the source of truth for both across every app process on a store; each process's in-memory
`Index` (assign.py) only remembers what it learnt, so the queue must make every decision that two
processes could make differently.

One interface, two backends with the same guarantees:
- `SqliteQueue` (the default): `<store>/app/assign.sqlite` in WAL mode, shared by the app processes
  of one machine. SQLite over a network filesystem is not safe, so it is for one machine only.
- `PostgresQueue` (annotate/app/queue_pg.py, `--queue postgresql://…`): one database shared by app
  servers on many machines.

The guarantees rest on one operation, `claim`: with the item locked against every other claimer, read
who answered it and who holds a live lease, let the caller decide, and lease it if the caller says
yes — all in one transaction. A lease carries an expiry: a person who walks away, or a server that
crashes, frees its items when the leases run out, with nothing to clean up.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from prefkit.annotate.store import PRIVATE_DIR, PRIVATE_FILE, Store

Rows = list[tuple[str, str]]  # (annotator, status) on one item; a live lease has status 'lease'
Answer = tuple[str, str, str]  # (item, annotator, status)


class QueueError(RuntimeError):
    """The queue cannot be opened or used (bad URL, unreachable server, wrong password, old prefkit)."""


class Queue(ABC):
    """Leases and answers, shared by every app process on a store. Times are the queue's own clock."""

    @abstractmethod
    def held(self, annotator: str, kind: str) -> str | None:
        """The item of `kind` this person holds a live lease on, if any."""

    @abstractmethod
    def renew(self, item: str, annotator: str, seconds: float) -> None:
        """Extend this person's lease on `item` to `seconds` from now."""

    @abstractmethod
    def release(self, item: str, annotator: str) -> None:
        """Drop this person's lease on `item` (answered elsewhere, task switched, logged out)."""

    @abstractmethod
    def others(self, item: str) -> Rows:
        """Everyone recorded on `item`: their answers' statuses, and live leases as 'lease'."""

    @abstractmethod
    def claim(self, item: str, annotator: str, kind: str, seconds: float, take: Callable[[Rows], bool]) -> bool:
        """Lease `item` to `annotator` for `seconds` if `take(others(item))` says so, atomically:
        no other claim on `item` can run between the read and the lease. Whether it was leased."""

    @abstractmethod
    def complete(self, item: str, annotator: str, status: str, judgement_id: str) -> None:
        """Record the answer and drop the lease, in one transaction (after the judgement is stored)."""

    @abstractmethod
    def answers_since(self, mark: object) -> tuple[object, list[Answer]]:
        """Answers recorded since `mark` (None: all), and the mark to pass next time. An answer may
        come twice; none is missed."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections this process opened."""


def open_queue(url: str | None, store: Store) -> Queue:
    """The queue `url` names (`postgresql://…`), or the store's own SQLite queue when it is empty."""
    if not url:
        # a remote store's is on this machine's disk: SQLite serves the app processes of one machine
        return SqliteQueue(Path(store.state_dir) / "app" / "assign.sqlite")
    if url.startswith(("postgresql://", "postgres://")):
        from prefkit.annotate.app.queue_pg import PostgresQueue

        return PostgresQueue(url)
    shown = url.split("://", 1)[0] + "://…" if "://" in url else url
    raise QueueError(f"--queue {shown}: give a postgresql://user:password@host:port/database URL, or none for SQLite")


class SqliteQueue(Queue):
    """The store's own queue. Claims and answers run in `BEGIN IMMEDIATE` transactions, which SQLite
    serialises across threads and processes: the whole database is the lock."""

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

    def _write(self, *statements: tuple[str, tuple]) -> None:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                con.execute(sql, params)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def held(self, annotator: str, kind: str) -> str | None:
        row = self.con.execute(
            "SELECT item FROM leases WHERE annotator = ? AND kind = ? AND expires > ? ORDER BY expires LIMIT 1",
            (annotator, kind, time.time()),
        ).fetchone()
        return row[0] if row else None

    def renew(self, item: str, annotator: str, seconds: float) -> None:
        self.con.execute(
            "UPDATE leases SET expires = ? WHERE item = ? AND annotator = ?", (time.time() + seconds, item, annotator)
        )

    def release(self, item: str, annotator: str) -> None:
        self.con.execute("DELETE FROM leases WHERE item = ? AND annotator = ?", (item, annotator))

    def others(self, item: str) -> Rows:
        return self.con.execute(
            "SELECT annotator, status FROM done WHERE item = ? "
            "UNION ALL SELECT annotator, 'lease' FROM leases WHERE item = ? AND expires > ?",
            (item, item, time.time()),
        ).fetchall()

    def claim(self, item: str, annotator: str, kind: str, seconds: float, take: Callable[[Rows], bool]) -> bool:
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            ok = take(self.others(item))
            if ok:
                con.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (item, annotator, kind, time.time() + seconds)
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return ok

    def complete(self, item: str, annotator: str, status: str, judgement_id: str) -> None:
        self._write(
            (
                "INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, ?)",
                (item, annotator, status, judgement_id, time.time()),
            ),
            ("DELETE FROM leases WHERE item = ? AND annotator = ?", (item, annotator)),
        )

    def answers_since(self, mark: object) -> tuple[object, list[Answer]]:
        # writers are serialised, so rowids grow in commit order (a replaced row gets a new one)
        rows = self.con.execute(
            "SELECT rowid, item, annotator, status FROM done WHERE rowid > ? ORDER BY rowid", (mark or 0,)
        ).fetchall()
        return (rows[-1][0] if rows else mark), [r[1:] for r in rows]

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
