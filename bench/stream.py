"""Streaming ingestion: the batch and single-message inlets, and how soon an acknowledged event is queryable.

Starts ``headwater serve`` on a fresh temporary home (by default ``--no-worker`` beside a separate
``headwater worker`` that runs the micro-batchers; ``--embedded`` runs them inside the server) and the
no-op baseline (bench/noop_app.py: FastAPI under uvicorn with the same settings, parsing the same
bodies with orjson). Every load comes from bench/loadgen.py running in a child process, so the
generator never shares a GIL with what it measures; each Headwater figure is printed beside the no-op
endpoint driven the same way in the same run.

- closed loop, batched: ``--connections`` clients post ``{"messages": [100 XDM envelopes]}`` back to back
  to ``/collection/batch/{inletId}`` (events/s is capacity; p99 there is mostly queueing);
- closed loop, single: the same with one envelope per request to ``/collection/{inletId}``;
- open loop at the target rate (50,000 events/s batched, 5,000 requests/s single), or at 70% of the
  capacity just measured when that is lower: the acknowledgement latency clients see at that load,
  timed from each request's scheduled send;
- ingest to queryable: a steady ``--queryable-rate`` for ``--queryable-seconds`` into a fresh flow per
  ``--flush`` value (HEADWATER_STREAM_FLUSH_SECONDS, continuous cadence), while another process polls the
  dataset's Iceberg table every ``--poll`` seconds and records when each id first appears;
- exactly once: every acknowledged message id is in its dataset exactly once (flows run with
  ``deduplicate: false``, so a message committed twice would show as two rows).

Every row also shows the share of the machine's CPU that processes outside the benchmark took during it
(``others' CPU``, Headwater / no-op): on a shared machine that work slows both sides. ``--wait-quiet S``
waits up to S seconds before each load for the machine to be nearly idle.

Targets (shared/DESIGN.md): >= 50,000 events/s batched, >= 5,000 requests/s single, p99 ack <= 50 ms,
p99 ingest-to-queryable <= 2 s. A MISS still exits 0 (this is a measurement); a failed exactly-once
check exits 1.

    .venv/bin/python bench/stream.py [--seconds 10] [--connections 64] [--workers 1] [--embedded]
        [--log local] [--log nats://127.0.0.1:4222] [--flush 1.0,0.5] [--wait-quiet 300]
        [--profile DIR] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
import loadgen

T = TypeVar("T")
BENCH = Path(__file__).parent
EXE = str(Path(sys.executable).with_name("headwater"))
FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry"
HTTP_API = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
HTTP_NO_MAPPING = "d8a6f005-7eaf-4153-983e-e8574508b877"
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
XED = "application/vnd.adobe.xed-full+json;version=1.0"
ID_MARK = b"@@ID@@"
PER_BATCH = 100
TARGET_BATCHED = 50_000.0  # events/s
TARGET_SINGLE = 5_000.0  # requests/s
TARGET_ACK_MS = 50.0
TARGET_QUERYABLE_S = 2.0


# --- processes -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    port: int, proc: subprocess.Popen[bytes], what: str, stderr: Path, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            err = stderr.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{what} exited with {proc.returncode} (log {stderr}):\n{err}")
        time.sleep(0.1)
    raise SystemExit(f"{what} did not answer /health in {timeout:.0f} s (log {stderr})")


def spawn(args: list[str], stderr: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` with stderr appended to ``stderr`` (a file: a pipe nobody reads could fill up)."""
    with stderr.open("ab") as err:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Deployment:
    """``headwater serve`` (+ ``headwater worker`` unless embedded) on a fresh home, with one log. The
    processes' stderr goes to ``logs`` (kept after the run)."""

    def __init__(self, log: str, workers: int, embedded: bool, flush: float, logs: Path) -> None:
        self.log = log
        self.name = "nats" if log.startswith(("nats://", "tls://")) else log
        self.workers = workers
        self.embedded = embedded
        self.home = Path(tempfile.mkdtemp(prefix="hw-bench-stream-"))
        self.logs = logs
        self.port = free_port()
        self.env = {
            **os.environ,
            "HEADWATER_HOME": str(self.home),
            "HEADWATER_PORT": str(self.port),
            "HEADWATER_ENVIRONMENT": "development",
            "HEADWATER_LOG_LEVEL": "warning",
            "HEADWATER_STREAM_LOG": log,
            "HEADWATER_STREAM_FLUSH_SECONDS": str(flush),
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_command = [EXE, "worker"]  # bench/profiled.py's, to profile the worker

    def start(self) -> None:
        args = [EXE, "serve", "--workers", str(self.workers)]
        if not self.embedded:
            args.append("--no-worker")
        stderr = self.logs / f"{self.name}-server.log"
        self.server = spawn(args, stderr, self.env)
        wait_healthy(self.port, self.server, "headwater serve", stderr)
        if not self.embedded:
            self.worker = spawn(self.worker_command, self.logs / f"{self.name}-worker.log", self.env)

    def set_flush(self, flush: float) -> None:
        """Restart whatever runs the micro-batchers with HEADWATER_STREAM_FLUSH_SECONDS=``flush``."""
        self.env["HEADWATER_STREAM_FLUSH_SECONDS"] = str(flush)
        if self.embedded:
            stop(self.server)
            self.start()
        else:
            stop(self.worker)
            self.worker = spawn(self.worker_command, self.logs / f"{self.name}-worker.log", self.env)
        time.sleep(1.5)  # the worker's supervisor starts a batcher per flow within about a second

    def credentials(self) -> dict[str, str]:
        out = subprocess.run([EXE, "credentials", "--json"], env=self.env, check=True, capture_output=True)
        creds: dict[str, str] = json.loads(out.stdout)
        return creds

    def warnings(self) -> list[str]:
        """The log's complaints about torn records, and micro-batch failures, from the processes' stderr."""
        found: list[str] = []
        for path in sorted(self.logs.glob(f"{self.name}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if "torn or corrupt" in line or "micro-batch failed" in line:
                    found.append(f"{path.name}: {line.strip()}")
        return found

    def close(self) -> None:
        stop(self.worker)
        stop(self.server)
        shutil.rmtree(self.home, ignore_errors=True)


def start_noop(workers: int, logs: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    stderr = logs / "noop.log"
    args = [sys.executable, str(BENCH / "noop_app.py"), "--port", str(port), "--workers", str(workers)]
    proc = spawn(args, stderr)
    wait_healthy(port, proc, "no-op app", stderr)
    return proc, port


class CpuMeter:
    """How busy the machine was during a load, and how much of that was not this benchmark's processes
    (other work on a shared machine makes every figure lower)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = (time.monotonic(), *self._sample())

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields[0:3]) + sum(fields[5:8])  # user, nice, system, irq, softirq, steal

    def _ours(self) -> int:
        parents: dict[int, int] = {}
        times: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(rest[1])
            times[int(entry)] = int(rest[11]) + int(rest[12])
        me = os.getpid()
        total = 0
        for pid, busy in times.items():
            at, hops = pid, 0
            while at not in (me, 0, 1) and hops < 50:
                at, hops = parents.get(at, 0), hops + 1
            if at == me:
                total += busy
        return total

    def _sample(self) -> tuple[int, int]:
        return self._busy(), self._ours()

    def others(self) -> float:
        """The share of the machine's CPU (0-1) used by processes outside this benchmark since start."""
        began, busy0, ours0 = self.start
        busy1, ours1 = self._sample()
        seconds = (time.monotonic() - began) * (os.cpu_count() or 1)
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / self.tick / seconds if seconds else 0.0


# --- the pipeline: HTTP API connection -> streaming flow -> event dataset --------------------------------
@dataclass(frozen=True)
class Pipeline:
    inlet_id: str
    flow_id: str
    dataset_id: str
    template: bytes  # one XDM envelope for this flow, its _id replaced by ID_MARK


class Platform:
    """The Flow Service, Schema Registry and Catalog calls that set up streaming pipelines."""

    def __init__(self, deployment: Deployment) -> None:
        creds = deployment.credentials()
        base = f"http://127.0.0.1:{deployment.port}"
        token = httpx.post(
            base + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["apiKey"],
                "client_secret": creds["clientSecret"],
            },
        ).json()["access_token"]
        self.org = creds["orgId"]
        self.sandbox = creds["sandboxName"]
        self.client = httpx.Client(
            base_url=base,
            timeout=30,
            headers={
                "Authorization": f"Bearer {token}",
                "x-api-key": creds["apiKey"],
                "x-gw-ims-org-id": self.org,
                "x-sandbox-name": self.sandbox,
            },
        )
        self.schema_id = self._event_schema()

    def _post(self, path: str, body: dict[str, Any], field_: str = "id") -> str:
        response = self.client.post(path, json=body)
        if response.status_code not in (200, 201):
            raise SystemExit(f"POST {path} -> {response.status_code}: {response.text[:500]}")
        data = response.json()
        return str(data[0].split("/")[-1] if isinstance(data, list) else data[field_])

    def _event_schema(self) -> str:
        fields = {n: {"type": "string", "title": n} for n in ("email", "metric", "object_type", "event_id")}
        group = self._post(
            f"{SR}/tenant/fieldgroups",
            {
                "title": "Bench event fields",
                "description": "",
                "type": "object",
                "meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/experienceevent"],
                "definitions": {
                    "e": {"properties": {"_headwater": {"type": "object", "properties": fields}}}
                },
                "allOf": [{"$ref": "#/definitions/e"}],
            },
            "$id",
        )
        return self._post(
            f"{SR}/tenant/schemas",
            {
                "type": "object",
                "title": "Bench events",
                "description": "",
                "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/experienceevent"}, {"$ref": group}],
                "meta:class": "https://ns.adobe.com/xdm/context/experienceevent",
            },
            "$id",
        )

    def inlet(self, name: str, data_type: str) -> tuple[str, str]:
        """(inlet id, source connection id) of a fresh HTTP API inlet taking ``data_type`` messages."""
        conn = self._post(
            f"{FS}/connections",
            {
                "name": name,
                "connectionSpec": {"id": HTTP_API, "version": "1.0"},
                "auth": {
                    "specName": "Streaming Connection",
                    "params": {"name": name, "sourceId": name, "dataType": data_type},
                },
            },
        )
        params = self.client.get(f"{FS}/connections/{conn}").json()["items"][0]["auth"]["params"]
        source = self._post(
            f"{FS}/sourceConnections",
            {
                "name": f"{name} source",
                "baseConnectionId": conn,
                "connectionSpec": {"id": HTTP_API, "version": "1.0"},
                "data": {"format": "json"},
            },
        )
        return str(params["inletId"]), source

    def pipeline(
        self, name: str, tags: dict[str, list[str]] | None = None, options: dict[str, Any] | None = None
    ) -> Pipeline:
        """A fresh HTTP API inlet with its own flow into its own dataset with ``tags``; the flow's
        ``options`` default to duplicate suppression off."""
        inlet_id, source = self.inlet(name, "xdm")
        dataset = self._post(
            "/data/foundation/catalog/dataSets",
            {"name": name, "schemaRef": {"id": self.schema_id, "contentType": XED}, "tags": tags or {}},
        )
        target = self._post(
            f"{FS}/targetConnections",
            {
                "name": f"{name} lake",
                "data": {"schema": {"id": self.schema_id, "version": XED}},
                "params": {"dataSetId": dataset},
                "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
            },
        )
        flow = self._post(
            f"{FS}/flows",
            {
                "name": f"{name} flow",
                "flowSpec": {"id": HTTP_NO_MAPPING, "version": "1.0"},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [target],
                "options": {"deduplicate": False} if options is None else options,
            },
        )
        return Pipeline(inlet_id, flow, dataset, self._template(dataset, flow))

    def _template(self, dataset_id: str, flow_id: str) -> bytes:
        mark = ID_MARK.decode()
        return orjson.dumps(
            {
                "header": {
                    "schemaRef": {"id": self.schema_id, "contentType": XED},
                    "imsOrgId": self.org,
                    "datasetId": dataset_id,
                    "flowId": flow_id,
                },
                "body": {
                    "xdmMeta": {"schemaRef": {"id": self.schema_id}},
                    "xdmEntity": {
                        "_id": mark,
                        "timestamp": "2026-11-23T10:00:00Z",
                        "_headwater": {
                            "email": "ada@example.com",
                            "metric": "opened",
                            "object_type": "email",
                        },
                    },
                },
            }
        )


