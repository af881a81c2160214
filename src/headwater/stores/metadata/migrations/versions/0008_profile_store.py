"""The profile serving store (stores/profiles/tables.py): identities and their clusters, refused links,
cluster merges, profile fragments, experience events and projection cursors, in the metadata database.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_scopes",
        sa.Column("scope_key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("org_id", "sandbox_id", name="uq_profile_scopes_scope"),
    )
    counters = op.create_table(
        "profile_counters",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "cluster_id", "value": 0}])
    op.create_table(
        "profile_identities",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("namespace", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(1000), primary_key=True),
        sa.Column("cluster_id", sa.BigInteger, nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_profile_identities_cluster", "profile_identities", ["scope_key", "cluster_id"])
    op.create_table(
        "profile_refused_links",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope_key", sa.Integer, nullable=False),
        sa.Column("ns_a", sa.String(100), nullable=False),
        sa.Column("id_a", sa.String(1000), nullable=False),
        sa.Column("ns_b", sa.String(100), nullable=False),
        sa.Column("id_b", sa.String(1000), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("dataset_id", sa.String(200), nullable=True),
    )
    op.create_index("ix_profile_refused_links_scope", "profile_refused_links", ["scope_key", "seq"])
    op.create_table(
        "profile_cluster_history",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope_key", sa.Integer, nullable=False),
        sa.Column("cluster_from", sa.BigInteger, nullable=False),
        sa.Column("cluster_to", sa.BigInteger, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_profile_cluster_history_to", "profile_cluster_history", ["scope_key", "cluster_to"])
    op.create_index(
        "ix_profile_cluster_history_from", "profile_cluster_history", ["scope_key", "cluster_from"]
    )
    op.create_table(
        "profile_fragments",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("namespace", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(1000), primary_key=True),
        sa.Column("dataset_id", sa.String(200), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_profile_fragments_batch", "profile_fragments", ["scope_key", "dataset_id", "batch_id"]
    )
    op.create_table(
        "profile_events",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(400), primary_key=True),
        sa.Column("namespace", sa.String(100), nullable=False),
        sa.Column("id", sa.String(1000), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("batch_id", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_profile_events_identity", "profile_events", ["scope_key", "namespace", "id", "ts_ms"])
    op.create_index("ix_profile_events_batch", "profile_events", ["scope_key", "dataset_id", "batch_id"])
    op.create_table(
        "profile_projection_cursors",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.String(200), primary_key=True),
        sa.Column("snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "profile_projection_cursors",
        "profile_events",
        "profile_fragments",
        "profile_cluster_history",
        "profile_refused_links",
        "profile_identities",
        "profile_counters",
        "profile_scopes",
    ):
        op.drop_table(table)
