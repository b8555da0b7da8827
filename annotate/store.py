"""The Parquet store: a folder of append-only parts, read through DuckDB views that dedupe on id.

Layout: `<store>/{prompts,responses,judgements}/<yyyy-mm-dd>/<part>.parquet`.

Durability rules (DESIGN §3):
- a part is written to a temporary name, fsynced, renamed, and its folder fsynced (`prefkit.files`):
  a reader never sees half a file, and once `append` returns the rows survive a crash;
- temporary names carry the writer's pid, so opening a store removes only the leftovers of dead
  writers (`prefkit.files.clean_leftovers`), never a file another live process is still writing;
- readers dedupe on the id column, so a crash between writing a compacted file and deleting the
  parts it replaced double-counts nothing, and re-running an import or an AI job is idempotent.

Safety rules:
- a store is private to its owner: folders are created 0700 and parts 0600 (`_write_part`), so
  the judgements, the AI cache and the app's files inside are not readable by other local users;
- writes never follow a link out of the store (a table or day folder that is a symlink pointing
  elsewhere is refused), and temporaries are created with O_EXCL | O_NOFOLLOW;
- reads check every part first (footer and schema, cached by size and mtime): one zero-byte,
  truncated or foreign `.parquet` in a table folder is named in a StoreError that says to run
  `prefkit check --repair`, which moves such parts aside into `<store>/quarantine/`. Imports skip
  such parts instead (with a warning), so one bad file never blocks writing;
- the store's path goes into DuckDB's globs escaped, so `g[1]` is read as itself, not as `g1`.

A store may also be a URL DuckDB can read (`s3://`, `hf://`, `https://`): such a store is read-only.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.annotate.contract import ID_COLUMN, SCHEMAS
from prefkit.annotate.validate import to_table

from prefkit import files
from prefkit.files import PRIVATE_DIR, PRIVATE_FILE

TABLES = tuple(SCHEMAS)
_REMOTE = re.compile(r"^(s3|s3a|gs|gcs|r2|hf|https?|az|abfss)://")
DEFAULT_STORE = "prefkit-store"
QUARANTINE = "quarantine"  # where `prefkit check --repair` moves unreadable parts, inside the store


class StoreError(RuntimeError):
    """The store cannot do what was asked (read-only remote store, unknown table, bad path)."""


@dataclass(frozen=True)
class Problem:
    """A file in the store that readers cannot use, and why."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def default_store_path() -> str:
    return os.environ.get("PREFKIT_STORE", DEFAULT_STORE)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def glob_escape(path: str) -> str:
    """`path` with DuckDB's glob characters matched literally (`g[1]` is the folder `g[1]`, not `g1`).

    DuckDB expands globs in every path it is given, even in an explicit list of files.
    """
    return re.sub(r"([\[*?])", r"[\1]", path)


def damaged(exc: duckdb.Error) -> bool:
    """Whether a DuckDB error is about the files read (I/O, bad bytes), not about the SQL."""
    return type(exc) is duckdb.Error or isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException))


def _write_part(path: Path, arrow: pa.Table) -> None:
    """Write `arrow` as Parquet to a new file `path` (0600, never through a link), fsynced."""
    with files.create_new(path, PRIVATE_FILE) as fh:
        pq.write_table(arrow, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())


def _kind(type_: pa.DataType) -> object:
    """A type's shape as readers see it: list child names, string widths and int sizes ignored."""
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return ("list", _kind(type_.value_type))
    if pa.types.is_struct(type_):
        return ("struct", tuple((type_.field(i).name, _kind(type_.field(i).type)) for i in range(type_.num_fields)))
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return "string"
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return "number"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    return str(type_)


_CHECKED: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime_ns) → problem, for reads


def part_problem(path: Path, table: str, *, deep: bool = False) -> str | None:
    """Why the part `path` of `table` cannot be read, or None. `deep` reads every page, not just the
    footer (for `prefkit check`)."""
    try:
        schema = pq.read_schema(path)
        if deep:
            pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        return f"is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
    contract = SCHEMAS[table]
    foreign = [n for n in schema.names if n not in contract.names]
    if foreign:
        return f"has columns that are not in the {table} table ({', '.join(foreign[:5])})"
    missing = [n for n in (ID_COLUMN[table], "created_at") if n not in schema.names]
    if missing:
        return f"lacks the {table} column(s) {', '.join(missing)}"
    for f in schema:
        want = contract.field(f.name).type
        if not pa.types.is_null(f.type) and _kind(f.type) != _kind(want):
            return f"column '{f.name}' is {f.type}, the {table} table's is {want}"
    return None


