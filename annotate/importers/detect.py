"""Which shape a file has, told from the fields of its first records.

One record is not enough to be sure: a first record that lacks `rejected` would make a whole file of
pairs import as bare prompts. So `decide` looks at the first `DETECT_RECORDS` records and takes the
shape most of them have (records with responses outvote bare prompts), and `misfit` then checks every
record against that shape: a record of another shape, or a "prompt" that carries a pair's or a
label's fields, is an error naming its line instead of data quietly tucked into metadata.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from prefkit.annotate.importers import hh, votes
from prefkit.annotate.importers.fields import PROMPT_FIELDS

SHAPES = ("pairs", "hh", "unpaired", "ratings", "votes", "prompts")
DETECT_RECORDS = 100  # records looked at before the shape is decided
# Fields only a shape with responses uses, and what a record holding one of them lacks for it.
_HALF_SHAPES = (
    ("chosen", "rejected", "pairs"),
    ("rejected", "chosen", "pairs"),
    ("completion", "label", "unpaired feedback"),
    ("response1", "response2", "votes"),
    ("response2", "response1", "votes"),
)


def detect(record: dict[str, Any]) -> tuple[str | None, str]:
    """(shape, why) — shape is None when the fields match no shape."""
    keys = set(record)
    has_prompt = bool(keys & set(PROMPT_FIELDS))
    if {"response1", "response2"} <= keys and votes.voters(keys):
        return "votes", f"response1/response2 with votes in {', '.join(votes.voters(keys))}"
    if {"chosen", "rejected"} <= keys:
        chosen, head = record["chosen"], record.get("prompt")
        if hh.looks_like(chosen) or (isinstance(head, str) and hh.looks_like(head + "\n\nAssistant:")):
            return "hh", "chosen/rejected as Human:/Assistant: transcripts"
        style = "conversational" if isinstance(chosen, list) else "text"
        if has_prompt:
            return "pairs", f"prompt/chosen/rejected ({style})"
        return "pairs", f"chosen/rejected with an implicit shared prompt ({style})"
    if {"completion", "label"} <= keys:
        return "unpaired", "prompt/completion/label"
    if "completions" in keys or ("responses" in keys and has_prompt):
        return "ratings", "prompt with rated or ranked completions"
    if has_prompt:
        return "prompts", "prompts only (no responses)"
    return None, ""


def _family(shape: str | None) -> str | None:
    # hh is pairs whose texts are transcripts, told apart by content: a record of one in a file of
    # the other is left to the converter, which names what is wrong with it
    return "pairs" if shape == "hh" else shape


def decide(sample: list[tuple[str, dict[str, Any]]]) -> tuple[str | None, str, int]:
    """(shape, why, index of the record that shows it) from the first records of a file.

    The shape most records with responses have wins (ties: the earliest); bare prompts only when
    no record has responses; None when no record matches any shape.
    """
    found = [detect(data) for _, data in sample]
    richer = [s for s, _ in found if s not in (None, "prompts")]
    if richer:
        counts = Counter(richer)
        shape = max(counts, key=lambda s: (counts[s], -richer.index(s)))
    elif any(s == "prompts" for s, _ in found):
        shape = "prompts"
    else:
        return None, "", 0
    index = next(i for i, (s, _) in enumerate(found) if s == shape)
    why = found[index][1]
    agree = sum(_family(s) == _family(shape) for s, _ in found)
    if agree < len(found):
        why += f"; {agree} of the first {len(found)} records"
    return shape, why, index


@functools.lru_cache(maxsize=256)
def _family_of(keys: frozenset[str]) -> str | None:
    # a shape's family depends on the field names alone (content only tells hh from pairs), and a
    # file has few distinct sets of them: cached, the check costs a set build per record
    return _family(detect(dict.fromkeys(keys))[0])


def misfit(shape: str, record: dict[str, Any]) -> tuple[str | None, str, str] | None:
    """(field, problem, fix) when `record` does not fit a file of `shape`, else None.

    Only what the converters would not catch themselves: a record of another shape, and a record
    read as a bare prompt that holds half of a pair (its texts would end up as prompt metadata).
    """
    own = _family_of(frozenset(record))
    if own not in (None, "prompts") and own != _family(shape):
        own, why = detect(record)
        return (
            None,
            f"is {own} ({why}), but this file's records are {shape}",
            "a file holds one shape: split it, or force one with --format",
        )
    if shape == "prompts":
        if {"response1", "response2"} <= set(record):
            return (
                "annotator1",
                "is missing: the record has 'response1' and 'response2', so it looks like votes, but it has no votes",
                "name vote columns annotator1, annotator2, …, or pass --format prompts to import bare prompts",
            )
        for have, lacks, kind in _HALF_SHAPES:
            if have in record and lacks not in record:
                return (
                    lacks,
                    f"is missing: the record has '{have}', so it looks like {kind}, but it cannot be read as {kind}",
                    f"add '{lacks}' (or --map a column onto it), or pass --format prompts to import bare prompts",
                )
    return None


def describe_expected() -> str:
    return (
        "pairs: prompt, chosen, rejected | hh: chosen, rejected as Human:/Assistant: transcripts | "
        "unpaired: prompt, completion, label | ratings: prompt, completions | "
        "votes: instruction or prompt, response1, response2, annotator1… | prompts: prompt"
    )
