"""One client connection: startup and authentication, then the simple and extended query protocols.

Contract: :meth:`Session.serve` returns when the client terminates or hangs up, or after a FATAL error
(authentication, a protocol violation); it never raises, and it closes the connection. A statement's
error is an ErrorResponse and the session goes on (inside a transaction block, PostgreSQL's way: the
block is aborted until ROLLBACK). Blocking work (authentication, queries) runs on the backend's
executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from headwater.pgwire import codec, params
from headwater.pgwire import types as pgtypes
from headwater.pgwire.catalog import is_catalog_query
from headwater.pgwire.codec import Body, ProtocolViolation
from headwater.pgwire.errors import FEATURE_NOT_SUPPORTED, PROTOCOL_VIOLATION, PgError, from_exception
from headwater.pgwire.sqltext import split_statements
from headwater.pgwire.statements import (
    REPORTED,
    Answer,
    SessionState,
    answer,
    normalize,
)

if TYPE_CHECKING:
    from headwater.pgwire.backend import Backend, Login

log = logging.getLogger("headwater.pgwire")
_CHUNK_ROWS = 2048  # rows encoded at a time; the client reads each chunk before the next (backpressure)
# Named statements and portals one session may keep: a portal holds its whole result.
MAX_STATEMENTS, MAX_PORTALS = 256, 16


@dataclass
class _Statement:
    sql: str
    oids: list[int]


@dataclass
class _Portal:
    sql: str
    result: Answer | None = None
    rows: Iterator[list[bytes | None]] | None = None
    sent: int = 0


@dataclass
class _Extended:
    statements: dict[str, _Statement] = field(default_factory=dict)
    portals: dict[str, _Portal] = field(default_factory=dict)
    failed: bool = False  # after an error, messages are skipped until Sync


@dataclass
class _Chunk:
    data: bytes
    rows: int


def _encode(rows: Iterator[list[bytes | None]], count: int) -> _Chunk:
    """The next ``count`` rows (fewer at the end) as DataRow messages."""
    messages = [codec.data_row(row) for row in itertools.islice(rows, count)]
    return _Chunk(b"".join(messages), len(messages))


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        backend: Backend,
        tls: ssl.SSLContext | None,
        startup_timeout: float,
    ) -> None:
        self.reader, self.writer, self.backend = reader, writer, backend
        self.tls, self.startup_timeout = tls, startup_timeout
        self.login: Login | None = None
        self.state = SessionState("", "")
        self.transaction = b"I"
        self.extended = _Extended()

    async def serve(self) -> None:
        try:
            if await asyncio.wait_for(self._startup(), self.startup_timeout):
                await self._messages()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away
        except TimeoutError:
            await self._fatal(PgError("08006", "The startup and authentication took too long."))
        except ProtocolViolation as exc:
            await self._fatal(PgError(PROTOCOL_VIOLATION, f"Protocol violation: {exc}."))
        except PgError as exc:
            await self._fatal(exc)
        except Exception:
            log.exception("pgwire: a session failed")
            await self._fatal(PgError("XX000", "Internal error; the server log has details."))
        finally:
            self.writer.close()

    async def _fatal(self, error: PgError) -> None:
        try:
            self.writer.write(codec.error_response(error.sqlstate, error.message, "FATAL", error.hint))
            await self.writer.drain()
        except (ConnectionError, RuntimeError, ssl.SSLError):
            pass

    # --- startup ---

    async def _startup(self) -> bool:
        """Negotiate TLS, read the startup packet, authenticate; False for a cancel request."""
        encrypted = False
        while True:
            code, body = await codec.read_startup(self.reader)
            if code == codec.SSL_REQUEST and self.tls is not None and not encrypted:
                self.writer.write(b"S")
                await self.writer.drain()
                await self.writer.start_tls(self.tls)
                encrypted = True
            elif code in (codec.SSL_REQUEST, codec.GSSENC_REQUEST):
                self.writer.write(b"N")  # no (more) encryption: the client goes on in plaintext or gives up
                await self.writer.drain()
            elif code == codec.CANCEL_REQUEST:
                return False  # cancelling a running query is not supported: the time bound stops it
            elif code != codec.PROTOCOL_3_0:
                raise PgError(
                    FEATURE_NOT_SUPPORTED, f"Unsupported frontend protocol {code >> 16}.{code & 0xFFFF}."
                )
            else:
                break
        if self.tls is not None and not encrypted and not self._peer_is_loopback():
            raise PgError(
                "28000", "This endpoint requires SSL beyond loopback: connect with sslmode=require."
            )
        startup = codec.startup_parameters(body)
        await self._authenticate(startup)
        return True

    def _peer_is_loopback(self) -> bool:
        peer = self.writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")

    async def _authenticate(self, startup: dict[str, str]) -> None:
        user = startup.get("user", "")
        database = startup.get("database") or user
        self.writer.write(codec.authentication(3))  # AuthenticationCleartextPassword: the token
        await self.writer.drain()
        kind, body = await codec.read_message(self.reader)
        if kind != b"p":
            raise ProtocolViolation(f"expected a password message, got {kind!r}")
        token = Body(body).cstring()
        self.login = await self.backend.call(self.backend.authenticate, token, user, database)
        self.state = SessionState(user, database)
        out = [codec.authentication(0)]
        reported = {
            **REPORTED,
            "application_name": startup.get("application_name", ""),
            "session_authorization": user,
        }
        out += [codec.parameter_status(name, value) for name, value in reported.items()]
        out += [codec.backend_key_data(secrets.randbelow(2**31), secrets.randbelow(2**31))]
        out += [codec.ready_for_query(b"I")]
        self.writer.write(b"".join(out))
        await self.writer.drain()

    # --- after startup ---

    async def _messages(self) -> None:
        while True:
            kind, body = await codec.read_message(self.reader)
            if kind == b"X":
                return
            if kind == b"Q":
                await self._simple(Body(body).cstring())
            elif kind in b"PBDECHS" and len(kind) == 1:
                await self._extended(kind, Body(body))
            elif kind == b"F":
                self._send_error(PgError(FEATURE_NOT_SUPPORTED, "Function calls are not supported."))
                await self._ready()
            elif kind in (b"d", b"c", b"f"):
                continue  # COPY messages outside COPY: ignored, as PostgreSQL does
            else:
                raise ProtocolViolation(f"unexpected message type {kind!r}")

    async def _ready(self) -> None:
        self.writer.write(codec.ready_for_query(self.transaction))
        await self.writer.drain()

    def _send_error(self, error: PgError) -> None:
        self.writer.write(codec.error_response(error.sqlstate, error.message, hint=error.hint))
        if self.transaction == b"T":
            self.transaction = b"E"

    async def _simple(self, sql: str) -> None:
        self.extended.portals.pop("", None)
        statements = split_statements(sql)
        if not statements:
            self.writer.write(codec.EMPTY_QUERY)
        for statement in statements:
            try:
                result = await self._execute(statement)
            except Exception as exc:
                error = from_exception(exc)
                if error.fatal:
                    raise error from exc
                self._send_error(error)
                break
            if result.table is not None:
                self.writer.write(codec.row_description(pgtypes.columns(result.table.schema)))
            await self._send_rows(_Portal(statement, result), 0)
        await self._ready()

    async def _execute(self, sql: str) -> Answer:
        """Run one statement: the endpoint's own answer, or the engine's (as the login, checked again)."""
        text = normalize(sql)
        first = text.split(None, 1)[0].upper() if text else ""
        if self.transaction == b"E" and first not in ("ROLLBACK", "ABORT", "COMMIT", "END"):
            raise PgError(
                "25P02", "current transaction is aborted, commands ignored until end of transaction block"
            )
        assert self.login is not None
        if text.upper().split() == ["SHOW", "TABLES"]:
            table = await self.backend.call(self.backend.tables, self.login)
            return Answer(f"SELECT {table.num_rows}", table)
        found = answer(text, self.state)
        if found is not None:
            if found.transaction is not None:
                if self.transaction == b"E" and first in ("COMMIT", "END"):
                    found.tag = "ROLLBACK"
                self.transaction = found.transaction
            return found
        if is_catalog_query(text):
            result = await self.backend.call(self.backend.catalog, self.login, text, self.state.database)
        else:
            result = await self.backend.call(self.backend.run, self.login, text)
        found = Answer(f"SELECT {result.table.num_rows}", result.table)
        if result.truncated:
            self.writer.write(
                codec.notice_response(
                    "01000",
                    f"The result was cut at {result.table.num_rows} rows (the query limits of this server); "
                    "filter, aggregate or add a LIMIT.",
                )
            )
        return found

    async def _send_rows(self, portal: _Portal, limit: int) -> bool:
        """DataRows of ``portal`` (at most ``limit``, 0: all), then CommandComplete; True when suspended."""
        result = portal.result
        assert result is not None
        for name, value in result.reported.items():
            self.writer.write(codec.parameter_status(name, value))
        if result.table is None:
            self.writer.write(codec.command_complete(result.tag))
            return False
        if portal.rows is None:
            portal.rows = pgtypes.text_rows(result.table)
        total, wanted = result.table.num_rows, limit or result.table.num_rows
        sent = 0
        while sent < wanted and portal.sent < total:
            # Values are encoded off the event loop (it serves the HTTP API too), a chunk at a time.
            count = min(_CHUNK_ROWS, wanted - sent)
            chunk = await asyncio.to_thread(_encode, portal.rows, count)
            self.writer.write(chunk.data)
            sent, portal.sent = sent + chunk.rows, portal.sent + chunk.rows
            await self.writer.drain()
            if chunk.rows < count:
                break
        if limit and portal.sent < total:
            self.writer.write(codec.PORTAL_SUSPENDED)
            return True
        tag = f"SELECT {portal.sent}" if result.tag.startswith("SELECT") else result.tag
        self.writer.write(codec.command_complete(tag))
        return False

    # --- the extended protocol ---

    async def _extended(self, kind: bytes, body: Body) -> None:
        if kind == b"S":
            self.extended.failed = False
            if self.transaction == b"I":
                self.extended.portals.clear()
            await self._ready()
            return
        if kind == b"H":
            await self.writer.drain()
            return
        if self.extended.failed:
            return  # skipped until Sync
        try:
            await self._extended_step(kind, body)
        except ProtocolViolation:
            raise
        except Exception as exc:
            error = from_exception(exc)
            if error.fatal:
                raise error from exc
            self._send_error(error)
            self.extended.failed = True

    async def _extended_step(self, kind: bytes, body: Body) -> None:
        if kind == b"P":
            self._parse(body)
        elif kind == b"B":
            self._bind(body)
        elif kind == b"D":
            await self._describe(body)
        elif kind == b"E":
            await self._execute_portal(body)
        elif kind == b"C":
            target, name = body.byte(), body.cstring()
            (self.extended.statements if target == b"S" else self.extended.portals).pop(name, None)
            self.writer.write(codec.CLOSE_COMPLETE)

    def _parse(self, body: Body) -> None:
        name, sql = body.cstring(), body.cstring()
        oids = [body.int32() for _ in range(body.int16())]
        if name and name in self.extended.statements:
            raise PgError("42P05", f'prepared statement "{name}" already exists')
        if name and len(self.extended.statements) >= MAX_STATEMENTS:
            raise PgError(
                "53400", f"A session keeps at most {MAX_STATEMENTS} prepared statements: close some."
            )
        self.extended.statements[name] = _Statement(sql, oids)
        self.writer.write(codec.PARSE_COMPLETE)

    def _bind(self, body: Body) -> None:
        portal, name = body.cstring(), body.cstring()
        formats = [body.int16() for _ in range(body.int16())]
        values: list[bytes | None] = []
        for _ in range(body.int16()):
            size = body.int32()
            values.append(None if size < 0 else body.take(size))
        results = [body.int16() for _ in range(body.int16())]
        statement = self._statement(name)
        if any(code != 0 for code in results):
            raise PgError(FEATURE_NOT_SUPPORTED, "Binary result format is not supported: results are text.")
        if portal and portal not in self.extended.portals and len(self.extended.portals) >= MAX_PORTALS:
            raise PgError("53400", f"A session keeps at most {MAX_PORTALS} open portals: close some.")
        self.extended.portals[portal] = _Portal(params.bind(statement.sql, statement.oids, values, formats))
        self.writer.write(codec.BIND_COMPLETE)

    def _statement(self, name: str) -> _Statement:
        found = self.extended.statements.get(name)
        if found is None:
            raise PgError("26000", f'prepared statement "{name}" does not exist')
        return found

    def _portal(self, name: str) -> _Portal:
        found = self.extended.portals.get(name)
        if found is None:
            raise PgError("34000", f'portal "{name}" does not exist')
        return found

    async def _describe(self, body: Body) -> None:
        target, name = body.byte(), body.cstring()
        if target == b"S":
            statement = self._statement(name)
            count = max(len(statement.oids), params.placeholder_count(statement.sql))
            oids = [
                (statement.oids[i] if i < len(statement.oids) else 0) or pgtypes.TEXT for i in range(count)
            ]
            self.writer.write(codec.parameter_description(oids))
            nulls = params.bind(statement.sql, oids, [None] * count, [])
            described = await self._describe_sql(nulls)
        else:
            portal = self._portal(name)
            if portal.result is None and normalize(portal.sql):
                portal.result = await self._execute(portal.sql)
            described = portal.result
        table = described.table if described is not None else None
        self.writer.write(
            codec.row_description(pgtypes.columns(table.schema)) if table is not None else codec.NO_DATA
        )

    async def _describe_sql(self, sql: str) -> Answer | None:
        """The answer's shape for a statement not yet bound: run with NULL parameters and no rows."""
        text = normalize(sql)
        if not text:
            return None
        first = text.split(None, 1)[0].upper()
        if first in ("SELECT", "WITH", "VALUES", "FROM", "TABLE"):
            try:
                return await self._execute(f"SELECT * FROM (\n{text}\n) AS described LIMIT 0")
            except Exception:
                return await self._execute(text)
        if first in ("SHOW", "DESCRIBE", "SUMMARIZE"):
            return await self._execute(text)
        return None  # SET, BEGIN...: no rows, and not run before their Execute

    async def _execute_portal(self, body: Body) -> None:
        name, limit = body.cstring(), body.int32()
        portal = self._portal(name)
        if not normalize(portal.sql):
            self.writer.write(codec.EMPTY_QUERY)
            return
        if portal.result is None:
            portal.result = await self._execute(portal.sql)
        await self._send_rows(portal, max(limit, 0))
