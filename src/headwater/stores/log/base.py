"""The streaming log: where an acknowledged message is kept until a micro-batcher commits it to a dataset.

A log holds named streams (one per streaming flow; the name is the flow id). ``append`` returns only when
the records are durable (the local log has fsynced them; JetStream has acknowledged them), so the inlet
may answer 2xx. Each record gets an ``offset``; ``read`` returns records in append order from an offset,
each with the offset to resume after it (``next_offset``). Consumers keep their position themselves (the
micro-batcher stores it in the Iceberg snapshot it commits), so the log needs no consumer state and a
restart resumes exactly where the last commit left off.

Waking readers: ``appended(token)`` says which streams gained records since ``token`` (an opaque value
it returned before), without blocking, and ``wait_appended(token, timeout)`` blocks until some did. A
reader of many streams (the supervisors) calls it instead of polling every stream: its idle cost is one
cheap check, whatever the number of streams. ``None`` for the streams means "any may have" (a backend
that cannot tell, or the first call): check each. A change may be reported that brought nothing new
(a release, another process's append to a stream read elsewhere), never the other way round: a record
appended after ``appended`` returned ``token`` is reported by a later call given that token.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")


def check_stream_name(stream: str) -> str:
    """Stream names are flow ids; anything else could escape the log's directory or subject space."""
    if not _STREAM_NAME.fullmatch(stream):
        raise ValueError(f"stream name must be 1-200 of [A-Za-z0-9_-], not {stream!r}")
    return stream


@dataclass(frozen=True, slots=True)
class LogRecord:
    offset: int  # where this record starts
    next_offset: int  # where the record after it starts: resume from here
    payload: bytes
    appended_ms: int  # wall-clock time the log accepted it (epoch ms)


class StreamLog(ABC):
    """Thread-safe; usable from several processes at once (API workers append, a worker reads)."""

    #: The offset of the first record of every stream (read from here to get everything).
    START: int = 0

    @abstractmethod
    def append(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """Append ``payloads`` in order; return their offsets once they are durable."""

    async def append_async(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """``append`` for the event loop: concurrent callers share one disk sync (group commit)."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.append, stream, payloads)

    @abstractmethod
    def read(
        self, stream: str, offset: int, max_records: int = 10_000, max_bytes: int = 64 << 20
    ) -> list[LogRecord]:
        """Records from ``offset`` on (at most ``max_records``/about ``max_bytes``); [] when none yet."""

    @abstractmethod
    def end_offset(self, stream: str) -> int:
        """The offset the next appended record will get (``START`` for an empty or unknown stream)."""

    @abstractmethod
    def release(self, stream: str, before: int) -> None:
        """Records before ``before`` are committed downstream; the log may reclaim their space."""

    @abstractmethod
    def drop(self, stream: str) -> None:
        """Forget a stream entirely (its flow was deleted)."""

    def appended(self, token: object = None) -> tuple[object, frozenset[str] | None]:
        """(a new token, the streams appended to since ``token``, or None: unknown, any may have). This
        default cannot tell: every call says any may have (readers then check each stream)."""
        return None, None

    def wait_appended(self, token: object, timeout: float) -> tuple[object, frozenset[str] | None]:
        """``appended(token)`` once a stream gained records since ``token``, or after ``timeout``
        seconds (then possibly with no stream). The default sleeps ``timeout`` and cannot tell."""
        import time

        time.sleep(max(0.0, timeout))
        return self.appended(token)

    def close(self) -> None:  # noqa: B027 - optional: logs holding nothing need not override it
        """Release connections and files."""
