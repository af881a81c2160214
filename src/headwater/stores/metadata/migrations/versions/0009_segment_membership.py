"""Segment membership and its transitions (stores/profiles/tables.py), and the transitions' counter.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = sa.table("profile_counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))
    op.bulk_insert(counters, [{"name": "transition_seq", "value": 0}])
    op.create_table(
        "profile_segment_members",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("segment_id", sa.String(200), primary_key=True),
        sa.Column("cluster_id", sa.BigInteger, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_profile_segment_members_status",
        "profile_segment_members",
        ["scope_key", "segment_id", "status", "cluster_id"],
    )
    op.create_index(
        "ix_profile_segment_members_cluster", "profile_segment_members", ["scope_key", "cluster_id"]
    )
    op.create_table(
        "profile_segment_transitions",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("scope_key", sa.Integer, nullable=False),
        sa.Column("segment_id", sa.String(200), nullable=False),
        sa.Column("cluster_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_profile_segment_transitions_segment",
        "profile_segment_transitions",
        ["scope_key", "segment_id", "seq"],
    )


def downgrade() -> None:
    op.drop_table("profile_segment_transitions")
    op.drop_table("profile_segment_members")
    op.execute("DELETE FROM profile_counters WHERE name = 'transition_seq'")
