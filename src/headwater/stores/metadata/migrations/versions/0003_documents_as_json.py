"""Store documents as json, not jsonb, on PostgreSQL.

Headwater never queries inside documents (filters run in Python), so jsonb's parsing on every write buys
nothing, and its key reordering made responses differ between backends: a flow's ``scheduleParams``
came back ``{"interval","frequency","startTime"}`` on PostgreSQL and in the client's order on SQLite.
SQLite is unchanged (both types are text there).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (("resources", "doc"), ("api_clients", "sealed_secret"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
