"""Query Service's PostgreSQL wire endpoint (issue 16): the real ``psql`` and psycopg 3 connect as AEP
documents (user ``{org id}@AdobeOrg``, password an access token, database ``{sandbox}:all``) and run
SELECTs over the sandbox's datasets; other sandboxes and organizations see nothing of it; refusals are
ErrorResponses with SQLSTATEs and the connection keeps working.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from headwater.stores.metadata import Scope
from tests.conftest import make_settings
from tests.flows_helpers import profile_schema
from tests.support import ApiClient, LiveServer, start_server, token_for

PSQL = "/usr/bin/psql"
SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("n", pa.int64()),
        ("score", pa.float64()),
        ("active", pa.bool_()),
        ("seen", pa.timestamp("us", tz="UTC")),
        ("day", pa.date32()),
        ("person", pa.struct([("name", pa.string())])),
    ]
)
SEEN = dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own with the endpoint on (SQLite: the endpoint does not touch the store's SQL)."""
    from tests.support import free_port

    home = tmp_path_factory.mktemp("pgwire-home")
    settings = make_settings(home, pgwire_port=free_port(), query_memory_mb=128)
    server = start_server(settings)
    yield server
    server.stop()
    server.services.close()


@pytest.fixture(scope="module")
def token(live: LiveServer) -> str:
    return token_for(live.base_url, live.creds["apiKey"], live.creds["clientSecret"])


def _sandbox(live: LiveServer, token: str) -> ApiClient:
    c, name = live.creds, "pg" + uuid.uuid4().hex[:10]
    live.services.tenancy.create_sandbox(c["orgId"], name)
    return ApiClient(live.base_url, token, c["apiKey"], c["orgId"], name, c["tenantId"])


@pytest.fixture(scope="module")
def sandbox(live: LiveServer, token: str) -> Iterator[tuple[ApiClient, str]]:
    """A fresh sandbox with one dataset of three rows; yields the client and the dataset's table name."""
    with _sandbox(live, token) as api:
        created = api.post(
            "/data/foundation/catalog/dataSets",
            json={"name": "Wire people", "schemaRef": {"id": profile_schema(api)}},
        )
        assert created.status_code == 201, created.text
        dataset_id = str(created.json()[0].split("/")[-1])
        doc = api.get(f"/data/foundation/catalog/dataSets/{dataset_id}").json()[dataset_id]
        rows = pa.table(
            {
                "_id": ["p0", "p1", "p2"],
                "n": [0, 1, 2],
                "score": [0.5, 1.5, None],
                "active": [True, False, True],
                "seen": [SEEN, SEEN + dt.timedelta(hours=1), None],
                "day": [dt.date(2026, 5, 1), dt.date(2026, 5, 2), dt.date(2026, 5, 3)],
                "person": [{"name": "Ada O'Neil"}, {"name": "Bo"}, None],
            },
            schema=SCHEMA,
        )
        record = live.services.store.get_sandbox(api.org_id, api.sandbox_name)
        assert record is not None
        lake = live.services.lake
        table = lake.ensure_table(Scope(api.org_id, record.id), dataset_id, SCHEMA)
        lake.commit(table, lake.write_files(table, rows.to_batches(), SCHEMA), {"runId": "r-" + dataset_id})
        yield api, str(doc["tags"]["adobe/pqs/table"][0])


