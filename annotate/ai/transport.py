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

Answers are taken up to a size (`max_bytes`, 16 MiB unless the job says otherwise), on the wire and
after content decoding, on this transport and on the stock one: a server that sends a 1 GiB body, a
gzip bomb or a body without end costs at most that much memory. The lean transport stops reading at
the cap; on both transports a response hook (`make_http_client`) counts the body as httpx reads it and
undoes gzip/deflate itself with zlib's output limit, so no decoder inflates more than the cap. An
answer over the cap, or framed in a way HTTP/1.1 forbids (a Content-Length that is not a number, two
that differ, Content-Length beside chunked encoding, a bad chunk size), raises `AnswerRefused`: the
engine records it as the request's error and does not ask again.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import ssl
import urllib.request
import zlib
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
DEFAULT_MAX_BYTES = 16 * 2**20  # the largest answer taken, on the wire and decoded
_HEAD_END = b"\r\n\r\n"
_READ = 65536  # bytes per read of a body that runs to the connection's close
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_CODINGS = ("gzip", "x-gzip", "deflate")  # what the response hook decodes (and so all we accept)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


class _StaleConnection(Exception):
    """A reused keep-alive connection closed before any byte of the answer came back."""


class AnswerRefused(httpx.RemoteProtocolError):
    """An answer not taken: larger than the cap, or framed against HTTP/1.1. The same request would
    get the same answer, so this is the request's error, not a reason to retry."""


def redact_url(text: str) -> str:
    """`text` with the `user:password@` of every URL in it replaced by `***@`: what is saved or
    printed about a server (run logs, the cache, error texts) never holds its credentials."""
    return _USERINFO.sub(r"\1***@", text)


def too_large(max_bytes: int, what: str = "is larger than") -> str:
    return f"the answer {what} {max_bytes / 2**20:g} MiB (--max-answer-mib)"


def _shown(value: bytes, limit: int = 40) -> str:
    return repr(value[:limit].decode("latin-1"))


def make_http_client(max_bytes: int = DEFAULT_MAX_BYTES, lean: bool = True) -> Any:
    """The httpx client under one `openai` client: on the lean transport, or (`lean=False`) on the
    stock one, which keeps honouring proxies from the environment (httpx drops them when a transport
    is given, so the stock path gets none). Both take answers up to `max_bytes` (module docstring)."""
    transport = LeanTransport(max_bytes=max_bytes) if lean else None
    return openai.DefaultAsyncHttpxClient(
        transport=transport,
        event_hooks={"response": [_size_cap(max_bytes)]},
        headers={"Accept-Encoding": "gzip, deflate"},  # only codings the hook can cap
    )


def _size_cap(max_bytes: int) -> Any:
    async def hook(response: Any) -> None:
        # Runs before httpx reads the body: from here on it reads through the capped stream, and
        # finds no Content-Encoding left to decode (an unbounded decoder) itself.
        codings = [
            c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True) if c.strip()
        ]
        codings = [c for c in codings if c != "identity"]
        unknown = [c for c in codings if c not in _CODINGS]
        if unknown or len(codings) > 2:
            raise AnswerRefused(
                f"the answer's Content-Encoding {', '.join(codings)[:40]!r} is not one prefkit asked for",
                request=response.request,
            )
        if codings:
            del response.headers["content-encoding"]
        response.stream = _CappedBody(response.stream, codings, max_bytes, response.request)

    return hook


