"""The data contract: the three append-only tables every stage of prefkit reads and writes.

Each table is a pyarrow schema (the single source of truth) plus a small typed record for code that
builds rows one at a time. Rows are immutable: a correction is a new row. Timestamps are UTC
microseconds; JSON-valued columns hold JSON strings. See docs/data-contract.md for the column
meanings and the two places where prefkit deliberately extends DESIGN §2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

PROMPTS = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),  # JSON object
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

RESPONSES = pa.schema(
    [
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("parent_id", pa.string()),
        pa.field("generation", pa.string(), nullable=False),  # JSON object
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

JUDGEMENTS = pa.schema(
    [
        pa.field("judgement_id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("annotator_type", pa.string(), nullable=False),
        pa.field("response_ids", pa.list_(pa.string()), nullable=False),
        pa.field("scores", pa.list_(pa.float64()), nullable=False),
        pa.field("both_bad", pa.bool_(), nullable=False),
        pa.field("strength", pa.int8()),
        pa.field("aspect", pa.string(), nullable=False),
        pa.field("confidence", pa.float64()),
        pa.field("step_labels", pa.list_(pa.int8())),
        pa.field("rationale", pa.string(), nullable=False),
        pa.field("principle", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("duration_ms", pa.int64()),
        pa.field("guidelines", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
        # Extension to DESIGN §2: facts about how a label was made that curation and the dashboard
        # need but that fit no column above (the AI verdict shown in assist mode, gold item,
        # both-order pair key, server fingerprint, shard). JSON object, "{}" when there are none.
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"prompts": PROMPTS, "responses": RESPONSES, "judgements": JUDGEMENTS}
ID_COLUMN: dict[str, str] = {"prompts": "prompt_id", "responses": "response_id", "judgements": "judgement_id"}

# Closed vocabularies. Validation rejects anything else so a typo never becomes a silent new category.
ROLES = ("system", "user", "assistant")
ORIGINS = ("imported", "generated", "human_edit", "critique_revision", "clair_revision")
KINDS = ("pairwise", "ranking", "binary", "rating", "revision", "steps")
# `adjudicator` extends DESIGN §2: a reviewer's settling judgement, which curation lets win over
# every other vote on the same comparison.
ANNOTATOR_TYPES = ("human", "ai", "import", "adjudicator")
STATUSES = ("submitted", "skipped", "flagged", "error")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Prompt:
    """One row of `prompts`. `prompt_id` is derived from `messages` when left empty."""

    messages: list[dict[str, str]]
    source: str = "unknown"
    metadata: str = "{}"
    prompt_id: str = ""
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not self.prompt_id:
            from prefkit.annotate.ids import prompt_id

            self.prompt_id = prompt_id(self.messages)


@dataclass
class Response:
    """One row of `responses`. `response_id` is derived from (prompt_id, content) when left empty."""

    prompt_id: str
    content: str
    model: str = "unknown"
    origin: str = "imported"
    parent_id: str | None = None
    generation: str = "{}"
    response_id: str = ""
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not self.response_id:
            from prefkit.annotate.ids import response_id

            self.response_id = response_id(self.prompt_id, self.content)


@dataclass
class Judgement:
    """One row of `judgements`: which responses were shown, in what order, and a score for each.

    `judgement_id` must be given: a UUIDv7 for a person (`ids.new_judgement_id()`), the request hash
    for an AI call (`ids.request_id(...)`), a record hash for an import.
    """

    judgement_id: str
    prompt_id: str
    kind: str
    annotator: str
    annotator_type: str
    response_ids: list[str]
    scores: list[float]
    both_bad: bool = False
    strength: int | None = None
    aspect: str = "overall"
    confidence: float | None = None
    step_labels: list[int] | None = None
    rationale: str = ""
    principle: str | None = None
    status: str = "submitted"
    error: str | None = None
    duration_ms: int | None = None
    guidelines: str = ""
    raw: str | None = None
    metadata: str = "{}"
    created_at: datetime = field(default_factory=utcnow)


RECORDS: dict[str, type] = {"prompts": Prompt, "responses": Response, "judgements": Judgement}


def to_row(record: Any) -> dict[str, Any]:
    """A record (dataclass) or a plain dict, as a dict of column values."""
    if dataclasses.is_dataclass(record):
        return dataclasses.asdict(record)
    return dict(record)
