"""A Salesforce org on 127.0.0.1 that speaks the real protocol, for tests and benchmarks.

Login: SOAP ``login()`` at ``POST /services/Soap/u/{v}`` (password = password + security token) and
OAuth 2.0 at ``POST /services/oauth2/token`` (password and client_credentials grants). REST:
``GET /services/data/v{v}/sobjects``, ``.../sobjects/{Object}/describe``, ``.../query?q=SOQL`` and
``.../query/{locator}-{offset}`` (the ``nextRecordsUrl`` pages; ``Sforce-Query-Options: batchSize=N``
is honoured, 200..2000, default 2000). Query results are snapshots: later changes do not move rows
between the pages of a running query.

    fake = SalesforceFake().start()                      # objects Contact and Account, one user, one app
    fake.add_object("Person", {"first_name": "string", "email": "email"})
    ids = fake.insert("Contact", [{"FirstName": "Ada"}], modified=datetime(2024, 1, 1, tzinfo=UTC))
    fake.generate("Contact", 100_000, start=t0, step=timedelta(milliseconds=10))
    fake.update("Contact", ids, {"Email": "a@x.org"}, modified=t1)  # stamps LastModifiedDate, SystemModstamp
    fake.delete("Contact", ids)
    fake.soap_auth() / fake.password_grant_auth() / fake.client_credentials_auth()   # connection auth params
    fake.instance_url = "http://169.254.169.254"         # what logins report as the instance (SSRF tests)

SOQL understood: ``SELECT f, ... FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n]`` where cond combines ``field op literal`` (``= != <> < <= > >=``) with AND, OR, NOT and
parentheses; literals are datetimes (unquoted, as SOQL requires: a quoted one is refused like the real
server does), dates, numbers, 'strings', true, false and null. Failure switches: see tests/fakes/oauth.py.
"""

from __future__ import annotations

import itertools
import re
import secrets
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.oauth import FakeService, form, json_response

