"""`prefkit export`: a curation → Hugging Face datasets in TRL's formats (and, optionally, to the Hub)."""

from __future__ import annotations

import argparse

from prefkit.annotate.store import StoreError
from prefkit.cli import add_command, add_store_option, store_path
from prefkit.export.errors import ExportError

ERRORS = (ExportError, StoreError)


def curations_root(path: str) -> str:
    """Where `prefkit curate` put the store's curations: the store folder, or for a remote store
    (s3://, hf://) its local state folder (`Store.state_dir`)."""
    from prefkit.annotate.store import Store

    return str(Store(path, create=False).state_dir) if "://" in path else path


DOC = """\
Export a curation as Hugging Face datasets in TRL's column names, with a dataset card.

Writes DIR/<format>/ for each format: a save_to_disk DatasetDict (datasets.load_from_disk(DIR/<format>)),
the Hub layout data/<split>-0000i-of-0000N.parquet (load_dataset("parquet", data_dir=DIR/<format>/data)),
the card README.md, and with --jsonl, jsonl/<split>.jsonl. Formats:
  preference  prompt, chosen, rejected      (DPOTrainer)
  unpaired    prompt, completion, label     (KTOTrainer)
  sft         messages                      (SFTTrainer)
  stepwise    prompt, completions, labels   (process reward models; labels are booleans)
Prompts are plain strings when every prompt is one user message, else (or with --conversational)
lists of {role, content} messages. Nothing is written unless every format completes.
--push-to-hub uploads with datasets' own push_to_hub, reading the token from HF_TOKEN; add --dry-run
to list the files and show the card without uploading.

Example:
  prefkit curate pandalm
  prefkit export pandalm --to exports/pandalm
  prefkit export pandalm --to exports/pandalm --format preference --conversational --jsonl
  prefkit export pandalm --to exports/pandalm --push-to-hub alice/pandalm-prefs --dry-run
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "export", cmd_export, DOC)
    p.add_argument("name", help="the curation's name (<store>/curated/NAME/)")
    p.add_argument("--to", required=True, metavar="DIR", help="folder to write DIR/<format>/ into")
    p.add_argument(
        "--format",
        action="append",
        choices=["preference", "unpaired", "sft", "stepwise", "all"],
        help="format to write (repeatable; default: all formats the curation has rows for)",
    )
    p.add_argument("--conversational", action="store_true", help="message lists even for single-message prompts")
    p.add_argument("--jsonl", action="store_true", help="also write jsonl/<split>.jsonl per format")
    p.add_argument("--license", default=None, help="license id for the card (default: the report's, else 'other')")
    p.add_argument(
        "--neutral-steps",
        choices=["good", "bad"],
        default="good",
        help="what a neutral (0) step label becomes in stepwise labels: True (good, default) or False (bad)",
    )
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="then upload to this Hub dataset repo")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    p.add_argument("--dry-run", action="store_true", help="with --push-to-hub: list what would be pushed, send nothing")
    add_store_option(p)


def cmd_export(args: argparse.Namespace) -> int:
    from prefkit.export.exporter import export_curated
    from prefkit.export.hub import push_to_hub

    if args.dry_run and not args.push_to_hub:
        raise ExportError("--dry-run applies to --push-to-hub; add --push-to-hub REPO")
    result = export_curated(
        curations_root(store_path(args)),
        args.name,
        args.to,
        formats=args.format or "all",
        conversational=args.conversational,
        jsonl=args.jsonl,
        license=args.license,
        neutral_is_good=args.neutral_steps == "good",
    )
    for fname, fr in result.formats.items():
        rows = ", ".join(f"{split} {n:,}" for split, n in fr.splits.items())
        form = "conversational" if fr.conversational else "standard"
        print(f"{fname:10s} {rows} ({form}) → {fr.path}")
    for fname, why in result.skipped.items():
        print(f"{fname:10s} skipped: {why}")
    if args.push_to_hub:
        plan = push_to_hub(
            result.to, args.push_to_hub, list(result.formats), private=args.private or None, dry_run=args.dry_run
        )
        verb = "would push" if args.dry_run else "pushed"
        print(f"{verb} {len(plan.files)} files to https://huggingface.co/datasets/{plan.repo_id}:")
        for f in plan.files:
            print(f"  {f}")
    return 0
