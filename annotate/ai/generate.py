"""`prefkit generate`: N candidate responses per prompt, each a separate request with its own seed.

Separate requests (seed = base seed + sample index) rather than `n > 1`: every sample is then its own
cache entry, survives a kill on its own, and works on servers that ignore `n` (llama.cpp, Ollama). The
sampling parameters, token usage, finish reason and server fingerprint go into `responses.generation`.
A failed sample is written nowhere in the store (a response has no status column): it is listed with
its reason in the run log and on the console, and the next run asks for it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prefkit.annotate.ai.batch import BatchOptions
from prefkit.annotate.ai.cache import Cache
from prefkit.annotate.ai.engine import Engine, EngineConfig, RunSummary
from prefkit.annotate.ai.jobs import RowSink, Sampling, body, existing, in_shard, parse_shard
from prefkit.annotate.ai.runner import Job, Outcome, fill, run_job
from prefkit.annotate.contract import Response
from prefkit.annotate.ids import request_id
from prefkit.annotate.store import Store


@dataclass
class GenerateOptions:
    """Equal to the flags of `prefkit generate`."""

    n: int = 2  # samples per prompt
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, top_p=0.95, max_tokens=512))
    system: str | None = None  # a system message put before each prompt's conversation
    shard: str | None = None
    limit: int | None = None  # at most this many prompts
    dry_run: bool = False  # count what would be sent and estimate its cost, send nothing
    batch: BatchOptions | None = None  # through the provider's Batch API (batch.py)


@dataclass
class GenerateReport:
    summary: RunSummary
    planned: int
    skipped: int
    written: int
    failures: list[dict[str, str]]
    log: str | None = None


def generate(store: Store, config: EngineConfig, options: GenerateOptions, *, client: Any = None) -> GenerateReport:
    job = _Generate(store, config, options)
    outcome = run_job(
        store, config, job, shard=options.shard, client=client, dry_run=options.dry_run, batch=options.batch
    )
    return fill(job.report, outcome)


class _Generate(Job):
    """A task: (prompt_id, sample, request body, request id)."""

    command = "generate"

    def __init__(self, store: Store, config: EngineConfig, options: GenerateOptions):
        self.store, self.config, self.options = store, config, options
        self.report = GenerateReport(RunSummary(), planned=0, skipped=0, written=0, failures=[])

    async def plan(self, engine: Engine, cache: Cache) -> list[tuple]:
        shard, options = parse_shard(self.options.shard), self.options
        con = self.store.connect()
        try:
            prompts = con.execute("SELECT prompt_id, messages FROM prompts ORDER BY prompt_id").fetchall()
        finally:
            con.close()
        if options.limit is not None:
            prompts = prompts[: options.limit]
        tasks = []
        for pid, messages in prompts:
            convo = ([{"role": "system", "content": options.system}] if options.system else []) + list(messages)
            for k in range(options.n):
                b = body(self.config.model, convo, options.sampling, k)
                key = request_id(b)
                if in_shard(key, shard):
                    tasks.append((pid, k, b, key))
        return tasks

    def done(self) -> set[str]:
        sql = "SELECT json_extract_string(generation, '$.request_id') FROM responses WHERE origin = 'generated'"
        return existing(self.store, sql)

    def key(self, task: tuple) -> str:
        return task[3]

    def requests(self, task: tuple) -> list[dict[str, Any]]:
        return [task[2]]

    async def process(self, engine: Engine, task: tuple) -> Any:
        return await engine.complete(task[2])

    def on_result(self, task: tuple, answer: Any, sink: RowSink) -> None:
        pid, k, b, key = task
        if not answer.ok:
            self.report.failures.append({"prompt_id": pid, "sample": str(k), "error": answer.error})
            return
        generation = {k2: v for k2, v in b.items() if k2 not in ("messages", "model")}
        generation.update(
            request_id=key,
            sample=k,
            usage=answer.usage,
            fingerprint=answer.fingerprint,
            finish_reason=answer.finish_reason,
            latency_ms=answer.latency_ms,
        )
        response = Response(
            prompt_id=pid,
            content=answer.content,
            model=self.config.model,
            origin="generated",
            generation=json.dumps(generation, sort_keys=True),
        )
        sink.add("responses", [response])
        self.report.written += 1

    def log(self, outcome: Outcome) -> dict[str, Any]:
        return {"options": asdict(self.options), "written": self.report.written, "failures": self.report.failures}