ORG_ID = "00D000000000001AAA"
STANDARD_FIELDS = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
CONTACT_FIELDS = {
    "FirstName": "string",
    "LastName": "string",
    "Email": "email",
    "Phone": "phone",
    "Birthdate": "date",
    "HasOptedOutOfEmail": "boolean",
    "AccountId": "reference",
    "LeadSource": "picklist",
    "Description": "textarea",
    "Visits__c": "int",
    "Score__c": "double",
    "LifetimeValue__c": "currency",
    "Website__c": "url",
}
ACCOUNT_FIELDS = {
    "Name": "string",
    "Industry": "picklist",
    "NumberOfEmployees": "int",
    "AnnualRevenue": "currency",
}
NOT_NILLABLE = {"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "LastName", "Name"}
QUERY_PAGE_MAX = 2000


@dataclass
class SObject:
    name: str
    label: str
    key_prefix: str
    fields: dict[str, str]  # canonical name -> Salesforce type, in describe order
    queryable: bool = True
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # Id -> values in wire format
    # (api version, fields) -> Id -> (the row dict it was made from, its JSON). Query pages are joins
    # of these, so serving a page costs almost nothing once its records have been serialized (seeding
    # does it for the full field list).
    fragments: dict[tuple[str, tuple[str, ...]], dict[str, tuple[dict[str, Any], bytes]]] = field(
        default_factory=dict
    )
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _all: tuple[str, ...] = ()

    @property
    def all_fields(self) -> tuple[str, ...]:
        if len(self._all) != len(self.fields):
            self._all = tuple(self.fields)
        return self._all

    def canonical(self, name: str) -> str | None:
        lowered = name.lower()
        return next((f for f in self.fields if f.lower() == lowered), None)


@dataclass
class _Cursor:
    sobject: str
    fields: tuple[str, ...]
    rows: list[dict[str, Any]]


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SalesforceFake(FakeService):
    def __init__(self, api_version: str = "59.0") -> None:
        self.api_version = api_version
        self.username = "integration@example.com"
        self.password = "Pa55word!<&"  # XML-special characters on purpose: the login must escape them
        self.security_token = "SecTok3n"
        self.client_id = "3MVG9fake.consumer.key"
        self.client_secret = "fake-consumer-secret"
        self.instance_url: str | None = None
        self.users: dict[str, tuple[str, str]] = {self.username: (self.password, self.security_token)}
        self.apps: dict[str, str] = {self.client_id: self.client_secret}
        self.objects: dict[str, SObject] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_ids = itertools.count(1)
        self._prefixes = itertools.count(0)
        super().__init__()
        self.add_object("Contact", CONTACT_FIELDS, key_prefix="003")
        self.add_object("Account", ACCOUNT_FIELDS, key_prefix="001")

    # -- seeding and mutation ---------------------------------------------------------------------

    def add_object(
        self,
        name: str,
        fields: Mapping[str, str],
        label: str | None = None,
        key_prefix: str | None = None,
        queryable: bool = True,
    ) -> SObject:
        """Define an sObject with the standard system fields plus ``fields`` (name -> describe type)."""
        prefix = key_prefix or f"a{next(self._prefixes):02d}"
        obj = SObject(name, label or name, prefix, {**STANDARD_FIELDS, **fields}, queryable)
        with self.lock:
            self.objects[name] = obj
        return obj

    def insert(
        self, sobject: str, records: Iterable[Mapping[str, Any]], modified: datetime | None = None
    ) -> list[str]:
        """Add records (values may be Python datetimes/dates); returns their Ids."""
        obj = self.objects[sobject]
        stamp = _sf_datetime(modified or _now())
        rows = []
        for values in records:
            row: dict[str, Any] = dict.fromkeys(obj.fields)
            row.update(_wire(obj, values))
            rows.append(_stamped(row, stamp))
        return self._store(obj, rows)

    def update(
        self,
        sobject: str,
        ids: Iterable[str],
        changes: Mapping[str, Any] | None = None,
        modified: datetime | None = None,
    ) -> None:
        """Change records and stamp LastModifiedDate and SystemModstamp (one stamp for all: a bulk update)."""
        obj = self.objects[sobject]
        stamp = _sf_datetime(modified or _now())
        wire = _wire(obj, changes or {})
        with self.lock:
            for record_id in ids:
                # Replace, never mutate: running query cursors keep the old dict (a snapshot).
                obj.records[record_id] = {
                    **obj.records[record_id],
                    **wire,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                }

    def delete(self, sobject: str, ids: Iterable[str]) -> None:
        obj = self.objects[sobject]
        with self.lock:
            for record_id in ids:
                obj.records.pop(record_id, None)
                for cache in obj.fragments.values():
                    cache.pop(record_id, None)

    def generate(
        self,
        sobject: str,
        count: int,
        start: datetime,
        step: timedelta = timedelta(seconds=1),
    ) -> list[str]:
        """Add ``count`` synthetic records, the i-th modified at ``start + i * step`` (0: a bulk load)."""
        obj = self.objects[sobject]
        makers = [
            (name, _maker(name, kind, start))
            for name, kind in obj.fields.items()
            if name not in STANDARD_FIELDS
        ]
        rows = [
            _stamped({name: make(i) for name, make in makers}, _sf_datetime(start + i * step))
            for i in range(count)
        ]
        return self._store(obj, rows)

    def _store(self, obj: SObject, rows: list[dict[str, Any]]) -> list[str]:
        """Give new rows their Ids, keep them, and serialize them for query pages now."""
        ids: list[str] = []
        with self.lock:
            cache = self._fragments(obj, self.api_version, obj.all_fields)
            for row in rows:
                row["Id"] = record_id = f"{obj.key_prefix}{next(obj.ids):012d}AAA"
                obj.records[record_id] = row
                ids.append(record_id)
                self._fragment(obj, cache, row, self.api_version, obj.all_fields)
        return ids

    def records(self, sobject: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects[sobject].records.values())

    # -- connection auth params --------------------------------------------------------------------

    def soap_auth(self) -> dict[str, str]:
        return {
            "environmentUrl": self.base_url,
            "username": self.username,
            "password": self.password,
            "securityToken": self.security_token,
            "apiVersion": self.api_version,
        }

    def password_grant_auth(self) -> dict[str, str]:
        return {
            "environmentUrl": self.base_url,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "username": self.username,
            "password": self.password + self.security_token,
            "apiVersion": self.api_version,
        }

    def client_credentials_auth(self) -> dict[str, str]:
        return {
            "environmentUrl": self.base_url,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "apiVersion": self.api_version,
        }

    # -- HTTP --------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/services/Soap/u/{version}", self._soap_login, methods=["POST"]),
            Route("/services/oauth2/token", self._oauth_token, methods=["POST"]),
            Route("/services/data/v{version}/sobjects", self._sobjects),
            Route("/services/data/v{version}/sobjects/{name}/describe", self._describe),
            Route("/services/data/v{version}/query", self._query),
            Route("/services/data/v{version}/query/{locator}", self._query_more),
        ]

    def fault_response(self, status: int, retry_after: float | None) -> Response:
        codes = {401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED", 429: "REQUEST_LIMIT_EXCEEDED"}
        if status not in codes:
            return super().fault_response(status, retry_after)
        body = orjson.dumps([{"message": "Injected failure", "errorCode": codes[status]}])
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return json_response(body, status, headers)

    def _instance(self) -> str:
        return self.instance_url or self.base_url

    async def _soap_login(self, request: Request) -> Response:
        version = request.path_params["version"]
        if request.headers.get("soapaction", "").strip('"') != "login":
            return _soap_fault("soapenv:Client", "No operation available for request (SOAPAction)")
        try:
            root = ET.fromstring(await request.body())
        except ET.ParseError:
            return _soap_fault("soapenv:Client", "Unable to parse the request envelope")
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        username, password = values.get("username", ""), values.get("password", "")
        known = self.users.get(username)
        if known is None or password != known[0] + known[1]:
            return _soap_fault(
                "sf:INVALID_LOGIN",
                "INVALID_LOGIN: Invalid username, password, security token; or user locked out.",
            )
        session = self.issue_token(ORG_ID[:15] + "!AQ")
        server_url = f"{self._instance()}/services/Soap/u/{version}/{ORG_ID[:15]}"
        return Response(_soap_login_response(server_url, session), media_type="text/xml; charset=utf-8")

    async def _oauth_token(self, request: Request) -> Response:
        params = form(await request.body())
        grant = params.get("grant_type")
        if grant not in ("password", "client_credentials"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        client_id = params.get("client_id", "")
        if client_id not in self.apps:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if params.get("client_secret") != self.apps[client_id]:
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant == "password":
            known = self.users.get(params.get("username", ""))
            if known is None or params.get("password") != known[0] + known[1]:
                return _oauth_error("invalid_grant", "authentication failure")
        token = self.issue_token(ORG_ID[:15] + "!AQ")
        body = {
            "access_token": token,
            "instance_url": self._instance(),
            "id": f"{self._instance()}/id/{ORG_ID}/005000000000001AAA",
            "token_type": "Bearer",
            "issued_at": str(int(datetime.now(UTC).timestamp() * 1000)),
            "signature": secrets.token_urlsafe(32),
        }
        return json_response(orjson.dumps(body))

    def _guard(self, request: Request) -> Response | None:
        try:
            supported = 20.0 <= float(request.path_params["version"]) <= 62.0
        except ValueError:
            supported = False
        if not supported:
            return _rest_error(404, "NOT_FOUND", "The requested resource does not exist")
        if not self.authorized(request):
            return _rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

    async def _sobjects(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        version = request.path_params["version"]
        with self.lock:
            listed = [
                {
                    "name": o.name,
                    "label": o.label,
                    "labelPlural": o.label + "s",
                    "keyPrefix": o.key_prefix,
                    "custom": o.name.endswith("__c"),
                    "queryable": o.queryable,
                    "retrieveable": o.queryable,
                    "urls": {
                        "sobject": f"/services/data/v{version}/sobjects/{o.name}",
                        "describe": f"/services/data/v{version}/sobjects/{o.name}/describe",
                    },
                }
                for o in self.objects.values()
            ]
        return json_response(orjson.dumps({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": listed}))

    async def _describe(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        obj = self._object(request.path_params["name"])
        if obj is None:
            return _rest_error(404, "NOT_FOUND", "The requested resource does not exist")
        fields = [
            {
                "name": name,
                "type": kind,
                "label": _label(name),
                "nillable": name not in NOT_NILLABLE,
                "length": 255 if kind in ("string", "email", "phone", "url", "picklist", "textarea") else 0,
                "custom": name.endswith("__c"),
                "referenceTo": ["Account"] if kind == "reference" else [],
                "relationshipName": name[:-2] if kind == "reference" and name.endswith("Id") else None,
            }
            for name, kind in obj.fields.items()
        ]
        body = {"name": obj.name, "label": obj.label, "keyPrefix": obj.key_prefix, "queryable": obj.queryable}
        return json_response(orjson.dumps({**body, "fields": fields}))

    def _object(self, name: str) -> SObject | None:
        lowered = name.lower()
        with self.lock:
            return next((o for o in self.objects.values() if o.name.lower() == lowered), None)

    async def _query(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        soql = request.query_params.get("q", "")
        try:
            cursor = self._run(soql)
        except SoqlError as exc:
            return _rest_error(400, exc.code, exc.message)
        with self.lock:
            locator = f"01g{next(self._cursor_ids):012d}AAA"
            self._cursors[locator] = cursor
            while len(self._cursors) > 64:  # real locators expire too; keep memory bounded
                self._cursors.popitem(last=False)
        return self._page(request, locator, cursor, 0)

    async def _query_more(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        locator, _, offset = request.path_params["locator"].rpartition("-")
        with self.lock:
            cursor = self._cursors.get(locator)
        if cursor is None or not offset.isdigit():
            return _rest_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(request, locator, cursor, int(offset))

    def _page(self, request: Request, locator: str, cursor: _Cursor, offset: int) -> Response:
        size = _batch_size(request.headers.get("sforce-query-options", ""))
        rows = cursor.rows[offset : offset + size]
        end = offset + len(rows)
        version = request.path_params["version"]
        obj = self.objects[cursor.sobject]
        with self.lock:
            cache = self._fragments(obj, version, cursor.fields)
            records = b",".join([self._fragment(obj, cache, row, version, cursor.fields) for row in rows])
        done = end >= len(cursor.rows)
        head = f'{{"totalSize":{len(cursor.rows)},"done":{"true" if done else "false"},'
        if not done:
            head += f'"nextRecordsUrl":"/services/data/v{version}/query/{locator}-{end}",'
        return json_response(head.encode() + b'"records":[' + records + b"]}")

    @staticmethod
    def _fragments(
        obj: SObject, version: str, fields: tuple[str, ...]
    ) -> dict[str, tuple[dict[str, Any], bytes]]:
        key = (version, fields)
        if key not in obj.fragments and len(obj.fragments) >= 8:
            obj.fragments.pop(next(iter(obj.fragments)))  # bounded: forget the oldest field list
        return obj.fragments.setdefault(key, {})

    @staticmethod
    def _fragment(
        obj: SObject,
        cache: dict[str, tuple[dict[str, Any], bytes]],
        row: dict[str, Any],
        version: str,
        fields: tuple[str, ...],
    ) -> bytes:
        """The JSON of one query result record (cached while ``row`` is the record's current version)."""
        cached = cache.get(row["Id"])
        if cached is not None and cached[0] is row:
            return cached[1]
        url = f"/services/data/v{version}/sobjects/{obj.name}/{row['Id']}"
        data = orjson.dumps({"attributes": {"type": obj.name, "url": url}, **{f: row[f] for f in fields}})
        if obj.records.get(row["Id"]) is row:
            cache[row["Id"]] = (row, data)
        return data

    def _run(self, soql: str) -> _Cursor:
        query = _parse_soql(soql)
        obj = self._object(query.sobject)
        if obj is None or not obj.queryable:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        fields = tuple(_field(obj, name) for name in query.fields)
        if fields == obj.all_fields:
            fields = obj.all_fields  # the same object: cached fragments are then found by identity
        predicate = query.where(obj) if query.where else None
        with self.lock:
            rows = [r for r in obj.records.values() if predicate is None or predicate(r)]
        for name, descending, nulls_last in reversed(query.order):
            rows = _sorted(rows, _field(obj, name), descending, nulls_last)
        if query.limit is not None:
            rows = rows[: query.limit]
        return _Cursor(obj.name, fields, rows)


# -- SOQL ------------------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]
PredicateFactory = Callable[[SObject], Predicate]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)


@dataclass
class _Query:
    fields: list[str]
    sobject: str
    where: PredicateFactory | None
    order: list[tuple[str, bool, bool]]
    limit: int | None


def _tokens(soql: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    soql = soql.rstrip()
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if match is None or match.end() == pos:
            raise SoqlError(
                "MALFORMED_QUERY", f"unexpected token at position {pos}: {soql[pos : pos + 20]!r}"
            )
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, soql: str) -> None:
        self.tokens = _tokens(soql)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.upper() in words:
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.keyword(word):
            raise SoqlError("MALFORMED_QUERY", f"expecting '{word}', found '{self.peek()[1]}'")

    def identifier(self) -> str:
        kind, value = self.take()
        if kind != "word":
            raise SoqlError("MALFORMED_QUERY", f"expecting a field name, found '{value}'")
        return value


def _parse_soql(soql: str) -> _Query:
    p = _Parser(soql)
    p.expect("SELECT")
    fields = [p.identifier()]
    while p.peek() == ("punct", ","):
        p.take()
        fields.append(p.identifier())
    p.expect("FROM")
    sobject = p.identifier()
    where = _or(p) if p.keyword("WHERE") else None
    order: list[tuple[str, bool, bool]] = []
    if p.keyword("ORDER"):
        p.expect("BY")
        while True:
            name = p.identifier()
            descending = p.keyword("DESC")
            if not descending:
                p.keyword("ASC")
            nulls_last = descending  # SOQL's defaults: ASC NULLS FIRST, DESC NULLS LAST
            if p.keyword("NULLS"):
                nulls_last = p.keyword("LAST")
                if not nulls_last:
                    p.expect("FIRST")
            order.append((name, descending, nulls_last))
            if p.peek() != ("punct", ","):
                break
            p.take()
    limit = None
    if p.keyword("LIMIT"):
        kind, value = p.take()
        if kind != "number":
            raise SoqlError("MALFORMED_QUERY", "LIMIT takes a number")
        limit = int(value)
    if p.peek()[0] != "end":
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{p.peek()[1]}'")
    return _Query(fields, sobject, where, order, limit)


def _or(p: _Parser) -> PredicateFactory:
    parts = [_and(p)]
    while p.keyword("OR"):
        parts.append(_and(p))
    if len(parts) == 1:
        return parts[0]
    return lambda obj: _any([part(obj) for part in parts])


def _and(p: _Parser) -> PredicateFactory:
    parts = [_atom(p)]
    while p.keyword("AND"):
        parts.append(_atom(p))
    if len(parts) == 1:
        return parts[0]
    return lambda obj: _all([part(obj) for part in parts])


def _not(predicate: Predicate) -> Predicate:
    return lambda r: not predicate(r)


def _sorted(rows: list[dict[str, Any]], key: str, descending: bool, nulls_last: bool) -> list[dict[str, Any]]:
    present = sorted((r for r in rows if r[key] is not None), key=lambda r: r[key], reverse=descending)
    missing = [r for r in rows if r[key] is None]
    return present + missing if nulls_last else missing + present


def _any(predicates: list[Predicate]) -> Predicate:
    return lambda r: any(pred(r) for pred in predicates)


def _all(predicates: list[Predicate]) -> Predicate:
    return lambda r: all(pred(r) for pred in predicates)


def _atom(p: _Parser) -> PredicateFactory:
    if p.peek() == ("punct", "("):
        p.take()
        inner = _or(p)
        if p.take() != ("punct", ")"):
            raise SoqlError("MALFORMED_QUERY", "expecting ')'")
        return inner
    if p.keyword("NOT"):
        negated = _atom(p)
        return lambda obj: _not(negated(obj))
    name = p.identifier()
    kind, op = p.take()
    if kind != "op":
        raise SoqlError("MALFORMED_QUERY", f"expecting an operator after {name}, found '{op}'")
    literal = p.take()
    return lambda obj: _comparison(obj, name, op, literal)


def _comparison(obj: SObject, name: str, op: str, literal: tuple[str, str]) -> Predicate:
    key = _field(obj, name)
    kind, text = literal
    field_type = obj.fields[key]
    if kind == "word" and text.lower() == "null":
        if op in ("=",):
            return lambda r: r[key] is None
        if op in ("!=", "<>"):
            return lambda r: r[key] is not None
        raise SoqlError("MALFORMED_QUERY", "null can only be compared with = or !=")
    value = _literal(key, field_type, kind, text, op)
    compare = _OPS[op]
    return lambda r: r[key] is not None and compare(r[key], value)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _literal(name: str, field_type: str, kind: str, text: str, op: str) -> Any:
    if field_type == "datetime":
        if kind != "datetime":
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{name}' must be of type dateTime and should not be "
                "enclosed in quotes",
            )
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # Stored values have millisecond precision: round the literal the way that keeps the comparison exact.
        floor = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
        if floor != instant and op in (">=", "<"):
            return _sf_datetime(floor + timedelta(milliseconds=1))
        return _sf_datetime(floor)
    if field_type == "date":
        if kind != "date":
            raise SoqlError(
                "INVALID_FIELD", f"value of filter criterion for field '{name}' must be of type date"
            )
        return text
    if field_type in ("int", "double", "currency", "percent"):
        if kind != "number":
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{name}' must be a number")
        return float(text)
    if field_type == "boolean":
        if kind != "word" or text.lower() not in ("true", "false"):
            raise SoqlError(
                "INVALID_FIELD", f"value of filter criterion for field '{name}' must be true or false"
            )
        return text.lower() == "true"
    if kind != "string":
        raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{name}' must be quoted")
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _field(obj: SObject, name: str) -> str:
    key = obj.canonical(name)
    if key is None:
        raise SoqlError(
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom field, "
            "be sure to append the '__c' after the custom field name.",
        )
    return key


# -- wire formats ----------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _sf_datetime(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "+0000"


def _stamped(row: dict[str, Any], stamp: str) -> dict[str, Any]:
    row.update(IsDeleted=False, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
    return row


def _wire(obj: SObject, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = obj.canonical(name)
        if key is None:
            raise KeyError(f"{obj.name} has no field {name!r}")
        if isinstance(value, datetime):
            value = _sf_datetime(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[key] = value
    return out


def _maker(name: str, kind: str, start: datetime) -> Callable[[int], Any]:
    day0 = start.date()
    makers: dict[str, Callable[[int], Any]] = {
        "email": lambda i: f"user{i}@example.com",
        "phone": lambda i: f"+1-555-{i % 10_000:04d}",
        "url": lambda i: f"https://example.com/{i}",
        "date": lambda i: (day0 - timedelta(days=i % 20_000)).isoformat(),
        "datetime": lambda i: _sf_datetime(start + timedelta(seconds=i)),
        "boolean": lambda i: i % 2 == 0,
        "int": lambda i: i,
        "double": lambda i: i * 0.5,
        "currency": lambda i: round(i * 1.25, 2),
        "percent": lambda i: float(i % 100),
        "picklist": lambda i: ("Web", "Phone", "Partner")[i % 3],
        "reference": lambda i: f"001{i % 1000:012d}AAA",
    }
    return makers.get(kind, lambda i: f"{name} {i}")


def _label(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.removesuffix("__c")).replace("_", " ")


def _batch_size(header: str) -> int:
    match = re.search(r"batchSize\s*=\s*(\d+)", header)
    if match is None:
        return QUERY_PAGE_MAX
    return max(200, min(QUERY_PAGE_MAX, int(match.group(1))))


def _rest_error(status: int, code: str, message: str) -> Response:
    return json_response(orjson.dumps([{"message": message, "errorCode": code}]), status)


def _oauth_error(error: str, description: str) -> Response:
    return json_response(orjson.dumps({"error": error, "error_description": description}), 400)


_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"
)


def _soap_login_response(server_url: str, session: str) -> bytes:
    result = (
        "<loginResponse><result>"
        f"<metadataServerUrl>{escape(server_url.replace('/u/', '/m/'))}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{escape(server_url)}</serverUrl><sessionId>{escape(session)}</sessionId>"
        "<userId>005000000000001AAA</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId><sessionSecondsValid>7200</sessionSecondsValid>"
        "</userInfo></result></loginResponse>"
    )
    return _ENVELOPE.format(result).encode()


def _soap_fault(code: str, message: str) -> Response:
    exception = code.partition(":")[2]
    detail = (
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{exception}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault></detail>"
        if code.startswith("sf:")
        else ""
    )
    fault = (
        f"<soapenv:Fault><faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>{detail}"
    )
    body = _ENVELOPE.format(fault + "</soapenv:Fault>").encode()
    return Response(body, status_code=500, media_type="text/xml; charset=utf-8")
