"""Running streaming flows: one micro-batcher thread per enabled streaming flow, in any process that runs
a worker. Only one process of a deployment steps a flow at a time (a lock file per flow in the home); a
second one stands by and takes over when the first exits or dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Collection
from pathlib import Path

from headwater.container import Services
from headwater.errors import NotFound
from headwater.runtime.streaming import IDLE_POLL_SECONDS, MicroBatcher, is_streaming
from headwater.stores.metadata import Resource, Scope

log = logging.getLogger("headwater.streaming")

STANDBY_POLL_SECONDS = 1.0
BATCHER_NICENESS = 10
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


def drive(batcher: MicroBatcher, stop: threading.Event) -> None:
    """Step until ``stop``. Only one process of a deployment steps a flow at a time (a lock file per
    flow in the home): a second one stands by and takes over when the first exits or dies."""
    _lower_priority()
    with _FlowLock(batcher.services.settings.streams_dir / ".batchers" / f"{batcher.flow_id}.lock") as lock:
        while not stop.is_set() and not lock.acquire():
            stop.wait(STANDBY_POLL_SECONDS)
        _loop(batcher, stop)


def _loop(batcher: MicroBatcher, stop: threading.Event) -> None:
    """Step ``batcher`` until ``stop``. A step that raises failed for a reason no message is at fault for
    (messages that cannot be mapped or validated are row errors inside the step): it is retried with
    exponential backoff (:data:`FIRST_BACKOFF_SECONDS` doubling to :data:`MAX_BACKOFF_SECONDS`), and the
    flow's run shows it failing meanwhile. The traceback is logged once per failing episode and when the
    error changes, then one line per retry."""
    flush = batcher.services.settings.stream_flush_seconds
    backoff = FIRST_BACKOFF_SECONDS
    attempts = 0
    last_error = ""
    while not stop.is_set():
        try:
            result = batcher.step()
        except NotFound:
            return  # the flow, its dataset or its schema is gone
        except Exception as exc:
            attempts += 1
            error = f"{type(exc).__name__}: {exc}"
            if error != last_error:
                log.exception(
                    "streaming flow %s: micro-batch failed; retrying in %.0fs", batcher.flow_id, backoff
                )
            else:
                log.warning(
                    "streaming flow %s: micro-batch failed again (%d attempts): %s; retrying in %.0fs",
                    batcher.flow_id,
                    attempts,
                    error,
                    backoff,
                )
            last_error = error
            _report_failure(batcher, exc, attempts, backoff)
            batcher.reset()
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        if attempts:
            log.info(
                "streaming flow %s: micro-batches succeed again after %d failed", batcher.flow_id, attempts
            )
        backoff, attempts, last_error = FIRST_BACKOFF_SECONDS, 0, ""
        if result.committed:
            stop.wait(max(0.0, flush - (time.monotonic() - batcher.last_commit)))
        elif not result.consumed:
            stop.wait(IDLE_POLL_SECONDS)


def _report_failure(batcher: MicroBatcher, error: Exception, attempts: int, retry_in: float) -> None:
    """Show the failure in the flow's runs; when that fails too (the metadata database is what is down),
    the log has it."""
    try:
        batcher.failed(error, attempts, retry_in)
    except Exception:
        log.warning(
            "streaming flow %s: could not record the failure in its run", batcher.flow_id, exc_info=True
        )


def _lower_priority() -> None:
    """Run this thread at a lower CPU priority (Linux: per thread). Where the inlets share cores with the
    micro-batchers, an acknowledgement is waited on by a client and a commit is not: acknowledging first
    keeps the inlets' tail latency down, and the micro-batches catch up in the idle time."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BATCHER_NICENESS)


class _FlowLock:
    """A non-blocking exclusive flock, released when the process exits however it exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> _FlowLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self

    def acquire(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


class StreamingSupervisor:
    """Keeps one micro-batcher thread per enabled streaming flow (of ``scopes``, when given)."""

    def __init__(self, services: Services, scopes: Collection[Scope] | None = None) -> None:
        self.services = services
        self.scopes = scopes
        self.stop_event = threading.Event()
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def refresh(self) -> None:
        wanted: dict[str, Resource] = {}
        for flow in self.services.store.scan_kind("flow"):
            if self.scopes is not None and flow.scope not in self.scopes:
                continue
            if is_streaming(flow) and flow.doc.get("state") == "enabled":
                wanted[flow.id] = flow
        for flow_id in list(self._threads):
            thread, stop = self._threads[flow_id]
            if flow_id not in wanted or not thread.is_alive():
                stop.set()
                del self._threads[flow_id]
        for flow_id, flow in wanted.items():
            if flow_id not in self._threads:
                stop = threading.Event()
                batcher = MicroBatcher(self.services, flow)
                thread = threading.Thread(
                    target=drive, args=(batcher, stop), name=f"stream-{flow_id[:8]}", daemon=True
                )
                thread.start()
                self._threads[flow_id] = (thread, stop)

    def run_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("streaming supervisor: refresh failed")
            self.stop_event.wait(1.0)
        self.stop_all()
        self._threads.clear()

    def stop_all(self) -> None:
        threads = list(self._threads.values())
        for _, stop in threads:
            stop.set()
        for thread, _ in threads:
            thread.join(timeout=10)

    def stop(self) -> None:
        self.stop_event.set()


def start_in_background(services: Services, scopes: Collection[Scope] | None = None) -> StreamingSupervisor:
    supervisor = StreamingSupervisor(services, scopes)
    threading.Thread(target=supervisor.run_forever, name="headwater-streaming", daemon=True).start()
    return supervisor
