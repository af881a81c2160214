"""Lead the resources' unique constraints with id / alt_id.

With (kind, org_id, sandbox_id) leading, PostgreSQL's planner could pick a unique index for a
sandbox's ordered list when statistics were stale (a freshly grown table) and sort every row of the
sandbox; leading with the id leaves the ordered scope index as the only candidate for lists, while
lookups by id stay index-only.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_constraint("uq_resources_kind_scope_id", type_="unique")
        batch.drop_constraint("uq_resources_kind_scope_alt", type_="unique")
        batch.create_unique_constraint("uq_resources_id_scope", ["id", "kind", "org_id", "sandbox_id"])
        batch.create_unique_constraint("uq_resources_alt_scope", ["alt_id", "kind", "org_id", "sandbox_id"])


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_constraint("uq_resources_id_scope", type_="unique")
        batch.drop_constraint("uq_resources_alt_scope", type_="unique")
        batch.create_unique_constraint("uq_resources_kind_scope_id", ["kind", "org_id", "sandbox_id", "id"])
        batch.create_unique_constraint(
            "uq_resources_kind_scope_alt", ["kind", "org_id", "sandbox_id", "alt_id"]
        )
