"""Connected components of the identity graph, applied incrementally, under graph limits.

Identities are nodes numbered by the caller; links are pairs of nodes. A *cluster* is a connected
component with a persistent id. Three levels:

- :func:`components` labels the components after new links are added to existing clusters, refusing
  the links that would break a :class:`Limits`;
- :func:`assign_ids` turns those labels into persistent cluster ids (a component keeps the smallest
  existing id among its nodes) and says which existing ids were merged away;
- :func:`apply_links` is the caller's glue over a whole graph held as arrays (:class:`ClusterIndex`):
  it gathers the members of every cluster the new links touch, numbers them locally, and runs the two
  above. A store holding the graph in tables does the same with queries.

Existing clusters are never split: the nodes of one existing cluster stay together whatever the limits.

Refusal is in arrival order. Links apply in the order given; a link that would join two components
whose union breaks a limit is refused, and the others still apply. The computation has two paths:

- fast (every component the library finds is within the limits): :func:`scipy.sparse.csgraph.
  connected_components` over all links at once, and nothing is refused. That is exact, because limits
  are monotone: a component within the limits has every part of itself within them too, so whatever
  order its links came in, none would have been refused.
- ordered (only components that break a limit, which are rare): their links are replayed one by one in
  arrival order with a small union-find. A loop is necessary there: which link is refused depends on
  which came first (the 51st identity to join is the one refused), and no set operation over the whole
  component says that. The loop runs over those components only, so its cost is bounded by how much
  data breaks a limit, not by the size of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

Ints = NDArray[np.int64]
_NO_CLUSTER = np.iinfo(np.int64).max
_NONE: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Limits:
    """What a cluster may hold (AEP's graph limits and linking rules' unique namespaces).

    ``max_identities``: identities per cluster. ``unique_namespaces``: namespace ids of which a cluster
    holds at most one identity (two CRMIDs are two people, whatever links them).
    """

    max_identities: int = 50
    unique_namespaces: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Update:
    """``label``: each node's component after the update, 0..k-1. ``refused``: indices into the links
    given of those not applied, ascending."""

    label: Ints
    refused: Ints


class Assignment(NamedTuple):
    """``ids``: the persistent cluster id of each node. ``next_id``: the first id still unused.
    ``merged``: (r, 2) pairs (existing cluster id merged away, the cluster id it became), by old id."""

    ids: Ints
    next_id: int
    merged: Ints


def components(n_nodes: int, links: Ints, cluster: Ints, namespace: Ints, limits: Limits) -> Update:
    """The components of nodes ``0..n_nodes-1`` after ``links`` ((m, 2), in arrival order) are added.

    ``cluster`` gives each node's existing cluster id, -1 for a new identity: nodes sharing an id are
    already connected, and stay so. ``namespace`` gives each node's namespace id, for
    ``limits.unique_namespaces``. Links whose union would break ``limits`` are refused (module
    docstring), the others applied.
    """
    links = _check(n_nodes, links, cluster, namespace)
    if n_nodes == 0:
        return Update(np.empty(0, np.int64), np.empty(0, np.int64))
    label, k = _label(n_nodes, links, cluster)
    bad = _breaking(label, k, namespace, limits)
    if not bad.any():
        return Update(label, np.empty(0, np.int64))
    return _resolve(label, k, bad, links, cluster, namespace, limits)


def assign_ids(update: Update, cluster: Ints, next_id: int) -> Assignment:
    """Persistent cluster ids for the nodes of ``update``.

    A component keeps the smallest existing cluster id among its nodes; a component of new identities
    only gets ``next_id``, ``next_id + 1``, ... in the order of its label.
    """
    label = update.label
    k = int(label.max()) + 1 if label.size else 0
    smallest = np.full(k, _NO_CLUSTER, np.int64)
    known = cluster >= 0
    np.minimum.at(smallest, label[known], cluster[known])
    fresh = smallest == _NO_CLUSTER
    count = int(np.count_nonzero(fresh))
    smallest[fresh] = np.arange(next_id, next_id + count, dtype=np.int64)
    ids = smallest[label]
    moved = np.flatnonzero(known & (ids != cluster))
    old, first = np.unique(cluster[moved], return_index=True)  # an existing cluster moves whole
    merged = np.stack([old, ids[moved[first]]], axis=1)
    return Assignment(ids, next_id + count, merged)


@dataclass
class ClusterIndex:
    """A whole graph as arrays over global identity numbers ``0..N-1``: ``cluster`` (int64, -1 for an
    identity in no cluster yet), ``namespace`` (int64 namespace id), ``next_id`` (first unused id).

    :meth:`apply` writes an :class:`Applied` into the arrays, in place; :func:`apply_links` reads only.
    """

    cluster: Ints
    namespace: Ints
    next_id: int = 0

    def apply(self, applied: Applied) -> None:
        self.cluster[applied.nodes] = applied.ids
        self.next_id = applied.next_id


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_links` decided: the new cluster id of each of ``nodes`` (global numbers,
    ascending), the next unused id, the merged ids (as :class:`Assignment`), and the refused links
    (indices into the links given)."""

    nodes: Ints
    ids: Ints
    next_id: int
    merged: Ints
    refused: Ints


