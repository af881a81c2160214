"""Roles and the audit log: API clients carry a role; every write lands in ``audit_events``.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Clients made before roles existed keep what they could do: everything.
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="Admin"))
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("sandbox_name", sa.String(100), nullable=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("permission", sa.String(40), nullable=False),
        sa.Column("asset_type", sa.String(60), nullable=False),
        sa.Column("asset_id", sa.String(400), nullable=True),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(2000), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_events_org_at", "audit_events", ["org_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_events")
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("role")
