"""Identifiers of the data contract.

Prompts and responses are named by a hash of their content, so importing the same data twice adds
nothing. A person's judgement gets a fresh UUIDv7 (time-ordered, so parts sort by time); an AI
judgement is named by the hash of its request, so a re-run is idempotent; an imported judgement by
the hash of the record it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

_HEX = 32  # 128 bits: collisions are not a concern at any realistic store size


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values always give equal text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:_HEX]


def prompt_id(messages: list[dict[str, str]]) -> str:
    """Hash of the canonical JSON of the conversation (roles and contents only)."""
    return content_hash([{"role": m["role"], "content": m["content"]} for m in messages])


def response_id(prompt_id: str, content: str) -> str:
    return content_hash([prompt_id, content])


def request_id(request: dict[str, Any]) -> str:
    """Hash of a canonical AI request (model, messages, every sampling parameter, schema, sample index)."""
    return content_hash(request)


def import_judgement_id(record: Any, annotator: str, occurrence: int = 0) -> str:
    """Hash of an imported record and the annotator column it came from.

    `occurrence` counts identical records earlier in the same file, so genuine repeats stay distinct
    while re-importing the file reproduces the same ids.
    """
    return content_hash(["import", record, annotator, occurrence])


def new_judgement_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
