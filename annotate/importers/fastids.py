"""The contract's prompt and response ids (annotate/ids.py), computed without `json.dumps`.

An import hashes every text it reads; `ids.canonical_json` builds a new JSON encoder on each call,
which costs more than the hashing itself. These functions write the same canonical JSON by hand
(sorted keys, no spaces, non-ASCII kept) with the C string encoders, so they give identical ids;
tests/annotate/test_import_fastids.py checks that on awkward text.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring, encode_basestring_ascii

_HEX = 32  # as annotate/ids.py


def _json_str(text: str) -> str:
    # The ASCII encoder is faster and gives the same output for ASCII text, except that it escapes
    # DEL (0x7f), which canonical_json (ensure_ascii=False) leaves as it is.
    if text.isascii() and "\x7f" not in text:
        return encode_basestring_ascii(text)
    return encode_basestring(text)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HEX]


def prompt_id(messages: list[dict[str, str]]) -> str:
    """= ids.prompt_id(messages)"""
    body = ",".join('{"content":' + _json_str(m["content"]) + ',"role":' + _json_str(m["role"]) + "}" for m in messages)
    return _hash("[" + body + "]")


def response_id(prompt_id: str, content: str) -> str:
    """= ids.response_id(prompt_id, content)"""
    return _hash("[" + _json_str(prompt_id) + "," + _json_str(content) + "]")


def import_judgement_id(record: str, annotator: str, occurrence: int = 0) -> str:
    """= ids.import_judgement_id(record, annotator, occurrence) for a string `record`"""
    return _hash('["import",' + _json_str(record) + "," + _json_str(annotator) + "," + str(int(occurrence)) + "]")


def key(*parts: str) -> str:
    """A hash naming a tuple of strings (internal keys only; not a contract id)."""
    return _hash("\x1f".join(parts))
