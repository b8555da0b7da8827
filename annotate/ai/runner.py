"""The one AI job runner: plan → skip what is done → price a dry run → run → write rows → run log.

generate, judge, critique and revise (CLAIR) each describe only what differs — their requests, what
counts as done, and how an answer becomes rows — as a `Job`; `run_job` does the rest the same way for
all of them: one cache per shard, one engine, one dry-run estimate, rows written in parts as answers
arrive (flushed even when the run fails), and the run log last.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from prefkit.annotate.ai.batch import BatchEngine, BatchOptions, request_line, split_files
from prefkit.annotate.ai.cache import Cache
from prefkit.annotate.ai.engine import Engine, EngineConfig, RunSummary
from prefkit.annotate.ai.jobs import RowSink, open_cache, parse_shard, write_run_log
from prefkit.annotate.ids import request_id
from prefkit.annotate.store import Store

CHARS_PER_TOKEN = 4  # the dry run's rough prompt size: about four characters a token


class Job:
    """One kind of AI job. Subclasses set `command` and implement `plan`, `done`, `key`, `process`
    and `on_result`; the rest has defaults."""

    command: str = ""
    plan_in_session = False  # plan needs the server (e.g. to detect its capabilities first)
    write_every = 256  # rows per store part

    async def plan(self, engine: Engine, cache: Cache) -> list[Any]:
        """Every task this shard consists of."""
        raise NotImplementedError

    def done(self) -> set[str]:
        """Keys of the tasks already in the store."""
        raise NotImplementedError

    def key(self, task: Any) -> str:
        raise NotImplementedError

    def requests(self, task: Any) -> list[dict[str, Any]]:
        """The request bodies a task sends (for the dry run's count and price)."""
        raise NotImplementedError

    async def start(self, engine: Engine, cache: Cache) -> None:
        """Called once before the first task is sent, only when there is one."""

    async def process(self, engine: Engine, task: Any) -> Any:
        raise NotImplementedError

    def on_result(self, task: Any, result: Any, sink: RowSink) -> None:
        """A task's result becomes rows in `sink`."""
        raise NotImplementedError

    def finish(self, store: Store, tasks: list[Any]) -> None:
        """After every row is written (e.g. rankings from the pairwise rows)."""

    def log(self, outcome: Outcome) -> dict[str, Any]:
        """What the run log records beside the config and summary."""
        return {}


@dataclass
class Outcome:
    summary: RunSummary
    planned: int  # tasks this shard consists of
    skipped: int  # already in the store
    log: str | None = None  # the run log's path; None for a dry run


def fill(report: Any, outcome: Outcome) -> Any:
    """Copy what the runner knows into a job's own report (each has these four fields)."""
    report.summary, report.planned, report.skipped, report.log = (
        outcome.summary,
        outcome.planned,
        outcome.skipped,
        outcome.log,
    )
    return report


def run_job(
    store: Store,
    config: EngineConfig,
    job: Job,
    *,
    shard: str | None,
    client: Any = None,
    dry_run: bool = False,
    batch: BatchOptions | None = None,
) -> Outcome:
    """Run `job` over `store`; see the module docstring. With `batch`, the same job through the
    provider's Batch API (`batch.BatchEngine`): the same requests, cache keys and rows."""
    cache = open_cache(store, parse_shard(shard))
    try:
        if batch is None:
            engine = Engine(config, cache, client=client)
        else:
            engine = BatchEngine(config, cache, batch, client=client)
            if not dry_run:  # recorded for `prefkit batches resume`, which a dry run leaves nothing to
                engine.job = engine.book.job(batch.command or job.command, batch.argv)
        return asyncio.run(_run(store, engine, cache, job, dry_run))
    finally:
        cache.close()


async def _run(store: Store, engine: Engine, cache: Cache, job: Job, dry_run: bool) -> Outcome:
    async with AsyncExitStack() as stack:
        if job.plan_in_session:
            await stack.enter_async_context(engine.session())
        tasks = await job.plan(engine, cache)
        done = job.done()
        todo = [t for t in tasks if job.key(t) not in done]
        outcome = Outcome(RunSummary(), planned=len(tasks), skipped=len(tasks) - len(todo))
        if dry_run:
            outcome.summary = estimate(engine, cache, [b for t in todo for b in job.requests(t)])
            return outcome
        sink = RowSink(store, every=job.write_every)
        try:
            async with engine.session():
                if todo:
                    await job.start(engine, cache)
                outcome.summary = await engine.arun(
                    todo, job.process, lambda task, result: job.on_result(task, result, sink), total=len(todo)
                )
        finally:
            sink.flush()
    if isinstance(engine, BatchEngine):
        engine.settle()
        if outcome.summary.stopped == "submitted":
            return outcome  # --no-wait: `prefkit batches resume` finishes the job (and writes its log)
    job.finish(store, tasks)
    outcome.log = str(write_run_log(store, job.command, engine.config, outcome.summary, job.log(outcome)))
    return outcome


def estimate(engine: Engine, cache: Cache, bodies: list[dict[str, Any]]) -> RunSummary:
    """What a run would send: the requests not in the cache, and their price at the configured rates
    — each request's own prompt size (about four characters a token) plus `max_tokens` of answer. In
    batch mode: at batch prices, and `batches` = the input files they would be uploaded in."""
    missing = [b for b in bodies if cache.get(request_id(b), 0) is None]
    summary = RunSummary()
    if isinstance(engine, BatchEngine):  # each request once, less those a batch already holds
        unique = {request_id(b): b for b in missing}
        missing = [b for k, b in unique.items() if not engine.book.held(k, 0)]
        lines = [(request_id(b), 0, request_line(request_id(b), 0, b)) for b in missing]
        summary.batches = len(split_files(lines, engine.options.max_lines, engine.options.max_bytes))
    prompt_tokens = sum(len(json.dumps(b["messages"])) // CHARS_PER_TOKEN for b in missing)
    completion_tokens = sum(int(b.get("max_tokens") or 0) for b in missing)
    summary.requests = len(missing)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    summary.cost = engine.batch_price(usage) if isinstance(engine, BatchEngine) else engine.price(usage)
    return summary
