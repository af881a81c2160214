"""A PostgreSQL system catalog of the login's sandbox, so psql's ``\\d`` commands and the metadata queries
of drivers and BI tools (``pg_catalog``, ``information_schema``) answer from the sandbox's tables.

AEP's Query Service documents psql's ``\\d``, ``\\dt``, ``\\dn``, ``\\l``, ``\\dv``, ``\\dm``, ``\\di``,
``\\ds``, ``\\dE``, ``\\dS``, ``\\dT`` and ``\\df``. The engine (DuckDB) has a ``pg_catalog`` of its own, of
its own (empty) database, and cannot create objects in it, so a catalog query runs against an
emulated catalog instead:

- :func:`rewrite` turns the statement's ``pg_catalog.x`` and ``information_schema.x`` (and the bare
  names of the catalog's relations and functions) into this module's schemas ``hw_pg`` and ``hw_is``;
  PostgreSQL's regular-expression operators (``~``, ``!~``, ``~*``, ``!~*``, ``OPERATOR(pg_catalog.~)``)
  into ``regexp_matches``; casts to PostgreSQL's own types (``::pg_catalog.regclass``) into the engine's;
  ``COLLATE`` clauses away. Literals, quoted identifiers and comments are never touched.
- :func:`setup` fills those schemas on the query's connection: one relation per table of the sandbox
  (``pg_class``, ``pg_attribute``, ``information_schema.tables`` and ``columns``), its columns typed as
  the endpoint describes them in results (``types.type_oid``: a nested XDM field is ``json``), the
  schemas ``public``, ``pg_catalog`` and ``information_schema``, one database (the login's), the login's
  role, the types, and macros for the catalog functions psql calls. Catalogs of what Headwater has
  none of (indexes, constraints, policies, publications, inheritance, functions) exist, empty.

The statement itself is still one SELECT, checked, bounded and locked as any other (lake/query.py); it
sees the sandbox's own tables too. What the emulation does not cover (a function or relation of the
catalog not listed here, a ``::regclass`` cast of a table name) is an error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from headwater.lake.query import QueryError
from headwater.pgwire.catalogdata import (
    CATALOG_SCHEMA,
    INFORMATION,
    INFORMATION_SCHEMA,
    MACRO_READS,
    MACROS,
    RELATIONS,
    rows,
)
from headwater.pgwire.sqltext import quoted_end

if TYPE_CHECKING:
    import duckdb

_CATALOG_QUERY = re.compile(
    r"\b(pg_catalog|information_schema)\s*\.|\bpg_(class|namespace|attribute|type|database|roles|user|"
    r"settings|tables|views|proc|index|description|extension|constraint|am|matviews|stat_\w+)\b",
    re.IGNORECASE,
)

_CASTS = {  # PostgreSQL's own types a catalog query casts to, as the engine names them
    "regclass": "VARCHAR",
    "regtype": "VARCHAR",
    "regnamespace": "VARCHAR",
    "regproc": "VARCHAR",
    "regprocedure": "VARCHAR",
    "regrole": "VARCHAR",
    "text": "VARCHAR",
    "name": "VARCHAR",
    "char": "VARCHAR",
    "oid": "BIGINT",
    "int2": "SMALLINT",
    "int4": "INTEGER",
    "int8": "BIGINT",
    "bool": "BOOLEAN",
}


def is_catalog_query(sql: str) -> bool:
    """Whether ``sql`` reads PostgreSQL's catalog (``pg_catalog``, ``information_schema``, ``pg_class``)."""
    return _CATALOG_QUERY.search(_mask(sql)[0]) is not None


def _relation_names(ddl: str) -> list[str]:
    return re.findall(r"^(\w+)\(", ddl, re.MULTILINE)


