"""`export_curated`: a curation (`<store>/curated/NAME/`) → one folder per format under `to`.

Each format folder holds a `save_to_disk` DatasetDict (`dataset_dict.json`, `train/`, `test/`), the
Hub layout (`data/<split>-0000i-of-0000N.parquet` and the card `README.md`) and, when asked,
`jsonl/<split>.jsonl`. Each format is built in a temporary folder inside `to` and renamed into place
(`prefkit.files`) only when every requested format is complete: a failed export leaves nothing half
written, a previous export of the same format stays until the new one replaces it, and a killed
export's leftovers are cleaned by the next one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.curate.tables import CURATED, curated_dir, name_problem
from prefkit.export import card as cards
from prefkit.export.errors import ExportError
from prefkit.export.formats import ALL, FORMATS, Format
from prefkit.export.writer import Written, connect, has_conversations, split_counts, write_format, write_jsonl

from prefkit import files


@dataclass
class FormatResult:
    name: str
    path: Path
    splits: dict[str, int]
    conversational: bool
    columns: list[str]
    files: list[str]  # relative to `path`: data shards, README.md, jsonl files (save_to_disk files not listed)


@dataclass
class ExportResult:
    to: Path
    formats: dict[str, FormatResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # format → why it was not written


def load_report(folder: Path) -> tuple[dict | None, str | None]:
    """The curation's report.json (None when missing) and recipe.yaml text (None when missing)."""
    report = None
    path = folder / "report.json"
    if path.exists():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ExportError(
                f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}); re-run `prefkit curate`"
            ) from exc
        if not isinstance(report, dict):
            raise ExportError(f"{path}: expected a JSON object; re-run `prefkit curate`")
    recipe_path = folder / "recipe.yaml"
    recipe = recipe_path.read_text(encoding="utf-8") if recipe_path.exists() else None
    return report, recipe


def check_table(path: Path, fmt: Format) -> None:
    """Raise ExportError unless `path` has the columns `fmt` reads, with the types curate/tables.py gives them."""
    expected = CURATED[fmt.table]
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ExportError(f"{path}: not a readable Parquet file ({exc}); re-run `prefkit curate`") from exc
    needed = {"prompt", "messages", "chosen", "rejected", "completion", "label", "completions", "labels", "split"}
    needed |= {fmt.source_column(c) for c in fmt.extra_columns}
    for name in needed & set(expected.names):
        want = expected.field(name).type
        if name not in schema.names:
            raise ExportError(f"{path}: column '{name}' is missing (expected {want}, see curate/tables.py)")
        got = schema.field(name).type
        if not _same_shape(got, want):
            raise ExportError(f"{path}: column '{name}' is {got}, expected {want} (see curate/tables.py)")


def _same_shape(got: pa.DataType, want: pa.DataType) -> bool:
    """Equal types, ignoring list item field names (writers name them differently)."""
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(got) or pa.types.is_large_list(got)) and _same_shape(got.value_type, want.value_type)
    if pa.types.is_struct(want):
        return (
            pa.types.is_struct(got)
            and [f.name for f in got] == [f.name for f in want]
            and all(_same_shape(g.type, w.type) for g, w in zip(got, want, strict=True))
        )
    if pa.types.is_string(want):
        return pa.types.is_string(got) or pa.types.is_large_string(got)
    return got == want


def resolve_formats(formats: str | Iterable[str]) -> list[str]:
    names = [formats] if isinstance(formats, str) else list(formats)
    if "all" in names:
        return list(ALL)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r}; choose from {', '.join(ALL)} or all")
    return list(dict.fromkeys(names))


