"""Activation to an HTTP destination: deliveries per second, against the sink's own capacity.

Starts the sink (tests/fakes/sink.py) in its own process, then in this process:

1. **Sink capacity**: the same HTTP client Headwater delivers with
   (connectors/http_destination/client.py), with ``--connections`` connections, posting pre-rendered
   requests of the same size back to back. This is the ceiling: what the sink answers when the sender
   does nothing else.
2. **Headwater**: a fresh home with an activation flow (HTTP API source -> HTTP destination, three
   variable bindings, one of them a mapping expression, a JSON body template, idempotency keys), its log
   filled with ``--records`` messages beforehand; then the flow's delivery loop (the one a worker runs:
   read the log, bind, render, send, checkpoint, dead letters) runs until every record is delivered.

Both run on the same event loop implementation (uvloop when installed, as the worker uses). The ratio
is Headwater / capacity. Targets (shared/DESIGN.md): >= 5,000 deliveries/s and >= 80% of the sink's
capacity. A MISS still exits 0 (this is a measurement); a lost or dead-lettered record exits 1.

    .venv/bin/python bench/activate.py [--records 100000] [--connections 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from headwater.connectors.http_destination.client import HttpClient, Timeouts  # noqa: E402
from headwater.connectors.outbound import OutboundPolicy  # noqa: E402

BODY = '{"email": "${email}", "name": "${name}", "amount": ${amount}, "source": "headwater"}'


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sink"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert sink.stdout is not None
    urls = json.loads(sink.stdout.readline())
    return sink, str(urls["url"])


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


async def capacity(url: str, records: int, connections: int) -> float:
    """Requests/s the sink answers to the bare client, same size bodies, same connections."""
    client = HttpClient(OutboundPolicy(["127.0.0.1"]), max_connections=connections)
    body = json.dumps(
        {"email": "user123456@example.com", "name": "Ada L123456", "amount": 123456, "source": "headwater"}
    ).encode()
    headers = [
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "5f0c7c1e-8d8a-5d4e-9c7b-2a1f3e4d5c6b"),
    ]
    timeouts = Timeouts(1.0, 5.0)
    remaining = records

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.request("POST", url + "/capacity", headers, body, timeouts)
            assert response.status == 200, response.status

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return records / elapsed


def headwater_setup(home: Path, url: str, records: int, connections: int) -> tuple[Any, Any]:
    from headwater.container import Services
    from headwater.services.tenancy import Actor
    from headwater.settings import Settings

    settings = Settings(home=home, environment="development", outbound_allow="127.0.0.1")  # type: ignore[call-arg]
    services = Services(settings)
    services.start()
    org = services.store.list_orgs()[0]
    sandbox = services.store.get_sandbox(org.id, "prod")
    assert sandbox is not None
    actor = Actor(org=org, sandbox=sandbox, client_id="bench")
    inlet = services.connections.create(
        actor,
        {
            "name": "Web events",
            "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
            "auth": {
                "specName": "Streaming Connection",
                "params": {"name": "Web", "sourceId": "web", "dataType": "raw"},
            },
        },
    )
    source = services.source_connections.create(
        actor,
        {
            "name": "Web source",
            "baseConnectionId": inlet.id,
            "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
            "data": {"format": "json"},
        },
    )
    dest_spec = {"id": "ce55fc04-f79b-4668-a8b7-2565a5c65ad4", "version": "1.0"}
    conn = services.connections.create(
        actor,
        {
            "name": "Sink",
            "icon": "api",
            "connectionSpec": dest_spec,
            "auth": {"specName": "None", "params": {}},
        },
    )
    target = services.target_connections.create(
        actor,
        {
            "name": "Sink request",
            "baseConnectionId": conn.id,
            "connectionSpec": dest_spec,
            "params": {"method": "POST", "url": url + "/activate", "body": BODY, "readTimeoutMs": 5000},
        },
    )
    flow = services.flows.create(
        actor,
        {
            "name": "Bench activation",
            "flowSpec": {"id": "cf0ccb51-d329-4dd2-a912-d3c87e068aa4", "version": "1.0"},
            "sourceConnectionIds": [source.id],
            "targetConnectionIds": [target.id],
            "transformations": [
                {
                    "name": "Variables",
                    "params": {
                        "bindings": {
                            "email": {"source": "email"},
                            "name": {"expression": 'concat(first, " ", last)'},
                            "amount": {"source": "order.amount"},
                        }
                    },
                }
            ],
            "options": {"maxInFlight": connections},
        },
    )
    events = [
        {"email": f"user{n}@example.com", "first": "Ada", "last": f"L{n}", "order": {"amount": n}}
        for n in range(records)
    ]

    async def fill() -> None:
        for start in range(0, records, 1000):
            await services.streams.publish(actor.scope, flow.id, events[start : start + 1000])

    asyncio.run(fill())
    return services, services.flows.get(actor, flow.id)


async def headwater(services: Any, flow: Any, records: int) -> tuple[float, Any]:
    from headwater.runtime.delivery.activation import Plan, StreamPump

    plan = Plan.open(services, flow)
    pump = StreamPump(services, plan)
    totals = {"delivered": 0, "dead": 0}
    started = time.perf_counter()
    try:
        while True:
            stepped = await pump.step()
            if not stepped and pump.deliverer.pending == 0:
                break
            if not stepped:
                await asyncio.sleep(0.001)
        await pump.deliverer.drain()
        elapsed = time.perf_counter() - started
        totals["delivered"] = pump.delivered_total
        totals["dead"] = pump.dead_total
        await pump.flush()
    finally:
        await pump.deliverer.cancel()
        await plan.destination.aclose()
    return elapsed, totals


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="alternate both measurements this many times")
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"# bench/activate.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine}, {os.cpu_count()} CPUs")
    print(f"# python {platform.python_version()}, records {args.records}, connections {args.connections}")
    sink, url = start_sink()
    failed = False
    try:
        rows = []
        for round_ in range(args.repeat):
            loop = new_loop()
            cap = loop.run_until_complete(capacity(url, args.records, args.connections))
            loop.close()
            with tempfile.TemporaryDirectory(prefix="headwater-bench-") as tmp:
                services, flow = headwater_setup(Path(tmp), url, args.records, args.connections)
                loop = new_loop()
                elapsed, totals = loop.run_until_complete(headwater(services, flow, args.records))
                loop.close()
                services.close()
            rate = args.records / elapsed
            if totals["delivered"] != args.records or totals["dead"]:
                failed = True
                print(
                    f"LOST OR DEAD: delivered {totals['delivered']} of {args.records}, dead {totals['dead']}"
                )
            rows.append((cap, rate))
            print(
                f"round {round_ + 1}: sink capacity {cap:,.0f} req/s | "
                f"Headwater {rate:,.0f} deliveries/s | ratio {rate / cap:.2f}"
            )
        cap = sorted(r[0] for r in rows)[len(rows) // 2]
        rate = sorted(r[1] for r in rows)[len(rows) // 2]
        ratio = sorted(r[1] / r[0] for r in rows)[len(rows) // 2]
        verdict = "met" if rate >= 5000 and ratio >= 0.8 else "MISS"
        print(
            f"median: sink {cap:,.0f} req/s, Headwater {rate:,.0f} deliveries/s, ratio {ratio:.2f}: {verdict}"
        )
        print("targets: >= 5,000 deliveries/s and >= 0.80 of the sink's capacity")
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
