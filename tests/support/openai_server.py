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
        batches: bool = True,
        batch_delay: float = 0.0,
        batch_faults: dict[int, str] | None = None,
        batch_error_lines: Callable[[dict[str, Any]], bool] | None = None,
        create_delay: float = 0.0,
    ):
        self.answer = answer or (lambda request: "ok")
        self.batch_api = BatchAPI(
            self,
            enabled=batches,
            delay=batch_delay,
            faults=batch_faults or {},
            error_lines=batch_error_lines,
            create_delay=create_delay,
        )
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
                    f"Content-Type: {extra.pop('Content-Type', 'application/json')}",
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
        route = path.split("?", 1)[0].rstrip("/")
        if route.startswith(("/v1/files", "/v1/batches", "/files", "/batches")):
            return await self.batch_api.handle(method, path, headers, raw)
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

    def batch_answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, body) of one batch line: the scripted answer, as `_handle` would give it live, without
        the transport faults (a batch has no connection to lose: those become error-file lines)."""
        for param, support in (("logprobs", self.logprobs), ("response_format", self.response_format)):
            if body.get(param) and support is False:
                return 400, json.loads(
                    _error(f"{param} is not supported by this server", "invalid_request_error", param)
                )
        try:
            replies = []
            for i in range(int(body.get("n") or 1)):
                reply = self.answer(dict(body, _choice=i) if i else body)
                replies.append(reply if isinstance(reply, Reply) else Reply(content=str(reply)))
        except Exception as exc:
            return 500, json.loads(_error(f"the scripted answer raised {exc!r}", "script_error"))
        if replies[0].status != 200:
            return replies[0].status, json.loads(_error(replies[0].message, "invalid_request_error"))
        fault = replies[0].fault
        if fault in ("500", "429", "timeout", "malformed"):
            return 500, json.loads(_error("the server had an error", "server_error"))
        if fault == "empty":
            replies = [Reply(content="")]
        elif fault == "length":
            text = replies[0].content
            replies = [Reply(content=text[: max(1, len(text) // 2)], finish_reason="length")]
        return 200, self._completion(body, replies)

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


class BatchAPI:
    """The Batch API on the loopback server: `/v1/files` (multipart upload with purpose=batch, retrieve,
    content) and `/v1/batches` (create, retrieve, cancel, list newest first with `after`/`limit`).

    A batch is `validating` when created, `in_progress` until `delay` seconds have passed (its counts
    growing with the time), then `completed` with an output file and, for lines that failed, an error
    file. Each line is answered by the server's script like a live request (`OpenAIServer.batch_answer`).
    Faults: `faults` maps a batch's number (0 for the first created) to `failed` (validation fails: no
    output), `expired` or `cancelled` (only the first half of its lines answered); `error_lines(line)`
    True sends that line to the error file. A batch whose input has a bad line or a repeated custom_id
    fails validation as on OpenAI. `create_delay` holds the answer to a create *after* the batch exists
    (a client killed meanwhile has created a batch it never heard of). `enabled=False`: every route 404s;
    `"files"`: only `/v1/batches` does.
    `log` holds the custom_ids each batch was created with, by batch id; `repeated()` those in two.
    """

    def __init__(self, server, *, enabled, delay, faults, error_lines, create_delay):
        self.server, self.enabled, self.delay = server, enabled, delay
        self.faults, self.error_lines, self.create_delay = faults, error_lines, create_delay
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self.started: dict[str, float] = {}
        self.log: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def repeated(self) -> dict[str, int]:
        """custom_ids submitted in more than one batch, with how many."""
        with self.lock:
            seen = Counter(c for ids in self.log.values() for c in set(ids))
        return {c: n for c, n in seen.items() if n > 1}

    def submitted(self) -> list[str]:
        with self.lock:
            return [c for ids in self.log.values() for c in ids]

    async def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        route, _, query = path.partition("?")
        parts = [p for p in route.split("/") if p and p != "v1"]
        if not self.enabled or (self.enabled == "files" and parts[:1] == ["batches"]):
            return 404, {}, _error(f"no route {method} {route}", "not_found")
        params = dict(item.partition("=")[::2] for item in query.split("&") if item)
        with self.lock:
            if parts == ["files"] and method == "POST":
                return self._upload(headers, raw)
            if len(parts) >= 2 and parts[0] == "files" and method == "GET":
                found = self.files.get(parts[1])
                if found is None:
                    return 404, {}, _error(f"no file {parts[1]}", "not_found")
                if parts[2:] == ["content"]:
                    return 200, {"Content-Type": "application/octet-stream"}, self.contents[parts[1]]
                return 200, {}, json.dumps(found).encode()
            if parts == ["batches"] and method == "POST":
                status, created = self._create(json.loads(raw or b"{}"))
            elif parts == ["batches"] and method == "GET":
                return 200, {}, self._list(params)
            elif len(parts) >= 2 and parts[0] == "batches" and parts[1] in self.batches:
                if parts[2:] == ["cancel"] and method == "POST":
                    return 200, {}, json.dumps(self._cancel(parts[1])).encode()
                if method == "GET" and not parts[2:]:
                    return 200, {}, json.dumps(self._advance(parts[1])).encode()
                return 404, {}, _error(f"no route {method} {route}", "not_found")
            elif parts and parts[0] == "batches":
                return 404, {}, _error(f"no batch {parts[1] if len(parts) > 1 else ''}", "not_found")
            else:
                return 404, {}, _error(f"no route {method} {route}", "not_found")
        if status == 200 and self.create_delay:
            await asyncio.sleep(self.create_delay)
        return status, {}, json.dumps(created).encode()

    # -- files -----------------------------------------------------------------------------------

    def _upload(self, headers: dict[str, str], raw: bytes):
        fields = _multipart(headers.get("content-type", ""), raw)
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return 400, {}, _error("expected a multipart upload with `file` and purpose=batch", "invalid_request_error")
        name, data = fields["file"]
        file_id = self._keep_file(name or "upload.jsonl", data, "batch")
        return 200, {}, json.dumps(self.files[file_id]).encode()

    def _output(self, name: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        return self._keep_file(name, "".join(json.dumps(line) + "\n" for line in lines).encode(), "batch_output")

    def _keep_file(self, name: str, data: bytes, purpose: str) -> str:
        """Register a file (an upload or a batch's output) and its content; its id."""
        file_id = f"file-{len(self.files) + 1:06d}{request_id([name, len(data)])[:8]}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.contents[file_id] = data
        return file_id

    # -- batches ---------------------------------------------------------------------------------

    def _create(self, request: dict[str, Any]):
        file_id = request.get("input_file_id")
        if file_id not in self.files:
            return 400, {"error": {"message": f"no input file {file_id}", "type": "invalid_request_error"}}
        number = len(self.batches)
        batch_id = f"batch_{number + 1:06d}{request_id([file_id, number])[:8]}"
        now = int(time.time())
        lines, errors, seen = [], [], set()
        for i, text in enumerate(self.contents[file_id].decode("utf-8", "replace").splitlines()):
            try:
                line = json.loads(text)
                cid = line["custom_id"]
                if line.get("url") != request.get("endpoint") or not isinstance(line.get("body"), dict):
                    raise ValueError("url or body")
            except (ValueError, KeyError, TypeError):
                errors.append({"code": "invalid_json_line", "message": "not a request line", "line": i + 1})
                continue
            if cid in seen:
                errors.append({"code": "duplicate_custom_id", "message": f"custom_id {cid} repeated", "line": i + 1})
            seen.add(cid)
            lines.append(line)
        fault = self.faults.get(number)
        if fault == "failed":
            errors.append({"code": "invalid_request", "message": "the input file failed validation", "line": 1})
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": request.get("endpoint"),
            "errors": None,
            "input_file_id": file_id,
            "completion_window": request.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
            "_fault": fault,
            "_errors": errors,
        }
        self.batches[batch_id] = batch
        self.lines[batch_id] = lines
        self.started[batch_id] = time.monotonic()
        self.log[batch_id] = [line["custom_id"] for line in lines]
        return 200, _public(batch)

    def _list(self, params: dict[str, str]) -> bytes:
        ordered = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
        if params.get("after"):
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(params["after"]) + 1 :] if params["after"] in ids else []
        limit = int(params.get("limit") or 20)
        page = [_public(self._advance(b["id"], public=False)) for b in ordered[:limit]]
        return json.dumps(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(ordered) > limit,
            }
        ).encode()

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self._advance(batch_id, public=False)
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"], batch["cancelling_at"] = "cancelling", int(time.time())
        return _public(batch)

    def _advance(self, batch_id: str, public: bool = True) -> dict[str, Any]:
        """The batch as of now: its status moves on with the time since it was created."""
        batch = self.batches[batch_id]
        lines = self.lines[batch_id]
        elapsed = time.monotonic() - self.started[batch_id]
        now = int(time.time())
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            pass
        elif batch["_errors"]:
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": batch["_errors"]})
        elif batch["status"] == "cancelling" or batch["_fault"] in ("expired", "cancelled") and elapsed >= self.delay:
            status = "expired" if batch["_fault"] == "expired" else "cancelled"
            self._finish(batch, lines[: len(lines) // 2], status)
        elif elapsed >= self.delay:
            self._finish(batch, lines, "completed")
        else:
            done = int(len(lines) * elapsed / self.delay) if self.delay else 0
            batch.update(status="in_progress", in_progress_at=batch["in_progress_at"] or now)
            batch["request_counts"] = {"total": len(lines), "completed": done, "failed": 0}
        return _public(batch) if public else batch

    def _finish(self, batch: dict[str, Any], answered: list[dict[str, Any]], status: str) -> None:
        out, err = [], []
        for i, line in enumerate(answered):
            record = {"id": f"batch_req_{batch['id']}_{i}", "custom_id": line["custom_id"], "error": None}
            if self.error_lines and self.error_lines(line):
                record["response"] = {
                    "status_code": 500,
                    "request_id": f"req_{i}",
                    "body": json.loads(_error("the batch worker had an error on this request", "server_error")),
                }
                err.append(record)
                continue
            code, body = self.server.batch_answer(line["body"])
            record["response"] = {"status_code": code, "request_id": f"req_{i}", "body": body}
            (out if code == 200 else err).append(record)
        batch["output_file_id"] = self._output(f"{batch['id']}_output.jsonl", out)
        batch["error_file_id"] = self._output(f"{batch['id']}_error.jsonl", err)
        batch["request_counts"] = {"total": len(self.lines[batch["id"]]), "completed": len(out), "failed": len(err)}
        batch.update(status=status, **{f"{status}_at": int(time.time())})


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """{field: (filename, bytes)} of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}
    fields = {}
    for part in raw.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        disposition = head.decode("latin-1")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, data.removesuffix(b"\r\n"))
    return fields


def _error(message: str, kind: str, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}}).encode()


def main(argv: list[str] | None = None) -> None:
    """Serve from a process (the answer is always `--content`); prints `port N` once listening."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--faults", type=float, default=0.0)
    parser.add_argument("--content", default="A\nResponse A answers the question.")
    parser.add_argument("--batch-delay", type=float, default=0.0, help="seconds from a batch's creation to its end")
    args = parser.parse_args(argv)
    server = OpenAIServer(
        lambda request: args.content,
        latency=args.latency,
        faults=args.faults,
        keep_bodies=False,
        batch_delay=args.batch_delay,
    )

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
