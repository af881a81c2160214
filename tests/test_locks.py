"""Which process does what (stores/locks): one lock contract on both backends (flocks in a home, PostgreSQL
advisory locks), what a holder sees when its PostgreSQL session is ended under it, a first start of two
nodes at once on one PostgreSQL, and the compare-and-swap that keeps two micro-batchers of one flow from
committing the same records twice whatever the locks say."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.lake.iceberg import Lake
from headwater.settings import Settings
from headwater.stores.locks import FileLocks, Locks, open_locks
from headwater.stores.metadata import Scope
from tests.conftest import POSTGRES_ADMIN_URL, make_settings
from tests.support import wait_until

SCHEMA = pa.schema([("id", pa.string())])


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A home whose metadata (and Iceberg catalog) is SQLite in it, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return make_settings(tmp_path / "home")
    return make_settings(tmp_path / "home", database_url=request.getfixturevalue("postgres_url"))


@pytest.fixture
def two(settings: Settings) -> Iterator[tuple[Locks, Locks]]:
    """The locks of two processes of one deployment (two nodes, with PostgreSQL)."""
    first, second = open_locks(settings), open_locks(settings)
    yield first, second
    first.close()
    second.close()


def test_the_embedded_default_keeps_its_lock_files_in_the_home(tmp_path: Path) -> None:
    locks = open_locks(make_settings(tmp_path / "home"))
    assert isinstance(locks, FileLocks)
    lock = locks.lock("streams/.batchers/f1")
    assert lock.acquire()
    assert (tmp_path / "home" / "streams" / ".batchers" / "f1.lock").is_file()
    lock.release()


def test_a_lock_is_held_by_one_process_and_one_object_at_a_time(two: tuple[Locks, Locks]) -> None:
    first, second = two
    mine, theirs, again = first.lock("a/x"), second.lock("a/x"), first.lock("a/x")
    assert mine.acquire() and mine.acquire() and mine.held()
    assert not theirs.acquire() and not theirs.held()
    assert not again.acquire()  # within one process too
    assert second.lock("a/y").acquire()  # another name is another lock
    mine.release()
    mine.release()  # idempotent
    assert not mine.held()
    assert theirs.acquire()
    assert not mine.acquire()


def test_a_short_section_waits_for_the_other_process(two: tuple[Locks, Locks]) -> None:
    first, second = two
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def hold() -> None:
        with first.exclusive("section"):
            inside.set()
            leave.wait(10)
            order.append("first")

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    waiting = threading.Thread(target=lambda: _enter(second, "section", order))
    waiting.start()
    waiting.join(0.2)  # still waiting: the first holds it
    assert waiting.is_alive()
    leave.set()
    thread.join(10)
    waiting.join(10)
    assert order == ["first", "second"]
    # Let go after the section (its connection may be kept for the next one), and after one that raised.
    lock = first.lock("section")
    assert lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError), second.exclusive("section"):
        raise RuntimeError("the section failed")
    assert lock.acquire()
    lock.release()


def _enter(locks: Locks, name: str, order: list[str]) -> None:
    with locks.exclusive(name):
        order.append("second")


def test_a_killed_holder_lets_go_at_once(settings: Settings) -> None:
    """kill -9 of a process holding a lock: the kernel closes its file, or the server ends its session."""
    code = (
        "import sys\n"
        "from headwater.settings import Settings\n"
        "from headwater.stores.locks import open_locks\n"
        f"lock = open_locks(Settings(home={str(settings.home)!r}, database_url={settings.database_url!r},"
        " environment='development')).lock('a/killed')\n"
        "assert lock.acquire()\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        locks = open_locks(settings)
        lock = locks.lock("a/killed")
        assert not lock.acquire()
        child.kill()
        child.wait(10)
        wait_until(lock.acquire, timeout=10, interval=0.05)
        locks.close()
    finally:
        child.kill()


def test_a_holder_whose_session_is_ended_sees_its_locks_lost_and_takes_them_again(
    postgres_url: str, tmp_path: Path
) -> None:
    """The server ended the session (a restart, an operator): the heartbeat notices, the locks read as
    not held, and another node may take them; the next acquire opens a new session."""
    import psycopg

    from headwater.stores.locks.postgresql import PostgresLocks

    settings = make_settings(tmp_path / "home", database_url=postgres_url)
    holder, other = PostgresLocks(postgres_url, heartbeat=0.1), open_locks(settings)
    lock, theirs = holder.lock("a/lost"), other.lock("a/lost")
    assert lock.acquire() and not theirs.acquire()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
            "'headwater-locks %%' AND datname = %s AND pid IN (SELECT pid FROM pg_locks WHERE "
            "locktype = 'advisory')",
            (postgres_url.rsplit("/", 1)[1],),
        ).fetchall()
    assert ended == [(True,)]
    wait_until(lambda: not lock.held(), timeout=5, interval=0.05)
    assert theirs.acquire()
    assert not lock.acquire()  # a new session; the other node has it now
    theirs.release()
    assert lock.acquire() and lock.held()
    holder.close()
    other.close()


def test_two_nodes_starting_at_once_on_one_postgresql_bootstrap_one_organization(
    postgres_url: str, tmp_path: Path
) -> None:
    from headwater.container import Services

    nodes = [
        Services(make_settings(tmp_path / f"home{i}", database_url=postgres_url, encryption_key="k" * 43))
        for i in range(2)
    ]
    nodes[0].store.migrate()
    barrier = threading.Barrier(2)

    def start(node: Services) -> object:
        barrier.wait()
        return node.tenancy.bootstrap()[0]

    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(start, nodes)
        assert first == second
        store = nodes[0].store
        orgs = [o for o in store.list_orgs() if o.tenant_id == "headwater"]
        assert len(orgs) == 1
        assert len(store.list_clients(orgs[0].id)) == 1
    finally:
        for node in nodes:
            node.close()


# --- the micro-batch's compare-and-swap ---
@pytest.mark.parametrize("rows", [2, 0], ids=["rows", "no-rows"])
def test_two_batchers_committing_the_same_records_cannot_both_succeed(settings: Settings, rows: int) -> None:
    """Two processes' batchers read the same records from the same position and snapshot, and commit at
    once. Exactly one commits; the position moves once, the rows are there once. With no rows (every
    record failed or was a duplicate) no snapshot is made: the position's own assertion decides."""
    scope, name = Scope("org", "sb"), "st" + uuid.uuid4().hex[:8]
    setup = Lake(settings)
    table = setup.ensure_table(scope, name, SCHEMA)
    files = setup.write_files(table, iter([pa.record_batch([pa.array(["a"])], schema=SCHEMA)]), SCHEMA)
    table, committed = setup.commit_stream(table, files, "flow", 0, 3, {"runId": "r"})
    assert committed
    lakes = [Lake(settings), Lake(settings)]  # two processes
    views = [lake.load(scope, name) for lake in lakes]
    batch = pa.record_batch([pa.array(["b", "c"][:rows])], schema=SCHEMA)
    pairs = zip(lakes, views, strict=True)
    staged = [lake.write_files(v, iter([batch]), SCHEMA) if rows else [] for lake, v in pairs]
    barrier = threading.Barrier(2)

    def commit(i: int) -> bool:
        barrier.wait()
        return lakes[i].commit_stream(views[i], staged[i], "flow", 3, 5, {"runId": "r"})[1]

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(commit, range(2)))
    assert results == [False, True]
    final = setup.load(scope, name)
    assert final is not None and setup.stream_offset(final, "flow") == 5
    assert sorted(setup.query(final, "SELECT id FROM dataset").column("id").to_pylist()) == (
        ["a", "b", "c"] if rows else ["a"]
    )
    # A batcher that read more records meanwhile, from the same (stale) position, is refused too.
    late = Lake(settings)
    stale = views[0]
    assert stale is not None
    assert not late.commit_stream(stale, [], "flow", 3, 9, {"runId": "r"})[1]
    assert setup.stream_offset(setup.load(scope, name), "flow") == 5  # type: ignore[arg-type]


def test_two_attempts_of_one_run_committing_at_once_commit_once(settings: Settings) -> None:
    """A run taken over by another worker while its first attempt still commits: one snapshot of the run
    (pyiceberg's own retry of the loser, which drops the snapshot assertion, must not append it again)."""
    scope, name = Scope("org", "sb"), "run" + uuid.uuid4().hex[:8]
    Lake(settings).ensure_table(scope, name, SCHEMA)
    lakes = [Lake(settings), Lake(settings)]
    views = [lake.load(scope, name) for lake in lakes]
    batch = pa.record_batch([pa.array(["x"])], schema=SCHEMA)
    staged = [lake.write_files(v, iter([batch]), SCHEMA) for lake, v in zip(lakes, views, strict=True)]
    barrier = threading.Barrier(2)

    def commit(i: int) -> bool:
        barrier.wait()
        checkpoint = {"flowId": "f", "runId": "r1"}
        return lakes[i].commit(views[i], staged[i], checkpoint, once_per=("flowId", "runId"))[1]

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(commit, range(2))) == [False, True]
    final = lakes[0].load(scope, name)
    assert final is not None
    assert lakes[0].query(final, "SELECT id FROM dataset").column("id").to_pylist() == ["x"]
