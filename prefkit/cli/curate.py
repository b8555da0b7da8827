"""`prefkit curate`: run a curation recipe over the store."""

from __future__ import annotations

import argparse

from prefkit.annotate.store import StoreError
from prefkit.cli import add_command, add_store_option, store_path
from prefkit.curate.decontaminate import EvalSetError
from prefkit.curate.pipeline import CurateError
from prefkit.curate.recipe import RecipeError

ERRORS: tuple[type[BaseException], ...] = (RecipeError, CurateError, EvalSetError, StoreError)


def cmd_curate(args: argparse.Namespace) -> int:
    """Curate the store's judgements into preference data: dedupe, votes, pairs, filters, splits.

    Runs a recipe (a YAML list of named steps; the bundled default when --recipe is left out) and
    writes pairs, unpaired, sft and steps Parquet tables, report.json, report.html and the
    resolved recipe.yaml into <store>/curated/NAME/. A failed run leaves no half-written output.
    See docs/curating.md for every step and option.

    Example:
      prefkit curate --out pandalm
      prefkit curate --recipe data/recipes/example.yaml --out strict --store my-store"""

    from prefkit.annotate.store import Store
    from prefkit.curate.pipeline import curate
    from prefkit.curate.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    result = curate(Store(store_path(args), create=False), recipe, args.out, args.out_dir)
    rep = result.report
    print(f"curated {result.name} into {result.folder} in {rep['seconds']} s")
    for table, n in result.rows.items():
        splits = ", ".join(f"{k} {v}" for k, v in rep["splits"][table].items())
        print(f"  {table:9} {n:>9} rows" + (f"  ({splits})" if splits else ""))
    for table, reasons in rep["drops"].items():
        for code, d in reasons.items():
            threshold = "" if d.get("threshold") is None else f", threshold {d['threshold']}"
            print(f"  dropped from {table}: {d['count']} ({code}{threshold})")
    for warning in rep.get("warnings", []):
        print(f"warning: {warning}")
    print(f"report: {result.report_html}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "curate", cmd_curate)
    add_store_option(p)
    p.add_argument("--recipe", default=None, help="recipe YAML file (default: data/recipes/default.yaml)")
    p.add_argument("--out", default=None, help="name of the curation (default: the recipe's name)")
    p.add_argument(
        "--out-dir",
        default=None,
        help="write to OUT_DIR/curated/NAME instead of inside the store (for a remote store such as "
        "s3:// or hf://, the default is its local state folder: see docs/scaling.md)",
    )
