"""LLM-as-judge over the store: pairwise (both orders by default), rubric scores, and rankings.

Every AI judgement is named by the hash of its request, so a re-run or a resumed run finds what is
already in the store and asks only for the rest. Pairwise: each order is its own row, with the
responses in the order the judge saw them and `metadata.order_key` tying the two orders together;
disagreement between orders is kept as two rows, never averaged away. A verdict is read from the
first token's logprobs (which also give `confidence`), else from structured output, else from text,
else from one repair request; what is still unreadable is an error row with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prefkit.annotate.ai import verdicts
from prefkit.annotate.ai.batch import BatchOptions
from prefkit.annotate.ai.engine import AIError, Answer, Engine, EngineConfig, RunSummary
from prefkit.annotate.ai.jobs import (
    RowSink,
    Sampling,
    body,
    choose_mode,
    existing,
    in_shard,
    json_schema_format,
    parse_shard,
)
from prefkit.annotate.ai.rows import ai_error, ai_judgement
from prefkit.annotate.ai.runner import Job, Outcome, fill, run_job
from prefkit.annotate.ai.templates import Template, chat, load, render_conversation
from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import content_hash, request_id
from prefkit.annotate.store import Store

PAIRS = ("all", "judged")
METHODS = ("pairwise", "rubric", "ranking", "listwise")
_VERDICT_SCHEMA = json_schema_format(
    "verdict", {"reason": {"type": "string"}, "verdict": {"type": "string", "enum": ["A", "B", "tie"]}}
)
_RANKING_SCHEMA = json_schema_format(
    "ranking", {"reason": {"type": "string"}, "ranking": {"type": "array", "items": {"type": "integer"}}}
)
_SCORE_SCHEMA = json_schema_format("score", {"reason": {"type": "string"}, "score": {"type": "number"}})


@dataclass
class JudgeOptions:
    """What to judge and how. Equal to the flags of `prefkit judge`."""

    method: str = "pairwise"  # pairwise | rubric | ranking (pairwise + Bradley–Terry) | listwise
    template: str = "pairwise"  # judge template (pairwise) or rubric file (rubric)
    pairs: str = "all"  # all pairs of responses per prompt, or only pairs people have judged
    both_orders: bool = True  # show each pair in both orders (two rows)
    samples: int = 1  # k samples per request (rubric: averaged into one row; listwise: k shuffled orders)
    mode: str = "auto"  # auto | logprobs | json | text
    sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=256))
    shard: str | None = None  # "K/N": this machine's share of the job
    limit: int | None = None  # judge at most this many comparisons / responses
    dry_run: bool = False  # count what would be sent, send nothing
    write_every: int = 256  # rows per store part (smaller: less to rebuild from the cache after a kill)
    batch: BatchOptions | None = None  # through the provider's Batch API (batch.py)


@dataclass
class JudgeReport:
    summary: RunSummary
    mode: str
    planned: int  # requests the job consists of (this shard)
    skipped: int  # already in the store
    written: int  # judgement rows written
    errors: int  # of which error rows (counted whenever a request fails, also again on a re-run)
    rankings: int = 0
    failed_samples: int = 0  # rubric: samples left out of a written row's mean (metadata.failed_samples)
    log: str | None = None


@dataclass
class Task:
    prompt_id: str
    body: dict[str, Any]
    shown: list[str]  # response ids in the order the judge sees them
    metadata: dict[str, Any]
    aspect: str = "overall"
    bodies: list[dict[str, Any]] = field(default_factory=list)  # rubric: one per sample

    @property
    def key(self) -> str:
        return self.metadata["request_id"]


# -- building requests ----------------------------------------------------------------------------


def _prompts_and_responses(store: Store) -> tuple[dict[str, list[dict]], dict[str, list[tuple[str, str]]]]:
    con = store.connect()
    try:
        prompts = {pid: list(msgs) for pid, msgs in con.execute("SELECT prompt_id, messages FROM prompts").fetchall()}
        rows = con.execute(
            "SELECT prompt_id, response_id, content FROM responses ORDER BY prompt_id, created_at, response_id"
        ).fetchall()
    finally:
        con.close()
    responses: dict[str, list[tuple[str, str]]] = {}
    for pid, rid, text in rows:
        responses.setdefault(pid, []).append((rid, text))
    return prompts, responses


def _pairs(store: Store, which: str, responses: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str, str]]:
    """(prompt_id, lo, hi) comparisons, each pair once with its ids sorted."""
    if which == "judged":
        con = store.connect()
        try:
            found = con.execute(
                "SELECT DISTINCT prompt_id, list_sort(response_ids) FROM judgements "
                "WHERE kind = 'pairwise' AND annotator_type <> 'ai' AND len(response_ids) = 2 "
                "AND response_ids[1] <> response_ids[2] ORDER BY 1, 2"
            ).fetchall()
        finally:
            con.close()
        return [(pid, ids[0], ids[1]) for pid, ids in found]
    if which != "all":
        raise AIError(which)
    out = []
    for pid, items in sorted(responses.items()):
        for (a, _), (b, _) in itertools.combinations(items, 2):
            lo, hi = sorted((a, b))
            out.append((pid, lo, hi))
    return out


def pairwise_tasks(
    store: Store, config: EngineConfig, template: Template, options: JudgeOptions, mode: str
) -> list[Task]:
    prompts, responses = _prompts_and_responses(store)
    text = {rid: t for items in responses.values() for rid, t in items}
    shard = parse_shard(options.shard)
    tasks = []
    comparisons = _pairs(store, options.pairs, responses)
    if options.limit is not None:
        comparisons = comparisons[: options.limit]
    for pid, lo, hi in comparisons:
        if pid not in prompts or lo not in text or hi not in text:
            continue
        question = render_conversation(prompts[pid])
        for sample in range(options.samples):
            order_key = content_hash(["pairwise", pid, lo, hi, template.guidelines, config.model, sample])
            if not in_shard(order_key, shard):
                continue
            orders = [("ab", lo, hi), ("ba", hi, lo)] if options.both_orders else [("ab", lo, hi)]
            for order, first, second in orders:
                values = {"question": question, "response_a": text[first], "response_b": text[second]}
                messages, extra = chat(template, mode, _VERDICT_SCHEMA, values, logprobs=True)
                b = body(config.model, messages, options.sampling, sample, **extra)
                meta = {
                    "order_key": order_key,
                    "order": order,
                    "sample": sample,
                    "mode": mode,
                    "request_id": request_id(b),
                }
                tasks.append(Task(pid, b, [first, second], meta))
    return tasks


def rubric_tasks(
    store: Store, config: EngineConfig, rubric: Template, template: Template, options: JudgeOptions, mode: str
) -> list[Task]:
    prompts, responses = _prompts_and_responses(store)
    shard = parse_shard(options.shard)
    low, high = rubric.data.get("low", 1), rubric.data.get("high", 5)
    items = [(pid, rid, t) for pid, rs in sorted(responses.items()) for rid, t in rs if pid in prompts]
    if options.limit is not None:
        items = items[: options.limit]
    tasks = []
    for pid, rid, text in items:
        for aspect, spec in (rubric.data.get("aspects") or {}).items():
            values = {
                "question": render_conversation(prompts[pid]),
                "response": text,
                "aspect": aspect,
                "criteria": str(spec.get("criteria", "")).strip(),
                "low": str(low),
                "high": str(high),
            }
            messages, extra = chat(template, mode, _SCORE_SCHEMA, values, values)
            bodies = [body(config.model, messages, options.sampling, s, **extra) for s in range(options.samples)]
            keys = [request_id(b) for b in bodies]
            key = keys[0] if len(keys) == 1 else content_hash(["samples", keys])
            if not in_shard(key, shard):
                continue
            meta = {
                "request_id": key,
                "sample_ids": keys,
                "mode": mode,
                "low": low,
                "high": high,
                "rubric": rubric.guidelines,
            }
            tasks.append(Task(pid, bodies[0], [rid], meta, aspect=aspect, bodies=bodies))
    return tasks


def listwise_tasks(
    store: Store, config: EngineConfig, template: Template, options: JudgeOptions, mode: str
) -> list[Task]:
    """One request per prompt and shown order (`samples` orders: rotations of seeded shuffles)."""
    import random

    prompts, responses = _prompts_and_responses(store)
    shard = parse_shard(options.shard)
    items = [(pid, rs) for pid, rs in sorted(responses.items()) if pid in prompts and len(rs) >= 2]
    if options.limit is not None:
        items = items[: options.limit]
    tasks = []
    for pid, rs in items:
        order_key = content_hash(["listwise", pid, sorted(r for r, _ in rs), template.guidelines, config.model])
        if not in_shard(order_key, shard):
            continue
        for sample in range(options.samples):
            # Rotations of one seeded shuffle: over n samples every response is shown once in every
            # position, so position bias cancels out instead of favouring whoever was drawn first.
            base = list(rs)
            random.Random(content_hash([order_key, sample // len(rs)])).shuffle(base)
            shift = sample % len(rs)
            shown = base[shift:] + base[:shift]
            listing = "\n\n".join(f"[Response {i + 1}]\n{text}" for i, (_, text) in enumerate(shown))
            values = {"question": render_conversation(prompts[pid]), "responses": listing, "n": str(len(shown))}
            messages, extra = chat(template, mode, _RANKING_SCHEMA, values, values)
            b = body(config.model, messages, options.sampling, sample, **extra)
            meta = {
                "order_key": order_key,
                "sample": sample,
                "mode": mode,
                "request_id": request_id(b),
                "n": len(shown),
            }
            tasks.append(Task(pid, b, [r for r, _ in shown], meta))
    return tasks


# -- reading answers ------------------------------------------------------------------------------


def read_pairwise(answer: Answer, mode: str) -> tuple[str, float | None, str] | None:
    """(verdict, confidence, reason) from a pairwise answer, or None."""
    if mode == "logprobs":
        from_lp = verdicts.verdict_from_logprobs(answer.logprobs)
        text = verdicts.verdict_from_text(answer.content or "")
        if from_lp:
            return from_lp[0], from_lp[1], text[1] if text else (answer.content or "").strip()
    parsed = (
        verdicts.verdict_from_json(answer.content or "") if mode == "json" else None
    ) or verdicts.verdict_from_text(answer.content or "")
    return (parsed[0], None, parsed[1]) if parsed else None


def _repair(task_body: dict[str, Any], bad: str, instruction: str) -> dict[str, Any]:
    messages = task_body["messages"] + [{"role": "assistant", "content": bad}, {"role": "user", "content": instruction}]
    repaired = {k: v for k, v in task_body.items() if k not in ("response_format",)}
    return {**repaired, "messages": messages}


def _metadata(task: Task, extra: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in task.metadata.items() if k != "request_id"}
    return {**metadata, **extra}


def _row(task: Task, annotator: str, guidelines: str, kind: str, metadata: dict, **values: Any) -> Judgement:
    meta = _metadata(task, metadata)
    return ai_judgement(
        task.key, task.prompt_id, kind, annotator, task.shown, guidelines, meta, aspect=task.aspect, **values
    )


def error_row(task: Task, annotator: str, guidelines: str, kind: str, reason: str, answer: Answer | None) -> Judgement:
    """A failure, recorded: no scores, the reason, and whatever the model did say."""
    meta = _metadata(task, {"fingerprint": answer.fingerprint if answer else None})
    raw = answer.content if answer else None
    return ai_error(
        task.key, reason, task.prompt_id, kind, annotator, task.shown, guidelines, raw, meta, aspect=task.aspect
    )


async def judge_pair(engine: Engine, task: Task, template: Template, annotator: str) -> Judgement:
    mode = task.metadata["mode"]
    answer = await engine.complete(task.body)
    if not answer.ok:
        return error_row(task, annotator, template.guidelines, "pairwise", answer.error, answer)
    parsed, repaired = read_pairwise(answer, mode), None
    if parsed is None:
        repaired = await engine.complete(_repair(task.body, answer.content, template.text("repair")))
        parsed = read_pairwise(repaired, mode) if repaired.ok else None
        if parsed is None:
            reason = f"unreadable verdict, also after one repair request: {answer.content[:200]!r}"
            return error_row(task, annotator, template.guidelines, "pairwise", reason, answer)
    verdict, confidence, reason = parsed
    return _row(
        task,
        annotator,
        template.guidelines,
        "pairwise",
        scores=verdicts.SCORES[verdict],
        confidence=confidence,
        rationale=reason,
        duration_ms=answer.latency_ms,
        raw=answer.content,
        metadata={
            "fingerprint": answer.fingerprint,
            "cached": answer.cached,
            "verdict": verdict,
            "repaired": repaired is not None,
            "repair_raw": repaired.content if repaired else None,
        },
    )


async def judge_listwise(engine: Engine, task: Task, template: Template, annotator: str) -> Judgement:
    n = task.metadata["n"]
    answer = await engine.complete(task.body)
    if not answer.ok:
        return error_row(task, annotator, template.guidelines, "ranking", answer.error, answer)
    parsed = verdicts.ranking_from_text(answer.content, n)
    if parsed is None:
        fix = await engine.complete(_repair(task.body, answer.content, template.text("repair", n=str(n))))
        parsed = verdicts.ranking_from_text(fix.content or "", n) if fix.ok else None
        if parsed is None:
            reason = f"unreadable ranking, also after one repair request: {answer.content[:200]!r}"
            return error_row(task, annotator, template.guidelines, "ranking", reason, answer)
    order, reason = parsed
    scores = [0.0] * n
    for rank, index in enumerate(order):
        scores[index] = -float(rank + 1)  # DESIGN §2: ranking scores are negative ranks, in shown order
    return _row(
        task,
        annotator,
        template.guidelines,
        "ranking",
        scores=scores,
        rationale=reason,
        duration_ms=answer.latency_ms,
        raw=answer.content,
        metadata={"fingerprint": answer.fingerprint, "cached": answer.cached},
    )


async def judge_rubric(engine: Engine, task: Task, template: Template, annotator: str) -> Judgement:
    """One `rating` row: the mean over the k samples that gave a readable score.

    A sample that got no answer at all (transport failure, refused request) leaves the row unfinished:
    an error row, so the next run asks again (the other samples replay from the cache). A sample that
    was answered but unreadable, also after its repair request, would only be replayed the same way:
    the row averages the others and lists the failures in `metadata.failed_samples`, and the job's
    report counts them. `raw`, `rationale` and `duration_ms` come from the first sample that scored.
    """
    low, high = task.metadata["low"], task.metadata["high"]
    answers = await asyncio.gather(*(engine.complete(b) for b in task.bodies))
    scores, reasons, problems, scored = [], [], [], []
    for answer, b in zip(answers, task.bodies, strict=True):
        parsed = verdicts.score_from_text(answer.content or "", low, high) if answer.ok else None
        if answer.ok and parsed is None:
            fix = await engine.complete(
                _repair(b, answer.content, template.text("repair", low=str(low), high=str(high)))
            )
            parsed = verdicts.score_from_text(fix.content or "", low, high) if fix.ok else None
        if parsed is None:
            problems.append(
                answer.error or f"unreadable score, also after one repair request: {(answer.content or '')[:200]!r}"
            )
        else:
            scores.append(parsed[0])
            reasons.append(parsed[1])
            scored.append(answer)
    unanswered = sum(1 for a in answers if a.text is None)
    if not scores or unanswered:
        reason = "; ".join(problems)
        if scores:
            reason = f"{unanswered} of {len(answers)} samples got no answer (asked again on the next run): {reason}"
        return error_row(task, annotator, template.guidelines, "rating", reason, (scored or answers)[0])
    first = scored[0]
    return _row(
        task,
        annotator,
        f"{template.guidelines}+{task.metadata['rubric']}",
        "rating",
        scores=[sum(scores) / len(scores)],
        rationale=reasons[0],
        duration_ms=first.latency_ms,
        raw=first.content,
        metadata={"fingerprint": first.fingerprint, "sample_scores": scores, "failed_samples": problems},
    )


# -- the job ----------------------------------------------------------------------------------------


def judge(store: Store, config: EngineConfig, options: JudgeOptions, *, client: Any = None) -> JudgeReport:
    """Run a judge job over the store; see the module docstring. Returns what it did."""
    if options.method not in METHODS:
        raise AIError(f"unknown method {options.method!r}")
    if options.pairs not in PAIRS:
        raise AIError(f"--pairs {options.pairs!r}: choose one of {PAIRS}")
    # Templates first: a typo in a file name fails before any request is sent.
    if options.method == "rubric":
        rubric = load(options.template if options.template != "pairwise" else "ultrafeedback", "rubrics")
        template, build, run_one = load("rubric", "judge"), _rubric_builder(rubric), judge_rubric
        annotator = f"ai:{config.model}:{rubric.name}"
    elif options.method == "listwise":
        template = load(options.template if options.template != "pairwise" else "listwise", "judge")
        build, run_one = listwise_tasks, judge_listwise
        annotator = f"ai:{config.model}:{template.name}"
    else:
        template, build, run_one = load(options.template, "judge"), pairwise_tasks, judge_pair
        annotator = f"ai:{config.model}:{template.name}"
    job = _Judge(store, config, options, template, build, run_one, annotator)
    outcome = run_job(
        store, config, job, shard=options.shard, client=client, dry_run=options.dry_run, batch=options.batch
    )
    return fill(job.report, outcome)


def _rubric_builder(rubric: Template):
    def build(store, config, template, options, mode):
        return rubric_tasks(store, config, rubric, template, options, mode)

    return build


class _Judge(Job):
    command = "judge"
    plan_in_session = True  # the mode (from the server's capabilities) shapes every request

    def __init__(self, store: Store, config: EngineConfig, options: JudgeOptions, template, build, run_one, annotator):
        self.store, self.config, self.options = store, config, options
        self.template, self.build, self.run_one, self.annotator = template, build, run_one, annotator
        self.write_every = options.write_every
        self.report = JudgeReport(summary=RunSummary(), mode="", planned=0, skipped=0, written=0, errors=0)
        self.judged: set[str] = set()

    async def plan(self, engine: Engine, cache) -> list[Task]:
        self.report.mode = await choose_mode(engine, cache, self.options.mode)
        return self.build(self.store, self.config, self.template, self.options, self.report.mode)

    def done(self) -> set[str]:
        sql = "SELECT judgement_id FROM judgements WHERE annotator = ?"
        self.judged = existing(self.store, sql, [self.annotator])
        return self.judged

    def key(self, task: Task) -> str:
        return task.key

    def requests(self, task: Task) -> list[dict[str, Any]]:
        return task.bodies or [task.body]

    async def process(self, engine: Engine, task: Task) -> Judgement:
        return await self.run_one(engine, task, self.template, self.annotator)

    def on_result(self, task: Task, row: Judgement, sink: RowSink) -> None:
        report = self.report
        if row.status == "error":
            report.errors += 1  # a failure counts each time: a re-run that fails again says so
            if row.judgement_id in self.judged:
                return  # the same failure, replayed from the cache, is already recorded
        elif row.kind == "rating":
            report.failed_samples += len(json.loads(row.metadata).get("failed_samples") or [])
        self.judged.add(row.judgement_id)
        sink.add("judgements", [row])
        report.written += 1

    def finish(self, store: Store, tasks: list[Task]) -> None:
        if self.options.method == "ranking":
            from prefkit.annotate.ai.ranking import write_rankings

            unfinished = {t.prompt_id for t in tasks if t.key not in self.judged}  # a success row's id is its key
            self.report.rankings = write_rankings(store, self.annotator, self.template.guidelines, unfinished)

    def log(self, outcome: Outcome) -> dict[str, Any]:
        report = self.report
        return {
            "options": asdict(self.options),
            "mode": report.mode,
            "written": report.written,
            "errors": report.errors,
            "failed_samples": report.failed_samples,
            "skipped": outcome.skipped,
        }
