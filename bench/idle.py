"""Idle cost: the CPU a server holding many flows uses when nothing arrives, against a fresh server.

Starts ``headwater serve`` (embedded worker) on 127.0.0.1 with its own temporary HEADWATER_HOME and a
destination sink on loopback (tests/fakes/sink.py), and measures the server's process tree over
``--seconds`` with no request open:

- baseline: the fresh server, no flow;
- idle: the same home served again with its worker, after creating ``--flows`` flows (half streaming
  ingestion from an HTTP API inlet into a dataset of their own, half streaming activation from an inlet
  to the sink) through the API of the server without its worker (quick), once the supervisors have
  started them all;
- one message: posted to one streaming inlet and one activation inlet; the first must show in its
  flow's run (committed) and the second reach the sink, each within the flush interval (plus the time
  a micro-batch takes).

Prints each figure as a share of one core, and the ratio idle / baseline. Target: idle < 5% of a core.
Exits 1 when a message is not committed or delivered in time.

    .venv/bin/python bench/idle.py [--flows 1000] [--seconds 10] [--activation-share 0.5] [--flush 1.0]
        [--log nats://127.0.0.1:4222] [--wait 0] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
from stream import FS, Deployment, Platform, stop  # noqa: E402
from tests.fakes.sink import SinkFake  # noqa: E402

HTTP_DESTINATION = "ce55fc04-f79b-4668-a8b7-2565a5c65ad4"
ACTIVATION = "cf0ccb51-d329-4dd2-a912-d3c87e068aa4"
TARGET_SHARE = 0.05  # of one core
CONCURRENCY = 12


# --- CPU of a process tree ------------------------------------------------------------------------------
def tree_ticks(root: int) -> int:
    """utime + stime (clock ticks) of ``root`` and its live descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(rest[1])
        ticks[int(entry)] = int(rest[11]) + int(rest[12])
    total = 0
    for pid, busy in ticks.items():
        at, hops = pid, 0
        while at not in (root, 0, 1) and hops < 50:
            at, hops = parents.get(at, 0), hops + 1
        if at == root:
            total += busy
    return total


def core_share(root: int, seconds: float) -> float:
    """The share of one core the process tree of ``root`` used over the next ``seconds``."""
    tick = os.sysconf("SC_CLK_TCK")
    began, before = time.monotonic(), tree_ticks(root)
    time.sleep(seconds)
    return (tree_ticks(root) - before) / tick / (time.monotonic() - began)