def apply_links(index: ClusterIndex, links: Ints, limits: Limits, identities: Ints | None = None) -> Applied:
    """New ``links`` ((m, 2) global identity numbers, arrival order) applied to ``index``, without
    changing it (:meth:`ClusterIndex.apply` does).

    ``identities`` (optional) are identities seen alone (a record with one identity): each gets a
    cluster if it has none. The members of every cluster the links touch take part, so the cost is in
    the links and those clusters (bounded by ``limits.max_identities``), plus one vectorized scan of
    ``index.cluster`` to find the members.
    """
    links = np.asarray(links, np.int64).reshape(-1, 2)
    seen = links.ravel() if identities is None else np.concatenate([links.ravel(), identities])
    # Boolean masks over the index instead of sorting: one vectorized pass over its arrays.
    # ``touched[-1]`` (index next_id) stays False, so identities with no cluster (-1) are not members.
    touched = np.zeros(index.next_id + 1, np.bool_)
    touched[index.cluster[seen]] = True
    touched[-1] = False
    taking = touched[index.cluster]
    taking[seen] = True
    nodes = np.flatnonzero(taking)
    local = np.searchsorted(nodes, links)
    cluster = index.cluster[nodes]
    update = components(nodes.size, local, cluster, index.namespace[nodes], limits)
    ids, next_id, merged = assign_ids(update, cluster, index.next_id)
    return Applied(nodes, ids, next_id, merged, update.refused)


def _check(n_nodes: int, links: Ints, cluster: Ints, namespace: Ints) -> Ints:
    links = np.asarray(links, np.int64).reshape(-1, 2)
    if cluster.shape != (n_nodes,) or namespace.shape != (n_nodes,):
        raise ValueError(f"cluster and namespace must have one value per node ({n_nodes})")
    if links.size and (links.min() < 0 or links.max() >= n_nodes):
        raise ValueError(f"links must name nodes 0..{n_nodes - 1}")
    return links


