"""Multi-response ratings (UltraFeedback-like): a prompt and `completions`, a list where each item
has the response text (`response`, `content`, `completion` or `text`), optionally its `model`, and
per-aspect ratings, either `ratings: {aspect: number}` or UltraFeedback's
`annotations: {aspect: {"Rating": "4", "Rationale": "…"}}`; an `overall_score` becomes aspect
`overall`. The list may also be called `responses`, and instead of ratings every item may carry a
`rank` (1 = best, ties allowed): the completions then make one `ranking` judgement, scores = −rank.

Each (completion, aspect) becomes one `rating` judgement: response_ids = [completion],
scores = [rating], aspect = the aspect name (lower case), rationale = the given rationale.
Ratings written "N/A" (UltraFeedback has some) or null are not ratings and are left out. A rating
outside `RATING_RANGE` (0 to 10, which holds UltraFeedback's 1–5 aspects and 1–10 overall score) is
an error, since 11 or −3 on such a scale is a typo; `--rating-range LOW:HIGH` sets another scale. A
rank must be 1 or more.
"""

from __future__ import annotations

import math

from prefkit.annotate.importers import fields
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.fields import Record
from prefkit.annotate.importers.rows import Rows

TEXT_KEYS = ("response", "content", "completion", "text")
NOT_RATED = {"n/a", "na", ""}
USED = {"prompt", "messages", "instruction", "input", "system", "completions", "responses"}
RATING_RANGE = (0.0, 10.0)


def convert(rec: Record, out: Rows, scale: tuple[float, float] = RATING_RANGE) -> None:
    turns = fields.prompt(rec)
    completions = rec.get("completions" if "completions" in rec.data else "responses")
    if not isinstance(completions, list) or not completions:
        raise ImportFailed(
            rec.where,
            "completions",
            "is not a non-empty list",
            'give [{"response": "...", "ratings": {"helpfulness": 4}}, ...]',
        )
    pid = out.prompt(rec, turns)
    meta = fields.metadata(rec, USED)
    ranked = all(isinstance(item, dict) and "rank" in item for item in completions)
    ranking: list[tuple[str, float]] = []
    for i, item in enumerate(completions):
        name = f"completions[{i}]"
        if not isinstance(item, dict):
            raise ImportFailed(rec.where, name, "is not an object", 'give {"response": "...", "ratings": {...}}')
        key = next((k for k in TEXT_KEYS if k in item), None)
        if key is None:
            raise ImportFailed(rec.where, name, "has no response text", f"name it one of {', '.join(TEXT_KEYS)}")
        content = fields.response(rec, f"{name}.{key}", item[key], turns)
        rid = out.response(rec, pid, content, str(item["model"]) if item.get("model") else None)
        if ranked:
            rank = _number(rec, f"{name}.rank", item["rank"])
            if rank is None or rank < 1:
                raise ImportFailed(rec.where, f"{name}.rank", f"is {item['rank']!r}", "a rank is 1 (best) or more")
            ranking.append((rid, -rank))
            continue
        rated = _ratings(rec, name, item, scale)
        if not rated and not any(k in item for k in ("ratings", "annotations", "overall_score")):
            raise ImportFailed(rec.where, name, "has no ratings", "give 'ratings': {aspect: number} or 'annotations'")
        for aspect, score, why in rated:
            out.judgement(
                rec,
                pid,
                "rating",
                out.source,
                [rid],
                [score],
                part=f":{i}:{aspect}",
                aspect=aspect,
                rationale=why,
                metadata=meta,
            )
    if ranking:
        ids, scores = zip(*ranking, strict=True)
        out.judgement(rec, pid, "ranking", out.source, list(ids), list(scores), part=":rank", metadata=meta)


def _ratings(rec: Record, name: str, item: dict, scale: tuple[float, float]) -> list[tuple[str, float, str]]:
    found = []
    given = item.get("ratings", item.get("annotations")) or {}
    if not isinstance(given, dict):
        raise ImportFailed(rec.where, f"{name}.ratings", "is not an object", "give {aspect: number}")
    for aspect, value in given.items():
        why = ""
        if isinstance(value, dict):  # UltraFeedback: {"Rating": "4", "Rationale": "..."}
            why = str(value.get("Rationale") or value.get("rationale") or "")
            value = value.get("Rating", value.get("rating"))
        score = _in_range(rec, f"{name}.ratings.{aspect}", value, scale)
        if score is not None:
            found.append((str(aspect).lower(), score, why))
    if "overall_score" in item:
        score = _in_range(rec, f"{name}.overall_score", item["overall_score"], scale)
        if score is not None:
            found.append(("overall", score, ""))
    return found


def _in_range(rec: Record, field: str, value, scale: tuple[float, float]) -> float | None:
    score = _number(rec, field, value)
    low, high = scale
    if score is not None and not low <= score <= high:
        raise ImportFailed(
            rec.where,
            field,
            f"is {value!r}, outside the rating scale {low:g} to {high:g}",
            "fix the rating, or give the file's scale with --rating-range LOW:HIGH",
        )
    return score


def _number(rec: Record, field: str, value) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in NOT_RATED):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = math.nan
    if isinstance(value, bool) or not math.isfinite(score):
        raise ImportFailed(rec.where, field, f"is {value!r}, not a number", 'give a number, or "N/A" for no rating')
    return score
