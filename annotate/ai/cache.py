"""The per-request cache and cost ledger: SQLite files under `<store>/ai/cache/`.

Every answer the server gives with a complete JSON body is written here the moment it arrives, before
it is parsed or turned into a row, so a job killed at any point never pays for the same answer twice:
the next run replays it from here. Keys are `ids.request_id(body)` (the canonical request: model,
messages, every sampling parameter, schema, seed = sample index) plus an attempt number, because an
unusable answer (empty, cut off) is kept too and the retry is attempt 1.

A sharded job writes its own file (`shard-K-of-N.sqlite`) so N machines never write one SQLite file;
lookups also read every other file in the folder, so a later unsharded run finds their answers.
Failed transport attempts (5xx, 429, timeouts, cut-off bodies) are not cached: nothing was paid for
and a re-run should try again. Capabilities are kept per server without the `user:password@` its URL
may carry (`transport.redact_url`).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from prefkit.annotate.ai.transport import redact_url

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    body TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (key, attempt)
);
CREATE TABLE IF NOT EXISTS capabilities (
    server TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def cache_dir(store_root: Path) -> Path:
    return Path(store_root) / "ai" / "cache"


class Cache:
    """Answers by (request key, attempt), plus the ledger of what they cost."""

    def __init__(self, folder: Path, name: str = "cache"):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.sqlite"
        # One connection, used from the event loop thread only; autocommit so each put is durable
        # as soon as it returns (WAL + synchronous=NORMAL survives a killed process).
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.others = []
        for i, other in enumerate(sorted(folder.glob("*.sqlite"))):
            if other != self.path:
                alias = f"o{i}"
                self.db.execute("ATTACH DATABASE ? AS " + alias, (f"file:{other}?mode=ro",))
                self.others.append(alias)

    def close(self) -> None:
        self.db.close()

    def get(self, key: str, attempt: int) -> tuple[str, int] | None:
        """(body, latency_ms) of a cached answer, or None."""
        row = self.db.execute("SELECT body, latency_ms FROM answers WHERE key = ? AND attempt = ?", (key, attempt))
        found = row.fetchone()
        for alias in self.others:
            if found:
                break
            found = self.db.execute(
                f"SELECT body, latency_ms FROM {alias}.answers WHERE key = ? AND attempt = ?", (key, attempt)
            ).fetchone()
        return found

    def put(self, key: str, attempt: int, body: str, model: str, usage: dict, cost: float, latency_ms: int) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                attempt,
                body,
                model,
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                cost,
                latency_ms,
                time.time(),
            ),
        )

    def keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT DISTINCT key FROM answers")}

    def ledger(self) -> dict[str, float]:
        """Totals over everything this file has paid for."""
        n, p, c, cost = self.db.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
            "coalesce(sum(cost), 0) FROM answers"
        ).fetchone()
        return {"answers": n, "prompt_tokens": p, "completion_tokens": c, "cost": cost}

    def capability(self, server: str) -> str | None:
        row = self.db.execute("SELECT value FROM capabilities WHERE server = ?", (redact_url(server),)).fetchone()
        return row[0] if row else None

    def set_capability(self, server: str, value: str) -> None:
        row = (redact_url(server), value, time.time())
        self.db.execute("INSERT OR REPLACE INTO capabilities VALUES (?, ?, ?)", row)