class _CappedBody(httpx.AsyncByteStream):
    """A response body read through a size cap, its content codings undone with zlib's output limit."""

    def __init__(self, inner: Any, codings: list[str], max_bytes: int, request: Any):
        self.inner, self.codings, self.max, self.request = inner, codings, max_bytes, request

    async def __aiter__(self) -> Any:
        stages = [_Inflate(c, self.max, self.request) for c in reversed(self.codings)]
        wire = 0
        async for chunk in self.inner:
            wire += len(chunk)
            if wire > self.max:
                raise AnswerRefused(too_large(self.max), request=self.request)
            for stage in stages:
                chunk = stage.feed(chunk)
            if chunk:
                yield chunk
        for stage in stages:
            stage.finish()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Inflate:
    """One gzip or deflate coding undone, producing at most `cap` bytes in all."""

    def __init__(self, coding: str, cap: int, request: Any):
        self.coding, self.cap, self.request, self.made, self.fed = coding, cap, request, 0, False
        self.wbits = zlib.MAX_WBITS | 16 if coding != "deflate" else zlib.MAX_WBITS
        self.d = zlib.decompressobj(self.wbits)

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            if self.d.eof:  # a gzip file may hold several members; zero padding after the last is allowed
                if self.coding == "deflate" or not data.strip(b"\0"):
                    return b"".join(out)
                self.d = zlib.decompressobj(self.wbits)
            try:
                piece = self.d.decompress(data, self.cap - self.made + 1)
            except zlib.error as exc:
                if self.coding == "deflate" and not self.fed:  # "deflate" sent raw, without zlib's header
                    self.wbits, self.d, self.fed = -zlib.MAX_WBITS, zlib.decompressobj(-zlib.MAX_WBITS), True
                    continue
                raise httpx.DecodingError(
                    f"the answer's {self.coding} body is corrupt: {exc}", request=self.request
                ) from None
            self.fed = True
            self.made += len(piece)
            if self.made > self.cap:
                raise AnswerRefused(too_large(self.cap, f"decodes ({self.coding}) to more than"), request=self.request)
            out.append(piece)
            # Under the output limit zlib took all input, or stopped at the end of a member.
            data = self.d.unused_data if self.d.eof else b""
        return b"".join(out)

    def finish(self) -> None:
        if self.fed and not self.d.eof:
            raise httpx.DecodingError(f"the answer's {self.coding} body ends early", request=self.request)


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

    def __init__(self, ssl_context: ssl.SSLContext | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes  # the longest body read from the wire (decoding is capped by the hook)
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
                status, headers, content, keep = await _exchange(
                    request, conn, head + body, timeouts, reused, self.max_bytes
                )
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
    request: Any, conn: Any, data: bytes, timeouts: dict[str, float | None], reused: bool, max_bytes: int
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
        return await asyncio.wait_for(_read_answer(request, reader, reused, max_bytes), timeouts.get("read"))
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout("the server did not answer in time", request=request) from None
    except OSError as exc:
        raise httpx.ReadError(f"reading the answer failed: {exc}", request=request) from None


async def _read_answer(request: Any, reader: asyncio.StreamReader, reused: bool, max_bytes: int) -> Any:
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
    headers, lengths, codings, keep = [], [], [], parts[0] == b"HTTP/1.1"
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}", request=request)
        name, value = name.strip().lower(), value.strip()
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if name == b"content-length":
            lengths += [v.strip() for v in value.split(b",")]
        elif name == b"transfer-encoding":
            codings += [v.strip().lower() for v in value.split(b",") if v.strip()]
        elif name == b"connection":
            keep = value.lower() == b"keep-alive" or (keep and value.lower() != b"close")
    chunked, length = _framing(request, lengths, codings, max_bytes)
    try:
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif chunked:
            content = await _read_chunked(request, reader, max_bytes)
        elif length is not None:
            content = await reader.readexactly(length)
        else:
            content, keep = await _read_to_close(request, reader, max_bytes), False
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError("the connection closed in the middle of the answer", request=request) from None
    except asyncio.LimitOverrunError:
        raise AnswerRefused("a chunk-size line of the answer is too long", request=request) from None
    return status, headers, content, keep


def _framing(request: Any, lengths: list[bytes], codings: list[bytes], max_bytes: int) -> tuple[bool, int | None]:
    """(chunked, Content-Length) of an answer, refusing what RFC 9112 forbids or lets a reader
    misread (section 6: a response with both is a smuggling attempt "ought to be handled as an error")."""
    if codings and lengths:
        raise AnswerRefused("the answer has both Transfer-Encoding and Content-Length", request=request)
    if codings:
        if codings != [b"chunked"]:
            raise AnswerRefused(f"unsupported Transfer-Encoding {_shown(b', '.join(codings))}", request=request)
        return True, None
    if not lengths:
        return False, None
    bad = [v for v in lengths if not _DIGITS.fullmatch(v)]
    if bad:
        raise AnswerRefused(f"the answer's Content-Length {_shown(bad[0])} is not a number", request=request)
    if len({int(v) for v in lengths}) > 1:
        raise AnswerRefused(
            f"the answer has conflicting Content-Lengths {_shown(b', '.join(lengths))}", request=request
        )
    length = int(lengths[0])
    if length > max_bytes:
        raise AnswerRefused(f"{too_large(max_bytes)}: Content-Length {length}", request=request)
    return False, length


async def _read_to_close(request: Any, reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    parts, size = [], 0
    while data := await reader.read(_READ):
        size += len(data)
        if size > max_bytes:
            raise AnswerRefused(too_large(max_bytes), request=request)
        parts.append(data)
    return b"".join(parts)


async def _read_chunked(request: Any, reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks, total = [], 0
    while True:
        line = await reader.readuntil(b"\r\n")
        total += len(line)  # size lines and trailers count too: an endless run of them is a body without end
        digits = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(digits):
            raise AnswerRefused(f"bad chunk size {_shown(digits)} in the answer", request=request)
        size = int(digits, 16)
        if total + size > max_bytes:
            raise AnswerRefused(too_large(max_bytes), request=request)
        if size == 0:
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                total += len(line)
                if total > max_bytes:
                    raise AnswerRefused(too_large(max_bytes), request=request)
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        total += size
        if await reader.readexactly(2) != b"\r\n":  # the CRLF after each chunk
            raise AnswerRefused("a chunk of the answer is longer than its size says", request=request)
