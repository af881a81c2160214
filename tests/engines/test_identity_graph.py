"""Connected components of the identity graph under limits, checked against brute-force references."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from headwater.engines.identity.graph import (
    ClusterIndex,
    Limits,
    apply_links,
    assign_ids,
    components,
)

CRM, EMAIL, DEVICE = 1, 6, 20914
NO_LIMIT = Limits(max_identities=10**9)


def canonical(label: np.ndarray) -> np.ndarray:
    """The partition ``label`` describes, numbered by first occurrence (equal partitions, equal arrays)."""
    _, first, inverse = np.unique(label, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def bfs_partition(n: int, links: np.ndarray) -> np.ndarray:
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for a, b in links.tolist():
        adjacent[a].append(b)
        adjacent[b].append(a)
    label = [-1] * n
    for start in range(n):
        if label[start] >= 0:
            continue
        label[start] = start
        queue = deque([start])
        while queue:
            for nxt in adjacent[queue.popleft()]:
                if label[nxt] < 0:
                    label[nxt] = start
                    queue.append(nxt)
    return canonical(np.array(label))


def sequential(n: int, links: np.ndarray, cluster: np.ndarray, namespace: np.ndarray, limits: Limits):
    """The refusal semantics spelled out: links one by one, sets as Python sets of nodes."""
    sets: dict[int, frozenset[int]] = {}
    for c in set(cluster.tolist()) - {-1}:
        members = frozenset(np.flatnonzero(cluster == c).tolist())
        sets.update(dict.fromkeys(members, members))
    for i in range(n):
        sets.setdefault(i, frozenset([i]))

    def breaks(nodes: frozenset[int]) -> bool:
        held = [namespace[i] for i in nodes if namespace[i] in limits.unique_namespaces]
        return len(nodes) > limits.max_identities or len(held) != len(set(held))

    refused = []
    for index, (a, b) in enumerate(links.tolist()):
        if sets[a] is sets[b] or sets[a] == sets[b]:
            continue
        union = sets[a] | sets[b]
        if breaks(union):
            refused.append(index)
            continue
        sets.update(dict.fromkeys(union, union))
    label = np.array([min(sets[i]) for i in range(n)])
    return canonical(label), np.array(refused, np.int64)


def random_graph(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return rng.integers(0, n, size=(m, 2)).astype(np.int64)


def test_a_chain_and_a_pair_make_two_components_and_a_loner_stays_alone() -> None:
    links = np.array([[0, 1], [1, 2], [3, 4], [5, 5]])
    update = components(6, links, np.full(6, -1), np.zeros(6, np.int64), Limits())
    assert canonical(update.label).tolist() == [0, 0, 0, 1, 1, 2]
    assert sorted(set(update.label.tolist())) == [0, 1, 2]
    assert update.refused.size == 0


def test_no_links_and_no_nodes() -> None:
    empty = np.empty((0, 2), np.int64)
    assert components(3, empty, np.full(3, -1), np.zeros(3, np.int64), Limits()).label.size == 3
    assert components(0, empty, np.empty(0, np.int64), np.empty(0, np.int64), Limits()).label.size == 0


def test_links_outside_the_nodes_are_refused_loudly() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2"):
        components(3, np.array([[0, 3]]), np.full(3, -1), np.zeros(3, np.int64), Limits())
    with pytest.raises(ValueError, match="one value per node"):
        components(3, np.array([[0, 1]]), np.full(2, -1), np.zeros(3, np.int64), Limits())


def shared_device(people: int) -> tuple[int, np.ndarray, np.ndarray]:
    """``people`` persons (CRMID 2i linked to email 2i+1), and one device (the last node) linked to
    every person's email, in person order."""
    n = 2 * people + 1
    device = n - 1
    own = np.stack([np.arange(0, 2 * people, 2), np.arange(1, 2 * people, 2)], axis=1)
    shared = np.stack([np.full(people, device), np.arange(1, 2 * people, 2)], axis=1)
    namespace = np.tile([CRM, EMAIL], people + 1)[:n]
    namespace[device] = DEVICE
    return n, np.concatenate([own, shared]), namespace


def test_a_device_shared_by_a_thousand_people_does_not_merge_them() -> None:
    n, links, namespace = shared_device(1000)
    update = components(n, links, np.full(n, -1), namespace, Limits(max_identities=50))
    sizes = np.bincount(update.label)
    assert sizes.max() <= 50
    # The device (1) joins person 0 (2), then 23 more people fit: 1 + 24 * 2 = 49; 976 links refused.
    assert sizes.max() == 49
    assert update.refused.tolist() == list(range(1000 + 24, 2000))
    expected_label, expected_refused = sequential(n, links, np.full(n, -1), namespace, Limits(50))
    assert (canonical(update.label) == expected_label).all()
    assert (update.refused == expected_refused).all()


def test_two_crmids_never_share_a_cluster() -> None:
    n, links, namespace = shared_device(1000)
    limits = Limits(max_identities=50, unique_namespaces=frozenset({CRM}))
    update = components(n, links, np.full(n, -1), namespace, limits)
    assert update.refused.tolist() == list(range(1001, 2000))
    crm = namespace == CRM
    assert np.bincount(update.label[crm]).max() == 1
    assert np.bincount(update.label).max() == 3


