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

A store may also be `s3://bucket/prefix` on S3 or an S3-compatible service (`prefkit.annotate.objects`):
- each part is one object written in one PUT, which S3 makes visible whole or not at all, so there
  is no temporary name and no rename; readers list the parts and read each one whole;
- DuckDB reads the objects through the same s3fs filesystem prefkit writes with
  (`register_filesystem`), never through its httpfs extension, and remote connections have extension
  auto-install and auto-load off, so nothing is ever downloaded at run time;
- what must live on a local disk (the AI request cache, AI run logs, the app's SQLite queue, and
  curations) goes into `Store.state_dir`, one private folder per remote store on this machine.
`hf://` and `https://` stores are read-only, read through DuckDB's httpfs extension when it is
installed already (auto-install is off for them too).
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
from prefkit.annotate import objects
from prefkit.annotate.contract import ID_COLUMN, SCHEMAS
from prefkit.annotate.validate import to_table

from prefkit import files
from prefkit.files import PRIVATE_DIR, PRIVATE_FILE

TABLES = tuple(SCHEMAS)
_REMOTE = re.compile(r"^(s3|s3a|gs|gcs|r2|hf|https?|az|abfss)://")
_S3 = re.compile(r"^s3a?://")
STATE_DIR_VARIABLE = "PREFKIT_STATE_DIR"  # where remote stores keep their local state (see Store.state_dir)
DEFAULT_STORE = "prefkit-store"
QUARANTINE = "quarantine"  # where `prefkit check --repair` moves unreadable parts, inside the store


# Remote connections never fetch an extension: a read DuckDB cannot do without one fails loudly.
_OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def _offline(con: duckdb.DuckDBPyConnection, fs: Any) -> None:
    """Turn extension auto-install/auto-load off on `con` and register the fsspec filesystem `fs`
    (once: DuckDB keeps one per protocol name, the first of `fs.protocol`)."""
    for setting, value in _OFFLINE.items():
        con.execute(f"SET {setting} = {str(value).lower()}")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in con.list_filesystems():
        con.register_filesystem(fs)


class StoreError(RuntimeError):
    """The store cannot do what was asked (read-only remote store, unknown table, bad path)."""


@dataclass(frozen=True)
class Problem:
    """A file in the store that readers cannot use, and why."""

    path: Path | str  # a local path, or the s3:// URL of an object
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


_CHECKED: dict[tuple[str, int, int | str], str | None] = {}  # (path, size, mtime_ns or ETag) → problem
_PARTS = objects.PartCache()  # small S3 parts read in this process


def part_problem(path: Path, table: str, *, deep: bool = False) -> str | None:
    """Why the part `path` of `table` cannot be read, or None. `deep` reads every page, not just the
    footer (for `prefkit check`)."""
    try:
        schema = pq.read_schema(path)
        if deep:
            pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        return f"is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
    return schema_problem(schema, table)


