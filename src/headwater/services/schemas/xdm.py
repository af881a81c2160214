"""The global XDM classes and field groups shipped in ``headwater/catalog/xdm``: loaded once, read-only."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

TENANT_CONTAINER = "tenant"
GLOBAL_CONTAINER = "global"


@dataclass(frozen=True)
class GlobalCatalog:
    classes: dict[str, dict[str, Any]]  # $id -> class
    fieldgroups: dict[str, dict[str, Any]]  # $id -> field group
    alt_ids: dict[str, str]  # meta:altId (with and without the leading "_") -> $id

    def canonical(self, ident: str) -> str | None:
        """The ``$id`` of a global class or field group named by ``$id`` or ``meta:altId``."""
        if ident in self.classes or ident in self.fieldgroups:
            return ident
        return self.alt_ids.get(ident)

    def get_class(self, ident: str) -> dict[str, Any] | None:
        canonical = self.canonical(ident)
        return self.classes.get(canonical) if canonical else None

    def get_fieldgroup(self, ident: str) -> dict[str, Any] | None:
        canonical = self.canonical(ident)
        return self.fieldgroups.get(canonical) if canonical else None


def _load(folder: str) -> dict[str, dict[str, Any]]:
    root = resources.files("headwater") / "catalog" / "xdm" / folder
    docs = [orjson.loads(p.read_bytes()) for p in root.iterdir() if p.name.endswith(".json")]
    return {d["$id"]: d for d in sorted(docs, key=lambda d: d["title"])}


@functools.lru_cache(maxsize=1)
def global_catalog() -> GlobalCatalog:
    classes, fieldgroups = _load("classes"), _load("fieldgroups")
    alt_ids: dict[str, str] = {}
    for doc in (*classes.values(), *fieldgroups.values()):
        alt = doc["meta:altId"]
        alt_ids[alt] = doc["$id"]
        alt_ids[alt.lstrip("_")] = doc["$id"]
    return GlobalCatalog(classes, fieldgroups, alt_ids)


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The short form list endpoints return by default."""
    return {k: doc.get(k) for k in ("$id", "meta:altId", "version", "title")}
