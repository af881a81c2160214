"""The catalog of connection specs and flow specs, shipped as JSON files: each connection spec beside its
connector (``headwater/connectors/<system>/spec*.json``, the files connectors/registry.py names), the
Data Lake's in ``headwater/catalog/connection_specs``, flow specs in ``headwater/catalog/flow_specs``.

Loaded once; read-only. A connection spec's secret auth params are those whose property schema says
``"format": "password"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import orjson

from headwater.connectors import registry


@dataclass(frozen=True)
class SpecCatalog:
    connection_specs: dict[str, dict[str, Any]]
    flow_specs: dict[str, dict[str, Any]]

    def connection_spec(self, spec_id: str) -> dict[str, Any] | None:
        return self.connection_specs.get(spec_id)

    def flow_spec(self, spec_id: str) -> dict[str, Any] | None:
        return self.flow_specs.get(spec_id)

    @staticmethod
    def auth_spec(conn_spec: dict[str, Any], name: str) -> dict[str, Any] | None:
        wanted = name.strip().lower()
        return next((a for a in conn_spec.get("authSpec") or [] if a["name"].lower() == wanted), None)

    @staticmethod
    def secret_fields(auth_spec: dict[str, Any]) -> frozenset[str]:
        props = (auth_spec.get("spec") or {}).get("properties") or {}
        return frozenset(k for k, v in props.items() if isinstance(v, dict) and v.get("format") == "password")

    @staticmethod
    def is_streaming(conn_spec: dict[str, Any]) -> bool:
        return bool((conn_spec.get("attributes") or {}).get("isStreaming"))

    @staticmethod
    def requires_base_connection(conn_spec: dict[str, Any]) -> bool:
        return bool((conn_spec.get("attributes") or {}).get("requiresBaseConnection", True))


_SIDES = ("sourceSpec", "targetSpec")


def _catalog_files(folder: str) -> list[Traversable]:
    root = resources.files("headwater") / "catalog" / folder
    return [p for p in root.iterdir() if p.name.endswith(".json")]


def _load(files: list[Traversable]) -> dict[str, dict[str, Any]]:
    """The specs by id. A side a spec does not have (a source's ``targetSpec``, a destination's
    ``sourceSpec``) is left out rather than ``null``, as the platform's specs leave it out: clients
    read it with ``spec.get("targetSpec", {})`` (aepp's FlowManager does)."""
    docs = [
        {k: v for k, v in orjson.loads(p.read_bytes()).items() if not (k in _SIDES and v is None)}
        for p in files
    ]
    return {d["id"]: d for d in sorted(docs, key=lambda d: d["id"])}


@functools.lru_cache(maxsize=1)
def catalog() -> SpecCatalog:
    connection_files = registry.spec_files() + _catalog_files("connection_specs")
    return SpecCatalog(_load(connection_files), _load(_catalog_files("flow_specs")))
