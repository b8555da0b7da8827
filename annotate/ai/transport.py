"""A lean HTTP/1.1 transport for the `openai` client: keep-alive connections on asyncio streams.

Why: at 300 requests/s the client's stock transport (httpx → httpcore → h11 → anyio) spent more CPU per
request than everything else in a judge job together (bench/ai.py: 3.3 ms of 3.4 ms), and on one event
loop that CPU is the ceiling on throughput. The requests the engine sends are simple: a POST with a
JSON body, one answer read whole. This transport does only that, on plain asyncio streams, and hands
the `openai` client an ordinary httpx `Response`; auth, headers, status errors and timeouts stay the
client's. It slots in under the client (`http_client=DefaultAsyncHttpxClient(transport=...)`), so
nothing above it changes.

What it does: one pool of idle connections per (scheme, host, port), TLS through an `ssl` context,
bodies framed by Content-Length, chunked encoding or connection close, content decoding (gzip…) by
httpx as usual. A connection goes back to the pool only after a whole answer was read from it; any
error, timeout or cancellation closes it, so a late answer can never be read as the next one's. A
request sent on a reused connection the server had already closed (the keep-alive race) goes again
on another connection, a new one at the latest.
It does no proxies, HTTP/2 or streaming: `lean_transport_applies` says when the engine should use it.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import urllib.request
from typing import Any

import openai


def _httpx_module() -> Any:
    """The httpx the installed `openai` is built on (`httpx` up to openai 2, `httpx2` from 3)."""
    for cls in openai.DefaultAsyncHttpxClient.__mro__[1:]:
        if cls.__name__ == "AsyncClient":
            return importlib.import_module(cls.__module__.split(".")[0])
    raise ImportError("cannot find the httpx module under openai.DefaultAsyncHttpxClient")


httpx = _httpx_module()

MAX_IDLE = 256  # idle connections kept per server; the engine's limiter bounds those in use
_HEAD_END = b"\r\n\r\n"


class _StaleConnection(Exception):
    """A reused keep-alive connection closed before any byte of the answer came back."""


def lean_transport_applies(base_url: str | None) -> bool:
    """True unless a proxy from the environment would apply to `base_url` (the stock transport
    honours HTTP(S)_PROXY/ALL_PROXY and NO_PROXY; this one does not speak to proxies)."""
    url = httpx.URL(base_url or "https://api.openai.com/v1")
    proxies = urllib.request.getproxies()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(url.host))


class LeanTransport(httpx.AsyncBaseTransport):
    """See the module docstring. One instance per client; safe for many concurrent requests."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self._ssl = ssl_context  # made on the first https connection, as httpx makes it (certifi's roots)
        self._idle: dict[tuple[str, str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def handle_async_request(self, request: Any) -> Any:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = _request_head(request)
        while True:
            reused, conn = self._take(key)
            if conn is None:
                conn = await self._connect(request, key, timeouts.get("connect"))
            try:
                status, headers, content, keep = await _exchange(request, conn, head + body, timeouts, reused)
            except _StaleConnection:
                conn[1].close()
                continue  # the server had closed this idle connection: take another, or a new one
            except BaseException:
                conn[1].close()  # never reuse a connection whose answer was not read whole
                raise
            idle = self._idle.setdefault(key, [])
            if keep and len(idle) < MAX_IDLE:
                idle.append(conn)
            else:
                conn[1].close()
            return httpx.Response(
                status, headers=headers, stream=httpx.ByteStream(content), extensions={"http_version": b"HTTP/1.1"}
            )

    def _take(self, key: tuple[str, str, int]) -> tuple[bool, Any]:
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return True, (reader, writer)
            writer.close()
        return False, None

    async def _connect(self, request: Any, key: tuple[str, str, int], timeout: float | None) -> Any:
        scheme, host, port = key
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            tls = self._ssl
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None), timeout
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


def _request_head(request: Any) -> bytes:
    url = request.url
    target = url.raw_path  # path and query, already percent-encoded
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + _HEAD_END


async def _exchange(
    request: Any, conn: Any, data: bytes, timeouts: dict[str, float | None], reused: bool
) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    """Send one request and read its whole answer: (status, headers, body, keep the connection)."""
    reader, writer = conn
    try:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), timeouts.get("write"))
    except asyncio.TimeoutError:
        raise httpx.WriteTimeout("sending the request timed out", request=request) from None
    except OSError as exc:
        if reused:
            raise _StaleConnection() from None
        raise httpx.WriteError(f"sending the request failed: {exc}", request=request) from None
    try:
        return await asyncio.wait_for(_read_answer(request, reader, reused), timeouts.get("read"))
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout("the server did not answer in time", request=request) from None
    except OSError as exc:
        raise httpx.ReadError(f"reading the answer failed: {exc}", request=request) from None


async def _read_answer(request: Any, reader: asyncio.StreamReader, reused: bool) -> Any:
    try:
        head = await reader.readuntil(_HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if reused and not exc.partial:
            raise _StaleConnection() from None
        raise httpx.RemoteProtocolError("the server closed the connection without an answer", request=request) from None
    except ConnectionResetError:
        if reused:
            raise _StaleConnection() from None
        raise
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("the answer's headers are too long", request=request) from None
    status_line, *header_lines = head[: -len(_HEAD_END)].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}", request=request)
    status = int(parts[1])
    headers, length, chunked, keep = [], None, False, parts[0] == b"HTTP/1.1"
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}", request=request)
        name, value = name.strip().lower(), value.strip()
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif name == b"connection":
            keep = value.lower() == b"keep-alive" or (keep and value.lower() != b"close")
    try:
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif chunked:
            content = await _read_chunked(reader)
        elif length is not None:
            content = await reader.readexactly(length)
        else:
            content, keep = await reader.read(), False  # the body runs to the connection's close
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError("the connection closed in the middle of the answer", request=request) from None
    return status, headers, content, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the CRLF after each chunk
