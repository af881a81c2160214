"""What a PostgreSQL connection says, checked and turned into libpq connection keywords.

Two auth specs (see ``connectors/postgresql/spec.json``):

- Connection String Based Authentication: ``connectionString``, a ``postgresql://`` URI or a libpq
  ``key=value`` string.
- Basic Authentication: ``server``, ``port`` (5432), ``database``, ``username``, ``password``,
  ``sslMode`` (prefer).

Only the keywords in :data:`ALLOWED_KEYWORDS` may be set: the others make libpq read files on the
Headwater server (``passfile``, ``sslkey``, ``service``, ...) or change the session Headwater relies on
(``options``). Connections are TCP only; a Unix socket path is refused.

Nothing here opens a connection; messages never contain the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwater.connectors.errors import InvalidSourceParams, SourceNotFound

ALLOWED_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "sslmode",
        "sslrootcert",  # only "system": the operating system's CA bundle
        "sslsni",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "channel_binding",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class ConnectionParams:
    keywords: dict[str, str]  # libpq keywords, password included: never log or show them

    @property
    def secrets(self) -> list[str]:
        password = self.keywords.get("password")
        return [password] if password else []

    def endpoints(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs libpq will try, in order."""
        hosts = self.keywords.get("host", "").split(",")
        ports = self.keywords.get("port", "5432").split(",")
        if len(ports) == 1:
            ports = ports * len(hosts)
        if len(ports) != len(hosts):
            raise InvalidSourceParams("The connection names more hosts than ports, or the reverse.")
        out = []
        for host, port in zip(hosts, ports, strict=True):
            if not host.strip() or host.strip().startswith(("/", "@")):
                raise InvalidSourceParams(
                    "Give the PostgreSQL server's host name or address: Unix sockets are not supported."
                )
            out.append((host.strip(), _port(port or "5432")))
        return out


def connection_params(auth: dict[str, Any]) -> ConnectionParams:
    """The libpq keywords for ``auth``; :class:`InvalidSourceParams` if they are incomplete or unsafe."""
    if auth.get("connectionString"):
        keywords = _from_connection_string(str(auth["connectionString"]))
    elif auth.get("server"):
        keywords = _from_fields(auth)
    else:
        raise InvalidSourceParams(
            "The connection needs a connectionString, or server, database and username: fix auth.params."
        )
    unsupported = sorted(set(keywords) - ALLOWED_KEYWORDS)
    if unsupported:
        raise InvalidSourceParams(f"Connection parameters {', '.join(unsupported)} are not supported.")
    if keywords.get("sslrootcert", "system") != "system":
        raise InvalidSourceParams("sslrootcert may only be 'system' (the server's trusted CA bundle).")
    if keywords.get("sslmode", "prefer") not in SSL_MODES:
        raise InvalidSourceParams(f"sslmode must be one of {', '.join(SSL_MODES)}.")
    for required, label in (("host", "a host"), ("dbname", "a database"), ("user", "a username")):
        if not keywords.get(required):
            raise InvalidSourceParams(f"The connection needs {label}: fix auth.params.")
    params = ConnectionParams(keywords)
    params.endpoints()
    return params


def _from_connection_string(text: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parsed = conninfo_to_dict(text)
    except Exception:  # libpq's parse errors quote the string, password included
        raise InvalidSourceParams(
            "connectionString is not a PostgreSQL URI (postgresql://user:password@host:5432/db) or "
            "a key=value string."
        ) from None
    return {key: str(value) for key, value in parsed.items() if value is not None}


def _from_fields(auth: dict[str, Any]) -> dict[str, str]:
    keywords = {
        "host": str(auth.get("server", "")),
        "port": str(auth.get("port") or 5432),
        "dbname": str(auth.get("database") or ""),
        "user": str(auth.get("username") or ""),
        "sslmode": str(auth.get("sslMode") or "prefer"),
    }
    if auth.get("password"):
        keywords["password"] = str(auth["password"])
    return keywords


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise InvalidSourceParams(f"Port {value!r} is not a TCP port (1-65535).")
    return port


def table_name_parts(name: str) -> tuple[str, str]:
    """``(schema, table)`` for ``schema.table`` or ``table`` (schema public), read as PostgreSQL reads
    identifiers: double-quoted parts verbatim (``""`` is a quote), unquoted parts folded to lower case."""
    parts: list[str] = []
    rest = name.strip()
    while True:
        if rest.startswith('"'):
            part, rest = _quoted(rest, name)
        else:
            end = len(rest) if "." not in rest else rest.index(".")
            part, rest = rest[:end].strip().lower(), rest[end:]
        if not part:
            raise SourceNotFound(f"{name!r} is not a table name: use schema.table.")
        parts.append(part)
        if not rest:
            break
        if not rest.startswith("."):
            raise SourceNotFound(f"{name!r} is not a table name: use schema.table.")
        rest = rest[1:]
    if len(parts) > 2:
        raise SourceNotFound(f"{name!r} is not a table name: use schema.table.")
    return ("public", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _quoted(text: str, name: str) -> tuple[str, str]:
    out = []
    i = 1
    while True:
        j = text.find('"', i)
        if j < 0:
            raise SourceNotFound(f"{name!r} has an unclosed quote.")
        out.append(text[i:j])
        if text.startswith('""', j):
            out.append('"')
            i = j + 2
            continue
        return "".join(out), text[j + 1 :]
