"""The contract of :class:`MetadataStore`, run against every backend.

``MetadataStoreContract`` holds every test; each backend subclasses it and only provides the ``store``
fixture (dagster's ``TestRunStorage`` pattern). A new backend passes this whole suite or it is not done.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from headwater.stores.metadata import (
    AlreadyExists,
    ApiClient,
    MetadataStore,
    MissingReference,
    Org,
    Resource,
    Sandbox,
    Scope,
    StaleWrite,
    StillReferenced,
    open_store,
)

# Millisecond timestamps of today need 64 bits; a 32-bit column would overflow on them.
T0 = 1_750_000_000_000


def _id(prefix: str = "r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def make_org(tenant_id: str | None = None, created_at: int = T0) -> Org:
    tenant = tenant_id or "t" + uuid.uuid4().hex[:10]
    return Org(
        id=f"{uuid.uuid4().hex[:24].upper()}@AdobeOrg",
        name=f"Org {tenant}",
        tenant_id=tenant,
        created_at=created_at,
    )


def make_sandbox(org_id: str, name: str = "prod") -> Sandbox:
    return Sandbox(
        id=str(uuid.uuid4()), org_id=org_id, name=name, title=name.title(), type="development", created_at=T0
    )


def make_resource(
    scope: Scope,
    kind: str = "connection",
    ident: str | None = None,
    *,
    name: str | None = "a resource",
    alt_id: str | None = None,
    created_at: int = T0,
    updated_at: int | None = None,
    refs: list[tuple[str, str]] | None = None,
    doc: dict[str, Any] | None = None,
) -> Resource:
    ident = ident or _id(kind)
    return Resource(
        kind=kind,
        id=ident,
        scope=scope,
        doc=doc if doc is not None else {"id": ident, "name": name},
        etag=_etag(),
        name=name,
        alt_id=alt_id,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
        refs=list(refs or []),
    )


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Start every call at the same moment on its own thread; return each result or raised exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [f.result(timeout=60) for f in futures]


class MetadataStoreContract:
    """Every behaviour the services rely on, whatever the database."""

    __test__ = False

    @pytest.fixture
    def store(self) -> Iterator[MetadataStore]:
        raise NotImplementedError("each backend provides a migrated store")

    @pytest.fixture
    def scope(self, store: MetadataStore) -> Scope:
        org = make_org()
        store.create_org(org)
        sandbox = make_sandbox(org.id)
        store.create_sandbox(sandbox)
        return Scope(org.id, sandbox.id)

    @pytest.fixture
    def other_sandbox(self, store: MetadataStore, scope: Scope) -> Scope:
        sandbox = make_sandbox(scope.org_id, "dev")
        store.create_sandbox(sandbox)
        return Scope(scope.org_id, sandbox.id)

    @pytest.fixture
    def other_org(self, store: MetadataStore) -> Scope:
        org = make_org()
        store.create_org(org)
        sandbox = make_sandbox(org.id)
        store.create_sandbox(sandbox)
        return Scope(org.id, sandbox.id)

    # --- schema ---

    def test_migrate_again_is_a_no_op(self, store: MetadataStore, scope: Scope) -> None:
        resource = make_resource(scope)
        store.insert(resource)
        store.migrate()
        store.migrate()
        assert store.get_org(scope.org_id) is not None
        assert store.get("connection", scope, resource.id) == resource_without_refs(resource)

    # --- organizations ---

    def test_org_create_get_list(self, store: MetadataStore) -> None:
        first, second = make_org(created_at=T0), make_org(created_at=T0 + 1)
        store.create_org(first)
        store.create_org(second)
        assert store.get_org(first.id) == first
        assert store.get_org(second.id) == second
        assert store.get_org("NOPE@AdobeOrg") is None
        assert [o.id for o in store.list_orgs()] == [first.id, second.id]

    def test_org_duplicate_tenant_id_is_refused(self, store: MetadataStore) -> None:
        store.create_org(make_org("acme"))
        with pytest.raises(AlreadyExists):
            store.create_org(make_org("acme"))
        assert [o.tenant_id for o in store.list_orgs()] == ["acme"]

    def test_org_duplicate_id_is_refused(self, store: MetadataStore) -> None:
        org = make_org()
        store.create_org(org)
        with pytest.raises(AlreadyExists):
            store.create_org(Org(org.id, "Another", "another", T0))
        assert store.get_org(org.id) == org

    # --- sandboxes ---

    def test_sandbox_create_get_list(self, store: MetadataStore) -> None:
        org = make_org()
        store.create_org(org)
        prod, dev = make_sandbox(org.id, "prod"), make_sandbox(org.id, "dev")
        store.create_sandbox(prod)
        store.create_sandbox(dev)
        assert store.get_sandbox(org.id, "prod") == prod
        assert store.get_sandbox(org.id, "dev") == dev
        assert store.get_sandbox(org.id, "staging") is None
        assert {s.name for s in store.list_sandboxes(org.id)} == {"prod", "dev"}

    def test_sandbox_name_is_unique_per_org(self, store: MetadataStore) -> None:
        org = make_org()
        store.create_org(org)
        first = make_sandbox(org.id, "prod")
        store.create_sandbox(first)
        with pytest.raises(AlreadyExists):
            store.create_sandbox(make_sandbox(org.id, "prod"))
        assert store.list_sandboxes(org.id) == [first]

    def test_same_sandbox_name_in_two_orgs(self, store: MetadataStore) -> None:
        one, two = make_org(), make_org()
        store.create_org(one)
        store.create_org(two)
        a, b = make_sandbox(one.id, "prod"), make_sandbox(two.id, "prod")
        store.create_sandbox(a)
        store.create_sandbox(b)
        assert store.get_sandbox(one.id, "prod") == a
        assert store.get_sandbox(two.id, "prod") == b
        assert store.list_sandboxes(one.id) == [a]
        assert store.list_sandboxes(two.id) == [b]

    # --- API clients ---

    def test_client_create_get_list(self, store: MetadataStore) -> None:
        org, other = make_org(), make_org()
        store.create_org(org)
        store.create_org(other)
        sealed = {"$enc": "v1.c2VhbGVk"}
        first = ApiClient(_id("c"), org.id, "first", sealed, True, T0)
        second = ApiClient(_id("c"), org.id, "second", sealed, True, T0 + 1)
        elsewhere = ApiClient(_id("c"), other.id, "elsewhere", sealed, True, T0)
        for client in (first, second, elsewhere):
            store.create_client(client)
        assert store.get_client(first.client_id) == first
        assert store.get_client("absent") is None
        assert store.list_clients(org.id) == [first, second]
        assert store.list_clients(other.id) == [elsewhere]

    def test_client_duplicate_id_is_refused(self, store: MetadataStore) -> None:
        org = make_org()
        store.create_org(org)
        client = ApiClient(_id("c"), org.id, "first", {"$enc": "v1.a"}, True, T0)
        store.create_client(client)
        with pytest.raises(AlreadyExists):
            store.create_client(ApiClient(client.client_id, org.id, "again", {"$enc": "v1.b"}, True, T0))
        assert store.get_client(client.client_id) == client

    def test_client_enable_disable(self, store: MetadataStore) -> None:
        org = make_org()
        store.create_org(org)
        client = ApiClient(_id("c"), org.id, "c", {"$enc": "v1.a"}, True, T0)
        store.create_client(client)
        assert store.set_client_enabled(client.client_id, False) is True
        fetched = store.get_client(client.client_id)
        assert fetched is not None and fetched.enabled is False
        assert store.set_client_enabled(client.client_id, True) is True
        fetched = store.get_client(client.client_id)
        assert fetched is not None and fetched.enabled is True
        assert store.set_client_enabled("absent", False) is False

    # --- resources: reads ---

    def test_an_upgrade_mark_is_kept_and_setting_it_twice_is_fine(self, store: MetadataStore) -> None:
        name = f"step-{uuid.uuid4().hex}"
        assert not store.has_mark(name)
        store.set_mark(name)
        store.set_mark(name)  # a second process finishing the same step
        assert store.has_mark(name)
        assert not store.has_mark(name + "-other")

    def test_insert_then_get_round_trips_every_field(self, store: MetadataStore, scope: Scope) -> None:
        doc = {"id": "x", "nested": {"list": [1, 2.5, None, True], "text": "éàü ✓"}, "big": 2**53}
        resource = make_resource(
            scope,
            "schema",
            name="Profiles",
            alt_id="_tenant.schemas.abc",
            doc=doc,
            created_at=T0,
            updated_at=T0 + 5,
        )
        store.insert(resource)
        fetched = store.get("schema", scope, resource.id)
        assert fetched == resource_without_refs(resource)
        assert fetched is not None and fetched.doc == doc

    def test_get_by_alt_id(self, store: MetadataStore, scope: Scope) -> None:
        resource = make_resource(scope, "schema", alt_id="_headwater.schemas.1")
        store.insert(resource)
        fetched = store.get_by_alt_id("schema", scope, "_headwater.schemas.1")
        assert fetched is not None and fetched.id == resource.id
        assert store.get_by_alt_id("schema", scope, "_headwater.schemas.2") is None
        assert store.get_by_alt_id("fieldGroup", scope, "_headwater.schemas.1") is None

    def test_get_many(self, store: MetadataStore, scope: Scope, other_sandbox: Scope) -> None:
        a, b = make_resource(scope), make_resource(scope)
        hidden = make_resource(other_sandbox)
        for r in (a, b, hidden):
            store.insert(r)
        found = store.get_many("connection", scope, [a.id, b.id, a.id, hidden.id, "absent"])
        assert set(found) == {a.id, b.id}
        assert found[a.id].doc == a.doc
        assert store.get_many("connection", scope, []) == {}

    def test_get_absent_is_none(self, store: MetadataStore, scope: Scope) -> None:
        assert store.get("connection", scope, "absent") is None

    def test_kind_is_part_of_the_identity(self, store: MetadataStore, scope: Scope) -> None:
        resource = make_resource(scope, "connection", "shared-id")
        store.insert(resource)
        assert store.get("flow", scope, "shared-id") is None
        store.insert(make_resource(scope, "flow", "shared-id"))
        got = store.get("connection", scope, "shared-id")
        assert got is not None and got.kind == "connection"

    # --- resources: scoping ---

    @pytest.mark.parametrize("elsewhere", ["other_sandbox", "other_org"])
    def test_resource_of_another_scope_is_invisible(
        self, store: MetadataStore, scope: Scope, elsewhere: str, request: pytest.FixtureRequest
    ) -> None:
        other: Scope = request.getfixturevalue(elsewhere)
        resource = make_resource(scope, alt_id="alt-1")
        store.insert(resource)
        assert store.get("connection", other, resource.id) is None
        assert store.get_by_alt_id("connection", other, "alt-1") is None
        assert store.get_many("connection", other, [resource.id]) == {}
        assert store.list("connection", other, count=True).items == []
        assert store.list("connection", other, count=True).total == 0
        assert [r.id for r in store.list("connection", scope).items] == [resource.id]

    @pytest.mark.parametrize("elsewhere", ["other_sandbox", "other_org"])
    def test_another_scope_cannot_update_or_delete(
        self, store: MetadataStore, scope: Scope, elsewhere: str, request: pytest.FixtureRequest
    ) -> None:
        other: Scope = request.getfixturevalue(elsewhere)
        resource = make_resource(scope)
        store.insert(resource)
        intruder = make_resource(other, ident=resource.id, doc={"hacked": True})
        with pytest.raises(StaleWrite):
            store.update(intruder, resource.etag)
        assert store.delete("connection", other, resource.id) is False
        assert store.get("connection", scope, resource.id) == resource_without_refs(resource)

    @pytest.mark.parametrize("elsewhere", ["other_sandbox", "other_org"])
    def test_same_id_and_alt_id_allowed_in_another_scope(
        self, store: MetadataStore, scope: Scope, elsewhere: str, request: pytest.FixtureRequest
    ) -> None:
        other: Scope = request.getfixturevalue(elsewhere)
        here = make_resource(scope, "schema", "same-id", alt_id="same-alt", doc={"where": "here"})
        there = make_resource(other, "schema", "same-id", alt_id="same-alt", doc={"where": "there"})
        store.insert(here)
        store.insert(there)
        got_here = store.get("schema", scope, "same-id")
        got_there = store.get_by_alt_id("schema", other, "same-alt")
        assert got_here is not None and got_here.doc == {"where": "here"}
        assert got_there is not None and got_there.doc == {"where": "there"}

    # --- resources: uniqueness ---

    def test_duplicate_id_is_refused(self, store: MetadataStore, scope: Scope) -> None:
        resource = make_resource(scope)
        store.insert(resource)
        with pytest.raises(AlreadyExists):
            store.insert(make_resource(scope, ident=resource.id, doc={"second": True}))
        assert store.get("connection", scope, resource.id) == resource_without_refs(resource)
        assert store.list("connection", scope, count=True).total == 1

    def test_duplicate_alt_id_in_same_scope_is_refused(self, store: MetadataStore, scope: Scope) -> None:
        store.insert(make_resource(scope, "schema", alt_id="_t.schemas.x"))
        with pytest.raises(AlreadyExists):
            store.insert(make_resource(scope, "schema", alt_id="_t.schemas.x"))
        assert store.list("schema", scope, count=True).total == 1

    def test_many_resources_without_alt_id(self, store: MetadataStore, scope: Scope) -> None:
        for _ in range(3):
            store.insert(make_resource(scope, alt_id=None))
        assert store.list("connection", scope, count=True).total == 3

    # --- resources: updates ---

    def test_update_with_current_etag(self, store: MetadataStore, scope: Scope) -> None:
        original = make_resource(scope, name="before", created_at=T0, updated_at=T0)
        store.insert(original)
        changed = make_resource(
            scope, ident=original.id, name="after", doc={"v": 2}, created_at=T0, updated_at=T0 + 1000
        )
        store.update(changed, original.etag)
        got = store.get("connection", scope, original.id)
        assert got is not None
        assert (got.doc, got.name, got.etag, got.updated_at) == ({"v": 2}, "after", changed.etag, T0 + 1000)
        assert got.created_at == T0
        assert got.etag != original.etag

    def test_update_with_stale_etag_changes_nothing(self, store: MetadataStore, scope: Scope) -> None:
        original = make_resource(scope, name="v1")
        store.insert(original)
        second = make_resource(scope, ident=original.id, name="v2", doc={"v": 2}, updated_at=T0 + 1)
        store.update(second, original.etag)
        third = make_resource(scope, ident=original.id, name="v3", doc={"v": 3}, updated_at=T0 + 2)
        with pytest.raises(StaleWrite):
            store.update(third, original.etag)
        got = store.get("connection", scope, original.id)
        assert got is not None and (got.doc, got.name, got.etag) == ({"v": 2}, "v2", second.etag)

    def test_update_of_absent_resource_is_stale(self, store: MetadataStore, scope: Scope) -> None:
        with pytest.raises(StaleWrite):
            store.update(make_resource(scope), _etag())
        assert store.list("connection", scope, count=True).total == 0

    # --- resources: references ---

    def test_insert_with_missing_reference_inserts_nothing(self, store: MetadataStore, scope: Scope) -> None:
        connection = make_resource(scope, "connection")
        store.insert(connection)
        flow = make_resource(scope, "flow", refs=[("connection", connection.id), ("connection", "gone")])
        with pytest.raises(MissingReference) as caught:
            store.insert(flow)
        assert (caught.value.kind, caught.value.ident) == ("connection", "gone")
        assert store.get("flow", scope, flow.id) is None
        assert store.referrers(scope, "connection", connection.id) == []
        assert store.delete("connection", scope, connection.id) is True

    def test_reference_to_another_scope_is_missing(
        self, store: MetadataStore, scope: Scope, other_sandbox: Scope
    ) -> None:
        foreign = make_resource(other_sandbox, "connection")
        store.insert(foreign)
        with pytest.raises(MissingReference):
            store.insert(make_resource(scope, "flow", refs=[("connection", foreign.id)]))
        assert store.list("flow", scope, count=True).total == 0

    def test_delete_of_referenced_resource_is_refused(self, store: MetadataStore, scope: Scope) -> None:
        connection = make_resource(scope, "connection")
        store.insert(connection)
        source = make_resource(scope, "sourceConnection", refs=[("connection", connection.id)])
        store.insert(source)
        flows = [
            make_resource(scope, "flow", f"flow-{i}", refs=[("sourceConnection", source.id)])
            for i in range(2)
        ]
        for flow in flows:
            store.insert(flow)
        with pytest.raises(StillReferenced) as caught:
            store.delete("sourceConnection", scope, source.id)
        assert sorted(caught.value.referrers) == [("flow", "flow-0"), ("flow", "flow-1")]
        assert store.get("sourceConnection", scope, source.id) is not None
        assert sorted(store.referrers(scope, "sourceConnection", source.id)) == [
            ("flow", "flow-0"),
            ("flow", "flow-1"),
        ]
        with pytest.raises(StillReferenced) as caught:
            store.delete("connection", scope, connection.id)
        assert caught.value.referrers == [("sourceConnection", source.id)]

    def test_delete_works_once_the_referrer_is_deleted(self, store: MetadataStore, scope: Scope) -> None:
        connection = make_resource(scope, "connection")
        flow = make_resource(scope, "flow", refs=[("connection", connection.id)])
        store.insert(connection)
        store.insert(flow)
        assert store.delete("flow", scope, flow.id) is True
        assert store.referrers(scope, "connection", connection.id) == []
        assert store.delete("connection", scope, connection.id) is True
        assert store.get("connection", scope, connection.id) is None

    def test_update_replaces_references(self, store: MetadataStore, scope: Scope) -> None:
        old, new = make_resource(scope, "connection"), make_resource(scope, "connection")
        store.insert(old)
        store.insert(new)
        flow = make_resource(scope, "flow", refs=[("connection", old.id)])
        store.insert(flow)
        moved = make_resource(scope, "flow", flow.id, refs=[("connection", new.id)], updated_at=T0 + 1)
        store.update(moved, flow.etag)
        assert store.referrers(scope, "connection", old.id) == []
        assert store.referrers(scope, "connection", new.id) == [("flow", flow.id)]
        assert store.delete("connection", scope, old.id) is True
        with pytest.raises(StillReferenced):
            store.delete("connection", scope, new.id)
        dropped = make_resource(scope, "flow", flow.id, refs=[], updated_at=T0 + 2)
        store.update(dropped, moved.etag)
        assert store.delete("connection", scope, new.id) is True

    def test_update_with_missing_reference_changes_nothing(self, store: MetadataStore, scope: Scope) -> None:
        connection = make_resource(scope, "connection")
        store.insert(connection)
        flow = make_resource(scope, "flow", refs=[("connection", connection.id)], doc={"v": 1})
        store.insert(flow)
        broken = make_resource(scope, "flow", flow.id, refs=[("connection", "gone")], doc={"v": 2})
        with pytest.raises(MissingReference):
            store.update(broken, flow.etag)
        got = store.get("flow", scope, flow.id)
        assert got is not None and (got.doc, got.etag) == ({"v": 1}, flow.etag)
        assert store.referrers(scope, "connection", connection.id) == [("flow", flow.id)]

    def test_references_do_not_cross_scopes(
        self, store: MetadataStore, scope: Scope, other_sandbox: Scope
    ) -> None:
        here = make_resource(scope, "connection", "conn")
        there = make_resource(other_sandbox, "connection", "conn")
        store.insert(here)
        store.insert(there)
        store.insert(make_resource(other_sandbox, "flow", refs=[("connection", "conn")]))
        assert store.referrers(scope, "connection", "conn") == []
        assert store.delete("connection", scope, "conn") is True
        with pytest.raises(StillReferenced):
            store.delete("connection", other_sandbox, "conn")

    def test_delete_of_absent_is_false(self, store: MetadataStore, scope: Scope) -> None:
        assert store.delete("connection", scope, "absent") is False
        resource = make_resource(scope)
        store.insert(resource)
        assert store.delete("connection", scope, resource.id) is True
        assert store.delete("connection", scope, resource.id) is False

    # --- resources: listing ---

    @pytest.fixture
    def listed(self, store: MetadataStore, scope: Scope) -> list[Resource]:
        """Five resources inserted in this order, with ties on every sort column; ids not in order."""
        rows = [
            ("id-c", "beta", T0 + 100, T0 + 300),
            ("id-e", "alpha", T0 + 100, T0 + 200),
            ("id-a", "beta", T0 + 50, T0 + 300),
            ("id-d", "gamma", T0 + 200, T0 + 100),
            ("id-b", "alpha", T0 + 100, T0 + 200),
        ]
        resources = [
            make_resource(scope, "dataSet", i, name=n, created_at=c, updated_at=u) for i, n, c, u in rows
        ]
        for resource in resources:
            store.insert(resource)
        store.insert(make_resource(scope, "schema"))  # another kind never shows up
        return resources

    @pytest.mark.parametrize(
        ("order", "ascending"),
        [
            ("createdAt", ["id-a", "id-c", "id-e", "id-b", "id-d"]),
            ("updatedAt", ["id-d", "id-e", "id-b", "id-c", "id-a"]),
            ("name", ["id-e", "id-b", "id-c", "id-a", "id-d"]),
            ("id", ["id-a", "id-b", "id-c", "id-d", "id-e"]),
        ],
    )
    def test_list_order(
        self, store: MetadataStore, scope: Scope, listed: list[Resource], order: Any, ascending: list[str]
    ) -> None:
        up = store.list("dataSet", scope, order=order)
        down = store.list("dataSet", scope, order=order, descending=True)
        assert [r.id for r in up.items] == ascending
        # Descending is the exact reverse, so paging backwards and forwards agree.
        assert [r.id for r in down.items] == ascending[::-1]

    def test_list_default_order_is_creation_then_insertion(
        self, store: MetadataStore, scope: Scope, listed: list[Resource]
    ) -> None:
        assert [r.id for r in store.list("dataSet", scope).items] == ["id-a", "id-c", "id-e", "id-b", "id-d"]

    def test_list_offset_limit_count(
        self, store: MetadataStore, scope: Scope, listed: list[Resource]
    ) -> None:
        everything = [r.id for r in store.list("dataSet", scope).items]
        pages = [store.list("dataSet", scope, offset=o, limit=2, count=True) for o in (0, 2, 4, 6)]
        assert [[r.id for r in p.items] for p in pages] == [
            everything[0:2],
            everything[2:4],
            everything[4:],
            [],
        ]
        assert {p.total for p in pages} == {5}
        assert store.list("dataSet", scope, limit=2).total is None
        assert store.list("dataSet", scope, limit=0, count=True).total == 5

    def test_list_returns_full_resources(
        self, store: MetadataStore, scope: Scope, listed: list[Resource]
    ) -> None:
        items = {r.id: r for r in store.list("dataSet", scope).items}
        assert items == {r.id: resource_without_refs(r) for r in listed}

    # --- concurrency ---

    def test_concurrent_updates_with_one_etag_one_wins(self, store: MetadataStore, scope: Scope) -> None:
        original = make_resource(scope, doc={"writer": None})
        store.insert(original)
        attempts = [
            make_resource(scope, ident=original.id, doc={"writer": i}, updated_at=T0 + i) for i in range(8)
        ]
        outcomes = run_together(*[lambda a=a: store.update(a, original.etag) for a in attempts])
        winners = [i for i, o in enumerate(outcomes) if o is None]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, StaleWrite) for i, o in enumerate(outcomes) if i != winners[0]), outcomes
        got = store.get("connection", scope, original.id)
        assert got is not None
        assert (got.doc, got.etag) == ({"writer": winners[0]}, attempts[winners[0]].etag)

    def test_delete_racing_a_referring_insert_never_leaves_a_dangling_reference(
        self, store: MetadataStore, scope: Scope
    ) -> None:
        for _ in range(20):
            connection = make_resource(scope, "connection")
            store.insert(connection)
            flow = make_resource(scope, "flow", refs=[("connection", connection.id)])
            deleted, inserted = run_together(
                lambda c=connection: store.delete("connection", scope, c.id),
                lambda f=flow: store.insert(f),
            )
            still_there = store.get("connection", scope, connection.id) is not None
            flow_there = store.get("flow", scope, flow.id) is not None
            if still_there:
                assert inserted is None and flow_there, (deleted, inserted)
                assert isinstance(deleted, StillReferenced), (deleted, inserted)
                assert store.referrers(scope, "connection", connection.id) == [("flow", flow.id)]
            else:
                assert deleted is True, (deleted, inserted)
                assert isinstance(inserted, MissingReference) and not flow_there, (deleted, inserted)
                assert store.referrers(scope, "connection", connection.id) == []


def resource_without_refs(resource: Resource) -> Resource:
    """What a read returns: the store keeps references for itself and does not hand them back."""
    return Resource(
        kind=resource.kind,
        id=resource.id,
        scope=resource.scope,
        doc=resource.doc,
        etag=resource.etag,
        name=resource.name,
        alt_id=resource.alt_id,
        created_at=resource.created_at,
        updated_at=resource.updated_at,
    )


class TestSqliteStore(MetadataStoreContract):
    __test__ = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[MetadataStore]:
        store = open_store(f"sqlite:///{tmp_path / 'metadata.db'}")
        store.migrate()
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresStore(MetadataStoreContract):
    __test__ = True

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[MetadataStore]:
        store = open_store(postgres_url)
        store.migrate()
        yield store
        store.close()