# --- load, in a child process ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """What one child-process load sends. Message ids are ``prefix`` + a counter (unique per load)."""

    label: str
    port: int
    inlet_id: str
    per_request: int  # 1: one envelope to /collection/{id}; N: {"messages": [N]} to /collection/batch/{id}
    template: bytes
    prefix: str
    connections: int
    seconds: float
    rate: float = 0.0  # requests/s offered in total (open loop); 0: closed loop

    @property
    def path(self) -> str:
        batch = "batch/" if self.per_request > 1 else ""
        return f"/collection/{batch}{self.inlet_id}"

    @property
    def expect(self) -> int:
        return 207 if self.per_request > 1 else 200

    def ids(self, requests: int) -> list[str]:
        return [f"{self.prefix}{n}" for n in range(requests * self.per_request)]


def request_factory(load: Load, offset: int = 0) -> Callable[[int], bytes]:
    head, tail = load.template.split(ID_MARK)
    headers = {"Content-Type": "application/json"}
    prefix, per = load.prefix.encode(), load.per_request

    def one(i: int) -> bytes:
        body = head + prefix + str(i + offset).encode() + tail
        return bytes(loadgen.build_request("POST", load.path, headers, body))

    def batch(i: int) -> bytes:
        first = (i + offset) * per
        envelopes = b",".join(head + prefix + str(first + j).encode() + tail for j in range(per))
        return bytes(loadgen.build_request("POST", load.path, headers, b'{"messages":[' + envelopes + b"]}"))

    return one if per == 1 else batch


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when present (a cheaper generator leaves more CPU to the server)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def drive(load: Load) -> tuple[loadgen.Result, int]:
    """Child process: run ``load``; returns its result and how many requests were sent (all answered)."""
    if load.rate:
        result = run_loop(
            loadgen.run_rate(
                load.label,
                load.port,
                request_factory(load),
                concurrency=load.connections,
                rate=load.rate,
                seconds=load.seconds,
                expect=load.expect,
            )
        )
        return result, result.count
    # Closed loop: loadgen.run sends a fixed count, so a first pass (also the warm-up) sizes the second.
    probe = max(load.connections * (4 if load.per_request > 1 else 40), 200)
    first = run_loop(
        loadgen.run(
            load.label,
            load.port,
            request_factory(load),
            concurrency=load.connections,
            total=probe,
            expect=load.expect,
        )
    )
    total = max(load.connections * 4, int(first.rate * load.seconds))
    result = run_loop(
        loadgen.run(
            load.label,
            load.port,
            request_factory(load, offset=probe),
            concurrency=load.connections,
            total=total,
            expect=load.expect,
        )
    )
    result.errors += first.errors
    return result, probe + total