def settle(root: int, window: float = 2.0, limit: float = 90.0, quiet: float = 0.10) -> float:
    """Wait until start-up work is over (starting 1,000 flows creates their tables): a ``window`` uses
    less than ``quiet`` of a core, at most ``limit`` seconds; the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit and core_share(root, window) >= quiet:
        pass
    return time.monotonic() - began


# --- flows ----------------------------------------------------------------------------------------------
class Flows(Platform):
    """Streaming ingestion flows (``Platform.pipeline``) and streaming activation flows to the sink."""

    def __init__(self, deployment: Deployment, sink_url: str) -> None:
        super().__init__(deployment)
        conn = self._post(
            f"{FS}/connections",
            {
                "name": "Sink",
                "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
                "auth": {"specName": "None", "params": {}},
            },
        )
        self.target = self._post(
            f"{FS}/targetConnections",
            {
                "name": "Sink request",
                "baseConnectionId": conn,
                "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
                "params": {"method": "POST", "url": sink_url + "/hook", "body": '{"email": "${email}"}'},
            },
        )

    def activation(self, name: str) -> tuple[str, str]:
        """(inlet id, flow id) of a streaming activation flow from a fresh raw inlet to the sink."""
        inlet_id, source = self.inlet(name, "raw")
        flow = self._post(
            f"{FS}/flows",
            {
                "name": f"{name} flow",
                "flowSpec": {"id": ACTIVATION, "version": "1.0"},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [self.target],
                "transformations": [
                    {"name": "Variables", "params": {"bindings": {"email": {"source": "email"}}}}
                ],
                "options": {},
            },
        )
        return inlet_id, flow


def create_flows(flows: Flows, count: int, activation_share: float) -> tuple[Any, tuple[str, str]]:
    """``count`` flows, created ``CONCURRENCY`` at a time: (one streaming pipeline, one activation)."""
    activations = int(count * activation_share)
    jobs: list[Callable[[], Any]] = [
        (lambda n=n: flows.activation(f"act-{n}")) for n in range(activations)
    ] + [(lambda n=n: flows.pipeline(f"ing-{n}")) for n in range(count - activations)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        made = list(pool.map(lambda job: job(), jobs))
    return made[-1], made[0]


# --- one message through each kind ----------------------------------------------------------------------
def committed_after(flows: Flows, pipeline: Any, limit: float) -> float | None:
    """Post one message to ``pipeline``'s inlet; seconds until its flow's run counts it (None: not
    within ``limit``)."""
    body = pipeline.template.replace(b"@@ID@@", uuid.uuid4().hex.encode())
    response = flows.client.post(
        f"/collection/{pipeline.inlet_id}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    acked = time.monotonic()
    while time.monotonic() - acked < limit:
        runs = flows.client.get(f"{FS}/runs", params={"property": f"flowId=={pipeline.flow_id}"})
        for run in runs.json().get("items") or []:
            if run["metrics"]["recordSummary"].get("outputRecordCount", 0) >= 1:
                return time.monotonic() - acked
        time.sleep(0.05)
    return None


def delivered_after(flows: Flows, sink: SinkFake, inlet_id: str, limit: float) -> float | None:
    """Post one message to an activation inlet; seconds until the sink has it (None: not in time)."""
    response = flows.client.post(
        f"/collection/{inlet_id}",
        content=orjson.dumps({"email": "ada@example.com"}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    acked = time.monotonic()
    try:
        sink.wait_for(1, timeout=limit)
    except TimeoutError:
        return None
    return time.monotonic() - acked


# --- main -----------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--activation-share", type=float, default=0.5)
    parser.add_argument("--flush", type=float, default=1.0, help="HEADWATER_STREAM_FLUSH_SECONDS")
    parser.add_argument("--log", default="local", help="HEADWATER_STREAM_LOG: local or nats://host:4222")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds more before measuring the idle")
    parser.add_argument("--keep", action="store_true", help="keep the home (printed) for a closer look")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="hw-bench-idle-logs-"))
    deployment = Deployment(args.log, 1, True, args.flush, logs)
    deployment.env["HEADWATER_OUTBOUND_ALLOW"] = "127.0.0.1"
    began = time.monotonic()
    machine = f"{platform.node()}  {os.cpu_count()} cores  python {platform.python_version()}"
    print(f"bench/idle.py  log {args.log}  {machine}")
    with SinkFake() as sink:
        try:
            deployment.start()
            assert deployment.server is not None
            pid = deployment.server.pid
            settle(pid)
            baseline = core_share(pid, args.seconds)
            print(f"fresh server, no flow:     {baseline:6.1%} of a core over {args.seconds:g} s")
            stop(deployment.server)  # flows are created without the worker, then it starts them all
            deployment.env["HEADWATER_EMBEDDED_WORKER"] = "false"
            deployment.start()
            flows = Flows(deployment, sink.url)
            t0 = time.monotonic()
            pipeline, (inlet, _) = create_flows(flows, args.flows, args.activation_share)
            made = time.monotonic() - t0
            print(f"created {args.flows} flows in {made:.0f} s ({args.flows / made:.0f}/s), no worker")
            stop(deployment.server)
            del deployment.env["HEADWATER_EMBEDDED_WORKER"]
            deployment.start()
            assert deployment.server is not None
            pid = deployment.server.pid
            waited = settle(pid) + args.wait
            time.sleep(args.wait)
            idle = core_share(pid, args.seconds)
            ratio = idle / baseline if baseline > 0 else float("inf")
            verdict = "ok" if idle < TARGET_SHARE else "MISS"
            print(
                f"{args.flows} flows, idle:         {idle:6.1%} of a core over {args.seconds:g} s"
                f" (x{ratio:.1f} the fresh server; settled in {waited:.0f} s)  target < "
                f"{TARGET_SHARE:.0%}: {verdict}"
            )
            limit = args.flush + 5.0
            commit = committed_after(flows, pipeline, limit)
            delivery = delivered_after(flows, sink, inlet, limit)
            print(f"one message, ack -> committed:  {_seconds(commit)} (flush {args.flush:g} s)")
            print(f"one message, ack -> delivered:  {_seconds(delivery)}")
        finally:
            if args.keep:
                stop(deployment.server)
                print(f"home kept: {deployment.home}")
            else:
                deployment.close()
    print(f"total {time.monotonic() - began:.0f} s; server logs in {logs}")
    if commit is None or delivery is None:
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    return 0


def _seconds(value: float | None) -> str:
    return "NOT IN TIME" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    raise SystemExit(main())
