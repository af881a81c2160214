"""Contract of the run queue, on SQLite and PostgreSQL: claims are exclusive, leases expire and are
taken over, schedule slots are queued once; the same for the partitions of a run, whose output is
recorded once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.stores.metadata import MetadataStore, QueuedRun, Scope, open_store

SCOPE = Scope("org", "sandbox")


def _run(run_id: str, slot: int | None = None, at: int = 1, flow: str = "flow-1") -> QueuedRun:
    return QueuedRun(run_id=run_id, scope=SCOPE, flow_id=flow, scheduled_for=slot, enqueued_at=at)


class RunQueueContract:
    __test__ = False

    @pytest.fixture
    def store(self) -> Iterator[MetadataStore]:
        raise NotImplementedError

    def test_claims_in_order_and_exclusively(self, store: MetadataStore) -> None:
        assert store.enqueue_run(_run("r1", at=1, flow="f1"))
        assert store.enqueue_run(_run("r2", at=2, flow="f2"))
        first = store.claim_run("w1", lease_ms=10_000, now_ms=100)
        assert (
            first is not None and first.run_id == "r1" and first.lease_owner == "w1" and first.attempts == 1
        )
        second = store.claim_run("w2", lease_ms=10_000, now_ms=100)
        assert second is not None and second.run_id == "r2"
        assert store.claim_run("w3", lease_ms=10_000, now_ms=100) is None

    def test_a_schedule_slot_is_queued_once(self, store: MetadataStore) -> None:
        assert store.enqueue_run(_run("a", slot=1_000))
        assert not store.enqueue_run(_run("b", slot=1_000))
        assert store.enqueue_run(_run("c", slot=2_000))
        assert store.enqueue_run(_run("d")) and store.enqueue_run(_run("e"))  # ad hoc runs have no slot
        assert store.last_slot("flow-1") == 2_000
        assert store.last_slot("other") is None

    def test_expired_lease_is_taken_over_and_the_old_holder_loses_it(self, store: MetadataStore) -> None:
        store.enqueue_run(_run("r1"))
        assert store.claim_run("w1", lease_ms=1_000, now_ms=0) is not None
        assert store.claim_run("w2", lease_ms=1_000, now_ms=500) is None  # lease still valid
        assert store.renew_lease("r1", "w1", until_ms=2_000)
        assert store.claim_run("w2", lease_ms=1_000, now_ms=1_500) is None
        taken = store.claim_run("w2", lease_ms=1_000, now_ms=2_001)
        assert taken is not None and taken.lease_owner == "w2" and taken.attempts == 2
        assert not store.renew_lease("r1", "w1", until_ms=9_000)
        assert not store.finish_run("r1", "w1")
        assert store.finish_run("r1", "w2")
        assert store.claim_run("w3", lease_ms=1_000, now_ms=99_999) is None  # done runs are never claimed

    def test_concurrent_claims_never_share_a_run(self, store: MetadataStore) -> None:
        for i in range(20):
            store.enqueue_run(_run(f"r{i:02d}", at=i, flow=f"f{i}"))
        claimed: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def worker(name: str) -> None:
            barrier.wait()
            while (run := store.claim_run(name, lease_ms=60_000, now_ms=10)) is not None:
                with lock:
                    claimed.append(run.run_id)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == [f"r{i:02d}" for i in range(20)]

    def test_partitions_are_queued_once_and_claimed_exclusively(self, store: MetadataStore) -> None:
        parts = store.add_partitions("r1", SCOPE, [{"files": ["a"]}, {"files": ["b"]}])
        assert [(p.part, p.spec, p.state) for p in parts] == [
            (0, {"files": ["a"]}, "queued"),
            (1, {"files": ["b"]}, "queued"),
        ]
        again = store.add_partitions("r1", SCOPE, [{"files": ["other"]}])  # a take-over keeps the first
        assert [p.spec for p in again] == [{"files": ["a"]}, {"files": ["b"]}]
        assert store.claim_partition("w1", lease_ms=1_000, now_ms=0, run_id="other") is None
        # A Ray task claims the one partition it was submitted for (runtime/rayengine.py).
        second = store.claim_partition("w2", lease_ms=1_000, now_ms=0, run_id="r1", part=1)
        assert second is not None and second.part == 1
        assert store.claim_partition("w3", lease_ms=1_000, now_ms=0, run_id="r1", part=1) is None
        first = store.claim_partition("w1", lease_ms=1_000, now_ms=0)
        assert first is not None and first.part == 0
        assert first.scope == SCOPE and first.attempts == 1
        assert store.claim_partition("w3", lease_ms=1_000, now_ms=500) is None
        assert store.partitions("nothing") == []

    def test_a_partition_whose_lease_expired_is_redone_and_recorded_once(self, store: MetadataStore) -> None:
        store.add_partitions("r1", SCOPE, [{"files": ["a"]}])
        assert store.claim_partition("w1", lease_ms=1_000, now_ms=0) is not None
        assert store.renew_partition("r1", 0, "w1", until_ms=2_000)
        assert store.claim_partition("w2", lease_ms=1_000, now_ms=1_500) is None
        taken = store.claim_partition("w2", lease_ms=1_000, now_ms=2_001)
        assert taken is not None and taken.lease_owner == "w2" and taken.attempts == 2
        assert not store.renew_partition("r1", 0, "w1", until_ms=9_000)
        assert not store.finish_partition("r1", 0, "w1", {"files": ["late"]})  # the old holder lost it
        assert store.finish_partition("r1", 0, "w2", {"files": ["f.parquet"]})
        assert not store.finish_partition("r1", 0, "w2", {"files": ["again"]})
        [done] = store.partitions("r1")
        assert done.state == "done" and done.output == {"files": ["f.parquet"]}
        assert store.claim_partition("w3", lease_ms=1_000, now_ms=99_999) is None  # done is never claimed

    def test_a_partition_taken_max_attempts_times_is_not_claimed_again(self, store: MetadataStore) -> None:
        store.add_partitions("r1", SCOPE, [{"files": ["a"]}])
        for n in range(3):  # three workers took it and died (their leases expired)
            taken = store.claim_partition(f"w{n}", lease_ms=1_000, now_ms=n * 2_000, max_attempts=3)
            assert taken is not None
        assert store.claim_partition("w9", lease_ms=1_000, now_ms=9_000, max_attempts=3) is None
        [given_up] = store.partitions("r1")
        assert given_up.state == "running" and given_up.attempts == 3

    def test_concurrent_claims_never_share_a_partition(self, store: MetadataStore) -> None:
        store.add_partitions("r1", SCOPE, [{"n": i} for i in range(20)])
        claimed: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(4)

        def worker(name: str) -> None:
            barrier.wait()
            while (part := store.claim_partition(name, lease_ms=60_000, now_ms=10)) is not None:
                with lock:
                    claimed.append(part.part)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == list(range(20))


def _flow_run(run_id: str, flow: str, at: int) -> QueuedRun:
    return QueuedRun(run_id=run_id, scope=SCOPE, flow_id=flow, scheduled_for=None, enqueued_at=at)


class RunsOfOneFlowContract(RunQueueContract):
    """Runs of one flow are never held at once: each reads from where the previous one committed."""

    __test__ = False

    def test_one_flow_runs_one_at_a_time_in_order(self, store: MetadataStore) -> None:
        store.enqueue_run(_flow_run("a1", "flow-a", 1))
        store.enqueue_run(_flow_run("a2", "flow-a", 2))
        store.enqueue_run(_flow_run("b1", "flow-b", 3))
        first = store.claim_run("w1", lease_ms=1_000, now_ms=0)
        second = store.claim_run("w2", lease_ms=1_000, now_ms=0)
        assert first is not None and first.run_id == "a1"
        assert second is not None and second.run_id == "b1"  # a2 waits for a1
        assert store.claim_run("w3", lease_ms=1_000, now_ms=0) is None
        assert store.finish_run("a1", "w1")
        third = store.claim_run("w3", lease_ms=1_000, now_ms=0)
        assert third is not None and third.run_id == "a2"

    def test_a_dead_holder_does_not_block_its_flow(self, store: MetadataStore) -> None:
        store.enqueue_run(_flow_run("a1", "flow-a", 1))
        store.enqueue_run(_flow_run("a2", "flow-a", 2))
        assert store.claim_run("w1", lease_ms=1_000, now_ms=0) is not None
        taken = store.claim_run("w2", lease_ms=1_000, now_ms=5_000)  # w1's lease expired: a1 is taken over
        assert taken is not None and taken.run_id == "a1"

    def test_concurrent_claims_hold_one_run_per_flow(self, store: MetadataStore) -> None:
        for i in range(12):
            store.enqueue_run(_flow_run(f"r{i:02d}", f"flow-{i % 3}", i))
        held: list[QueuedRun] = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def worker(name: str) -> None:
            barrier.wait()
            run = store.claim_run(name, lease_ms=60_000, now_ms=10)
            if run is not None:
                with lock:
                    held.append(run)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.flow_id for r in held) == ["flow-0", "flow-1", "flow-2"]


class TestSqliteRunQueue(RunsOfOneFlowContract):
    __test__ = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[MetadataStore]:
        store = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
        store.migrate()
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresRunQueue(RunsOfOneFlowContract):
    __test__ = True

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[MetadataStore]:
        store = open_store(postgres_url)
        store.migrate()
        yield store
        store.close()
