"""Alembic environment: always run online, on the connection Headwater hands over.

The metadata database holds the metadata store's tables and the profile serving store's: both are
targets, so that one history creates (and compares against) both.
"""

from alembic import context

from headwater.stores.metadata.tables import metadata
from headwater.stores.profiles.tables import metadata as profile_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=[metadata, profile_metadata], render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
