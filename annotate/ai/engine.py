"""The async engine every AI job runs on: one `openai.AsyncOpenAI` client, bounded concurrency,
adaptive slow-down on 429, retries, the per-request cache, the cost ledger and the budget.

A job hands `Engine.run` its items and an async `process(item)` that calls `engine.complete(body)` one
or more times (a judge's repair request is a second call); finished results go to `on_result` in the
event-loop thread, in completion order.

Why the engine retries itself (the client gets `max_retries=0`): the `openai` client would retry 500s,
429s and timeouts on its own, but each request would wait out its own Retry-After while the other 63
kept hammering a server that is asking everyone to slow down, and we could not count the attempts. Here
a 429 halves the concurrency limit and pauses every new request until Retry-After has passed; the limit
grows back by one per limit's worth of successes (AIMD, as TCP does). Answers the client does not treat
as errors are classified here (NOTES.md): a cut-off JSON body is retried like a 5xx (nothing usable
arrived); an empty `content` or `finish_reason = "length"` is a paid-for answer, cached, then asked
again up to `content_attempts` times; what still fails comes back as an `Answer` with `error` set, which
the job records as an error row — never as an empty verdict. An answer the transport refuses (over
`max_answer_mib`, or framed against HTTP/1.1: `transport.AnswerRefused`) is such an error at once:
asking again would bring the same answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from prefkit.annotate.ai.cache import Cache
from prefkit.annotate.ai.transport import AnswerRefused, lean_transport_applies, make_http_client, redact_url
from prefkit.annotate.ids import request_id
from prefkit.annotate.text import printable

PER_CLIENT = 16  # connections per client on the stock transport (see Engine._make_clients)
MAX_ANSWER_MIB = 512  # the cap's own upper bound: SQLite stores strings up to 1e9 bytes
ERROR_CHARS = 300  # a server's error message is kept to this many characters, on one line
_RAW = {"headers": {"X-Stainless-Raw-Response": "true"}}


class AIError(RuntimeError):
    """An AI job cannot start or go on (no API key, server unreachable, bad template)."""


class BudgetReached(Exception):
    """Raised inside `complete` when the next request would go over `max_cost`."""


@dataclass
class EngineConfig:
    """How to reach the server and how hard to push it. Equal to the CLI flags of every AI command."""

    model: str
    base_url: str | None = None  # any OpenAI-compatible endpoint; None means api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable; the key itself is never stored
    concurrency: int = 16  # requests in flight at most (the 429 controller may lower it for a while)
    timeout: float = 120.0  # seconds per request; the openai client's own default (600 s) hides hangs
    max_retries: int = 6  # transport retries per request: 5xx, 429, timeouts, resets, cut-off bodies
    content_attempts: int = 3  # answers tried when one comes back empty or cut off at max_tokens
    backoff: float = 0.5  # first retry wait in seconds, doubled each time, with jitter
    max_backoff: float = 30.0
    price_in: float = 0.0  # dollars per million prompt tokens (0: costs are not tracked)
    price_out: float = 0.0  # dollars per million completion tokens
    max_cost: float | None = None  # stop sending new requests once this many dollars are spent
    progress: bool = True  # a tqdm bar with rate and ETA on stderr
    max_answer_mib: float = 16.0  # the largest answer taken, on the wire and decoded (transport.py)
    batch_discount: float = 0.5  # batch answers cost this share of --price-in/--price-out (providers: about half)

    def public(self) -> dict[str, Any]:
        """The config as saved beside outputs: it names the key's variable, never the key, and the
        server without the `user:password@` a --base-url may carry."""
        found = dict(self.__dict__)
        if found["base_url"]:
            found["base_url"] = redact_url(found["base_url"])
        return found

    @property
    def max_answer_bytes(self) -> int:
        if not 0 < self.max_answer_mib <= MAX_ANSWER_MIB:
            raise AIError(f"--max-answer-mib {self.max_answer_mib:g}: choose a size above 0 and up to {MAX_ANSWER_MIB}")
        return int(self.max_answer_mib * 2**20)


@dataclass
class Answer:
    """One request's final answer (possibly from the cache), or why there is none."""

    key: str
    request: dict[str, Any]
    text: str | None = None  # the raw response body
    content: str | None = None
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None  # choices[0].logprobs.content
    choices: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    latency_ms: int | None = None
    cached: bool = False
    attempts: int = 0  # HTTP requests sent for this answer in this run
    error: str | None = None
    status: int | None = None  # HTTP status of a non-retryable failure (400 = unsupported option)

    @property
    def ok(self) -> bool:
        return self.error is None


