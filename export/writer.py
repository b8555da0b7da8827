"""Stream one curated table into one export folder: Hub-layout Parquet shards, a `save_to_disk` DatasetDict, JSONL.

Rows flow in record batches from DuckDB (the format's SELECT) to two writers at once: Parquet shards
in the Hub's layout (`data/<split>-00000-of-0000N.parquet`) and an Arrow stream file per split. The
stream file is memory-mapped by `Dataset.from_file` and written out by `datasets`' own
`save_to_disk`, so the on-disk DatasetDict is exactly what `datasets` writes, and no step holds the
whole table in memory.

A split with no rows is left out of both layouts: `load_dataset("parquet")` cannot read an empty shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from export.formats import CONVERSATIONAL_PROMPTS_SQL, Format, select_sql

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
    rows = con.execute("SELECT split, count(*) FROM read_parquet(?) GROUP BY split", [str(source)]).fetchall()
    counts = dict(rows)
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


class _ShardWriter:
    """Parquet shards of one split, renamed to `<split>-0000i-of-0000N.parquet` once N is known."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, shard_bytes: int):
        self.folder, self.split, self.schema, self.shard_bytes = folder, split, schema, shard_bytes
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if self._writer is None or self._bytes >= self.shard_bytes:
                self._open_next()
            room = self.shard_bytes - self._bytes
            # Rows that fit in this shard, estimated from the batch's mean row size (at least one).
            fit = batch.num_rows if batch.nbytes <= room else max(1, batch.num_rows * room // max(batch.nbytes, 1))
            head, batch = batch.slice(0, fit), batch.slice(fit)
            self._writer.write_batch(head, row_group_size=BATCH_ROWS)
            self._bytes += head.nbytes

    def _open_next(self) -> None:
        self._close_current()
        part = self.folder / f".{self.split}-{len(self.parts):05d}.partial"
        self.parts.append(part)
        dictionary = [c for c in DICTIONARY_COLUMNS if c in self.schema.names]
        self._writer = pq.ParquetWriter(part, self.schema, compression="snappy", use_dictionary=dictionary)
        self._bytes = 0

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[Path]:
        self._close_current()
        n = len(self.parts)
        final = [self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        for part, name in zip(self.parts, final, strict=True):
            os.replace(part, name)
        return final


def write_format(
    con: duckdb.DuckDBPyConnection,
    fmt: Format,
    source: Path,
    out: Path,
    work: Path,
    conversational: bool,
    neutral_is_good: bool = True,
    shard_bytes: int = SHARD_BYTES,
) -> Written:
    """Write `fmt` from the curated table `source` into the (new, empty) folder `out`; `work` is scratch space."""
    from datasets import Dataset, DatasetDict

    counts = {s: n for s, n in split_counts(con, source).items() if n > 0}
    (out / "data").mkdir(parents=True)
    work.mkdir(parents=True, exist_ok=True)
    sql = select_sql(fmt, conversational, neutral_is_good)
    schema: pa.Schema | None = None
    streams: dict[str, Path] = {}
    nbytes: dict[str, int] = {}
    files: list[str] = []
    for split in counts:
        reader = con.sql(sql, params=[str(source), split]).to_arrow_reader(BATCH_ROWS)
        if schema is None:
            schema = pa.schema([pa.field(f.name, _plain_lists(f.type)) for f in reader.schema])
        streams[split] = work / f"{split}.arrow"
        shards = _ShardWriter(out / "data", split, schema, shard_bytes)
        nbytes[split] = 0
        with pa.OSFile(str(streams[split]), "wb") as sink, pa.ipc.new_stream(sink, schema) as stream:
            for batch in reader:
                batch = batch.cast(schema)
                stream.write_batch(batch)
                shards.write(batch)
                nbytes[split] += batch.nbytes
        files += [str(p.relative_to(out)) for p in shards.finish()]

    # `datasets` writes its own layout from memory-mapped stream files: no copy in RAM.
    DatasetDict({split: Dataset.from_file(str(path)) for split, path in streams.items()}).save_to_disk(str(out))
    for path in streams.values():
        path.unlink()
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