def _label(n_nodes: int, links: Ints, cluster: Ints) -> tuple[Ints, int]:
    """Components of the links plus the existing clusters (each node tied to its cluster's first)."""
    rows, cols = links[:, 0], links[:, 1]
    known = np.flatnonzero(cluster >= 0)
    if known.size:
        ties = _cluster_ties(known, cluster[known])
        rows, cols = np.concatenate([rows, ties[0]]), np.concatenate([cols, ties[1]])
    graph = coo_array((np.ones(rows.size, np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    k, label = connected_components(graph, directed=False)
    return label.astype(np.int64), int(k)


def _cluster_ties(nodes: Ints, ids: Ints) -> tuple[Ints, Ints]:
    """Edges joining each node to the first node of its cluster (a star per existing cluster)."""
    order = np.argsort(ids, kind="stable")
    nodes, ids = nodes[order], ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    first = np.repeat(nodes[starts], np.diff(np.r_[starts, ids.size]))
    return nodes, first


def _breaking(label: Ints, k: int, namespace: Ints, limits: Limits) -> NDArray[np.bool_]:
    """Per component: does it break a limit?"""
    bad: NDArray[np.bool_] = np.bincount(label, minlength=k) > limits.max_identities
    if limits.unique_namespaces:
        unique = np.array(sorted(limits.unique_namespaces), np.int64)
        held = np.isin(namespace, unique)
        if held.any():
            keys = label[held] * unique.size + np.searchsorted(unique, namespace[held])
            values, counts = np.unique(keys, return_counts=True)
            bad[values[counts > 1] // unique.size] = True
    return bad


def _resolve(
    label: Ints, k: int, bad: NDArray[np.bool_], links: Ints, cluster: Ints, namespace: Ints, limits: Limits
) -> Update:
    """Replays, in arrival order, the links of the components that break a limit (module docstring)."""
    nodes = np.flatnonzero(bad[label])
    order = np.flatnonzero(bad[label[links[:, 0]]])
    local = np.searchsorted(nodes, links[order])
    uf = _Ordered(cluster[nodes], namespace[nodes], limits)
    refused = [i for i, (a, b) in zip(order.tolist(), local.tolist(), strict=True) if not uf.union(a, b)]
    roots = uf.roots()
    label = label.copy()
    label[nodes] = _relabel(label[nodes], roots, k)
    return Update(label, np.array(refused, np.int64))


def _relabel(old: Ints, roots: Ints, k: int) -> Ints:
    """Labels for the parts of broken components: each component's first part keeps its old label,
    further parts get k, k+1, ... so labels stay 0..k'-1 without gaps."""
    parts, first, part_of = np.unique(roots, return_index=True, return_inverse=True)
    owner = old[first]
    order = np.argsort(owner, kind="stable")
    owners = owner[order]
    keeps = np.r_[True, owners[1:] != owners[:-1]]
    new = np.empty(parts.size, np.int64)
    new[order[keeps]] = owners[keeps]
    spare = order[~keeps]
    new[spare] = np.arange(k, k + spare.size, dtype=np.int64)
    return new[part_of]


class _Ordered:
    """Union-find over the nodes of the broken components, refusing unions that break the limits.

    Existing clusters start as one set each (they are never split); a set that already breaks a limit
    (the limits were lowered since) may not grow.
    """

    def __init__(self, cluster: Ints, namespace: Ints, limits: Limits) -> None:
        self.limits = limits
        parent = np.arange(cluster.size, dtype=np.int64)
        known = np.flatnonzero(cluster >= 0)
        if known.size:
            members, first = _cluster_ties(known, cluster[known])
            parent[members] = first
        size = np.bincount(parent, minlength=cluster.size)
        broken = size > limits.max_identities
        self.held: dict[int, set[int]] = {}
        unique = np.flatnonzero(np.isin(namespace, list(limits.unique_namespaces)))
        for root, ns in zip(parent[unique].tolist(), namespace[unique].tolist(), strict=True):
            held = self.held.setdefault(root, set())
            broken[root] |= ns in held
            held.add(ns)
        self.parent: list[int] = parent.tolist()
        self.size: list[int] = size.tolist()
        self.broken: list[bool] = broken.tolist()

    def roots(self) -> Ints:
        """The root of every node (pointer jumping over the parent array, vectorized)."""
        parent = np.array(self.parent, np.int64)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        """Joins the sets of a and b unless that breaks a limit; False when refused."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        if (
            self.broken[a]
            or self.broken[b]
            or self.size[a] + self.size[b] > self.limits.max_identities
            or not self.held.get(a, _NONE).isdisjoint(self.held.get(b, _NONE))
        ):
            return False
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        if b in self.held:
            self.held.setdefault(a, set()).update(self.held.pop(b))
        return True
