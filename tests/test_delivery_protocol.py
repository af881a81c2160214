"""The delivery HTTP client against responses the sink (tests/fakes/sink.py) does not send: a scripted
HTTP/1.1 server on 127.0.0.1 answers with exact bytes (chunked with extensions and trailers, interim
responses, bodies read until close, deflate, malformed or cut-short answers, slow drips). The tests against
the sink are in tests/test_delivery_client.py."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from headwater.connectors.http_destination import client as client_module
from headwater.connectors.http_destination.client import HttpClient, Response
from headwater.connectors.http_destination.errors import TransportError
from tests.test_delivery_client import post, run

# -- responses the sink does not send: a scripted server ----------------------------------------


@asynccontextmanager
async def scripted(*answers: bytes, piece: int = 0) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP/1.1 server answering the n-th request it reads with ``answers[n]`` (in ``piece``-byte
    writes when given), then closing the connection if that answer says ``Connection: close`` or has
    no framing. Yields its URL and the requests it read."""
    queue = list(answers)
    seen: list[bytes] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while queue:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
                seen.append(head + await reader.readexactly(length))
                answer = queue.pop(0)
                for start in range(0, len(answer), piece or len(answer)):
                    writer.write(answer[start : start + (piece or len(answer))])
                    await writer.drain()
                    if piece:
                        await asyncio.sleep(0.001)
                lowered = answer.lower()
                framed = b"content-length" in lowered or b"chunked" in lowered
                if b"connection: close" in lowered or not framed:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def scripted_run(answers: list[bytes], requests: int = 1, piece: int = 0, **options: Any) -> list[Response]:
    async def test(client: HttpClient) -> list[Response]:
        async with scripted(*answers, piece=piece) as (url, _):
            return [await post(client, f"{url}/{i}") for i in range(requests)]

    return run(test, **options)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("piece", [0, 3])
def test_chunked_with_extensions_and_trailers_in_any_pieces(piece: int) -> None:
    first, second = scripted_run([CHUNKED, OK], requests=2, piece=piece)
    assert (first.status, first.body, second.body) == (200, b"hello world", b"ok")


@pytest.mark.parametrize("piece", [0, 5])
def test_interim_responses_are_skipped(piece: int) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    [response] = scripted_run([answer], piece=piece)
    assert (response.status, response.body) == (200, b"ok")


def test_a_body_without_framing_is_read_until_close() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    first, second = scripted_run([answer, OK], requests=2)
    assert (first.body, second.body) == (b"until the end", b"ok")


def test_connection_close_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    responses = scripted_run([closing, OK], requests=2)
    assert [r.body for r in responses] == [b"ok", b"ok"]


def test_http_1_0_without_keep_alive_is_not_reused() -> None:
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    assert [r.status for r in scripted_run([old, OK], requests=2)] == [200, 200]


@pytest.mark.parametrize("encoding", ["deflate", "raw-deflate", "gzip"])
def test_deflate_and_gzip_bodies_are_decoded(encoding: str) -> None:
    text = b"decoded " * 100
    if encoding == "gzip":
        data = gzip.compress(text)
    elif encoding == "deflate":
        data = zlib.compress(text)
    else:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = compressor.compress(text) + compressor.flush()
    name = encoding.removeprefix("raw-").encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (name, len(data))
    answer = head + data
    [response] = scripted_run([answer], piece=50)
    assert response.body == text


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnope!",
    ],
)
def test_malformed_responses_are_protocol_errors(answer: bytes) -> None:
    with pytest.raises(TransportError) as caught:
        scripted_run([answer])
    assert (caught.value.kind, caught.value.transient) == ("protocol", True)
    assert "127.0.0.1" in str(caught.value)


def test_a_slow_drip_response_is_cut_at_the_total_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "TOTAL_SECONDS", 0.2)  # normally max(30 s, 10 x read)
    monkeypatch.setattr(client_module, "TOTAL_READS", 0)
    drip = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"." * 2000
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"did not finish its response within 0\.2 s") as caught:
        scripted_run([drip], piece=1)
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_response_cut_short_is_a_connect_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"
    with pytest.raises(TransportError, match="before the response was complete") as caught:
        scripted_run([cut])
    assert caught.value.kind == "connect"


def test_head_responses_have_no_body() -> None:
    async def test(client: HttpClient) -> list[Response]:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        async with scripted(head, OK) as (url, _):
            return [await client.request("HEAD", url, [], None), await post(client, url)]

    first, second = run(test)
    assert (first.body, second.body) == (b"", b"ok")
