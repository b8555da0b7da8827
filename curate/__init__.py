"""curate: DuckDB over the store — dedupe, votes, binarisation, filters, splits, the report.

`curate(store, recipe=None, name=None, out_root=None) -> CurationResult` (curate/pipeline.py) is the
entry point; recipes are read by `load_recipe` (curate/recipe.py). Both are imported on first use, so
`import prefkit.curate.tables` stays light.
"""

from typing import Any

__all__ = ["CurateError", "CurationResult", "Recipe", "RecipeError", "curate", "load_recipe"]


def __getattr__(name: str) -> Any:
    if name in ("curate", "CurationResult", "CurateError"):
        from prefkit.curate import pipeline

        return getattr(pipeline, name)
    if name in ("Recipe", "RecipeError", "load_recipe"):
        from prefkit.curate import recipe

        return getattr(recipe, name)
    raise AttributeError(name)
