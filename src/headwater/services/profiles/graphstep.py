"""One step of the identity graph over the profile store: new links in, the graph's decisions out.

The store holds identities and their clusters; the engine (engines/identity/graph.py) computes. A step
gathers every identity the links name and every member of the clusters they already belong to (bounded
by the graph limit), numbers them locally, lets the engine label the components under the limits, and
turns the labels into a :class:`GraphUpdate` the store applies in the projection's transaction.

Steps of one scope must not interleave (both would read the same clusters and merge them differently):
the projection runs them one at a time per process (runtime/profiles.py); across processes the store's
cursor check makes the loser of a race redo its step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from headwater.engines.identity.graph import Limits, assign_ids, components
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import GraphUpdate, IdentityKey, ProfileStore, RefusedLink


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


def _keys(namespaces: Sequence[str | None], values: Sequence[str | None]) -> list[IdentityKey]:
    return [(str(n), str(v)) for n, v in zip(namespaces, values, strict=True)]


def _reason(limits: Limits) -> str:
    unique = " or more than one identity of a unique namespace" if limits.unique_namespaces else ""
    return f"graph limit: a cluster holds at most {limits.max_identities} identities{unique}"
