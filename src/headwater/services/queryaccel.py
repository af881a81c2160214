"""The dimension tables of AEP's Query Accelerated Store that clients read first:
``qsaccel.profile_agg.adwh_dim_merge_policies``, ``adwh_dim_namespaces`` and ``adwh_dim_segments``,
over the sandbox's own merge policies, identity namespaces and segment definitions.

aepp's ``InteractiveQuery2`` (its PostgreSQL client of Query Service) reads the first two when it
connects, to find the default merge policy and name the namespaces; AEP's profile dashboards join its
fact tables to them. Columns are upper-case, as AEP returns them (aepp reads
``IS_DEFAULT_MERGE_POLICY`` and ``MERGE_POLICY_ID`` by those names): ``MERGE_POLICY_ID`` is a small
integer key per policy (AEP's surrogate key), ``MERGE_POLICY`` the policy's id. Headwater keeps no daily
profile snapshots, so the fact tables (``adwh_fact_profile*``) are not there: a query that names one is
a clear unknown-table error.

The tables are made on the query's own connection before it runs (``QueryEngine.run``'s ``setup``),
in an in-memory database attached as ``qsaccel``, only when the statement names ``qsaccel``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater.services.tenancy import Actor

if TYPE_CHECKING:
    import duckdb

    from headwater.services.identity_namespaces import IdentityNamespaces
    from headwater.services.merge_policies import MergePolicies
    from headwater.stores.metadata import MetadataStore

NAMED = re.compile(r"\bqsaccel\s*\.", re.IGNORECASE)
SEGMENTS = "segmentDefinition"
_SCHEMAS = {
    "adwh_dim_merge_policies": pa.schema(
        [
            ("MERGE_POLICY_ID", pa.int32()),
            ("MERGE_POLICY", pa.string()),
            ("MERGE_POLICY_NAME", pa.string()),
            ("IS_DEFAULT_MERGE_POLICY", pa.bool_()),
            ("DATASET_ID", pa.string()),
        ]
    ),
    "adwh_dim_namespaces": pa.schema(
        [
            ("NAMESPACE_ID", pa.int64()),
            ("NAMESPACE_DESCRIPTION", pa.string()),
            ("MERGE_POLICY_ID", pa.int32()),
        ]
    ),
    "adwh_dim_segments": pa.schema(
        [
            ("SEGMENT_ID", pa.int32()),
            ("SEGMENT", pa.string()),
            ("SEGMENT_NAME", pa.string()),
            ("MERGE_POLICY_ID", pa.int32()),
        ]
    ),
}


class AcceleratedStore:
    """The sandbox's dimension tables (see the module)."""

    def __init__(
        self, store: MetadataStore, merge_policies: MergePolicies, namespaces: IdentityNamespaces
    ) -> None:
        self.store, self.merge_policies, self.namespaces = store, merge_policies, namespaces

    def setup(self, actor: Actor, sql: str) -> Callable[[duckdb.DuckDBPyConnection], None] | None:
        """What makes the tables on a query's connection; None when ``sql`` does not name ``qsaccel``."""
        if NAMED.search(sql) is None:
            return None
        tables = self.tables(actor)

        def fill(connection: duckdb.DuckDBPyConnection) -> None:
            connection.execute("ATTACH ':memory:' AS qsaccel")
            connection.execute("CREATE SCHEMA qsaccel.profile_agg")
            for name, table in tables.items():
                connection.register("hw_accel_rows", table)
                connection.execute(f"CREATE TABLE qsaccel.profile_agg.{name} AS SELECT * FROM hw_accel_rows")
                connection.unregister("hw_accel_rows")

        return fill

    def tables(self, actor: Actor) -> dict[str, pa.Table]:
        policies = self.merge_policies.all(actor)
        keys = {policy["id"]: number for number, policy in enumerate(policies, start=1)}
        namespaces = self.namespaces.list_all(actor)
        rows: dict[str, list[dict[str, Any]]] = {
            "adwh_dim_merge_policies": [
                {
                    "MERGE_POLICY_ID": keys[p["id"]],
                    "MERGE_POLICY": p["id"],
                    "MERGE_POLICY_NAME": p.get("name"),
                    "IS_DEFAULT_MERGE_POLICY": bool(p.get("default")),
                    "DATASET_ID": None,
                }
                for p in policies
            ],
            "adwh_dim_namespaces": [
                {"NAMESPACE_ID": n["id"], "NAMESPACE_DESCRIPTION": n["code"], "MERGE_POLICY_ID": key}
                for key in keys.values()
                for n in namespaces
            ],
            "adwh_dim_segments": [],
        }
        default = next((keys[p["id"]] for p in policies if p.get("default")), None)
        for number, resource in enumerate(self.store.list(SEGMENTS, actor.scope).items, start=1):
            policy = resource.doc.get("mergePolicyId")
            rows["adwh_dim_segments"].append(
                {
                    "SEGMENT_ID": number,
                    "SEGMENT": resource.id,
                    "SEGMENT_NAME": resource.doc.get("name"),
                    "MERGE_POLICY_ID": keys.get(policy, default) if policy else default,
                }
            )
        return {name: pa.Table.from_pylist(rows[name], schema=schema) for name, schema in _SCHEMAS.items()}


def combined(
    *setups: Callable[[duckdb.DuckDBPyConnection], None] | None,
) -> Callable[[duckdb.DuckDBPyConnection], None] | None:
    """One setup that runs each given one in turn (None when none is given)."""
    given = [s for s in setups if s is not None]
    if not given:
        return None

    def run(connection: duckdb.DuckDBPyConnection) -> None:
        for setup in given:
            setup(connection)

    return run
