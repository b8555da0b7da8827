"""What every AI job shares: request bodies, capability detection, sharding, the row sink, run logs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefkit.annotate.ai.cache import Cache, cache_dir
from prefkit.annotate.ai.engine import AIError, Answer, Engine, EngineConfig, RunSummary
from prefkit.annotate.contract import ID_COLUMN, to_row
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import Store

from prefkit import files

MODES = ("auto", "logprobs", "json", "text")


@dataclass
class Sampling:
    """Sampling parameters, all sent explicitly: servers differ in their defaults."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0  # sample k is sent with seed + k, so k samples are k distinct, reproducible requests

    def params(self, sample: int = 0) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed + sample,
        }


def body(model: str, messages: list[dict[str, str]], sampling: Sampling, sample: int = 0, **extra: Any) -> dict:
    """The request exactly as sent; its hash is the cache key and the AI judgement's id."""
    return {"model": model, "messages": messages, **sampling.params(sample), **extra}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` (1-based) → (K, N)."""
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise AIError(f"--shard {text!r}: expected K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise AIError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or int(key[:8], 16) % shard[1] == shard[0] - 1


def open_cache(store: Store, shard: tuple[int, int] | None) -> Cache:
    if not store.writable:
        raise AIError(f"{store.url} is read-only: AI jobs write to a local or an s3:// store")
    # SQLite needs a local disk: a remote store's cache lives in its local state folder.
    return Cache(cache_dir(store.state_dir), f"shard-{shard[0]}-of-{shard[1]}" if shard else "cache")


# -- capabilities -------------------------------------------------------------------------------

_PROBE = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}]


def json_schema_format(name: str, properties: dict[str, dict]) -> dict:
    """A `response_format` asking for a strict JSON object with exactly these (required) properties."""
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


_PROBE_SCHEMA = json_schema_format("probe", {"ok": {"type": "boolean"}})


async def detect(engine: Engine, cache: Cache) -> dict[str, bool]:
    """Whether the server returns logprobs and honours a JSON-schema response_format. Two tiny probe
    requests, remembered in the cache per (server, model) so later runs send none.

    An answer is an answer, whatever its finish reason: one cut off at `max_tokens` (a verbose or
    reasoning model) still shows whether logprobs came back, and a cut-off JSON object still shows
    the schema was followed. A 4xx refusing the option means "not supported". Probes are retried by
    the engine like any request; one that still got no answer counts as "not supported" for this run
    only (nothing is remembered, so the next run asks again). Only when no request at all, a plain
    third one included, gets an answer does the job stop: then the server really cannot be reached.
    """
    server = f"{engine.config.base_url or 'https://api.openai.com/v1'}|{engine.config.model}"
    known = cache.capability(server)
    if known:
        return json.loads(known)
    base = {"model": engine.config.model, "messages": _PROBE, "temperature": 0.0, "max_tokens": 16}
    lp = await engine.complete({**base, "logprobs": True, "top_logprobs": 5})
    js = await engine.complete({**base, "response_format": _PROBE_SCHEMA})
    unanswered = [probe for probe in (lp, js) if _unanswered(probe)]
    if len(unanswered) == 2:
        plain = await engine.complete(base)  # is it the options, or the server?
        if _unanswered(plain):
            raise AIError(
                f"cannot reach the server: {plain.error} (also for both capability probes; "
                "check --base-url, or pass --mode to skip detection)"
            )
    found = {"logprobs": _has_logprobs(lp), "json_schema": _follows_schema(js)}
    if not unanswered:
        cache.set_capability(server, json.dumps(found))
    return found


def _unanswered(answer: Answer) -> bool:
    """No answer arrived (transport failure after every retry); a 4xx status is an answer about support."""
    return answer.text is None and answer.status is None


def _has_logprobs(answer: Answer) -> bool:
    return bool(answer.text is not None and answer.logprobs and answer.logprobs[0].get("top_logprobs"))


def _follows_schema(answer: Answer) -> bool:
    if answer.text is None:
        return False
    if isinstance(_json(answer.content), dict):
        return True
    # Cut off at max_tokens: the start of a JSON object is as far as the schema can be seen to hold.
    return answer.finish_reason == "length" and (answer.content or "").lstrip().startswith("{")


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except json.JSONDecodeError:
        return None


async def choose_mode(engine: Engine, cache: Cache, mode: str) -> str:
    """`auto` → logprobs if the server gives them, else JSON schema, else free text."""
    if mode not in MODES:
        raise AIError(f"--mode {mode!r}: choose one of {MODES}")
    if mode != "auto":
        return mode
    found = await detect(engine, cache)
    return "logprobs" if found["logprobs"] else "json" if found["json_schema"] else "text"


# -- writing ---------------------------------------------------------------------------------------


class RowSink:
    """Rows gathered as results arrive and written in parts (every `every` rows or `seconds`).

    A kill loses at most the unwritten buffer, and those answers are in the cache: the next run
    rebuilds the rows without a single request. Each flush is one all-or-nothing store batch.
    """

    def __init__(self, store: Store, every: int = 256, seconds: float = 2.0):
        self.store, self.every, self.seconds = store, every, seconds
        self.buffer: dict[str, list[Any]] = {}
        self.written: dict[str, int] = {}
        self.last = time.monotonic()

    def add(self, table: str, rows: list[Any]) -> None:
        self.buffer.setdefault(table, []).extend(rows)
        if sum(map(len, self.buffer.values())) >= self.every or time.monotonic() - self.last > self.seconds:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not any(self.buffer.values()):
            return
        for table, rows in self.buffer.items():
            # Two answers may well be the same text (two samples, two revisions): one row per id.
            column, seen, unique = ID_COLUMN[table], set(), []
            for row in rows:
                key = getattr(row, column, None) or (row.get(column) if isinstance(row, dict) else None)
                if key not in seen:
                    seen.add(key)
                    unique.append(row)
            self.buffer[table] = unique
        with self.store.batch() as batch:
            # Responses first in the dict order the jobs use, so a revision's judgement never lands
            # without its response (both are in one batch anyway).
            for table, rows in self.buffer.items():
                if rows:
                    batch.append(table, [_as_dict(r) for r in rows])
                    self.written[table] = self.written.get(table, 0) + len(rows)
        self.buffer = {}


def _as_dict(record: Any) -> dict[str, Any]:
    # A shallow copy: `dataclasses.asdict` deep-copies every list and costs more than the request here.
    return dict(vars(record)) if hasattr(record, "__dataclass_fields__") else to_row(record)


def existing(store: Store, sql: str, params: list | None = None) -> set[str]:
    con = store.connect()
    try:
        return {r[0] for r in con.execute(sql, params or []).fetchall()}
    finally:
        con.close()


def write_run_log(store: Store, command: str, config: EngineConfig, summary: RunSummary, extra: dict) -> Path:
    """`<store>/ai/runs/<time>-<command>.json` (a remote store: under its `state_dir`): the final config
    beside the output (the key's variable name, never the key), what the run did, and every failure
    with its reason."""
    folder = Path(store.state_dir) / "ai" / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{command}-{content_hash(time.time_ns())[:6]}.json"
    record = {"command": command, "config": config.public(), "summary": asdict(summary), **extra}
    files.write_text(path, json.dumps(record, indent=2, default=str))  # a killed run leaves no half log
    return path
