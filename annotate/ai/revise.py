"""Revisions by an LLM: the Constitutional-AI critique → revision loop, and CLAIR minimal revisions.

Both write, per accepted revision, a new response (`origin = critique_revision | clair_revision`,
`parent_id` = the response it revises) and a `revision` judgement with `response_ids = [original,
revised]`, `scores = [0, 1]`, `principle` and `rationale` (the critique or the reviser's reasoning); its id
is the hash of the request that produced the revision, so a re-run writes nothing twice. A failed or
rejected revision is a `revision` row with `status = error`, the reason, and no scores; it does not
make its response "done", so the next run tries it again (what had succeeded replays from the cache).

Constitutional AI (Bai et al. 2022): for each round, sample a principle, ask for a critique of the
current response under it, then for a revision in the light of the critique; the next round starts from
the revision. CLAIR (D'Oosterlinck et al. 2024): ask for the smallest edit that makes the response
clearly better, read it from a structured field, measure the edit (edits.py) and reject empty, identical
or not-minimal ones; optionally check with a both-orders judge that the revision really wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prefkit.annotate.ai import verdicts
from prefkit.annotate.ai.batch import BatchOptions
from prefkit.annotate.ai.cache import Cache
from prefkit.annotate.ai.edits import check_revision
from prefkit.annotate.ai.engine import AIError, Engine, EngineConfig, RunSummary
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
from prefkit.annotate.ai.judge import read_pairwise
from prefkit.annotate.ai.rows import ai_error, ai_judgement
from prefkit.annotate.ai.runner import Job, Outcome, fill, run_job
from prefkit.annotate.ai.templates import Template, chat, load, render_conversation
from prefkit.annotate.contract import Judgement, Response
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import Store

_CLAIR_SCHEMA = json_schema_format("revision", {"reasoning": {"type": "string"}, "revision": {"type": "string"}})


@dataclass
class ReviseOptions:
    """Equal to the flags of `prefkit critique` and `prefkit revise --clair`."""

    constitution: str = "constitution"  # critique: bundled name or YAML path
    rounds: int = 1  # critique: 1–4 critique → revision rounds
    template: str = "clair"  # clair: the reviser's template
    min_similarity: float = 0.5  # clair: reject revisions whose word-level similarity is lower
    verify: bool = False  # clair: keep a revision only if a both-orders judge prefers it
    losers: bool = False  # revise only responses that lost a submitted pairwise judgement
    mode: str = "auto"
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=1024))
    shard: str | None = None
    limit: int | None = None
    batch: BatchOptions | None = None  # through the provider's Batch API (batch.py)


@dataclass
class ReviseReport:
    summary: RunSummary
    planned: int
    skipped: int
    revisions: int
    errors: int
    log: str | None = None


@dataclass
class Target:
    prompt_id: str
    messages: list[dict[str, str]]
    response_id: str
    content: str


def _finished(store: Store, annotator: str, rounds: int) -> set[str]:
    """Responses whose revision chain is complete: `rounds` accepted revisions one after the other.

    Error rows do not count: a target whose critique, revision or CLAIR request failed (or whose
    revision was rejected) is tried again on the next run. What had succeeded is replayed from the
    cache without a request, so only the failed requests are sent again.
    """
    con = store.connect()
    try:
        edges = con.execute(
            "SELECT response_ids[1], response_ids[2] FROM judgements "
            "WHERE kind = 'revision' AND annotator = ? AND status <> 'error' AND len(response_ids) = 2",
            [annotator],
        ).fetchall()
    finally:
        con.close()
    children: dict[str, list[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)

    def depth(node: str, left: int) -> int:
        if left == 0:
            return 0
        return max((1 + depth(c, left - 1) for c in children.get(node, [])), default=0)

    return {parent for parent in children if depth(parent, rounds) >= rounds}


def _targets(store: Store, options: ReviseOptions) -> list[Target]:
    con = store.connect()
    try:
        rows = con.execute(
            "SELECT r.prompt_id, p.messages, r.response_id, r.content FROM responses r "
            "JOIN prompts p USING (prompt_id) WHERE r.origin NOT IN ('critique_revision', 'clair_revision')"
            " ORDER BY r.prompt_id, r.response_id"
        ).fetchall()
        losers = (
            {
                r
                for (r,) in con.execute(
                    "SELECT CASE WHEN scores[1] < scores[2] THEN response_ids[1] ELSE response_ids[2] END FROM judgements "
                    "WHERE kind = 'pairwise' AND status = 'submitted' AND len(scores) = 2 AND scores[1] <> scores[2]"
                ).fetchall()
            }
            if options.losers
            else None
        )
    finally:
        con.close()
    shard = parse_shard(options.shard)
    targets = [
        Target(pid, list(msgs), rid, text)
        for pid, msgs, rid, text in rows
        if (losers is None or rid in losers) and in_shard(content_hash(rid), shard)
    ]
    return targets if options.limit is None else targets[: options.limit]


def _revision_rows(
    target: Target,
    parent_id: str,
    revised: str,
    key: str,
    annotator: str,
    guidelines: str,
    model: str,
    origin: str,
    principle: str | None,
    rationale: str,
    raw: str,
    metadata: dict[str, Any],
) -> tuple[Response, Judgement]:
    response = Response(
        prompt_id=target.prompt_id,
        content=revised,
        model=model,
        origin=origin,
        parent_id=parent_id,
        generation=json.dumps({"request_id": key, **metadata}, sort_keys=True),
    )
    judgement = ai_judgement(
        key,
        target.prompt_id,
        "revision",
        annotator,
        [parent_id, response.response_id],
        guidelines,
        metadata,
        scores=[0.0, 1.0],
        principle=principle,
        rationale=rationale,
        raw=raw,
    )
    return response, judgement


def _error(
    target: Target,
    parent_id: str,
    key: str,
    annotator: str,
    guidelines: str,
    reason: str,
    raw: str | None,
    principle: str | None = None,
    metadata: dict | None = None,
) -> Judgement:
    return ai_error(
        key,
        reason,
        target.prompt_id,
        "revision",
        annotator,
        [parent_id],
        guidelines,
        raw,
        metadata,
        principle=principle,
    )


# -- Constitutional AI -------------------------------------------------------------------------------


async def critique_one(
    engine: Engine, target: Target, constitution: Template, annotator: str, options: ReviseOptions
) -> list[Any]:
    principles = constitution.data.get("principles") or []
    model = engine.config.model
    rows: list[Any] = []
    current_id, current = target.response_id, target.content
    for round_ in range(options.rounds):
        # A deterministic "random" principle per (response, round): a re-run asks the same questions.
        principle = principles[
            int(content_hash([target.response_id, round_, options.sampling.seed]), 16) % len(principles)
        ]
        convo = target.messages + [{"role": "assistant", "content": current}]
        ask = convo + [{"role": "user", "content": principle["critique"]}]
        crit = await engine.complete(body(model, ask, options.sampling))
        if not crit.ok:
            rows.append(
                _error(
                    target,
                    current_id,
                    crit.key,
                    annotator,
                    constitution.guidelines,
                    f"critique failed: {crit.error}",
                    crit.content,
                    principle["name"],
                )
            )
            break
        revise = ask + [
            {"role": "assistant", "content": crit.content},
            {"role": "user", "content": principle["revision"]},
        ]
        rev = await engine.complete(body(model, revise, options.sampling))
        revised = (rev.content or "").strip()
        problem = rev.error or ("revision identical to the response" if revised == current.strip() else None)
        if problem:
            rows.append(
                _error(
                    target,
                    current_id,
                    rev.key,
                    annotator,
                    constitution.guidelines,
                    f"revision failed: {problem}",
                    rev.content,
                    principle["name"],
                )
            )
            break
        response, judgement = _revision_rows(
            target,
            current_id,
            revised,
            rev.key,
            annotator,
            constitution.guidelines,
            model,
            "critique_revision",
            principle["name"],
            crit.content.strip(),
            rev.content,
            {"round": round_ + 1, "critique_request_id": crit.key, "fingerprint": rev.fingerprint},
        )
        rows += [response, judgement]
        current_id, current = response.response_id, revised
    return rows


# -- CLAIR -------------------------------------------------------------------------------------------


async def clair_one(
    engine: Engine,
    target: Target,
    template: Template,
    annotator: str,
    options: ReviseOptions,
    mode: str,
    judge_template: Template | None,
) -> list[Any]:
    model = engine.config.model
    values = {"question": render_conversation(target.messages), "response": target.content}
    messages, extra = chat(template, mode, _CLAIR_SCHEMA, values)
    b = body(model, messages, options.sampling, **extra)
    answer = await engine.complete(b)

    def failed(reason: str, **kw: Any) -> list[Any]:
        """This target's attempt as one error row, the model's words kept for audit."""
        return [
            _error(
                target,
                target.response_id,
                answer.key,
                annotator,
                template.guidelines,
                reason,
                answer.content if answer.ok else None,
                **kw,
            )
        ]

    if not answer.ok:
        return failed(answer.error)
    revised = verdicts.tagged(answer.content, "revision")
    if revised is None:
        repair = b["messages"] + [
            {"role": "assistant", "content": answer.content},
            {"role": "user", "content": template.text("repair")},
        ]
        fixed = await engine.complete({**{k: v for k, v in b.items() if k != "response_format"}, "messages": repair})
        revised = verdicts.tagged(fixed.content or "", "revision") if fixed.ok else None
        if revised is None:
            return failed("no revision field in the answer, also after one repair request")
    problem, metrics = check_revision(target.content, revised, options.min_similarity)
    reasoning = verdicts.tagged(answer.content, "reasoning") or answer.content.split("<revision>")[0].strip()
    metadata: dict[str, Any] = {**metrics, "fingerprint": answer.fingerprint, "mode": mode}
    if problem is None and judge_template is not None:
        problem, metadata["verification"] = await _verify(engine, target, revised, judge_template, mode, options)
    if problem:
        return failed(problem, metadata=metadata)
    response, judgement = _revision_rows(
        target,
        target.response_id,
        revised,
        answer.key,
        annotator,
        template.guidelines,
        model,
        "clair_revision",
        None,
        reasoning,
        answer.content,
        metadata,
    )
    return [response, judgement]


async def _verify(
    engine: Engine, target: Target, revised: str, template: Template, mode: str, options: ReviseOptions
) -> tuple[str | None, dict[str, str]]:
    """Both orders through the pairwise judge; the revision must win both."""
    question = render_conversation(target.messages)
    judge_sampling = Sampling(temperature=0.0, max_tokens=256, seed=options.sampling.seed)
    results = {}
    for order, a, b in (("original_first", target.content, revised), ("revision_first", revised, target.content)):
        values = {"question": question, "response_a": a, "response_b": b}
        # Verdicts from logprobs where the server gives them, else from the text (no JSON schema here).
        messages, extra = chat(template, "logprobs" if mode == "logprobs" else "text", {}, values, logprobs=True)
        answer = await engine.complete(body(engine.config.model, messages, judge_sampling, **extra))
        parsed = read_pairwise(answer, "logprobs" if mode == "logprobs" else "text") if answer.ok else None
        results[order] = parsed[0] if parsed else "unreadable"
    wins = results["original_first"] == "second" and results["revision_first"] == "first"
    reason = None if wins else f"revision did not beat the original in both orders ({results})"
    return reason, results


# -- the jobs ----------------------------------------------------------------------------------------


def critique(store: Store, config: EngineConfig, options: ReviseOptions, *, client: Any = None) -> ReviseReport:
    if not 1 <= options.rounds <= 4:
        raise AIError(f"--rounds {options.rounds}: choose 1 to 4")
    constitution = load(options.constitution, "")
    if not constitution.data.get("principles"):
        raise AIError(f"{constitution.path}: no `principles:` list")
    for i, p in enumerate(constitution.data["principles"]):
        if not isinstance(p, dict) or not {"name", "critique", "revision"} <= set(p):
            raise AIError(f"{constitution.path}: principle {i + 1} needs `name`, `critique` and `revision`")
    annotator = f"ai:{config.model}:{constitution.name}"

    async def one(engine: Engine, target: Target) -> list[Any]:
        return await critique_one(engine, target, constitution, annotator, options)

    return _revise(store, config, _Revise("critique", store, options, annotator, one, rounds=options.rounds), client)


def clair(store: Store, config: EngineConfig, options: ReviseOptions, *, client: Any = None) -> ReviseReport:
    template = load(options.template, "judge")
    judge_template = load("pairwise", "judge") if options.verify else None
    annotator = f"ai:{config.model}:{template.name}"
    state: dict[str, str] = {}

    async def prepare(engine: Engine, cache: Cache) -> None:
        state["mode"] = await choose_mode(engine, cache, options.mode)

    async def one(engine: Engine, target: Target) -> list[Any]:
        return await clair_one(engine, target, template, annotator, options, state["mode"], judge_template)

    return _revise(store, config, _Revise("revise", store, options, annotator, one, prepare), client)


def _revise(store: Store, config: EngineConfig, job: _Revise, client: Any) -> ReviseReport:
    return fill(
        job.report, run_job(store, config, job, shard=job.options.shard, client=client, batch=job.options.batch)
    )


class _Revise(Job):
    """Critique or CLAIR: a task is a response to revise; it is done when its revision chain is."""

    def __init__(self, command: str, store: Store, options: ReviseOptions, annotator: str, one, prepare=None, rounds=1):
        self.command, self.store, self.options, self.annotator = command, store, options, annotator
        self.one, self.prepare, self.rounds = one, prepare, rounds
        self.report = ReviseReport(RunSummary(), planned=0, skipped=0, revisions=0, errors=0)
        self.known: set[str] = set()

    async def plan(self, engine: Engine, cache: Cache) -> list[Target]:
        return _targets(self.store, self.options)

    def done(self) -> set[str]:
        sql = "SELECT judgement_id FROM judgements WHERE annotator = ?"
        self.known = existing(self.store, sql, [self.annotator])
        return _finished(self.store, self.annotator, self.rounds)

    def key(self, target: Target) -> str:
        return target.response_id

    def requests(self, target: Target) -> list[dict[str, Any]]:
        raise AIError(f"prefkit {self.command} has no dry run")  # its requests depend on earlier answers

    async def start(self, engine: Engine, cache: Cache) -> None:
        if self.prepare is not None:
            await self.prepare(engine, cache)  # e.g. detect capabilities once, before the first item

    async def process(self, engine: Engine, target: Target) -> list[Any]:
        return await self.one(engine, target)

    def on_result(self, target: Target, rows: list[Any], sink: RowSink) -> None:
        report, known = self.report, self.known
        judgements = [r for r in rows if isinstance(r, Judgement)]
        # A failure counts whenever it happens (a re-run that fails again says so); a row already in
        # the store (a replayed success or the same failure again) is not written twice.
        report.errors += sum(1 for j in judgements if j.status == "error")
        fresh = [j for j in judgements if j.judgement_id not in known]
        report.revisions += sum(1 for j in fresh if j.status != "error")
        old = {j.response_ids[1] for j in judgements if j.status != "error" and j.judgement_id in known}
        known.update(j.judgement_id for j in fresh)
        sink.add("responses", [r for r in rows if isinstance(r, Response) and r.response_id not in old])
        sink.add("judgements", fresh)

    def log(self, outcome: Outcome) -> dict[str, Any]:
        return {"options": asdict(self.options), "revisions": self.report.revisions, "errors": self.report.errors}