def read_answer(answer: Answer, text: str, data: dict[str, Any] | None = None) -> Answer:
    """Fill `answer` from a response body (`data`: the body already parsed) and classify what the
    client would have let through."""
    data = json.loads(text) if data is None else data
    answer.text = text
    answer.choices = data.get("choices") or []
    answer.usage = data.get("usage") or {}
    answer.fingerprint = data.get("system_fingerprint")
    if not answer.choices:
        answer.error = "the answer has no choices"
        return answer
    first = answer.choices[0]
    answer.content = (first.get("message") or {}).get("content")
    answer.finish_reason = first.get("finish_reason")
    answer.logprobs = (first.get("logprobs") or {}).get("content")
    if answer.finish_reason == "length":
        answer.error = "output cut off at max_tokens (finish_reason=length)"
    elif answer.finish_reason == "content_filter":
        answer.error = "the server's content filter stopped the answer"
    elif not answer.content or not answer.content.strip():
        answer.error = "empty content"
    else:
        answer.error = None
    return answer


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds: `retry-after-ms`, `retry-after` in seconds, or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class Limiter:
    """Concurrency slots whose number shrinks on 429 and grows back on success (AIMD), plus a pause
    that holds every new request until the server's Retry-After has passed."""

    def __init__(self, limit: int):
        self.max = float(limit)
        self.limit = float(limit)
        self.active = 0
        self.resume_at = 0.0
        self.last_cut = -1e9
        self.waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        if self.active < int(self.limit) and not self.waiters:
            self.active += 1
        else:
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            await fut  # the slot is handed over by release()
        delay = self.resume_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def release(self, ok: bool) -> None:
        self.active -= 1
        if ok and self.limit < self.max:
            self.limit = min(self.max, self.limit + 1.0 / self.limit)
        while self.waiters and self.active < int(self.limit):
            fut = self.waiters.popleft()
            if not fut.done():
                self.active += 1
                fut.set_result(None)

    def throttle(self, wait: float) -> None:
        now = time.monotonic()
        self.resume_at = max(self.resume_at, now + wait)
        if now - self.last_cut > max(wait, 0.05):  # one cut per burst of 429s, not one per request
            self.limit = max(1.0, self.limit / 2)
            self.last_cut = now


@dataclass
class RunSummary:
    items: int = 0
    done: int = 0
    requests: int = 0  # HTTP requests sent (retries included)
    cached: int = 0  # answers replayed from the cache
    cost: float = 0.0  # dollars spent in this run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: str | None = None  # "budget" when max_cost stopped the run; "submitted" for --batch --no-wait
    batched: int = 0  # requests submitted in batches (--batch)
    batches: int = 0  # batches created in this run
    seconds: float = 0.0


