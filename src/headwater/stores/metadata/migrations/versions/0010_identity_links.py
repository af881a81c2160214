"""Where each identity was seen, per dataset (stores/profiles/tables.py ``profile_links``): what lets a
dataset's rewrite or deletion take its identities and links out of the graph.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_links",
        sa.Column("scope_key", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.String(200), primary_key=True),
        sa.Column("namespace", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(1000), primary_key=True),
        sa.Column("anchor_namespace", sa.String(100), primary_key=True),
        sa.Column("anchor_id", sa.String(1000), primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_profile_links_identity", "profile_links", ["scope_key", "namespace", "id"])
    # The projection reads every profile-enabled dataset again, which writes their links (fragments and
    # events are upserted by key: nothing doubles).
    op.execute("DELETE FROM profile_projection_cursors")


def downgrade() -> None:
    op.drop_table("profile_links")