@pytest.mark.parametrize("seed", range(20))
def test_without_limits_components_are_the_bfs_partition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    links = random_graph(rng, n, int(rng.integers(0, 2 * n)))
    update = components(n, links, np.full(n, -1), np.zeros(n, np.int64), NO_LIMIT)
    assert (canonical(update.label) == bfs_partition(n, links)).all()
    assert update.label.max() + 1 == len(set(update.label.tolist()))
    assert update.refused.size == 0


@pytest.mark.parametrize("seed", range(20))
def test_incremental_equals_full_recomputation_when_no_limit_is_hit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 300))
    links = random_graph(rng, n, int(rng.integers(1, 2 * n)))
    cut = int(rng.integers(0, len(links) + 1))
    index = ClusterIndex(np.full(n, -1, np.int64), np.zeros(n, np.int64))
    for batch in (links[:cut], links[cut:]):
        applied = apply_links(index, batch, NO_LIMIT, identities=np.arange(n))
        assert applied.refused.size == 0
        index.apply(applied)
    assert (canonical(index.cluster) == bfs_partition(n, links)).all()


@pytest.mark.parametrize("seed", range(30))
def test_with_limits_refusals_follow_arrival_order(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(2, 120))
    links = random_graph(rng, n, int(rng.integers(1, 2 * n)))
    namespace = rng.choice([CRM, EMAIL, DEVICE], size=n, p=[0.2, 0.5, 0.3]).astype(np.int64)
    limits = Limits(max_identities=int(rng.integers(2, 12)), unique_namespaces=frozenset({CRM}))
    update = components(n, links, np.full(n, -1), namespace, limits)
    expected_label, expected_refused = sequential(n, links, np.full(n, -1), namespace, limits)
    assert (canonical(update.label) == expected_label).all()
    assert update.refused.tolist() == expected_refused.tolist()
    assert update.label.max() + 1 == len(set(update.label.tolist()))
    assert np.bincount(update.label).max() <= limits.max_identities
    assert np.bincount(update.label[namespace == CRM]).max(initial=0) <= 1


@pytest.mark.parametrize("seed", range(20))
def test_incremental_with_limits_equals_one_pass_in_the_same_order(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(2, 150))
    links = random_graph(rng, n, int(rng.integers(1, 2 * n)))
    namespace = rng.choice([CRM, EMAIL], size=n, p=[0.3, 0.7]).astype(np.int64)
    limits = Limits(max_identities=int(rng.integers(2, 10)), unique_namespaces=frozenset({CRM}))
    cuts = np.sort(rng.integers(0, len(links) + 1, size=3))
    index = ClusterIndex(np.full(n, -1, np.int64), namespace)
    refused = []
    for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), len(links)], strict=True):
        applied = apply_links(index, links[start:stop], limits, identities=np.arange(n))
        refused += (applied.refused + start).tolist()
        index.apply(applied)
    expected_label, expected_refused = sequential(n, links, np.full(n, -1), namespace, limits)
    assert (canonical(index.cluster) == expected_label).all()
    assert refused == expected_refused.tolist()


def test_existing_clusters_are_never_split_and_one_over_a_lowered_limit_does_not_grow() -> None:
    cluster = np.array([5, 5, 5, 5, 9, -1])
    links = np.array([[3, 4], [4, 5]])
    update = components(6, links, cluster, np.zeros(6, np.int64), Limits(max_identities=3))
    label = canonical(update.label)
    assert label.tolist() == [0, 0, 0, 0, 1, 1]
    assert update.refused.tolist() == [0]


def test_assign_ids_keeps_the_smallest_existing_id_and_numbers_new_clusters_from_next_id() -> None:
    cluster = np.array([7, 7, 3, -1, -1, 12, -1])
    links = np.array([[1, 2], [3, 4]])
    update = components(7, links, cluster, np.zeros(7, np.int64), Limits())
    ids, next_id, merged = assign_ids(update, cluster, next_id=20)
    assert ids.tolist() == [3, 3, 3, 20, 20, 12, 21]
    assert next_id == 22
    assert merged.tolist() == [[7, 3]]


def test_apply_links_touches_only_the_clusters_it_links() -> None:
    n = 10
    index = ClusterIndex(np.full(n, -1, np.int64), np.zeros(n, np.int64))
    index.apply(apply_links(index, np.array([[0, 1], [2, 3], [4, 5], [6, 7]]), Limits()))
    before = index.cluster.copy()
    assert before.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]
    applied = apply_links(index, np.array([[1, 3], [8, 8]]), Limits())
    assert applied.nodes.tolist() == [0, 1, 2, 3, 8]
    assert applied.merged.tolist() == [[1, 0]]
    index.apply(applied)
    assert index.cluster.tolist() == [0, 0, 0, 0, 2, 2, 3, 3, 4, -1]
    assert index.next_id == 5
