"""`--batch`: every AI job through a provider's Batch API, at about half the price, with the same rows.

The batch mode is the live mode with one step done another way. `BatchEngine` is an `Engine` whose
`_answer` (the one step that fetches a fresh answer) does not send the request: it queues it and waits.
The runner starts every task of the job at once (`workers`); a task whose answers are all in the cache
finishes at once, the others stop at their first missing answer. When every unfinished task waits
(`drive`), the queued requests — exactly the bodies the live mode would send, so the same request ids,
cache keys and rows — go out as batch input files, and their answers come back into the request cache
under the same keys. Then the waiting tasks go on through the same code a live answer takes (verdict
parsing, both orders, rows). A task that needs another request after its first answer (a judge's repair
request, a second content attempt after an empty answer, critique → revision, CLAIR's verify) queues it
and the job submits a second batch round; so nothing goes live unless `--retry-live` says so.

A request that gets no answer (a line in the batch's error file; a batch that failed validation, expired
or was cancelled) comes back as an answer with `error` set, which the job turns into an error row with
the reason exactly as a live failure; with `retry_live` it is sent live instead. A failure is handed out
until the run that got it finishes ("reported" after its rows are written); the next run asks again, as
after a live failure.

Exactly once, across kills (`Book`, tables in the store's cache SQLite file):
1. the requests of each input file are recorded (`batch_requests`: key, attempt, the JSONL line) with
   their file (`batch_files`, state `planned`) in one transaction, before anything is uploaded: from
   then on they *have a batch*, and no later run puts them into another file;
2. the upload's file id is recorded (`uploaded`); a kill during the upload leaves a `planned` file that
   the next run uploads again from the recorded lines (an orphan upload costs nothing: it is no batch);
3. the batch is created with `metadata.prefkit_file` = the file's record id; a kill between the create
   and recording its id is found again on the next run by listing the provider's batches (newest first,
   back to the record's time) for that metadata or that input file id — so never a second batch;
4. the batch id is recorded before the run waits; `--no-wait` stops here;
5. the finished batch's output lines go into the request cache (attempt = the custom id's suffix, cost at
   batch prices), its failures into `batch_requests`, and the file is `collected`, in one transaction;
   rows are then written by the job as usual (in parts; a re-run skips what is in the store).

The provider's side is one adapter (`OpenAIBatches`: `/v1/files` + `/v1/batches`, which OpenAI and the
OpenAI-compatible gateways offer); another provider's batch API is another class with its six methods.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefkit.annotate.ai.cache import Cache
from prefkit.annotate.ai.engine import (
    AIError,
    Answer,
    BudgetReached,
    Engine,
    EngineConfig,
    read_answer,
    server_message,
)
from prefkit.annotate.ids import content_hash

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
META = "prefkit_file"  # the metadata key a batch is created with: its input file's record id
DOWNLOAD_BYTES = 4 * 2**30  # batch files are large by design; the cap only stops a body without end
QUIET_TURNS = 4  # event-loop turns without progress before a round is submitted (BatchEngine.drive)
_SEP = "."  # custom_id = "<request key>.<attempt>"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    job TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    argv TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_files (
    record TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    file_id TEXT,
    batch_id TEXT,
    status TEXT NOT NULL,
    counts TEXT,
    detail TEXT,
    created_at REAL NOT NULL,
    collected_at REAL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    record TEXT NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    line TEXT NOT NULL,
    failure TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (record, key, attempt)
);
CREATE INDEX IF NOT EXISTS batch_requests_key ON batch_requests (key, attempt);
"""


@dataclass
class BatchOptions:
    """Equal to the batch flags of every AI command."""

    wait: bool = True  # False (--no-wait): return once the batches are created
    retry_live: bool = False  # requests a batch did not answer are sent live
    max_lines: int = 50_000  # requests per input file (OpenAI's limit)
    max_bytes: int = 200 * 2**20  # bytes per input file (OpenAI's limit)
    poll: float = 5.0  # first wait between status checks, seconds; grows by half each time up to max_poll
    max_poll: float = 60.0
    window: str = "24h"  # completion window asked for
    command: str = ""  # the command and its arguments, so `prefkit batches resume` can run it again
    argv: list[str] = field(default_factory=list)


def custom_id(key: str, attempt: int) -> str:
    return f"{key}{_SEP}{attempt}"


def split_custom_id(text: str) -> tuple[str, int] | None:
    key, _, attempt = str(text).rpartition(_SEP)
    return (key, int(attempt)) if key and attempt.isdigit() else None


