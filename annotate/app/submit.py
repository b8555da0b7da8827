"""What a submission becomes: contract records built from the page's answers (pure functions), and
the one place that writes them (store first, then the assignment state).

Scores follow DESIGN §2: pairwise win [1, 0], tie [0.5, 0.5], both bad [0, 0] with `both_bad`;
ranking = negative ranks; binary [1]/[0]; rating = the rating; steps = the fraction of steps marked
right. `response_ids` are always in the order shown.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from prefkit.annotate.app.assign import Assigner
from prefkit.annotate.app.items import Item, edit_ratio, metadata
from prefkit.annotate.app.project import Project
from prefkit.annotate.contract import Judgement, Response
from prefkit.annotate.ids import new_judgement_id
from prefkit.annotate.store import Store

PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad")
STEP_LABELS = {"right": 1, "neutral": 0, "wrong": -1}


class SubmitError(ValueError):
    """The answer is incomplete or invalid (e.g. an edit identical to the original)."""


@dataclass
class Shown:
    """What one person was shown for one item, captured when it was first displayed."""

    item: Item
    order: list[str]  # response ids, in the order shown
    annotator: str
    started: float = field(default_factory=time.time)
    ai_shown: dict | None = None  # assist mode: the AI verdict shown
    gold: str | None = None  # gold item: the response id the answer must prefer

    def duration_ms(self, now: float | None = None) -> int:
        return max(0, int(((now or time.time()) - self.started) * 1000))


def _base(project: Project, shown: Shown, kind: str, now: float | None, extra: dict | None = None, **kw) -> Judgement:
    duration = shown.duration_ms(now)
    meta = dict(extra or {})
    status = kw.pop("status", "submitted")
    if shown.ai_shown is not None:
        meta["ai_shown"] = shown.ai_shown
    if status == "submitted" and duration < project.min_seconds * 1000:
        status = "flagged"
        meta["flag"] = f"fast: {duration / 1000:.1f} s < {project.min_seconds:g} s"
    return Judgement(
        judgement_id=new_judgement_id(),
        prompt_id=shown.item.prompt_id,
        kind=kind,
        annotator=shown.annotator,
        annotator_type="human",
        guidelines=project.guidelines,
        duration_ms=duration,
        status=status,
        metadata=metadata(meta),
        **kw,
    )


def _pair_scores(choice: str) -> list[float]:
    return {"A": [1.0, 0.0], "B": [0.0, 1.0], "tie": [0.5, 0.5], "both_bad": [0.0, 0.0]}[choice]


def pairwise(
    project: Project,
    shown: Shown,
    choice: str,
    *,
    strength: int | None = None,
    aspects: dict[str, str] | None = None,
    rationale: str = "",
    now: float | None = None,
) -> list[Judgement]:
    """The overall verdict, plus one judgement per answered aspect sub-question."""
    if choice not in PAIRWISE_CHOICES:
        raise SubmitError(f"choose one of {PAIRWISE_CHOICES}, not {choice!r}")
    extra: dict = {}
    if shown.gold is not None:
        winner = {"A": shown.order[0], "B": shown.order[1]}.get(choice)
        extra = {"gold": True, "correct": winner == shown.gold}
    main = _base(
        project,
        shown,
        "pairwise",
        now,
        extra,
        response_ids=list(shown.order),
        scores=_pair_scores(choice),
        both_bad=choice == "both_bad",
        strength=strength if choice in ("A", "B") else None,
        rationale=rationale,
    )
    out = [main]
    for aspect, answer in (aspects or {}).items():
        if answer:
            j = _base(project, shown, "pairwise", now, response_ids=list(shown.order), scores=_pair_scores(answer))
            j.aspect, j.both_bad, j.status, j.metadata = aspect, answer == "both_bad", main.status, main.metadata
            out.append(j)
    return out


def ranking(project: Project, shown: Shown, ranks: list[int], *, rationale: str = "", now=None) -> list[Judgement]:
    """`ranks[i]` is the rank (1 = best, ties allowed) of the i-th response shown."""
    if len(ranks) != len(shown.order) or any(r is None or r < 1 for r in ranks):
        raise SubmitError("give every response a rank (1 = best; equal ranks are ties)")
    scores = [-float(r) for r in ranks]
    return [_base(project, shown, "ranking", now, response_ids=list(shown.order), scores=scores, rationale=rationale)]


def binary(project: Project, shown: Shown, good: bool, *, rationale: str = "", now=None) -> list[Judgement]:
    scores = [1.0 if good else 0.0]
    return [_base(project, shown, "binary", now, response_ids=list(shown.order), scores=scores, rationale=rationale)]


def rating(
    project: Project, shown: Shown, ratings: dict[str, int], *, rationale: str = "", now=None
) -> list[Judgement]:
    if not ratings or any(v is None for v in ratings.values()):
        raise SubmitError(f"rate every aspect: {list(ratings)}")
    out = []
    for aspect, value in ratings.items():
        j = _base(project, shown, "rating", now, response_ids=list(shown.order), scores=[float(value)])
        j.aspect, j.rationale = aspect, rationale
        out.append(j)
    return out


def edit(
    project: Project, shown: Shown, original: str, revised: str, *, rationale: str = "", now=None
) -> tuple[Response, list[Judgement]]:
    """A `human_edit` response and the `revision` judgement [original, revised] with scores [0, 1]."""
    if not revised.strip():
        raise SubmitError("the edited response is empty")
    if revised.strip() == original.strip():
        raise SubmitError("the edit is identical to the original: change what is wrong, or skip")
    parent = shown.order[0]
    new = Response(
        prompt_id=shown.item.prompt_id,
        content=revised,
        model=f"human:{shown.annotator}",
        origin="human_edit",
        parent_id=parent,
        generation=json.dumps({"edit_ratio": round(edit_ratio(original, revised), 4)}),
    )
    j = _base(project, shown, "revision", now, response_ids=[parent, new.response_id], scores=[0.0, 1.0])
    j.rationale = rationale
    return new, [j]


def steps(project: Project, shown: Shown, texts: list[str], labels: list[int], *, rationale: str = "", now=None):
    if len(texts) != len(labels) or not texts:
        raise SubmitError("label every step")
    right = sum(1 for x in labels if x == 1) / len(labels)
    j = _base(
        project,
        shown,
        "steps",
        now,
        {"steps": list(texts)},
        response_ids=list(shown.order),
        scores=[right],
        step_labels=[int(x) for x in labels],
        rationale=rationale,
    )
    return [j]


def skip(project: Project, shown: Shown, reason: str, *, now=None) -> list[Judgement]:
    kind = "revision" if shown.item.kind == "edit" else shown.item.kind
    j = _base(project, shown, kind, now, response_ids=list(shown.order), scores=[], status="skipped")
    j.rationale = reason or "skipped"
    return [j]


def write(
    store: Store, assigner: Assigner, shown: Shown, judgements: list[Judgement], responses: list[Response] = ()
) -> str:
    """Store the records (all or nothing), then mark the item answered. Returns the status recorded.

    The store write comes first: if it fails nothing is marked and the item stays leased to this
    person, so the page can retry; once it returns, the answer is durable. An answer whose lease ran
    out while others filled the item is still kept (work is never thrown away), flagged as over k.
    """
    if judgements[0].status == "submitted" and not assigner.still_open(shown.annotator, shown.item):
        for j in judgements:
            j.status = "flagged"
            j.metadata = metadata({**json.loads(j.metadata), "flag": "over k: lease expired and the item was filled"})
    with store.batch() as batch:
        if responses:
            batch.append("responses", responses)
        batch.append("judgements", judgements)
    status = judgements[0].status
    assigner.complete(shown.annotator, shown.item, status, judgements[0].judgement_id)
    return status


def adjudicate(
    project: Project, reviewer: str, item: Item, label: str, judgement_ids: list[str], *, rationale: str = ""
) -> list[Judgement]:
    """A reviewer's settling verdict on a pairwise item (`first`/`second`/`tie` in sorted-id order);
    curation lets an `adjudicator` judgement win over the votes it names."""
    scores = {"first": [1.0, 0.0], "second": [0.0, 1.0], "tie": [0.5, 0.5]}
    if label not in scores:
        raise SubmitError(f"choose one of {list(scores)}, not {label!r}")
    return [
        Judgement(
            judgement_id=new_judgement_id(),
            prompt_id=item.prompt_id,
            kind="pairwise",
            annotator=reviewer,
            annotator_type="adjudicator",
            response_ids=list(item.response_ids),
            scores=scores[label],
            rationale=rationale,
            guidelines=project.guidelines,
            metadata=metadata({"adjudicates": list(judgement_ids)}),
        )
    ]
