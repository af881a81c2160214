"""The run queue: flow runs waiting for a worker, claimed under a lease.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_queue",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("scheduled_for", sa.BigInteger, nullable=True),
        sa.Column("enqueued_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("flow_id", "scheduled_for", name="uq_run_queue_flow_slot"),
    )
    op.create_index("ix_run_queue_claim", "run_queue", ["state", "enqueued_at"])


def downgrade() -> None:
    op.drop_table("run_queue")
