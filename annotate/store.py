"""The Parquet store: a folder of append-only parts, read through DuckDB views that dedupe on id.

Layout: `<store>/{prompts,responses,judgements}/<yyyy-mm-dd>/<part>.parquet`.

Durability rules (DESIGN §3):
- a part is written to a temporary name, fsynced, renamed, and its folder fsynced: a reader never
  sees half a file, and once `append` returns the rows survive a crash;
- temporary names carry the writer's pid, so opening a store removes only the leftovers of dead
  writers, never a file another live process is still writing;
- readers dedupe on the id column, so a crash between writing a compacted file and deleting the
  parts it replaced double-counts nothing, and re-running an import or an AI job is idempotent.

A store may also be a URL DuckDB can read (`s3://`, `hf://`, `https://`): such a store is read-only.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from annotate.contract import ID_COLUMN, SCHEMAS
from annotate.validate import to_table

TABLES = tuple(SCHEMAS)
_REMOTE = re.compile(r"^(s3|s3a|gs|gcs|r2|hf|https?|az|abfss)://")
_TMP = re.compile(r"\.(\d+)\.tmp$")
DEFAULT_STORE = "prefkit-store"


class StoreError(RuntimeError):
    """The store cannot do what was asked (read-only remote store, unknown table, bad path)."""


def default_store_path() -> str:
    return os.environ.get("PREFKIT_STORE", DEFAULT_STORE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a temporary file's writer, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Store:
    """A prefkit store. `Store(path)` opens (and, for a local path, creates) it."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        text = str(root)
        self.remote = bool(_REMOTE.match(text))
        self.url = text.rstrip("/")
        self.root = None if self.remote else Path(text)
        if self.root is not None:
            if create:
                for table in TABLES:
                    (self.root / table).mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                raise StoreError(f"no store at {self.root}: run `prefkit import` to create one, or pass --store")
            self.remove_stray_temporaries()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- writing ---------------------------------------------------------------------------------

    def append(self, table: str, rows: Iterable[Any] | pa.Table) -> int:
        """Validate `rows` and write them as one new part. Returns the number of rows written.

        Nothing is written when any row breaks the contract (the ContractError names it).
        """
        with self.batch() as batch:
            return batch.append(table, rows)

    @contextmanager
    def batch(self) -> Iterator[_Batch]:
        """All-or-nothing writes across tables: parts are staged under temporary names and renamed
        into place only when the block ends without an exception.

        Rows are validated and written to disk as they are appended, so a large import streams
        through in bounded memory.
        """
        self._writable()
        batch = _Batch(self)
        try:
            yield batch
        except BaseException:
            batch.discard()
            raise
        batch.commit()

    def _part_path(self, table: str, suffix: str = "") -> Path:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        folder = self.root / table / day
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}.parquet"

    def _writable(self) -> None:
        if self.remote:
            raise StoreError(f"{self.url} is a remote store and read-only: write to a local store and upload it")

    def remove_stray_temporaries(self) -> list[Path]:
        """Delete temporary files left by writers that died mid-write. Returns what was removed."""
        removed = []
        for path in self.root.glob("*/*/.*.tmp"):
            match = _TMP.search(path.name)
            if match and not pid_alive(int(match.group(1))):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # -- reading ---------------------------------------------------------------------------------

    def glob(self, table: str) -> str:
        if table not in SCHEMAS:
            raise StoreError(f"unknown table {table!r}; tables are {list(TABLES)}")
        return f"{self.url}/{table}/*/*.parquet"

    def part_files(self, table: str) -> list[Path]:
        self._writable()
        return sorted(self.root.glob(f"{table}/*/*.parquet"))

    def is_empty(self, table: str) -> bool:
        if self.remote:
            return False
        return next(iter(self.root.glob(f"{table}/*/*.parquet")), None) is None

    def connect(self, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one deduplicated view per table (`prompts`, `responses`,
        `judgements`) and `raw_<table>` views of every stored row, duplicates included."""
        con = con or duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.remote and not self.url.startswith("hf://"):
            con.execute("INSTALL httpfs; LOAD httpfs")
        for table in TABLES:
            if self.is_empty(table):
                empty = f"_empty_{table}"
                con.register(empty, SCHEMAS[table].empty_table())
                source = f"SELECT * FROM {empty}"
            else:
                source = f"SELECT * FROM read_parquet({_sql_str(self.glob(table))}, union_by_name = true)"
            con.execute(f"CREATE OR REPLACE VIEW raw_{table} AS {source}")
            con.execute(
                f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM raw_{table} "
                f"QUALIFY row_number() OVER (PARTITION BY {ID_COLUMN[table]} ORDER BY created_at) = 1"
            )
        return con

    def read(self, table: str, where: str = "", params: list | None = None) -> pa.Table:
        """The deduplicated rows of a table (optionally filtered by a SQL `where` with ? params)."""
        if table not in SCHEMAS:
            raise StoreError(f"unknown table {table!r}; tables are {list(TABLES)}")
        con = self.connect()
        try:
            sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + " ORDER BY created_at"
            result = con.sql(sql, params=params or None).to_arrow_table()
        finally:
            con.close()
        # DuckDB names list children differently; cast back to the contract's exact types.
        schema = SCHEMAS[table]
        fields = [f for f in schema if f.name in result.schema.names]
        return result.select([f.name for f in fields]).cast(pa.schema(fields))

    def count(self, table: str) -> int:
        con = self.connect()
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            con.close()

    # -- compaction ------------------------------------------------------------------------------

    def compact(self, table: str | None = None, *, max_part_bytes: int = 64 << 20) -> dict[str, int]:
        """Merge each day's small parts into one file, then delete the parts.

        Safe at any crash point: the merged file appears atomically before any part is deleted, and
        readers dedupe on id, so the rows are counted once whether or not the deletes happened. A
        second run merges whatever is left. Returns {table: parts removed}.
        """
        self._writable()
        done: dict[str, int] = {}
        for name in [table] if table else TABLES:
            done[name] = 0
            for day in sorted(p for p in (self.root / name).glob("*") if p.is_dir()):
                parts = sorted(p for p in day.glob("*.parquet") if p.stat().st_size < max_part_bytes)
                if len(parts) < 2:
                    continue
                self._merge(name, day, parts)
                done[name] += len(parts)
        return done

    def _merge(self, table: str, day: Path, parts: list[Path]) -> Path:
        final = day / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}-compact.parquet"
        tmp = day / f".{final.stem}.{os.getpid()}.tmp"
        files = "[" + ", ".join(_sql_str(str(p)) for p in parts) + "]"
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(
                f"COPY (SELECT * FROM read_parquet({files}, union_by_name = true) "
                f"QUALIFY row_number() OVER (PARTITION BY {ID_COLUMN[table]} ORDER BY created_at) = 1 "
                f"ORDER BY created_at) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
            )
        finally:
            con.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.rename(tmp, final)
        _fsync_dir(day)
        for part in parts:
            part.unlink()
        _fsync_dir(day)
        return final


class _Batch:
    """Parts staged by `Store.batch()`; see there."""

    def __init__(self, store: Store):
        self.store = store
        self.staged: list[tuple[Path, Path]] = []  # (temporary, final)
        self.rows: dict[str, int] = {t: 0 for t in TABLES}

    def append(self, table: str, rows: Iterable[Any] | pa.Table) -> int:
        arrow = to_table(table, rows)
        if arrow.num_rows == 0:
            return 0
        final = self.store._part_path(table)
        tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp")
        self.staged.append((tmp, final))
        pq.write_table(arrow, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        self.rows[table] += arrow.num_rows
        return arrow.num_rows

    def commit(self) -> None:
        folders = set()
        for tmp, final in self.staged:
            os.rename(tmp, final)
            folders.add(final.parent)
        for folder in folders:
            _fsync_dir(folder)

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
