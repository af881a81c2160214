"""Run by the DuckDB of the side virtualenv (.venv-duckdb, `make install`): attach Headwater's Iceberg
REST catalog with DuckDB's own iceberg extension and print the people of one table as JSON.

argv[1]: JSON with ``id`` and ``secret`` (the API client's credentials, exchanged by DuckDB at the
catalog's OAuth2 token endpoint), ``uri`` (the catalog's base URL), ``warehouse`` (the sandbox) and
``table``. The extensions come from PyPI's duckdb-extension-* wheels, loaded from where they installed.
"""

import glob
import json
import site
import sys

import duckdb

args = json.loads(sys.argv[1])
con = duckdb.connect()
for name in ("httpfs", "avro", "iceberg"):
    pattern = f"duckdb_extension_{name}/extensions/v*/{name}.duckdb_extension"
    found = [path for folder in site.getsitepackages() for path in glob.glob(f"{folder}/{pattern}")]
    con.execute(f"LOAD '{found[0]}'")
con.execute(
    "CREATE SECRET headwater (TYPE iceberg, CLIENT_ID ?, CLIENT_SECRET ?, OAUTH2_SERVER_URI ?)",
    [args["id"], args["secret"], f"{args['uri']}/v1/oauth/tokens"],
)
con.execute(
    f"ATTACH '{args['warehouse']}' AS lake (TYPE iceberg, ENDPOINT '{args['uri']}', SECRET headwater)"
)
table = f'lake."{args["warehouse"]}"."{args["table"]}"'
rows = con.execute(f"SELECT _id, person.name.firstName, personalEmail.address FROM {table} ORDER BY _id")
print(json.dumps([list(row) for row in rows.fetchall()]))