def schema_problem(schema: pa.Schema, table: str) -> str | None:
    """Why a part with this schema does not belong in `table`, or None."""
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
        self.fs = None  # the s3fs filesystem of an s3:// store
        if _S3.match(text):
            self._open_s3(text)
        if self.root is not None:
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"{self.root} is a file, not a store folder: pass --store a folder (new or existing)")
            if create:
                self._create()
            elif not self.root.is_dir():
                raise StoreError(f"no store at {self.root}: run `prefkit import` to create one, or pass --store")
            self.remove_stray_temporaries()

    def _open_s3(self, text: str) -> None:
        self.bucket, self.prefix = objects.split_url(text)  # s3a:// names the same objects
        self.url = "/".join(["s3:/", self.bucket, self.prefix]).rstrip("/")
        if not self.bucket:
            raise StoreError(f"{self.url}: name a bucket, as in --store s3://BUCKET/PREFIX")
        try:
            self.fs = objects.filesystem()
        except ImportError:
            raise StoreError(f"{self.url}: s3:// stores need s3fs: pip install 'prefkit[team]'") from None
        with self._s3():
            objects.check_bucket(self.fs, self.bucket)  # a missing bucket or bad key fails here, first
        self.remove_stray_temporaries()

    @contextmanager
    def _s3(self) -> Iterator[None]:
        """Turn a failed S3 request into a StoreError that says what to fix."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            message = objects.explain(exc, self.url)
            if message is None:
                raise
            raise StoreError(message) from None

    def _key(self, *parts: str) -> str:
        """`bucket/prefix/parts…`: an object's path as s3fs names it."""
        return "/".join(p for p in (self.bucket, self.prefix, *parts) if p)

    def _objects(self, table: str) -> list[objects.Entry]:
        """The parts of `table` on S3 (`<prefix>/<table>/<day>/<name>.parquet`), in key order."""
        base = self._key(table) + "/"
        with self._s3():
            found = objects.list_objects(self.fs, self.bucket, base.split("/", 1)[1])
        return [e for e in found if e.path.endswith(".parquet") and e.path[len(base) :].count("/") == 1]

    @property
    def writable(self) -> bool:
        """A local folder or an s3:// store (hf:// and https:// stores are read-only)."""
        return self.root is not None or self.fs is not None

    @property
    def state_dir(self) -> Path:
        """The local folder for what needs a local disk: the AI request cache (SQLite), AI run logs,
        the app's SQLite queue, curations. The store folder itself for a local store; for a remote
        store `$PREFKIT_STATE_DIR/<bucket>-<hash>/` (default under $PREFKIT_CACHE, else
        ~/.cache/prefkit, in `stores/`), one per store and endpoint, created private (0700)."""
        if self.root is not None:
            return self.root
        folder = self._state_path()
        try:
            folder.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot make the local state folder {folder} for {self.url} ({exc.strerror or exc}): "
                f"set ${STATE_DIR_VARIABLE} to a folder you can write"
            ) from None
        return folder

    def _state_path(self) -> Path:
        base = os.environ.get(STATE_DIR_VARIABLE)
        parent = Path(base) if base else Path(os.environ.get("PREFKIT_CACHE") or "~/.cache/prefkit") / "stores"
        return parent.expanduser() / objects.state_key(self.url)

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

        On S3 the parts are staged in `state_dir/staging/` and uploaded when the block ends, one PUT
        each, prompts first, then responses, then judgements, so a reader never sees a judgement
        whose prompt is missing. S3 has no transaction across objects: a crash (or a failed PUT)
        between two uploads leaves the parts already sent, whole, each row with its id; re-running
        the write adds them again under new part names, and readers dedupe on id, so the re-run is
        idempotent and no row is ever counted twice.
        """
        self._writable()
        batch = _S3Batch(self) if self.fs is not None else _Batch(self)
        try:
            yield batch
        except BaseException:
            batch.discard()
            raise
        batch.commit()

    @staticmethod
    def _part_name(table: str, suffix: str = "") -> str:
        """`<table>/<yyyy-mm-dd>/<time>-<random><suffix>.parquet`: names sort by write time."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        return f"{table}/{day}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}.parquet"

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
        if not self.writable:
            raise StoreError(f"{self.url} is a read-only remote store: write to a local store or an s3:// one")

    def remove_stray_temporaries(self) -> list[Path]:
        """Delete what writers that died mid-write left (`prefkit.files.clean_leftovers`) in the store
        and two levels of folders below it (the tables' day folders, curations, the AI run logs, the
        app's files); a curation a killed `prefkit curate` had moved aside goes back. Returns what
        was cleaned. For an S3 store (nothing on S3 is ever half written): its local staging folder."""
        if self.root is None:
            staging = self._state_path() / "staging" if self.fs is not None else None
            return files.clean_leftovers(staging) if staging is not None and staging.is_dir() else []
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
        base = self.url if self.remote and self.fs is None else glob_escape(self.url)
        return f"{base}/{table}/*/*.parquet"

    def problems(self, tables: Iterable[str] = TABLES, *, deep: bool = False) -> list[Problem]:
        """Every part readers cannot use (unreadable, truncated, foreign schema) and every table or day
        folder that links out of the store. `deep` reads whole files; otherwise footers, cached.

        On S3 the footer of each part is read once per process (one small GET; cached by key, size
        and ETag), so a foreign object is named before a query trips over it."""
        if self.fs is not None:
            return [p for table in tables for p in self._object_problems(table, self._objects(table), deep)]
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

    def _object_problems(self, table: str, entries: list[objects.Entry], deep: bool) -> list[Problem]:
        found = []
        for entry in entries:
            key = (entry.url, entry.size, entry.etag)
            if deep or key not in _CHECKED:
                if len(_CHECKED) > 200_000:
                    _CHECKED.clear()
                with self._s3():
                    data = objects.fetch_for_check(self.fs, entry, deep)
                try:
                    _CHECKED[key] = schema_problem(objects.schema_of(data, deep), table)
                except (pa.ArrowException, OSError) as exc:  # pyarrow raises OSError for bad bytes
                    _CHECKED[key] = f"is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
            if _CHECKED[key]:
                found.append(Problem(entry.url, _CHECKED[key]))
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

    def _raise_problems(self, tables: Iterable[str] = TABLES, found: list[Problem] | None = None) -> None:
        if found is None:
            found = self.problems(tables)
        found = [p for p in found if str(p.path).endswith(".parquet")]
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            where = self.root if self.root is not None else self.url
            aside = self.root / QUARANTINE if self.root is not None else f"{self.url}/{QUARANTINE}"
            raise StoreError(
                f"{found[0]}{more}; run `prefkit check --store {where} --repair` to move unreadable "
                f"parts aside into {aside}"
            )

    def read_failed(self, exc: duckdb.Error) -> StoreError:
        """A query over the views failed although every footer was fine: a part is damaged inside.
        The StoreError says how to find it (`prefkit check` reads every part whole)."""
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        return StoreError(
            f"reading the store at {self.url} failed ({first}); a part may be damaged: "
            f"run `prefkit check --store {self.url}` to find it"
        )

    def quarantine(self, problems: Iterable[Problem]) -> list[tuple[Path | str, Path | str]]:
        """Move each problem file or link into `<store>/quarantine/` (same relative path). Returns
        (from, to) pairs. Nothing is deleted: a part may still be recoverable by hand. On S3 each
        object is copied there first and deleted after."""
        self._writable()
        if self.fs is not None:
            return [self._quarantine_object(str(p.path)) for p in problems]
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

    def _quarantine_object(self, url: str) -> tuple[str, str]:
        source = url.removeprefix("s3://")
        rel = source[len(self._key()) + 1 :]
        target = self._key(QUARANTINE, rel)
        with self._s3():
            if self.fs.exists(target):
                target = f"{target}.{time.time_ns()}"
            objects.copy(self.fs, source, target)
            objects.delete(self.fs, [source])
        return url, f"s3://{target}"

    def part_files(self, table: str) -> list[Path] | list[str]:
        """The parts of `table` (local paths; s3:// URLs for an S3 store), in name order."""
        self._writable()
        if self.fs is not None:
            return [e.url for e in self._objects(table)]
        return sorted(self.root.glob(f"{table}/*/*.parquet"))

    def is_empty(self, table: str) -> bool:
        if self.fs is not None:
            return not self._objects(table)
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

        An S3 store's views read the parts listed when the connection was made (one LIST per table),
        each a whole object; a part written later shows up in the next connection.
        """
        if self.fs is not None:
            return self._connect_s3(con, skip_unreadable)
        bad = {p.path for p in self.problems()} if skip_unreadable else set()
        if not skip_unreadable:
            self._raise_problems()
        con = con or duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.remote:
            return self._connect_http(con)
        for table in TABLES:
            good = [p for p in self.root.glob(f"{table}/*/*.parquet") if p not in bad] if bad else None
            if self.is_empty(table) or good == []:
                self._views(con, table, None)
            elif good is not None:
                self._views(con, table, [glob_escape(str(p)) for p in good])
            else:
                self._views(con, table, self.glob(table))
        return con

    def _connect_http(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """hf:// and https:// stores, through DuckDB's httpfs extension if it is installed on this
        machine already: auto-install is off, so it is never downloaded at run time."""
        con.execute("SET autoinstall_known_extensions = false")
        try:
            for table in TABLES:
                self._views(con, table, self.glob(table))
        except duckdb.Error as exc:
            if "httpfs" not in str(exc):
                raise
            protocol = self.url.split("://", 1)[0]
            raise StoreError(
                f"{self.url}: reading {protocol}:// stores needs DuckDB's httpfs extension, which prefkit "
                "never downloads: install it once where the network allows (INSTALL httpfs), or copy "
                "the store to a local folder or an s3:// bucket"
            ) from None
        return con

    def _connect_s3(self, con: duckdb.DuckDBPyConnection | None, skip_unreadable: bool) -> duckdb.DuckDBPyConnection:
        """Small parts (most: the app writes one per answer) are fetched together, parsed once per
        process (`objects.PartCache`) and handed to DuckDB as Arrow; large ones (compacted) DuckDB
        streams through s3fs. A part compaction deleted between the listing and the fetch makes the
        whole listing start again, so a reader never misses rows that moved into a merged object."""
        for attempt in range(5):
            listed = {table: self._objects(table) for table in TABLES}
            try:
                loaded = {table: self._load_small(table, listed[table]) for table in TABLES}
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise StoreError(f"{self.url}: parts keep vanishing while being read; try again") from None
        found = [p for table in TABLES for p in loaded[table][1]]
        large = {t: [e for e in listed[t] if e.size > objects.SMALL_PART] for t in TABLES}
        found += [p for t in TABLES for p in self._object_problems(t, large[t], deep=False)]
        if not skip_unreadable:
            self._raise_problems(found=found)
        bad = {p.path for p in found}
        con = con or duckdb.connect(config=_OFFLINE)
        con.execute("SET TimeZone = 'UTC'")
        _offline(con, self.fs)
        for table in TABLES:
            sql = self._s3_source(con, table, loaded[table][0], [e for e in large[table] if e.url not in bad])
            self._define_views(con, table, sql)
        return con

    def _load_small(self, table: str, entries: list[objects.Entry]) -> tuple[list[pa.Table], list[Problem]]:
        """The small parts of `entries` as Arrow tables (from the cache, else fetched in one
        concurrent round), and the problems of those that are not `table` parts. Raises
        FileNotFoundError when a listed part is gone."""
        small = [e for e in entries if e.size <= objects.SMALL_PART]
        keys = {e.url: (e.url, e.size, e.etag) for e in small}
        missing = [e for e in small if _PARTS.get(keys[e.url]) is None and not _CHECKED.get(keys[e.url])]
        with self._s3():
            fetched = objects.fetch_many(self.fs, [e.path for e in missing])
        for e in missing:
            body = fetched.get(e.path)
            if isinstance(body, FileNotFoundError):
                raise body  # deleted since the listing (a compaction): the caller lists again
            if isinstance(body, BaseException):
                with self._s3():
                    raise body
            key = keys[e.url]
            try:
                arrow = pq.read_table(pa.BufferReader(body))
            except (pa.ArrowException, OSError) as exc:  # pyarrow raises OSError for bad bytes
                _CHECKED[key] = f"is not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
                continue
            _CHECKED[key] = schema_problem(arrow.schema, table)
            if _CHECKED[key] is None:
                _PARTS.put(key, arrow)
        tables, found = [], []
        for e in small:
            problem = _CHECKED.get(keys[e.url])
            if problem:
                found.append(Problem(e.url, problem))
                continue
            arrow = _PARTS.get(keys[e.url])
            if arrow is None:  # pushed out of the cache by the parts after it: fetch it alone
                with self._s3():
                    arrow = pq.read_table(pa.BufferReader(self.fs.cat_file(e.path)))
            tables.append(arrow)
        return tables, found

    @staticmethod
    def _s3_source(
        con: duckdb.DuckDBPyConnection, table: str, small: list[pa.Table], large: list[objects.Entry]
    ) -> str | None:
        """SQL over a table's parts: the small ones registered as one Arrow table, the large ones read
        by DuckDB; None when there are none."""
        pieces = []
        if small:
            name = f"_small_{table}"
            con.register(name, pa.concat_tables(small, promote_options="permissive"))
            pieces.append(f"SELECT * FROM {name}")
        if large:
            sources = "[" + ", ".join(_sql_str(glob_escape(e.url)) for e in large) + "]"
            pieces.append(f"SELECT * FROM read_parquet({sources}, union_by_name = true)")
        return " UNION ALL BY NAME ".join(pieces) or None

    @classmethod
    def _views(cls, con: duckdb.DuckDBPyConnection, table: str, source: list[str] | str | None) -> None:
        """The views of `table` over `source`: a glob, a list of escaped paths, or None for no rows."""
        if source is None:
            sql = None
        elif isinstance(source, list):
            sources = "[" + ", ".join(_sql_str(p) for p in source) + "]"
            sql = f"SELECT * FROM read_parquet({sources}, union_by_name = true)"
        else:
            sql = f"SELECT * FROM read_parquet({_sql_str(source)}, union_by_name = true)"
        cls._define_views(con, table, sql)

    @staticmethod
    def _define_views(con: duckdb.DuckDBPyConnection, table: str, sql: str | None) -> None:
        """`raw_<table>` over the query `sql` (None: no rows) and `<table>`, the same rows deduplicated
        on id (the first written wins)."""
        if sql is None:
            empty = f"_empty_{table}"
            con.register(empty, SCHEMAS[table].empty_table())
            sql = f"SELECT * FROM {empty}"
        con.execute(f"CREATE OR REPLACE VIEW raw_{table} AS {sql}")
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM raw_{table} "
            f"QUALIFY row_number() OVER (PARTITION BY {ID_COLUMN[table]} ORDER BY created_at) = 1"
        )

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
        if self.fs is not None:
            return self._compact_s3([table] if table else list(TABLES), max_part_bytes)
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

    def _compact_s3(self, tables: list[str], max_part_bytes: int) -> dict[str, int]:
        """`compact` on S3: per day, the merged object is PUT (whole, under a new key) before one
        DeleteObjects request removes the parts it holds; a crash in between leaves both, which
        readers dedupe, and the next run merges them again."""
        listed = {name: self._objects(name) for name in tables}
        self._raise_problems(found=[p for n in tables for p in self._object_problems(n, listed[n], deep=False)])
        done: dict[str, int] = {}
        for name in tables:
            done[name] = 0
            days: dict[str, list[objects.Entry]] = {}
            for entry in listed[name]:
                day = entry.path[len(self._key(name)) + 1 :].split("/")[0]
                days.setdefault(day, []).append(entry)
            for day, entries in sorted(days.items()):
                parts = [e for e in entries if e.size < max_part_bytes]
                if len(parts) < 2:
                    continue
                self._merge_s3(name, day, parts)
                done[name] += len(parts)
        return done

    def _merge_s3(self, table: str, day: str, parts: list[objects.Entry]) -> str:
        staging = self._staging()
        tmp = files.temp_path(staging / f"{table}-{day}-compact.parquet")
        key = self._key(table, day, f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}-compact.parquet")
        con = duckdb.connect(config=_OFFLINE)
        try:
            con.execute("SET TimeZone = 'UTC'")
            _offline(con, self.fs)
            small, _ = self._load_small(table, parts)  # problems were refused before
            large = [e for e in parts if e.size > objects.SMALL_PART]
            con.execute(
                f"COPY (SELECT * FROM ({self._s3_source(con, table, small, large)}) "
                f"QUALIFY row_number() OVER (PARTITION BY {ID_COLUMN[table]} ORDER BY created_at) = 1 "
                f"ORDER BY created_at) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
            )
            with self._s3():
                self.fs.put_file(str(tmp), key)  # whole or absent; below 100 MiB one PUT
                objects.delete(self.fs, [e.path for e in parts])  # only once the merged object exists
        except duckdb.Error as exc:
            raise self.read_failed(exc) if damaged(exc) else exc from None
        finally:
            con.close()
            files.discard(tmp)
        return f"s3://{key}"

    def _staging(self) -> Path:
        """`state_dir/staging/`: where S3 writes are prepared (leftovers of dead writers are cleaned
        when the store is opened)."""
        folder = self.state_dir / "staging"
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        return folder


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


class _S3Batch:
    """Parts staged by `Store.batch()` for an S3 store; see there. Parts are kept in memory up to
    IN_MEMORY bytes in all; beyond that (a large import) in private files under `state_dir/staging/`,
    so memory stays bounded."""

    IN_MEMORY = 64 << 20

    def __init__(self, store: Store):
        self.store = store
        self.staged: list[tuple[str, str, bytes | Path]] = []  # (table, key, the bytes or their file)
        self.in_memory = 0
        self.rows: dict[str, int] = {t: 0 for t in TABLES}

    def append(self, table: str, rows: Iterable[Any] | pa.Table) -> int:
        arrow = to_table(table, rows)
        if arrow.num_rows == 0:
            return 0
        name = self.store._part_name(table)
        sink = pa.BufferOutputStream()
        pq.write_table(arrow, sink, compression="zstd")
        body: bytes | Path = sink.getvalue().to_pybytes()
        if self.in_memory + len(body) > self.IN_MEMORY:
            path = files.temp_path(self.store._staging() / name.replace("/", "-"))
            self.staged.append((table, self.store._key(name), path))  # discard() removes it on failure
            with files.create_new(path, PRIVATE_FILE) as fh:
                fh.write(body)
        else:
            self.in_memory += len(body)
            self.staged.append((table, self.store._key(name), body))
        self.rows[table] += arrow.num_rows
        return arrow.num_rows

    def commit(self) -> None:
        try:
            # One PUT per part (s3fs sends below 100 MiB as a single put_object; above, a multipart
            # upload, which S3 also makes visible only once complete), tables in contract order.
            for _, key, body in sorted(self.staged, key=lambda s: TABLES.index(s[0])):
                with self.store._s3():
                    if isinstance(body, Path):
                        self.store.fs.put_file(str(body), key)
                    else:
                        self.store.fs.pipe_file(key, body)
        finally:
            self.discard()

    def discard(self) -> None:
        for _, _, body in self.staged:
            if isinstance(body, Path):
                files.discard(body)
        self.staged = []
        self.in_memory = 0
