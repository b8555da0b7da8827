"""Readers: a file (or a dataset folder) → a stream of (location, record) pairs.

Formats: JSONL, JSON (an array of records, or an object holding one), CSV/TSV, Parquet, and
Hugging Face datasets folders (`save_to_disk` output, or a folder of Parquet files such as a Hub
dataset's). JSONL, CSV, Parquet and datasets folders stream in bounded memory; a JSON document is
read whole (it is one value), so use JSONL for files larger than memory.

Locations are `file:line` for text formats and `file: row N` for columnar ones.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotate.importers.errors import ImportFailed

UTF8_FIX = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)"
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf")


@dataclass
class Source:
    """An opened input: `records()` yields (location, record, progress), progress counting `unit`s
    up to `total`."""

    path: Path
    format: str
    total: int
    unit: str

    def records(self) -> Iterator[tuple[str, dict[str, Any], int]]:
        return _READERS[self.format](self.path)


def open_source(path: str | Path) -> Source:
    path = Path(path)
    if not path.exists():
        raise ImportFailed(str(path), None, "no such file or folder", "check the path")
    if path.is_dir():
        files = _dataset_files(path)
        return Source(path, "hf", sum(_rows(f) for f in files), "rows")
    suffix = path.suffix.lower()
    fmt = {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }.get(suffix)
    if fmt is None:
        raise ImportFailed(
            str(path),
            None,
            f"unknown file type '{suffix}'",
            "use .jsonl, .json, .csv, .tsv, .parquet, or a datasets folder",
        )
    if fmt == "json" and _is_json_lines(path):
        fmt = "jsonl"  # JSON Lines saved as .json (common): one object per line
    if fmt == "parquet":
        return Source(path, fmt, _rows(path), "rows")
    return Source(path, fmt, path.stat().st_size, "B")


# -- text formats ----------------------------------------------------------------------------------


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            where, None, f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", UTF8_FIX
        ) from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any], int]]:
    done = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            done += len(raw)
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark some editors write
            where = f"{path}:{lineno}"
            line = _decode(raw, where)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportFailed(
                    where,
                    None,
                    f"bad JSON ({exc.msg} at column {exc.colno})",
                    "fix the line: each line must be one JSON object",
                ) from None
            yield where, _object(record, where), done


def _is_json_lines(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        return False
    first = head.split(b"\n", 1)[0]
    try:
        return (
            isinstance(json.loads(first), dict)
            and len(head.split(b"\n", 1)) > 1
            and bool(head.split(b"\n", 1)[1].strip())
        )
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _read_json(path: Path) -> Iterator[tuple[str, dict[str, Any], int]]:
    """A JSON array of records, or an object with one list of records (e.g. {"data": [...]}).

    Elements are decoded one at a time so each record's line is known for error messages.
    """
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportFailed(f"{path}:{line}", None, f"invalid UTF-8 (byte 0x{raw[exc.start]:02x})", UTF8_FIX) from None
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = _skip(text, 0)
    if text.startswith("{", pos):
        pos = _records_key(path, text, decoder, lines)
    if not text.startswith("[", pos):
        raise ImportFailed(
            f"{path}:{lines.at(pos)}",
            None,
            "is not a JSON array or object of records",
            'give [{...}, {...}] or {"data": [{...}]} (or use JSONL)',
        )
    pos = _skip(text, pos + 1)
    while not text.startswith("]", pos):
        where = f"{path}:{lines.at(pos)}"
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportFailed(
                f"{path}:{exc.lineno}", None, f"bad JSON ({exc.msg} at column {exc.colno})", "fix the JSON there"
            ) from None
        yield where, _object(record, where), pos
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif not text.startswith("]", pos):
            raise ImportFailed(
                f"{path}:{lines.at(pos)}", None, "bad JSON (expected ',' or ']' between records)", "fix the JSON there"
            )


def _records_key(path: Path, text: str, decoder: json.JSONDecoder, lines: _LineCounter) -> int:
    """Position of the records array inside a top-level object: its only list of objects."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(
            f"{path}:{exc.lineno}", None, f"bad JSON ({exc.msg} at column {exc.colno})", "fix the JSON there"
        ) from None
    keys = [k for k, v in whole.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(keys) != 1:
        raise ImportFailed(
            str(path),
            None,
            f"holds {len(keys)} lists of records ({', '.join(keys) or 'none'})",
            "give a file with one list of records, or a JSON array",
        )
    # find where that key's value starts: walk the object's members with the decoder
    pos = _skip(text, text.index("{") + 1)
    while True:
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, _skip(text, pos) + 1)  # past ':'
        if key == keys[0]:
            return pos
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, _skip(text, pos) + 1)  # past ','


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class _LineCounter:
    """Line number of a position, counting forward incrementally (positions only grow)."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _object(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ImportFailed(
            where,
            None,
            f"is a JSON {type(record).__name__}, expected an object (one record)",
            'write each record as {"field": value, ...}',
        )
    return record


def _read_csv(path: Path, delimiter: str = ",") -> Iterator[tuple[str, dict[str, Any], int]]:
    with open(path, "rb") as fh:
        done = 0

        def lines() -> Iterator[str]:
            nonlocal done
            for lineno, raw in enumerate(fh, 1):
                done += len(raw)
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                yield _decode(raw, f"{path}:{lineno}")

        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        start = reader.line_num + 1
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ImportFailed(
                    where,
                    None,
                    f"has {len(row)} cells, the header has {len(header)}",
                    "quote cells that contain the delimiter or line breaks",
                )
            yield where, {k: _cell(v) for k, v in zip(header, row, strict=True)}, done


def _cell(value: str) -> Any:
    """CSV cells are text; a cell holding a JSON list or object (conversational messages, ratings)
    is read as that value."""
    if value[:1] in "[{":
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, dict) or (isinstance(parsed, list) and all(isinstance(x, dict) for x in parsed)):
            return parsed
    return value


# -- columnar formats --------------------------------------------------------------------------------


def _rows(path: Path) -> int:
    if path.suffix == ".arrow":
        with pa.memory_map(str(path)) as src:
            return sum(b.num_rows for b in pa.ipc.open_stream(src))
    return pq.ParquetFile(path).metadata.num_rows


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    if path.suffix == ".arrow":  # datasets' save_to_disk writes Arrow IPC streams
        with pa.memory_map(str(path)) as src:
            yield from pa.ipc.open_stream(src)
    else:
        yield from pq.ParquetFile(path).iter_batches(batch_size=4096)


def _read_columnar(path: Path) -> Iterator[tuple[str, dict[str, Any], int]]:
    files = _dataset_files(path) if path.is_dir() else [path]
    done = 0
    for file in files:
        n = 0
        for batch in _batches(file):
            for record in batch.to_pylist():
                n += 1
                done += 1
                yield f"{file}: row {n}", record, done


def _dataset_files(folder: Path) -> list[Path]:
    """The data files of a datasets folder: save_to_disk shards (every split), else Parquet files."""
    states = sorted(folder.rglob("state.json"))
    if states:
        files = []
        for state in states:
            info = json.loads(state.read_text())
            files += [state.parent / f["filename"] for f in info.get("_data_files", [])]
        return files
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise ImportFailed(
            str(folder),
            None,
            "is a folder with neither a saved dataset (state.json) nor Parquet files",
            "give a folder written by Dataset.save_to_disk, a folder of .parquet files, or a file",
        )
    return files


_READERS = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _read_csv,
    "tsv": lambda p: _read_csv(p, "\t"),
    "parquet": _read_columnar,
    "hf": _read_columnar,
}

__all__ = ["FORMATS", "Source", "open_source"]
