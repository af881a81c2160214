"""A multi-node deployment on loopback (issue 17): API servers (`headwater serve --no-worker`) and workers
(`headwater worker`) as real processes, each with its own empty home, sharing only what
docs/deployment.md says nodes share: PostgreSQL (metadata and the Iceberg catalog), NATS JetStream (the
streaming log), an S3 bucket (the lake), the two keys and the public URL.

    cluster = Cluster(root, database_url, s3, api_servers=2, workers=2).start()
    lb = cluster.balancer()            # round robin over the live API servers, failing over on errors
    cluster.kill(cluster.apis[0])      # kill -9
    cluster.ids(scope, dataset_id)     # every ``_id`` of a dataset, read here from the lake on S3
    cluster.stop()

Used by tests/test_multinode.py (a short load) and bench/multinode.py (a longer one). The NATS log needs
no namespace of its own per deployment: its subjects are named by flow ids, which no two deployments
share.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import headwater
from tests.fakes.s3 import S3Server
from tests.support import (
    POSTGRES_ADMIN_URL,
    ApiClient,
    free_port,
    fresh_postgres_database,
    token_for,
    wait_until,
)

EXE = str(Path(sys.executable).with_name("headwater"))
# The children run the code this process imported (a worktree's src/, not the editable install's).
SRC = str(Path(headwater.__file__).resolve().parents[1])
NATS_URL = os.environ.get("HEADWATER_TEST_NATS", "nats://127.0.0.1:4222")


def fresh_database() -> AbstractContextManager[str]:
    """A new PostgreSQL database for bench/multinode.py (the tests use conftest's ``postgres_url``)."""
    return fresh_postgres_database(prefix="hw_bench_", admin_url=POSTGRES_ADMIN_URL)


@dataclass
class Node:
    """One process of the deployment, with its own home and its stderr in ``log``."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    base: str | None = None  # API servers: http://127.0.0.1:port
    process: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return Path(self.env["HEADWATER_HOME"])

    def start(self) -> Node:
        with open(self.log, "ab") as log:  # a file: an unread pipe would block a chatty process
            self.process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        assert self.base is not None and self.process is not None
        try:
            return httpx.get(self.base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert self.process.poll() is None, f"{self.name} exited:\n{self.tail()}"
            return False

    def kill(self) -> None:
        """kill -9, and wait until it is gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]


