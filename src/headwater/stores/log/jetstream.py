"""NATS JetStream as the streaming log (scale-out): one JetStream stream, one subject per log stream.

    JetStream stream ``stream_name`` (file storage), subjects ``<subject_prefix>.>``
    log stream "flow-1"  ->  subject ``<subject_prefix>.flow-1``

Offsets are JetStream sequence numbers, shared by all subjects of the stream: a record's offset is its
sequence, ``next_offset`` is that + 1 (the next record of the same subject usually comes later; reads
filter by subject), and ``START`` (0) reads from the beginning. ``append`` publishes every payload at
once and returns when the server has acknowledged each (PubAck): that is the durability point. A
JetStream server acknowledges once the message is in its file store, before fsync: files are synced on a
timer (``sync_interval``, 2 minutes by default, configurable from nats-server 2.10 on; 2.9 has no
setting). So with one server an acknowledged record survives a crash of nats-server or of Headwater but
not a power cut of the machine; with ``replicas=3`` the ack means a quorum of servers holds it, which
survives losing one machine but not a power cut of all. Where acks must mean "on disk", run nats-server
2.10+ with ``sync_interval: always`` (slower), or use the local log, which fsyncs before every ack.

nats-py is asyncio-only; the log runs one event loop in a daemon thread and every call, from any thread,
is a coroutine submitted to it. The connection reconnects forever; calls made meanwhile wait up to
``timeout`` and then raise :class:`LogUnavailable` (transient: nothing was acknowledged, retry later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from headwater.errors import LogUnavailable
from headwater.stores.log.base import LogRecord, StreamLog, check_stream_name
from headwater.stores.log.jsreplies import pull_ended_cleanly, sequence_and_ms
from headwater.stores.log.jswake import AppendWake, StreamState

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.manager import JetStreamManager

log = logging.getLogger(__name__)

T = TypeVar("T")
CONSUMER_IDLE_SECONDS = 30.0  # the server deletes a read's consumer after this long without pulls
CURSOR_ANSWER_SECONDS = 1.0  # a no-wait pull is answered at once; silence means the consumer is gone


class JetStreamLog(StreamLog):
    """Log streams as subjects of one JetStream stream. ``replicas`` applies when the stream is created."""

    def __init__(
        self,
        url: str,
        stream_name: str = "HEADWATER_STREAMS",
        subject_prefix: str = "headwater.streams",
        *,
        replicas: int = 1,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.stream_name = stream_name
        self.subject_prefix = subject_prefix
        self.replicas = replicas
        self.timeout = timeout
        self._nc: Client | None = None
        self._acks: dict[str, asyncio.Future[int]] = {}
        self._ack_prefix = ""
        self._next_token = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cursors: dict[str, _Cursor] = {}  # subject -> the consumer the last read on it left idle
        self._next_prune = 0.0
        self._closed = self._closing = False
        self._wake = StreamState(stream_name, subject_prefix)
        self._waker = AppendWake(self._wake)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="headwater-jetstream", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._connect())
        except BaseException:
            self._stop_loop()
            raise

    # --- the interface, from any thread ---
    def append(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """Return the payloads' sequence numbers once JetStream has acknowledged every one."""
        return self._call(self._append(self._subject(stream), list(payloads)))

    async def append_async(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        return await asyncio.wrap_future(self._submit(self._append(self._subject(stream), list(payloads))))

    def read(
        self, stream: str, offset: int, max_records: int = 10_000, max_bytes: int = 64 << 20
    ) -> list[LogRecord]:
        return self._call(self._read(self._subject(stream), offset, max(1, max_records), max(1, max_bytes)))

    def end_offset(self, stream: str) -> int:
        return self._call(self._end_offset(self._subject(stream)))

    def release(self, stream: str, before: int) -> None:
        if before > 1:
            self._call(self._purge(self._subject(stream), before))

    def drop(self, stream: str) -> None:
        self._call(self._purge(self._subject(stream), None))

    def appended(self, token: object = None) -> tuple[object, frozenset[str] | None]:
        """The stream's last sequence; when it moved, each subject's count against the token's."""
        return self._call(self._appended(token))

    def wait_appended(self, token: object, timeout: float) -> tuple[object, frozenset[str] | None]:
        """``appended`` once a record is published on the stream's subjects, or after ``timeout``: the
        waiters of the process share one subscription, and nothing is asked while none comes (see
        jswake.py). Waits of more than ``self.timeout`` are made of several."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            wait = min(max(0.0, deadline - time.monotonic()), self.timeout)
            token, streams = self._call(self._wait_appended(token, wait))
            if streams is None or streams or time.monotonic() >= deadline:
                return token, streams

    def close(self) -> None:
        """Drain the connection (pending acks and deletes finish), then stop the loop thread."""
        if self._closed:
            return
        self._closing = True
        try:
            self._call(self._shutdown())
        finally:
            self._closed = True
            self._stop_loop()

    # --- the loop thread ---
    def _subject(self, stream: str) -> str:
        return f"{self.subject_prefix}.{check_stream_name(stream)}"

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._closed:
            coro.close()
            raise RuntimeError("the streaming log is closed")
        return asyncio.run_coroutine_threadsafe(self._guarded(coro), self._loop)

    async def _guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro``, turning NATS errors and timeouts into :class:`LogUnavailable`."""
        from nats.errors import Error as NatsError

        try:
            return await coro
        except (NatsError, TimeoutError) as exc:
            if isinstance(exc, LogUnavailable):
                raise
            raise LogUnavailable(f"JetStream at {self.url} failed ({exc!r}); retry later") from exc

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("JetStreamLog's blocking calls cannot run on its own event loop")
        future = self._submit(coro)
        try:
            return future.result(self.timeout * 3)  # the coroutines time out first; this is a backstop
        except FutureTimeout:
            future.cancel()
            raise LogUnavailable(f"JetStream at {self.url} did not answer; retry later") from None

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _connect(self) -> None:
        from nats.aio.client import Client

        self._nc = Client()
        try:
            await self._nc.connect(
                self.url,
                name="headwater-log",
                connect_timeout=max(1, int(self.timeout)),
                reconnect_time_wait=1,
                max_reconnect_attempts=1,  # the first connection gives up after a second try ...
                skip_subject_validation=True,  # subjects are built here from checked stream names
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            raise LogUnavailable(
                f"cannot connect to NATS at {self.url} ({exc!r}): start nats-server with JetStream (-js) "
                "there, or set HEADWATER_STREAM_LOG=local"
            ) from exc
        self._nc.options["max_reconnect_attempts"] = -1  # ... and a lost one is retried forever
        self._ack_prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._ack_prefix + "*", cb=self._on_ack)
        await self._ensure_stream()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection error: %s", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS at %s; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.url)

    def _jsm(self) -> JetStreamManager:
        assert self._nc is not None
        return self._nc.jsm(timeout=self.timeout)

    async def _ensure_stream(self) -> None:
        """Create the JetStream stream, or add our subjects to an existing one of that name."""
        from nats.errors import NoRespondersError
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

        jsm, wanted = self._jsm(), f"{self.subject_prefix}.>"
        try:
            info = await jsm.stream_info(self.stream_name)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream_name,
                subjects=[wanted],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
                num_replicas=self.replicas,
            )
            try:
                await jsm.add_stream(config)
                return
            except BadRequestError as exc:  # created by another process meanwhile, or a bad config
                try:
                    info = await jsm.stream_info(self.stream_name)
                except NotFoundError:
                    raise LogUnavailable(f"cannot create JetStream stream {self.stream_name}: {exc}") from exc
        except (ServiceUnavailableError, NoRespondersError) as exc:
            raise LogUnavailable(f"no JetStream at {self.url} ({exc!r}): run nats-server with -js") from exc
        subjects = list(info.config.subjects or [])
        if wanted not in subjects:
            await jsm.update_stream(info.config.evolve(subjects=[*subjects, wanted]))

    # --- appending ---
    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject[len(self._ack_prefix) :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(_NoStream())
            return
        try:
            answer = orjson.loads(msg.data)
            future.set_result(int(answer["seq"]))
        except (ValueError, KeyError, TypeError):
            future.set_exception(LogUnavailable(f"JetStream refused a record: {msg.data[:300]!r}"))

    async def _append(self, subject: str, payloads: list[bytes]) -> list[int]:
        try:
            return await self._publish(subject, payloads)
        except _NoStream:  # the JetStream stream was deleted: nothing was stored, so publish again
            await self._ensure_stream()
            try:
                return await self._publish(subject, payloads)
            except _NoStream:
                raise LogUnavailable(f"no JetStream stream takes {subject} at {self.url}") from None

    async def _publish(self, subject: str, payloads: list[bytes]) -> list[int]:
        """Publish every payload, then wait for all acks: one round trip for the batch, not one each."""
        nc = self._nc
        assert nc is not None
        for payload in payloads:
            if len(payload) > nc.max_payload:
                raise ValueError(f"a record holds at most {nc.max_payload} bytes here, not {len(payload)}")
        loop = asyncio.get_running_loop()
        waiting: list[tuple[str, asyncio.Future[int]]] = []
        try:
            for payload in payloads:
                self._next_token += 1
                token = str(self._next_token)
                future: asyncio.Future[int] = loop.create_future()
                self._acks[token] = future
                waiting.append((token, future))
                await nc.publish(subject, payload, reply=self._ack_prefix + token)
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.gather(*(future for _, future in waiting)))
        except TimeoutError:
            raise LogUnavailable(
                f"JetStream at {self.url} did not acknowledge within {self.timeout}s"
            ) from None
        finally:
            for token, future in waiting:
                self._acks.pop(token, None)
                future.cancel()

    # --- reading ---
    async def _read(self, subject: str, offset: int, max_records: int, max_bytes: int) -> list[LogRecord]:
        """Records through an ephemeral pull consumer (a cursor), one pull for the whole batch. A read
        from where the previous one on the subject ended reuses its cursor: one round trip when there are
        records, two when there are none (the pull, then the subject's last sequence), and nothing is
        created on the server."""
        start = max(offset, 1)
        cursor = self._take_cursor(subject, start)
        if cursor is not None:
            records = await self._pull(cursor, max_records, max_bytes, CURSOR_ANSWER_SECONDS)
            if records is not None and (records or await self._end_offset(subject) <= start):
                return self._settle(subject, cursor, records)
            # The consumer is gone (it expired, or the server restarted), or it has not yet been told of
            # records the stream already acknowledged (the server signals consumers after the PubAck):
            # a new consumer reads the store itself.
            self._spawn(self._delete_consumer(cursor.name))
        cursor = await self._new_cursor(subject, start)
        if cursor is None:  # no JetStream stream (yet): nothing was appended
            return []
        if cursor.pending == 0:
            self._keep_cursor(subject, cursor)
            return []
        records = await self._pull(cursor, max_records, max_bytes, self.timeout)
        if records is None:
            self._spawn(self._delete_consumer(cursor.name))
            raise LogUnavailable(f"JetStream at {self.url} sent no records; retry later")
        return self._settle(subject, cursor, records)

    def _take_cursor(self, subject: str, start: int) -> _Cursor | None:
        now = self._loop.time()
        if now >= self._next_prune:  # forget cursors nobody came back for
            self._next_prune = now + CONSUMER_IDLE_SECONDS / 4
            for key, idle in list(self._cursors.items()):
                if now - idle.used > CONSUMER_IDLE_SECONDS / 2:
                    del self._cursors[key]
                    self._spawn(self._delete_consumer(idle.name))
        cursor = self._cursors.pop(subject, None)
        if cursor is not None and (cursor.position != start or now - cursor.used > CONSUMER_IDLE_SECONDS / 2):
            self._spawn(self._delete_consumer(cursor.name))
            return None
        return cursor

    def _settle(self, subject: str, cursor: _Cursor, records: list[LogRecord]) -> list[LogRecord]:
        if cursor.clean:
            if records:
                cursor.position = records[-1].next_offset
            self._keep_cursor(subject, cursor)
        else:
            self._spawn(self._delete_consumer(cursor.name))
        return records

    def _keep_cursor(self, subject: str, cursor: _Cursor) -> None:
        cursor.used = self._loop.time()
        other = self._cursors.get(subject)
        if other is not None:  # a concurrent read on the subject opened its own
            self._spawn(self._delete_consumer(other.name))
        self._cursors[subject] = cursor

    async def _new_cursor(self, subject: str, start: int) -> _Cursor | None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        name = "hwlog" + uuid.uuid4().hex
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=CONSUMER_IDLE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            info = await self._jsm().add_consumer(self.stream_name, config)
        except NotFoundError:
            return None
        return _Cursor(name, start, info.num_pending or 0)

    async def _pull(self, cursor: _Cursor, want: int, max_bytes: int, wait: float) -> list[LogRecord] | None:
        """One no-wait pull of up to ``want`` records; None when the server did not answer at all within
        ``wait`` seconds (the consumer does not exist). Sets ``cursor.clean`` when the consumer delivered
        exactly what is returned (so the next read may continue with it)."""
        nc = self._nc
        assert nc is not None
        records: list[LogRecord] = []
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        size = 0

        async def take(msg: Msg) -> None:
            nonlocal size
            if finished.done():
                return
            if msg.headers and "Status" in msg.headers:
                finished.set_result(pull_ended_cleanly(msg.headers))
                return
            seq, appended_ms = sequence_and_ms(msg.reply)
            records.append(LogRecord(seq, seq + 1, msg.data, appended_ms))
            size += len(msg.data)
            if len(records) >= want:
                finished.set_result(True)
            elif size >= max_bytes:  # the server may have sent more than we keep
                finished.set_result(False)

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=take, pending_bytes_limit=max(max_bytes, 64 << 20) * 2)
        cursor.clean = False
        try:
            request = {"batch": want, "no_wait": True, "max_bytes": max(max_bytes, nc.max_payload + 4096)}
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream_name}.{cursor.name}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            await asyncio.wait([finished], timeout=wait)
            if not finished.done() and not records:
                return None
            async with asyncio.timeout(self.timeout):  # the rest of a large batch
                cursor.clean = await finished
        except TimeoutError:
            pass  # keep what arrived; the cursor is not clean, so it is not reused
        finally:
            await sub.unsubscribe()
        return records

    async def _delete_consumer(self, name: str) -> None:
        with contextlib.suppress(Exception):  # it expires by itself after CONSUMER_IDLE_SECONDS
            await self._jsm().delete_consumer(self.stream_name, name)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_offset(self, subject: str) -> int:
        from nats.js.errors import NotFoundError

        try:
            last = await self._jsm().get_msg(self.stream_name, subject=subject)
        except NotFoundError:  # no such JetStream stream, or no message on the subject
            return self.START
        return (last.seq or 0) + 1

    async def _appended(self, token: object) -> tuple[object, frozenset[str] | None]:
        return await self._wake.changes(self._jsm(), token)

    async def _wait_appended(self, token: object, timeout: float) -> tuple[object, frozenset[str] | None]:
        assert self._nc is not None
        return await self._waker.wait(self._nc, self._jsm(), token, timeout)

    # --- reclaiming ---
    async def _purge(self, subject: str, before: int | None) -> None:
        from nats.js.errors import NotFoundError

        with contextlib.suppress(NotFoundError):  # no JetStream stream: nothing to purge
            await self._jsm().purge_stream(self.stream_name, seq=before, subject=subject)

    async def _shutdown(self) -> None:
        for cursor in self._cursors.values():
            self._spawn(self._delete_consumer(cursor.name))
        self._cursors.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        current = asyncio.current_task()
        rest = [task for task in asyncio.all_tasks() if task is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)


@dataclass(slots=True)
class _Cursor:
    """An ephemeral pull consumer of one subject, delivering from sequence ``position`` on."""

    name: str
    position: int
    pending: int
    used: float = 0.0
    clean: bool = False


class _NoStream(Exception):
    """No JetStream stream listens on the subject (the server answered 'no responders')."""
