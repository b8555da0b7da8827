"""Stream one curated table into one export folder: Hub-layout Parquet shards, a `save_to_disk` DatasetDict, JSONL.

Rows flow in record batches from DuckDB (the format's SELECT) to two writers at once: Parquet shards
in the Hub's layout (`data/<split>-00000-of-0000N.parquet`) and Arrow stream shards in `save_to_disk`'s
layout (`<split>/data-00000-of-0000N.arrow` with its `state.json` and `dataset_info.json`). Writing the
second layout in the same pass, instead of calling `save_to_disk` afterwards, saves a full extra
write of the data (measured in bench/export.py); tests/export check that `load_from_disk` reads it
exactly as it reads `datasets`' own `save_to_disk` output. No step holds the whole table in memory.

A split with no rows is left out of both layouts: `load_dataset("parquet")` cannot read an empty shard.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.curate.tables import name_problem
from prefkit.export.errors import ExportError
from prefkit.export.formats import CONVERSATIONAL_PROMPTS_SQL, Format, select_sql

SHARD_BYTES = 500 * 1024 * 1024  # the Hub's customary shard size (and `datasets`' push_to_hub default)
BATCH_ROWS = 32_768
# Dictionary-encode only the columns that repeat; on free text it costs a third of the write time for nothing.
DICTIONARY_COLUMNS = ("aspect", "source", "derived_from")
SPLIT_ORDER = ("train", "test")


@dataclass
class Written:
    """What was written for one format."""

    path: Path
    conversational: bool
    splits: dict[str, int]  # rows per split, in split order
    nbytes: dict[str, int]  # Arrow bytes per split (the card's num_bytes)
    schema: pa.Schema
    files: list[str] = field(default_factory=list)  # paths relative to `path`


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Bounded memory: DuckDB spills rather than grow past this; the export itself streams.
    con.execute("SET memory_limit = '2GB'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def split_counts(con: duckdb.DuckDBPyConnection, source: Path) -> dict[str, int]:
    """Rows per split of a curated table. Split names become folder and file names of the export, so
    each must pass the rule curation names do (`prefkit.curate.tables.name_problem`): a table from elsewhere
    whose split is `x/../../y` is refused before anything is written."""
    rows = con.execute("SELECT split, count(*) FROM read_parquet(?) GROUP BY split", [str(source)]).fetchall()
    counts = dict(rows)
    for split in counts:
        problem = name_problem(split, what="split name")
        if problem:
            raise ExportError(f"{source}: {problem}; re-run `prefkit curate` (it writes train and test)")
    order = [s for s in SPLIT_ORDER if s in counts] + sorted(s for s in counts if s not in SPLIT_ORDER)
    return {s: counts[s] for s in order}


def has_conversations(con: duckdb.DuckDBPyConnection, source: Path) -> bool:
    return con.execute(CONVERSATIONAL_PROMPTS_SQL, [str(source)]).fetchone()[0] > 0


def _plain_lists(t: pa.DataType) -> pa.DataType:
    """The same type with list item fields named as pyarrow names them (DuckDB names them `l`)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain_lists(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain_lists(f.type)) for f in t])
    return t


class _Shards:
    """Shards of one split, each closed at about `shard_bytes`, renamed `<prefix>0000i-of-0000N<suffix>` once N
    is known. `open_writer(path)` returns an object with `write_batch` and `close`."""

    def __init__(self, folder: Path, prefix: str, suffix: str, open_writer, shard_bytes: int):
        self.folder, self.prefix, self.suffix, self.shard_bytes = folder, prefix, suffix, shard_bytes
        self.open_writer = open_writer
        self.parts: list[Path] = []
        self._writer = None
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if self._writer is None or self._bytes >= self.shard_bytes:
                self._close_current()
                self.parts.append(self.folder / f".{self.prefix}{len(self.parts):05d}.partial")
                self._writer = self.open_writer(self.parts[-1])
                self._bytes = 0
            room = self.shard_bytes - self._bytes
            # Rows that fit in this shard, estimated from the batch's mean row size (at least one).
            fit = batch.num_rows if batch.nbytes <= room else max(1, batch.num_rows * room // max(batch.nbytes, 1))
            head, batch = batch.slice(0, fit), batch.slice(fit)
            self._writer.write_batch(head)
            self._bytes += head.nbytes

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[Path]:
        self._close_current()
        n = len(self.parts)
        final = [self.folder / f"{self.prefix}{i:05d}-of-{n:05d}{self.suffix}" for i in range(n)]
        for part, name in zip(self.parts, final, strict=True):
            os.replace(part, name)
        return final


class _ParquetFile:
    def __init__(self, path: Path, schema: pa.Schema):
        dictionary = [c for c in DICTIONARY_COLUMNS if c in schema.names]
        self._w = pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=dictionary)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch, row_group_size=BATCH_ROWS)

    def close(self) -> None:
        self._w.close()


