"""`curate(store, recipe, name)`: the whole curation, from the store's raw tables to
`<store>/curated/NAME/` (pairs, unpaired, sft, steps as Parquet; report.json, report.html, recipe.yaml).

Everything runs in one DuckDB connection over the store's views. Outputs are written into a temporary
folder beside the final one and renamed into place at the end (`prefkit.files`), so a failed or killed
run leaves the previous curation (or nothing) — never half a curation; the next run cleans its leftovers.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.annotate.store import Store
from prefkit.curate import report, working
from prefkit.curate.plan import State, context, plan
from prefkit.curate.recipe import Recipe, load_recipe
from prefkit.curate.tables import CURATED, curated_dir, name_problem

from prefkit import files


class CurateError(ValueError):
    """A curation that cannot run as asked (a bad name, an output folder that cannot be made)."""


@dataclass
class CurationResult:
    name: str
    folder: Path
    tables: dict[str, Path]  # table name → Parquet file
    rows: dict[str, int]  # table name → rows written
    report: dict = field(repr=False)

    @property
    def report_json(self) -> Path:
        return self.folder / "report.json"

    @property
    def report_html(self) -> Path:
        return self.folder / "report.html"

    @property
    def recipe_yaml(self) -> Path:
        return self.folder / "recipe.yaml"


def curate(
    store: Store | str | os.PathLike,
    recipe: Recipe | str | os.PathLike | None = None,
    name: str | None = None,
    out_root: str | os.PathLike | None = None,
) -> CurationResult:
    """Run `recipe` (a Recipe, a recipe file, or None for the bundled default) over `store` and write
    the curation `name` (default: the recipe's name) to `<out_root>/curated/NAME/`; `out_root` defaults
    to the store's own folder, for a remote store (s3://, hf://) to its local `state_dir`."""
    store = store if isinstance(store, Store) else Store(store, create=False)
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    name = name or recipe.name
    problem = name_problem(name)
    if problem:
        raise CurateError(problem)
    # A remote store's curations go to its local state folder: training reads them from a local disk.
    out_root = Path(out_root) if out_root is not None else store.state_dir
    final = curated_dir(out_root, name)
    _check_folder(final.parent)
    started = time.perf_counter()
    con = store.connect()
    con.execute("SET enable_progress_bar = false")  # DuckDB would draw one on stdout for long queries
    try:
        rep = run_steps(con, recipe)
        rep["name"] = name
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CurateError(f"{final.parent}: cannot make the output folder ({exc.strerror or exc})") from None
        files.clean_leftovers(final.parent)  # what a killed curation left
        tmp = files.make_temp_dir(final)
        try:
            write_started = time.perf_counter()
            rows = {t: _write(con, t, tmp / f"{t}.parquet") for t in CURATED}
            rep["timings"]["write"] = round(time.perf_counter() - write_started, 3)
            rep["outputs"] = rows
            rep["seconds"] = round(time.perf_counter() - started, 3)
            (tmp / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
            (tmp / "report.json").write_text(
                json.dumps(rep, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
            )
            (tmp / "report.html").write_text(report.html(rep, recipe.to_yaml()), encoding="utf-8")
            files.fsync_tree(tmp)
            files.commit(tmp, final)  # the old curation moves aside first and is removed only after
        except BaseException:
            files.discard(tmp)
            raise
    finally:
        con.close()
    return CurationResult(
        name=name, folder=final, tables={t: final / f"{t}.parquet" for t in CURATED}, rows=rows, report=rep
    )


def _check_folder(folder: Path) -> None:
    """Fail before any work when `folder` cannot become a folder: it, or the nearest part of its path
    that exists, is a file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise CurateError(f"{existing} is a file, so {folder} cannot be made; give --out-dir a folder")


def run_steps(con: duckdb.DuckDBPyConnection, recipe: Recipe) -> dict:
    """Run the recipe's steps (curate/plan.py) in order; return the report they filled in."""
    rep: dict = {
        "recipe": recipe.name,
        "seed": recipe.seed,
        "warnings": [],
        "steps": [],
        "drops": {},
        "timings": {},
    }
    state = State(context=context(recipe), report=rep)
    for step in plan(recipe):
        before = working.snapshot(con)
        started = time.perf_counter()
        step.run(con, state)
        rep["timings"][step.timing] = rep["timings"].get(step.timing, 0.0) + time.perf_counter() - started
        working.check_writes(step.name, step.writes, before, working.snapshot(con))
    rep["timings"] = {key: round(seconds, 3) for key, seconds in rep["timings"].items()}
    return rep


_SELECT = {
    "pairs": """SELECT w.key AS pair_id, w.prompt_id, p.messages AS prompt, w.chosen_id, w.rejected_id, w.chosen,
                       w.rejected, w.aspect, w.score_chosen, w.score_rejected, w.margin, w.agreement, w.n_votes,""",
    "unpaired": """SELECT w.key AS example_id, w.prompt_id, p.messages AS prompt, w.response_id, w.completion,
                          w.label, w.derived_from,""",
    "sft": """SELECT w.key AS example_id, w.prompt_id,
                     list_append(p.messages, {'role': 'assistant', 'content': w.completion}) AS messages,
                     w.response_id, w.parent_id,""",
    "steps": """SELECT w.key AS example_id, w.prompt_id, p.messages AS prompt, w.response_id, w.completions,
                       w.labels,""",
}


def _write(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> int:
    """Stream the kept rows of `table` with their split into `path`, cast to the schema of curate/tables.py."""
    schema = CURATED[table]
    sql = f"""{_SELECT[table]} w.judgement_ids, w.annotators, w.source, w.group_id, s.split
              FROM {working.ROWS[table]} w JOIN ptext p ON p.prompt_id = w.prompt_id JOIN split_of s ON s.group_id = w.group_id
              WHERE w.drop_reason IS NULL ORDER BY s.split DESC, w.prompt_id, w.key"""
    reader = con.sql(sql).to_arrow_reader(batch_size=50_000)
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))
            n += batch.num_rows
    return n
