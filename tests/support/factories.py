"""Small builders of contract rows for tests (real rows, validated by the real store)."""

from __future__ import annotations

from prefkit.annotate.contract import Judgement, Prompt, Response
from prefkit.annotate.ids import new_judgement_id


def prompt(text: str = "What is 2+2?", source: str = "test") -> Prompt:
    return Prompt(messages=[{"role": "user", "content": text}], source=source)


def response(p: Prompt, text: str, model: str = "m") -> Response:
    return Response(prompt_id=p.prompt_id, content=text, model=model)


def pairwise(p: Prompt, a: Response, b: Response, winner: int = 0, annotator: str = "alice", **kw) -> Judgement:
    scores = [0.5, 0.5] if winner < 0 else ([1.0, 0.0] if winner == 0 else [0.0, 1.0])
    return Judgement(
        judgement_id=kw.pop("judgement_id", None) or new_judgement_id(),
        prompt_id=p.prompt_id,
        kind="pairwise",
        annotator=annotator,
        annotator_type=kw.pop("annotator_type", "human"),
        response_ids=[a.response_id, b.response_id],
        scores=scores,
        **kw,
    )
