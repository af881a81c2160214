"""Which datasets feed profiles, and where their identities are.

A dataset feeds the Real-Time Customer Profile as in AEP when both are true:
- the dataset carries the tag ``unifiedProfile: ["enabled:true"]``;
- its schema is enabled for profile (``meta:immutableTags`` holds ``"union"``).

A Data 360 data stream of category Profile feeds it too, with no tag: Data 360 resolves every Profile
stream into unified individuals.

A dataset of the XDM Individual Profile class (or any class but ExperienceEvent) gives profile fragments;
one of the ExperienceEvent class gives the profiles' events. Its identities are:
- the schema's identity descriptors (``xdm:sourceProperty``, ``xdm:namespace``, ``xdm:isPrimary``);
- the identity flags of the mapping sets that write into the schema (``identity``, ``namespaceCode``,
  ``primaryIdentity``);
- each record's ``identityMap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from headwater.engines.identity.extract import IdentityField
from headwater.stores.metadata import MetadataStore, Resource, Scope

PROFILE_TAG, ENABLED = "unifiedProfile", "enabled:true"
UNION = "union"
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
DATA_STREAM = "data360DataStream"

Kind = Literal["profile", "event"]


@dataclass(frozen=True)
class ProfileSource:
    """A profile-enabled dataset, as the projection reads it."""

    scope: Scope
    dataset_id: str
    schema_id: str
    kind: Kind
    fields: tuple[IdentityField, ...]


class ProfileSources:
    """Reads the metadata store for the datasets that feed profiles."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def enabled(self, scope: Scope, dataset: Resource) -> ProfileSource | None:
        """The dataset as a profile source, or None when it does not feed profiles."""
        stream = self._profile_stream(scope, dataset.id) if not _tagged(dataset) else False
        return self._source(scope, dataset, stream)

    def all(self, scope: Scope) -> list[ProfileSource]:
        """The sandbox's profile sources. Two list queries whatever the number of datasets; only the
        tagged datasets and those of Data 360 Profile streams cost more (their schema and identities),
        so a server holding many datasets that do not feed profiles pays nothing for them."""
        streams = {
            (s.doc.get("resources") or {}).get("dataSetId")
            for s in self.store.list(DATA_STREAM, scope).items
            if s.doc.get("category") == "Profile"
        }
        found = (
            self._source(scope, d, d.id in streams)
            for d in self.store.list("dataSet", scope).items
            if _tagged(d) or d.id in streams
        )
        return [s for s in found if s is not None]

    def _source(self, scope: Scope, dataset: Resource, profile_stream: bool) -> ProfileSource | None:
        ref = ((dataset.doc.get("schemaRef") or {}).get("id")) or ""
        schema = self._schema(scope, ref)
        if schema is None:
            return None
        union = UNION in (schema.doc.get("meta:immutableTags") or [])
        if not ((_tagged(dataset) and union) or profile_stream):
            return None
        kind: Kind = "event" if schema.doc.get("meta:class") == EVENT_CLASS else "profile"
        return ProfileSource(scope, dataset.id, schema.id, kind, tuple(self._fields(scope, schema)))

    def _schema(self, scope: Scope, ref: str) -> Resource | None:
        schema = self.store.get("schema", scope, ref) if ref else None
        return (
            schema
            if schema is not None
            else (self.store.get_by_alt_id("schema", scope, ref) if ref else None)
        )

    def _profile_stream(self, scope: Scope, dataset_id: str) -> bool:
        for kind, ident in self.store.referrers(scope, "dataSet", dataset_id):
            if kind == DATA_STREAM:
                stream = self.store.get(DATA_STREAM, scope, ident)
                if stream is not None and stream.doc.get("category") == "Profile":
                    return True
        return False

    def _fields(self, scope: Scope, schema: Resource) -> list[IdentityField]:
        found: dict[str, IdentityField] = {}
        for kind, ident in self.store.referrers(scope, "schema", schema.id):
            doc = self._doc(scope, kind, ident)
            if kind == "descriptor" and doc.get("@type") == "xdm:descriptorIdentity":
                path = _dotted(doc.get("xdm:sourceProperty"))
                namespace = doc.get("xdm:namespace")
                if path and isinstance(namespace, str):
                    found[path] = IdentityField(path, namespace, doc.get("xdm:isPrimary") is True)
            elif kind == "mappingSet":
                for mapping in doc.get("mappings") or []:
                    field = _mapped(mapping)
                    if field is not None:
                        found.setdefault(field.path, field)
        return sorted(found.values(), key=lambda f: (not f.primary, f.path))

    def _doc(self, scope: Scope, kind: str, ident: str) -> dict[str, Any]:
        if kind not in ("descriptor", "mappingSet"):
            return {}
        resource = self.store.get(kind, scope, ident)
        return resource.doc if resource is not None else {}


def _tagged(dataset: Resource) -> bool:
    return ENABLED in ((dataset.doc.get("tags") or {}).get(PROFILE_TAG) or [])


def _dotted(pointer: Any) -> str:
    """``/_tenant/crmId`` → ``_tenant.crmId``."""
    return ".".join(p for p in pointer.split("/") if p) if isinstance(pointer, str) else ""


def _mapped(mapping: Any) -> IdentityField | None:
    if not isinstance(mapping, dict) or not (mapping.get("identity") or mapping.get("primaryIdentity")):
        return None
    namespace, destination = mapping.get("namespaceCode"), mapping.get("destination")
    if not isinstance(namespace, str) or not isinstance(destination, str):
        return None
    return IdentityField(destination, namespace, mapping.get("primaryIdentity") is True)
