"""Control-plane API latency: create, get and list at 32 concurrent clients, beside a no-op endpoint.

Starts ``headwater serve`` as a separate process on a temporary home (SQLite by default, or
``--database-url``), prepares a sandbox, then drives it with bench/loadgen.py from this process.
Two loads, each beside a no-op endpoint (GET /health) driven the same way in the same run:

- closed loop: 32 clients send requests back to back. This measures capacity; on a saturated server
  p99 is queueing (32 / throughput), so it is the ceiling, not the everyday latency.
- open loop: 32 clients together offer a fixed rate (default 500 req/s), latency timed from each
  request's scheduled send. This is the latency 32 concurrent clients see at that load.

Prints p50/p99 per operation and the ratio of each p99 to the no-op endpoint's p99.
Target (shared/DESIGN.md): p99 <= 20 ms at 32 concurrent clients (the exit status reflects the open loop).

    .venv/bin/python bench/api.py [--requests 4000] [--concurrency 32] [--workers 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import loadgen

CONNECTIONS = "/data/foundation/flowservice/connections"
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_body(i: int) -> bytes:
    return json.dumps(
        {
            "name": f"bench connection {i}",
            "auth": {
                "specName": "Basic Authentication",
                "params": {
                    "username": f"user{i}@example.com",
                    "password": "bench-password",
                    "securityToken": "bench-token",
                },
            },
            "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
        }
    ).encode()


def start_server(home: Path, port: int, workers: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HEADWATER_HOME": str(home),
        "HEADWATER_PORT": str(port),
        "HEADWATER_LOG_LEVEL": "warning",
    }
    if database_url:
        env["HEADWATER_DATABASE_URL"] = database_url
    exe = Path(sys.executable).with_name("headwater")
    proc = subprocess.Popen(
        [str(exe), "serve", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.1)
    raise SystemExit("server did not start in 60 s")


def credentials(home: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "HEADWATER_HOME": str(home)}
    if database_url:
        env["HEADWATER_DATABASE_URL"] = database_url
    exe = Path(sys.executable).with_name("headwater")
    out = subprocess.run([str(exe), "credentials", "--json"], env=env, check=True, capture_output=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@contextmanager
def fresh_database(server_url: str | None) -> Iterator[str | None]:
    """A new, empty database on the PostgreSQL server of ``server_url`` (dropped afterwards), so a run
    never measures, or leaves tables in, a database something else uses."""
    if not server_url:
        yield None
        return
    import psycopg

    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"hw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main_async(args: argparse.Namespace) -> int:
    with fresh_database(args.database_url) as database_url:
        return await run(args, database_url)


async def run(args: argparse.Namespace, database_url: str | None) -> int:
    home = Path(tempfile.mkdtemp(prefix="hw-bench-api-"))
    port = free_port()
    proc = start_server(home, port, args.workers, database_url)
    try:
        creds = credentials(home, database_url)
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(
            base + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["apiKey"],
                "client_secret": creds["clientSecret"],
            },
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-key": creds["apiKey"],
            "x-gw-ims-org-id": creds["orgId"],
            "x-sandbox-name": "prod",
        }
        post_headers = {**headers, "Content-Type": "application/json"}
        n, c = args.requests, args.concurrency

        closed = await closed_loop(port, headers, post_headers, n, c, base)
        opened = await open_loop(port, headers, post_headers, c, args.rate, args.seconds, base)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(
        f"# bench/api.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} cpus  "
        f"python {platform.python_version()}  workers={args.workers}  concurrency={c}  "
        f"store={'postgresql' if args.database_url else 'sqlite'}"
    )
    print(f"## closed loop: {c} clients sending back to back (saturation; p99 is mostly queueing)")
    report(closed)
    print(f"## open loop: {c} clients offering {args.rate:.0f} req/s in total for {args.seconds:.0f} s each")
    return report(opened)


def report(results: list[loadgen.Result]) -> int:
    noop, *rest = results
    print(noop.row())
    failed = False
    for result in rest:
        ratio = result.pct(99) / noop.pct(99)
        ok = result.pct(99) <= 20 and result.errors == 0
        failed |= not ok
        print(result.row() + f"  p99/no-op {ratio:5.2f}x  {'OK' if ok else 'MISS'} (target p99 <= 20 ms)")
    return 1 if failed else 0


def scenarios(
    headers: dict[str, str], post_headers: dict[str, str], base: str
) -> dict[str, loadgen.RequestFactory]:
    def ids() -> list[str]:
        with httpx.Client(base_url=base, headers=headers) as client:
            return [item["id"] for item in client.get(CONNECTIONS, params={"limit": 1000}).json()["items"]]

    rng = random.Random(7)
    cache: list[str] = []

    def get(i: int) -> bytes:
        if not cache:
            cache.extend(ids())
        return loadgen.build_request("GET", f"{CONNECTIONS}/{rng.choice(cache)}", headers)

    return {
        "no-op GET /health": lambda i: loadgen.build_request("GET", "/health", {}),
        "create POST /connections": lambda i: loadgen.build_request(
            "POST", CONNECTIONS, post_headers, connection_body(i)
        ),
        "get GET /connections/{id}": get,
        "list GET /connections?limit=20": lambda i: loadgen.build_request(
            "GET", f"{CONNECTIONS}?limit=20", headers
        ),
    }


async def closed_loop(
    port: int, headers: dict[str, str], post_headers: dict[str, str], n: int, c: int, base: str
) -> list[loadgen.Result]:
    out = []
    for name, factory in scenarios(headers, post_headers, base).items():
        expect = 201 if name.startswith("create") else 200
        out.append(await loadgen.run(name, port, factory, concurrency=c, total=n, expect=expect, warmup=100))
    return out


async def open_loop(
    port: int,
    headers: dict[str, str],
    post_headers: dict[str, str],
    c: int,
    rate: float,
    seconds: float,
    base: str,
) -> list[loadgen.Result]:
    out = []
    for name, factory in scenarios(headers, post_headers, base).items():
        expect = 201 if name.startswith("create") else 200
        out.append(
            await loadgen.run_rate(
                name, port, factory, concurrency=c, rate=rate, seconds=seconds, expect=expect
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to run on (e.g. postgresql://postgres@127.0.0.1:5432/postgres): the "
        "bench makes a database of its own there and drops it afterwards",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop offered rate, requests/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="open-loop duration per operation")
    raise SystemExit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
