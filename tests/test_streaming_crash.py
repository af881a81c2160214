"""Exactly once across `kill -9`: every message an inlet acknowledged is in the dataset once, whether the
worker dies before or after a commit, or the server and the worker are killed at a moment of the test's
choosing while messages flow. Run against the local log and against NATS JetStream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.streaming_helpers import FS, http_api_flow
from tests.support import ApiClient, free_port, token_for, wait_until
from tests.test_crash_recovery import EXE

NATS_URL = os.environ.get("HEADWATER_TEST_NATS", "nats://127.0.0.1:4222")
BATCHES = 60
PER_BATCH = 40


class StreamingDeployment:
    """`headwater serve --no-worker` (the inlets) and `headwater worker` (the micro-batchers), as real
    processes sharing one home."""

    def __init__(self, home: Path, log: str, extra_env: dict[str, str] | None = None) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "HEADWATER_HOME": str(home),
            "HEADWATER_PORT": str(port),
            "HEADWATER_ENVIRONMENT": "development",
            "HEADWATER_LOG_LEVEL": "warning",
            "HEADWATER_STREAM_LOG": log,
            "HEADWATER_STREAM_FLUSH_SECONDS": "0.1",
            "HEADWATER_WORKER_POLL_SECONDS": "0.1",
            **(extra_env or {}),
        }
        self.env.pop("HEADWATER_FAULT_POINT", None)
        self.server = self.start_server()
        creds = json.loads(
            subprocess.run(
                [EXE, "credentials", "--json"], env=self.env, capture_output=True, check=True
            ).stdout
        )
        token = token_for(self.base, creds["apiKey"], creds["clientSecret"])
        self.api = ApiClient(self.base, token, creds["apiKey"], creds["orgId"], "prod", creds["tenantId"])
        self.worker: subprocess.Popen[bytes] | None = None
        self.home = home
        self._workers = 0
        self._logs: dict[int, Path] = {}
        self._lake: Any = None
        self._scope: Any = None

    def start_server(self) -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            [EXE, "serve", "--no-worker"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:
            try:
                return httpx.get(self.base + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert server.poll() is None, "the server exited"
                return False

        wait_until(up, timeout=60)
        return server

    def start_worker(self, fault: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if fault:
            env["HEADWATER_FAULT_POINT"] = fault
        self._workers += 1
        log_path = self.home.parent / f"worker-{self._workers}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own descriptor
            self.worker = subprocess.Popen(
                [EXE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log_file
            )
        self._logs[self.worker.pid] = log_path
        return self.worker

    def wait_exit(self, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
        """Wait for ``process`` (a worker this deployment started) to exit; its return code. On timeout the
        AssertionError carries the end of what the worker logged, so a hang in CI can be read."""
        try:
            wait_until(lambda: process.poll() is not None, timeout=timeout)
        except AssertionError:
            path = self._logs.get(process.pid)
            logged = path.read_text(errors="replace")[-4000:] if path and path.exists() else ""
            raise AssertionError(f"the worker did not exit within {timeout}s; it logged:\n{logged}") from None
        return process.returncode

    def ids(self, dataset_id: str) -> list[str]:
        """The ``_id`` of every row, read in this (test) process from the deployment's lake."""
        from headwater.lake.iceberg import Lake
        from headwater.settings import Settings
        from headwater.stores.metadata import Scope

        if self._lake is None:
            self._lake = Lake(Settings(home=self.home, environment="development"))
            sandbox = self.api.headers["x-sandbox-name"]
            from headwater.stores.metadata import open_store

            store = open_store(f"sqlite:///{self.home / 'metadata.db'}")
            found = store.get_sandbox(self.api.headers["x-gw-ims-org-id"], sandbox)
            store.close()
            assert found is not None
            self._scope = Scope(found.org_id, found.id)
        table = self._lake.load(self._scope, dataset_id)
        if table is None:
            return []
        return [str(v) for v in self._lake.query(table, "SELECT _id FROM dataset").column("_id").to_pylist()]

    def stop(self) -> None:
        for process in (self.worker, self.server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        self.api.close()


@pytest.fixture(params=["local", "jetstream"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StreamingDeployment]:
    log = "local" if request.param == "local" else NATS_URL
    deployment = StreamingDeployment(tmp_path / "home", log)
    yield deployment
    deployment.stop()


def _envelope(pipeline: dict[str, Any], org: str, event_id: str) -> dict[str, Any]:
    return {
        "header": {"imsOrgId": org, "datasetId": pipeline["datasetId"], "flowId": pipeline["flowId"]},
        "body": {
            "xdmEntity": {
                "_id": event_id,
                "timestamp": "2026-11-23T10:00:00Z",
                "_headwater": {"metric": "sent", "event_id": event_id},
            }
        },
    }


class Sender:
    """Posts batches of unique messages and remembers every message the inlet acknowledged."""

    def __init__(self, d: StreamingDeployment, pipeline: dict[str, Any]) -> None:
        self.url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
        self.pipeline = pipeline
        self.org = d.api.headers["x-gw-ims-org-id"]
        self.acked: list[str] = []
        self.batches_done = 0

    def _up(self) -> bool:
        try:
            return httpx.get(self.url.split("/collection/")[0] + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def send(self, batches: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(batches):
                ids = [uuid.uuid4().hex for _ in range(PER_BATCH)]
                body = {"messages": [_envelope(self.pipeline, self.org, i) for i in ids]}
                try:
                    response = client.post(self.url, json=body)
                except httpx.HTTPError:
                    # Not acknowledged (the server was killed meanwhile): it may or may not land. Go on
                    # once the server is back, as a client retrying with backoff would.
                    self.batches_done += 1
                    wait_until(self._up, timeout=60, interval=0.05)
                    continue
                if response.status_code == 207:
                    answers = response.json()["responses"]
                    self.acked.extend(i for i, a in zip(ids, answers, strict=True) if "xactionId" in a)
                self.batches_done += 1


def _settle(d: StreamingDeployment, pipeline: dict[str, Any], acked: list[str]) -> None:
    """Wait until every acknowledged message is in the dataset, then check none is there twice."""
    found: list[str] = []

    def complete() -> bool:
        nonlocal found
        found = d.ids(pipeline["datasetId"])
        return set(acked) <= set(found)

    wait_until(complete, timeout=90, interval=0.2)
    assert len(found) == len(set(found)), "a message landed twice"


@pytest.mark.parametrize("fault", ["stream_before_commit", "stream_after_commit:2"])
def test_kill_9_of_the_worker_at_a_commit_then_restart_lands_every_message_once(
    deployment: StreamingDeployment, fault: str
) -> None:
    d = deployment
    # Duplicate suppression is off: a message committed twice would show as two rows.
    pipeline = http_api_flow(d.api, options={"deduplicate": False})
    sender = Sender(d, pipeline)
    worker = d.start_worker(fault)
    sender.send(BATCHES // 3)
    if fault.endswith(":2"):  # the first commit goes through; the worker dies at the second
        wait_until(lambda: d.ids(pipeline["datasetId"]), timeout=60, interval=0.2)
        sender.send(BATCHES // 3)
    assert d.wait_exit(worker) == -signal.SIGKILL
    d.start_worker()
    sender.send(BATCHES - sender.batches_done)
    assert len(sender.acked) == BATCHES * PER_BATCH
    _settle(d, pipeline, sender.acked)


def test_kill_9_of_server_and_worker_while_messages_flow_loses_and_doubles_nothing(
    deployment: StreamingDeployment,
) -> None:
    d = deployment
    pipeline = http_api_flow(d.api, options={"deduplicate": False})
    sender = Sender(d, pipeline)
    d.start_worker()
    thread = threading.Thread(target=sender.send, args=(BATCHES,))
    thread.start()
    # Kill both at a moment chosen from live progress: some batches are acknowledged, more are coming.
    wait_until(lambda: sender.batches_done >= BATCHES // 3, timeout=60)
    d.server.send_signal(signal.SIGKILL)
    assert d.worker is not None
    d.worker.send_signal(signal.SIGKILL)
    d.server.wait(timeout=10)
    d.worker.wait(timeout=10)
    d.server = d.start_server()
    d.start_worker()
    thread.join(timeout=120)
    assert sender.batches_done == BATCHES
    assert len(sender.acked) >= PER_BATCH * (BATCHES // 3)
    _settle(d, pipeline, sender.acked)


@pytest.fixture
def local_deployment(tmp_path: Path) -> Iterator[StreamingDeployment]:
    deployment = StreamingDeployment(tmp_path / "home", "local")
    yield deployment
    deployment.stop()


def test_a_micro_batch_redone_after_a_kill_9_keeps_its_row_errors_once(
    local_deployment: StreamingDeployment,
) -> None:
    d = local_deployment
    pipeline = http_api_flow(d.api, options={"deduplicate": False})
    org = d.api.headers["x-gw-ims-org-id"]
    messages = [_envelope(pipeline, org, f"good-{i}") for i in range(5)]
    for i in range(3):  # a number for a text field: a row error each
        bad = _envelope(pipeline, org, f"bad-{i}")
        bad["body"]["xdmEntity"]["_headwater"]["email"] = 12345
        messages.append(bad)
    batch_url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    sent = httpx.post(batch_url, json={"messages": messages}, timeout=10)
    assert sent.status_code == 207 and all("xactionId" in a for a in sent.json()["responses"]), sent.text
    # The first worker writes the micro-batch's row errors, then dies before its commit; the second
    # reads the same records again from the same log position and commits them.
    doomed = d.start_worker("stream_before_commit")
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    d.start_worker()
    wait_until(lambda: len(d.ids(pipeline["datasetId"])) == 5, timeout=60, interval=0.2)

    def failed_run() -> dict[str, Any] | None:
        listed = d.api.get(f"{FS}/runs", params={"property": f"flowId=={pipeline['flowId']}"}).json()
        return next((r for r in listed["items"] if r["metrics"]["recordSummary"]["failedRecordCount"]), None)

    run = wait_until(failed_run, timeout=30, interval=0.2)
    assert run["metrics"]["recordSummary"]["failedRecordCount"] == 3
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = d.api.get(f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors"})
    assert listing.status_code == 200, listing.text
    errors = d.api.get(listing.json()["data"][0]["_links"]["self"]["href"])
    lines = [json.loads(line) for line in errors.text.splitlines() if line.strip()]
    assert sorted(e["_corrupt_record"]["_id"] for e in lines) == ["bad-0", "bad-1", "bad-2"], errors.text
