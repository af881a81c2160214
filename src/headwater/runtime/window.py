"""Choosing the part of the delta column a batch run covers, from its flow and the flow's last checkpoint.

Contract: a run covers ``(windowStart, windowEnd]`` of the delta column. ``windowEnd`` is the run's
schedule slot (or the requested ``windowEndTime``, or now), minus the flow's settle time
(``options.lateArrivalSeconds``, default 0); ``windowStart`` is the requested ``windowStartTime`` if
the run names one (read exactly that), else the ``windowEnd`` of the flow's latest checkpoint, so
consecutive windows tile time without gaps, and rows that share the boundary timestamp belong to the
earlier window. A window never moves back: a run whose end falls before the previous end covers the
empty window at the previous end. A flow with no checkpoint yet starts at its schedule's ``startTime``
when ``backfill`` is false, else at the beginning. A flow without a delta column has no window.

Rows committed late at the source are caught by re-reading an overlap before the window start
(:func:`overlap_keys`, runtime/lookback.py); the window itself stays ``(start, end]``. Nothing here
reads the source or writes anything: the executor (runtime/executor.py) reads, maps and commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from headwater.connectors.base import lookback_seconds
from headwater.lake.iceberg import Checkpoint, Lake
from headwater.runtime import lookback
from headwater.services.plans import FlowPlan
from headwater.services.runs import parse_time
from headwater.stores.metadata import Resource
from headwater.stores.objectfiles import ObjectFiles

log = logging.getLogger("headwater.runtime")


@dataclass(frozen=True)
class Window:
    """The part of the delta column a run covers, ``(start, end]``; how it was chosen."""

    start: datetime | None
    end: datetime | None
    previous: Checkpoint | None = None  # the flow's checkpoint the start came from


@dataclass(frozen=True)
class Keys:
    """A run's overlap: the primary key it asks the connector for, where the read starts (before the
    window start by the lookback) and the filter that drops what the previous runs committed."""

    columns: tuple[str, ...]
    read_from: datetime | None
    filter: lookback.KeyFilter


def choose_window(lake: Lake, run: Resource, flow: FlowPlan, table: Any, delta: str | None) -> Window:
    """The window of ``run`` of ``flow`` (see the module docstring); ``table`` holds its checkpoints."""
    if not delta:
        return Window(None, None)
    params = run.doc.get("params") or {}
    start = parse_time(params.get("windowStartTime"), "params.windowStartTime")
    end = parse_time(params.get("windowEndTime"), "params.windowEndTime")
    if end is None:
        slot = run.doc.get("scheduledFor")
        end = datetime.fromisoformat(slot.replace("Z", "+00:00")) if slot else datetime.now(UTC)
        end = min(end, datetime.now(UTC))
    # Stop short of the end by the flow's settle time, if it has one (the overlap of the next run
    # catches late commits without delaying every row).
    end -= timedelta(seconds=_settle_seconds(flow.options))
    if start is not None:
        return Window(start, end)  # a window the run named: read exactly that
    previous = lake.latest_checkpoint(table, flowId=flow.flow_id)
    if previous is not None and previous.get("windowEnd"):
        start = datetime.fromisoformat(str(previous.get("windowEnd")))
        # Never move back: an end before the previous one (an older slot run late, a longer settle
        # time) would read the rows after it a second time.
        return Window(start, max(start, end), previous=previous)
    schedule = flow.schedule
    if schedule.get("backfill") is False and schedule.get("startTime"):
        start = datetime.fromtimestamp(int(schedule["startTime"]), UTC)
        return Window(start, max(start, end))
    return Window(None, end)


def overlap_keys(
    keys_files: ObjectFiles, flow: FlowPlan, connector: Any, params: Mapping[str, Any], window: Window
) -> Keys | None:
    """The overlap of this run (runtime/lookback.py), or None when it reads none; the previous run's
    keys are read from ``keys_files`` (``lookback.keys_files``)."""
    seconds = lookback_seconds(dict(flow.options), connector.default_lookback_seconds)
    if seconds <= 0 or window.end is None:
        return None
    read_from, committed = window.start, Counter[bytes]()
    previous = window.previous
    if previous is not None and window.start is not None and previous.get("keysFrom"):
        found = lookback.read_keys(
            keys_files,
            previous.get("keysFile") or "",
            int(previous.get("keyCount") or 0),
        )
        if found is None:
            log.warning("flow %s: its keys file is missing; this run reads no overlap", flow.flow_id)
        else:
            previous_from = datetime.fromisoformat(str(previous.get("keysFrom")))
            read_from = lookback.overlap_start(window.start, seconds, previous_from)
            committed = found
    keys_from = window.end - timedelta(seconds=seconds)
    if read_from is not None:
        keys_from = max(keys_from, read_from)
    pk = connector.primary_key(dict(params))
    return Keys(pk, read_from, lookback.KeyFilter(len(pk), window.start, keys_from, committed))


def _settle_seconds(options: Mapping[str, Any]) -> float:
    value = options.get("lateArrivalSeconds", 0)
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0.0
    )
