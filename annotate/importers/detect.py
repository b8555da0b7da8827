"""Which shape a file has, told from the fields of its first record."""

from __future__ import annotations

from typing import Any

from annotate.importers import hh, votes
from annotate.importers.fields import PROMPT_FIELDS

SHAPES = ("pairs", "hh", "unpaired", "ratings", "votes", "prompts")


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


def describe_expected() -> str:
    return (
        "pairs: prompt, chosen, rejected | hh: chosen, rejected as Human:/Assistant: transcripts | "
        "unpaired: prompt, completion, label | ratings: prompt, completions | "
        "votes: instruction or prompt, response1, response2, annotator1… | prompts: prompt"
    )
