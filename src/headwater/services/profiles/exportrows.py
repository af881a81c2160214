"""The rows of a profile export: which profiles are exported, and each one as the record written.

:meth:`ExportRows.clusters` selects the profiles: the members of the plan's segments in the statuses it
names (``segment_members``, paged), or, with no segments, every profile with a fragment (and with only
events too, with ``emptyProfiles``). :meth:`ExportRows.rows` turns a chunk of them into records:

- the merged entity (``engines.profile_merge.merge`` of the profile's fragments under the job's merge
  policy), narrowed to ``fields`` when the job names some;
- ``identityMap``: every identity of the profile, always (an exported profile without its identities
  could not be told apart from another);
- ``segmentMembership``: ``{"ups": {segment: {"status", "lastQualificationTime"}}}`` for the exported
  segments (every segment the profile has a membership of, when the export names none);
- ``_id``: the profile's ``entityId`` (``hw`` and its cluster's number), as the lookup names it.

Membership is read again with the entities, and the filter applied to what is read then: a profile that
left a segment between the two reads is not exported as a member. Map fields come out of the profile
store as lists of pairs (how the lake's Arrow maps become JSON); they are turned back into objects where
the destination schema has a map, so that the rows conform to it. Fields the destination schema lacks are
left in the records: the schema's mapping drops them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from headwater.engines.profile_merge import merge
from headwater.services.profiles.exportplan import ExportPlan, SegmentFilter
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import Fragment, ProfileStore

PAGE = 50_000  # members read per query
Tree = dict[str, Any]  # field name -> subtree, or True for the whole field


@dataclass
class ExportedProfile:
    """One exported record, and the namespaces of its identities (for the job's metrics)."""

    record: dict[str, Any]
    namespaces: tuple[str, ...]


@dataclass
class Selection:
    """What a chunk of candidate profiles gave: the records, and how many were left out by the filter."""

    profiles: list[ExportedProfile] = field(default_factory=list)
    skipped: int = 0


class ExportRows:
    def __init__(self, profiles: ProfileStore) -> None:
        self.profiles = profiles

    def clusters(self, scope: Scope, plan: ExportPlan) -> list[int]:
        """The candidate profiles (clusters), ascending."""
        if not plan.segments:
            found = set(_cluster_ids(self.profiles.iter_fragments(scope)))
            if plan.empty_profiles:
                found.update(_cluster_ids(self.profiles.iter_events(scope)))
            return sorted(found)
        members: set[int] = set()
        for segment in plan.segments:
            for status in sorted(segment.statuses):
                members.update(self._members(scope, segment.segment_id, status))
        return sorted(members)

    def _members(self, scope: Scope, segment_id: str, status: str) -> Iterator[int]:
        after: int | None = None
        while True:
            page = self.profiles.segment_members(scope, segment_id, PAGE, after, status)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1]

    def rows(
        self,
        scope: Scope,
        plan: ExportPlan,
        clusters: Sequence[int],
        policy: dict[str, Any],
        target: pa.Schema,
    ) -> Selection:
        """The records of the ``clusters`` the plan exports (``target``: the destination's Arrow schema)."""
        members = self.profiles.members(scope, clusters)
        cluster_of = {(ns, ident): c for c, ns, ident in members}
        identities: dict[int, dict[str, list[dict[str, str]]]] = defaultdict(dict)
        for c, ns, ident in members:
            identities[c].setdefault(ns, []).append({"id": ident})
        fragments: dict[int, list[Fragment]] = defaultdict(list)
        for f in self.profiles.fragments_of(scope, list(cluster_of)):
            fragments[cluster_of[f.namespace, f.id]].append(f)
        held = self.profiles.memberships_of(scope, clusters)
        tree = _tree(plan.fields)
        out = Selection()
        for c in clusters:
            own = fragments.get(c, [])
            memberships = held.get(c, {})
            if not _wanted(plan, own, memberships):
                out.skipped += 1
                continue
            entity = _conform(merge(own, policy), target)
            record = _prune(entity, tree) if tree else entity
            record["identityMap"] = identities.get(c, {})
            exported = _exported(plan.segments, memberships)
            if exported:
                record["segmentMembership"] = {"ups": exported}
            else:
                record.pop("segmentMembership", None)
            record["_id"] = f"hw{c}"
            out.profiles.append(ExportedProfile(record, tuple(sorted(identities.get(c, {})))))
        return out


def _cluster_ids(batches: Iterable[pa.RecordBatch]) -> Iterator[int]:
    for batch in batches:
        yield from (int(c) for c in batch.column("cluster_id").to_pylist() if c is not None)


def _wanted(plan: ExportPlan, fragments: list[Fragment], held: dict[str, tuple[str, int]]) -> bool:
    """Whether the plan exports a profile with these fragments and memberships."""
    if not fragments and not plan.empty_profiles:
        return False
    if (
        plan.updated_after_ms is not None
        and max((f.ts_ms for f in fragments), default=0) <= plan.updated_after_ms
    ):
        return False
    if not plan.segments:
        return True
    return any(_member(plan, s, held.get(s.segment_id)) for s in plan.segments)


def _member(plan: ExportPlan, segment: SegmentFilter, membership: tuple[str, int] | None) -> bool:
    if membership is None or membership[0] not in segment.statuses:
        return False
    since = membership[1]
    if plan.qualified_from_ms is not None and since < plan.qualified_from_ms:
        return False
    return plan.qualified_to_ms is None or since <= plan.qualified_to_ms


def _exported(segments: Sequence[SegmentFilter], held: dict[str, tuple[str, int]]) -> dict[str, Any]:
    names = [s.segment_id for s in segments] if segments else sorted(held)
    return {
        name: {"status": held[name][0], "lastQualificationTime": _iso(held[name][1])}
        for name in names
        if name in held
    }


def _tree(fields: Sequence[str]) -> Tree:
    """The fields as a tree of names: ``person.name, person`` -> ``{"person": True}``."""
    tree: Tree = {}
    for path in fields:
        node = tree
        parts = path.split(".")
        for i, part in enumerate(parts):
            if node.get(part) is True:
                break
            if i == len(parts) - 1:
                node[part] = True
            else:
                node = node.setdefault(part, {})
    return tree


def _prune(value: Any, tree: Tree) -> Any:
    """Only the parts of ``value`` the tree names; through arrays of objects item by item."""
    if isinstance(value, list):
        return [_prune(item, tree) for item in value]
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for name, sub in tree.items():
        if name in value:
            kept = value[name] if sub is True else _prune(value[name], sub)
            if kept is not None:
                out[name] = kept
    return out


def _conform(value: Any, kind: pa.DataType | pa.Schema) -> Any:
    """``value`` with the pair lists where ``kind`` has a map turned into objects (recursively)."""
    if isinstance(kind, pa.Schema):
        return _conform_struct(value, {f.name: f.type for f in kind})
    if pa.types.is_map(kind):
        if isinstance(value, list) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
            value = {str(k): v for k, v in value}
        if isinstance(value, dict):
            return {k: _conform(v, kind.item_type) for k, v in value.items()}
        return value
    if pa.types.is_struct(kind):
        return _conform_struct(value, {f.name: f.type for f in kind})
    if pa.types.is_list(kind) and isinstance(value, list):
        return [_conform(v, kind.value_type) for v in value]
    return value


def _conform_struct(value: Any, children: dict[str, pa.DataType]) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: _conform(v, children[k]) if k in children else v for k, v in value.items()}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