def _psql(live: LiveServer, token: str, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    port = str(live.settings.pgwire_port)
    env = {**os.environ, "PGPASSWORD": token, "PGCONNECT_TIMEOUT": "10"}
    command = [PSQL, "-X", "-h", "127.0.0.1", "-p", port, "-U", live.creds["orgId"], "-d", database, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def _connect(live: LiveServer, token: str, database: str, **options: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=live.settings.pgwire_port,
        user=live.creds["orgId"],
        password=token,
        dbname=database,
        connect_timeout=10,
        **options,
    )


def test_psql_runs_a_select_over_the_sandbox_dataset(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    if not Path(PSQL).exists():
        pytest.fail("psql is not installed (.ci/run installs Debian's postgresql-client)")
    api, table = sandbox
    sql = f"SELECT _id, n, person.name AS name, active FROM {table} ORDER BY n"
    aligned = _psql(live, token, f"{api.sandbox_name}:all", "-v", "ON_ERROR_STOP=1", "-c", sql)
    assert aligned.returncode == 0, aligned.stderr
    lines = [line.rstrip() for line in aligned.stdout.splitlines()]
    assert [c.strip() for c in lines[0].split("|")] == ["_id", "n", "name", "active"]
    assert [[c.strip() for c in line.split("|")] for line in lines[2:5]] == [
        ["p0", "0", "Ada O'Neil", "t"],
        ["p1", "1", "Bo", "f"],
        ["p2", "2", "", "t"],
    ]
    assert lines[5] == "(3 rows)"

    # The bare sandbox name works as the database too; unaligned output, several statements in one -c.
    unaligned = _psql(
        live, token, api.sandbox_name, "-A", "-t", "-c", f"SELECT count(*) FROM {table}; SHOW TABLES"
    )
    assert unaligned.returncode == 0, unaligned.stderr
    count, listed = unaligned.stdout.splitlines()[:2]
    assert count == "3" and listed.split("|")[:2] == [table, "table"]

    # psql's \dt lists the tables (its other \d commands: tests/test_pgwire_catalog.py).
    listed = _psql(live, token, api.sandbox_name, "-A", "-c", "\\dt")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[:3] == [
        "List of relations",
        "Schema|Name|Type|Owner",
        f"public|{table}|table|{live.creds['orgId']}",
    ]
    columns = _psql(live, token, api.sandbox_name, "-A", "-t", "-c", f"DESCRIBE {table}")
    assert [line.split("|")[:2] for line in columns.stdout.splitlines()][:2] == [
        ["_id", "VARCHAR"],
        ["n", "BIGINT"],
    ]


def test_psycopg_reads_typed_values_with_and_without_parameters(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    api, table = sandbox
    with _connect(live, token, f"{api.sandbox_name}:all") as conn:
        assert conn.info.server_version >= 150000
        row = conn.execute(
            f"SELECT n, score, active, seen, day, person, _id FROM {table} WHERE n = 0"
        ).fetchone()
        assert row == (0, 0.5, True, SEEN, dt.date(2026, 5, 1), {"name": "Ada O'Neil"}, "p0")
        assert isinstance(row[3], dt.datetime) and row[3].utcoffset() == dt.timedelta(0)

        found = conn.execute(
            f"SELECT _id, score FROM {table} WHERE n >= %s AND _id <> %s ORDER BY n", [1, "p2"]
        ).fetchall()
        assert found == [("p1", 1.5)]
        nulls = conn.execute(f"SELECT count(*) FROM {table} WHERE score IS NULL AND %s", [True]).fetchone()
        assert nulls == (1,)
        # A value is a value: quotes and a statement in it change nothing.
        sneaky = "x'); COPY (SELECT 1) TO '/tmp/pgwire-escape'; --"
        assert conn.execute("SELECT %s AS v, %s::date AS d", [sneaky, dt.date(2026, 1, 2)]).fetchone() == (
            sneaky,
            dt.date(2026, 1, 2),
        )
        # Past psycopg's prepare threshold the statement is prepared by name and bound again each time.
        for n in range(7):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE n < %s", [n]).fetchone() == (min(n, 3),)
        conn.commit()
        assert not Path("/tmp/pgwire-escape").exists()


def test_another_sandbox_or_organization_sees_nothing_and_a_bad_token_is_refused(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    api, table = sandbox
    with (
        _sandbox(live, token) as other,
        _connect(live, token, f"{other.sandbox_name}:all", autocommit=True) as conn,
    ):
        with pytest.raises(psycopg.errors.UndefinedTable, match="only the datasets of this sandbox"):
            conn.execute(f"SELECT * FROM {table}")
        assert conn.execute("SHOW TABLES").fetchall() == []

    tenancy = live.services.tenancy
    org = tenancy.create_org("Wire other org", "wire" + uuid.uuid4().hex[:8])
    tenancy.create_sandbox(org.id, api.sandbox_name)  # the same sandbox name, in their organization
    client_id, secret = tenancy.create_client(org.id, "wire other")
    theirs = token_for(live.base_url, client_id, secret)
    with pytest.raises(psycopg.OperationalError, match="not valid for the organization"):
        _connect(live, theirs, f"{api.sandbox_name}:all")  # their token, our organization as the user
    assert _login_error(live, theirs, f"{api.sandbox_name}:all")["C"] == "28000"
    their_login = {"user": org.id, "password": theirs, "host": "127.0.0.1", "port": live.settings.pgwire_port}
    with psycopg.connect(dbname=api.sandbox_name, autocommit=True, **their_login) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"SELECT * FROM {table}")
        assert conn.execute("SHOW TABLES").fetchall() == []

    for bad in ("not-a-token", token[:-4] + "AAAA"):
        with pytest.raises(psycopg.OperationalError, match="access token is not valid"):
            _connect(live, bad, f"{api.sandbox_name}:all")
        assert _login_error(live, bad, f"{api.sandbox_name}:all") | {"M": ""} == {
            "S": "FATAL",
            "V": "FATAL",
            "C": "28P01",
            "M": "",
        }
    by_psql = _psql(live, "not-a-token", api.sandbox_name, "-c", "SELECT 1")
    assert by_psql.returncode == 2 and "access token is not valid" in by_psql.stderr
    with pytest.raises(psycopg.OperationalError, match="does not exist in this organization"):
        _connect(live, token, "nosuchsandbox:all")
    assert _login_error(live, token, "nosuchsandbox:all")["C"] == "3D000"


def test_refused_statements_are_errors_and_the_connection_keeps_working(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    api, table = sandbox
    database = f"{api.sandbox_name}:all"
    with _connect(live, token, database, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="COPY statements are not allowed"):
            conn.execute(f"COPY {table} TO '/tmp/pgwire-escape.csv'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the datasets of this sandbox"):
            conn.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SELEC 1")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute(f"SELECT nosuch FROM {table}")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="HEADWATER_QUERY_MEMORY_MB"):
            conn.execute("SELECT list(i) FROM range(100000000) t(i)")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
    assert not Path("/tmp/pgwire-escape.csv").exists()

    # In a transaction block (psycopg's default), PostgreSQL's rule: aborted until ROLLBACK.
    with _connect(live, token, database) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("CREATE TABLE kept AS SELECT 1")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        conn.execute("SET application_name = 'wire test'")
        assert conn.execute("SHOW application_name").fetchone() == ("wire test",)
        assert conn.execute("SELECT 2").fetchone() == (2,)

    by_psql = _psql(live, token, database, "-c", "SELECT * FROM read_text('/etc/hostname')")
    assert by_psql.returncode == 1 and "ERROR:" in by_psql.stderr and "Traceback" not in by_psql.stderr


def test_a_malformed_packet_closes_only_its_own_connection(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    api, _ = sandbox
    port = live.settings.pgwire_port
    assert port is not None
    with _connect(live, token, f"{api.sandbox_name}:all", autocommit=True) as healthy:
        for packet in (
            struct.pack("!ii", 2_000_000_000, 196608),  # a startup packet "2 GB long"
            struct.pack("!ii", 12, 196608) + b"user",  # parameters without their terminators
            struct.pack("!ii", 8, 1234),  # an unknown protocol
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(packet)
                answer = _read_all(raw)
            assert answer[:1] == b"E" and b"FATAL" in answer
        # After authentication: a message whose length is past the bound.
        with _raw_login(live, token, f"{api.sandbox_name}:all") as victim:
            victim.sendall(b"Q" + struct.pack("!i", 64 * 1024 * 1024) + b"SELECT")
            answer = _read_all(victim)
            assert answer[:1] == b"E" and b"FATAL" in answer and b"08P01" in answer
        assert healthy.execute("SELECT 1").fetchone() == (1,)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _login_error(live: LiveServer, password: str, database: str) -> dict[str, str]:
    """The fields of the ErrorResponse that answers a login (libpq shows only the message)."""
    assert live.settings.pgwire_port is not None
    params = b"user\0" + live.creds["orgId"].encode() + b"\0database\0" + database.encode() + b"\0\0"
    with socket.create_connection(("127.0.0.1", live.settings.pgwire_port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        assert raw.recv(9) == b"R" + struct.pack("!ii", 8, 3)  # AuthenticationCleartextPassword
        secret = password.encode() + b"\0"
        raw.sendall(b"p" + struct.pack("!i", 4 + len(secret)) + secret)
        answer = _read_all(raw)
    assert answer[:1] == b"E", answer
    fields = answer[5:].split(b"\0")
    return {f[:1].decode(): f[1:].decode() for f in fields if f}


def test_with_a_certificate_clients_use_ssl_and_plaintext_stays_on_loopback(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.fakes.tls import SinkCerts
    from tests.support import free_port

    folder = tmp_path_factory.mktemp("pgwire-tls")
    SinkCerts.generate().write(folder)
    settings = make_settings(
        folder / "home",
        pgwire_port=free_port(),
        pgwire_tls_cert_file=str(folder / "server.pem"),
        pgwire_tls_key_file=str(folder / "server-key.pem"),
    )
    server = start_server(settings)
    try:
        token = token_for(server.base_url, server.creds["apiKey"], server.creds["clientSecret"])
        verified = {"sslmode": "verify-full", "sslrootcert": str(folder / "ca.pem")}
        with _connect(server, token, "prod:all", **verified) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 'over TLS' AS v").fetchone() == ("over TLS",)
        with _connect(server, token, "prod", sslmode="disable") as conn:  # loopback: plaintext accepted
            assert not conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone() == (1,)
        by_psql = _psql(server, token, "prod:all", "-A", "-t", "-c", "SELECT 'psql over TLS'")
        assert by_psql.returncode == 0 and by_psql.stdout.strip() == "psql over TLS", by_psql.stderr
    finally:
        server.stop()
        server.services.close()


def test_without_a_certificate_an_ssl_request_is_answered_no(live: LiveServer) -> None:
    assert live.settings.pgwire_port is not None
    with socket.create_connection(("127.0.0.1", live.settings.pgwire_port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"N"
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(
            host="127.0.0.1", port=live.settings.pgwire_port, sslmode="require", connect_timeout=10
        )


def test_the_extended_protocol_describes_statements_and_suspends_portals(
    live: LiveServer, token: str, sandbox: tuple[ApiClient, str]
) -> None:
    """What psycopg does not exercise: Describe of a statement (its parameters and columns before a Bind),
    Execute with a row limit (PortalSuspended, then the rest), Close, and an error skipping to Sync."""
    api, table = sandbox
    with _raw_login(live, token, f"{api.sandbox_name}:all") as raw:
        sql = f"SELECT _id, n FROM {table} WHERE n >= $1 ORDER BY n"
        raw.sendall(
            _msg(b"P", b"by_n\0" + sql.encode() + b"\0" + struct.pack("!hi", 1, 20))
            + _msg(b"D", b"Sby_n\0")
            + _msg(b"B", b"cur\0by_n\0" + struct.pack("!hhi", 0, 1, 1) + b"0" + struct.pack("!h", 0))
            + _msg(b"E", b"cur\0" + struct.pack("!i", 2))
            + _msg(b"E", b"cur\0" + struct.pack("!i", 0))
            + _msg(b"C", b"Pcur\0")
            + _msg(b"S")
        )
        got = _until_ready(raw)
        kinds = [kind for kind, _ in got]
        assert kinds == [b"1", b"t", b"T", b"2", b"D", b"D", b"s", b"D", b"C", b"3", b"Z"]
        assert got[1][1] == struct.pack("!hi", 1, 20)  # the parameter's type, as Parse declared it
        assert b"_id\0" in got[2][1] and struct.pack("!i", 20) in got[2][1]  # columns: text, int8
        assert [body[6:8] for kind, body in got if kind == b"D"] == [b"p0", b"p1", b"p2"]
        assert got[8][1] == b"SELECT 3\0"

        # An error skips to Sync; the session then goes on.
        raw.sendall(
            _msg(b"P", b"\0SELECT * FROM nosuch\0\0\0")
            + _msg(b"B", b"\0\0\0\0\0\0\0\0")
            + _msg(b"E", b"\0\0\0\0\0")
            + _msg(b"S")
            + _msg(b"Q", b"SELECT 7\0")
        )
        got = _until_ready(raw)
        assert [kind for kind, _ in got] == [b"1", b"2", b"E", b"Z"]
        assert b"C42P01\0" in got[2][1]
        assert [kind for kind, _ in _until_ready(raw)] == [b"T", b"D", b"C", b"Z"]


def _msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _raw_login(live: LiveServer, token: str, database: str) -> socket.socket:
    assert live.settings.pgwire_port is not None
    raw = socket.create_connection(("127.0.0.1", live.settings.pgwire_port), timeout=10)
    params = b"user\0" + live.creds["orgId"].encode() + b"\0database\0" + database.encode() + b"\0\0"
    raw.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    assert raw.recv(9) == b"R" + struct.pack("!ii", 8, 3)
    raw.sendall(_msg(b"p", token.encode() + b"\0"))
    assert _until_ready(raw)[0] == (b"R", struct.pack("!i", 0))  # AuthenticationOk
    return raw


def _until_ready(raw: socket.socket) -> list[tuple[bytes, bytes]]:
    """The server's messages up to and including the next ReadyForQuery."""
    messages: list[tuple[bytes, bytes]] = []
    while not messages or messages[-1][0] != b"Z":
        header = _exactly(raw, 5)
        (length,) = struct.unpack("!i", header[1:])
        messages.append((header[:1], _exactly(raw, length - 4)))
    return messages


def _exactly(raw: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = raw.recv(count - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT $1, $2", "SELECT 'a''b', (2)"),
        ("SELECT '$1', \"$1\", $1 -- $2\n", "SELECT '$1', \"$1\", 'a''b' -- $2\n"),
        ("SELECT /* $2 */ $tag$ $1 $tag$, $1", "SELECT /* $2 */ $tag$ $1 $tag$, 'a''b'"),
        ("SELECT x$1, $2::int", "SELECT x$1, (2)::int"),
    ],
)
def test_placeholders_outside_literals_and_comments_are_bound(sql: str, expected: str) -> None:
    from headwater.pgwire.params import bind
    from headwater.pgwire.types import INT8

    assert bind(sql, [0, INT8], [b"a'b", b"2"], []) == expected


def test_a_value_that_is_not_its_declared_type_is_refused() -> None:
    from headwater.pgwire.errors import PgError
    from headwater.pgwire.params import bind
    from headwater.pgwire.sqltext import split_statements
    from headwater.pgwire.types import BOOL, INT8

    with pytest.raises(PgError) as refused:
        bind("SELECT $1", [INT8], [b"1; DROP TABLE x"], [])
    assert refused.value.sqlstate == "22P02"
    with pytest.raises(PgError):
        bind("SELECT $1", [BOOL], [b"maybe"], [])
    assert split_statements("SELECT ';'; -- a comment\n SELECT 2;;") == [
        "SELECT ';'",
        " -- a comment\n SELECT 2",
    ]


def test_a_session_ends_when_its_token_expires(live: LiveServer, sandbox: tuple[ApiClient, str]) -> None:
    from tests.support import wait_until

    api, table = sandbox
    short, _ = live.services.tokens.issue(live.creds["apiKey"], live.creds["orgId"], lifetime=2)
    with _connect(live, short, f"{api.sandbox_name}:all", autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)

        def refused() -> psycopg.Error | None:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                return exc
            return None

        error = wait_until(refused, timeout=10, interval=0.2)
        assert error.sqlstate == "28P01" and "access token is not valid" in str(error)
        assert conn.closed or conn.broken
