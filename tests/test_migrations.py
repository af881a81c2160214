"""Migrations: a database made by the previous release upgrades in place and keeps its data readable.

``PREVIOUS`` is the head revision of the last release. When a release adds a revision, move ``PREVIOUS``
to the old head and keep the inserted rows in the shape that release wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text

from headwater.stores.metadata import (
    MetadataStore,
    Resource,
    Scope,
    StillReferenced,
    open_store,
)
from headwater.stores.metadata.migrate import alembic_config, upgrade
from headwater.stores.metadata.tables import metadata
from headwater.stores.profiles.tables import metadata as profile_metadata

PREVIOUS = "0001"
T0 = 1_750_000_000_000
ORG = "0123456789ABCDEF01234567@AdobeOrg"
SANDBOX = "5f3c1b8e-0000-4000-8000-000000000001"
SCOPE = Scope(ORG, SANDBOX)


def head_revision() -> str:
    with create_engine("sqlite://").connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def write_previous_release_data(engine: Engine) -> None:
    """Rows as release ``PREVIOUS`` wrote them, with plain SQL (no code of the current release)."""
    json_value = "CAST(:value AS JSONB)" if engine.dialect.name == "postgresql" else ":value"
    statements = [
        (
            "INSERT INTO orgs (id, name, tenant_id, created_at) VALUES (:id, :name, :tenant, :at)",
            {"id": ORG, "name": "Acme", "tenant": "acme", "at": T0},
        ),
        (
            "INSERT INTO sandboxes (id, org_id, name, title, type, created_at) "
            "VALUES (:id, :org, 'prod', 'Production', 'production', :at)",
            {"id": SANDBOX, "org": ORG, "at": T0},
        ),
        (
            "INSERT INTO api_clients (client_id, org_id, name, sealed_secret, enabled, created_at) "
            f"VALUES ('client-1', :org, 'default', {json_value}, :enabled, :at)",
            {"org": ORG, "value": json.dumps({"$enc": "v1.c2VhbGVk"}), "enabled": True, "at": T0},
        ),
    ]
    for kind, ident, refs in [("connection", "conn-1", []), ("flow", "flow-1", [("connection", "conn-1")])]:
        doc = {"id": ident, "name": f"{kind} one", "auth": {"specName": "Basic Authentication"}}
        statements.append(
            (
                "INSERT INTO resources "
                "(kind, id, org_id, sandbox_id, name, alt_id, doc, etag, created_at, updated_at) "
                f"VALUES (:kind, :id, :org, :sandbox, :name, NULL, {json_value}, :etag, :at, :at)",
                {
                    "kind": kind,
                    "id": ident,
                    "org": ORG,
                    "sandbox": SANDBOX,
                    "name": f"{kind} one",
                    "value": json.dumps(doc),
                    "etag": f'"etag-{ident}"',
                    "at": T0,
                },
            )
        )
        for to_kind, to_id in refs:
            statements.append(
                (
                    "INSERT INTO resource_refs (org_id, sandbox_id, from_kind, from_id, to_kind, to_id) "
                    "VALUES (:org, :sandbox, :fk, :fi, :tk, :ti)",
                    {"org": ORG, "sandbox": SANDBOX, "fk": kind, "fi": ident, "tk": to_kind, "ti": to_id},
                )
            )
    with engine.begin() as conn:
        for sql, params in statements:
            conn.execute(text(sql), params)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[MetadataStore]:
    store = open_store(database_url)
    yield store
    store.close()


def test_upgrade_from_previous_release_keeps_data(engine: Engine, store: MetadataStore) -> None:
    upgrade(engine, revision=PREVIOUS)
    write_previous_release_data(engine)

    store.migrate()

    assert current_revision(engine) == head_revision()
    org = store.get_org(ORG)
    assert org is not None and (org.name, org.tenant_id, org.created_at) == ("Acme", "acme", T0)
    sandbox = store.get_sandbox(ORG, "prod")
    assert sandbox is not None and sandbox.id == SANDBOX
    client = store.get_client("client-1")
    assert client is not None
    assert (client.org_id, client.sealed_secret, client.enabled) == (ORG, {"$enc": "v1.c2VhbGVk"}, True)
    flow = store.get("flow", SCOPE, "flow-1")
    assert flow is not None
    assert flow.doc == {"id": "flow-1", "name": "flow one", "auth": {"specName": "Basic Authentication"}}
    assert (flow.etag, flow.created_at, flow.updated_at) == ('"etag-flow-1"', T0, T0)
    assert [r.id for r in store.list("connection", SCOPE).items] == ["conn-1"]
    # References written by the old release still protect what they point at.
    with pytest.raises(StillReferenced):
        store.delete("connection", SCOPE, "conn-1")


def test_upgraded_database_accepts_new_writes(engine: Engine, store: MetadataStore) -> None:
    upgrade(engine, revision=PREVIOUS)
    write_previous_release_data(engine)
    store.migrate()

    flow = store.get("flow", SCOPE, "flow-1")
    assert flow is not None
    changed = Resource("flow", "flow-1", SCOPE, {"v": 2}, '"etag-2"', "flow two", None, T0, T0 + 1, [])
    store.update(changed, flow.etag)
    store.insert(Resource("connection", "conn-2", SCOPE, {"v": 1}, '"e"', "c2", None, T0 + 2, T0 + 2, []))
    assert [r.id for r in store.list("connection", SCOPE).items] == ["conn-1", "conn-2"]
    assert store.delete("connection", SCOPE, "conn-1") is True


def test_head_creates_exactly_the_declared_tables(engine: Engine, store: MetadataStore) -> None:
    store.migrate()

    inspector = inspect(engine)
    created = set(inspector.get_table_names()) - {"alembic_version"}
    # The profile serving store's tables share the database and its history.
    declared = {**metadata.tables, **profile_metadata.tables}
    assert created == set(declared)
    for name, table in declared.items():
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert columns == {c.name for c in table.columns}, name
    # Beyond names: types, nullability, indexes and unique constraints agree too.
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, [metadata, profile_metadata]) == []  # type: ignore[arg-type]
