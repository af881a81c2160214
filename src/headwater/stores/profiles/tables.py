"""Table definitions of the profile serving store.

They live in the metadata database and join its Alembic history (``stores/metadata/migrations``, from
revision 0008), whose environment targets this ``metadata`` beside the metadata store's own: one database,
one upgrade path. Rows name their organization and sandbox through ``profile_scopes.scope_key``, a small
integer, so that the millions of identity and fragment rows (and their indexes) do not repeat two long
strings each.

Documents (fragment attributes, event bodies) are JSON text written by orjson: the store never looks
inside them, segment jobs read them as text, and text costs no parse on either database.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# (org_id, sandbox_id) -> scope_key. Rows are never deleted: a process may hold a key in its cache.
profile_scopes = Table(
    "profile_scopes",
    metadata,
    Column("scope_key", Integer, primary_key=True, autoincrement=True),
    Column("org_id", String(64), nullable=False),
    Column("sandbox_id", String(64), nullable=False),
    UniqueConstraint("org_id", "sandbox_id", name="uq_profile_scopes_scope"),
)

# Store-wide counters: "cluster_id", the last cluster id handed out; "transition_seq", the last segment
# transition's seq.
profile_counters = Table(
    "profile_counters",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Identity -> its cluster. SQLite keeps the rows in the key's b-tree (small rows, looked up by key), and
# the cluster index then covers a members query.
profile_identities = Table(
    "profile_identities",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("namespace", String(100), primary_key=True),
    Column("id", String(1000), primary_key=True),
    Column("cluster_id", BigInteger, nullable=False),
    Column("first_seen_ms", BigInteger, nullable=False),
    Index("ix_profile_identities_cluster", "scope_key", "cluster_id"),
    sqlite_with_rowid=False,
)

# Where each identity was seen: per dataset, each identity of a record beside the record's anchor (its
# primary identity, else its first; the anchor beside itself). The rows with anchor != identity are the
# graph's accepted links; an identity whose link the graph refused is kept beside itself only. A
# dataset's rewrite (or deletion) removes its rows that the rewrite did not see again (``generation``,
# the lake snapshot of the step that last wrote the row), and the graph splits where they held it
# together (services/profiles/graphstep.py ``split``).
profile_links = Table(
    "profile_links",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("dataset_id", String(200), primary_key=True),
    Column("namespace", String(100), primary_key=True),
    Column("id", String(1000), primary_key=True),
    Column("anchor_namespace", String(100), primary_key=True),
    Column("anchor_id", String(1000), primary_key=True),
    Column("generation", BigInteger, nullable=False),
    Index("ix_profile_links_identity", "scope_key", "namespace", "id"),
    sqlite_with_rowid=False,
)

# Links the graph refused (its limits), newest last; listed newest first.
profile_refused_links = Table(
    "profile_refused_links",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("scope_key", Integer, nullable=False),
    Column("ns_a", String(100), nullable=False),
    Column("id_a", String(1000), nullable=False),
    Column("ns_b", String(100), nullable=False),
    Column("id_b", String(1000), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("dataset_id", String(200), nullable=True),
    Index("ix_profile_refused_links_scope", "scope_key", "seq"),
)

# Merges of clusters: every member of cluster_from moved to cluster_to.
profile_cluster_history = Table(
    "profile_cluster_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("scope_key", Integer, nullable=False),
    Column("cluster_from", BigInteger, nullable=False),
    Column("cluster_to", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_profile_cluster_history_to", "scope_key", "cluster_to"),
    Index("ix_profile_cluster_history_from", "scope_key", "cluster_from"),
)

# One fragment per record key: (dataset, primary identity). The key leads with the identity, as lookups
# ask for every dataset's fragment of a cluster's identities.
profile_fragments = Table(
    "profile_fragments",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("namespace", String(100), primary_key=True),
    Column("id", String(1000), primary_key=True),
    Column("dataset_id", String(200), primary_key=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("batch_id", String(200), nullable=False),
    Column("attributes", Text, nullable=False),
    Index("ix_profile_fragments_batch", "scope_key", "dataset_id", "batch_id"),
)

# Experience events, once per (dataset, XDM _id): a replayed batch writes nothing twice.
profile_events = Table(
    "profile_events",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("dataset_id", String(200), primary_key=True),
    Column("event_id", String(400), primary_key=True),
    Column("namespace", String(100), nullable=False),
    Column("id", String(1000), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("batch_id", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_profile_events_identity", "scope_key", "namespace", "id", "ts_ms"),
    Index("ix_profile_events_batch", "scope_key", "dataset_id", "batch_id"),
)

# How far each dataset's lake snapshots are projected, moved in the transaction that writes them.
profile_projection_cursors = Table(
    "profile_projection_cursors",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("dataset_id", String(200), primary_key=True),
    Column("snapshot_id", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Segment membership: one row per (segment, cluster) that ever qualified; status "realized" or "exited",
# since_ms the time of its last transition. The status index serves counts and member pages; the
# cluster index a profile's segmentMembership.
profile_segment_members = Table(
    "profile_segment_members",
    metadata,
    Column("scope_key", Integer, primary_key=True),
    Column("segment_id", String(200), primary_key=True),
    Column("cluster_id", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    Index("ix_profile_segment_members_status", "scope_key", "segment_id", "status", "cluster_id"),
    Index("ix_profile_segment_members_cluster", "scope_key", "cluster_id"),
)

# Every membership change, in the order activation delivers them. ``seq`` comes from the
# "transition_seq" row of profile_counters, taken in the writing transaction (that row lock orders the
# writers), so seq order is commit order: a reader that has seen seq n never later finds a smaller one.
profile_segment_transitions = Table(
    "profile_segment_transitions",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("scope_key", Integer, nullable=False),
    Column("segment_id", String(200), nullable=False),
    Column("cluster_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("profile", Text, nullable=False),
    Index("ix_profile_segment_transitions_segment", "scope_key", "segment_id", "seq"),
)
