"""Reading a judge's answer: pure functions from model output to a verdict, a score or a revision.

Each returns None when the answer cannot be read, so the caller can fall back (structured output →
tolerant parse → one repair request → an error row). None of them ever invents a verdict.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

FIRST, SECOND, TIE = "first", "second", "tie"
SCORES = {FIRST: [1.0, 0.0], SECOND: [0.0, 1.0], TIE: [0.5, 0.5]}
_LABELS = {"a": FIRST, "b": SECOND, "tie": TIE, "t": TIE, "c": TIE, "equal": TIE, "draw": TIE}
_PATTERNS = [
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I),  # MT-bench style [[A]]
    re.compile(r"\bverdict\b\W{0,5}(A|B|tie)\b", re.I),
    re.compile(r"\b(?:response|answer|assistant)\s+(A|B)\s+is\s+(?:better|preferred)", re.I),
]


def label(token: str) -> str | None:
    return _LABELS.get(token.strip().strip("*_`'\".:[]()").lower())


def strip_fences(text: str) -> str:
    text = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    return fenced.group(1) if fenced else text


def verdict_from_logprobs(logprobs: list[dict[str, Any]] | None) -> tuple[str, float] | None:
    """(verdict, P(first ≻ second)) from the first token's top alternatives, or None when none of
    them is a verdict label. Probabilities are renormalised over the three labels."""
    if not logprobs:
        return None
    first = logprobs[0]
    alternatives = first.get("top_logprobs") or [first]
    mass = {FIRST: 0.0, SECOND: 0.0, TIE: 0.0}
    for alt in alternatives:
        which = label(alt.get("token", ""))
        if which:
            mass[which] += math.exp(alt["logprob"])
    total = sum(mass.values())
    if total <= 0:
        return None
    verdict = max(mass, key=mass.get)
    return verdict, mass[FIRST] / total


def parse_json(content: str) -> dict[str, Any] | None:
    try:
        value = json.loads(strip_fences(content))
    except (json.JSONDecodeError, TypeError):
        match = re.search(r"\{.*\}", content or "", re.S)  # an object inside prose
        if not match:
            return None
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def verdict_from_json(content: str) -> tuple[str, str] | None:
    """(verdict, reason) from `{"verdict": "A"|"B"|"tie", "reason": …}`."""
    value = parse_json(content)
    if not value or not isinstance(value.get("verdict"), str):
        return None
    which = label(value["verdict"])
    return (which, str(value.get("reason", ""))) if which else None


def verdict_from_text(content: str) -> tuple[str, str] | None:
    """(verdict, reason) from free text: the first line alone (`A`, `B`, `tie`), or a tolerant search
    for `[[A]]`, `Verdict: B`, `Response A is better`. None when nothing, or two different labels, match."""
    if not content:
        return None
    lines = content.strip().splitlines()
    which = label(lines[0]) if lines else None
    if which:
        return which, "\n".join(lines[1:]).strip()
    as_json = verdict_from_json(content)
    if as_json:
        return as_json
    found = {label(m.group(1)) for p in _PATTERNS for m in p.finditer(content)}
    found.discard(None)
    if len(found) == 1:
        return found.pop(), content.strip()
    return None


def score_from_text(content: str, low: float, high: float) -> tuple[float, str] | None:
    """(score, reason) from `{"score": n}`, `Score: n` (the last one) or a bare number on the first
    line; None unless the score lies in [low, high]."""
    if not content:
        return None
    value = parse_json(content)
    candidates: list[str] = []
    if value and "score" in value:
        candidates.append(str(value["score"]))
        reason = str(value.get("reason", ""))
    else:
        reason = content.strip()
        hits = re.findall(r"score\W{0,3}(\d+(?:\.\d+)?)", content, re.I)
        if hits:
            candidates.append(hits[-1])
        else:
            first = content.strip().splitlines()[0].strip().strip("*.")
            if re.fullmatch(r"\d+(?:\.\d+)?", first):
                candidates.append(first)
    for c in candidates:
        try:
            score = float(c)
        except ValueError:
            continue
        if low <= score <= high:
            return score, reason
    return None


def tagged(content: str, tag: str) -> str | None:
    """The text of a JSON field `tag`, or between `<tag>` and `</tag>`; None when absent."""
    value = parse_json(content)
    if value and isinstance(value.get(tag), str):
        return value[tag]
    match = re.search(rf"<{tag}>(.*?)</{tag}>", content or "", re.S | re.I)
    return match.group(1).strip() if match else None


def ranking_from_text(content: str, n: int) -> tuple[list[int], str] | None:
    """(0-based indices best first, reason) from `{"ranking": [2, 1, 3]}` or a line `2 > 1 > 3`;
    None unless it names each of the n responses exactly once."""
    if not content:
        return None
    value = parse_json(content)
    candidates: list[tuple[list[str], str]] = []
    if value and isinstance(value.get("ranking"), list):
        candidates.append(([str(x) for x in value["ranking"]], str(value.get("reason", ""))))
    for i, line in enumerate(content.strip().splitlines()):
        if ">" in line:
            rest = "\n".join(content.strip().splitlines()[i + 1 :]).strip()
            candidates.append((re.findall(r"\d+", line), rest))
            break
    for numbers, reason in candidates:
        try:
            order = [int(x) - 1 for x in numbers]
        except ValueError:
            continue
        if sorted(order) == list(range(n)):
            return order, reason
    return None
