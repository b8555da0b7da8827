"""Commands over the store itself: `import`, `compact`, `stats`."""

from __future__ import annotations

import argparse
import json

from annotate.store import Store, StoreError
from annotate.validate import ContractError
from prefkit.cli import add_command, add_store_option, store_path

ERRORS: tuple[type[BaseException], ...] = (StoreError, ContractError)


def cmd_compact(args: argparse.Namespace) -> int:
    store = Store(store_path(args), create=False)
    merged = store.compact(args.table)
    for table, n in merged.items():
        print(f"{table}: merged {n} parts" if n else f"{table}: nothing to merge")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from annotate.stats import format_stats, store_stats

    stats = store_stats(Store(store_path(args), create=False))
    print(json.dumps(stats, default=str, indent=2) if args.json else format_stats(stats))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "compact",
        cmd_compact,
        """Merge each day's small Parquet parts into one file (safe to interrupt and re-run).

        Many small writes (the app writes one part per submission) make reads slow; compaction
        merges them with DuckDB, then deletes the parts. Readers dedupe on ids, so a crash at any
        point double-counts nothing.

        Example:
          prefkit compact --store my-store
          prefkit compact --table judgements""",
    )
    add_store_option(p)
    p.add_argument("--table", choices=["prompts", "responses", "judgements"], help="only this table")

    p = add_command(
        subparsers,
        "stats",
        cmd_stats,
        """Print what the store holds: rows per table, judgements per kind and annotator, sources.

        Example:
          prefkit stats --store data/demo
          prefkit stats --json""",
    )
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