class Store:
    """A prefkit store. `Store(path)` opens (and, for a local path, creates) it."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        text = str(root)
        self.remote = bool(_REMOTE.match(text))
        self.url = text.rstrip("/")
        self.root = None if self.remote else Path(text)
        if self.root is not None:
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{self.root} is a file, not a store folder: pass --store a folder (new or existing)")
            if create:
                self._create()
            elif not self.root.is_dir():
                raise StoreError(f"no store at {self.root}: run `prefkit import` to create one, or pass --store")
            self.remove_stray_temporaries()

    def _create(self) -> None:
        try:
            if not self.root.exists():
                self.root.parent.mkdir(parents=True, exist_ok=True)
                self.root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
            for table in TABLES:
                (self.root / table).mkdir(mode=PRIVATE_DIR, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store at {self.root} ({exc.strerror or exc}): pass --store a folder you can write"
            ) from None

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
        self._inside(self.root / table)
        self._inside(folder)
        (self.root / table).mkdir(mode=PRIVATE_DIR, exist_ok=True)
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        return folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}.parquet"

    def _links_out(self, folder: Path) -> bool:
        return folder.is_symlink() and not folder.resolve().is_relative_to(self.root.resolve())

    def _inside(self, folder: Path) -> None:
        """Refuse to write through a link that leads out of the store."""
        if self._links_out(folder):
            raise StoreError(
                f"{folder} is a link to {folder.resolve()}, outside the store: "
                "prefkit does not write through it; replace it with a real folder"
            )

    def _writable(self) -> None:
        if self.remote:
            raise StoreError(f"{self.url} is a remote store and read-only: write to a local store and upload it")

    def remove_stray_temporaries(self) -> list[Path]:
        """Delete what writers that died mid-write left (`prefkit.files.clean_leftovers`) in the store
        and two levels of folders below it (the tables' day folders, curations, the AI run logs, the
        app's files); a curation a killed `prefkit curate` had moved aside goes back. Returns what
        was cleaned."""
        folders = [self.root, *self.root.glob("*"), *self.root.glob("*/*")]
        removed = []
        for folder in folders:
            if folder.is_dir() and not folder.is_symlink():
                removed += files.clean_leftovers(folder)
        return removed

    # -- reading ---------------------------------------------------------------------------------

    def glob(self, table: str) -> str:
        """The DuckDB glob of a table's parts (the store's own path escaped)."""
        if table not in SCHEMAS:
            raise StoreError(f"unknown table {table!r}; tables are {list(TABLES)}")
        base = self.url if self.remote else glob_escape(self.url)
        return f"{base}/{table}/*/*.parquet"

    def problems(self, tables: Iterable[str] = TABLES, *, deep: bool = False) -> list[Problem]:
        """Every part readers cannot use (unreadable, truncated, foreign schema) and every table or day
        folder that links out of the store. `deep` reads whole files; otherwise footers, cached."""
        if self.remote:
            return []
        found = []
        try:
            for table in tables:
                for folder in [self.root / table, *sorted((self.root / table).glob("*"))]:
                    if self._links_out(folder):
                        found.append(Problem(folder, f"is a link to {folder.resolve()}, outside the store"))
                for path in sorted(self.root.glob(f"{table}/*/*.parquet")):
                    problem = self._checked(path, table, deep)
                    if problem:
                        found.append(Problem(path, problem))
        except OSError as exc:
            raise StoreError(
                f"cannot read the store at {self.root} ({exc.strerror or exc}): check that you may read it"
            ) from None
        return found

    def _checked(self, path: Path, table: str, deep: bool) -> str | None:
        try:
            st = path.stat()
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if deep or key not in _CHECKED:
            if len(_CHECKED) > 200_000:
                _CHECKED.clear()
            _CHECKED[key] = part_problem(path, table, deep=deep)
        return _CHECKED[key]

    def _raise_problems(self, tables: Iterable[str] = TABLES) -> None:
        found = [p for p in self.problems(tables) if p.path.suffix == ".parquet"]
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise StoreError(
                f"{found[0]}{more}; run `prefkit check --store {self.root} --repair` to move unreadable "
                f"parts aside into {self.root / QUARANTINE}"
            )

    def read_failed(self, exc: duckdb.Error) -> StoreError:
        """A query over the views failed although every footer was fine: a part is damaged inside.
        The StoreError says how to find it (`prefkit check` reads every part whole)."""
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        return StoreError(
            f"reading the store at {self.url} failed ({first}); a part may be damaged: "
            f"run `prefkit check --store {self.url}` to find it"
        )

    def quarantine(self, problems: Iterable[Problem]) -> list[tuple[Path, Path]]:
        """Move each problem file or link into `<store>/quarantine/` (same relative path). Returns
        (from, to) pairs. Nothing is deleted: a part may still be recoverable by hand."""
        self._writable()
        moved = []
        for p in problems:
            rel = p.path.relative_to(self.root)
            target = self.root / QUARANTINE / rel
            if target.exists() or target.is_symlink():
                target = target.with_name(f"{target.name}.{time.time_ns()}")
            target.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            shutil.move(str(p.path), str(target))
            moved.append((p.path, target))
        return moved

    def part_files(self, table: str) -> list[Path]:
        self._writable()
        return sorted(self.root.glob(f"{table}/*/*.parquet"))

    def is_empty(self, table: str) -> bool:
        if self.remote:
            return False
        return next(iter(self.root.glob(f"{table}/*/*.parquet")), None) is None

    def connect(
        self, con: duckdb.DuckDBPyConnection | None = None, *, skip_unreadable: bool = False
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one deduplicated view per table (`prompts`, `responses`,
        `judgements`) and `raw_<table>` views of every stored row, duplicates included.

        Raises StoreError naming a part that cannot be read (see `problems`); `skip_unreadable`
        leaves such parts out of the views instead (an import's dedupe check, which must not block).
        """
        bad = {p.path for p in self.problems()} if skip_unreadable else set()
        if not skip_unreadable:
            self._raise_problems()
        con = con or duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.remote and not self.url.startswith("hf://"):
            con.execute("INSTALL httpfs; LOAD httpfs")
        for table in TABLES:
            good = [p for p in self.root.glob(f"{table}/*/*.parquet") if p not in bad] if bad else None
            if self.is_empty(table) or good == []:
                empty = f"_empty_{table}"
                con.register(empty, SCHEMAS[table].empty_table())
                source = f"SELECT * FROM {empty}"
            elif good is not None:
                sources = "[" + ", ".join(_sql_str(glob_escape(str(p))) for p in good) + "]"
                source = f"SELECT * FROM read_parquet({sources}, union_by_name = true)"
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
        except duckdb.Error as exc:
            raise self.read_failed(exc) if damaged(exc) else exc from None
        finally:
            con.close()
        # DuckDB names list children differently; cast back to the contract's exact types.
        schema = SCHEMAS[table]
        fields = [f for f in schema if f.name in result.schema.names]
        return result.select([f.name for f in fields]).cast(pa.schema(fields))

    def count(self, table: str) -> int:
        con = self.connect()
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        except duckdb.Error as exc:
            raise self.read_failed(exc) if damaged(exc) else exc from None
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
        self._raise_problems([table] if table else TABLES)
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
        sources = "[" + ", ".join(_sql_str(glob_escape(str(p))) for p in parts) + "]"
        # DuckDB creates the file with the umask's mode: atomic_path makes it private before the rename.
        with files.atomic_path(final, mode=PRIVATE_FILE) as tmp:
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({sources}, union_by_name = true) "
                    f"QUALIFY row_number() OVER (PARTITION BY {ID_COLUMN[table]} ORDER BY created_at) = 1 "
                    f"ORDER BY created_at) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
                )
            finally:
                con.close()
        for part in parts:
            part.unlink()
        files.fsync_dir(day)
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
        tmp = files.temp_path(final)
        self.staged.append((tmp, final))
        _write_part(tmp, arrow)
        self.rows[table] += arrow.num_rows
        return arrow.num_rows

    def commit(self) -> None:
        folders = set()
        for tmp, final in self.staged:
            files.commit(tmp, final, sync_folder=False)
            folders.add(final.parent)
        for folder in folders:
            files.fsync_dir(folder)

    def discard(self) -> None:
        for tmp, _ in self.staged:
            files.discard(tmp)