@dataclass
class Cluster:
    root: Path
    database_url: str
    s3: S3Server
    api_servers: int = 2
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    bucket: str = ""
    apis: list[Node] = field(default_factory=list)
    runners: list[Node] = field(default_factory=list)
    creds: dict[str, str] = field(default_factory=dict)
    _keys: tuple[str, str] = field(
        default_factory=lambda: (secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    )  # HEADWATER_ENCRYPTION_KEY and HEADWATER_TOKEN_SIGNING_KEY, the same on every node
    _lake: Any = None

    def __post_init__(self) -> None:
        self.bucket = self.bucket or self.s3.new_bucket()
        ports = [free_port() for _ in range(self.api_servers)]
        for i, port in enumerate(ports):
            env = self._env(f"api-{i}", {"HEADWATER_PORT": str(port)})
            command = [EXE, "serve", "--no-worker"]
            node = Node(f"api-{i}", command, env, self.root / f"api-{i}.log", f"http://127.0.0.1:{port}")
            self.apis.append(node)
        for i in range(self.workers):
            env = self._env(f"worker-{i}", {})
            self.runners.append(Node(f"worker-{i}", [EXE, "worker"], env, self.root / f"worker-{i}.log"))
        # The load balancer's address, were there one: every node names the same (inlet URLs use it).
        self.public_url = self.apis[0].base or ""
        for node in self.nodes:
            node.env["HEADWATER_PUBLIC_URL"] = self.public_url

    @property
    def shared_env(self) -> dict[str, str]:
        """What every node shares (docs/deployment.md, "Several machines")."""
        lake = {
            f"HEADWATER_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in self.s3.settings(self.bucket).items()
        }
        return {
            "HEADWATER_DATABASE_URL": self.database_url,
            "HEADWATER_STREAM_LOG": NATS_URL,
            **lake,
            "HEADWATER_ENCRYPTION_KEY": self._keys[0],
            "HEADWATER_TOKEN_SIGNING_KEY": self._keys[1],
            "HEADWATER_EMBEDDED_WORKER": "false",
        }

    @property
    def nodes(self) -> list[Node]:
        return [*self.apis, *self.runners]

    def _env(self, name: str, own: dict[str, str]) -> dict[str, str]:
        home = self.root / name / "home"  # empty, and nobody else's
        home.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": SRC,
            "HEADWATER_HOME": str(home),
            "HEADWATER_ENVIRONMENT": "development",
            "HEADWATER_OUTBOUND_ALLOW": "127.0.0.1",
            "HEADWATER_LOG_LEVEL": "warning",
            "HEADWATER_RUN_LEASE_SECONDS": "2",
            "HEADWATER_WORKER_POLL_SECONDS": "0.1",
            "HEADWATER_STREAM_FLUSH_SECONDS": "0.2",
            **self.shared_env,
            **self.extra_env,
            **own,
        }
        env.pop("HEADWATER_FAULT_POINT", None)
        return env

    # --- life cycle ---
    def start(self) -> Cluster:
        """Every node at once, on an empty database, as a deployment's units start: the migrations and
        the default organization's bootstrap are settled between them in PostgreSQL. This process takes
        the organization's credentials from a CLI on yet another empty home."""
        for node in self.nodes:
            node.start()
        for node in self.apis:
            wait_until(node.healthy, timeout=90, interval=0.1)
        self.creds = self._credentials()
        for node in self.runners:
            assert node.alive, f"{node.name} exited:\n{node.tail()}"
        return self

    def _credentials(self) -> dict[str, str]:
        env = self._env("cli", {})
        out = subprocess.run(
            [EXE, "credentials", "--json"], env=env, capture_output=True, timeout=90, check=False
        )
        assert out.returncode == 0, out.stderr.decode(errors="replace")
        creds: dict[str, str] = json.loads(out.stdout)
        return creds

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, node: Node) -> None:
        node.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.tail()}" for n in self.nodes)

    # --- clients ---
    def token(self, node: Node | None = None) -> str:
        base = (node or self.apis[0]).base
        assert base is not None
        return token_for(base, self.creds["apiKey"], self.creds["clientSecret"])

    def client(self, node: Node, token: str, sandbox: str = "prod") -> ApiClient:
        assert node.base is not None
        c = self.creds
        return ApiClient(node.base, token, c["apiKey"], c["orgId"], sandbox, c["tenantId"])

    def balancer(self, token: str, sandbox: str = "prod") -> Balancer:
        c = self.creds
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-key": c["apiKey"],
            "x-gw-ims-org-id": c["orgId"],
            "x-sandbox-name": sandbox,
        }
        return Balancer([n.base for n in self.apis if n.base], headers)

    # --- reading the lake from this process ---
    def ids(self, sandbox: str, dataset_id: str) -> list[str]:
        """Every row's ``_id``, read in this process from the lake on S3 through the shared catalog."""
        lake, scope = self._reader(sandbox)
        table = lake.load(scope, dataset_id)
        if table is None:
            return []
        # A scan, not lake.query: a query's answer is capped at HEADWATER_QUERY_MAX_ROWS.
        return [str(v) for v in lake.scan(table).read_all().column("_id").to_pylist()]

    def _reader(self, sandbox: str) -> tuple[Any, Any]:
        from headwater.lake.iceberg import Lake
        from headwater.settings import Settings
        from headwater.stores.metadata import Scope, open_store

        if self._lake is None:
            settings = Settings(
                home=self.root / "reader" / "home",
                environment="development",
                database_url=self.database_url,
                **self.s3.settings(self.bucket),  # type: ignore[arg-type]
            )
            self._lake = Lake(settings)
        store = open_store(self.database_url)
        try:
            found = store.get_sandbox(self.creds["orgId"], sandbox)
        finally:
            store.close()
        assert found is not None
        return self._lake, Scope(found.org_id, found.id)


class Balancer:
    """What a client behind a load balancer sees: requests go round robin over the API servers; one that
    cannot be reached is left out for a while and the request goes to the next.

    :meth:`once` sends a request one time (a transport error answers None: not acknowledged, maybe
    landed); :meth:`request` retries a request on the next server until it is answered (only for
    requests that are safe to repeat)."""

    DOWN_SECONDS = 5.0

    def __init__(self, bases: list[str], headers: dict[str, str]) -> None:
        self.bases = bases
        self.headers = headers
        self._next = itertools.cycle(range(len(bases)))
        self._down: dict[int, float] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(headers=headers, timeout=20)
        self.failovers = 0
        self.by_server = [0] * len(bases)  # requests answered, per server

    def _pick(self) -> int:
        with self._lock:
            now = time.monotonic()
            for _ in range(len(self.bases)):
                i = next(self._next)
                if self._down.get(i, 0.0) <= now:
                    return i
            return next(self._next)  # all down: try anyway

    def once(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        i = self._pick()
        try:
            response = self._client.request(method, self.bases[i] + path, **kwargs)
        except httpx.TransportError:
            with self._lock:
                self._down[i] = time.monotonic() + self.DOWN_SECONDS
                self.failovers += 1
            return None
        self.by_server[i] += 1
        return response

    def request(self, method: str, path: str, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            response = self.once(method, path, **kwargs)
            if response is not None and response.status_code not in (502, 503):
                return response
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no API server answered within {timeout}s")
            time.sleep(0.05)

    def close(self) -> None:
        self._client.close()