def export_curated(
    store_root: str | Path,
    name: str,
    to: str | Path,
    formats: str | Iterable[str] = "all",
    conversational: bool = False,
    jsonl: bool = False,
    license: str | None = None,
    neutral_is_good: bool = True,
    threads: int | None = None,
    shard_bytes: int | None = None,
) -> ExportResult:
    """Export the curation NAME of the store at `store_root` into `to/<format>/` for each format.

    `formats`: a format name, a list of them, or "all" (which skips formats whose table is missing or
    empty; a format asked for by name must have rows). `conversational` forces the message-list form
    even when every prompt is a single user message. `license` goes into the card (default: the
    report's `license`, else "other"). `neutral_is_good`: what a neutral (0) step label becomes in the
    stepwise format's boolean labels.
    """
    problem = name_problem(name)
    if problem:
        # The same rule curate names curations by: a name never leads out of <store>/curated/.
        raise ExportError(f"{problem} (the name `prefkit curate --out` gave the curation)")
    source_dir = curated_dir(store_root, name)
    files.clean_leftovers(source_dir.parent)  # a curation a killed `prefkit curate` moved aside goes back
    if not source_dir.is_dir():
        raise ExportError(f"no curation named {name!r} at {source_dir}; run `prefkit curate` first")
    asked_all = formats == "all" or (not isinstance(formats, str) and "all" in formats)
    names = resolve_formats(formats)
    report, recipe = load_report(source_dir)
    license = license or (report or {}).get("license") or "other"

    to = Path(to)
    created = not to.exists()
    _make_folder(to)
    files.clean_leftovers(to)  # what a killed export left
    for fname in names:
        target = to / fname
        if target.exists() and not (target / "dataset_dict.json").exists():
            raise ExportError(f"{target} exists and is not a prefkit export; choose another --to or remove it")

    result = ExportResult(to=to)
    con = connect(threads)
    built: dict[str, Path] = {}  # format → its temporary folder, renamed into place at the end
    try:
        for fname in names:
            fmt = FORMATS[fname]
            source = source_dir / f"{fmt.table}.parquet"
            if not source.exists():
                if asked_all:
                    result.skipped[fname] = f"no {source.name} in {source_dir}"
                    continue
                raise ExportError(f"{source}: not found; this curation has no {fmt.table} table")
            check_table(source, fmt)
            with _reading(source):
                if sum(split_counts(con, source).values()) == 0:
                    if asked_all:
                        result.skipped[fname] = f"{source.name} has no rows"
                        continue
                    raise ExportError(f"{source}: no rows, so there is no {fname} set to export")
                conv = True if fname == "sft" else (conversational or has_conversations(con, source))
                out = built[fname] = files.make_temp_dir(to / fname)
                kw = {"shard_bytes": shard_bytes} if shard_bytes else {}
                written = write_format(con, fmt, source, out, conv, neutral_is_good, **kw)
            listed = list(written.files)
            if jsonl:
                listed += write_jsonl(con, written)
            _keep_provenance(source_dir, out, name, fname, written, license, neutral_is_good)
            card_config = card_config_for("default", "data", fmt, written, neutral_is_good)
            text = cards.render(
                f"{name} ({fname})", [card_config], report, recipe, license, fmt.task_categories, fmt.tags
            )
            (out / "README.md").write_text(text, encoding="utf-8")
            listed += ["README.md", "export.json"]
            result.formats[fname] = FormatResult(
                fname, to / fname, written.splits, conv, list(written.schema.names), sorted(listed)
            )
        if not built:
            why = "; ".join(f"{f}: {r}" for f, r in result.skipped.items())
            raise ExportError(f"curation {name!r} has nothing to export ({why})")
        # Everything is complete: swap each format into place (an older export is removed only now).
        for out in built.values():
            files.fsync_tree(out)
        for fname, out in built.items():
            files.commit(out, to / fname)
    except BaseException:
        for out in built.values():
            files.discard(out)
        if created and not any(to.iterdir()):
            to.rmdir()
        raise
    finally:
        con.close()
    return result


def _make_folder(to: Path) -> None:
    """Create the export folder `to`, or say in one line why it cannot be one (it, or a part of its
    path, is a file)."""
    existing = to
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ExportError(f"{existing} is a file, so {to} cannot be the export folder; give --to a folder")
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{to}: cannot make the export folder ({exc.strerror or exc}); give --to a folder") from None


@contextmanager
def _reading(source: Path) -> Iterator[None]:
    """DuckDB's errors while reading the curated table `source` (a damaged file) as ExportError naming it."""
    try:
        yield
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{source}: cannot read it ({first}); re-run `prefkit curate`") from None


def _keep_provenance(
    source_dir: Path, out: Path, name: str, fname: str, written: Written, license: str, neutral_is_good: bool
) -> None:
    """Copy the curation's report and recipe beside the export, and save the export's own settings
    (`export.json`): a later `push_to_hub` re-renders the card from them, and a reader can trace the set."""
    (out / "curation").mkdir()
    for file in ("report.json", "recipe.yaml"):
        if (source_dir / file).exists():
            shutil.copyfile(source_dir / file, out / "curation" / file)
    settings = {
        "curation": name,
        "format": fname,
        "conversational": written.conversational,
        "license": license,
        "neutral_steps_are_good": neutral_is_good,
        "splits": written.splits,
        "nbytes": written.nbytes,
    }
    (out / "export.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def step_label_note(neutral_is_good: bool) -> str:
    return f"Step labels: a right step (1) is `true`, a wrong one (-1) `false`, a neutral one (0) `{str(neutral_is_good).lower()}`."


def card_config_for(
    config_name: str, data_dir: str, fmt: Format, written: Written, neutral_is_good: bool = True
) -> cards.CardConfig:
    from datasets import Features

    return cards.CardConfig(
        name=config_name,
        data_dir=data_dir,
        features=Features.from_arrow_schema(written.schema)._to_yaml_list(),
        splits=written.splits,
        nbytes=written.nbytes,
        conversational=written.conversational,
        trainer=fmt.trainer,
        trl_columns=fmt.trl_columns,
        extra_columns=fmt.extra_columns,
        id_columns=fmt.ids,
        notes=(step_label_note(neutral_is_good),) if fmt.name == "stepwise" else (),
    )
