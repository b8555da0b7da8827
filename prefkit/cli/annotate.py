"""Commands over the store itself: `import`, `compact`, `stats`, `check`."""

from __future__ import annotations

import argparse
import json
import sys

from prefkit.annotate.importers import SHAPES, ImportFailed
from prefkit.annotate.importers.ratings import RATING_RANGE
from prefkit.annotate.importers.readers import MAX_RECORD_BYTES
from prefkit.annotate.store import Store, StoreError
from prefkit.annotate.text import printable
from prefkit.annotate.validate import ContractError
from prefkit.cli import add_command, add_store_option, store_path

ERRORS: tuple[type[BaseException], ...] = (StoreError, ContractError, ImportFailed)


def _mapping(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column or not target:
            raise ImportFailed("--map", None, f"{pair!r} is not COLUMN=FIELD", "write e.g. --map question=prompt")
        out[column] = target
    return out


def _rating_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    try:
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW:HIGH (e.g. 1:5)") from None


def _megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of MiB") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return int(value * (1 << 20))


def cmd_import(args: argparse.Namespace) -> int:
    """Import preference data from JSON, JSONL, CSV, Parquet or a Hugging Face datasets folder.

    The shape of each file is told from its first records (and printed): pairs
    (prompt/chosen/rejected, text or messages, or chosen/rejected with a shared prompt), hh
    (Anthropic Human:/Assistant: transcripts), unpaired (prompt/completion/label), ratings
    (prompt + rated completions, UltraFeedback-like), votes (response1/response2 +
    annotator1… votes 0/1/2, PandaLM-like) or prompts. All files import or none do; importing
    the same file again adds nothing. See docs/importing.md.

    Example:
      prefkit import ../shared/data/pandalm/testset-v1.json
      prefkit import prefs.jsonl --map question=prompt --map good=chosen --map bad=rejected
      prefkit import hh/ --format hh --source anthropic-hh --store my-store"""

    from prefkit.annotate.importers import import_files

    result = import_files(
        Store(store_path(args)),
        args.files,
        fmt=args.format,
        mapping=_mapping(args.map),
        source=args.source,
        progress=sys.stderr.isatty(),
        max_record_bytes=args.max_record_mb,
        rating_range=args.rating_range,
    )
    print(printable(result.summary()))  # paths, field names and warnings come from the input
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """Merge each day's small Parquet parts into one file (safe to interrupt and re-run).

    Many small writes (the app writes one part per submission) make reads slow; compaction
    merges them with DuckDB, then deletes the parts. Readers dedupe on ids, so a crash at any
    point double-counts nothing.

    Example:
      prefkit compact --store my-store
      prefkit compact --table judgements"""

    store = Store(store_path(args), create=False)
    merged = store.compact(args.table)
    for table, n in merged.items():
        print(f"{table}: merged {n} parts" if n else f"{table}: nothing to merge")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print what the store holds: rows per table, judgements per kind and annotator, sources.

    Example:
      prefkit stats --store data/demo
      prefkit stats --json

    --json adds `team`: the Dashboard's figures (labels per person, Cohen's kappa between every two
    raters, agreement per task and aspect, gold accuracy, position and length bias)."""

    from prefkit.annotate.stats import format_stats, store_stats

    store = Store(store_path(args), create=False)
    stats = store_stats(store)
    if args.json:  # the Dashboard's figures, from the functions the page draws them with
        from prefkit.annotate.app.metrics import team_figures

        con = store.connect()
        try:
            stats["team"] = team_figures(con)
        finally:
            con.close()
    print(json.dumps(stats, default=str, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check that every part of the store is readable; --repair moves bad ones aside.

    A zero-byte, truncated or foreign .parquet file in a table folder stops every read of the
    store (stats, curate, compact) with a message naming it. `check` reads every part whole and
    lists those that fail (and folders that link out of the store); with --repair it moves them
    into <store>/quarantine/, keeping their paths, so nothing is deleted, and makes a store
    that other users may read private (mode 700). Exit status 1 when unreadable parts remain.

    Example:
      prefkit check --store my-store
      prefkit check --store my-store --repair"""

    from prefkit.annotate.check import check_store

    report = check_store(Store(store_path(args), create=False), repair=args.repair)
    root, mode = report.root, report.mode
    if report.made_private:
        print(f"{root}: made private (mode {mode:o} → {mode & 0o700:o})")
    elif report.shared:
        print(f"{root}: other users may read the store (mode {mode:o}); --repair makes it private")
    if not report.problems:
        print(f"{root}: every part is readable")
        return 0
    for problem in report.problems:
        print(printable(problem, newlines=False))
    if not args.repair:
        print(f"{len(report.problems)} problem(s); run again with --repair to move them into {report.quarantine}")
        return 1
    for old, new in report.moved:
        print(printable(f"moved {old} → {new}", newlines=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "import", cmd_import)
    add_store_option(p)
    p.add_argument("files", nargs="+", metavar="FILE", help="files or datasets folders to import")
    p.add_argument("--format", choices=SHAPES, help="force this shape instead of detecting it")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="read input COLUMN as FIELD (repeatable), e.g. --map question=prompt",
    )
    p.add_argument("--source", help="name the rows' source (default: the file name)")
    p.add_argument(
        "--max-record-mb",
        type=_megabytes,
        default=MAX_RECORD_BYTES,
        metavar="MIB",
        help=f"refuse a record (JSONL line, CSV row, JSON element) larger than this (default: {MAX_RECORD_BYTES >> 20})",
    )
    p.add_argument(
        "--rating-range",
        type=_rating_range,
        default=RATING_RANGE,
        metavar="LOW:HIGH",
        help="the scale ratings are on; a rating outside it is an error (default: 0:10)",
    )

    p = add_command(subparsers, "compact", cmd_compact)
    add_store_option(p)
    p.add_argument("--table", choices=["prompts", "responses", "judgements"], help="only this table")

    p = add_command(subparsers, "stats", cmd_stats)
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add_command(subparsers, "check", cmd_check)
    add_store_option(p)
    p.add_argument("--repair", action="store_true", help="move unreadable parts into <store>/quarantine/")
