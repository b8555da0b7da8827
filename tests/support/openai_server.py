"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, benchmarks and the demo docs.

It speaks enough of the chat-completions protocol for the `openai` client: `POST /v1/chat/completions`
(with `n`, `logprobs`/`top_logprobs`, `response_format`, usage and `system_fingerprint`) and
`GET /v1/models`. Answers are scripted; latency and faults are injected on purpose.

Use it in a test:

    from tests.support.openai_server import OpenAIServer, Reply

    def answer(request):                      # the parsed JSON body of one request
        return "A\\nthe first answer is right"  # or a Reply(...) for full control

    with OpenAIServer(answer, latency=0.01, faults=0.1, seed=1) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        ...
        server.stats()  # {"requests": …, "ok": …, "repeats_of_ok": …, "outcomes": {…}}

or as a process (for benchmarks, so its CPU is not the client's):

    python -m tests.support.openai_server --latency 0.2      # prints "port N" then serves
    curl http://127.0.0.1:N/stats

Faults (`faults=` a rate spread evenly over all kinds, or a {kind: rate} dict), each drawn per request:
- `500`: HTTP 500 with an error body;
- `429`: HTTP 429 with `Retry-After` (seconds, `retry_after=`);
- `timeout`: the answer is held for `hang=` seconds (set the client's timeout below it);
- `malformed`: HTTP 200 whose JSON body is cut off halfway;
- `empty`: HTTP 200 with `content = ""`;
- `length`: HTTP 200 with half the content and `finish_reason = "length"`.

prefkit's AI jobs in `--mode auto` first send two tiny capability probes (a user message asking for
`{"ok": true}`, once with `logprobs`, once with a JSON-schema `response_format`); a script that only
knows the job's own prompts should pass the mode explicitly, or answer anything it does not know.

Capabilities: `logprobs=` and `response_format=` are True (supported), False (HTTP 400 naming the
parameter, as vLLM and OpenAI do for unsupported options) or "ignore" (accepted, silently ignored, as
some llama.cpp/Ollama builds do).

Every request is logged with the hash of its canonical JSON body (`prefkit.annotate.ids.request_id`), its outcome
and the bearer token it carried; `repeats_of_ok` counts requests identical to one already answered "ok",
and `counts(since=mark())` gives the requests per body from a point in the log on (e.g. a second run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefkit.annotate.ids import request_id

FAULT_KINDS = ("500", "429", "timeout", "malformed", "empty", "length")


@dataclass
class Reply:
    """A scripted answer. `top_logprobs` gives the first token's alternatives ({token: logprob});
    `fault` forces one of FAULT_KINDS for this request."""

    content: str = "ok"
    finish_reason: str = "stop"
    top_logprobs: dict[str, float] | None = None
    fault: str | None = None
    delay: float | None = None  # overrides the server's latency for this answer
    status: int = 200  # any other status answers with an OpenAI-style error body (e.g. 401, 404)
    message: str = "scripted error"  # the error body's message when status is not 200


@dataclass
class Entry:
    key: str
    outcome: str
    auth: str
    at: float
    body: dict[str, Any] = field(repr=False, default_factory=dict)


Answer = Callable[[dict[str, Any]], "str | Reply"]


def _tokens(text: str) -> list[str]:
    # Words with their leading space, like a BPE tokenizer would split plain prose.
    return re.findall(r"\s*\S+", text) or [text]


def _token_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


class OpenAIServer:
    """The loopback server; see the module docstring. Start with `with` or `start()`/`stop()`."""

    def __init__(
        self,
        answer: Answer | None = None,
        *,
        latency: float = 0.0,
        faults: float | dict[str, float] = 0.0,
        seed: int = 0,
        retry_after: float = 0.05,
        hang: float = 3.0,
        logprobs: bool | str = True,
        response_format: bool | str = True,
        keep_bodies: bool = True,
    ):
        self.answer = answer or (lambda request: "ok")
        self.latency = latency
        if isinstance(faults, dict):
            self.faults = dict(faults)
        else:
            self.faults = {k: faults / len(FAULT_KINDS) for k in FAULT_KINDS} if faults else {}
        self.rng = random.Random(seed)
        self.retry_after = retry_after
        self.hang = hang
        self.logprobs = logprobs
        self.response_format = response_format
        self.keep_bodies = keep_bodies
        self.log: list[Entry] = []
        self._ok: Counter[str] = Counter()
        self.repeats_of_ok = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(self.serve(port=0))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="openai-loopback", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve(self, port: int = 0) -> asyncio.base_events.Server:
        server = await asyncio.start_server(self._connection, "127.0.0.1", port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return server

    # -- bookkeeping -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            outcomes = Counter(e.outcome for e in self.log)
            return {
                "requests": len(self.log),
                "ok": outcomes.get("ok", 0),
                "repeats_of_ok": self.repeats_of_ok,
                "outcomes": dict(outcomes),
            }

    def ok_keys(self) -> set[str]:
        with self._lock:
            return set(self._ok)

    def mark(self) -> int:
        """A position in the request log, for `counts(since=...)`: e.g. where a second run starts."""
        with self._lock:
            return len(self.log)

    def counts(self, since: int = 0, outcome: str | None = None) -> Counter[str]:
        """Requests per canonical body (`request_id`) from log position `since` on, optionally only
        those that ended in `outcome` ("ok", "503", "500", …): what a job really sent, counted here."""
        with self._lock:
            return Counter(e.key for e in self.log[since:] if outcome is None or e.outcome == outcome)

    def _record(self, body: dict[str, Any], outcome: str, auth: str) -> None:
        key = request_id(body)
        with self._lock:
            if key in self._ok:
                self.repeats_of_ok += 1
            if outcome == "ok":
                self._ok[key] += 1
            self.log.append(Entry(key, outcome, auth, time.time(), body if self.keep_bodies else {}))

    # -- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                status, extra, payload = await self._handle(method, path, headers, raw)
                head = [
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                ]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, ValueError):
            pass
        finally:
            writer.close()

    async def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, {}, json.dumps({"object": "list", "data": [{"id": "loopback", "object": "model"}]}).encode()
        if method == "GET" and path.rstrip("/") == "/stats":
            return 200, {}, json.dumps(self.stats()).encode()
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, _error("not found", "not_found")
        body = json.loads(raw)
        auth = headers.get("authorization", "").removeprefix("Bearer ")
        for param, support in (("logprobs", self.logprobs), ("response_format", self.response_format)):
            if body.get(param) and support is False:
                self._record(body, "bad_request", auth)
                return 400, {}, _error(f"{param} is not supported by this server", "invalid_request_error", param)
        fault = self._draw_fault()
        replies = []
        try:
            for i in range(int(body.get("n") or 1)):
                reply = self.answer(dict(body, _choice=i) if i else body)
                replies.append(reply if isinstance(reply, Reply) else Reply(content=str(reply)))
        except Exception as exc:  # a bug in a test's script: say so loudly instead of hanging the client
            self._record(body, "script_error", auth)
            return 500, {}, _error(f"the scripted answer raised {exc!r}", "script_error")
        fault = replies[0].fault or fault
        delay = replies[0].delay if replies[0].delay is not None else self.latency
        if fault == "timeout":
            self._record(body, "timeout", auth)
            await asyncio.sleep(self.hang)
        elif delay:
            await asyncio.sleep(delay)
        if replies[0].status != 200:
            self._record(body, str(replies[0].status), auth)
            return replies[0].status, {}, _error(replies[0].message, "invalid_request_error")
        if fault == "500":
            self._record(body, "500", auth)
            return 500, {}, _error("the server had an error", "server_error")
        if fault == "429":
            self._record(body, "429", auth)
            return 429, {"Retry-After": f"{self.retry_after:g}"}, _error("rate limit reached", "rate_limit")
        if fault == "empty":
            replies = [Reply(content="")]
        elif fault == "length":
            text = replies[0].content
            replies = [Reply(content=text[: max(1, len(text) // 2)], finish_reason="length")]
        payload = json.dumps(self._completion(body, replies)).encode()
        if fault == "malformed":
            self._record(body, "malformed", auth)
            return 200, {}, payload[: len(payload) // 2]
        if fault != "timeout":
            self._record(body, fault or "ok", auth)
        return 200, {}, payload

    def _draw_fault(self) -> str | None:
        with self._lock:
            x = self.rng.random()
        for kind, rate in self.faults.items():
            if x < rate:
                return kind
            x -= rate
        return None

    def _completion(self, body: dict[str, Any], replies: list[Reply]) -> dict[str, Any]:
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        want_logprobs = bool(body.get("logprobs")) and self.logprobs is True
        choices = []
        completion_words = 0
        for i, reply in enumerate(replies):
            completion_words += len(reply.content.split())
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
            if want_logprobs:
                choice["logprobs"] = {"content": self._logprobs(reply, int(body.get("top_logprobs") or 0))}
            choices.append(choice)
        return {
            "id": f"chatcmpl-{request_id(body)[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "loopback"),
            "system_fingerprint": "fp_loopback",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }

    @staticmethod
    def _logprobs(reply: Reply, top: int) -> list[dict[str, Any]]:
        tokens = _tokens(reply.content) if reply.content else []
        out = []
        for j, token in enumerate(tokens):
            alternatives = {token: 0.0}
            if j == 0 and reply.top_logprobs:
                alternatives = dict(reply.top_logprobs)
            best = sorted(alternatives.items(), key=lambda kv: -kv[1])
            entry = _token_entry(token, alternatives.get(token, best[0][1]))
            entry["top_logprobs"] = [_token_entry(t, lp) for t, lp in best[:top]]
            out.append(entry)
        return out


def _error(message: str, kind: str, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}}).encode()


def main(argv: list[str] | None = None) -> None:
    """Serve from a process (the answer is always `--content`); prints `port N` once listening."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--faults", type=float, default=0.0)
    parser.add_argument("--content", default="A\nResponse A answers the question.")
    args = parser.parse_args(argv)
    server = OpenAIServer(lambda request: args.content, latency=args.latency, faults=args.faults, keep_bodies=False)

    async def run() -> None:
        await server.serve(args.port)
        print(f"port {server.port}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
