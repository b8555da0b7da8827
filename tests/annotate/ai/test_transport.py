"""The lean HTTP/1.1 transport under the real `openai` client, against raw TCP servers on 127.0.0.1
that answer in the shapes real servers use: Content-Length, chunked, gzip, read-to-close, keep-alive
connections the server drops, answers that come too late."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import openai
import pytest
from prefkit.annotate.ai.transport import LeanTransport, lean_transport_applies

COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"}],
}


def completion(content: str) -> bytes:
    body = dict(COMPLETION, choices=[dict(COMPLETION["choices"][0], message={"role": "assistant", "content": content})])
    return json.dumps(body).encode()


class RawServer:
    """Reads HTTP/1.1 requests and writes whatever `answer(n, request) -> (bytes, close)` says.

    `n` counts requests over all connections; `connections` counts accepted connections and
    `requests` keeps (method, path, headers, body) of each request."""

    def __init__(self, answer):
        self.answer, self.connections, self.requests = answer, 0, []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()
        self.base_url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *lines = head.decode().strip().split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((first.split()[0], first.split()[1], headers, body))
                data, close = await self.answer(len(self.requests) - 1, body)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def response(body: bytes, *extra: str, status: str = "200 OK", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def serve():
    servers = []

    def start(answer):
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def run_requests(base_url: str, contents: list[str], timeout: float = 5.0, concurrent: bool = False) -> list:
    """Chat completions through the real async client on the lean transport; exceptions are returned."""

    async def go():
        client = openai.AsyncOpenAI(
            api_key="sk-transport-test",
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(transport=LeanTransport()),
        )

        async def one(text):
            try:
                answer = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
                return answer.choices[0].message.content
            except openai.APIError as exc:
                return exc

        try:
            if concurrent:
                return await asyncio.gather(*(one(t) for t in contents))
            return [await one(t) for t in contents]
        finally:
            await client.close()

    return asyncio.run(go())


def echo(request_body: bytes) -> str:
    return json.loads(request_body)["messages"][0]["content"].upper()


def test_requests_reuse_one_keep_alive_connection_and_send_what_the_client_built(serve):
    async def answer(n, body):
        return response(completion(echo(body))), False

    server = serve(answer)
    assert run_requests(server.base_url, ["one", "two", "three"]) == ["ONE", "TWO", "THREE"]
    assert server.connections == 1, "sequential requests share a kept-alive connection"
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == "Bearer sk-transport-test"
    assert headers["host"] == server.base_url.split("/")[2]
    assert json.loads(body)["messages"] == [{"role": "user", "content": "one"}]


def test_concurrent_requests_open_their_own_connections_and_get_their_own_answers(serve):
    async def answer(n, body):
        await asyncio.sleep(0.05 if n % 2 else 0.0)  # answers finish out of order
        return response(completion(echo(body))), False

    server = serve(answer)
    texts = [f"item {i}" for i in range(12)]
    assert run_requests(server.base_url, texts, concurrent=True) == [t.upper() for t in texts]
    assert 1 < server.connections <= 12


def test_chunked_gzip_and_read_to_close_bodies_are_decoded(serve):
    async def answer(n, body):
        data = completion(echo(body))
        if n == 0:  # chunked, in three pieces, with a chunk extension and a trailer
            parts = [data[:10], data[10:25], data[25:]]
            chunks = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
            return response(chunks + b"0\r\nX-Trailer: 1\r\n\r\n", "Transfer-Encoding: chunked", length=False), False
        if n == 1:
            packed = gzip.compress(data)
            return response(packed, "Content-Encoding: gzip"), False
        return response(data, "Connection: close", length=False), True  # no length: the body ends at close

    server = serve(answer)
    assert run_requests(server.base_url, ["chunked", "gzip", "close"]) == ["CHUNKED", "GZIP", "CLOSE"]
    assert server.connections == 1


def test_a_kept_alive_connection_the_server_dropped_is_replaced_without_an_error(serve):
    async def answer(n, body):
        return response(completion(echo(body))), True  # says keep-alive (HTTP/1.1), then hangs up

    server = serve(answer)
    assert run_requests(server.base_url, ["a", "b", "c"]) == ["A", "B", "C"]
    assert server.connections == 3 and len(server.requests) == 3, "each request sent exactly once"


def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_new_one(serve):
    async def answer(n, body):
        if n == 1:
            return b"", True  # the keep-alive race: the server hangs up as the second request arrives
        return response(completion(echo(body))), False

    server = serve(answer)
    assert run_requests(server.base_url, ["a", "b", "c"]) == ["A", "B", "C"]
    assert server.connections == 2 and [json.loads(r[3])["messages"][0]["content"] for r in server.requests] == [
        "a",
        "b",
        "b",
        "c",
    ]


def test_a_late_answer_is_a_timeout_and_never_read_as_the_next_answer(serve):
    async def answer(n, body):
        if n == 0:
            await asyncio.sleep(0.6)  # past the client's timeout
            return response(completion("LATE")), False
        return response(completion(echo(body))), False

    server = serve(answer)
    first, second = run_requests(server.base_url, ["slow", "next"], timeout=0.3)
    assert isinstance(first, openai.APITimeoutError)
    assert second == "NEXT", "the timed-out connection was closed, not reused"
    assert server.connections == 2


def test_errors_keep_the_clients_classes_and_bodies(serve):
    async def answer(n, body):
        if n == 0:
            error = json.dumps({"error": {"message": "slow down", "type": "rate"}}).encode()
            return response(error, "Retry-After: 7", status="429 Too Many Requests"), False
        if n == 1:
            return response(b'{"choices": [', "Content-Length: 400", length=False), True
        return b"garbage\r\n\r\n", True

    server = serve(answer)
    limited, cut, garbage = run_requests(server.base_url, ["x", "y", "z"])
    assert isinstance(limited, openai.RateLimitError) and limited.response.headers["retry-after"] == "7"
    assert "slow down" in str(limited)
    assert isinstance(cut, openai.APIConnectionError), "a body cut short of its Content-Length is a transport error"
    assert isinstance(garbage, openai.APIConnectionError)


def test_refused_connection_is_a_connection_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (refused,) = run_requests(f"http://127.0.0.1:{port}/v1", ["x"])
    assert isinstance(refused, openai.APIConnectionError) and not isinstance(refused, openai.APITimeoutError)


def test_the_stock_transport_is_kept_where_a_proxy_applies(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert lean_transport_applies("http://10.0.0.5:8000/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not lean_transport_applies(None), "api.openai.com through the proxy"
    assert lean_transport_applies("http://10.0.0.5:8000/v1"), "the proxy is for https only"
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    assert not lean_transport_applies("http://10.0.0.5:8000/v1")
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert lean_transport_applies("http://10.0.0.5:8000/v1")


@pytest.mark.parametrize("proxied", [False, True])
def test_a_judge_job_runs_on_either_transport(tmp_path, monkeypatch, proxied):
    """The engine picks the lean transport (one client) or, where a proxy applies, the stock one (clients
    of 16 connections); both complete the same job against the loopback server."""
    import prefkit.annotate.ai.engine as engine_module
    from prefkit.annotate.ai.engine import Engine, EngineConfig
    from prefkit.annotate.ai.judge import JudgeOptions, judge
    from prefkit.annotate.store import Store

    from tests.annotate.ai.conftest import fill
    from tests.support.openai_server import OpenAIServer

    monkeypatch.setattr(engine_module, "lean_transport_applies", lambda url: not proxied)
    store = fill(Store(tmp_path / "s"), prompts=2, responses=3)  # 12 requests
    with OpenAIServer(lambda request: "A\nthe first", logprobs=False, response_format=False) as server:
        config = EngineConfig(model="m", base_url=server.base_url, concurrency=40, progress=False)
        clients = Engine(config)._make_clients()
        transports = {type(c._client._transport).__name__ for c in clients}
        assert (len(clients), transports) == ((3, {"AsyncHTTPTransport"}) if proxied else (1, {"LeanTransport"}))
        report = judge(store, config, JudgeOptions(mode="text"))
        assert server.stats()["requests"] == 12
    assert (report.written, report.errors) == (12, 0)
