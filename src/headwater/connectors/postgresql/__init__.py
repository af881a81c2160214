"""The PostgreSQL source connector. ``config`` turns auth params into libpq keywords, ``client`` holds the
connection (outbound check, session, catalog, COPY), ``reader`` is the connector and its type mapping,
``errors`` maps psycopg failures onto ``connectors.errors``.

psycopg and pyarrow load with ``client`` and ``reader``, not with this package.
"""
