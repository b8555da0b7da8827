"""The curated tables: what `prefkit curate` writes and `prefkit export` reads.

A curation named NAME lives in `<store>/curated/NAME/`:
    pairs.parquet, unpaired.parquet, sft.parquet, steps.parquet   (schemas below)
    report.json, report.html, recipe.yaml                           (how it was made)

Every row carries its lineage (prompt_id, response ids, judgement ids, annotators) and its split, so
an exported row can be traced back to the judgements that made it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from prefkit.annotate.contract import MESSAGE

MESSAGES = pa.list_(MESSAGE)
_LINEAGE = [
    pa.field("judgement_ids", pa.list_(pa.string()), nullable=False),
    pa.field("annotators", pa.list_(pa.string()), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),  # near-duplicate prompt group; splits keep groups whole
    pa.field("split", pa.string(), nullable=False),  # "train" or "test"
]

PAIRS = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),  # hash of (prompt_id, chosen_id, rejected_id, aspect)
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", MESSAGES, nullable=False),  # the conversation before the judged turn
        pa.field("chosen_id", pa.string(), nullable=False),
        pa.field("rejected_id", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("aspect", pa.string(), nullable=False),
        pa.field("score_chosen", pa.float64()),
        pa.field("score_rejected", pa.float64()),
        pa.field("margin", pa.float64()),  # score_chosen - score_rejected (or vote margin)
        pa.field("agreement", pa.float64()),  # share of votes that agree with chosen ≻ rejected
        pa.field("n_votes", pa.int32(), nullable=False),
        *_LINEAGE,
    ]
)

UNPAIRED = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", MESSAGES, nullable=False),
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("label", pa.bool_(), nullable=False),  # desirable (True) / undesirable (False)
        pa.field(
            "derived_from", pa.string(), nullable=False
        ),  # "pair_chosen", "pair_rejected", "binary", "both_bad", "rating"
        *_LINEAGE,
    ]
)

SFT = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("messages", MESSAGES, nullable=False),  # prompt turns + the accepted assistant turn
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("parent_id", pa.string()),  # the response it revised, for revisions
        *_LINEAGE,
    ]
)

STEPS = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", MESSAGES, nullable=False),
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("completions", pa.list_(pa.string()), nullable=False),  # the response's reasoning steps
        pa.field("labels", pa.list_(pa.int8()), nullable=False),  # per step: -1 wrong, 0 neutral, 1 right
        *_LINEAGE,
    ]
)

CURATED: dict[str, pa.Schema] = {"pairs": PAIRS, "unpaired": UNPAIRED, "sft": SFT, "steps": STEPS}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def name_problem(name: str, what: str = "curation name") -> str | None:
    """What is wrong with `name` as the name of a curation (or, with `what`, of a split), or None.

    Both become folder and file names (`curated/NAME/`, `DIR/<format>/<split>/`), so a name is letters,
    digits, '.', '_' and '-', starting with a letter or digit: no '/', no '..', nothing that leaves
    its folder. curate and export both call this, so a name one accepts the other accepts.
    """
    if isinstance(name, str) and _NAME.fullmatch(name):
        return None
    return f"{what} {name!r}: use letters, digits, '.', '_' and '-' only, starting with a letter or digit"


def curated_dir(store_root: str | Path, name: str) -> Path:
    """Where the curation NAME of a (local) store lives (NAME checked by `name_problem` first)."""
    return Path(store_root) / "curated" / name
