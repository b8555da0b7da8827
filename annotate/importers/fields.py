"""Reading the fields of one input record: prompts, response texts, labels.

Every helper takes the record's location (`file:line`) so a problem is reported where it is. The
rules, shared by all shapes:
- a prompt is a string (one user turn), a list of {role, content} messages, or `instruction` plus
  an optional `input` (Alpaca style); an optional `system` string becomes a leading system turn;
- a response is a string, or a conversational list whose last message is the assistant turn;
- JSON numbers and booleans where text is expected are kept as their JSON text (real data has them:
  PandaLM stores a model's answer "True" as the boolean `true`), and counted as a warning;
- empty prompt text is an error; an empty response is kept (a model that answered nothing is real,
  and usually loses) and counted as a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prefkit.annotate.contract import ROLES
from prefkit.annotate.importers.errors import ImportFailed

PROMPT_FIELDS = ("prompt", "messages", "instruction")


@dataclass
class Record:
    """One input record after `--map`, with where it came from."""

    data: dict[str, Any]
    where: str  # "file:line" (or "file: row N" for columnar files)
    warnings: dict[str, list] = field(default_factory=dict)  # shared per file: problem → [count, first location]

    def warn(self, problem: str) -> None:
        seen = self.warnings.setdefault(problem, [0, self.where])
        seen[0] += 1

    def get(self, name: str, required: bool = True, fix: str = "") -> Any:
        if name not in self.data:
            if not required:
                return None
            have = ", ".join(sorted(self.data)) or "none"
            raise ImportFailed(
                self.where,
                name,
                f"is missing (the record has: {have})",
                fix or f"add it, or rename a column onto it with --map COLUMN={name}",
            )
        return self.data[name]


def text(rec: Record, name: str, value: Any, *, allow_empty: bool | str) -> str:
    """A text field: strings as they are, JSON scalars as their JSON text, anything else an error.

    `allow_empty`: False → empty is an error; True → an empty response, kept with a warning;
    "part" → may be empty without comment (one part of a prompt checked as a whole).
    """
    if isinstance(value, bool) or isinstance(value, (int, float)):
        rec.warn(f"{name}: a JSON {type(value).__name__} was stored as its JSON text")
        value = json.dumps(value)
    if value is None:
        raise ImportFailed(rec.where, name, "is null", "give text, or drop the record")
    if not isinstance(value, str):
        raise ImportFailed(rec.where, name, f"is a {_kind(value)}, expected text", "give a string")
    if not value.strip() and allow_empty != "part":
        if not allow_empty:
            raise ImportFailed(rec.where, name, "is empty", "give non-empty text, or drop the record")
        rec.warn(f"{name}: empty response kept")
    return value


def messages(rec: Record, name: str, value: Any, *, answer: bool = False) -> list[dict[str, str]]:
    """A conversational value: a non-empty list of {role, content} with known roles and text.

    `answer`: the list holds a response, whose assistant turn may be empty (see the module docstring).
    """
    if not isinstance(value, list) or not value:
        raise ImportFailed(
            rec.where,
            name,
            f"is a {_kind(value)}, expected a list of messages",
            'give [{"role": "user", "content": "..."}]',
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ImportFailed(
                rec.where, f"{name}[{i}]", "is not a {role, content} message", 'give {"role": "user", "content": "..."}'
            )
        if m["role"] not in ROLES:
            raise ImportFailed(rec.where, f"{name}[{i}].role", f"is {m['role']!r}", f"use one of {', '.join(ROLES)}")
        content = text(rec, f"{name}[{i}].content", m["content"], allow_empty=answer and m["role"] == "assistant")
        out.append({"role": m["role"], "content": content})
    return out


def prompt(rec: Record) -> list[dict[str, str]]:
    """The prompt of a record as messages (see the module docstring for the accepted forms)."""
    d = rec.data
    if "prompt" in d:
        value = d["prompt"]
        turns = messages(rec, "prompt", value) if isinstance(value, list) else [user(rec, "prompt", value)]
    elif "messages" in d:
        turns = messages(rec, "messages", d["messages"])
    elif "instruction" in d:
        # Alpaca style: instruction, a blank line, input; a blank part is left out (PandaLM has a
        # record whose instruction is " " and whose input holds the whole request)
        parts = [text(rec, "instruction", d["instruction"], allow_empty="part")]
        if d.get("input") is not None:
            parts.append(text(rec, "input", d["input"], allow_empty="part"))
        body = "\n\n".join(p for p in parts if p.strip())
        if not body:
            raise ImportFailed(
                rec.where, "instruction", "is empty (and so is input)", "give the prompt text, or drop the record"
            )
        turns = [{"role": "user", "content": body}]
    else:
        rec.get("prompt", fix="add a prompt (or messages, or instruction) column, or --map COLUMN=prompt")
    if d.get("system"):
        turns = [{"role": "system", "content": text(rec, "system", d["system"], allow_empty=False)}, *turns]
    return turns


def user(rec: Record, name: str, value: Any) -> dict[str, str]:
    return {"role": "user", "content": text(rec, name, value, allow_empty=False)}


def response(rec: Record, name: str, value: Any, prompt_turns: list[dict[str, str]]) -> str:
    """A response: text, or a conversational list ending in the assistant turn being judged.

    A list may repeat the prompt before the answer (as some datasets store the full conversation);
    that prefix is dropped.
    """
    if not isinstance(value, list):
        return text(rec, name, value, allow_empty=True)
    turns = messages(rec, name, value, answer=True)
    if turns[: len(prompt_turns)] == prompt_turns and len(turns) > len(prompt_turns):
        turns = turns[len(prompt_turns) :]
    return last_assistant(rec, name, turns)


def last_assistant(rec: Record, name: str, turns: list[dict[str, str]]) -> str:
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        roles = [t["role"] for t in turns]
        raise ImportFailed(
            rec.where,
            name,
            f"holds turns {roles} after the prompt, expected one assistant turn",
            "give only the assistant's answer (the prompt goes in 'prompt')",
        )
    return turns[0]["content"]


def metadata(rec: Record, used: set[str]) -> dict[str, Any]:
    """The record's fields that no converter used, kept so nothing in the input is lost."""
    return {k: v for k, v in rec.data.items() if k not in used and v is not None}


def json_kind(value: Any) -> str:
    """What a parsed value is, in JSON's words ("null", not "NoneType")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _kind(value: Any) -> str:
    return f"JSON {json_kind(value)}"
