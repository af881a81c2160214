"""A Microsoft Dynamics 365 (Dataverse) environment and its Azure AD token endpoint on 127.0.0.1.

Tokens: ``POST /{tenant}/oauth2/v2.0/token`` (client_credentials with client_id, client_secret and scope
``{serviceUri}/.default``; password grant for a public client). Web API (OData v4) under
``/api/data/v9.2/``: ``EntityDefinitions`` (``$select``, ``$filter=EntitySetName eq '...'``),
``EntityDefinitions(LogicalName='contact')`` and ``.../Attributes``, and entity sets
(``contacts?$select=...&$filter=modifiedon gt 2024-01-01T00:00:00Z and modifiedon le ...``) paged by
``Prefer: odata.maxpagesize=N`` (default and maximum 5000) and ``@odata.nextLink``. A request without a
valid token gets 401 with the ``WWW-Authenticate`` challenge that names the tenant.

    fake = DynamicsFake().start()            # entities contact and account
    ids = fake.insert("contact", [{"firstname": "Ada"}], modified=datetime(2024, 1, 1, tzinfo=UTC))
    fake.generate("contact", 100_000, start=t0, step=timedelta(seconds=1))
    fake.update("contact", ids, {"emailaddress1": "a@x.org"}, modified=t1)   # stamps modifiedon
    fake.delete("contact", ids)
    fake.service_principal_auth() / fake.basic_auth()   # connection auth params
    fake.token_lifetime = 30                 # expires_in of the tokens issued from now on
    fake.next_link_base = "http://localhost:1"   # next links point elsewhere (token-leak tests)

Lookup attributes (Lookup, Customer, Owner) are read as ``_{name}_value``, as in the real Web API.
Timestamps have whole-second precision, like Dataverse's. Failure switches: see tests/fakes/oauth.py.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.oauth import FakeService, form, json_response

API = "/api/data/v9.2"
LOOKUPS = {"Lookup", "Customer", "Owner"}
NOT_SELECTABLE = {"Virtual", "CalendarRules", "PartyList", "ManagedProperty", "Image", "File", "EntityName"}
PAGE_MAX = 5000
PUBLIC_CLIENT_ID = "51f81489-12ee-4a9e-aaae-a2591f45987d"  # Microsoft's sample app id for Dataverse

CONTACT_ATTRIBUTES = {
    "contactid": "Uniqueidentifier",
    "firstname": "String",
    "lastname": "String",
    "emailaddress1": "String",
    "telephone1": "String",
    "birthdate": "DateTime",
    "donotemail": "Boolean",
    "numberofchildren": "Integer",
    "annualincome": "Money",
    "description": "Memo",
    "parentcustomerid": "Customer",
    "statecode": "State",
    "versionnumber": "BigInt",
    "createdon": "DateTime",
    "modifiedon": "DateTime",
    "entityimage": "Image",
}
ACCOUNT_ATTRIBUTES = {
    "accountid": "Uniqueidentifier",
    "name": "String",
    "numberofemployees": "Integer",
    "revenue": "Money",
    "createdon": "DateTime",
    "modifiedon": "DateTime",
}
DATE_ONLY = {"birthdate"}  # DateTime attributes with the DateOnly behaviour: read as "YYYY-MM-DD"


@dataclass
class Entity:
    logical_name: str
    set_name: str
    display_name: str
    primary_id: str
    attributes: dict[str, str]  # logical name -> AttributeType
    shadows: dict[str, str] = field(default_factory=dict)  # e.g. parentcustomeridname -> parentcustomerid
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> properties in wire format

    def properties(self) -> dict[str, str]:
        """Selectable Web API property -> AttributeType (lookups as ``_x_value``)."""
        out: dict[str, str] = {}
        for name, kind in self.attributes.items():
            if kind in LOOKUPS:
                out[f"_{name}_value"] = kind
            elif kind not in NOT_SELECTABLE:
                out[name] = kind
        return out


@dataclass
class _Cursor:
    entity: str
    select: list[str]
    rows: list[dict[str, Any]]


class ODataError(Exception):
    def __init__(self, status: int, message: str, code: str = "0x80060888") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class DynamicsFake(FakeService):
    def __init__(self) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = "fake~client~secret"
        self.username = "svc@contoso.onmicrosoft.com"
        self.password = "Dyn4mics!pw"
        self.token_lifetime = 3599
        self.next_link_base: str | None = None  # where next links point (default: base_url)
        self.entities: dict[str, Entity] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_ids = itertools.count(1)
        self._versions = itertools.count(1000)
        self._ids = itertools.count(0x10000000_0000_4000_8000_000000000000)
        super().__init__()
        self.add_entity("contact", CONTACT_ATTRIBUTES, display_name="Contact")
        self.entities["contact"].shadows["parentcustomeridname"] = "parentcustomerid"
        self.add_entity("account", ACCOUNT_ATTRIBUTES, display_name="Account")

    # -- seeding and mutation ---------------------------------------------------------------------

    def add_entity(
        self,
        logical_name: str,
        attributes: Mapping[str, str],
        set_name: str | None = None,
        display_name: str | None = None,
        primary_id: str | None = None,
    ) -> Entity:
        primary = primary_id or f"{logical_name}id"
        attrs = {primary: "Uniqueidentifier", **attributes}
        attrs.setdefault("modifiedon", "DateTime")
        attrs.setdefault("versionnumber", "BigInt")
        entity = Entity(
            logical_name, set_name or logical_name + "s", display_name or logical_name, primary, attrs
        )
        with self.lock:
            self.entities[logical_name] = entity
        return entity

    def insert(
        self, entity: str, records: Iterable[Mapping[str, Any]], modified: datetime | None = None
    ) -> list[str]:
        e = self.entities[entity]
        stamp = _odata_datetime(modified or datetime.now(UTC))
        ids: list[str] = []
        with self.lock:
            for values in records:
                record_id = str(uuid.UUID(int=next(self._ids)))
                row = dict.fromkeys(e.properties())
                row.update(_wire(e, values))
                row.update(
                    {e.primary_id: record_id, "modifiedon": stamp, "versionnumber": next(self._versions)}
                )
                if "createdon" in row:
                    row["createdon"] = stamp
                e.records[record_id] = row
                ids.append(record_id)
        return ids

    def update(
        self,
        entity: str,
        ids: Iterable[str],
        changes: Mapping[str, Any] | None = None,
        modified: datetime | None = None,
    ) -> None:
        e = self.entities[entity]
        stamp = _odata_datetime(modified or datetime.now(UTC))
        wire = _wire(e, changes or {})
        with self.lock:
            for record_id in ids:
                # Replace, never mutate: running cursors keep the old dict (a snapshot).
                e.records[record_id] = {
                    **e.records[record_id],
                    **wire,
                    "modifiedon": stamp,
                    "versionnumber": next(self._versions),
                }

    def delete(self, entity: str, ids: Iterable[str]) -> None:
        e = self.entities[entity]
        with self.lock:
            for record_id in ids:
                e.records.pop(record_id, None)

    def generate(
        self, entity: str, count: int, start: datetime, step: timedelta = timedelta(seconds=1)
    ) -> list[str]:
        """Add ``count`` synthetic records, the i-th modified at ``start + i * step``."""
        e = self.entities[entity]
        props = e.properties()
        skip = {e.primary_id, "modifiedon", "createdon", "versionnumber"}
        makers = {name: _maker(name, kind, start) for name, kind in props.items() if name not in skip}
        ids: list[str] = []
        with self.lock:
            for i in range(count):
                record_id = str(uuid.UUID(int=next(self._ids)))
                stamp = _odata_datetime(start + i * step)
                row = {name: make(i) for name, make in makers.items()}
                row.update(
                    {e.primary_id: record_id, "modifiedon": stamp, "versionnumber": next(self._versions)}
                )
                if "createdon" in props:
                    row["createdon"] = stamp
                e.records[record_id] = row
                ids.append(record_id)
        return ids

    def records(self, entity: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.entities[entity].records.values())

    # -- connection auth params --------------------------------------------------------------------

    def service_principal_auth(self) -> dict[str, str]:
        return {
            "serviceUri": self.base_url,
            "servicePrincipalId": self.client_id,
            "servicePrincipalKey": self.client_secret,
            "tenantId": self.tenant_id,
            "tokenUrl": self.base_url,
        }

    def basic_auth(self) -> dict[str, str]:
        return {
            "serviceUri": self.base_url,
            "username": self.username,
            "password": self.password,
            "tokenUrl": self.base_url,
        }

    # -- HTTP --------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route(API + "/", self._service_document),
            Route(API + "/{rest:path}", self._api),
        ]

    def fault_response(self, status: int, retry_after: float | None) -> Response:
        if status != 429:
            return super().fault_response(status, retry_after)
        body = {
            "error": {
                "code": "0x80072322",
                "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            }
        }
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return json_response(orjson.dumps(body), 429, headers)

    async def _token(self, request: Request) -> Response:
        params = form(await request.body())
        if request.path_params["tenant"] != self.tenant_id:
            return _aad_error(400, "invalid_request", "AADSTS90002: Tenant not found.")
        if params.get("scope") != f"{self.base_url}/.default":
            return _aad_error(400, "invalid_scope", "AADSTS70011: The provided value for scope is not valid.")
        grant = params.get("grant_type")
        if grant == "client_credentials":
            if params.get("client_id") != self.client_id:
                return _aad_error(
                    400, "unauthorized_client", "AADSTS700016: Application was not found in the directory."
                )
            if params.get("client_secret") != self.client_secret:
                return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif grant == "password":
            if params.get("client_id") not in (PUBLIC_CLIENT_ID, self.client_id):
                return _aad_error(
                    400, "unauthorized_client", "AADSTS700016: Application was not found in the directory."
                )
            if (params.get("username"), params.get("password")) != (self.username, self.password):
                return _aad_error(
                    400,
                    "invalid_grant",
                    "AADSTS50126: Error validating credentials due to invalid username or password.",
                )
        else:
            return _aad_error(
                400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant."
            )
        token = self.issue_token("eyJ0eXAiOiJKV1Qi.")
        body = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        return json_response(orjson.dumps(body))

    def _challenge(self) -> Response:
        challenge = (
            f"Bearer authorization_uri={self.base_url}/{self.tenant_id}/oauth2/authorize, "
            f"resource_id={self.base_url}/"
        )
        return Response(b"", status_code=401, headers={"WWW-Authenticate": challenge})

    async def _service_document(self, request: Request) -> Response:
        if not self.authorized(request):
            return self._challenge()
        with self.lock:
            sets = [
                {"name": e.set_name, "kind": "EntitySet", "url": e.set_name} for e in self.entities.values()
            ]
        return json_response(
            orjson.dumps({"@odata.context": f"{self.base_url}{API}/$metadata", "value": sets})
        )

    async def _api(self, request: Request) -> Response:
        if not self.authorized(request):
            return self._challenge()
        path = request.path_params["rest"]
        try:
            if path == "EntityDefinitions":
                return self._entity_definitions(request)
            match = re.fullmatch(r"EntityDefinitions\(LogicalName='([^']*)'\)(/Attributes)?", path)
            if match:
                return self._definition(request, match.group(1), bool(match.group(2)))
            return self._entity_set(request, path)
        except ODataError as exc:
            body = orjson.dumps({"error": {"code": exc.code, "message": exc.message}})
            return json_response(body, exc.status)

    def _definition_json(self, e: Entity) -> dict[str, Any]:
        label = {"Label": e.display_name, "LanguageCode": 1033}
        return {
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, e.logical_name)),
            "LogicalName": e.logical_name,
            "EntitySetName": e.set_name,
            "PrimaryIdAttribute": e.primary_id,
            "DisplayName": {"LocalizedLabels": [label], "UserLocalizedLabel": label},
        }

    def _entity_definitions(self, request: Request) -> Response:
        with self.lock:
            rows = [self._definition_json(e) for e in self.entities.values()]
        where = request.query_params.get("$filter")
        if where:
            predicate = _parse_filter(where, {"LogicalName": "String", "EntitySetName": "String"})
            rows = [r for r in rows if predicate(r)]
        rows = [_select(r, request.query_params.get("$select")) for r in rows]
        context = f"{self.base_url}{API}/$metadata#EntityDefinitions"
        return json_response(orjson.dumps({"@odata.context": context, "value": rows}))

    def _definition(self, request: Request, logical_name: str, attributes: bool) -> Response:
        e = self.entities.get(logical_name)
        if e is None:
            raise ODataError(404, f"Could not find entity with name '{logical_name}'.", "0x80060888")
        if not attributes:
            body = _select(self._definition_json(e), request.query_params.get("$select"))
            return json_response(orjson.dumps(body))
        rows = [
            {"LogicalName": name, "AttributeType": kind, "AttributeOf": None, "IsValidForRead": True}
            for name, kind in e.attributes.items()
        ]
        rows += [
            {"LogicalName": name, "AttributeType": "String", "AttributeOf": of, "IsValidForRead": True}
            for name, of in e.shadows.items()
        ]
        rows = [_select(r, request.query_params.get("$select")) for r in rows]
        context = f"{self.base_url}{API}/$metadata#EntityDefinitions('{logical_name}')/Attributes"
        return json_response(orjson.dumps({"@odata.context": context, "value": rows}))

    def _entity_set(self, request: Request, set_name: str) -> Response:
        size = _page_size(request.headers.get("prefer", ""))
        skiptoken = request.query_params.get("$skiptoken")
        if skiptoken is not None:
            match = re.fullmatch(
                r'<cookie pagenumber="\d+" cursor="(\d+)" offset="(\d+)" />', unquote(skiptoken)
            )
            with self.lock:
                cursor = self._cursors.get(match.group(1)) if match else None
            if cursor is None or match is None:
                raise ODataError(400, "The $skiptoken is not valid or has expired.", "0x80040216")
            return self._page(request, match.group(1), cursor, int(match.group(2)), size)
        cursor = self._run(request, set_name)
        with self.lock:
            cursor_id = str(next(self._cursor_ids))
            self._cursors[cursor_id] = cursor
            while len(self._cursors) > 64:
                self._cursors.popitem(last=False)
        return self._page(request, cursor_id, cursor, 0, size)

    def _run(self, request: Request, set_name: str) -> _Cursor:
        with self.lock:
            e = next((x for x in self.entities.values() if x.set_name == set_name), None)
        if e is None:
            raise ODataError(404, f"Resource not found for the segment '{set_name}'.")
        props = e.properties()
        select = request.query_params.get("$select")
        names = [n.strip() for n in select.split(",")] if select else list(props)
        for name in names:
            if name not in props:
                entity_type = f"Microsoft.Dynamics.CRM.{e.logical_name}"
                raise ODataError(400, f"Could not find a property named '{name}' on type '{entity_type}'.")
        where = request.query_params.get("$filter")
        predicate = _parse_filter(where, props, e.logical_name) if where else None
        with self.lock:
            rows = [r for r in e.records.values() if predicate is None or predicate(r)]
        top = request.query_params.get("$top")
        if top is not None:
            rows = rows[: int(top)]
        return _Cursor(e.logical_name, names, rows)

    def _page(self, request: Request, cursor_id: str, cursor: _Cursor, offset: int, size: int) -> Response:
        rows = cursor.rows[offset : offset + size]
        end = offset + len(rows)
        names = cursor.select
        e = self.entities[cursor.entity]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}{API}/$metadata#{e.set_name}({','.join(names)})",
            "value": [
                {"@odata.etag": f'W/"{row["versionnumber"]}"', **{n: row[n] for n in names}} for row in rows
            ],
        }
        if end < len(cursor.rows):
            cookie = f'<cookie pagenumber="{end // size + 1}" cursor="{cursor_id}" offset="{end}" />'
            kept = "&".join(
                f"{quote(k, safe='$')}={quote(v, safe=',')}"
                for k, v in request.query_params.multi_items()
                if k != "$skiptoken"
            )
            query = f"{kept}&" if kept else ""
            body["@odata.nextLink"] = (
                f"{self.next_link_base or self.base_url}{API}/{e.set_name}?{query}"
                f"$skiptoken={quote(cookie, safe='')}"
            )
        headers = {"Preference-Applied": f"odata.maxpagesize={size}", "OData-Version": "4.0"}
        return json_response(orjson.dumps(body), headers=headers)


# -- $filter ---------------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<punct>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


class _Parser:
    def __init__(self, text: str, props: Mapping[str, str], entity: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        self.props = props
        self.entity = entity
        pos, text = 0, text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise ODataError(400, f"Syntax error at position {pos} in '{text}'.", "0x80060888")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def word(self, value: str) -> bool:
        if self.peek() == ("word", value):
            self.pos += 1
            return True
        return False

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.word("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.atom()]
        while self.word("and"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def atom(self) -> Predicate:
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.disjunction()
            if self.take() != ("punct", ")"):
                raise ODataError(400, "Syntax error: ')' expected.")
            return inner
        if self.word("not"):
            negated = self.atom()
            return lambda r: not negated(r)
        kind, name = self.take()
        if kind != "word" or name not in self.props:
            raise ODataError(
                400,
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{self.entity}'.",
            )
        _, op = self.take()
        if op not in _OPS:
            raise ODataError(400, f"Syntax error: unknown operator '{op}'.")
        return _comparison(name, self.props[name], op, self.take())


def _parse_filter(text: str, props: Mapping[str, str], entity: str = "EntityMetadata") -> Predicate:
    parser = _Parser(text, props, entity)
    predicate = parser.disjunction()
    if parser.peek()[0] != "end":
        raise ODataError(400, f"Syntax error: unexpected '{parser.peek()[1]}'.")
    return predicate


def _comparison(name: str, kind: str, op: str, literal: tuple[str, str]) -> Predicate:
    lit_kind, text = literal
    if lit_kind == "word" and text == "null":
        if op == "eq":
            return lambda r: r.get(name) is None
        if op == "ne":
            return lambda r: r.get(name) is not None
        raise ODataError(400, "null can only be compared with eq or ne.")
    value = _literal(name, kind, lit_kind, text, op)
    compare = _OPS[op]
    return lambda r: r.get(name) is not None and compare(r[name], value)


def _literal(name: str, kind: str, lit_kind: str, text: str, op: str) -> Any:
    if kind == "DateTime":
        if lit_kind != "datetime":
            raise ODataError(400, f"A binary operator with incompatible types was detected for '{name}'.")
        instant = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        # Stored values have whole seconds: round the literal the way that keeps the comparison exact.
        floor = instant.replace(microsecond=0)
        if floor != instant and op in ("ge", "lt"):
            floor += timedelta(seconds=1)
        return _odata_datetime(floor)
    if kind in ("Integer", "BigInt", "Money", "Decimal", "Double", "Picklist", "State", "Status"):
        if lit_kind != "number":
            raise ODataError(400, f"A binary operator with incompatible types was detected for '{name}'.")
        return float(text)
    if kind == "Boolean":
        return text == "true"
    if lit_kind == "guid":
        return text.lower()
    if lit_kind != "string":
        raise ODataError(400, f"A binary operator with incompatible types was detected for '{name}'.")
    return text[1:-1].replace("''", "'")


# -- wire formats ----------------------------------------------------------------------------------


def _odata_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wire(e: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
    props = e.properties()
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = name if name in props else f"_{name}_value"
        if key not in props:
            raise KeyError(f"{e.logical_name} has no attribute {name!r}")
        if isinstance(value, datetime):
            value = value.date().isoformat() if name in DATE_ONLY else _odata_datetime(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[key] = value
    return out


def _maker(name: str, kind: str, start: datetime) -> Callable[[int], Any]:
    day0 = start.date()
    if name in DATE_ONLY:
        return lambda i: (day0 - timedelta(days=i % 20_000)).isoformat()
    makers: dict[str, Callable[[int], Any]] = {
        "DateTime": lambda i: _odata_datetime(start + timedelta(seconds=i)),
        "Boolean": lambda i: i % 2 == 0,
        "Integer": lambda i: i,
        "BigInt": lambda i: i,
        "Money": lambda i: round(i * 1.25, 2),
        "Decimal": lambda i: i * 0.5,
        "Double": lambda i: i * 0.5,
        "Picklist": lambda i: 100_000_000 + i % 3,
        "State": lambda i: 0,
        "Status": lambda i: 1,
        "Uniqueidentifier": lambda i: str(uuid.UUID(int=i)),
        "Customer": lambda i: str(uuid.UUID(int=10**9 + i % 1000)),
        "Lookup": lambda i: str(uuid.UUID(int=10**9 + i % 1000)),
        "Owner": lambda i: str(uuid.UUID(int=10**10)),
    }
    if name.startswith("emailaddress"):
        return lambda i: f"user{i}@example.com"
    return makers.get(kind, lambda i: f"{name} {i}")


def _select(row: dict[str, Any], select: str | None) -> dict[str, Any]:
    if not select:
        return row
    names = [n.strip() for n in select.split(",")]
    return {k: v for k, v in row.items() if k in names or k == "MetadataId"}


def _page_size(prefer: str) -> int:
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer)
    return PAGE_MAX if match is None else max(1, min(PAGE_MAX, int(match.group(1))))


def _aad_error(status: int, error: str, description: str) -> Response:
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [int(description[6:].split(":")[0])],
    }
    return json_response(orjson.dumps(body), status)
