"""Push an export to the Hugging Face Hub with `datasets`' own `push_to_hub`, or plan it without the network.

One repo holds every format pushed: a single format becomes the `default` config in `data/` (the same
layout as the local folder); several become one config each, named after the format, in a folder of
that name. Each format is pushed with `DatasetDict.push_to_hub` (shard counts fixed to the local ones,
so the file names are known in advance), then the combined card replaces the README that `datasets`
writes. The token is read from `HF_TOKEN` and handed to `datasets`; it is never written or printed.

`plan_push` computes every argument and file name without touching the network; `push_to_hub(...,
dry_run=True)` returns that plan, and the real push executes exactly it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from prefkit.export import card as cards
from prefkit.export.errors import ExportError
from prefkit.export.exporter import load_report, step_label_note
from prefkit.export.formats import ALL, FORMATS

_SHARD = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<n>\d{5})\.parquet$")


@dataclass
class PushCall:
    """One `DatasetDict.push_to_hub` call: which local export, under which config and folder."""

    format: str
    path: Path  # the local format folder (load_from_disk reads it)
    config_name: str
    data_dir: str
    num_shards: dict[str, int]


@dataclass
class PushPlan:
    repo_id: str
    calls: list[PushCall] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # paths in the repo, README.md included
    card: str = ""


def _shards(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        m = _SHARD.match(shard.name)
        if m:
            counts[m["split"]] = int(m["n"])
    return counts


def plan_push(export_dir: str | Path, repo_id: str, formats: list[str] | None = None) -> PushPlan:
    """What pushing the formats exported under `export_dir` to `repo_id` would upload."""
    export_dir = Path(export_dir)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ExportError(f"{repo_id!r} is not a Hub repo id; use NAMESPACE/NAME, e.g. alice/my-prefs")
    names = [f for f in (formats or ALL) if (export_dir / f / "export.json").exists()]
    if not names:
        raise ExportError(f"no exported formats under {export_dir}; run `prefkit export NAME --to {export_dir}` first")
    single = len(names) == 1
    plan = PushPlan(repo_id)
    configs: list[cards.CardConfig] = []
    report = recipe = None
    license = "other"
    for fname in names:
        folder = export_dir / fname
        settings = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        report, recipe = load_report(folder / "curation")
        license = settings.get("license", license)
        config_name, data_dir = ("default", "data") if single else (fname, fname)
        num_shards = _shards(folder)
        plan.calls.append(PushCall(fname, folder, config_name, data_dir, num_shards))
        plan.files += [
            f"{data_dir}/{split}-{i:05d}-of-{n:05d}.parquet" for split, n in num_shards.items() for i in range(n)
        ]
        from datasets import Features

        schema = pq.read_schema(next((folder / "data").glob("*.parquet")))
        fmt = FORMATS[fname]
        # The card lists the columns this export has: one written before the ids were kept has none.
        present = set(schema.names)
        configs.append(
            cards.CardConfig(
                name=config_name,
                data_dir=data_dir,
                features=Features.from_arrow_schema(schema)._to_yaml_list(),
                splits=settings["splits"],
                nbytes=settings.get("nbytes", {}),
                conversational=settings["conversational"],
                trainer=fmt.trainer,
                trl_columns=fmt.trl_columns,
                extra_columns=tuple(c for c in fmt.extra_columns if c in present),
                id_columns=tuple(c for c in fmt.ids if c in present),
                notes=(step_label_note(settings.get("neutral_steps_are_good", True)),) if fname == "stepwise" else (),
            )
        )
    task_categories = [c for f in names for c in FORMATS[f].task_categories]
    tags = [t for f in names for t in FORMATS[f].tags]
    title = (report or {}).get("name") or repo_id.split("/")[1]
    plan.card = cards.render(str(title), configs, report, recipe, license, task_categories, tags)
    plan.files.append("README.md")
    return plan


def push_to_hub(
    export_dir: str | Path,
    repo_id: str,
    formats: list[str] | None = None,
    private: bool | None = None,
    dry_run: bool = False,
) -> PushPlan:
    """Upload the exported formats to the Hub dataset repo `repo_id` (token from `HF_TOKEN`).

    With `dry_run`, nothing is sent: the returned plan lists the files and the card that would be pushed.
    """
    plan = plan_push(export_dir, repo_id, formats)
    if dry_run:
        return plan
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ExportError("set HF_TOKEN to a Hugging Face token with write access to push; nothing was uploaded")

    from datasets import load_from_disk
    from huggingface_hub import HfApi

    for i, call in enumerate(plan.calls):
        load_from_disk(str(call.path)).push_to_hub(repo_id, **push_kwargs(call, i == 0, private, token))
    HfApi(token=token).upload_file(**card_upload_kwargs(plan))
    return plan


def push_kwargs(call: PushCall, first: bool, private: bool | None, token: str | None) -> dict:
    """Keyword arguments of `DatasetDict.push_to_hub` for one format."""
    return {
        "config_name": call.config_name,
        "set_default": True if first and call.config_name != "default" else None,
        "data_dir": call.data_dir,
        "num_shards": call.num_shards,
        "private": private,
        "token": token,
        "commit_message": f"prefkit export: {call.format}",
    }


def card_upload_kwargs(plan: PushPlan) -> dict:
    """Keyword arguments of `HfApi.upload_file` for the combined card (it replaces the README datasets writes)."""
    return {
        "path_or_fileobj": plan.card.encode("utf-8"),
        "path_in_repo": "README.md",
        "repo_id": plan.repo_id,
        "repo_type": "dataset",
        "commit_message": "prefkit export: dataset card",
    }
