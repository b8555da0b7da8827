"""Readers: a file (or a dataset folder) → a stream of (location, record) pairs.

Formats: JSONL, JSON (an array of records, or an object holding one), CSV/TSV, Parquet, and
Hugging Face datasets folders (`save_to_disk` output, or a folder of Parquet files such as a Hub
dataset's). JSONL, CSV, Parquet and datasets folders stream in bounded memory; a JSON document is
read whole (it is one value), so use JSONL for files larger than memory.

Locations are `file:line` for text formats and `file: row N` for columnar ones.

Hostile or broken input ends in ImportFailed, never a traceback: a record longer than
`max_record_bytes` (default 64 MiB; JSONL and CSV lines are read with that bound, so a giant line is
never held whole), JSON nested too deeply for the parser, a CSV cell over the limit, an unreadable or
truncated file, a path that is not a regular file (a pipe would block), and a datasets folder whose
`state.json` names files outside the folder.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import json_kind

UTF8_FIX = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)"
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf")
MAX_RECORD_BYTES = 64 << 20  # one record (a JSONL line, a CSV row, a JSON array element)
LIMIT_FIX = "split the record, or raise the limit with --max-record-mb"
DEEP_FIX = "flatten the record (JSON nested this deep is not preference data)"
READ_FIX = "check that the path is right and that you may read it"


@dataclass
class Source:
    """An opened input: `records()` yields (location, record, progress), progress counting `unit`s
    up to `total`."""

    path: Path
    format: str
    total: int
    unit: str
    max_record_bytes: int = field(default=MAX_RECORD_BYTES)

    def records(self) -> Iterator[tuple[str, dict[str, Any], int]]:
        try:
            yield from _READERS[self.format](self.path, self.max_record_bytes)
        except OSError as exc:  # a file that vanished, a permission, a disk error mid-read
            raise ImportFailed(str(getattr(exc, "filename", None) or self.path), None, _cannot(exc), READ_FIX) from None


def _cannot(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or exc})"


def open_source(path: str | Path, max_record_bytes: int = MAX_RECORD_BYTES) -> Source:
    """The input at `path`, its format told from its suffix (or its being a folder)."""
    path = Path(path)
    try:
        source = _open(path)
    except OSError as exc:
        raise ImportFailed(str(path), None, _cannot(exc), READ_FIX) from None
    source.max_record_bytes = max_record_bytes
    return source


def _open(path: Path) -> Source:
    if not path.exists():
        raise ImportFailed(str(path), None, "no such file or folder", "check the path")
    if not path.is_dir() and not path.is_file():
        raise ImportFailed(
            str(path), None, "is not a regular file (a pipe, socket or device)", "save the data to a file first"
        )
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


def _lines(fh, path: Path, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """(line number, bytes, bytes read so far) per line, never holding more than `limit` + 1 bytes
    of one line: a longer line stops the import where it starts."""
    lineno = done = 0
    while raw := fh.readline(limit + 1):
        lineno += 1
        done += len(raw)
        if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
            raise ImportFailed(
                f"{path}:{lineno}", None, f"is longer than the record limit ({limit:,} bytes)", LIMIT_FIX
            )
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark some editors write
        yield lineno, raw, done


def _loads(text: str, where: str, fix: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(where, None, f"bad JSON ({exc.msg} at column {exc.colno})", fix) from None
    except RecursionError:
        raise ImportFailed(where, None, "is JSON nested too deeply to read", DEEP_FIX) from None


def _read_jsonl(path: Path, limit: int) -> Iterator[tuple[str, dict[str, Any], int]]:
    with open(path, "rb") as fh:
        for lineno, raw, done in _lines(fh, path, limit):
            where = f"{path}:{lineno}"
            line = _decode(raw, where)
            if not line.strip():
                continue
            record = _loads(line, where, "fix the line: each line must be one JSON object")
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return False


def _read_json(path: Path, limit: int) -> Iterator[tuple[str, dict[str, Any], int]]:
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
        start = pos
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportFailed(
                f"{path}:{exc.lineno}", None, f"bad JSON ({exc.msg} at column {exc.colno})", "fix the JSON there"
            ) from None
        except RecursionError:
            raise ImportFailed(where, None, "is JSON nested too deeply to read", DEEP_FIX) from None
        if pos - start > limit:
            raise ImportFailed(where, None, f"is longer than the record limit ({limit:,} characters)", LIMIT_FIX)
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
    except RecursionError:
        raise ImportFailed(str(path), None, "is JSON nested too deeply to read", DEEP_FIX) from None
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
            f"is a JSON {json_kind(record)}, expected an object (one record)",
            'write each record as {"field": value, ...}',
        )
    return record


def _read_csv(path: Path, limit: int, delimiter: str = ",") -> Iterator[tuple[str, dict[str, Any], int]]:
    csv.field_size_limit(limit)  # the csv module's own cap (128 KiB by default) becomes the record limit
    with open(path, "rb") as fh:
        done = 0

        def lines() -> Iterator[str]:
            nonlocal done
            for lineno, raw, done in _lines(fh, path, limit):  # noqa: B007 (done is read outside)
                yield _decode(raw, f"{path}:{lineno}")

        reader = csv.reader(lines(), delimiter=delimiter)
        rows = _csv_rows(reader, path, limit)
        header = next(rows, None)
        if header is None:
            return
        start, begun = reader.line_num + 1, done
        for row in rows:
            where = f"{path}:{start}"
            if done - begun > limit:  # many lines of quoted text in one record
                raise ImportFailed(where, None, f"is longer than the record limit ({limit:,} bytes)", LIMIT_FIX)
            start, begun = reader.line_num + 1, done
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


def _csv_rows(reader, path: Path, limit: int) -> Iterator[list[str]]:
    while True:
        where = f"{path}:{reader.line_num + 1}"  # where the row starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ImportFailed(
                    where, None, f"has a cell longer than the record limit ({limit:,} bytes)", LIMIT_FIX
                ) from None
            raise ImportFailed(where, None, f"bad CSV ({exc})", "check the quoting of that row") from None
        yield row


def _cell(value: str) -> Any:
    """CSV cells are text; a cell holding a JSON list or object (conversational messages, ratings)
    is read as that value."""
    if value[:1] in "[{":
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
        if isinstance(parsed, dict) or (isinstance(parsed, list) and all(isinstance(x, dict) for x in parsed)):
            return parsed
    return value


# -- columnar formats --------------------------------------------------------------------------------


def _columnar_error(path: Path, exc: Exception) -> ImportFailed:
    kind = "Arrow" if path.suffix == ".arrow" else "Parquet"
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ImportFailed(
        str(path),
        None,
        f"is not a readable {kind} file ({first})",
        "re-download or re-write the file; it may be cut off",
    )


def _rows(path: Path) -> int:
    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as src:
                return sum(b.num_rows for b in pa.ipc.open_stream(src))
        return pq.ParquetFile(path).metadata.num_rows
    except pa.ArrowException as exc:
        raise _columnar_error(path, exc) from None


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        if path.suffix == ".arrow":  # datasets' save_to_disk writes Arrow IPC streams
            with pa.memory_map(str(path)) as src:
                yield from pa.ipc.open_stream(src)
        else:
            yield from pq.ParquetFile(path).iter_batches(batch_size=4096)
    except pa.ArrowException as exc:
        raise _columnar_error(path, exc) from None


def _read_columnar(path: Path, limit: int) -> Iterator[tuple[str, dict[str, Any], int]]:
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
        inside = folder.resolve()
        files = []
        for state in states:
            info = _loads(_decode(state.read_bytes(), str(state)), str(state), "re-save the dataset with save_to_disk")
            entries = info.get("_data_files", []) if isinstance(info, dict) else None
            if not isinstance(entries, list) or not all(
                isinstance(f, dict) and isinstance(f.get("filename"), str) for f in entries
            ):
                raise ImportFailed(
                    str(state),
                    "_data_files",
                    "is not a list of {filename: ...}",
                    "re-save the dataset with save_to_disk",
                )
            for entry in entries:
                file = state.parent / entry["filename"]
                # a state.json from someone else must not make the import read files elsewhere on disk
                if not file.resolve().is_relative_to(inside):
                    raise ImportFailed(
                        str(state),
                        "_data_files",
                        f"names {entry['filename']!r}, which is outside {folder}",
                        "a saved dataset names only its own files: re-save it with save_to_disk",
                    )
                files.append(file)
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
    "tsv": lambda p, limit: _read_csv(p, limit, "\t"),
    "parquet": _read_columnar,
    "hf": _read_columnar,
}

__all__ = ["FORMATS", "Source", "open_source"]
