"""Query Service's PostgreSQL wire endpoint: psql, psycopg and BI tools run SELECTs over a sandbox.

AEP's connection parameters: user ``{IMS org id}@AdobeOrg``, password an access token (from
``/ims/token/v3``), database ``{sandbox}:all``. Protocol 3.0, written here (docs/pending/pgwire.md says
why no library): SSLRequest (answered ``S`` when a certificate is configured, else ``N``), cleartext
password authentication, the simple query protocol and the extended one (Parse/Bind/Describe/Execute/
Sync/Close, text format), results described with PostgreSQL type OIDs from their Arrow types.

    server.py      the asyncio listener, started with the HTTP server
    session.py     one connection: startup, authentication, simple and extended protocol
    backend.py     the platform behind it: the token's actor, Queries.run, SHOW TABLES
    statements.py  what the endpoint answers itself (SET, SHOW, BEGIN, version()) or refuses (catalogs)
    codec.py       message framing, bounded
    types.py       Arrow types as OIDs, values in text format
    params.py      bound parameters written into the SQL as literals (sqltext.py finds the placeholders)
    errors.py      SQLSTATEs of every error
"""