def request_line(key: str, attempt: int, body: dict[str, Any]) -> str:
    """One line of a batch input file: the request body exactly as the live mode sends it."""
    record = {"custom_id": custom_id(key, attempt), "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def split_files(lines: list[tuple[str, int, str]], max_lines: int, max_bytes: int) -> list[list[tuple[str, int, str]]]:
    """Input files of at most `max_lines` lines and `max_bytes` bytes each, in the given order."""
    if max_lines < 1 or max_bytes < 1:
        raise AIError("--batch-max-lines and --batch-max-mib must be above 0")
    files: list[list[tuple[str, int, str]]] = []
    size = 0
    for item in lines:
        n = len(item[2].encode("utf-8"))
        if n > max_bytes:
            raise AIError(
                f"request {item[0]} is {n} bytes, more than a batch file may hold ({max_bytes}); "
                "raise --batch-max-mib or run it live (without --batch)"
            )
        if not files or len(files[-1]) >= max_lines or size + n > max_bytes:
            files.append([])
            size = 0
        files[-1].append(item)
        size += n
    return files


# -- the records ----------------------------------------------------------------------------------


class Book:
    """The batch records in a cache file: jobs, input files (with their batch ids), and requests."""

    def __init__(self, cache: Cache):
        self.cache, self.db = cache, cache.db
        self.db.executescript(_SCHEMA)

    def transaction(self):
        return _Transaction(self.db)

    def job(self, command: str, argv: list[str]) -> str:
        job = content_hash(["batch-job", command, argv])
        self.db.execute(
            "INSERT INTO batch_jobs VALUES (?, ?, ?, 0, ?) ON CONFLICT (job) DO UPDATE SET finished = 0",
            (job, command, json.dumps(argv), time.time()),
        )
        return job

    def finish(self, job: str) -> None:
        self.db.execute("UPDATE batch_jobs SET finished = 1 WHERE job = ?", (job,))

    def holder(self, key: str, attempt: int) -> tuple[str, float | None, str | None, int] | None:
        """(record, collected_at, failure, reported) of the latest file holding this request."""
        return self.db.execute(
            "SELECT r.record, f.collected_at, r.failure, r.reported FROM batch_requests r "
            "JOIN batch_files f USING (record) WHERE r.key = ? AND r.attempt = ? "
            "ORDER BY f.created_at DESC, f.rowid DESC LIMIT 1",
            (key, attempt),
        ).fetchone()

    def held(self, key: str, attempt: int) -> bool:
        """Whether a batch holds this request: one not collected yet, or a failure not yet reported."""
        found = self.holder(key, attempt)
        return found is not None and (found[1] is None or (found[2] is not None and not found[3]))

    def plan(self, job: str, files: list[list[tuple[str, int, str]]]) -> list[str]:
        """Record input files and their requests (state `planned`), all in one transaction."""
        records = []
        with self.transaction():
            for lines in files:
                record = content_hash(["batch-file", job, [(k, a) for k, a, _ in lines], time.time_ns()])
                size = sum(len(line.encode("utf-8")) for _, _, line in lines)
                self.db.execute(
                    "INSERT INTO batch_files (record, job, requests, bytes, status, created_at) "
                    "VALUES (?, ?, ?, ?, 'planned', ?)",
                    (record, job, len(lines), size, time.time()),
                )
                self.db.executemany(
                    "INSERT INTO batch_requests (record, key, attempt, line) VALUES (?, ?, ?, ?)",
                    [(record, k, a, line) for k, a, line in lines],
                )
                records.append(record)
        return records

    def file(self, record: str) -> dict[str, Any]:
        cur = self.db.execute("SELECT * FROM batch_files WHERE record = ?", (record,))
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))

    def lines(self, record: str) -> bytes:
        rows = self.db.execute("SELECT line FROM batch_requests WHERE record = ? ORDER BY rowid", (record,))
        return "".join(line for (line,) in rows).encode("utf-8")

    def requests(self, record: str) -> list[tuple[str, int]]:
        rows = self.db.execute("SELECT key, attempt FROM batch_requests WHERE record = ? ORDER BY rowid", (record,))
        return [(k, a) for k, a in rows]

    def set(self, record: str, **values: Any) -> None:
        names = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE batch_files SET {names} WHERE record = ?", (*values.values(), record))

    def failure(self, key: str, attempt: int) -> str | None:
        """The reason this request got no answer from its batch, until a finished run has reported it."""
        found = self.holder(key, attempt)
        if found and found[1] is not None and found[2] is not None and not found[3]:
            return found[2]
        return None

    def report(self, requests: Iterable[tuple[str, int]]) -> None:
        with self.transaction():
            self.db.executemany(
                "UPDATE batch_requests SET reported = 1 WHERE key = ? AND attempt = ? AND failure IS NOT NULL",
                list(requests),
            )


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind, *rest):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def records(cache: Cache) -> list[dict[str, Any]]:
    """Every input file recorded in this cache file, newest last, with its job's command and arguments."""
    Book(cache)
    cur = cache.db.execute(
        "SELECT f.*, j.command, j.argv, j.finished FROM batch_files f JOIN batch_jobs j USING (job) "
        "ORDER BY f.created_at, f.rowid"
    )
    names = [d[0] for d in cur.description]
    found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in found:
        row["argv"] = json.loads(row["argv"])
    return found


