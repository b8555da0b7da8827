"""export: curated tables → Hugging Face datasets in TRL's formats, with a dataset card.

`export_curated(store_root, name, to, formats=..., conversational=False, jsonl=False) -> ExportResult`
writes `to/<format>/` (a `save_to_disk` DatasetDict plus the Hub layout `data/*.parquet` and `README.md`);
`push_to_hub(to, repo, dry_run=...)` uploads it with `datasets`' own `push_to_hub`.
"""

from export.exporter import ExportError, ExportResult, FormatResult, export_curated

__all__ = ["ExportError", "ExportResult", "FormatResult", "export_curated"]
