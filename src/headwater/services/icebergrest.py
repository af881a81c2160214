"""The Apache Iceberg REST catalog over the lake, read-only, as outside engines see it.

One catalog per sandbox: the REST ``prefix`` is the sandbox's name (``GET /v1/config?warehouse=<sandbox>``
hands it back as an override), and the sandbox is the catalog's only namespace. Its tables are the
datasets of that sandbox that have data in the lake, each named by its ``adobe/pqs/table`` tag (as in
Query Service, where ``<sandbox>.<table>`` names the same rows). What is not the caller's (another
sandbox, another organization, a dataset without data) is absent: 404, never a hint that it exists.

Every answer is the spec's shape: a ``LoadTableResult`` carries the table's metadata JSON exactly as
pyiceberg serialises it, with its metadata location. A local lake's ``file://`` paths are read by an
engine on the same machine, and its ``config`` is empty. With the lake on object storage, ``config``
names the store (endpoint, region, addressing) and, to a client asking for vended credentials
(``X-Iceberg-Access-Delegation: vended-credentials``) when a reader key is set, carries that read-only
key, also as the table location's ``storage-credentials`` (lake/storage.py: never the lake's own key).
Errors are :class:`~headwater.errors.HeadwaterError` subclasses whose ``code`` is the spec's error type
(``NoSuchTableException``...); the route renders them as ``{"error": {message, type, code}}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from headwater.errors import Forbidden, NotFound
from headwater.lake.storage import reader_credentials, reader_properties
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
# The access delegation mechanism served (X-Iceberg-Access-Delegation); remote signing is not.
VENDED = "vended-credentials"


def delegations(header: str | None) -> frozenset[str]:
    """The mechanisms an ``X-Iceberg-Access-Delegation`` header asks for (a comma list; the spec lets the
    server supply any or none of them, so an unknown one is ignored, not refused)."""
    return frozenset(m.strip().lower() for m in (header or "").split(",") if m.strip())


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

    def load(
        self, actor: Actor, namespace: str, table: str, delegation: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """LoadTableResult of a dataset's table: metadata location, metadata JSON, and the ``config`` (and
        ``storage-credentials`` when ``delegation`` asks for vended credentials) to read its files."""
        self.namespace(actor, namespace)
        dataset_id = self._dataset_of(actor, table)
        loaded = self.lake.load(actor.scope, dataset_id) if dataset_id is not None else None
        if loaded is None:
            raise NotFound(
                f"Table does not exist: {namespace}.{table}. List the namespace's tables: only datasets "
                "with data are tables.",
                code="NoSuchTableException",
            )
        result: dict[str, Any] = {
            "metadata-location": loaded.metadata_location,
            "metadata": json.loads(loaded.metadata.model_dump_json()),
            "config": reader_properties(self.lake.settings),
        }
        credentials = reader_credentials(self.lake.settings) if VENDED in delegation else None
        if credentials is not None:
            # Both places: pyiceberg >= 0.10 and Iceberg Java >= 1.7 prefer storage-credentials (longest
            # prefix of the file's path), older clients read config only.
            result["config"].update(credentials)
            prefix = loaded.metadata.location.rstrip("/") + "/"
            result["storage-credentials"] = [{"prefix": prefix, "config": credentials}]
        return result

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