def open_jobs(cache: Cache) -> list[tuple[str, list[str]]]:
    """(command, argv) of each batch job in this cache file whose run has not finished."""
    Book(cache)
    rows = cache.db.execute("SELECT command, argv FROM batch_jobs WHERE finished = 0 ORDER BY created_at").fetchall()
    return [(command, json.loads(argv)) for command, argv in rows]


# -- the provider ---------------------------------------------------------------------------------


class OpenAIBatches:
    """The Batch API of OpenAI and of OpenAI-compatible servers: input files via `/v1/files`, batches
    via `/v1/batches`, through the official client (with its own retries for these few calls)."""

    def __init__(self, client: Any, where: str, window: str = "24h", scrub: Any = str):
        self.client, self.where, self.window, self.scrub = client, where, window, scrub

    async def _call(self, what: str, call: Any) -> Any:
        import openai

        try:
            return await call
        except openai.NotFoundError as exc:
            if what in ("upload", "create"):
                raise AIError(
                    f"{self.where} has no Batch API (HTTP 404 on {'/v1/files' if what == 'upload' else '/v1/batches'}): "
                    "run without --batch to send the requests live"
                ) from None
            raise AIError(self.scrub(f"batch {what}: HTTP 404: {server_message(exc)}")) from None
        except openai.APIStatusError as exc:
            raise AIError(self.scrub(f"batch {what}: HTTP {exc.status_code}: {server_message(exc)}")) from None
        except openai.APIConnectionError as exc:
            raise AIError(self.scrub(f"batch {what}: cannot reach {self.where}: {exc.__cause__ or exc}")) from None

    async def upload(self, name: str, data: bytes) -> str:
        found = await self._call(
            "upload", self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch")
        )
        return found.id

    async def create(self, file_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        call = self.client.batches.create(
            input_file_id=file_id, endpoint=ENDPOINT, completion_window=self.window, metadata=metadata
        )
        return (await self._call("create", call)).model_dump()

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return (await self._call("status", self.client.batches.retrieve(batch_id))).model_dump()

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return (await self._call("cancel", self.client.batches.cancel(batch_id))).model_dump()

    async def find(self, record: str, file_id: str, since: float) -> dict[str, Any] | None:
        """The batch created for this input file, if one was created (newest first, back to `since`)."""
        page = await self._call("list", self.client.batches.list(limit=100))
        while True:
            for batch in page.data:
                found = batch.model_dump()
                if (found.get("metadata") or {}).get(META) == record or found.get("input_file_id") == file_id:
                    return found
                if found.get("created_at") and found["created_at"] < since - 3600:
                    return None  # older than the record (allowing for clock skew): it was never created
            if not page.has_next_page():
                return None
            page = await self._call("list", page.get_next_page())

    async def content(self, file_id: str) -> bytes:
        found = await self._call("download", self.client.files.content(file_id))
        return found.read()


# -- the engine -----------------------------------------------------------------------------------


class _Waiting:
    """A queued request and the tasks waiting for it."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()


class BatchEngine(Engine):
    """An engine whose fresh answers come from batches; see the module docstring. Until `collecting` is
    set (the job's planning: capability probes), it sends live like any engine."""

    def __init__(self, config: EngineConfig, cache: Cache, options: BatchOptions, client: Any = None, api: Any = None):
        super().__init__(config, cache, client=client)
        self.options = options
        self.book = Book(cache)
        self.api = api
        self._own: Any = None  # the batch client this engine made (closed by `close`)
        self.collecting = False
        self.queue: dict[tuple[str, int], _Waiting] = {}
        self.moves = 0  # waits begun and tasks finished: the event loop's progress, for `drive`
        self.live = 0  # live requests in flight
        self.handed: set[tuple[str, int]] = set()  # failures handed out as errors in this run
        self.changed: asyncio.Event | None = None
        self.job = ""

    def batch_price(self, usage: dict[str, Any]) -> float:
        """A batch answer's price: the live one (`price`) times `batch_discount`."""
        return self.price(usage) * self.config.batch_discount

    def batches(self) -> Any:
        """The provider's batch adapter, on a client of its own: these few calls may be retried by the
        client, and output files are far larger than any answer (`max_answer_mib`). In a session."""
        if self.api is None:
            import openai
            from prefkit.annotate.ai.transport import make_http_client, redact_url

            if self._given is not None:
                client = self._given.with_options(max_retries=self.config.max_retries)
            else:
                client = self._own = openai.AsyncOpenAI(
                    api_key=self._secret,
                    base_url=self.config.base_url,
                    max_retries=self.config.max_retries,
                    timeout=self.config.timeout,
                    http_client=make_http_client(DOWNLOAD_BYTES, lean=False),
                )
            where = redact_url(self.config.base_url or "https://api.openai.com/v1")
            self.api = OpenAIBatches(client, where, self.options.window, self._said)
        return self.api

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own, self.api = None, None

    # -- one request -----------------------------------------------------------------------------

    async def _answer(self, body: dict[str, Any], key: str, attempt: int, answer: Answer) -> bool:
        if not self.collecting:
            return await self._live(body, key, attempt, answer)
        waited = False
        while True:
            hit = self.cache.get(key, attempt)
            if hit:
                read_answer(answer, hit[0])
                answer.latency_ms = hit[1] if hit[1] >= 0 else None
                return True
            reason = self.book.failure(key, attempt)
            if reason is not None:
                if self.options.retry_live:
                    return await self._live(body, key, attempt, answer)
                self.handed.add((key, attempt))
                answer.error = reason
                return False
            if waited:
                raise BudgetReached()  # not submitted: it would have gone over --max-cost
            await self._wait(key, attempt, body)
            waited = True

    async def _live(self, body: dict[str, Any], key: str, attempt: int, answer: Answer) -> bool:
        """Sent live at live prices (planning probes, --retry-live)."""
        self.live += 1
        try:
            return await super()._answer(body, key, attempt, answer)
        finally:
            self.live -= 1
            self._moved()

    async def _wait(self, key: str, attempt: int, body: dict[str, Any]) -> None:
        waiting = self.queue.get((key, attempt))
        if waiting is None:
            waiting = self.queue[(key, attempt)] = _Waiting(body)
        self._moved()
        await asyncio.shield(waiting.future)

    # -- the whole job ---------------------------------------------------------------------------

    def workers(self, total: int | None) -> int:
        return max(1, total or 1)  # every task at once: each stops at its first missing answer

    async def drive(self, tasks: list[asyncio.Future]) -> None:
        """Run rounds until every task is done: a round starts once no task can go on without a batch
        answer — nothing but the waits has happened for a few turns of the event loop and nothing is in
        flight live (a judge's gathered samples wait in tasks of their own, so counting tasks would not do)."""
        self.changed = asyncio.Event()
        self.collecting = True
        for task in tasks:
            task.add_done_callback(self._moved)
        try:
            while True:
                self.changed.clear()
                failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
                if failed:
                    failed[0].result()  # a job-level failure (a refused key): stop everyone
                if all(t.done() for t in tasks):
                    return
                if not self.queue or self.live:
                    await self.changed.wait()
                    continue
                mark = self.moves
                for _ in range(QUIET_TURNS):
                    await asyncio.sleep(0)
                if mark == self.moves and not self.live and not await self.round():
                    return
        finally:
            self.collecting = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    def _moved(self, *_: Any) -> None:
        self.moves += 1
        if self.changed is not None:
            self.changed.set()

    async def round(self) -> bool:
        """Submit what the tasks wait for, wait for the batches, collect; False when the run stops here."""
        queue, self.queue = self.queue, {}
        files = self._holders(queue)
        new = [(k, a, w) for (k, a), w in queue.items() if (k, a) not in files]
        allowed = self._within_budget(new)
        if len(allowed) < len(new):
            self.summary.stopped = "budget"
            for *_, w in new[len(allowed) :]:
                w.future.set_result(None)  # the task finds no answer and stops (BudgetReached)
        lines = [(k, a, request_line(k, a, w.body)) for k, a, w in allowed]
        for record in self.book.plan(self.job, split_files(lines, self.options.max_lines, self.options.max_bytes)):
            for key_attempt in self.book.requests(record):
                files[key_attempt] = record
        self.summary.batched += len(allowed)
        records = sorted(set(files.values()), key=lambda r: self.book.file(r)["created_at"])
        for record in records:
            await self._submit(record)
        if not self.options.wait:
            self.summary.stopped = "submitted"
            return False
        await self._wait_for(records)
        for record in records:
            await self._collect(record)
        for waiting in queue.values():
            if not waiting.future.done():
                waiting.future.set_result(None)
        return True

    def _holders(self, queue: dict[tuple[str, int], _Waiting]) -> dict[tuple[str, int], str]:
        """Requests that already have a batch (recorded by this or an earlier run) → its file's record."""
        return {ka: self.book.holder(*ka)[0] for ka in queue if self.book.held(*ka)}

    def _within_budget(self, new: list[tuple[str, int, _Waiting]]) -> list[tuple[str, int, _Waiting]]:
        """The requests whose estimated batch price (prompt at four characters a token, plus max_tokens
        of answer) still fits under --max-cost, in order."""
        if self.config.max_cost is None:
            return new
        from prefkit.annotate.ai.runner import CHARS_PER_TOKEN

        spent, out = self.summary.cost, []
        for item in new:
            b = item[2].body
            usage = {
                "prompt_tokens": len(json.dumps(b["messages"])) // CHARS_PER_TOKEN,
                "completion_tokens": int(b.get("max_tokens") or 0),
            }
            spent += self.batch_price(usage)
            if spent > self.config.max_cost:
                break
            out.append(item)
        return out

    async def _submit(self, record: str) -> None:
        """planned → uploaded → a batch, each step recorded before the next (module docstring)."""
        row = self.book.file(record)
        if row["status"] == "planned":
            file_id = await self.batches().upload(f"prefkit-{record}.jsonl", self.book.lines(record))
            self.book.set(record, file_id=file_id, status="uploaded")
            row = self.book.file(record)
        if row["status"] == "uploaded":
            batch = None
            if row["file_id"] and row.get("detail") == "creating":
                batch = await self.batches().find(record, row["file_id"], row["created_at"])
            if batch is None:
                self.book.set(record, detail="creating")  # a kill from here on: look before creating again
                batch = await self.batches().create(row["file_id"], {META: record})
                self.summary.batches += 1
            self.book.set(record, batch_id=batch["id"], status=batch["status"], detail=None)

    async def _wait_for(self, records: list[str]) -> None:
        """Poll until every batch is done, with a bar over the requests they hold and a growing wait."""
        from tqdm import tqdm

        pending = [r for r in records if self.book.file(r)["collected_at"] is None]
        total = sum(self.book.file(r)["requests"] for r in pending)
        bar = tqdm(
            total=total,
            unit="request",
            desc="batches",
            file=sys.stderr,
            disable=not self.config.progress,
            dynamic_ncols=True,
        )
        interval, shown = self.options.poll, 0
        try:
            while pending:
                progress = total
                for record in list(pending):
                    row = self.book.file(record)
                    batch = await self.batches().retrieve(row["batch_id"])
                    counts = batch.get("request_counts") or {}
                    self.book.set(record, status=batch["status"], counts=json.dumps(counts))
                    if batch["status"] in TERMINAL:
                        pending.remove(record)
                    else:
                        progress -= row["requests"] - int(counts.get("completed") or 0) - int(counts.get("failed") or 0)
                bar.update(max(0, progress - shown))
                shown = max(shown, progress)
                if pending:
                    await asyncio.sleep(interval)
                    interval = min(self.options.max_poll, interval * 1.5)
        finally:
            bar.close()

    async def _collect(self, record: str) -> None:
        """A finished batch's answers into the cache, its failures into the records, in one transaction."""
        row = self.book.file(record)
        if row["collected_at"] is not None:
            return
        batch = await self.batches().retrieve(row["batch_id"])
        wanted = set(self.book.requests(record))
        answers: dict[tuple[str, int], str] = {}
        failures: dict[tuple[str, int], str] = {}
        for file_id, errors in ((batch.get("output_file_id"), False), (batch.get("error_file_id"), True)):
            if not file_id:
                continue
            for raw in (await self.batches().content(file_id)).decode("utf-8", "replace").splitlines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    key_attempt = split_custom_id(line.get("custom_id"))
                except (ValueError, AttributeError):
                    continue
                if key_attempt not in wanted:
                    continue
                text, reason = _result(line, errors)
                if text is not None:
                    answers[key_attempt] = text
                else:
                    failures[key_attempt] = self._said(reason)
        missing = self._said(_missing(batch, self.options.window))
        for key_attempt in wanted:
            if key_attempt not in answers and key_attempt not in failures:
                failures[key_attempt] = missing
        with self.book.transaction():
            for (key, attempt), text in answers.items():
                usage = (json.loads(text).get("usage")) or {}
                cost = self.batch_price(usage)
                self.cache.put(key, attempt, text, self.config.model, usage, cost, -1)
                self.count(usage, cost)
            self.book.db.executemany(
                "UPDATE batch_requests SET failure = ? WHERE record = ? AND key = ? AND attempt = ?",
                [(reason, record, k, a) for (k, a), reason in failures.items()],
            )
            self.book.set(
                record,
                status=batch["status"],
                counts=json.dumps(batch.get("request_counts") or {}),
                collected_at=time.time(),
            )

    def settle(self) -> None:
        """After the rows are written: the failures handed out are on record (the next run asks again); the
        job is finished unless --no-wait left its batches to `prefkit batches resume`."""
        self.book.report(self.handed)
        if self.job and self.summary.stopped != "submitted":
            self.book.finish(self.job)  # stopped by --max-cost: nothing waits; a re-run with more budget goes on


def _result(line: dict[str, Any], errors: bool) -> tuple[str | None, str]:
    """(answer body text, "") for an answered line, else (None, the reason)."""
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    if status == 200 and isinstance(body, dict) and not errors and not line.get("error"):
        return json.dumps(body, ensure_ascii=False), ""
    error = line.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    where = f"HTTP {status}" if status else "batch error"
    return None, f"{where}{f' {code}' if code else ''}: {message or 'no message'} (in the batch's error file)"


def _missing(batch: dict[str, Any], window: str) -> str:
    """Why a request of this batch has no line in its output or error file."""
    status = batch.get("status")
    if status == "failed":
        errors = ((batch.get("errors") or {}).get("data")) or []
        said = "; ".join(_validation_error(e) for e in errors[:3])
        return f"batch {batch.get('id')} failed validation: {said or 'no reason given'}"
    if status == "expired":
        return f"batch {batch.get('id')} expired before this request ran (completion window {window})"
    if status == "cancelled":
        return f"batch {batch.get('id')} was cancelled before this request ran"
    return f"batch {batch.get('id')} ({status}) returned no line for this request"


def _validation_error(error: dict[str, Any]) -> str:
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{error.get('code') or 'error'}{line}: {error.get('message')}"


# -- the store's batches (`prefkit batches`) --------------------------------------------------------


def cache_files(store: Any) -> list[Cache]:
    """Every cache file of the store (one per shard), opened; close them after use."""
    from prefkit.annotate.ai.jobs import open_cache

    first = open_cache(store, None)
    found = [first]
    for path in sorted(first.path.parent.glob("*.sqlite")):
        if path != first.path:
            found.append(Cache(path.parent, path.stem))
    return found


def cancel(cache: Cache, config: EngineConfig, batch_ids: list[str], client: Any = None) -> list[dict[str, Any]]:
    """Ask the provider to cancel these batches; their records take the status it gives back."""
    return _each(cache, config, batch_ids, "cancel", client)


def refresh(cache: Cache, config: EngineConfig, batch_ids: list[str], client: Any = None) -> list[dict[str, Any]]:
    """The provider's status and counts of these batches, recorded (what `prefkit batches --refresh` shows)."""
    return _each(cache, config, batch_ids, "retrieve", client)


def _each(cache: Cache, config: EngineConfig, batch_ids: list[str], call: str, client: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        engine = BatchEngine(config, cache, BatchOptions(), client=client)
        out = []
        async with engine.session():
            try:
                for batch_id in batch_ids:
                    found = await getattr(engine.batches(), call)(batch_id)
                    engine.book.db.execute(
                        "UPDATE batch_files SET status = ?, counts = ? WHERE batch_id = ? AND collected_at IS NULL",
                        (found["status"], json.dumps(found.get("request_counts") or {}), batch_id),
                    )
                    out.append(found)
            finally:
                await engine.close()
        return out

    return asyncio.run(run())