_PG_RELATIONS = frozenset(_relation_names(RELATIONS))
_PG_NAMES = _PG_RELATIONS | frozenset(MACROS)
_IS_NAMES = frozenset(_relation_names(INFORMATION))
_LITERAL = "\x00{}\x00"
_ARRAY_LITERAL = re.compile(r"'\{([^{}'\"\\]*)\}'")
_MASKED = re.compile("\x00(\\d+)\x00")
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_OPERAND = rf"(?:{_IDENT}\s*\.\s*)*{_IDENT}"
_REGEX_OPERATOR = re.compile(
    rf"({_OPERAND})\s*(?:OPERATOR\s*\(\s*pg_catalog\s*\.\s*(!?~\*?)\s*\)|(!?~\*?))\s*(\x00\d+\x00)",
    re.IGNORECASE,
)
_COLLATE = re.compile(rf"\s+COLLATE\s+(?:{_IDENT}\s*\.\s*)?(?:{_IDENT}|\x00\d+\x00)", re.IGNORECASE)
_CAST = re.compile(rf"::\s*(?:pg_catalog\s*\.\s*)?({_IDENT})(\s*\[\s*\])?", re.IGNORECASE)
_QUALIFIED = re.compile(rf"\b(pg_catalog|information_schema)\s*\.\s*({_IDENT})", re.IGNORECASE)
_BARE = re.compile(r"(?<![\w.$])(pg_\w+)\b(?!\s*\.)", re.IGNORECASE)
_CAST_AS = re.compile(r"\bAS\s+(REG\w+|OID)(\s*\))", re.IGNORECASE)  # CAST(x AS REGCLASS)
_RENAMED = {"json_build_object": "json_object"}  # PostgreSQL's functions by the engine's names
_BARE_CALL = re.compile(r"(?<![\w.$])([A-Za-z_]\w*)(?=\s*\()")


def rewrite(sql: str) -> str:
    """``sql`` with the catalog's names turned into the emulated catalog's (see the module)."""
    masked, literals = _mask(sql)
    masked = _QUALIFIED.sub(_qualified, _operators_and_types(masked))
    masked = _BARE.sub(_bare, masked)
    masked = _BARE_CALL.sub(_bare_call, masked)
    return _MASKED.sub(lambda m: _literal(literals[int(m.group(1))]), masked)


def _operators_and_types(masked: str) -> str:
    """PostgreSQL's regular-expression operators, ``COLLATE`` clauses and casts, as the engine has them."""
    masked = _REGEX_OPERATOR.sub(_regex_call, masked)
    masked = _COLLATE.sub("", masked)
    masked = _CAST.sub(_cast, masked)
    return _CAST_AS.sub(lambda m: f"AS {_CASTS.get(m.group(1).lower(), m.group(1))}{m.group(2)}", masked)


def _literal(text: str) -> str:
    """A literal as the engine reads it: PostgreSQL's array literal ``'{0}'`` is DuckDB's ``'[0]'``."""
    found = _ARRAY_LITERAL.fullmatch(text)
    return f"'[{found.group(1)}]'" if found else text


def _mask(sql: str) -> tuple[str, list[str]]:
    """``sql`` with its literals and quoted identifiers replaced by numbered markers, comments by a
    blank; and the literals, by number (a quoted identifier keeps its quotes)."""
    out: list[str] = []
    literals: list[str] = []
    i, size = 0, len(sql)
    while i < size:
        ch = sql[i]
        if ch in "'\"":
            escapes = ch == "'" and i > 0 and sql[i - 1] in "eE" and _word_start(sql, i - 1)
            end = quoted_end(sql, i, ch, escapes)
            start = i - 1 if escapes else i
            if escapes:
                out.pop()  # the E of E'...' belongs to the literal
            literals.append(sql[start:end])
            out.append(_LITERAL.format(len(literals) - 1))
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = size if end < 0 else end
            out.append(" ")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = size if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out), literals


def _word_start(sql: str, at: int) -> bool:
    return at == 0 or not (sql[at - 1].isalnum() or sql[at - 1] == "_")


def _regex_call(match: re.Match[str]) -> str:
    operand, operator, pattern = match.group(1), match.group(2) or match.group(3), match.group(4)
    options = ", 'i'" if operator.endswith("*") else ""
    call = f"regexp_matches({operand}, {pattern}{options})"
    return f"NOT {call}" if operator.startswith("!") else call


def _cast(match: re.Match[str]) -> str:
    name, array = match.group(1), match.group(2) or ""
    return f"::{_CASTS.get(name.lower(), name)}{'[]' if array else ''}"


def _qualified(match: re.Match[str]) -> str:
    schema, name = match.group(1).lower(), match.group(2)
    if schema == "information_schema":
        return f"{INFORMATION_SCHEMA}.{name}"
    if name.lower() in _PG_NAMES:
        return f"{CATALOG_SCHEMA}.{name}"
    return name  # one of the engine's own functions under PostgreSQL's schema (unnest, upper, ...)


