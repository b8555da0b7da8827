"""The dataset card (`README.md`): Hub YAML metadata, then how the data was made, from the curation report.

The YAML carries what the Hub and `datasets` read: configs and their data files, features, split
sizes (equal to the rows written), license, task categories, size category, tags. The body is built
from `report.json` and `recipe.yaml`. The report is written by curation, whose keys may grow, so each
section looks up the keys it knows (listed in `REPORT_SECTIONS`, documented in docs/exporting.md) and
is left out when they are missing; a missing report gives a card with counts only.

Every string from the report or the user (annotator and model names, sources, step reasons, the
license) is escaped twice over: as HTML (the Hub renders the card as HTML) and as Markdown — each
character that could start Markdown syntax gets a backslash, so `![p](https://…)` stays text instead of
an image fetched by every reader, and `:`/`.` are escaped too, which keeps renderers from turning a
bare address into a link. Line breaks become spaces, so a value cannot start a new block.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

# (title, the report keys tried in order, what the section says)
REPORT_SECTIONS: list[tuple[str, tuple[str, ...], str]] = [
    ("Curation steps", ("steps", "counts"), "Rows kept and dropped by each step of the recipe, and why."),
    ("Agreement", ("agreement",), "How often annotators agreed on the same comparison."),
    ("Annotators", ("annotators",), "Who labelled, and how many labels each gave."),
    ("AI judges", ("judges", "ai_judges"), "The LLM judges and their templates."),
    ("Models", ("models",), "The models whose responses were judged."),
    ("Length bias", ("length_bias",), "Share of pairs where the chosen response is the longer one."),
    ("Guidelines and templates", ("guidelines", "templates"), "Versions (id and content hash) in force."),
    ("Sources", ("sources",), "Where the prompts came from."),
]


@dataclass
class CardConfig:
    """One config (format) of the card: where its files are, its features and split sizes."""

    name: str  # config name: "default" for a single-format folder, else the format name
    data_dir: str  # folder of its Parquet shards, relative to the card
    features: list  # `datasets` YAML list of features
    splits: dict[str, int]  # rows per split
    nbytes: dict[str, int]
    conversational: bool
    trainer: str
    trl_columns: tuple[str, ...]
    extra_columns: tuple[str, ...]
    notes: tuple[str, ...] = ()  # anything a user of this config must know (e.g. how step labels were mapped)
    id_columns: tuple[str, ...] = ()  # the store ids among extra_columns


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, label in bounds:
        if n < bound:
            return label
    return "1B<n<10B"


def metadata(
    configs: Sequence[CardConfig], license: str, task_categories: Sequence[str], tags: Sequence[str], pretty_name: str
) -> dict:
    total = sum(sum(c.splits.values()) for c in configs)
    infos = [
        {
            "config_name": c.name,
            "features": c.features,
            "splits": [{"name": s, "num_bytes": c.nbytes.get(s, 0), "num_examples": n} for s, n in c.splits.items()],
        }
        for c in configs
    ]
    return {
        "pretty_name": pretty_name,
        "license": license,
        "task_categories": list(dict.fromkeys(task_categories)),
        "size_categories": [size_category(total)],
        "tags": list(dict.fromkeys(["prefkit", *tags])),
        "configs": [
            {
                "config_name": c.name,
                **({"default": True} if i == 0 and len(configs) > 1 else {}),
                "data_files": [{"split": s, "path": f"{c.data_dir}/{s}-*"} for s in c.splits],
            }
            for i, c in enumerate(configs)
        ],
        "dataset_info": infos[0] if len(infos) == 1 else infos,
    }


def render(
    name: str,
    configs: Sequence[CardConfig],
    report: Mapping | None,
    recipe: str | None,
    license: str,
    task_categories: Sequence[str],
    tags: Sequence[str],
) -> str:
    """The whole card: `---` YAML `---` then the Markdown body."""
    meta = metadata(configs, license, task_categories, tags, pretty_name=name)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body(name, configs, report, recipe, license)}"


def parse(card: str) -> tuple[dict, str]:
    """(YAML metadata, body) of a card."""
    if not card.startswith("---\n"):
        raise ValueError("a dataset card starts with a '---' line")
    front, _, rest = card[4:].partition("\n---\n")
    return yaml.safe_load(front), rest


def body(name: str, configs: Sequence[CardConfig], report: Mapping | None, recipe: str | None, license: str) -> str:
    out = [f"# {_text(name)}", ""]
    out += [
        "Preference data curated and exported with prefkit: human and AI "
        "judgements of model responses, deduplicated, aggregated and split by `prefkit curate`, written here "
        "in the column names TRL's trainers read.",
        "",
        "## Contents",
        "",
        "| config | split | rows | trainer |",
        "| --- | --- | ---: | --- |",
    ]
    for c in configs:
        for split, n in c.splits.items():
            out.append(f"| {c.name} | {split} | {n} | {c.trainer} |")
    out.append("")
    for c in configs:
        form = (
            "conversational (lists of `{role, content}` messages)" if c.conversational else "standard (plain strings)"
        )
        out.append(
            f"- **{c.name}**: TRL columns {', '.join(f'`{x}`' for x in c.trl_columns)}, {form}; "
            f"lineage and quality columns {', '.join(f'`{x}`' for x in c.extra_columns)}."
        )
        if c.id_columns:
            out.append(
                f"  {', '.join(f'`{x}`' for x in c.id_columns)}: the ids of the prompt and responses in the "
                "prefkit store the rows came from (`prefkit score-pairs` reads them)."
            )
        out += [f"  {note}" for note in c.notes]
    out += ["", "```python", "from datasets import load_dataset", ""]
    first = configs[0]
    out.append(f'ds = load_dataset("parquet", data_dir="{first.data_dir}")  # or the Hub repo id')
    out += ["```", ""]

    out += ["## How it was made", ""]
    if report is None:
        out += ["No curation report was found beside the curated tables, so this card gives counts only.", ""]
    else:
        for title, keys, what in REPORT_SECTIONS:
            value = next((report[k] for k in keys if k in report and report[k] not in (None, {}, [])), None)
            if value is not None:
                out += [f"### {title}", "", what, "", *_render(value), ""]
    if recipe:
        out += ["### Recipe", "", "The curation recipe (`recipe.yaml`) that produced these rows:", ""]
        out += ["```yaml", recipe.rstrip().replace("```", "'''"), "```", ""]
    out += [
        "## License",
        "",
        _text(license) + (" (not stated; set with `--license`)" if license == "other" else ""),
        "",
    ]
    return "\n".join(out)


# The ASCII punctuation that can start Markdown (CommonMark, GFM, the Hub's math and mentions) when it
# is not escaped; & < > " ' are HTML-escaped instead. CommonMark lets any ASCII punctuation be escaped.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:@$^])")


def _text(value) -> str:
    """A report value as inert text for a Markdown table cell, bullet or paragraph."""
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)  # digits, '.', '-', 'e': nothing a renderer reads as syntax inside a line
    # Every kind of line break becomes a space, and leading spaces go (after a bullet's "- " they would
    # open a code block): a value stays inline.
    text = " ".join(str(value).splitlines()).strip()
    return html.escape(_MARKDOWN.sub(r"\\\1", text), quote=True)


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _render(value) -> list[str]:
    """A report value as Markdown: a scalar inline, a flat dict as a two-column table, a list of flat dicts as a
    table, a list of scalars as bullets; anything deeper as JSON."""
    if _is_scalar(value):
        return [_text(_number(value))]
    if isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values()):
        return ["| | |", "| --- | ---: |", *(f"| {_text(k)} | {_text(_number(v))} |" for k, v in value.items())]
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return [f"- {_text(v)}" for v in value]
    if isinstance(value, list) and all(
        isinstance(v, Mapping) and all(_is_scalar(x) for x in v.values()) for v in value
    ):
        cols = list(dict.fromkeys(k for row in value for k in row))
        lines = ["| " + " | ".join(_text(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
        lines += ["| " + " | ".join(_text(_number(row.get(c, ""))) for c in cols) + " |" for row in value]
        return lines
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False, default=str).replace("```", "'''"), "```"]


def _number(v):
    return round(v, 4) if isinstance(v, float) else v
