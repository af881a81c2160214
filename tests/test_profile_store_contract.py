"""The contract of :class:`ProfileStore`, run against every backend.

``ProfileStoreContract`` holds every test; each backend subclasses it and provides only the ``store``
fixture. The store (one migrated database) is shared by a class's tests: each test writes in scopes of
its own, which the sandbox-isolation test shows is isolation enough.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import create_engine

from headwater.stores.metadata import Scope, open_store
from headwater.stores.profiles import (
    EventCursor,
    ExperienceEvent,
    Fragment,
    GraphSplit,
    GraphUpdate,
    IdentityLink,
    MembershipMoved,
    ProfileStore,
    RefusedLink,
    StaleCursor,
    open_profile_store,
)

T = TypeVar("T")
T0 = 1_750_000_000_000
DS = "dataset-crm"


def fragment(ns: str, ident: str, ts: int, batch: str = "b1", ds: str = DS, **attrs: Any) -> Fragment:
    return Fragment(ds, ns, ident, attrs or {"person": {"name": ident}}, T0 + ts, batch)


def event(ns: str, ident: str, ts: int, event_id: str, batch: str = "b1", ds: str = DS) -> ExperienceEvent:
    return ExperienceEvent(ds, ns, ident, T0 + ts, event_id, batch, {"_id": event_id, "eventType": "web"})


def in_threads(count: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` in ``count`` threads released together; their results, or the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


class ProfileStoreContract:
    __test__ = False

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls) -> Iterator[ProfileStore]:
        raise NotImplementedError("each backend provides a store on a migrated database")

    @pytest.fixture
    def scope(self) -> Scope:
        return Scope(f"{uuid.uuid4().hex[:24].upper()}@AdobeOrg", str(uuid.uuid4()))

    def clusters(self, store: ProfileStore, scope: Scope, *groups: list[tuple[str, str]]) -> list[int]:
        """Give each group of identities a new cluster; the clusters' ids."""
        first = store.next_cluster_ids(len(groups))
        assignments = [(ns, i, first + n) for n, group in enumerate(groups) for ns, i in group]
        store.apply_graph(scope, GraphUpdate(assignments=assignments), at_ms=T0)
        return [first + n for n in range(len(groups))]

    # --- identities and the graph ---

    def test_identities_map_to_their_clusters(self, store: ProfileStore, scope: Scope) -> None:
        a, b = self.clusters(store, scope, [("Email", "ann@x.com"), ("CRMID", "c1")], [("ECID", "e9")])
        found = store.clusters_of(scope, [("Email", "ann@x.com"), ("ECID", "e9"), ("Email", "nobody")])
        assert found == {("Email", "ann@x.com"): a, ("ECID", "e9"): b}
        assert store.members(scope, [a, b]) == [
            (a, "CRMID", "c1"),
            (a, "Email", "ann@x.com"),
            (b, "ECID", "e9"),
        ]

    def test_many_keys_are_looked_up_in_chunks(self, store: ProfileStore, scope: Scope) -> None:
        keys = [("Email", f"p{i}@x.com") for i in range(1_200)] + [("ECID", f"e{i}") for i in range(700)]
        first = store.next_cluster_ids(len(keys))
        store.apply_graph(scope, GraphUpdate([(ns, i, first + n) for n, (ns, i) in enumerate(keys)]), T0)
        found = store.clusters_of(scope, keys)
        assert found == {key: first + n for n, key in enumerate(keys)}
        assert len(store.members(scope, list(range(first, first + len(keys))))) == len(keys)

    def test_merged_clusters_move_their_members(self, store: ProfileStore, scope: Scope) -> None:
        a, b, c = self.clusters(store, scope, [("Email", "a")], [("Email", "b")], [("Email", "c")])
        # b -> c, then a -> b: a's members end in c too, and a new identity joins c.
        store.apply_graph(scope, GraphUpdate([("ECID", "new", c)], merged=[(a, b), (b, c)]), at_ms=T0 + 5)
        assert store.members(scope, [a, b]) == []
        assert store.members(scope, [c]) == [
            (c, "ECID", "new"),
            (c, "Email", "a"),
            (c, "Email", "b"),
            (c, "Email", "c"),
        ]
        assert {(m.cluster_from, m.cluster_to, m.at_ms) for m in store.cluster_history(scope, c)} == {
            (a, c, T0 + 5),
            (b, c, T0 + 5),
        }
        assert [(m.cluster_from, m.cluster_to) for m in store.cluster_history(scope, a)] == [(a, c)]

    def test_an_assignment_moves_a_stored_identity_and_keeps_its_first_sighting(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        a, b = self.clusters(store, scope, [("Email", "x")], [("Email", "y")])
        store.apply_graph(scope, GraphUpdate([("Email", "x", b)]), at_ms=T0 + 99)
        assert store.clusters_of(scope, [("Email", "x")]) == {("Email", "x"): b}
        assert store.members(scope, [a]) == []

    def test_refused_links_are_listed_newest_first_in_pages(self, store: ProfileStore, scope: Scope) -> None:
        links = [
            RefusedLink("ECID", "shared", "Email", f"p{i}", "cluster size", T0 + i, DS) for i in range(5)
        ]
        for link in links:
            store.apply_graph(scope, GraphUpdate(refused=[link]), at_ms=link.at_ms)
        page, after = store.refused_links(scope, limit=3)
        assert page == links[::-1][:3] and after is not None
        rest, end = store.refused_links(scope, limit=3, before=after)
        assert rest == links[1::-1] and end is None

    def test_cluster_ids_are_distinct_across_threads(self, store: ProfileStore) -> None:
        firsts = in_threads(2, lambda _: [store.next_cluster_ids(100) for _ in range(20)])
        ranges = sorted(r for thread in firsts for first in thread for r in range(first, first + 100))
        assert len(ranges) == len(set(ranges)) == 2 * 20 * 100
        with pytest.raises(ValueError):
            store.next_cluster_ids(0)

    # --- fragments ---

    def test_a_newer_fragment_replaces_the_whole_stored_one(self, store: ProfileStore, scope: Scope) -> None:
        store.put_fragments(scope, DS, [fragment("Email", "a", 10, name="Ann", city="Basel")])
        store.put_fragments(scope, DS, [fragment("Email", "a", 20, batch="b2", name="Anne")])
        [stored] = store.fragments_of(scope, [("Email", "a")])
        assert (stored.attributes, stored.ts_ms, stored.batch_id) == ({"name": "Anne"}, T0 + 20, "b2")

    def test_an_older_fragment_is_ignored_and_a_tie_goes_to_the_later_arrival(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        store.put_fragments(scope, DS, [fragment("Email", "a", 20, name="current")])
        store.put_fragments(scope, DS, [fragment("Email", "a", 19, batch="late", name="stale")])
        assert store.fragments_of(scope, [("Email", "a")])[0].attributes == {"name": "current"}
        store.put_fragments(scope, DS, [fragment("Email", "a", 20, batch="b3", name="tie")])
        assert store.fragments_of(scope, [("Email", "a")])[0].attributes == {"name": "tie"}
        # Within one call: the newest, and of equal timestamps the later in the list.
        store.put_fragments(
            scope,
            DS,
            [
                fragment("Email", "b", 5, name="first"),
                fragment("Email", "b", 9, name="newest"),
                fragment("Email", "b", 7, name="older"),
                fragment("Email", "c", 5, name="one"),
                fragment("Email", "c", 5, name="two"),
            ],
        )
        found = {
            f.id: f.attributes["name"] for f in store.fragments_of(scope, [("Email", "b"), ("Email", "c")])
        }
        assert found == {"b": "newest", "c": "two"}

    def test_large_writes_keep_the_same_rules(self, store: ProfileStore, scope: Scope) -> None:
        # Thousands of rows per call: PostgreSQL stages them through COPY (postgresql.COPY_FROM_ROWS).
        n = 3_000
        store.put_fragments(scope, DS, [fragment("Email", f"p{i}", 10, name="first") for i in range(n)])
        changes = [fragment("Email", f"p{i}", 10 + (1 if i % 2 else -1), name="second") for i in range(n)]
        store.put_fragments(scope, DS, changes)
        found = store.fragments_of(scope, [("Email", f"p{i}") for i in range(n)])
        names = {f.id: f.attributes["name"] for f in found}
        assert names == {f"p{i}": "second" if i % 2 else "first" for i in range(n)}
        events = [event("Email", "p0", i % 2_500, f"e{i % 2_500}") for i in range(n)]  # 500 repeats
        store.put_events(scope, DS, events)
        store.put_events(scope, DS, events)
        assert len(store.events_of(scope, [("Email", "p0")], limit=n)[0]) == 2_500

    def test_each_dataset_keeps_its_own_fragment_of_a_key(self, store: ProfileStore, scope: Scope) -> None:
        store.put_fragments(scope, "ds-b", [fragment("Email", "a", 30, ds="ds-b", tier="gold")])
        store.put_fragments(scope, DS, [fragment("Email", "a", 10, name="Ann")])
        found = store.fragments_of(scope, [("Email", "a")])
        assert [(f.dataset_id, f.attributes) for f in found] == [
            (DS, {"name": "Ann"}),
            ("ds-b", {"tier": "gold"}),
        ]
        with pytest.raises(ValueError, match="ds-b"):
            store.put_fragments(scope, DS, [fragment("Email", "z", 1, ds="ds-b")])

    def test_deletes_by_batch_and_by_dataset(self, store: ProfileStore, scope: Scope) -> None:
        store.put_fragments(scope, DS, [fragment("Email", f"p{i}", 1, batch=f"b{i % 3}") for i in range(9)])
        store.put_fragments(scope, "other", [fragment("Email", "p0", 1, ds="other", batch="b0")])
        store.put_events(scope, DS, [event("Email", "p0", i, f"e{i}", batch=f"b{i % 2}") for i in range(4)])
        assert store.delete_fragments(scope, DS, ["b0", "b2"]) == 6
        assert store.delete_fragments(scope, DS, []) == 0
        left = store.fragments_of(scope, [("Email", f"p{i}") for i in range(9)])
        assert sorted((f.dataset_id, f.id) for f in left) == [
            (DS, "p1"),
            (DS, "p4"),
            (DS, "p7"),
            ("other", "p0"),
        ]
        assert store.delete_events(scope, DS, ["b1"]) == 2
        assert [e.event_id for e in store.events_of(scope, [("Email", "p0")], 10)[0]] == ["e2", "e0"]
        assert store.delete_fragments(scope, DS) == 3 and store.delete_events(scope, DS) == 2
        assert [f.dataset_id for f in store.fragments_of(scope, [("Email", "p0")])] == ["other"]

    # --- experience events ---

    def test_events_page_newest_first_across_identities(self, store: ProfileStore, scope: Scope) -> None:
        events = [event("ECID", "e1", ts, f"a{ts}") for ts in (1, 3, 5, 7)]
        events += [event("Email", "ann", ts, f"b{ts}") for ts in (2, 4, 6)]
        events += [event("Email", "ann", 7, "c7"), event("Email", "bob", 8, "not-asked")]
        store.put_events(scope, DS, events)
        keys = [("ECID", "e1"), ("Email", "ann")]
        pages, after = [], None
        while True:
            page, after = store.events_of(scope, keys, limit=3, after=after)
            pages.append([e.event_id for e in page])
            if after is None:
                break
        # Equal timestamps (7) order by event id, newest (greatest) first.
        assert pages == [["c7", "a7", "b6"], ["a5", "b4", "a3"], ["b2", "a1"]]
        assert store.events_of(scope, keys, limit=3, after=EventCursor(T0 + 2, "b2", DS)) == (
            [events[0]],
            None,
        )
        assert store.events_of(scope, [], limit=3) == ([], None)

    def test_a_replayed_event_is_stored_once(self, store: ProfileStore, scope: Scope) -> None:
        first = [event("ECID", "e1", 1, "x1"), event("ECID", "e1", 2, "x2")]
        store.put_events(scope, DS, first)
        replay = [
            event("ECID", "e1", 1, "x1", batch="b-replay"),
            event("ECID", "e1", 3, "x3", batch="b-replay"),
        ]
        store.put_events(scope, DS, replay)
        stored, _ = store.events_of(scope, [("ECID", "e1")], limit=10)
        assert [(e.event_id, e.batch_id) for e in stored] == [("x3", "b-replay"), ("x2", "b1"), ("x1", "b1")]
        # The same _id in another dataset is another event.
        store.put_events(scope, "web", [event("ECID", "e1", 1, "x1", ds="web")])
        assert len(store.events_of(scope, [("ECID", "e1")], limit=10)[0]) == 4

    # --- projection ---

    def test_project_writes_everything_and_moves_the_cursor(self, store: ProfileStore, scope: Scope) -> None:
        assert store.cursor(scope, DS) is None
        [cluster] = self.clusters(store, scope, [("Email", "ann")])
        store.project(
            scope,
            DS,
            snapshot_id=41,
            at_ms=T0 + 1,
            fragments=[fragment("Email", "ann", 1), fragment("CRMID", "c1", 1)],
            events=[event("CRMID", "c1", 1, "ev1")],
            graph=GraphUpdate([("CRMID", "c1", cluster)]),
            state='{"files": 2}',
            expected_snapshot_id=None,
        )
        moved = store.cursor(scope, DS)
        assert moved is not None and (moved.snapshot_id, moved.state, moved.updated_ms) == (
            41,
            '{"files": 2}',
            T0 + 1,
        )
        profile = store.lookup(scope, ("Email", "ann"))
        assert profile is not None and profile.cluster_id == cluster
        assert profile.members == [("CRMID", "c1"), ("Email", "ann")]
        assert [f.id for f in profile.fragments] == ["c1", "ann"]
        store.project(scope, DS, 42, at_ms=T0 + 2, delete_batch_ids=["b1"], expected_snapshot_id=41)
        assert store.fragments_of(scope, [("Email", "ann")]) == []
        assert store.events_of(scope, [("CRMID", "c1")], 5) == ([], None)

    def test_a_failure_inside_project_moves_nothing(
        self, store: ProfileStore, scope: Scope, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.project(scope, DS, 1, at_ms=T0, fragments=[fragment("Email", "kept", 1, batch="old")])
        write_events = store._write_events  # type: ignore[attr-defined]

        def fail_after_writing(*args: Any) -> None:
            write_events(*args)  # the cursor, graph, fragments and events are written by now
            raise RuntimeError("the process fails mid-transaction")

        monkeypatch.setattr(store, "_write_events", fail_after_writing)
        with pytest.raises(RuntimeError, match="mid-transaction"):
            store.project(
                scope,
                DS,
                2,
                at_ms=T0 + 1,
                fragments=[fragment("Email", "new", 2)],
                events=[event("Email", "new", 2, "ev")],
                graph=GraphUpdate(
                    [("Email", "new", 7)], refused=[RefusedLink("a", "1", "b", "2", "limit", T0)]
                ),
                delete_batch_ids=["old"],
            )
        cursor = store.cursor(scope, DS)
        assert cursor is not None and cursor.snapshot_id == 1
        assert [f.id for f in store.fragments_of(scope, [("Email", "kept"), ("Email", "new")])] == ["kept"]
        assert store.events_of(scope, [("Email", "new")], 5) == ([], None)
        assert store.clusters_of(scope, [("Email", "new")]) == {}
        assert store.refused_links(scope, 5) == ([], None)

    def test_project_from_a_stale_cursor_writes_nothing(self, store: ProfileStore, scope: Scope) -> None:
        store.project(scope, DS, 5, at_ms=T0, expected_snapshot_id=None)
        with pytest.raises(StaleCursor):
            store.project(
                scope, DS, 6, at_ms=T0, fragments=[fragment("Email", "a", 1)], expected_snapshot_id=4
            )
        with pytest.raises(StaleCursor):
            store.project(scope, DS, 6, at_ms=T0, expected_snapshot_id=None)
        assert store.fragments_of(scope, [("Email", "a")]) == []
        cursor = store.cursor(scope, DS)
        assert cursor is not None and cursor.snapshot_id == 5

    def test_two_projectors_of_one_snapshot_apply_it_once(self, store: ProfileStore, scope: Scope) -> None:
        store.project(scope, DS, 1, at_ms=T0)

        def project(i: int) -> None:
            events = [event("Email", "a", 2, f"from-{i}")]
            store.project(scope, DS, 2, at_ms=T0, events=events, expected_snapshot_id=1)

        outcomes = in_threads(2, project)
        assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "StaleCursor"]
        assert len(store.events_of(scope, [("Email", "a")], 5)[0]) == 1

    # --- lookup and bulk reads ---

    def test_lookup_of_an_unknown_identity(self, store: ProfileStore, scope: Scope) -> None:
        assert store.lookup(scope, ("Email", "nobody")) is None
        [cluster] = self.clusters(store, scope, [("Email", "no-fragments")])
        profile = store.lookup(scope, ("Email", "no-fragments"))
        assert profile is not None and (profile.cluster_id, profile.fragments) == (cluster, [])

    def test_bulk_iterators_give_arrow_batches_duckdb_reads(self, store: ProfileStore, scope: Scope) -> None:
        [a] = self.clusters(store, scope, [("Email", f"p{i}") for i in range(5)])
        store.put_fragments(scope, DS, [fragment("Email", f"p{i}", i, score=i) for i in range(5)])
        store.put_fragments(scope, DS, [fragment("Email", "orphan", 1)])
        store.put_events(scope, DS, [event("Email", f"p{i % 2}", i, f"e{i}") for i in range(7)])
        batches = list(store.iter_fragments(scope, batch_rows=2))
        assert len(batches) == 3 and batches[0].schema.names == [
            "cluster_id",
            "dataset_id",
            "namespace",
            "id",
            "ts_ms",
            "attributes",
        ]
        events = pa.Table.from_batches(list(store.iter_events(scope)))
        assert events.schema.field("body").type == pa.string() and events.num_rows == 7
        db = duckdb.connect()
        db.register("fragments", pa.Table.from_batches(batches))
        db.register("events", events)
        rows = db.sql(
            "SELECT f.cluster_id, sum(CAST(json_extract(f.attributes, '$.score') AS INT)) AS score, "
            "(SELECT count(*) FROM events e WHERE e.cluster_id = f.cluster_id) AS events "
            "FROM fragments f GROUP BY f.cluster_id ORDER BY f.cluster_id NULLS LAST"
        ).fetchall()
        assert rows == [(a, 10, 7), (None, None, 0)]

    # --- sandboxes ---

    def test_a_scope_never_sees_another(self, store: ProfileStore, scope: Scope) -> None:
        same_org = Scope(scope.org_id, str(uuid.uuid4()))
        other_org = Scope(f"{uuid.uuid4().hex[:24].upper()}@AdobeOrg", scope.sandbox_id)
        for s, name in ((scope, "A"), (same_org, "B"), (other_org, "C")):
            [cluster] = self.clusters(store, s, [("Email", "ann")])
            store.project(
                s,
                DS,
                1,
                at_ms=T0,
                fragments=[fragment("Email", "ann", 1, name=name)],
                events=[event("Email", "ann", 1, "ev")],
                graph=GraphUpdate(merged=[(cluster - 1000, cluster)]),
            )
        profile = store.lookup(same_org, ("Email", "ann"))
        assert profile is not None and [f.attributes for f in profile.fragments] == [{"name": "B"}]
        store.drop_sandbox(same_org)
        for gone in (
            store.lookup(same_org, ("Email", "ann")),
            store.cursor(same_org, DS),
            store.fragments_of(same_org, [("Email", "ann")]) or None,
            store.events_of(same_org, [("Email", "ann")], 5)[0] or None,
            list(store.iter_fragments(same_org)) or None,
        ):
            assert gone is None
        for kept, name in ((scope, "A"), (other_org, "C")):
            profile = store.lookup(kept, ("Email", "ann"))
            assert profile is not None and [f.attributes for f in profile.fragments] == [{"name": name}]
            assert len(store.events_of(kept, [("Email", "ann")], 5)[0]) == 1
            assert len(store.cluster_history(kept, profile.cluster_id)) == 1

    def test_drop_dataset_keeps_identities_and_other_datasets(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        self.clusters(store, scope, [("Email", "ann")])
        store.project(
            scope,
            DS,
            3,
            at_ms=T0,
            fragments=[fragment("Email", "ann", 1)],
            events=[event("Email", "ann", 1, "e")],
        )
        store.put_fragments(scope, "web", [fragment("Email", "ann", 1, ds="web")])
        store.drop_dataset(scope, DS)
        assert store.cursor(scope, DS) is None
        assert [f.dataset_id for f in store.fragments_of(scope, [("Email", "ann")])] == ["web"]
        assert store.events_of(scope, [("Email", "ann")], 5) == ([], None)
        assert ("Email", "ann") in store.clusters_of(scope, [("Email", "ann")])

    def test_links_are_kept_per_dataset_at_the_generation_that_wrote_them(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        ann, crm = IdentityLink("Email", "ann", "Email", "ann"), IdentityLink("CRMID", "c1", "Email", "ann")
        store.project(scope, DS, 3, at_ms=T0, links=[ann, crm, crm])  # a repeat in one call is fine
        store.project(scope, "web", 7, at_ms=T0, links=[ann])
        store.project(scope, DS, 5, at_ms=T0, links=[ann])  # seen again by a later snapshot
        found = sorted(
            (s.dataset_id, s.link, s.generation) for s in store.links_of(scope, [("Email", "ann")])
        )
        assert found == [(DS, ann, 5), ("web", ann, 7)]
        assert [(s.link, s.generation) for s in store.stale_links(scope, DS, 5)] == [(crm, 3)]
        assert len(store.stale_links(scope, DS, None)) == 2
        assert store.links_of(scope, [("Email", "nobody")]) == []

    def test_a_sweep_removes_stale_links_and_applies_the_split_in_one_go(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        (c,) = self.clusters(store, scope, [("Email", "ann"), ("CRMID", "c1")])
        crm = IdentityLink("CRMID", "c1", "Email", "ann")
        store.project(scope, DS, 3, at_ms=T0, links=[crm], fragments=[fragment("Email", "ann", 1)])
        store.project(
            scope, DS, 4, at_ms=T0, links=[IdentityLink("Email", "ann", "Email", "ann")], state="sweep"
        )
        split = GraphSplit(assignments=[("Email", "ann", c + 1000)], removed=[("CRMID", "c1")])
        with pytest.raises(StaleCursor):  # the cursor moved on: nothing is written
            store.sweep(scope, DS, 4, split, at_ms=T0, expected_snapshot_id=3)
        assert len(store.stale_links(scope, DS, 4)) == 1
        store.sweep(scope, DS, 4, split, at_ms=T0, expected_snapshot_id=4)
        assert store.stale_links(scope, DS, 4) == []
        assert store.clusters_of(scope, [("Email", "ann"), ("CRMID", "c1")]) == {("Email", "ann"): c + 1000}
        cursor = store.cursor(scope, DS)
        assert cursor is not None and (cursor.snapshot_id, cursor.state) == (4, "")
        store.sweep(scope, DS, None, GraphSplit(removed=[("Email", "ann")]), at_ms=T0, drop=True)
        assert store.cursor(scope, DS) is None and store.fragments_of(scope, [("Email", "ann")]) == []
        assert (
            store.links_of(scope, [("Email", "ann")]) == [] and store.lookup(scope, ("Email", "ann")) is None
        )

    # --- segment membership ---

    def entity(self, cluster: int) -> dict[str, Any]:
        return {"person": {"name": f"p{cluster}"}, "identityMap": {"Email": [{"id": f"{cluster}@x"}]}}

    def apply(
        self,
        store: ProfileStore,
        scope: Scope,
        segment: str,
        evaluated: list[int],
        qualifying: set[int],
        at: int,
    ) -> list[tuple[int, str]]:
        profiles = {c: self.entity(c) for c in evaluated}
        made = store.apply_membership(scope, segment, evaluated, qualifying, profiles, T0 + at)
        return [(m.cluster_id, m.status) for m in made]

    def test_membership_changes_write_transitions_and_nothing_else(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        assert self.apply(store, scope, "s1", [1, 2, 3], {1, 2}, 10) == [(1, "realized"), (2, "realized")]
        # 1 stays, 2 exits, 3 enters; then the same evaluation again writes nothing.
        assert self.apply(store, scope, "s1", [1, 2, 3], {1, 3}, 20) == [(2, "exited"), (3, "realized")]
        assert self.apply(store, scope, "s1", [1, 2, 3], {1, 3}, 30) == []
        # An exited member enters again; a cluster never realized and not qualifying writes nothing.
        assert self.apply(store, scope, "s1", [2, 4], {2}, 40) == [(2, "realized")]
        assert store.memberships_of(scope, [1, 2, 3, 4, 99]) == {
            1: {"s1": ("realized", T0 + 10)},
            2: {"s1": ("realized", T0 + 40)},
            3: {"s1": ("realized", T0 + 20)},
        }
        assert store.segment_count(scope, "s1") == 3
        moves = store.transitions(scope, "s1", 0, 100)
        assert [(m.cluster_id, m.status, m.at_ms) for m in moves] == [
            (1, "realized", T0 + 10),
            (2, "realized", T0 + 10),
            (2, "exited", T0 + 20),
            (3, "realized", T0 + 20),
            (2, "realized", T0 + 40),
        ]
        assert moves[2].profile == self.entity(2)
        assert [m.seq for m in moves] == sorted({m.seq for m in moves})
        assert store.last_transition_seq(scope, "s1") == moves[-1].seq
        assert [m.cluster_id for m in store.transitions(scope, "s1", moves[1].seq, 2)] == [2, 3]

    def test_seq_increases_across_segments_and_scopes(self, store: ProfileStore, scope: Scope) -> None:
        other = Scope(scope.org_id, str(uuid.uuid4()))
        made = [
            store.apply_membership(s, segment, [7], {7}, {7: {}}, T0)[0].seq
            for s, segment in ((scope, "a"), (other, "a"), (scope, "b"))
        ]
        assert made == sorted(set(made))
        assert store.last_transition_seq(scope, "nothing") == 0
        assert store.transitions(other, "b", 0, 10) == []
        assert [m.seq for m in store.transitions(other, "a", 0, 10)] == [made[1]]

    def test_membership_of_a_changing_cluster_needs_its_profile(
        self, store: ProfileStore, scope: Scope
    ) -> None:
        store.apply_membership(scope, "s", [1], {1}, {1: {}}, T0)
        with pytest.raises(MembershipMoved):
            # 2 enters and 1 exits, but only 2 has a profile: nothing is written.
            store.apply_membership(scope, "s", [1, 2], {2}, {2: {}}, T0 + 1)
        with pytest.raises(ValueError, match="not evaluated"):
            store.apply_membership(scope, "s", [1], {1, 5}, {5: {}}, T0 + 1)
        assert store.memberships_of(scope, [1, 2]) == {1: {"s": ("realized", T0)}}
        assert len(store.transitions(scope, "s", 0, 10)) == 1

    def test_members_page_in_cluster_order(self, store: ProfileStore, scope: Scope) -> None:
        clusters = list(range(1, 7_001))
        qualifying = {c for c in clusters if c % 3}
        made = store.apply_membership(scope, "big", clusters, qualifying, {c: {} for c in clusters}, T0)
        assert len(made) == len(qualifying) == store.segment_count(scope, "big")
        # More clusters than a chunk: the whole segment is read; exits come out right.
        made = store.apply_membership(scope, "big", clusters, {1, 2}, {c: {} for c in clusters}, T0 + 1)
        assert len(made) == len(qualifying) - 2
        assert store.segment_members(scope, "big", 10) == [1, 2]
        store.apply_membership(scope, "big", clusters[:5], {1, 2, 3, 4, 5}, {c: {} for c in clusters}, T0 + 2)
        assert store.segment_members(scope, "big", 2) == [1, 2]
        assert store.segment_members(scope, "big", 2, after_cluster=2) == [3, 4]
        assert store.segment_members(scope, "big", 0) == []

    def test_concurrent_writers_get_distinct_ordered_seqs(self, store: ProfileStore, scope: Scope) -> None:
        results = in_threads(
            4,
            lambda i: store.apply_membership(
                scope,
                "race",
                [i * 10 + n for n in range(50)],
                {i * 10 + n for n in range(50)},
                {i * 10 + n: {} for n in range(50)},
                T0,
            ),
        )
        assert not [r for r in results if isinstance(r, Exception)]
        seqs = [m.seq for m in store.transitions(scope, "race", 0, 1_000)]
        assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
        # Overlapping clusters (i*10+n): each cluster entered exactly once.
        clusters = [m.cluster_id for m in store.transitions(scope, "race", 0, 1_000)]
        assert sorted(clusters) == sorted({i * 10 + n for i in range(4) for n in range(50)})

    def test_merged_clusters_fold_their_memberships(self, store: ProfileStore, scope: Scope) -> None:
        a, b, c = self.clusters(store, scope, [("Email", "a")], [("Email", "b")], [("Email", "c")])
        everyone = [a, b, c]
        self.apply(store, scope, "in-a", everyone, {a}, 1)  # only the merged-away one is in
        self.apply(store, scope, "in-c", everyone, {c}, 2)  # only the survivor is in
        self.apply(store, scope, "both", everyone, {a, c}, 3)
        self.apply(store, scope, "gone", everyone, {a, b}, 4)
        self.apply(store, scope, "gone", everyone, set(), 5)  # a and b exited
        before = store.last_transition_seq(scope, "in-a")
        store.apply_graph(scope, GraphUpdate(merged=[(a, b), (b, c)]), at_ms=T0 + 9)
        assert store.memberships_of(scope, everyone) == {
            c: {
                "in-a": ("realized", T0 + 1),
                "in-c": ("realized", T0 + 2),
                "both": ("realized", T0 + 3),
                "gone": ("exited", T0 + 5),
            }
        }
        assert store.last_transition_seq(scope, "in-a") == before
        assert store.segment_count(scope, "in-a") == store.segment_count(scope, "both") == 1

    def test_drop_segment_and_sandbox_remove_membership(self, store: ProfileStore, scope: Scope) -> None:
        self.apply(store, scope, "x", [1, 2], {1, 2}, 1)
        self.apply(store, scope, "y", [1], {1}, 1)
        store.drop_segment(scope, "x")
        assert store.memberships_of(scope, [1, 2]) == {1: {"y": ("realized", T0 + 1)}}
        assert store.transitions(scope, "x", 0, 10) == [] and store.segment_count(scope, "x") == 0
        store.drop_sandbox(scope)
        assert store.memberships_of(scope, [1]) == {} and store.transitions(scope, "y", 0, 10) == []


class TestSqliteProfileStore(ProfileStoreContract):
    __test__ = True

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfileStore]:
        metadata = open_store(f"sqlite:///{tmp_path_factory.mktemp('profiles') / 'metadata.db'}")
        metadata.migrate()
        yield open_profile_store(metadata)
        metadata.close()

    def test_a_bare_engine_shares_the_metadata_stores_write_lock(self, tmp_path: Path) -> None:
        path = tmp_path / "metadata.db"
        metadata = open_store(f"sqlite:///{path}")
        metadata.migrate()
        engine = create_engine(f"sqlite:///{path}")
        try:
            store = open_profile_store(engine)
            scope = Scope("org", "sandbox")
            store.put_fragments(scope, DS, [fragment("Email", "a", 1)])
            assert len(open_profile_store(metadata).fragments_of(scope, [("Email", "a")])) == 1
            assert (path.parent / "metadata.db.write-lock").exists()
        finally:
            engine.dispose()
            metadata.close()


@pytest.mark.postgres
class TestPostgresProfileStore(ProfileStoreContract):
    __test__ = True

    @pytest.fixture(scope="class")
    @classmethod
    def store(cls, postgres_class_url: str) -> Iterator[ProfileStore]:
        metadata = open_store(postgres_class_url)
        metadata.migrate()
        yield open_profile_store(metadata)
        metadata.close()
