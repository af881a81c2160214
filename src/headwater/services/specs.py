"""The catalog of connection specs and flow specs, shipped as JSON files in ``headwater/catalog``.

Loaded once; read-only. A connection spec's secret auth params are those whose property schema says
``"format": "password"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson


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


def _load(folder: str) -> dict[str, dict[str, Any]]:
    root = resources.files("headwater") / "catalog" / folder
    docs = [orjson.loads(p.read_bytes()) for p in root.iterdir() if p.name.endswith(".json")]
    return {d["id"]: d for d in sorted(docs, key=lambda d: d["id"])}


@functools.lru_cache(maxsize=1)
def catalog() -> SpecCatalog:
    return SpecCatalog(_load("connection_specs"), _load("flow_specs"))