class _ArrowStreamFile:
    """An Arrow IPC stream file, the format of `save_to_disk`'s `data-*.arrow` shards."""

    def __init__(self, path: Path, schema: pa.Schema):
        self._sink = pa.OSFile(str(path), "wb")
        self._w = pa.ipc.new_stream(self._sink, schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._w.write_batch(batch)

    def close(self) -> None:
        self._w.close()
        self._sink.close()


def _finish_saved_split(folder: Path, features, shards: list[Path]) -> None:
    """The two small files `save_to_disk` writes beside its shards: `state.json` (the shard list and format
    state, as `Dataset.save_to_disk` writes it) and `dataset_info.json` (by `DatasetInfo.write_to_directory`)."""
    from datasets import DatasetInfo

    state = {
        "_data_files": [{"filename": p.name} for p in shards],
        "_fingerprint": secrets.token_hex(8),  # a cache key for `datasets`, not a content hash
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    DatasetInfo(features=features).write_to_directory(str(folder))


def write_format(
    con: duckdb.DuckDBPyConnection,
    fmt: Format,
    source: Path,
    out: Path,
    conversational: bool,
    neutral_is_good: bool = True,
    shard_bytes: int = SHARD_BYTES,
) -> Written:
    """Write `fmt` from the curated table `source` into the (new) folder `out`, in one streamed pass per split."""
    from datasets import Features

    counts = {s: n for s, n in split_counts(con, source).items() if n > 0}
    (out / "data").mkdir(parents=True)
    sql = select_sql(fmt, conversational, neutral_is_good)
    schema: pa.Schema | None = None
    features = None
    nbytes: dict[str, int] = {}
    files: list[str] = []
    for split in counts:
        reader = con.sql(sql, params=[str(source), split]).to_arrow_reader(BATCH_ROWS)
        if schema is None:
            # The schema `datasets` gives these features, its metadata included, so both layouts match it.
            features = Features.from_arrow_schema(pa.schema([(f.name, _plain_lists(f.type)) for f in reader.schema]))
            schema = features.arrow_schema
        (out / split).mkdir()
        hub = _Shards(out / "data", f"{split}-", ".parquet", partial(_ParquetFile, schema=schema), shard_bytes)
        saved = _Shards(out / split, "data-", ".arrow", partial(_ArrowStreamFile, schema=schema), shard_bytes)
        nbytes[split] = 0
        for batch in reader:
            batch = batch.cast(schema)
            hub.write(batch)
            saved.write(batch)
            nbytes[split] += batch.nbytes
        files += [str(p.relative_to(out)) for p in hub.finish()]
        _finish_saved_split(out / split, features, saved.finish())
    (out / "dataset_dict.json").write_text(json.dumps({"splits": list(counts)}), encoding="utf-8")
    return Written(out, conversational, counts, nbytes, schema, files)


def write_jsonl(con: duckdb.DuckDBPyConnection, written: Written) -> list[str]:
    """One JSON object per line per split (`jsonl/<split>.jsonl`), from the Parquet shards just written."""
    folder = written.path / "jsonl"
    folder.mkdir()
    files = []
    for split in written.splits:
        target = folder / f"{split}.jsonl"
        shards = str(written.path / "data" / f"{split}-*.parquet")
        # DuckDB streams the copy; its `?` cannot stand for a COPY target, so the path is quoted here.
        quoted = "'" + str(target).replace("'", "''") + "'"
        con.execute(f"COPY (SELECT * FROM read_parquet(?)) TO {quoted} (FORMAT json)", [shards])
        files.append(str(target.relative_to(written.path)))
    return files
