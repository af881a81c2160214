"""Partitions on Ray (``HEADWATER_PARTITION_ENGINE=ray``, the optional extra ``headwater[ray]``).

The run's owner (runtime/partitions.py) submits one Ray task per partition not yet done, to the cluster
of ``HEADWATER_RAY_ADDRESS`` (or a local cluster of this machine's cores, bound to loopback). Ray decides
where and when each task runs; the metadata store still decides who holds a partition: the task claims
THAT partition under a lease, executes it as a queue worker would (runtime/partitionwork.py) and records
its output only while it holds it. So a task run twice (the owner submits it again) never records a
partition twice, and the owner still makes the run's one commit.

Crashes:

- a Ray worker killed mid-partition: its task fails (Ray's ``WorkerCrashedError``; Ray's own retries are
  off, one retry policy is enough) and the owner submits it again; the new task waits for the dead
  attempt's lease to expire, then redoes the partition;
- the owner killed: Ray ends the tasks it owned (a driver's tasks share its fate) and the worker that
  takes the run over submits the undone partitions again;
- a partition held by another process (a queue worker, before a change of engine): the task waits until
  it is done or its lease expires.

A Ray node runs with the workers' ``HEADWATER_*`` environment: a task reads the metadata store and the
lake, and opens connections' secrets, as a worker does. No setting or secret travels in a task's
arguments (they would sit in Ray's object store): the task gets a run id, a partition number, and the
class of the owner's services (by reference), which builds a Ray worker process's own from its settings.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.services.ids import new_hex, now_ms

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime
    from headwater.runtime.partitions import PartitionedCopy
    from headwater.settings import Settings

log = logging.getLogger("headwater.runtime")

_CONNECT = threading.Lock()
_SERVICES: Any = None  # a Ray worker process's services, built at its first task
_NAME: str | None = None


def work(copy: PartitionedCopy, on_progress: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """The owner's side: keep one Ray task in flight per partition not done until all are; their
    outputs in partition order (:func:`~headwater.runtime.partitions.finished` raises the first error)."""
    from headwater.runtime.partitions import finished

    settings, store, run_id = copy.services.settings, copy.services.store, copy.run.id
    ray = connect(settings)
    task = ray.remote(execute_partition).options(max_retries=0, num_cpus=1)
    # A Ray worker process builds services of its own of the owner's class (the container's, sent by
    # reference: the runtime never imports the container) from its environment's settings.
    builder = type(copy.services)
    in_flight: dict[int, Any] = {}  # partition -> its task's ObjectRef
    try:
        while True:
            parts = store.partitions(run_id)
            outputs = finished(parts)
            on_progress(outputs)
            if len(outputs) == len(parts):
                return outputs
            for part in parts:
                if part.state != "done" and part.part not in in_flight:
                    in_flight[part.part] = task.remote(builder, run_id, part.part)
            ready, _ = ray.wait(list(in_flight.values()), num_returns=1, timeout=settings.worker_poll_seconds)
            for ref in ready:
                number = next(n for n, r in in_flight.items() if r == ref)
                del in_flight[number]
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as exc:  # its worker died, or the task raised
                    log.warning(
                        "run %s partition %d: its Ray task failed (%s); submitted again", run_id, number, exc
                    )
    finally:
        for ref in in_flight.values():  # the run failed: its other tasks need not go on
            try:
                ray.cancel(ref)
            except Exception:  # already ended, or the cluster is gone
                log.debug("could not cancel a Ray task of run %s", run_id, exc_info=True)


def connect(settings: Settings) -> Any:
    """The ``ray`` module, connected (once per process) to the configured cluster, or to a local one it
    starts: every port on loopback, no dashboard, no usage statistics sent anywhere."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    host = settings.ray_address.rpartition(":")[0].strip("[]")
    if host in ("", "127.0.0.1", "localhost", "::1"):
        # Read by Ray when it is imported: this process (and a local cluster it starts) is a node on
        # 127.0.0.1, not on the machine's address: Ray runs any code sent to it and its token
        # authentication is off by default, so a cluster of one machine stays on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if settings.ray_address and (token or (Path.home() / ".ray" / "auth_token").is_file()):
        # As `ray start` does: with a token at hand and no RAY_AUTH_MODE, the cluster requires it, and a
        # driver that does not send it is refused ("InvalidAuthToken"); Ray's driver does not look.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    with _CONNECT:
        if not ray.is_initialized():
            common: dict[str, Any] = {
                "namespace": "headwater",
                "log_to_driver": False,
                "logging_level": logging.WARNING,
            }
            if settings.ray_address:
                ray.init(address=settings.ray_address, **common)
            else:  # its workers inherit this process's environment; the home made absolute here
                env = {"HEADWATER_HOME": str(settings.home)}
                ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": env}, **common)
            log.info("partitions run on Ray: %s", ray.get_runtime_context().gcs_address)
    return ray


def execute_partition(builder: Callable[[Settings], Runtime], run_id: str, part: int) -> bool:
    """A Ray task: claim partition ``part`` of ``run_id`` (waiting while another holds it under a live
    lease), execute it and record its output; True when it is done (here or elsewhere). ``builder``
    makes this process's services from its settings, at its first task."""
    from headwater.runtime import partitionwork
    from headwater.runtime.partitions import MAX_ATTEMPTS, given_up

    services = _services(builder)
    store, settings = services.store, services.settings
    worker = _worker_name()
    lease_ms = int(settings.run_lease_seconds * 1000)
    pause = threading.Event()  # never set: a wait with a timeout that is not a sleep
    while True:
        claimed = store.claim_partition(worker, lease_ms, now_ms(), run_id, part, MAX_ATTEMPTS)
        if claimed is not None:
            return partitionwork.execute(services, claimed, worker)
        current = next((p for p in store.partitions(run_id) if p.part == part), None)
        if current is None or current.state == "done":
            return current is not None
        if given_up(current, now_ms()):
            return False  # the owner fails the run
        pause.wait(settings.worker_poll_seconds)


def _worker_name() -> str:
    """This Ray worker process's name as a partition's holder (``ray:<host>:<pid>:<hex>``)."""
    global _NAME
    if _NAME is None:
        _NAME = f"ray:{socket.gethostname()[:40]}:{os.getpid()}:{new_hex(3)}"  # a lease owner: <= 64
    return _NAME


def _services(builder: Callable[[Settings], Runtime]) -> Runtime:
    global _SERVICES
    if _SERVICES is None:
        from headwater.settings import Settings

        _SERVICES = builder(Settings())
    return _SERVICES  # type: ignore[no-any-return]
