"""export: curated tables → Hugging Face datasets in TRL's formats, with a dataset card.

`export_curated(store_root, name, to, formats=..., conversational=False, jsonl=False) -> ExportResult`
writes `to/<format>/` (a `save_to_disk` DatasetDict plus the Hub layout `data/*.parquet` and `README.md`);
`prefkit.export.hub.push_to_hub(to, repo, dry_run=...)` uploads it with `datasets`' own `push_to_hub`.
"""

from prefkit.export.errors import ExportError

__all__ = ["ExportError", "ExportResult", "FormatResult", "export_curated"]


def __getattr__(name: str):
    # Loaded on first use, so `prefkit --help` does not pay for pyarrow and DuckDB.
    if name in ("ExportResult", "FormatResult", "export_curated"):
        from prefkit.export import exporter

        return getattr(exporter, name)
    raise AttributeError(name)