def _bare(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.lower() in _PG_NAMES:
        return f"{CATALOG_SCHEMA}.{name}"
    return name


def unknown_relations(sql: str) -> list[str]:
    """The catalog relations ``sql`` names that the emulated catalog does not have (``pg_catalog.x``
    not called as a function, ``information_schema.x``)."""
    masked, unknown = _operators_and_types(_mask(sql)[0]), set()
    for found in _QUALIFIED.finditer(masked):
        schema, name = found.group(1).lower(), found.group(2)
        if schema == "information_schema" and name.lower() not in _IS_NAMES:
            unknown.add(f"information_schema.{name}")
        called = re.match(r"\s*\(", masked[found.end() :]) is not None
        if schema == "pg_catalog" and not called and name.lower() not in _PG_RELATIONS:
            unknown.add(f"pg_catalog.{name}")
    return sorted(unknown)


def known_relations() -> str:
    """The emulated catalog's relations, for a message."""
    return (
        ", ".join(sorted(f"information_schema.{name}" for name in _IS_NAMES))
        + ", "
        + ", ".join(sorted(f"pg_catalog.{name}" for name in _relation_names(RELATIONS)))
    )


def reads_columns(rewritten: str) -> bool:
    """Whether the rewritten statement reads the tables' columns (``pg_attribute``,
    ``information_schema.columns``, ``relnatts``): only then are the tables' schemas loaded."""
    return _READS_COLUMNS.search(rewritten) is not None


_READS_COLUMNS = re.compile(
    rf"\b{CATALOG_SCHEMA}\.pg_attribute\b|\b{INFORMATION_SCHEMA}\.columns\b|\brelnatts\b", re.IGNORECASE
)


def plain_names(message: str) -> str:
    """An engine's message about a rewritten statement, with the catalog's names as the caller wrote them."""
    message = re.sub(rf"\b{CATALOG_SCHEMA}\.", "pg_catalog.", message)
    return re.sub(rf"\b{INFORMATION_SCHEMA}\.", "information_schema.", message)


def _bare_call(match: re.Match[str]) -> str:
    """A catalog function called without its schema (``format_type(...)``, ``current_database()``)."""
    name = match.group(1)
    if name.lower() in _RENAMED:
        return _RENAMED[name.lower()]
    return f"{CATALOG_SCHEMA}.{name}" if name.lower() in MACROS else name


class UnknownRelation(QueryError):
    """A catalog relation the emulated catalog does not have (SQLSTATE 42P01 on the wire)."""


def setup(
    original: str,
    sql: str,
    tables: Sequence[tuple[str, pa.Schema | None]],
    user: str,
    database: str,
    version: str,
) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """What fills the emulated catalog on the connection of ``sql`` (``original`` rewritten): ``tables``
    (name, schema or None when its dataset has no data yet) of the sandbox, ``user`` owning them, in
    ``database``; a relation the catalog does not have is an :class:`UnknownRelation` here.
    Only the relations and functions ``sql`` names are made (and the relations those functions read): a
    psql command's few queries each cost milliseconds, not the whole catalog."""
    named = {
        m.group(0).lower() for m in re.finditer(rf"\b(?:{CATALOG_SCHEMA}|{INFORMATION_SCHEMA})\.\w+", sql)
    }
    named |= {
        f"{CATALOG_SCHEMA}.{MACRO_READS[n.split('.', 1)[1]]}"
        for n in named
        if n.split(".", 1)[1] in MACRO_READS
    }

    unknown = unknown_relations(original)

    def fill(connection: duckdb.DuckDBPyConnection) -> None:
        if unknown:  # here, after the statement was checked: a CREATE is refused as one, first
            raise UnknownRelation(
                f"{', '.join(unknown)}: not in this endpoint's PostgreSQL catalog, which has "
                f"{known_relations()}."
            )
        for schema, ddl in ((CATALOG_SCHEMA, RELATIONS), (INFORMATION_SCHEMA, INFORMATION)):
            connection.execute(f"CREATE SCHEMA {schema}")
            for definition in re.split(r"\n(?=\w)", ddl.strip()):
                if f"{schema}.{definition.split('(', 1)[0]}".lower() in named:
                    connection.execute(f"CREATE TABLE {schema}.{definition}")
        values = {"user": _quote(user), "database": _quote(database), "version": _quote(version)}
        for name, body in MACROS.items():
            if f"{CATALOG_SCHEMA}.{name}" in named:
                connection.execute(f"CREATE MACRO {CATALOG_SCHEMA}.{name}{body.format(**values)}")
        for relation, found in rows(tables, user, database).items():
            if found and relation in named:
                _insert(connection, relation, found)

    return fill


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _insert(connection: duckdb.DuckDBPyConnection, relation: str, rows: list[dict[str, object]]) -> None:
    columns = [c[0] for c in connection.execute(f"DESCRIBE {relation}").fetchall()]
    data = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    connection.register("hw_rows", data)
    names = ", ".join(f'"{c}"' for c in columns)
    connection.execute(f"INSERT INTO {relation} ({names}) SELECT {names} FROM hw_rows")
    connection.unregister("hw_rows")
