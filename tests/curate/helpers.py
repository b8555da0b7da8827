"""Builders of small hand-made stores for the curation tests (real rows, written by the real store)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from prefkit.annotate.contract import Judgement, Prompt, Response
from prefkit.annotate.store import Store
from prefkit.curate.recipe import parse_recipe

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
_counter = iter(range(10**9))


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def prompt(text: str, source: str = "test", minute: int = 0) -> Prompt:
    return Prompt(messages=[{"role": "user", "content": text}], source=source, created_at=at(minute))


def response(
    p: Prompt, text: str, model: str = "m", origin: str = "imported", parent: Response | None = None
) -> Response:
    # The contract lets an imported response be empty only when its generation says so (real data has them).
    generation = '{"empty_output": true}' if not text.strip() else "{}"
    return Response(
        prompt_id=p.prompt_id,
        content=text,
        model=model,
        origin=origin,
        generation=generation,
        parent_id=parent.response_id if parent else None,
        created_at=T0,
    )


def judge(
    p: Prompt,
    shown: list[Response],
    scores: list[float],
    annotator: str = "alice",
    kind: str = "pairwise",
    annotator_type: str = "human",
    minute: int | None = None,
    metadata: dict | None = None,
    **kw,
) -> Judgement:
    n = next(_counter)
    return Judgement(
        judgement_id=kw.pop("judgement_id", f"j{n:06d}"),
        prompt_id=p.prompt_id,
        kind=kind,
        annotator=annotator,
        annotator_type=annotator_type,
        response_ids=[r.response_id for r in shown],
        scores=[float(s) for s in scores],
        metadata=json.dumps(metadata or {}),
        created_at=at(n if minute is None else minute),
        **kw,
    )


def vote(p: Prompt, a: Response, b: Response, outcome: str, annotator: str = "alice", **kw) -> Judgement:
    """A pairwise vote: outcome 'a', 'b' or 'tie' (a shown first)."""
    scores = {"a": [1, 0], "b": [0, 1], "tie": [0.5, 0.5]}[outcome]
    return judge(p, [a, b], scores, annotator=annotator, **kw)


def make_store(path, prompts=(), responses=(), judgements=()) -> Store:
    store = Store(path)
    with store.batch() as b:
        b.append("prompts", list(prompts))
        b.append("responses", list(responses))
        b.append("judgements", list(judgements))
    return store


def recipe(*steps, seed: int = 0, name: str = "t"):
    """A recipe from step entries as they would be written in YAML."""
    return parse_recipe({"name": name, "seed": seed, "steps": list(steps)})
