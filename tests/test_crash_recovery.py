"""Crash tests with real processes: `kill -9` of a worker at any point, then a restart, leaves every source
row in the dataset exactly once; two workers on one PostgreSQL database never run the same run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ApiClient, free_port, token_for, wait_until
from tests.test_batch_runs import FS, contact, files_flow, write_csv

ROWS = 150_000
EXE = str(Path(sys.executable).with_name("headwater"))


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    api: ApiClient
    server: subprocess.Popen[bytes]
    logs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker(self, fault: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if fault:
            env["HEADWATER_FAULT_POINT"] = fault
        # The log goes to a file (an unread pipe would block a chatty worker); a failure shows its tail.
        log = open(self.home.parent / f"worker-{len(self.logs)}.log", "wb")  # noqa: SIM115
        self.logs.append(Path(log.name))
        with log:
            process = subprocess.Popen([EXE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(process)
        return process

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs)

    def count(self, dataset_id: str) -> tuple[int, int]:
        out = subprocess.run(
            [
                EXE,
                "datasets",
                "query",
                dataset_id,
                "--sandbox",
                "prod",
                "--json",
                "SELECT count(*) AS n, count(DISTINCT _id) AS d FROM dataset",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        row = json.loads(out.stdout.splitlines()[0]) if out.stdout.strip() else {"n": 0, "d": 0}
        return int(row["n"]), int(row["d"])


@contextmanager
def _deploy(tmp_path: Path, database_url: str | None = None) -> Iterator[Deployment]:
    """A server (and the workers a test starts) that are stopped however the test ends."""
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "HEADWATER_HOME": str(home),
        "HEADWATER_FILES_ROOTS": str(tmp_path),  # the flows' sources are in tmp_path, beside the home
        "HEADWATER_PORT": str(port),
        "HEADWATER_ENVIRONMENT": "development",
        "HEADWATER_OUTBOUND_ALLOW": "127.0.0.1",
        "HEADWATER_RUN_LEASE_SECONDS": "2",
        "HEADWATER_WORKER_POLL_SECONDS": "0.1",
        "HEADWATER_LOG_LEVEL": "warning",
    }
    env.pop("HEADWATER_FAULT_POINT", None)
    if database_url:
        env["HEADWATER_DATABASE_URL"] = database_url
    server = subprocess.Popen(
        [EXE, "serve", "--no-worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    deployment: Deployment | None = None

    def up() -> bool:
        try:
            return httpx.get(base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert server.poll() is None, server.stderr.read() if server.stderr else b""
            return False

    try:
        wait_until(up, timeout=60)
        creds = json.loads(
            subprocess.run([EXE, "credentials", "--json"], env=env, capture_output=True, check=True).stdout
        )
        token = token_for(base, creds["apiKey"], creds["clientSecret"])
        with ApiClient(base, token, creds["apiKey"], creds["orgId"], "prod", creds["tenantId"]) as api:
            deployment = Deployment(home, env, api, server)
            yield deployment
    finally:
        for process in [server, *(deployment.processes if deployment else [])]:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with _deploy(tmp_path) as deployment:
        yield deployment


def _start_run(d: Deployment, flow: str) -> str:
    created = d.api.post(
        f"{FS}/runs", json={"flowId": flow, "params": {"windowEndTime": "2024-02-01T00:00:00Z"}}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _run(d: Deployment, run_id: str) -> dict[str, Any]:
    item: dict[str, Any] = d.api.get(f"{FS}/runs/{run_id}").json()["items"][0]
    return item


def _finished(d: Deployment, run_id: str, timeout: float = 120) -> dict[str, Any]:
    result: dict[str, Any] = wait_until(
        lambda: (r := _run(d, run_id))["state"] in ("success", "partialSuccess", "failed") and r,
        timeout=timeout,
    )
    return result


@pytest.fixture
def big_source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    write_csv(root / "contacts.csv", [contact(i, "2024-01-15 00:00:00") for i in range(ROWS)])
    return root


@pytest.mark.parametrize("fault", ["mid_read:2", "before_commit", "after_commit", "after_batch_saved"])
def test_kill_9_at_a_named_point_then_restart_loads_every_row_once(
    deployment: Deployment, big_source: Path, fault: str
) -> None:
    ids = files_flow(deployment.api, big_source)
    run_id = _start_run(deployment, ids["flow"])
    doomed = deployment.worker(fault)
    assert doomed.wait(timeout=120) == -signal.SIGKILL, doomed.stderr.read() if doomed.stderr else b""
    survivor = deployment.worker()
    try:
        run = _finished(deployment, run_id)
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)
    assert run["state"] == "success", run["metrics"]["statusSummary"]
    assert deployment.count(ids["dataset"]) == (ROWS, ROWS)
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == ROWS


def test_kill_9_while_reading_then_restart_loads_every_row_once(
    deployment: Deployment, big_source: Path
) -> None:
    ids = files_flow(deployment.api, big_source)
    run_id = _start_run(deployment, ids["flow"])
    doomed = deployment.worker()

    def reading() -> bool:
        run = _run(deployment, run_id)
        started = run["metrics"]["recordSummary"]["inputRecordCount"] > 0
        return started or run["state"] in ("success", "partialSuccess", "failed")

    wait_until(reading, timeout=120, interval=0.01)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    survivor = deployment.worker()
    try:
        run = _finished(deployment, run_id)
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)
    assert run["state"] == "success"
    assert deployment.count(ids["dataset"]) == (ROWS, ROWS)


def test_two_workers_on_postgresql_never_run_a_run_twice(tmp_path: Path, postgres_url: str) -> None:
    with _deploy(tmp_path, postgres_url) as d:
        flows = []
        for n in range(4):
            root = tmp_path / f"src{n}"
            root.mkdir()
            write_csv(root / "contacts.csv", [contact(i, "2024-01-15 00:00:00") for i in range(2_000)])
            flows.append(files_flow(d.api, root))
        runs = [_start_run(d, f["flow"]) for f in flows for _ in range(2)]
        workers = [d.worker(), d.worker()]
        try:
            results = [_finished(d, r) for r in runs]
        finally:
            for w in workers:
                w.terminate()
                w.wait(timeout=30)
        failed = [r["metrics"]["statusSummary"] for r in results if r["state"] != "success"]
        assert not failed, f"{failed}\n{d.worker_logs()}"
        for f in flows:  # the second run of each flow reads an empty window: rows are there once
            assert d.count(f["dataset"]) == (2_000, 2_000)
        for f in flows:
            batches = d.api.get("/data/foundation/catalog/batches", params={"dataSet": f["dataset"]}).json()
            assert len(batches) == 2
