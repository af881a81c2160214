"""One step of the identity graph over the profile store: new links in, the graph's decisions out.

The store holds identities and their clusters; the engine (engines/identity/graph.py) computes. A step
gathers every identity the links name and every member of the clusters they already belong to (bounded
by the graph limit), numbers them locally, lets the engine label the components under the limits, and
turns the labels into a :class:`GraphUpdate` the store applies in the projection's transaction.

Steps of one scope must not interleave (both would read the same clusters and merge them differently):
the projection runs them one at a time per process (runtime/profiles.py); across processes the store's
cursor check makes the loser of a race redo its step.

:func:`split` is the other direction: after a dataset's rewrite or deletion, the links it no longer holds
are taken out and the clusters they held together are recomputed from the links that remain (every
dataset's ``profile_links``), so a deleted record's identities leave the profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from headwater.engines.identity.graph import Ints, Limits, assign_ids, components
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import (
    GraphSplit,
    GraphUpdate,
    IdentityKey,
    IdentityLink,
    ProfileStore,
    RefusedLink,
    StoredLink,
)


@dataclass(frozen=True)
class GraphStep:
    update: GraphUpdate
    cluster: dict[IdentityKey, int]  # every identity of the step, with its cluster after it


def link(
    profiles: ProfileStore,
    scope: Scope,
    identities: pa.Table,
    links: pa.Table,
    limits: Limits,
    namespace_id: Callable[[str], int],
    at_ms: int,
    dataset_id: str,
) -> GraphStep:
    """The graph's decisions for ``identities`` (engines.identity.extract.SCHEMA) and ``links``
    (extract.LINK_SCHEMA), in arrival order."""
    keys = _keys(identities.column("namespace").to_pylist(), identities.column("id").to_pylist())
    if not keys:
        return GraphStep(GraphUpdate(), {})
    existing = profiles.clusters_of(scope, keys)
    touched = sorted(set(existing.values()))
    if touched:
        for cluster_id, namespace, ident in profiles.members(scope, touched):
            existing.setdefault((namespace, ident), cluster_id)
            keys.append((namespace, ident))
    nodes = list(dict.fromkeys(keys))
    number = {key: i for i, key in enumerate(nodes)}
    cluster = np.array([existing.get(k, -1) for k in nodes], np.int64)
    namespaces = np.array([namespace_id(k[0]) for k in nodes], np.int64)
    a = _keys(links.column("namespace_a").to_pylist(), links.column("id_a").to_pylist())
    b = _keys(links.column("namespace_b").to_pylist(), links.column("id_b").to_pylist())
    pairs = np.array([(number[x], number[y]) for x, y in zip(a, b, strict=True)], np.int64).reshape(-1, 2)
    labelled = components(len(nodes), pairs, cluster, namespaces, limits)
    first = profiles.next_cluster_ids(len(nodes))
    ids, _, merged = assign_ids(labelled, cluster, first)
    assignments = [
        (ns, ident, int(new)) for (ns, ident), old, new in zip(nodes, cluster, ids, strict=True) if old != new
    ]
    refused = [
        RefusedLink(a[i][0], a[i][1], b[i][0], b[i][1], _reason(limits), at_ms, dataset_id)
        for i in labelled.refused.tolist()
    ]
    update = GraphUpdate(assignments, [(int(x), int(y)) for x, y in merged.tolist()], refused)
    return GraphStep(update, {key: int(i) for key, i in zip(nodes, ids, strict=True)})


def seen(
    identities: pa.Table, anchors: dict[int, IdentityKey], refused: Sequence[RefusedLink]
) -> list[IdentityLink]:
    """Where a chunk's identities were seen: each beside its row's anchor (``anchors``: row -> anchor),
    or beside itself when the graph refused its link to the anchor."""
    refused_pairs = {((r.ns_a, r.id_a), (r.ns_b, r.id_b)) for r in refused}
    rows = identities.column("row").to_pylist()
    keys = _keys(identities.column("namespace").to_pylist(), identities.column("id").to_pylist())
    found: list[IdentityLink] = []
    for row, key in zip(rows, keys, strict=True):
        anchor = anchors.get(row)
        if anchor is None:
            continue
        if (anchor, key) in refused_pairs:
            anchor = key
        found.append(IdentityLink(key[0], key[1], anchor[0], anchor[1]))
    return found


@dataclass(frozen=True)
class Split:
    split: GraphSplit
    changed: set[int]  # the clusters whose members changed, before and after (to re-evaluate)


def split(
    profiles: ProfileStore,
    scope: Scope,
    dataset_id: str,
    keep: int | None,
    limits: Limits,
    namespace_id: Callable[[str], int],
) -> Split:
    """The graph after ``dataset_id``'s links of a generation other than ``keep`` (None: all) are gone.

    The clusters those links touch are recomputed from scratch over the links that remain: a component
    keeps the old id of its cluster when it is the largest part of it (ties: the smallest old id), the
    other parts get new ids, and identities no remaining link holds leave the graph."""
    stale = profiles.stale_links(scope, dataset_id, keep)
    if not stale:
        return Split(GraphSplit(), set())
    touched = {s.link.key for s in stale} | {s.link.anchor for s in stale}
    old_clusters = sorted(set(profiles.clusters_of(scope, list(touched)).values()))
    cluster_of = {(ns, ident): c for c, ns, ident in profiles.members(scope, old_clusters)}
    kept = [s.link for s in profiles.links_of(scope, list(cluster_of)) if not _gone(s, dataset_id, keep)]
    live = sorted({x.key for x in kept} & cluster_of.keys())
    removed = sorted(cluster_of.keys() - set(live))
    number = {key: i for i, key in enumerate(live)}
    pairs = np.array(
        [(number[x.anchor], number[x.key]) for x in kept if x.anchor != x.key and x.anchor in number],
        np.int64,
    ).reshape(-1, 2)
    namespaces = np.array([namespace_id(k[0]) for k in live], np.int64)
    fresh = np.full(len(live), -1, np.int64)
    label = components(len(live), pairs, fresh, namespaces, limits).label
    ids = _keep_ids(label, np.array([cluster_of[k] for k in live], np.int64), profiles)
    assignments = [
        (ns, ident, int(new))
        for (ns, ident), new in zip(live, ids, strict=True)
        if new != cluster_of[ns, ident]
    ]
    changed = set(old_clusters) | {int(i) for i in ids}
    return Split(GraphSplit(assignments, removed), changed)


def _gone(stored: StoredLink, dataset_id: str, keep: int | None) -> bool:
    return stored.dataset_id == dataset_id and (keep is None or stored.generation != keep)


def _keep_ids(label: Ints, old: Ints, profiles: ProfileStore) -> Ints:
    """Each node's cluster id after a split: per component, its old cluster's id if it is the largest
    part of that cluster (ties: the first component by label), else a new id. A component lies inside
    one old cluster (the links that remain were inside one); should it span several, it counts as part
    of the one with the smallest id."""
    if label.size == 0:
        return label
    k = int(label.max()) + 1
    size = np.bincount(label, minlength=k)
    of = np.full(k, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(of, label, old)
    order = np.lexsort((np.arange(k), -size, of))  # by old cluster, then largest first, then label
    first = order[np.r_[True, of[order][1:] != of[order][:-1]]]
    ids = np.full(k, -1, np.int64)
    ids[first] = of[first]
    unclaimed = np.flatnonzero(ids < 0)
    if unclaimed.size:
        start = profiles.next_cluster_ids(int(unclaimed.size))
        ids[unclaimed] = np.arange(start, start + unclaimed.size, dtype=np.int64)
    found: Ints = ids[label]
    return found


def _keys(namespaces: Sequence[str | None], values: Sequence[str | None]) -> list[IdentityKey]:
    return [(str(n), str(v)) for n, v in zip(namespaces, values, strict=True)]


def _reason(limits: Limits) -> str:
    unique = " or more than one identity of a unique namespace" if limits.unique_namespaces else ""
    return f"graph limit: a cluster holds at most {limits.max_identities} identities{unique}"