@dataclass(frozen=True)
class Ack:
    index: int  # request number: it carried ids index * per_request ...
    ack_wall: float  # time.time() when the answer was read
    latency_ms: float  # from the scheduled send
    status: int


def paced(load: Load, start_wall: float) -> list[Ack]:
    """Child process: an open loop like loadgen.run_rate that records when each request was acknowledged
    (wall clock, comparable across processes). Starts at ``start_wall``."""
    return run_loop(_paced(load, start_wall))


async def _paced(load: Load, start_wall: float, factory: Callable[[int], bytes] | None = None) -> list[Ack]:
    """:func:`paced`'s loop; request ``i`` is ``factory(i)`` (default: the load's template with ids)."""
    factory = factory or request_factory(load)
    per_conn = load.rate / load.connections
    count = int(per_conn * load.seconds)
    acks: list[Ack] = []

    async def connection(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", load.port)
        await asyncio.sleep(max(0.0, start_wall - time.time()))
        start = time.perf_counter() + c / load.rate
        try:
            for k in range(count):
                scheduled = start + k / per_conn
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                index = k * load.connections + c
                writer.write(factory(index))
                status, _ = await loadgen._read_response(reader)
                now = time.perf_counter()
                acks.append(Ack(index, time.time(), (now - scheduled) * 1000, status))
        finally:
            writer.close()

    await asyncio.gather(*(connection(c) for c in range(load.connections)))
    return acks


def paced_requests(load: Load) -> int:
    return int(load.rate / load.connections * load.seconds) * load.connections


# --- reading the lake (child process or this one, after the loads) --------------------------------------
class LakeReader:
    """Reads a deployment's datasets from outside it, as StreamingDeployment.ids does in the tests."""

    def __init__(self, home: str, org: str, sandbox: str) -> None:
        from headwater.lake.iceberg import Lake
        from headwater.settings import Settings
        from headwater.stores.metadata import Scope, open_store

        self.lake = Lake(Settings(home=Path(home), environment="development"))
        store = open_store(f"sqlite:///{Path(home) / 'metadata.db'}")
        try:
            found = store.get_sandbox(org, sandbox)
        finally:
            store.close()
        assert found is not None
        self.scope = Scope(found.org_id, found.id)

    def table(self, dataset_id: str) -> Any:
        return self.lake.load(self.scope, dataset_id)

    def count(self, dataset_id: str) -> int:
        table = self.table(dataset_id)
        snapshot = table.current_snapshot() if table is not None else None
        if snapshot is None or snapshot.summary is None:
            return 0
        return int(snapshot.summary.additional_properties.get("total-records", 0))

    def ids(self, dataset_id: str) -> list[str]:
        table = self.table(dataset_id)
        if table is None or table.current_snapshot() is None:
            return []
        column = table.scan(selected_fields=("_id",)).to_arrow().column("_id")
        return [str(v) for v in column.to_pylist()]


def watch(
    home: str, org: str, sandbox: str, dataset_id: str, expected: int, interval: float, deadline: float
) -> tuple[dict[str, float], list[float], float]:
    """Child process: poll the dataset's table every ``interval`` s until ``expected`` ids were seen (or
    ``deadline``, wall clock). Returns when each id was first seen (wall clock, taken right after the
    catalog showed the snapshot holding it), the duration of each poll, and when polling began."""
    import pyarrow.parquet as pq

    reader = LakeReader(home, org, sandbox)
    reader.table(dataset_id)  # warm the catalog
    seen: dict[str, float] = {}
    files: set[str] = set()
    cycles: list[float] = []
    last: int | None = None
    began = time.time()
    while len(seen) < expected and time.time() < deadline:
        t0 = time.perf_counter()
        table = reader.table(dataset_id)
        snapshot = table.current_snapshot() if table is not None else None
        now = time.time()
        if snapshot is not None and snapshot.snapshot_id != last:
            last = snapshot.snapshot_id
            for task in table.scan(selected_fields=("_id",)).plan_files():
                path = task.file.file_path
                if path not in files:
                    files.add(path)
                    local = path.removeprefix("file://")
                    for value in pq.read_table(local, columns=["_id"]).column("_id").to_pylist():
                        seen.setdefault(str(value), now)
        cycles.append(time.perf_counter() - t0)
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    return seen, cycles, began


# --- results ------------------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    return data[min(len(data) - 1, max(0, round(p / 100 * len(data)) - 1))]


@dataclass
class Row:
    log: str
    load: str
    rate: str
    p50: str
    p99: str
    vs_noop: str
    target: str
    verdict: str
    others: str  # CPU share other processes of the machine took meanwhile


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exactly_once_ok: bool = True

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(
            f"  {row.load:<34} {row.rate:>24}  p50 {row.p50:>8}  p99 {row.p99:>8}  {row.vs_noop:<28} "
            f"{row.verdict:<4} {row.target}  (others' CPU {row.others})",
            flush=True,
        )

    def table(self) -> str:
        head = "| log | load | rate | p50 | p99 | vs no-op | target | | others' CPU |"
        lines = [head, "|---|---|---:|---:|---:|---|---|---|---:|"]
        for r in self.rows:
            cells = (r.log, r.load, r.rate, r.p50, r.p99, r.vs_noop, r.target, r.verdict, r.others)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def settle(reader: LakeReader, dataset_id: str, expected: int, stall: float = 30.0) -> tuple[int, float]:
    """Wait until ``dataset_id`` holds ``expected`` rows, or its count has not moved for ``stall`` s;
    returns the count and the seconds waited."""
    began = moved = time.monotonic()
    last = -1
    while True:
        count = reader.count(dataset_id)
        now = time.monotonic()
        if count >= expected:
            return count, now - began
        if count != last:
            last, moved = count, now
        elif now - moved > stall:
            return count, now - began
        time.sleep(0.25)


# --- the benchmark --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, pool: ProcessPoolExecutor, noop_port: int) -> None:
        self.args = args
        self.pool = pool
        self.noop_port = noop_port
        self.report = Report()
        self.run_id = uuid.uuid4().hex[:6]

    def pair(
        self, d: Deployment, pipeline: Pipeline, kind: str, per: int, rate: float
    ) -> tuple[loadgen.Result, loadgen.Result, Load, int, str]:
        """The no-op app, then Headwater, under the same load. Returns both results, Headwater's load and
        how many requests it sent, and the CPU other processes took during each."""
        a = self.args
        mode = f"open {rate * per:,.0f} ev/s" if rate else "closed"
        tag = f"{kind}{'o' if rate else 'c'}{len(self.report.rows)}"
        noop = Load(
            f"noop {kind} {mode}",
            self.noop_port,
            pipeline.inlet_id,
            per,
            pipeline.template,
            "n-",
            a.connections,
            a.seconds,
            rate,
        )
        hw = Load(
            f"{kind} {mode}",
            d.port,
            pipeline.inlet_id,
            per,
            pipeline.template,
            f"{self.run_id}-{tag}-",
            a.connections,
            a.seconds,
            rate,
        )
        self.wait_quiet()
        meter = CpuMeter()
        base, _ = self.pool.submit(drive, noop).result()
        base_others = meter.others()
        profilers = self.profile(d, tag)
        meter = CpuMeter()
        got, sent = self.pool.submit(drive, hw).result()
        others = meter.others()
        for proc in profilers:
            proc.wait()
        return base, got, hw, sent, f"{others:.0%} / {base_others:.0%}"

    def wait_quiet(self) -> None:
        """With ``--wait-quiet S``: wait up to S seconds for other processes to leave the machine nearly idle
        (under 10% of its CPU over 3 s), since on a shared machine they take CPU from both sides."""
        deadline = time.monotonic() + self.args.wait_quiet
        while time.monotonic() < deadline:
            meter = CpuMeter()
            time.sleep(3)
            if meter.others() < 0.10:
                return

    def profile(self, d: Deployment, tag: str) -> list[subprocess.Popen[bytes]]:
        """With ``--profile DIR``: py-spy (raw collapsed stacks) of the server and worker during a load."""
        if not self.args.profile:
            return []
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        procs = []
        for role, proc in (("server", d.server), ("worker", d.worker)):
            if proc is None:
                continue
            cmd = [spy, "record", "--pid", str(proc.pid), "--subprocesses", "--nonblocking", "--rate", "100"]
            cmd += ["--duration", str(int(self.args.seconds) + 3), "--format", "raw"]
            cmd += ["-o", str(out / f"{d.name}-{tag}-{role}.txt")]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs

    def throughput(self, d: Deployment, pipeline: Pipeline) -> list[str]:
        """The four loads against ``pipeline``; returns the ids of every message acknowledged.

        The open loops offer the target rate, or 70% of the closed loop's capacity when that is lower:
        beyond capacity every latency is queueing, which says nothing the capacity figure does not."""
        acked: list[str] = []
        capacity: dict[int, float] = {}
        loads = [
            (PER_BATCH, 0.0),
            (1, 0.0),
            (PER_BATCH, TARGET_BATCHED / PER_BATCH),
            (1, TARGET_SINGLE),
        ]
        for per, target in loads:
            kind = "batched" if per > 1 else "single"
            rate = min(target, 0.7 * capacity[per]) if target else 0.0
            base, result, load, sent, others = self.pair(d, pipeline, kind, per, rate)
            capacity.setdefault(per, result.rate)
            if result.errors:  # loadgen keeps no per-request status: only no-duplicates can be checked
                self.report.notes.append(f"{d.name} {load.label}: {result.errors} requests not acknowledged")
            else:
                acked.extend(load.ids(sent))
            self.record(d.name, kind, per, rate, base, result, others)
        return acked

    def record(
        self,
        name: str,
        kind: str,
        per: int,
        rate: float,
        base: loadgen.Result,
        result: loadgen.Result,
        others: str,
    ) -> None:
        ev, ev0 = result.rate * per, base.rate * per
        unit = "ev/s" if per > 1 else "req/s"
        p50, p99, b99 = result.pct(50), result.pct(99), base.pct(99)
        errors = f" ({result.errors} errors)" if result.errors else ""
        if rate:
            goal = TARGET_BATCHED / PER_BATCH if per > 1 else TARGET_SINGLE
            offered = "target" if rate >= goal else "70% of capacity"
            label = f"{kind}, open loop at {offered}"
            ok = p99 <= TARGET_ACK_MS and result.errors == 0 and rate >= goal
            target, vs = f"p99 ack <= {TARGET_ACK_MS:.0f} ms", f"p99 {p99 / b99:.2f}x ({b99:.1f} ms)"
            if rate < goal:
                target += f" at {goal * per:,.0f} {unit}"
        else:
            label = f"{kind}{f' x{per}' if per > 1 else ''}, closed loop"
            goal = TARGET_BATCHED if per > 1 else TARGET_SINGLE
            ok = ev >= goal and result.errors == 0
            target, vs = f">= {goal:,.0f} {unit}", f"rate {ev / ev0:.2f}x ({ev0:,.0f} {unit})"
        self.report.add(
            Row(
                name,
                label,
                f"{ev:,.0f} {unit}{errors}",
                f"{p50:.1f} ms",
                f"{p99:.1f} ms",
                vs,
                target,
                verdict(ok),
                others,
            )
        )

    def queryable(self, d: Deployment, platform_: Platform, flush: float) -> tuple[str, list[str]]:
        """A steady load into a fresh flow; another process watches for each id in the dataset."""
        a = self.args
        pipeline = platform_.pipeline(f"queryable-{flush}")
        d.set_flush(flush)
        self.wait_quiet()
        per = a.queryable_batch
        load = Load(
            f"queryable {flush}",
            d.port,
            pipeline.inlet_id,
            per,
            pipeline.template,
            f"{self.run_id}-q{flush}-",
            8,
            a.queryable_seconds,
            a.queryable_rate / per,
        )
        expected = paced_requests(load) * per
        start_wall = time.time() + 6.0  # the watcher imports pyiceberg and warms its catalog meanwhile
        deadline = start_wall + a.queryable_seconds + 60
        home, org, sandbox = str(d.home), platform_.org, platform_.sandbox
        watcher = self.pool.submit(watch, home, org, sandbox, pipeline.dataset_id, expected, a.poll, deadline)
        meter = CpuMeter()
        acks = self.pool.submit(paced, load, start_wall).result()
        seen, cycles, began = watcher.result()
        others = meter.others()
        if began > start_wall:
            self.report.notes.append(
                f"{d.name} flush {flush}: the watcher began {began - start_wall:.1f} s late"
            )
        delays: list[float] = []
        acked: list[str] = []
        for ack in acks:
            if ack.status == load.expect:
                for n in range(ack.index * per, (ack.index + 1) * per):
                    acked.append(f"{load.prefix}{n}")
                    if acked[-1] in seen:
                        delays.append(seen[acked[-1]] - ack.ack_wall)
        missing = len(acked) - len(delays)
        p50, p99 = pct(delays, 50), pct(delays, 99)
        cycle = sum(cycles) / max(1, len(cycles)) * 1000
        self.report.add(
            Row(
                d.name,
                f"ack -> queryable, flush {flush:g} s",
                f"{len(acked) / a.queryable_seconds:,.0f} ev/s for {a.queryable_seconds:g} s",
                f"{p50:.2f} s",
                f"{p99:.2f} s",
                f"resolution: poll {a.poll * 1000:.0f} ms (cycle {cycle:.0f} ms)",
                f"p99 <= {TARGET_QUERYABLE_S:.0f} s",
                verdict(p99 <= TARGET_QUERYABLE_S and missing == 0)
                + (f" ({missing} unseen)" if missing else ""),
                f"{others:.0%}",
            )
        )
        self.report.notes.append(
            f"{d.name} flush {flush:g} s: {per} messages per request on 8 connections; ack p99 "
            f"{pct([x.latency_ms for x in acks], 99):.1f} ms; slowest visible {max(delays or [0.0]):.2f} s "
            f"after its ack"
        )
        return pipeline.dataset_id, acked

    def exactly_once(self, d: Deployment, reader: LakeReader, acked: dict[str, list[str]]) -> None:
        for dataset_id, ids in acked.items():
            settle(reader, dataset_id, len(ids))
            landed = reader.ids(dataset_id)
            distinct = set(landed)
            missing = sorted(set(ids) - distinct)
            dupes = len(landed) - len(distinct)
            ok = not missing and dupes == 0
            example = f" (e.g. {', '.join(missing[:3])})" if missing else ""
            self.report.exactly_once_ok &= ok
            line = (
                f"{d.name} dataset {dataset_id}: {len(ids):,} acknowledged, {len(landed):,} rows, "
                f"{len(distinct):,} distinct ids, {len(missing)} missing{example}, "
                f"{dupes} duplicates: {'exactly once OK' if ok else 'exactly once FAILED'}"
            )
            print("  " + line, flush=True)
            self.report.notes.append(line)

    def run_log(self, log: str, logs: Path) -> None:
        a = self.args
        d = Deployment(log, a.workers, a.embedded, a.flush[0], logs)
        try:
            d.start()
            platform_ = Platform(d)
            where = "(embedded worker)" if a.embedded else "--no-worker + headwater worker"
            print(f"## log {log}: headwater serve --workers {a.workers} {where}", flush=True)
            pipeline = platform_.pipeline("throughput")
            time.sleep(1.5)  # the supervisor starts the flow's batcher within about a second
            acked = self.throughput(d, pipeline)
            reader = LakeReader(str(d.home), platform_.org, platform_.sandbox)
            count, took = settle(reader, pipeline.dataset_id, len(acked))
            line = f"{d.name}: {count:,} of {len(acked):,} events committed {took:.1f} s after the loads"
            print("  " + line, flush=True)
            self.report.notes.append(line)
            datasets = {pipeline.dataset_id: acked}
            for flush in a.flush:
                dataset_id, ids = self.queryable(d, platform_, flush)
                datasets[dataset_id] = ids
            self.exactly_once(d, reader, datasets)
            platform_.client.close()
        finally:
            d.close()
            for warning in d.warnings()[:5]:
                self.report.notes.append(warning)


def machine() -> str:
    model = "unknown cpu"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cpus ({model}), python {platform.python_version()}, {platform.node()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections per load")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (Headwater and no-op)")
    parser.add_argument("--embedded", action="store_true", help="micro-batchers inside the server")
    parser.add_argument("--log", action="append", help="'local' (default) or nats://host:4222; repeatable")
    parser.add_argument("--flush", default="1.0,0.5", help="HEADWATER_STREAM_FLUSH_SECONDS values to try")
    parser.add_argument("--queryable-rate", type=float, default=2000.0, help="events/s, steady")
    parser.add_argument("--queryable-seconds", type=float, default=25.0)
    parser.add_argument("--queryable-batch", type=int, default=10, help="messages per request, queryable run")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls of the dataset")
    parser.add_argument("--profile", help="py-spy the server and worker during each load into this dir")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="wait up to this long before each "
        "load for other processes to leave the machine idle (a shared machine)",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    args.log = args.log or ["local"]
    args.flush = [float(f) for f in args.flush.split(",")]
    if args.quick:
        args.seconds, args.queryable_seconds, args.flush = 3.0, 8.0, args.flush[:1]
    if args.embedded and args.workers > 1:
        parser.error("--embedded needs --workers 1: each uvicorn worker would run its own micro-batchers")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks stop the servers
    raise SystemExit(run(args))


def run(args: argparse.Namespace) -> int:
    print(
        f"# bench/stream.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}  connections={args.connections}  "
        f"workers={args.workers}  {'embedded worker' if args.embedded else 'separate worker'}  "
        f"seconds={args.seconds:g}",
        flush=True,
    )
    logs = Path(tempfile.mkdtemp(prefix="hw-bench-stream-logs-"))
    noop, noop_port = start_noop(args.workers, logs)
    try:
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            bench = Bench(args, pool, noop_port)
            for log in args.log:
                bench.run_log(log, logs)
    finally:
        stop(noop)
    report = bench.report
    print("\n## summary\n")
    print(report.table())
    print()
    for note in report.notes:
        print(f"- {note}")
    print(f"\nserver and worker logs: {logs}")
    print(f"exactly once: {'OK' if report.exactly_once_ok else 'FAILED'}")
    return 0 if report.exactly_once_ok else 1


if __name__ == "__main__":
    main()
