"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending requests back to
back, recording per-request latency. Deliberately minimal so that the generator, not the server, is
the cheap side (httpx costs ~10x more CPU per request). Reusable by every bench script.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    seconds: float
    errors: int
    wrong: int = 0  # answers with the expected status that ``check`` refused

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        index = min(len(data) - 1, max(0, round(p / 100 * len(data)) - 1))
        return data[index]

    def row(self) -> str:
        return (
            f"{self.name:<28} {self.count:>7} req {self.rate:>9.0f} req/s  p50 {self.pct(50):6.2f} ms  "
            f"p99 {self.pct(99):6.2f} ms  mean {statistics.fmean(self.latencies_ms or [0]):6.2f} ms  "
            f"errors {self.errors}" + (f"  WRONG {self.wrong}" if self.wrong else "")
        )


RequestFactory = Callable[[int], bytes]
#: ``check(i, body)``: whether the answer to request ``i`` (with the expected status) is the right one.
ResponseCheck = Callable[[int, bytes], bool]


def build_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lower = name.strip().lower()
        if lower == b"content-length":
            length = int(value.strip())
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]
    return status, await reader.readexactly(length) if length else b""


async def run(
    name: str,
    port: int,
    factory: RequestFactory,
    *,
    concurrency: int,
    total: int,
    expect: int = 200,
    warmup: int = 0,
    check: ResponseCheck | None = None,
) -> Result:
    """Send ``total`` requests over ``concurrency`` connections; ``factory(i)`` builds request ``i``
    (and ``check``, when given, judges its answer)."""
    counter = iter(range(total + warmup))
    latencies: list[float] = []
    errors = wrong = 0

    async def worker() -> None:
        nonlocal errors, wrong
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                payload = factory(i)
                start = time.perf_counter()
                writer.write(payload)
                status, body = await _read_response(reader)
                elapsed = (time.perf_counter() - start) * 1000
                if i >= warmup:
                    latencies.append(elapsed)
                    if status != expect:
                        errors += 1
                    elif check is not None and not check(i, body):
                        wrong += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - started, errors, wrong)


async def run_rate(
    name: str,
    port: int,
    factory: RequestFactory,
    *,
    concurrency: int,
    rate: float,
    seconds: float,
    expect: int = 200,
    check: ResponseCheck | None = None,
) -> Result:
    """Open loop: ``concurrency`` connections together offer ``rate`` requests/s for ``seconds``.

    Latency is measured from each request's scheduled send time, so a stalled server is charged for
    the requests it delayed (no coordinated omission).
    """
    per_worker = rate / concurrency
    total_per_worker = int(per_worker * seconds)
    latencies: list[float] = []
    errors = wrong = 0
    counter = iter(range(10**9))

    async def worker(offset: float) -> None:
        nonlocal errors, wrong
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.perf_counter() + offset
        try:
            for k in range(total_per_worker):
                scheduled = start + k / per_worker
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                i = next(counter)
                writer.write(factory(i))
                status, body = await _read_response(reader)
                latencies.append((time.perf_counter() - scheduled) * 1000)
                if status != expect:
                    errors += 1
                elif check is not None and not check(i, body):
                    wrong += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker(i / rate) for i in range(concurrency)))
    return Result(name, latencies, time.perf_counter() - began, errors, wrong)
