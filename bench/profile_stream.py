"""Streaming into profiles: how soon a message's effect on a profile, and on its segment membership, shows.

Starts ``headwater serve --no-worker`` and a ``headwater worker`` (its micro-batchers commit to the lake,
its profile projector steps the profile store and re-evaluates streaming segments: runtime/profiles.py)
on a fresh home (SQLite, the embedded default). Sets up, through the API, an XDM Individual Profile
schema (person and personal details, identityMap) enabled for profile, a dataset of it tagged
``unifiedProfile``, an HTTP API inlet with an XDM flow into it, and a streaming segment
``homeAddress.city = "Oslo"`` (``evaluationInfo.continuous.enabled``).

Then a child process offers ``--rate`` events/s (``--per-request`` XDM messages per request to
``/collection/batch/{inletId}``, ``--connections`` connections) for ``--seconds`` (open loop). Every
message is about a person with an email (primary) and an ECID and lives in Oslo, so it qualifies; its
``person.name.firstName`` names the message. Most are about a pool of persons (each first created, then
updated); every ``stride``-th is a sampled message, alternately about a person never seen (a new profile)
and about one created before the load in Bergen (an update that makes it enter the segment). For each
sample, another process polls the profile lookup (``GET /data/core/ups/access/entities`` by email) from
its send, every ``--poll`` s (or 5% of the time since the send, if longer: a pipeline that falls behind
is not buried by its own measurement), and records when (a) the profile shows the sampled message's
first name and (b) ``segmentMembership.ups.<segment>.status`` is ``realized``. Beside them, in the same
run:

- the baseline: the inlet's acknowledgement latency, every request of the same load;
- the stage before the profiles: when the message's ``_id`` is in the dataset's Iceberg table (a third
  process polls the table, as bench/stream.py does).

Every figure is timed from the request's scheduled send (no coordinated omission), to within ``--poll``
(or 5%).
Target (issue 14): (a) and (b) p99 <= 2 s at 2,000 events/s. A miss still exits 0 (a measurement); a
lookup showing another person's identity or an unknown first name, a sample never seen, or a pool
person not ending with its last message exits 1.

    PYTHONPATH=src .venv/bin/python bench/profile_stream.py [--rate 2000] [--seconds 30] [--samples 200]
        [--per-request 10] [--connections 8] [--workers 2] [--poll 0.1] [--flush 1.0] [--profile DIR]
        [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
import loadgen
from profile_samples import BEFORE, PROFILE, Plan, Sample, poll_samples
from stream import SR, Ack, CpuMeter, Deployment, Load, Platform, machine, pct, run_loop, watch
from stream import _paced as paced_loop

DEFINITIONS = "/data/core/ups/segment/definitions"
TARGET_S = 2.0
GROUPS = [
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
    "https://ns.adobe.com/xdm/context/identitymap",
]


class ProfilePlatform(Platform):
    """bench/stream.py's Platform (token, inlets, pipelines) whose pipelines' schema is a profile schema."""

    def _event_schema(self) -> str:
        """The schema stream.Platform builds its pipelines on: here an XDM Individual Profile with person
        and personal details and an identityMap, enabled for profile (``union``)."""
        return self._post(
            f"{SR}/tenant/schemas",
            {
                "type": "object",
                "title": f"Bench profiles {uuid.uuid4().hex[:6]}",
                "allOf": [{"$ref": PROFILE}, *({"$ref": g} for g in GROUPS)],
                "meta:immutableTags": ["union"],
            },
            "$id",
        )

    def streaming_segment(self, pql: str) -> str:
        body = {
            "name": f"bench streaming {uuid.uuid4().hex[:6]}",
            "expression": {"type": "PQL", "format": "pql/text", "value": pql},
            "evaluationInfo": {"continuous": {"enabled": True}, "batch": {"enabled": False}},
        }
        made = self.client.post(DEFINITIONS, json=body)
        if made.status_code != 200 or not made.json()["evaluationInfo"]["continuous"]["enabled"]:
            raise SystemExit(f"the segment is not streaming: {made.status_code} {made.text[:500]}")
        return str(made.json()["id"])


# --- the load, in a child process -----------------------------------------------------------------------
def offer(load: Load, plan: Plan, start_wall: float) -> list[Ack]:
    """Child process: the open loop of bench/stream.py, request ``i`` carrying messages ``i * per`` on."""
    path, headers = load.path, {"Content-Type": "application/json"}

    def request(i: int) -> bytes:
        body = orjson.dumps(
            {"messages": [plan.message(i * plan.per_request + j) for j in range(plan.per_request)]}
        )
        return loadgen.build_request("POST", path, headers, body)

    return run_loop(paced_loop(load, start_wall, request))


def precreate(client: httpx.Client, load: Load, plan: Plan) -> None:
    """Before the load: the persons of the update samples, in Bergen (not in the segment), through the
    inlet; returns when every one is in the profiles (which also shows the pipeline runs end to end)."""
    envelopes = [plan.message_before(j) for j in plan.update_samples()]
    for start in range(0, len(envelopes), 100):
        sent = client.post(load.path, json={"messages": envelopes[start : start + 100]})
        if sent.status_code != 207:
            raise SystemExit(f"pre-creating persons: {sent.status_code} {sent.text[:300]}")
    deadline = time.monotonic() + 120
    for j in plan.update_samples():
        while True:
            found = plan.lookup(client, f"s{j}")
            if found is not None and found["entity"]["person"]["name"]["firstName"] == BEFORE:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"person s{j}, sent before the load, is not in the profiles in 120 s")
            time.sleep(0.2)  # polling with a deadline


# --- results --------------------------------------------------------------------------------------------
def row(name: str, values: list[float], target: str = "", unit: str = "s") -> str:
    scale, fmt = (1000.0, ".0f") if unit == "ms" else (1.0, ".2f")
    p50, p99, top = (pct(values, p) * scale for p in (50, 99, 100))
    figures = f"{p50:{fmt}} {unit} | {p99:{fmt}} {unit} | {top:{fmt}} {unit}"
    return f"| {name} | {len(values):,} | {figures} | {target} |"


def report(plan: Plan, acks: list[Ack], samples: list[Sample], seen: dict[str, float], cpu: str) -> bool:
    """Print the table; whether every sample was seen right."""
    sent = {a.index: a.ack_wall - a.latency_ms / 1000 for a in acks if a.status == 207}
    lake, shown, realized, projecting, segmenting = [], [], [], [], []
    by_kind: dict[str, tuple[list[float], list[float]]] = {"new": ([], []), "update": ([], [])}
    for s in samples:
        at = sent.get(plan.request_of(s.index))
        landed = seen.get(plan.message_id(plan.position(s.index)))
        if at is None:
            continue
        if landed is not None:
            lake.append(landed - at)
        if s.shown is not None and s.realized is not None:
            shown.append(s.shown - at)
            realized.append(s.realized - at)
            segmenting.append(s.realized - s.shown)
            by_kind[plan.kind(s.index)][0].append(s.shown - at)
            by_kind[plan.kind(s.index)][1].append(s.realized - at)
            if landed is not None:
                projecting.append(s.shown - landed)
    ok_a, ok_b = pct(shown, 99) <= TARGET_S, pct(realized, 99) <= TARGET_S
    print("\n| measure | count | p50 | p99 | max | target |\n|---|---:|---:|---:|---:|---|")
    ack = [a.latency_ms / 1000 for a in acks]
    print(row("baseline: inlet acknowledgement (every request)", ack, "", "ms"))
    print(row("send → in the dataset's table (sampled)", lake))
    print(row("(a) send → lookup shows the message", shown, f"p99 ≤ 2 s: {'met' if ok_a else 'missed'}"))
    print(row("(b) send → segmentMembership realized", realized, f"p99 ≤ 2 s: {'met' if ok_b else 'missed'}"))
    print(row("in the table → lookup shows it (projection)", projecting))
    print(row("lookup shows it → realized (segments)", segmenting))
    for kind, (a, b) in by_kind.items():
        print(row(f"(a) for {kind} profiles only", a, f"(b) p99 {pct(b, 99):.2f} s"))
    failed = [a for a in acks if a.status != 207]
    wrong = [s for s in samples if s.wrong]
    unseen = [s for s in samples if s.shown is None or s.realized is None]
    print(f"\n{len(acks):,} requests, {len(failed)} not acknowledged; CPU during the load, in cores: {cpu}")
    for s in (wrong + unseen)[:10]:
        print(f"  sample {s.index} ({plan.kind(s.index)}): {s.wrong or 'not seen before its deadline'}")
    return not wrong and not unseen


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each root process and its descendants (a tree stops at another root)."""
    children: dict[int, list[int]] = {}
    busy: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(rest[1]), []).append(int(entry))
            busy[int(entry)] = int(rest[11]) + int(rest[12])
    tick, stops = os.sysconf("SC_CLK_TCK"), set(roots.values())
    found = {}
    for role, root in roots.items():
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            total += busy.get(pid, 0)
            todo.extend(c for c in children.get(pid, []) if c not in stops)
        found[role] = total / tick
    return found


