"""The one way an AI job builds a `Judgement` row: a success or an error, named by its request.

Every AI row is `annotator_type = ai` and is named by the hash of the request that produced it (so a
re-run finds it and asks nothing); an error row is named by that hash and its reason, has no scores
and keeps what the model did say in `raw`, so the next run tries again and the failure stays on record.
"""

from __future__ import annotations

import json
from typing import Any

from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import content_hash


def ai_judgement(
    key: str,
    prompt_id: str,
    kind: str,
    annotator: str,
    response_ids: list[str],
    guidelines: str,
    metadata: dict[str, Any] | None = None,
    **fields: Any,
) -> Judgement:
    """A submitted AI judgement; `key` is the request's hash, `fields` the rest of the contract's
    columns (scores, rationale, raw, duration_ms, confidence, aspect, principle, ...)."""
    return Judgement(
        judgement_id=key,
        prompt_id=prompt_id,
        kind=kind,
        annotator=annotator,
        annotator_type="ai",
        response_ids=list(response_ids),
        guidelines=guidelines,
        metadata=json.dumps(metadata or {}, sort_keys=True),
        **fields,
    )


def ai_error(
    key: str,
    reason: str,
    prompt_id: str,
    kind: str,
    annotator: str,
    response_ids: list[str],
    guidelines: str,
    raw: str | None,
    metadata: dict[str, Any] | None = None,
    **fields: Any,
) -> Judgement:
    """A failed request, recorded: no scores, the reason, and whatever the model did say."""
    return ai_judgement(
        content_hash(["error", key, reason]),
        prompt_id,
        kind,
        annotator,
        response_ids,
        guidelines,
        metadata,
        scores=[],
        status="error",
        error=reason,
        raw=raw,
        **fields,
    )
