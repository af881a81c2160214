"""Upgrade marks: one row per one-time upgrade step done (e.g. destination secrets sealed), so that
services starting later skip the step instead of scanning for work it already did.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upgrade_marks",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("done_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upgrade_marks")
