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
from prefkit.curate import binarise, dedupe, filters, report, splits, votes
from prefkit.curate.recipe import Recipe, load_recipe
from prefkit.curate.tables import CURATED, curated_dir, name_problem

from prefkit import files


class CurateError(ValueError):
    """A curation that cannot run as asked (bad name, remote store without an output folder)."""


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
    to the store's own folder and must be given for a remote (read-only) store."""
    store = store if isinstance(store, Store) else Store(store, create=False)
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    name = name or recipe.name
    problem = name_problem(name)
    if problem:
        raise CurateError(problem)
    if out_root is None and store.root is None:
        raise CurateError(f"{store.url} is a remote store: give an output folder (--out-dir) for the curation")
    out_root = Path(out_root) if out_root is not None else store.root
    final = curated_dir(out_root, name)
    _check_folder(final.parent)
    started = time.perf_counter()
    con = store.connect()
    con.execute("SET enable_progress_bar = false")  # DuckDB would draw one on stdout for long queries
    try:
        rep = _run(con, recipe)
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


def _run(con: duckdb.DuckDBPyConnection, recipe: Recipe) -> dict:
    seed = recipe.seed
    rep: dict = {"recipe": recipe.name, "seed": seed, "warnings": [], "steps": [], "drops": {}, "timings": {}}
    steps = rep["steps"]
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        rep["timings"][stage] = round(now - clock[0], 3)
        clock[0] = now

    def step(table: str, name: str, before: int | None, after: int, reason: str = "") -> None:
        steps.append(
            {
                "table": table,
                "step": name,
                "in": before,
                "out": after,
                "dropped": None if before is None else before - after,
                "reason": reason,
            }
        )

    # The store's `judgements` view dedupes on id with a window over every row: run it once, keep the
    # submitted rows and the columns curation reads, and let every later query use this table.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE judged AS
           SELECT judgement_id, prompt_id, kind, annotator, annotator_type, response_ids, scores, both_bad, aspect,
                  step_labels, status, guidelines, metadata, created_at
           FROM judgements WHERE status = 'submitted'"""
    )
    dedupe_cfg = recipe.stage("dedupe")
    # With response dedupe on, responses equal after normalisation share one id (filters.identical relies on it).
    con.execute("SET VARIABLE responses_deduped = ?", [bool(dedupe_cfg is not None and dedupe_cfg.responses)])
    rep["dedupe"] = dedupe.build_maps(con, dedupe_cfg, seed)
    d = rep["dedupe"]
    step(
        "prompts", "dedupe", d["prompts"], d["prompts"] - d["exact_duplicate_prompts"], "exact duplicate prompt merged"
    )
    step(
        "responses",
        "dedupe",
        d["responses"],
        d["responses"] - d["duplicate_responses"],
        "exact duplicate response merged",
    )
    binarise.texts(con)
    lap("dedupe")

    vcfg = recipe.stage("votes")
    rep["votes"] = votes.expand(con, vcfg)
    rep["votes"].update(votes.aggregate(con, vcfg))
    fit = rep["votes"].get("bradley_terry")
    if fit and not fit["converged"]:
        rep["warnings"].append(
            f"Bradley–Terry did not converge for {fit['tournaments_not_converged']} of {fit['tournaments']} "
            f"(prompt, aspect) tournaments in {fit['iterations']} iterations (largest gradient left "
            f"{fit['max_gradient']}): their strengths, margins and min_margin decisions are approximate"
        )
    step("votes", "votes", rep["votes"]["votes"], rep["votes"]["votes_counted"], "set aside by a vote policy")
    rep["agreement"] = report.agreement(con)
    lap("votes")

    bcfg = recipe.stage("binarise")
    binarise.pairs(con, bcfg, vcfg, seed)
    step("pairs", f"binarise ({bcfg.pairs})", None, filters.kept(con, "pairs"))

    def run_filter(table: str, label: str, fn, opts) -> None:
        before = filters.kept(con, table)
        reason, dropped = fn(con, table, opts, seed)
        step(table, label, before, before - dropped, reason)
        if dropped:
            rep["drops"].setdefault(table, {})[reason] = {
                "count": dropped,
                "examples": filters.examples(con, table, reason),
            }

    def automatic(table: str) -> None:
        if (
            dedupe_cfg is not None
            and dedupe_cfg.near_duplicates.enabled
            and dedupe_cfg.near_duplicates.action == "drop"
        ):
            run_filter(table, "dedupe (near duplicates)", _near_duplicate, None)

    automatic("pairs")
    if dedupe_cfg is not None and dedupe_cfg.pairs:
        run_filter("pairs", "dedupe (pairs)", _duplicate_pairs, dedupe_cfg.prompts and dedupe_cfg.responses)
    if vcfg.both_bad == "drop":
        run_filter("pairs", "votes (both bad)", _both_bad, None)
    rep["length_bias"] = {"before": filters.length_bias_share(con)}
    for s in recipe.filters:
        if "pairs" in filters.APPLIES[s.name]:
            run_filter("pairs", s.name, filters.FILTERS[s.name], s.options)
    rep["length_bias"]["after"] = filters.length_bias_share(con)
    lap("pairs")

    binarise.unpaired(con, bcfg, vcfg)
    binarise.sft(con, bcfg)
    binarise.steps(con, bcfg, vcfg)
    for table in ("unpaired", "sft", "steps"):
        step(table, "binarise", None, con.execute(f"SELECT count(*) FROM {table}_w").fetchall()[0][0])
        for reason, n in con.execute(
            f"SELECT drop_reason, count(*) FROM {table}_w WHERE drop_reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall():
            rep["drops"].setdefault(table, {})[reason] = {"count": n, "examples": filters.examples(con, table, reason)}
            step(table, "binarise", None, 0, f"{n} marked: {reason}")
        automatic(table)
        for s in recipe.filters:
            if table in filters.APPLIES[s.name]:
                run_filter(table, s.name, filters.FILTERS[s.name], s.options)
    run_filter(
        "unpaired", "binarise (balance)", lambda c, t, o, sd: filters.balance_cap(c, o, sd), bcfg.unpaired.max_ratio
    )

    lap("unpaired, sft, steps")
    scfg = recipe.stage("split")
    rep["split_groups"] = splits.assign(con, scfg, scfg.seed if scfg.seed is not None else seed)
    lap("split")
    rep.update(report.summary(con))
    lap("report")
    return rep


def _near_duplicate(con, table, opts, seed) -> tuple[str, int]:
    reason = "near-duplicate prompt"
    return reason, filters.mark(con, table, reason, "prompt_id <> group_id")


def _duplicate_pairs(con, table, opts: bool, seed) -> tuple[str, int]:
    """Drop a pair equal to an earlier one on normalised prompt, chosen and rejected text (and aspect).

    `opts` is True when prompts and responses were merged by normalised text already: the ids then say
    the same thing as the texts, and comparing ids spares a regex over every text.
    """
    reason = "duplicate pair"
    if opts:
        key = "key"
    else:
        norm = "lower(regexp_replace(trim({}), '\\s+', ' ', 'g'))"
        key = f"md5(concat_ws(chr(0), {', '.join(norm.format(c) for c in ('prompt_text', 'chosen', 'rejected'))}, aspect))"
    cond = (
        f"rowid IN (SELECT rowid FROM pairs_w WHERE drop_reason IS NULL "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY rowid) > 1)"
    )
    return reason, filters.mark(con, table, reason, cond)


def _both_bad(con, table, opts, seed) -> tuple[str, int]:
    return "both bad", filters.mark(con, table, "both bad", "both_bad")


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
              FROM {table}_w w JOIN ptext p ON p.prompt_id = w.prompt_id JOIN split_of s ON s.group_id = w.group_id
              WHERE w.drop_reason IS NULL ORDER BY s.split DESC, w.prompt_id, w.key"""
    reader = con.sql(sql).to_arrow_reader(batch_size=50_000)
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))
            n += batch.num_rows
    return n
