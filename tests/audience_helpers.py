"""Building blocks of the audience activation tests: a stand-in segment definition, the Profile Service
source, audience activation flows, and membership transitions written straight into the profile store
(as segment evaluation writes them)."""

from __future__ import annotations

from typing import Any

from headwater.services.ids import new_etag, now_ms
from headwater.stores.metadata import MetadataStore, Resource, Scope
from headwater.stores.profiles import ProfileStore, Transition
from tests.activation_helpers import ACTIVATION, FS
from tests.flows_helpers import created_id
from tests.support import ApiClient

PROFILE_SERVICE = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
ENTER_BODY = '{"email": "${email}", "first": "${first}", "status": "${status}"}'
EXIT_BODY = '{"email": "${email}", "status": "${status}"}'


def bindings(segment_id: str) -> dict[str, Any]:
    return {
        "email": {"source": "identityMap.Email[0].id"},
        "first": {"source": "person.name.firstName"},
        "status": {"source": f"segmentMembership.ups.{segment_id}.status"},
    }


def segment_definition(store: MetadataStore, scope: Scope, segment_id: str) -> None:
    """A stored segment definition (the segments service's resource kind) for flows to select."""
    now = now_ms()
    doc = {"name": f"Audience {segment_id}", "expression": {"type": "PQL", "value": "true"}}
    store.insert(Resource("segmentDefinition", segment_id, scope, doc, new_etag(), None, None, now, now))


def audience_source(api: ApiClient) -> str:
    body = {
        "name": "Profiles",
        "connectionSpec": {"id": PROFILE_SERVICE, "version": "1.0"},
        "data": {"format": "json"},
        "params": {},
    }
    return created_id(api.post(f"{FS}/sourceConnections", json=body))


def general_transform(segment_id: str) -> dict[str, Any]:
    selector = {"type": "PLATFORM_SEGMENT", "value": {"id": segment_id, "name": "Audience"}}
    return {
        "name": "GeneralTransform",
        "params": {"segmentSelectors": {"selectors": [selector]}, "profileSelectors": {"selectors": []}},
    }


def audience_body(
    source: str, targets: list[str], segment_id: str, binds: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    return {
        "name": "Audience activation",
        "flowSpec": {"id": ACTIVATION, "version": "1.0"},
        "sourceConnectionIds": [source],
        "targetConnectionIds": targets,
        "transformations": [
            general_transform(segment_id),
            {"name": "Variables", "params": {"bindings": binds or bindings(segment_id)}},
        ],
        "options": options,
    }


def entity(n: int) -> dict[str, Any]:
    """The merged profile of person ``n`` (cluster ``n``)."""
    return {
        "person": {"name": {"firstName": f"Ada{n}"}},
        "identityMap": {"Email": [{"id": f"p{n}@example.com"}]},
    }


def enter(profiles: ProfileStore, scope: Scope, segment_id: str, *clusters: int) -> list[Transition]:
    """The clusters qualify for the segment (a realized transition each, if they were not members)."""
    people = {c: entity(c) for c in clusters}
    return profiles.apply_membership(scope, segment_id, list(clusters), list(clusters), people, now_ms())


def leave(profiles: ProfileStore, scope: Scope, segment_id: str, *clusters: int) -> list[Transition]:
    """The clusters no longer qualify (an exited transition each, if they were members)."""
    people = {c: entity(c) for c in clusters}
    return profiles.apply_membership(scope, segment_id, list(clusters), [], people, now_ms())
