"""Keeps one delivery task per enabled streaming activation flow, all in one event loop thread.

Across processes, a flow is delivered by one worker at a time: each task holds an exclusive flock on
``HOME/streams/.activations/<flow>.lock`` (released by the kernel when the process dies, however it
dies). A flow whose document changes (bindings, limits, state) is restarted with the new version.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from headwater.catalog.ids import FlowKind, flow_kind
from headwater.runtime.delivery.activation import run_stream
from headwater.runtime.streamsupervisor import _FlowLock
from headwater.stores.metadata import Resource, Scope

if TYPE_CHECKING:
    from headwater.container import Services

log = logging.getLogger("headwater.activation")
REFRESH_SECONDS = 1.0


class ActivationSupervisor:
    def __init__(self, services: Services, scopes: Collection[Scope] | None = None) -> None:
        self.services = services
        self.scopes = scopes
        self.stop_event = threading.Event()
        self._tasks: dict[str, tuple[asyncio.Task[None], str, list[bool]]] = {}

    def wanted(self) -> dict[str, Resource]:
        out: dict[str, Resource] = {}
        for flow in self.services.store.scan_kind("flow"):
            if self.scopes is not None and flow.scope not in self.scopes:
                continue
            if flow.doc.get("state") == "enabled" and flow_kind(flow.doc) is FlowKind.ACTIVATION:
                out[flow.id] = flow
        return out

    async def refresh(self) -> None:
        wanted = await asyncio.to_thread(self.wanted)
        for flow_id in list(self._tasks):
            task, etag, stop = self._tasks[flow_id]
            flow = wanted.get(flow_id)
            if flow is None or flow.etag != etag or task.done():
                stop[0] = True
                if task.done() or flow is None or flow.etag != etag:
                    del self._tasks[flow_id]
        for flow_id, flow in wanted.items():
            if flow_id not in self._tasks:
                stop = [False]
                task = asyncio.create_task(self._drive(flow, stop), name=f"activation-{flow_id[:8]}")
                self._tasks[flow_id] = (task, flow.etag, stop)

    async def _drive(self, flow: Resource, stop: list[bool]) -> None:
        path = self.services.settings.streams_dir / ".activations" / f"{flow.id}.lock"
        with _FlowLock(path) as lock:
            while not lock.acquire():  # another worker delivers this flow; stand by
                if stop[0] or self.stop_event.is_set():
                    return
                await asyncio.sleep(REFRESH_SECONDS)
            try:
                await run_stream(self.services, flow, lambda: stop[0] or self.stop_event.is_set())
            except Exception:
                log.exception("activation flow %s stopped on an error; restarting", flow.id)
                await asyncio.sleep(REFRESH_SECONDS)

    async def main(self) -> None:
        while not self.stop_event.is_set():
            try:
                await self.refresh()
            except Exception:
                log.exception("activation supervisor: refresh failed")
            await asyncio.sleep(REFRESH_SECONDS)
        for _, _, stop in self._tasks.values():
            stop[0] = True
        await asyncio.gather(*(t for t, _, _ in self._tasks.values()), return_exceptions=True)
        self._tasks.clear()

    def run_forever(self) -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self.main())

    def stop(self) -> None:
        self.stop_event.set()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): about a third less CPU per delivery."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def start_in_background(
    services: Services, scopes: Collection[Scope] | None = None
) -> tuple[ActivationSupervisor, threading.Thread]:
    supervisor = ActivationSupervisor(services, scopes)
    thread = threading.Thread(target=supervisor.run_forever, name="headwater-activation", daemon=True)
    thread.start()
    return supervisor, thread
