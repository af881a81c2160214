"""The loads of the multi-node test and benchmark, each sent through a :class:`Balancer` (so through
every API server in turn, and through the survivors once one is killed), and what each must find
afterwards.

- :class:`StreamLoad`: batches of unique XDM events to a streaming flow's inlet. A message counts as
  acknowledged only when its answer carried an ``xactionId``; one whose request failed is never sent
  again (it may or may not have landed), so a message found twice was committed twice.
- :class:`ActivationLoad`: raw events to a streaming activation flow's inlet, delivered to the sink.
- :class:`BatchLoad`: CSV files through the Batch Ingestion API, uploaded in chunks (each through the
  next server), completed, and waited for; requests are repeated on another server when one fails (they
  are idempotent), so every batch must land, once.

Each load runs in a thread of its own (``start()``/``join()``), paced at ``rate`` requests a second so
that a kill lands in the middle of all of them.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.multinode_harness import Balancer

IMPORT = "/data/foundation/import/batches"
CAT = "/data/foundation/catalog"
OCTETS = {"Content-Type": "application/octet-stream"}


class Load:
    """A paced loop of ``count`` steps in a thread; ``done`` counts the steps taken."""

    def __init__(self, count: int, rate: float) -> None:
        self.count = count
        self.rate = rate
        self.done = 0
        self.error: BaseException | None = None
        self.refused: list[int] = []  # inlet statuses other than 207 (a 5xx from a dying server)
        self._thread = threading.Thread(target=self._run, daemon=True, name=type(self).__name__)
        self.started = self.ended = 0.0

    def step(self, n: int) -> None:
        raise NotImplementedError

    def post(self, lb: Balancer, path: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Send ``messages`` once to a batch inlet: its per-message answers; None when the request got no
        answer, or a status other than 207 (which ``refused`` keeps)."""
        response = lb.once("POST", path, json={"messages": messages})
        if response is None:
            return None
        if response.status_code != 207:
            self.refused.append(response.status_code)
            return None
        answers: list[dict[str, Any]] = response.json()["responses"]
        return answers

    def _run(self) -> None:
        self.started = time.monotonic()
        try:
            for n in range(self.count):
                due = self.started + n / self.rate
                time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not synchronising
                self.step(n)
                self.done += 1
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{type(self).__name__} still running after {timeout}s"
        if self.error is not None:
            raise self.error


def envelope(pipeline: dict[str, Any], org: str, event_id: str) -> dict[str, Any]:
    return {
        "header": {"imsOrgId": org, "datasetId": pipeline["datasetId"], "flowId": pipeline["flowId"]},
        "body": {
            "xdmEntity": {
                "_id": event_id,
                "timestamp": "2026-12-07T10:00:00Z",
                "_headwater": {"metric": "sent", "event_id": event_id},
            }
        },
    }


def inlet_path(inlet_url: str) -> str:
    """The batch inlet's path: the client picks the server (the URL names the public address)."""
    return "/collection/batch/" + inlet_url.rstrip("/").rsplit("/", 1)[-1]


class StreamLoad(Load):
    def __init__(
        self, lb: Balancer, pipeline: dict[str, Any], org: str, batches: int, per_batch: int, rate: float
    ) -> None:
        super().__init__(batches, rate)
        self.lb, self.pipeline, self.org, self.per_batch = lb, pipeline, org, per_batch
        self.path = inlet_path(pipeline["inletUrl"])
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.sent_at_kill: int | None = None  # len(sent) when the kill came

    def step(self, n: int) -> None:
        ids = [uuid.uuid4().hex for _ in range(self.per_batch)]
        self.sent.extend(ids)
        answers = self.post(self.lb, self.path, [envelope(self.pipeline, self.org, i) for i in ids])
        if answers is None:
            return
        self.acked.extend(i for i, a in zip(ids, answers, strict=True) if "xactionId" in a)


def activation_event(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "first": "Ada", "last": f"L{n}", "order": {"amount": n}}


class ActivationLoad(Load):
    def __init__(self, lb: Balancer, inlet: str, batches: int, per_batch: int, rate: float) -> None:
        super().__init__(batches, rate)
        self.lb, self.per_batch = lb, per_batch
        self.path = inlet.replace("/collection/", "/collection/batch/")
        self.acked: list[str] = []

    def step(self, n: int) -> None:
        events = [activation_event(n * self.per_batch + k) for k in range(self.per_batch)]
        answers = self.post(self.lb, self.path, events)
        if answers is None:
            return
        self.acked.extend(e["email"] for e, a in zip(events, answers, strict=True) if "xactionId" in a)


def people_csv(batch: int, rows: int) -> bytes:
    lines = ["_id,person.name.firstName,person.name.lastName,personalEmail.address"]
    lines += [f"b{batch}-{i},First{i},Last{i},b{batch}.p{i}@example.com" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class BatchOutcome:
    batch_id: str
    rows: int
    status: str = "processing"
    doc: dict[str, Any] = field(default_factory=dict)


class BatchLoad(Load):
    """Batch after batch, each uploaded in ``chunks`` chunks and completed; the next starts once the
    last is final (so promotions run throughout the load)."""

    def __init__(
        self, lb: Balancer, dataset_id: str, batches: int, rows: int, chunks: int, rate: float
    ) -> None:
        super().__init__(batches, rate)
        self.lb, self.dataset_id, self.rows, self.chunks = lb, dataset_id, rows, chunks
        self.outcomes: list[BatchOutcome] = []
        self.completed = 0  # batches whose COMPLETE was answered

    def step(self, n: int) -> None:
        created = self.lb.request(
            "POST", IMPORT, json={"datasetId": self.dataset_id, "inputFormat": {"format": "csv"}}
        )
        assert created.status_code == 201, created.text
        batch_id = str(created.json()["id"])
        outcome = BatchOutcome(batch_id, self.rows)
        self.outcomes.append(outcome)
        data = people_csv(n, self.rows)
        url = f"{IMPORT}/{batch_id}/datasets/{self.dataset_id}/files/people.csv"
        started = self.lb.request("POST", f"{url}?action=INITIALIZE")
        assert started.status_code == 201, started.text
        size = -(-len(data) // self.chunks)
        for start in range(0, len(data), size):
            end = min(start + size, len(data)) - 1
            headers = {**OCTETS, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
            sent = self.lb.request("PATCH", url, content=data[start : end + 1], headers=headers)
            assert sent.status_code == 200, sent.text
        closed = self.lb.request("POST", f"{url}?action=COMPLETE")
        assert closed.status_code == 201 and closed.json()["size"] == len(data), closed.text
        done = self.lb.request("POST", f"{IMPORT}/{batch_id}?action=COMPLETE")
        assert done.status_code == 200, done.text
        self.completed += 1
        self.wait_final(outcome, timeout=60)

    def wait_final(self, outcome: BatchOutcome, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while outcome.status == "processing":
            response = self.lb.request("GET", f"{CAT}/batches/{outcome.batch_id}")
            assert response.status_code == 200, response.text
            outcome.doc = response.json()[outcome.batch_id]
            outcome.status = str(outcome.doc["status"])
            if outcome.status == "processing":
                assert time.monotonic() < deadline, f"batch {outcome.batch_id} not final in {timeout}s"
                time.sleep(0.1)  # polling the batch as an AEP client does
