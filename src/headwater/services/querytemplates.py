"""Query Service query templates (``/data/foundation/query/query-templates``), in AEP's shapes.

A template is saved SQL with a name and optional default ``queryParameters``; ``POST /queries`` with
``templateId`` runs its SQL, each ``$name`` replaced by the value of ``name`` in the request's
``queryParameters`` (else the template's default). Replacement is textual, as in AEP: the SQL that
results is checked and run like any other (services/querysql.py, the query engine). Creating, replacing
and deleting a template needs ``manage-queries``; reading them, ``read``.
"""

from __future__ import annotations

import re
from typing import Any

from headwater.errors import BadRequest
from headwater.services import access
from headwater.services.resources import Built, Collection, require_object
from headwater.services.runs import iso
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

KIND = "queryServiceTemplate"
CODE = "QRY-1400-400"
BASE = "/data/foundation/query/query-templates"
PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
MAX_SQL_CHARS = 1_000_000


def bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code=CODE, report={"field": field})


def parameters(value: Any, field: str = "queryParameters") -> dict[str, str]:
    """``queryParameters`` as name -> text (numbers and booleans written as SQL reads them)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(field, 'must be an object of name -> value, e.g. {"country": "\'FR\'"}')
    out: dict[str, str] = {}
    for name, item in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise bad(f"{field}.{name}", "a parameter name is letters, digits and underscores")
        if isinstance(item, bool):
            out[str(name)] = "true" if item else "false"
        elif isinstance(item, (int, float, str)):
            out[str(name)] = str(item)
        else:
            raise bad(f"{field}.{name}", "must be a string, a number or a boolean")
    return out


def substitute(sql: str, values: dict[str, str]) -> str:
    """``sql`` with each ``$name`` replaced by ``values[name]``; 400 naming the first one without a value."""
    missing = [m.group(1) for m in PLACEHOLDER.finditer(sql) if m.group(1) not in values]
    if missing:
        raise bad("queryParameters", f"has no value for ${missing[0]}, which the SQL uses")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], sql)


class QueryTemplates(Collection):
    kind = KIND
    label = "query template"
    service = "QRY"

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        actor.require(access.MANAGE_QUERIES, "create query templates")
        return super().create(actor, require_object(body), ident)

    def put(self, actor: Actor, ident: str, body: Any) -> Resource:
        actor.require(access.MANAGE_QUERIES, "change query templates")
        return self.replace(actor, self.get(actor, ident), require_object(body))

    def remove(self, actor: Actor, ident: str) -> dict[str, Any]:
        actor.require(access.MANAGE_QUERIES, "delete query templates")
        self.delete(actor, ident)
        return {"message": "Deleted", "statusCode": 202}

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        sql = body.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise bad("sql", "is required: the template's SQL ($name for a parameter)")
        if len(sql) > MAX_SQL_CHARS:
            raise bad("sql", f"is longer than {MAX_SQL_CHARS} characters")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 4096:
            raise bad("name", "is required: a string of at most 4096 characters")
        doc: dict[str, Any] = {"sql": sql, "name": name, "userId": actor.user}
        defaults = parameters(body.get("queryParameters"))
        if defaults:
            doc["queryParameters"] = defaults
        if existing is not None:
            doc["userId"] = existing.doc.get("userId", actor.user)
        doc["lastUpdatedBy"] = actor.user
        return Built(doc=doc)

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        return self.render(self.get(actor, ident))

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /query-templates``: ``orderby`` (created, updated, ``-`` for descending; ``-created`` by
        default), ``limit`` (20, at most 1000), ``start`` (an offset), ``property`` (``name==X``,
        ``userId==X``). AEP's page shape."""
        order, limit, start, filters = "-created", DEFAULT_LIMIT, 0, []
        for key, value in params:
            if key == "orderby":
                order = value.strip().lstrip("+")
                if order.lstrip("-") not in ("created", "updated"):
                    raise bad("orderby", "must be created, -created, updated or -updated")
            elif key in ("limit", "start"):
                high = MAX_LIMIT if key == "limit" else 10**9
                if not value.strip().isdigit() or not int(key == "limit") <= int(value) <= high:
                    raise bad(key, f"must be a whole number from {int(key == 'limit')} to {high}")
                limit, start = (int(value), start) if key == "limit" else (limit, int(value))
            elif key == "property":
                for part in filter(None, (p.strip() for p in value.split(","))):
                    field, op, wanted = part.partition("==")
                    if not op or field.strip() not in ("name", "userId"):
                        raise bad("property", "supports name==X and userId==X, comma-separated")
                    filters.append((field.strip(), wanted.strip()))
        items = [
            r
            for r in self.store.list(self.kind, actor.scope).items
            if all(r.doc.get(f) == v for f, v in filters)
        ]
        by = order.lstrip("-")
        items.sort(
            key=lambda r: (r.created_at if by == "created" else r.updated_at, r.id), reverse=order[0] == "-"
        )
        page = items[start : start + limit]
        links: dict[str, Any] = {}
        if start + limit < len(items):
            links["next"] = {"href": f"{BASE}?orderby={order}&start={start + limit}&limit={limit}"}
        if start > 0:
            links["prev"] = {"href": f"{BASE}?orderby={order}&start={max(0, start - limit)}&limit={limit}"}
        return {
            "templates": [self.render(r) for r in page],
            "_page": {"orderby": order, "start": str(start), "count": len(page), "totalCount": len(items)},
            "_links": links,
            "version": 1,
        }

    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        link = f"{BASE}/{resource.id}"
        out: dict[str, Any] = {
            "sql": d["sql"],
            "name": d["name"],
            "id": resource.id,
            "updated": iso(resource.updated_at),
            "userId": d.get("userId"),
            "created": iso(resource.created_at),
            "lastUpdatedBy": d.get("lastUpdatedBy"),
            "_links": {
                "self": {"href": link, "method": "GET"},
                "delete": {"href": link, "method": "DELETE"},
                "update": {"href": link, "method": "PUT", "body": '{"sql": "...", "name": "..."}'},
            },
        }
        if d.get("queryParameters"):
            out["queryParameters"] = d["queryParameters"]
        return out