def final_check(client: httpx.Client, plan: Plan, count: int = 50) -> list[str]:
    """After the load: ``count`` pool persons end with their last message's first name, in the segment."""
    problems = []
    deadline = time.monotonic() + 60
    for person in range(0, plan.pool, max(1, plan.pool // count)):
        expected = plan.last_name_of(person)
        while True:
            got = plan.lookup(client, f"p{person}") or {}
            name = got.get("entity", {}).get("person", {}).get("name", {}).get("firstName")
            held = got.get("entity", {}).get("segmentMembership", {}).get("ups", {}).get(plan.segment_id, {})
            if name == expected and held.get("status") == "realized":
                break
            if time.monotonic() > deadline:
                problems.append(f"pool person p{person}: first name {name!r} ({held}), expected {expected!r}")
                break
            time.sleep(0.2)  # polling with a deadline
    return problems


# --- the run --------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    logs = Path(tempfile.mkdtemp(prefix="hw-bench-profile-stream-logs-"))
    d = Deployment("local", args.workers, False, args.flush, logs)
    if args.profile:
        d.worker_command = [sys.executable, str(Path(__file__).with_name("profiled.py")), args.profile]
    try:
        d.start()
        plat = ProfilePlatform(d)
        pipeline = plat.pipeline("profiles", tags={"unifiedProfile": ["enabled:true"]}, options={})
        segment_id = plat.streaming_segment('homeAddress.city = "Oslo"')
        per, conns = args.per_request, args.connections
        load = Load("profiles", d.port, pipeline.inlet_id, per, b"", "", conns, args.seconds, args.rate / per)
        requests = int(load.rate / conns * args.seconds) * conns
        plan = Plan.make(
            uuid.uuid4().hex[:6],
            pipeline.flow_id,
            pipeline.dataset_id,
            plat.schema_id,
            plat.org,
            segment_id,
            requests * per,
            args.samples,
            per,
            conns,
            load.rate,
        )
        keep = ("authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name")
        headers = {k: v for k, v in plat.client.headers.items() if k.lower() in keep}
        precreate(plat.client, load, plan)
        start_wall = time.time() + 6.0  # the watcher imports pyiceberg and warms its catalog meanwhile
        deadline = start_wall + args.seconds + 60
        with ProcessPoolExecutor(max_workers=3, mp_context=get_context("spawn")) as pool:
            watcher = pool.submit(
                watch,
                str(d.home),
                plat.org,
                plat.sandbox,
                pipeline.dataset_id,
                requests * per + len(plan.update_samples()),  # the load's and the persons' before it
                args.poll,
                deadline,
            )
            poller = pool.submit(poll_samples, d.port, headers, plan, start_wall, args.poll, 30.0)
            assert d.server is not None and d.worker is not None
            roots = {"server": d.server.pid, "worker": d.worker.pid, "bench": os.getpid()}
            offered = pool.submit(offer, load, plan, start_wall)
            time.sleep(max(0.0, start_wall - time.time()))  # the CPU figures cover the load alone
            meter, before, began = CpuMeter(), cpu_seconds(roots), time.monotonic()
            acks = offered.result()
            after, took = cpu_seconds(roots), time.monotonic() - began
            others = meter.others() * (os.cpu_count() or 1)
            samples = poller.result()
            seen, _, _ = watcher.result()
        used = ", ".join(f"{role} {(after[role] - before[role]) / took:.2f}" for role in roots)
        ok = report(
            plan, acks, samples, seen, f"{used} (load generator, poller, watcher), others {others:.2f}"
        )
        problems = final_check(plat.client, plan)
        for problem in problems[:10]:
            print(f"  WRONG: {problem}")
        plat.client.close()
    finally:
        d.close()
        for warning in d.warnings()[:5]:
            print(f"  log: {warning}")
    print(f"\nload average after: {loadavg()}   server and worker logs: {logs}")
    return 0 if ok and not problems else 1


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s offered to the inlet")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--samples", type=int, default=200, help="messages followed into the profiles")
    parser.add_argument("--per-request", type=int, default=10, help="messages per request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of headwater serve")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of a sample")
    parser.add_argument("--flush", type=float, default=1.0, help="HEADWATER_STREAM_FLUSH_SECONDS")
    parser.add_argument("--profile", help="cProfile every thread of the worker into this directory")
    parser.add_argument("--quick", action="store_true", help="1,000 events/s for 6 s, 40 samples")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.samples = 1000.0, 6.0, 40
    print(
        f"# bench/profile_stream.py  {time.strftime('%Y-%m-%d %H:%M %Z')}  {machine()}  "
        f"rate={args.rate:,.0f}/s  "
        f"seconds={args.seconds:g}  samples={args.samples}  per-request={args.per_request}  "
        f"connections={args.connections}  flush={args.flush:g}  load average before: {loadavg()}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks stop the servers
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
