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

from prefkit.annotate.ai.engine import Engine, EngineConfig, RunSummary
from prefkit.annotate.ai.jobs import RowSink, Sampling, body, existing, in_shard, open_cache, parse_shard, write_run_log
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


@dataclass
class GenerateReport:
    summary: RunSummary
    planned: int
    skipped: int
    written: int
    failures: list[dict[str, str]]
    log: str | None = None


def generate(store: Store, config: EngineConfig, options: GenerateOptions, *, client: Any = None) -> GenerateReport:
    shard = parse_shard(options.shard)
    con = store.connect()
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
            b = body(config.model, convo, options.sampling, k)
            key = request_id(b)
            if in_shard(key, shard):
                tasks.append((pid, k, b, key))
    done = existing(
        store, "SELECT json_extract_string(generation, '$.request_id') FROM responses WHERE origin = 'generated'"
    )
    todo = [t for t in tasks if t[3] not in done]
    report = GenerateReport(RunSummary(), planned=len(tasks), skipped=len(tasks) - len(todo), written=0, failures=[])
    cache = open_cache(store, shard)
    if options.dry_run:
        missing = [t for t in todo if cache.get(t[3], 0) is None]
        prompt_tokens = sum(len(json.dumps(t[2]["messages"])) // 4 for t in missing)  # about 4 characters a token
        report.summary.requests = len(missing)
        report.summary.cost = Engine(config).price(
            {"prompt_tokens": prompt_tokens, "completion_tokens": len(missing) * options.sampling.max_tokens}
        )
        cache.close()
        return report
    sink = RowSink(store)

    async def process(engine: Engine, task: tuple) -> Any:
        return await engine.complete(task[2])

    def on_result(task: tuple, answer: Any) -> None:
        pid, k, b, key = task
        if not answer.ok:
            report.failures.append({"prompt_id": pid, "sample": str(k), "error": answer.error})
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
        sink.add(
            "responses",
            [
                Response(
                    prompt_id=pid,
                    content=answer.content,
                    model=config.model,
                    origin="generated",
                    generation=json.dumps(generation, sort_keys=True),
                )
            ],
        )
        report.written += 1

    try:
        report.summary = Engine(config, cache, client=client).run(todo, process, on_result, total=len(todo))
    finally:
        sink.flush()
        cache.close()
    report.log = str(
        write_run_log(
            store,
            "generate",
            config,
            report.summary,
            {"options": asdict(options), "written": report.written, "failures": report.failures},
        )
    )
    return report
