"""Profile lookups in AEP's shapes (Real-Time Customer Profile API, ``/data/core/ups/access/entities``)
and the identity graph's clusters (Identity Service API, ``/data/core/identity/cluster/...``).

A profile is a cluster of the identity graph: its identities and every profile-enabled dataset's
fragment of them, merged under a merge policy (engines/profile_merge.py). Its ``entityId`` is opaque
(``hw`` and the cluster's number): when two clusters merge, the profile keeps the smaller one's id, as the
graph does.

A profile with segment memberships shows them as AEP does: ``segmentMembership: {"ups": {"<segment id>":
{"status": "realized" | "exited", "lastQualificationTime"}}}``.

Events of a profile come newest first. A page holds ``limit`` of them (default 10, at most 1000); the
``_page.next`` token and ``_links.next.href`` fetch the next.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from headwater.engines.identity.extract import canonical_code
from headwater.engines.identity.namespaces import check_value
from headwater.engines.profile_merge import merge
from headwater.errors import BadRequest, NotFound, ValidationFailed
from headwater.services import access
from headwater.services.merge_policies import MergePolicies
from headwater.services.tenancy import Actor
from headwater.stores.profiles.base import EventCursor, ProfileStore

PROFILE_SCHEMA = "_xdm.context.profile"
EVENT_SCHEMA = "_xdm.context.experienceevent"
CODE = "UPS-1400-400"
MAX_EVENTS = 1000


class ProfileLookup:
    def __init__(self, profiles: ProfileStore, policies: MergePolicies) -> None:
        self.profiles = profiles
        self.policies = policies

    # --- profiles ---
    def entity(self, actor: Actor, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /access/entities`` for ``schema.name=_xdm.context.profile``: the merged profile of the
        identity ``entityId`` in namespace ``entityIdNS`` (or of a profile's own ``entityId``)."""
        actor.require(access.VIEW_PROFILES, "read profiles")
        schema = params.get("schema.name") or PROFILE_SCHEMA
        related = params.get("relatedSchema.name")
        if schema == EVENT_SCHEMA or related == EVENT_SCHEMA:
            return self.events(actor, params)
        if schema != PROFILE_SCHEMA:
            raise _bad("schema.name", f"must be {PROFILE_SCHEMA} or {EVENT_SCHEMA}")
        profile = self._profile(actor, params, "entityId", "entityIdNS")
        policy = self._policy(actor, params.get("mergePolicyId"))
        entity = merge(profile.fragments, policy)
        entity["identityMap"] = _identity_map(profile.members)
        membership = self.profiles.memberships_of(actor.scope, [profile.cluster_id]).get(profile.cluster_id)
        if membership:
            entity["segmentMembership"] = _segment_membership(membership)
        modified = max((f.ts_ms for f in profile.fragments), default=0)
        entity_id = f"hw{profile.cluster_id}"
        return {
            entity_id: {
                "entityId": entity_id,
                "sources": sorted({f.dataset_id for f in profile.fragments}),
                "entity": _fields(entity, params.get("fields")),
                "lastModifiedAt": _iso(modified),
                "mergePolicy": {"id": policy["id"]},
            }
        }

    def events(self, actor: Actor, params: Mapping[str, str]) -> dict[str, Any]:
        """The experience events of a profile, newest first, paged."""
        actor.require(access.VIEW_PROFILES, "read profiles")
        id_key, ns_key = (
            ("relatedEntityId", "relatedEntityIdNS")
            if "relatedEntityId" in params
            else ("entityId", "entityIdNS")
        )
        profile = self._profile(actor, params, id_key, ns_key)
        limit = _limit(params.get("limit"))
        after = _cursor(params.get("start"))
        events, following = self.profiles.events_of(actor.scope, profile.members, limit, after)
        children = [
            {
                "relatedEntityId": f"hw{profile.cluster_id}",
                "entityId": e.event_id,
                "timestamp": e.ts_ms,
                "entity": _fields(e.body, params.get("fields")),
                "lastModifiedAt": _iso(e.ts_ms),
            }
            for e in events
        ]
        token = _token(following) if following is not None else ""
        page = {
            "orderby": "-timestamp",
            "start": params.get("start", ""),
            "count": len(children),
            "next": token,
        }
        links: dict[str, Any] = {}
        if token:
            query = "&".join(f"{k}={v}" for k, v in params.items() if k != "start")
            links["next"] = {"href": f"/entities?start={token}&{query}"}
        return {"_page": page, "children": children, "_links": links}

    # --- the identity graph ---
    def cluster_members(self, actor: Actor, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /data/core/identity/cluster/members?nsId=|namespace=&id=``: the identities of the
        identity's cluster, as AEP's Identity Service answers (``xid`` omitted: ids are given in clear)."""
        actor.require(access.VIEW_PROFILES, "read the identity graph")
        namespace, ident = self._identity(params, "id", "namespace", "nsId")
        cluster = self.profiles.clusters_of(actor.scope, [(namespace, ident)]).get((namespace, ident))
        if cluster is None:
            raise _unknown(namespace, ident)
        members = self.profiles.members(actor.scope, [cluster])
        return {
            "xid": f"hw{cluster}",
            "members": [{"namespace": {"code": ns}, "id": i} for _, ns, i in members],
            "graphType": "private",
        }

    def cluster_history(self, actor: Actor, params: Mapping[str, str]) -> dict[str, Any]:
        """The merges of the identity's cluster, newest first."""
        actor.require(access.VIEW_PROFILES, "read the identity graph")
        namespace, ident = self._identity(params, "id", "namespace", "nsId")
        cluster = self.profiles.clusters_of(actor.scope, [(namespace, ident)]).get((namespace, ident))
        if cluster is None:
            raise _unknown(namespace, ident)
        merges = self.profiles.cluster_history(actor.scope, cluster)
        return {
            "xid": f"hw{cluster}",
            "history": [
                {"from": f"hw{m.cluster_from}", "to": f"hw{m.cluster_to}", "timestamp": m.at_ms}
                for m in merges
            ],
        }

    # --- helpers ---
    def _profile(self, actor: Actor, params: Mapping[str, str], id_key: str, ns_key: str) -> Any:
        ident = params.get(id_key)
        if not ident:
            raise _bad(id_key, "is required: the identity's value (or a profile's entityId)")
        namespace = params.get(ns_key)
        if not namespace:
            if ident.startswith("hw") and ident[2:].isdigit():
                members = self.profiles.members(actor.scope, [int(ident[2:])])
                if members:
                    namespace, ident = members[0][1], members[0][2]
            if not namespace:
                raise _bad(ns_key, "is required: the identity's namespace code, e.g. Email")
        namespace, ident = self._checked(namespace, ident, ns_key, id_key)
        profile = self.profiles.lookup(actor.scope, (namespace, ident))
        if profile is None:
            raise _unknown(namespace, ident)
        return profile

    def _identity(self, params: Mapping[str, str], id_key: str, *ns_keys: str) -> tuple[str, str]:
        ident = params.get(id_key)
        if not ident:
            raise _bad(id_key, "is required: the identity's value")
        ns_key = next((k for k in ns_keys if params.get(k)), ns_keys[0])
        namespace = params.get(ns_key)
        if not namespace:
            raise _bad(ns_key, "is required: the identity's namespace code (or nsId, its number)")
        return self._checked(namespace, ident, ns_key, id_key)

    @staticmethod
    def _checked(namespace: str, ident: str, ns_key: str, id_key: str) -> tuple[str, str]:
        code = canonical_code(namespace)
        problem = check_value(code, ident)
        if problem is not None:
            raise _bad(id_key, problem)
        return code, ident

    def _policy(self, actor: Actor, ident: str | None) -> dict[str, Any]:
        if ident:
            try:
                return self.policies.find(actor, ident)
            except NotFound:
                raise _bad("mergePolicyId", f"no merge policy {ident!r} in this sandbox") from None
        return self.policies.default_policy(actor)


def _identity_map(members: list[tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for namespace, ident in members:
        found.setdefault(namespace, []).append({"id": ident})
    return found


def _segment_membership(held: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """AEP's ``segmentMembership`` map: the "ups" namespace, each segment's status and when it changed."""
    return {
        "ups": {
            segment: {"status": status, "lastQualificationTime": _iso(since)}
            for segment, (status, since) in sorted(held.items())
        }
    }


def _fields(entity: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Only the top-level or dotted ``fields`` asked for (AEP's ``fields`` parameter), else everything."""
    if not fields:
        return entity
    kept: dict[str, Any] = {}
    for path in (p.strip() for p in fields.split(",") if p.strip()):
        source: Any = entity
        parts = path.split(".")
        for part in parts:
            source = source.get(part) if isinstance(source, dict) else None
        if source is None:
            continue
        target = kept
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = source
    return kept


def _limit(raw: str | None) -> int:
    if raw is None:
        return 10
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVENTS:
        raise _bad("limit", f"must be a whole number from 1 to {MAX_EVENTS}")
    return int(raw)


def _token(cursor: EventCursor) -> str:
    raw = orjson.dumps([cursor.ts_ms, cursor.event_id, cursor.dataset_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(token: str | None) -> EventCursor | None:
    if not token:
        return None
    try:
        ts, event_id, dataset_id = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return EventCursor(int(ts), str(event_id), str(dataset_id))
    except (ValueError, TypeError):
        raise _bad("start", "is not a page token this API gave (take it from _page.next)") from None


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad(path: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"path": path, "message": message}], code=CODE)


def _unknown(namespace: str, ident: str) -> NotFound:
    return NotFound(
        f"No profile has the identity {ident!r} in namespace {namespace!r} in this sandbox.",
        code="UPS-1404-404",
        report={"namespace": namespace, "id": ident},
    )


__all__ = ["BadRequest", "ProfileLookup"]