class Engine:
    """See the module docstring. `client` may be given (tests, benchmarks; its limits are the caller's,
    see `transport.make_http_client`); otherwise one is made from the config, reading the API key from
    the environment variable it names."""

    def __init__(self, config: EngineConfig, cache: Cache | None = None, client: Any = None):
        self.config = config
        self.cache = cache
        self._given = client
        self._clients: list[Any] = []
        self._next = 0
        self.summary = RunSummary()
        self.limiter: Limiter | None = None
        self._secret: str | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Engine]:
        """Clients and the concurrency limiter for one job; nested sessions share the outer one."""
        if self._clients:
            yield self
            return
        self.limiter = Limiter(self.config.concurrency)
        if self._given is not None:
            self._clients = [self._given]
        else:
            self._clients = self._make_clients()
        try:
            yield self
        finally:
            if self._given is None:
                for client in self._clients:
                    await client.close()
            self._clients = []

    # -- the client ------------------------------------------------------------------------------

    def _make_clients(self) -> list[Any]:
        """One client on the lean transport (annotate/ai/transport.py), or, where a proxy from the
        environment applies, clients on the stock transport holding at most ~16 connections each:
        its pool scans every connection it holds for each request it places, so at 64 in flight one
        big pool costs more CPU than the requests themselves. Both cap the size of answers."""
        import openai

        max_bytes = self.config.max_answer_bytes
        key = os.environ.get(self.config.api_key_env)
        if not key:
            if self.config.base_url is None:
                raise AIError(
                    f"no API key: set {self.config.api_key_env} (or name another variable with --api-key-env)"
                )
            key = "none"  # local servers (vLLM, llama.cpp, Ollama) accept any key
        self._secret = key

        def client(http_client: Any) -> Any:
            return openai.AsyncOpenAI(
                api_key=key,
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.timeout,
                http_client=http_client,
            )

        if lean_transport_applies(self.config.base_url):
            return [client(make_http_client(max_bytes, lean=True))]
        n = max(1, -(-self.config.concurrency // PER_CLIENT))
        return [client(make_http_client(max_bytes, lean=False)) for _ in range(n)]

    def scrub(self, text: str) -> str:
        """Error texts go into rows and logs: make sure neither the key nor the password of a
        `user:password@` in --base-url can ever be among them."""
        if self._secret and len(self._secret) > 4:
            text = text.replace(self._secret, "***")
        text = redact_url(text)
        password = _password(self.config.base_url)
        if password and len(password) > 3:
            for form in {password, unquote(password)}:
                text = text.replace(form, "***")
        return text

    def _said(self, text: str) -> str:
        """What a server (or its framing) said, fit for a row, a run log and a terminal: secrets masked
        first (so a cut cannot leave half of one), then one line of at most ERROR_CHARS without escape
        sequences: `prefkit generate` prints failures, and a server may put anything in its errors."""
        text = printable(self.scrub(text)[: ERROR_CHARS * 4], newlines=False)
        return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "…"

    # -- one request -----------------------------------------------------------------------------

    def price(self, usage: dict[str, Any]) -> float:
        c = self.config
        return (
            (usage.get("prompt_tokens") or 0) * c.price_in + (usage.get("completion_tokens") or 0) * c.price_out
        ) / 1e6

    async def complete(self, body: dict[str, Any]) -> Answer:
        """The answer to one request: from the cache if it was ever paid for, else from the server."""
        key = request_id(body)
        answer = Answer(key=key, request=body)
        for attempt in range(self.config.content_attempts):
            answer = Answer(key=key, request=body, attempts=answer.attempts)
            hit = self.cache.get(key, attempt) if self.cache else None
            if hit:
                read_answer(answer, hit[0])
                # A batch answer has no latency of its own: cached as -1, shown as None (batch.py).
                answer.latency_ms, answer.cached = (hit[1] if hit[1] >= 0 else None), True
                self.summary.cached += 1
            elif not await self._answer(body, key, attempt, answer):
                return answer  # no answer: transport failure after retries, or a non-retryable HTTP error
            if answer.ok:
                return answer
        answer.error = f"{answer.error} ({self.config.content_attempts} answers tried)"
        return answer

    async def _answer(self, body: dict[str, Any], key: str, attempt: int, answer: Answer) -> bool:
        """Fill `answer` with a fresh answer to attempt `attempt` of `body`, cached and paid for; False
        (with `answer.error` set) when none came. The one step a batch engine does its own way
        (`batch.BatchEngine`): everything around it — cache replay, content attempts — is shared."""
        if self.config.max_cost is not None and self.summary.cost >= self.config.max_cost:
            raise BudgetReached()
        text, data, latency_ms = await self._send(body, answer)
        if text is None:
            return False
        read_answer(answer, text, data)
        cost = self.price(answer.usage)
        if self.cache:
            # Written before anything else looks at the answer: a kill after this line never pays again.
            self.cache.put(key, attempt, text, self.config.model, answer.usage, cost, latency_ms)
        answer.latency_ms = latency_ms
        self.count(answer.usage, cost)
        return True

    def count(self, usage: dict[str, Any], cost: float) -> None:
        """Add one paid-for answer to this run's ledger."""
        self.summary.cost += cost
        self.summary.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.summary.completion_tokens += int(usage.get("completion_tokens") or 0)

    async def _send(self, body: dict[str, Any], answer: Answer) -> tuple[str | None, Any, int]:
        """(body text, parsed body, latency ms) of the first usable answer, or (None, None, 0)."""
        import openai

        reason = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            await self.limiter.acquire()
            client = self._clients[self._next % len(self._clients)]
            self._next += 1
            ok, wait = False, None
            start = time.perf_counter()
            try:
                answer.attempts += 1
                self.summary.requests += 1
                # The client's own `post` with the body as built: `chat.completions.create` would first
                # walk every message through its TypedDict transform (the largest CPU cost per request at
                # 300 requests/s), and the body is already plain JSON. Auth, timeouts and the error
                # classes are the client's as usual; the raw-response header gives us the exact bytes.
                raw = await client.post("/chat/completions", body=body, cast_to=object, options=_RAW)
                text = raw.text
                data = json.loads(text)
                ok = True
                return text, data, int((time.perf_counter() - start) * 1000)
            except json.JSONDecodeError:
                reason = "malformed JSON in the answer body (cut off?)"
            except openai.RateLimitError as exc:
                wait = retry_after_seconds(exc.response.headers) or self._backoff(attempt)
                self.limiter.throttle(wait)
                reason = f"HTTP 429 rate limited: {self._said(server_message(exc))}"
            except openai.APIStatusError as exc:
                reason = f"HTTP {exc.status_code}: {self._said(server_message(exc))}"
                if exc.status_code in (401, 403, 404):
                    # Wrong key, no access, unknown model or URL: every request would fail the same way.
                    raise AIError(
                        self.scrub(
                            f"the server refused the job: {reason} (check --base-url, --model "
                            f"and ${self.config.api_key_env})"
                        )
                    ) from None
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    answer.error, answer.status = self.scrub(reason), exc.status_code
                    return None, None, 0
            except openai.APITimeoutError:
                reason = f"timed out after {self.config.timeout:g} s"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__
                if isinstance(cause, AnswerRefused):  # too large or mis-framed: asking again gets the same
                    answer.error = f"answer refused: {self._said(str(cause))}"
                    return None, None, 0
                reason = f"connection failed: {self._said(str(cause or exc))}"
            finally:
                self.limiter.release(ok)
            if attempt < self.config.max_retries:
                await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        answer.error = self.scrub(f"{reason} (gave up after {self.config.max_retries + 1} attempts)")
        return None, None, 0

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.max_backoff, self.config.backoff * 2**attempt)
        return base * (0.5 + random.random() / 2)

    # -- a whole job -----------------------------------------------------------------------------

    def run(
        self,
        items: Iterable[Any],
        process: Callable[[Engine, Any], Awaitable[Any]],
        on_result: Callable[[Any, Any], None],
        *,
        total: int | None = None,
    ) -> RunSummary:
        """Run `process(engine, item)` over `items` with bounded concurrency; `on_result(item, result)`
        is called as each finishes. Stops sending when the budget is reached (summary.stopped)."""
        return asyncio.run(self.arun(items, process, on_result, total=total))

    async def arun(self, items, process, on_result, *, total: int | None = None) -> RunSummary:
        from tqdm import tqdm

        self.summary = RunSummary(items=total or 0)
        bar = tqdm(total=total, unit="item", file=sys.stderr, disable=not self.config.progress, dynamic_ncols=True)
        started = time.perf_counter()
        iterator = iter(items)

        async def worker() -> None:
            for item in iterator:  # one shared iterator: each worker takes the next item
                if self.summary.stopped:
                    return
                try:
                    result = await process(self, item)
                except BudgetReached:
                    self.summary.stopped = "budget"
                    return
                on_result(item, result)
                self.summary.done += 1
                bar.update(1)
                if self.config.price_in or self.config.price_out:
                    bar.set_postfix(cost=f"${self.summary.cost:.4f}", refresh=False)

        try:
            async with self.session():
                tasks = [asyncio.ensure_future(worker()) for _ in range(self.workers(total))]
                await self.drive(tasks)
        finally:
            bar.close()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def workers(self, total: int | None) -> int:
        """Items in progress at once: more than slots, so parsing and writing never leave a slot idle."""
        return max(1, self.config.concurrency * 2)

    async def drive(self, tasks: list[asyncio.Future]) -> None:
        """Wait for the workers; a job-level failure (e.g. a refused key) stops everyone at once."""
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # re-raise the failure, if there was one


def server_message(exc: Any) -> str:
    """The server's own words about an error, as it sent them (see Engine._said)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))


def _password(url: str | None) -> str | None:
    if not url or "@" not in url:
        return None
    return urlsplit(url).password
