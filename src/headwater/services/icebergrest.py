"""The Apache Iceberg REST catalog over the lake, read-only, as outside engines see it.

One catalog per sandbox: the REST ``prefix`` is the sandbox's name (``GET /v1/config?warehouse=<sandbox>``
hands it back as an override), and the sandbox is the catalog's only namespace. Its tables are the
datasets of that sandbox that have data in the lake, each named by its ``adobe/pqs/table`` tag (as in
Query Service, where ``<sandbox>.<table>`` names the same rows). What is not the caller's (another
sandbox, another organization, a dataset without data) is absent: 404, never a hint that it exists.

Every answer is the spec's shape: a ``LoadTableResult`` carries the table's metadata JSON exactly as
pyiceberg serialises it, with its ``file://`` metadata location; an outside engine on the same machine
reads the data files from there (object storage would need vended credentials: not implemented).
Errors are :class:`~headwater.errors.HeadwaterError` subclasses whose ``code`` is the spec's error type
(``NoSuchTableException``...); the route renders them as ``{"error": {message, type, code}}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from headwater.errors import Forbidden, NotFound
from headwater.services.catalogsvc import TABLE_TAG
from headwater.services.tenancy import Actor

if TYPE_CHECKING:
    from headwater.lake.iceberg import Lake
    from headwater.services.catalogsvc import DataSets
    from headwater.stores.metadata import MetadataStore

# What this catalog serves (GET /v1/config ``endpoints``): clients check it before calling, so a client
# refuses a write itself; the server refuses it too (:meth:`IcebergCatalog.refuse_write`).
ENDPOINTS = (
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
)
# pyiceberg's default namespace separator (the unit separator), as sent in a path.
SEPARATOR = "\x1f"


class IcebergCatalog:
    """The read-only Iceberg REST catalog of one caller's sandbox (see the module)."""

    def __init__(self, store: MetadataStore, datasets: DataSets, lake: Lake) -> None:
        self.store = store
        self.datasets = datasets
        self.lake = lake

    def config(self, actor: Actor) -> dict[str, Any]:
        """The ConfigResponse of ``actor``'s sandbox: its prefix and the endpoints served."""
        return {
            "defaults": {},
            "overrides": {"prefix": actor.sandbox.name},
            "endpoints": list(ENDPOINTS),
        }

    def namespaces(self, actor: Actor, parent: str | None) -> dict[str, Any]:
        """ListNamespacesResponse: the sandbox, the one namespace (which has no children)."""
        if parent:
            self.namespace(actor, parent)
            return {"namespaces": []}
        return {"namespaces": [[actor.sandbox.name]]}

    def namespace(self, actor: Actor, namespace: str) -> dict[str, Any]:
        """GetNamespaceResponse; 404 NoSuchNamespaceException for any name but the sandbox's."""
        if namespace != actor.sandbox.name:
            raise NotFound(
                f"Namespace does not exist: {namespace!r}. This catalog's one namespace is the sandbox, "
                f"{actor.sandbox.name!r}.",
                code="NoSuchNamespaceException",
            )
        return {
            "namespace": [actor.sandbox.name],
            "properties": {"comment": f"The datasets of sandbox {actor.sandbox.name} (read-only)."},
        }

    def tables(self, actor: Actor, namespace: str) -> dict[str, Any]:
        """ListTablesResponse: the sandbox's datasets that have a table in the lake, by table name."""
        self.namespace(actor, namespace)
        present = self.lake.table_names(actor.scope)
        names = sorted(
            name
            for dataset_id, name in self._named_datasets(actor)
            if self.lake.identifier(actor.scope, dataset_id)[1] in present
        )
        return {"identifiers": [{"namespace": [namespace], "name": n} for n in names]}

    def load(self, actor: Actor, namespace: str, table: str) -> dict[str, Any]:
        """LoadTableResult of a dataset's table: metadata location, metadata JSON, and no config."""
        self.namespace(actor, namespace)
        dataset_id = self._dataset_of(actor, table)
        loaded = self.lake.load(actor.scope, dataset_id) if dataset_id is not None else None
        if loaded is None:
            raise NotFound(
                f"Table does not exist: {namespace}.{table}. List the namespace's tables: only datasets "
                "with data are tables.",
                code="NoSuchTableException",
            )
        return {
            "metadata-location": loaded.metadata_location,
            "metadata": json.loads(loaded.metadata.model_dump_json()),
            "config": {},
        }

    @staticmethod
    def refuse_write(actor: Actor, what: str) -> None:
        """Every write of the spec (namespaces, tables, commits, renames, views): refused, 403."""
        raise Forbidden(
            f"This Iceberg catalog is read-only: {what} is refused. Datasets change through Headwater's "
            "flows and APIs.",
            code="ForbiddenException",
        )

    def _named_datasets(self, actor: Actor) -> list[tuple[str, str]]:
        """(dataset id, table name) of each dataset of the sandbox that has a table name."""
        found = []
        for resource in self.store.list(self.datasets.kind, actor.scope).items:
            for name in resource.doc.get("tags", {}).get(TABLE_TAG, [])[:1]:
                found.append((resource.id, str(name)))
        return found

    def _dataset_of(self, actor: Actor, table: str) -> str | None:
        for dataset_id, name in self._named_datasets(actor):
            if name == table:
                return dataset_id
        return None
