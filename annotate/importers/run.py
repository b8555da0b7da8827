"""The import loop: read → detect (from the first records) → check each record fits → convert →
validate → stream into one all-or-nothing batch."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prefkit.annotate.contract import ID_COLUMN, utcnow
from prefkit.annotate.importers import hh, pairs, prompts, ratings, unpaired, votes
from prefkit.annotate.importers.detect import DETECT_RECORDS, SHAPES, decide, describe_expected, misfit
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.readers import DEEP_FIX, MAX_RECORD_BYTES, open_source
from prefkit.annotate.importers.rows import TABLE_ORDER, Rows, Seen
from prefkit.annotate.store import Store
from prefkit.annotate.validate import ContractError

CHUNK_RECORDS = 10_000  # records converted before their rows are validated and written as parts
CHUNK_TEXT_BYTES = 32 << 20  # …or fewer, when the texts are long: this bounds memory on big files
DETECT_BYTES = 8 << 20  # the records held back to decide a shape stop here (text formats)

CONVERTERS: dict[str, Callable[[Record, Rows], None]] = {
    "pairs": pairs.convert,
    "hh": hh.convert,
    "unpaired": unpaired.convert,
    "ratings": ratings.convert,
    "prompts": prompts.convert,
}


@dataclass
class FileResult:
    path: str
    format: str  # the file format read (jsonl, json, csv, tsv, parquet, hf)
    shape: str  # the record shape used (one of SHAPES, or "empty")
    why: str  # what in the first records decided the shape ("forced by --format" when given)
    records: int = 0
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_ORDER, 0))
    warnings: dict[str, list] = field(default_factory=dict)  # problem → [count, first location]

    def summary(self) -> str:
        added = ", ".join(f"+{n:,} {t}" for t, n in self.added.items())
        lines = [f"{self.path}: {self.shape} ({self.why}); {self.records:,} records → {added}"]
        for problem, (count, first) in self.warnings.items():
            lines.append(f"  warning: {problem} ({count:,}×, first at {first})")
        return "\n".join(lines)


@dataclass
class ImportResult:
    files: list[FileResult]
    notes: list[str] = field(default_factory=list)  # about the store (parts skipped by the dedupe check)

    @property
    def added(self) -> dict[str, int]:
        """New rows per table, after dedupe against the store and within the import."""
        return {t: sum(f.added[t] for f in self.files) for t in TABLE_ORDER}

    def summary(self) -> str:
        total = ", ".join(f"{n:,} {t}" for t, n in self.added.items())
        return "\n".join([*(f.summary() for f in self.files), *self.notes, f"added: {total}"])


def import_files(
    store: Store,
    paths: list[str | Path],
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    source: str | None = None,
    progress: bool = False,
    *,
    created_at: datetime | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    rating_range: tuple[float, float] = ratings.RATING_RANGE,
) -> ImportResult:
    """Import every file into `store`, all or nothing. See the package docstring.

    `fmt` forces a shape (one of SHAPES); `mapping` renames input columns onto the expected fields
    ({"question": "prompt"}); `source` names where the rows came from (default: each file's name);
    `created_at` stamps every row (default: now; fixed when a build must be reproducible);
    `max_record_bytes` bounds one input record; `rating_range` is the (low, high) a rating may take.
    Raises ImportFailed, naming `file:line`, the field and the fix; the store is then unchanged.
    """
    if fmt is not None and fmt not in SHAPES:
        raise ImportFailed("--format", None, f"unknown shape {fmt!r}", f"use one of {', '.join(SHAPES)}")
    if max_record_bytes < 1:
        raise ImportFailed("--max-record-mb", None, "must be positive", "give a size such as 64")
    low, high = rating_range
    if not low < high:
        raise ImportFailed("--rating-range", None, f"{low:g}:{high:g} is empty", "give LOW:HIGH with LOW < HIGH")
    options = _Options(max_record_bytes, (low, high))
    created_at = created_at or utcnow()
    store._writable()
    # A part readers cannot use must not block an import: its ids are left out of the dedupe check
    # (readers dedupe on id anyway, so at worst a row is stored twice) and the summary says so.
    notes = [
        f"warning: skipped {p.path} when checking for rows already in the store ({p.problem}); "
        "run `prefkit check --repair`"
        for p in store.problems()
        if p.path.suffix == ".parquet"
    ]
    seen = Seen(_existing_ids(store))
    results = []
    with store.batch() as batch:
        for path in paths:
            results.append(
                _import_one(batch, seen, Path(path), fmt, mapping or {}, source, progress, created_at, options)
            )
    return ImportResult(results, notes)


@dataclass(frozen=True)
class _Options:
    max_record_bytes: int
    rating_range: tuple[float, float]


def _existing_ids(store: Store) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if all(store.is_empty(t) for t in TABLE_ORDER):
        return out
    con = store.connect(skip_unreadable=True)
    try:
        for table in TABLE_ORDER:
            if not store.is_empty(table):
                col = ID_COLUMN[table]
                out[table] = {row[0] for row in con.execute(f"SELECT DISTINCT {col} FROM raw_{table}").fetchall()}
    finally:
        con.close()
    return out


def _import_one(
    batch,
    seen: Seen,
    path: Path,
    fmt: str | None,
    mapping: dict[str, str],
    source: str | None,
    progress: bool,
    created_at: datetime,
    options: _Options,
) -> FileResult:
    from tqdm import tqdm

    src = open_source(path, options.max_record_bytes)
    stream = src.records()
    sample = _sample(stream, src.unit)
    if not sample:
        return FileResult(str(path), src.format, fmt or "empty", "no records")
    first = sample[0]
    _check_mapping(first, mapping)
    if fmt:
        shape, why, example = fmt, "forced by --format", 0
    else:
        shape, why, example = decide([(where, _mapped(raw, mapping)) for where, raw, _ in sample])
    if shape is None:
        first_data = _mapped(first[1], mapping)
        raise ImportFailed(
            first[0],
            None,
            f"fields {sorted(first_data)} match no known shape",
            f"pick one with --format and rename columns with --map COLUMN=FIELD ({describe_expected()})",
        )
    convert = CONVERTERS.get(shape)
    if shape == "ratings":
        convert = functools.partial(ratings.convert, scale=options.rating_range)
    if shape == "votes":
        columns = votes.voters(_mapped(sample[example][1], mapping))
        if not columns:
            raise ImportFailed(
                first[0], "annotator1", "no annotator columns found", "name vote columns annotator1, annotator2, …"
            )
        convert = functools.partial(votes.convert, columns=columns)
    result = FileResult(str(path), src.format, shape, why)
    before = dict(batch.rows)
    occurrences: Counter[str] = Counter()  # judgements per content key in this file
    rows = Rows(seen, source or path.name, created_at, occurrences)
    bar = tqdm(total=src.total, unit=src.unit, unit_scale=True, desc=path.name, disable=not progress, leave=False)
    shown = 0
    try:
        for where, raw, done in itertools.chain(sample, stream):
            data = _mapped(raw, mapping)
            wrong = None if fmt else misfit(shape, data)
            if wrong:
                raise ImportFailed(where, *wrong)
            try:
                convert(Record(data, where, result.warnings), rows)
            except RecursionError:
                raise ImportFailed(where, None, "is nested too deeply to convert", DEEP_FIX) from None
            result.records += 1
            if result.records % CHUNK_RECORDS == 0 or rows.text_bytes > CHUNK_TEXT_BYTES:
                _flush(batch, rows)
                rows = Rows(seen, rows.source, created_at, occurrences)
            if done - shown > src.total // 200:
                bar.update(done - shown)
                shown = done
        _flush(batch, rows)
        bar.update(src.total - shown)
    finally:
        bar.close()
    result.added = {t: batch.rows[t] - before[t] for t in TABLE_ORDER}
    return result


def _sample(stream, unit: str) -> list[tuple[str, dict, int]]:
    """The first records of a file, held back until its shape is decided (bounded in bytes too)."""
    sample = []
    for item in stream:
        sample.append(item)
        if len(sample) >= DETECT_RECORDS or (unit == "B" and item[2] >= DETECT_BYTES):
            break
    return sample


def _flush(batch, rows: Rows) -> None:
    for table in TABLE_ORDER:
        if rows.count(table):
            try:
                batch.append(table, rows.table(table))
            except ContractError as exc:
                where = rows.where[table][exc.row] if exc.row is not None else "?"
                raise ImportFailed(
                    where, exc.field, f"{table} row breaks the data contract: {exc.problem}", "fix the record"
                ) from None


def _mapped(raw: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return raw
    return {mapping.get(k, k): v for k, v in raw.items()}


def _check_mapping(first: tuple[str, dict, int], mapping: dict[str, str]) -> None:
    where, raw, _ = first
    for column, target in mapping.items():
        if column not in raw:
            raise ImportFailed(
                where,
                column,
                f"--map names a column the file does not have (it has: {', '.join(sorted(raw))})",
                "check the column name",
            )
        if target in raw and target not in mapping:
            raise ImportFailed(
                where,
                target,
                f"--map {column}={target} would clash with the existing column '{target}'",
                f"map '{target}' elsewhere too, or leave '{column}' alone",
            )
