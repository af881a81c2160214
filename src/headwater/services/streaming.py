"""Streaming ingestion: inlets, routing of messages to streaming flows, and the durable log behind them.

CONTRACT used by other modules (keep these signatures):

    Streams(services)
        .log -> StreamLog                      the process's streaming log (opened on first use)
        await .publish(scope, flow_id, records, kind="raw") -> list[int]
            Append ``records`` (dicts shaped as the flow's source records) to the flow's log stream.
            Returns when they are durable: the caller may then answer 2xx. kind "raw" records go through
            the flow's mapping; kind "xdm" records are already shaped like the target schema; kind
            "delete" records are {"key": value} removals by the flow's ``options.upsertKey``.

Flow options the micro-batcher (runtime/streaming.py) reads:
    options.cadenceSeconds  how often the flow commits to its dataset; 0 (default) = continuous
                            (about every HEADWATER_STREAM_FLUSH_SECONDS)
    options.dedupPath       target path of a record's id: a record whose id is already in the dataset
                            is dropped (default "_id" when the target schema has it)
    options.upsertKey       target path of a primary key: a record replaces the row with the same key
                            (profile data); also the key of "delete" records
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from headwater.stores.log import StreamLog, open_log
from headwater.stores.metadata import Scope

if TYPE_CHECKING:
    from headwater.services.container import Services


class Streams:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._log: StreamLog | None = None
        self._lock = threading.Lock()

    @property
    def log(self) -> StreamLog:
        if self._log is None:
            with self._lock:
                if self._log is None:
                    settings = self.services.settings
                    self._log = open_log(settings.stream_log, str(settings.streams_dir))
        return self._log

    async def publish(
        self, scope: Scope, flow_id: str, records: Sequence[dict[str, Any]], kind: str = "raw"
    ) -> list[int]:
        now = int(time.time() * 1000)
        payloads = [orjson.dumps({"k": kind, "t": now, "o": scope.org_id, "r": r}) for r in records]
        return await self.log.append_async(flow_id, payloads)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
