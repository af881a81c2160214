"""Initial metadata schema: organizations, sandboxes, API clients, resources and their references.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sandboxes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("org_id", "name", name="uq_sandboxes_org_name"),
    )
    op.create_table(
        "api_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sealed_secret", Json, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "resources",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("alt_id", sa.String(300), nullable=True),
        sa.Column("doc", Json, nullable=False),
        sa.Column("etag", sa.String(80), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("kind", "org_id", "sandbox_id", "id", name="uq_resources_kind_scope_id"),
        sa.UniqueConstraint("kind", "org_id", "sandbox_id", "alt_id", name="uq_resources_kind_scope_alt"),
    )
    op.create_index(
        "ix_resources_scope_created", "resources", ["kind", "org_id", "sandbox_id", "created_at", "seq"]
    )
    op.create_table(
        "resource_refs",
        sa.Column("org_id", sa.String(64), primary_key=True),
        sa.Column("sandbox_id", sa.String(64), primary_key=True),
        sa.Column("from_kind", sa.String(40), primary_key=True),
        sa.Column("from_id", sa.String(200), primary_key=True),
        sa.Column("to_kind", sa.String(40), primary_key=True),
        sa.Column("to_id", sa.String(200), primary_key=True),
    )
    op.create_index("ix_refs_target", "resource_refs", ["org_id", "sandbox_id", "to_kind", "to_id"])


def downgrade() -> None:
    op.drop_table("resource_refs")
    op.drop_table("resources")
    op.drop_table("api_clients")
    op.drop_table("sandboxes")
    op.drop_table("orgs")
