"""The partitions of a batch run read by several workers (tables.py ``run_partitions``).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_partitions",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output", sa.JSON, nullable=True),
    )
    op.create_index("ix_run_partitions_claim", "run_partitions", ["state", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_partitions_claim", "run_partitions")
    op.drop_table("run_partitions")
