"""JSON event-type schemas of server-to-server connectors: parsing, the rules, and additive updates.

Three spellings of the same document are accepted and normalized to one form:

    Salesforce's web/mobile connector file   {"records": [{"developerName", "masterLabel", "category",
                                               "externalDataTranFields": [{"developerName", "masterLabel",
                                               "dataType", "isDataRequired", "primaryIndexOrder": 1}]}]}
    the same with the console's names         {"events": [{..., "fields": [{..., "isPrimaryKey": true}]}]}
    the Connect API's short names             {"schemas"|"events": [{"name", "label", "category", "fields":
                                               [{"name", "label", "type", "primaryKey", "required"}]}]}

Error paths use the keys the client sent (``records[2].externalDataTranFields[0].dataType`` or
``events[2].fields[0].dataType``) and messages name the event and field by developer name.

Normalized event: ``{"developerName", "masterLabel", "category", "primaryKey", "fields": [{"developerName",
"masterLabel", "dataType", "isPrimaryKey", "isDataRequired"}]}``. The primary key and the six mandatory
fields are always required (``isDataRequired`` true), whatever the file says: Data 360 refuses events
without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from headwater.errors import ValidationFailed

CODE = "SSOT-1422-400"
EVOLUTION_CODE = "SSOT-1423-400"
MAX_FIELDS = 1000
MAX_NAME = 80
MAX_ERRORS = 200
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
RESERVED = frozenset(
    {
        "date_id",
        "location_id",
        "dat_account_currency",
        "dat_exchange_rate",
        "pacing_period",
        "pacing_end_date",
        "row_count",
        "version",
    }
)
CATEGORIES = {"engagement": "Engagement", "profile": "Profile"}
# The six fields every server event carries (Data 360's schema quick guide), with their data types.
MANDATORY = {
    "deviceId": ("Text",),
    "eventId": ("Text",),
    "dateTime": ("DateTime",),
    "eventType": ("Text",),
    "category": ("Text",),
    "sessionId": ("Text",),
}
STRING_TYPES = frozenset({"Text", "Email", "Phone", "Url"})
# Data 360 data type -> the XDM field it becomes.
XDM_TYPES: dict[str, dict[str, str]] = {
    "Text": {"type": "string"},
    "Email": {"type": "string"},
    "Phone": {"type": "string"},
    "Url": {"type": "string"},
    "Number": {"type": "number"},
    "Percent": {"type": "number"},
    "Currency": {"type": "number"},
    "Boolean": {"type": "boolean"},
    "Date": {"type": "string", "format": "date"},
    "DateTime": {"type": "string", "format": "date-time"},
}
_TYPE_ALIASES = {
    **{name.lower(): name for name in XDM_TYPES},
    "string": "Text",
    "number": "Number",
    "integer": "Number",
    "int": "Number",
    "long": "Number",
    "double": "Number",
    "float": "Number",
    "decimal": "Number",
    "bool": "Boolean",
    "date-time": "DateTime",
    "date_time": "DateTime",
    "timestamp": "DateTime",
}
TYPE_NAMES = ", ".join(XDM_TYPES)


@dataclass
class Parsed:
    """A validated schema: its normalized events, and how each maps back to the client's keys."""

    events: list[dict[str, Any]]
    list_key: str  # "events", "records" or "schemas"
    event_paths: dict[str, str] = field(default_factory=dict)  # developerName -> "events[2]"
    field_paths: dict[tuple[str, str], str] = field(default_factory=dict)  # -> "events[2].fields[0]"

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["developerName"] == name), None)


class _Errors(list[dict[str, str]]):
    def add(self, path: str, message: str) -> None:
        if len(self) < MAX_ERRORS:
            self.append({"path": path, "message": message})


def parse(document: Any) -> Parsed:
    """Validate an uploaded schema document; ValidationFailed (SSOT-1422-400) lists every problem."""
    errors = _Errors()
    if not isinstance(document, dict):
        raise ValidationFailed(
            [{"path": "(body)", "message": 'must be a JSON object such as {"events": [...]}'}], code=CODE
        )
    keys = [k for k in ("events", "records", "schemas") if k in document]
    if len(keys) != 1 or not isinstance(document[keys[0]], list) or not document[keys[0]]:
        where = keys[0] if len(keys) == 1 else "events"
        message = (
            "is required: a non-empty list of event types"
            if len(keys) < 2
            else f"send the event types once, under one key (not {' and '.join(keys)})"
        )
        raise ValidationFailed([{"path": where, "message": message}], code=CODE)
    list_key = keys[0]
    parsed = Parsed(events=[], list_key=list_key)
    seen: dict[str, str] = {}
    for index, item in enumerate(document[list_key]):
        path = f"{list_key}[{index}]"
        event = _event(item, path, errors, parsed)
        if event is None:
            continue
        name = event["developerName"]
        other = seen.get(name.lower())
        if other is not None:
            errors.add(
                f"{path}.developerName",
                f"event {name!r}: the name is already used by {other}; developer names are unique "
                "(case-insensitively) across the connector's events",
            )
            continue
        seen[name.lower()] = path
        parsed.events.append(event)
        parsed.event_paths[name] = path
    _engagement_types_agree(parsed, errors)
    if errors:
        raise ValidationFailed(list(errors), code=CODE)
    return parsed


def _pick(
    item: dict[str, Any], names: tuple[str, ...], path: str, errors: _Errors, what: str
) -> tuple[str, Any]:
    """The value under the first of ``names`` present (and the key used); two spellings must agree."""
    present = [(n, item[n]) for n in names if n in item and item[n] is not None]
    if not present:
        return names[0], None
    key, value = present[0]
    for other, other_value in present[1:]:
        if other_value != value:
            errors.add(f"{path}.{other}", f"{what}: differs from {key}; send one of them")
    return key, value


def _name(value: Any, path: str, errors: _Errors, what: str) -> str | None:
    if not isinstance(value, str) or not value:
        errors.add(path, f"{what}: is required (a developer name such as 'eventId')")
        return None
    if len(value) > MAX_NAME:
        errors.add(path, f"{what}: {value!r} is longer than {MAX_NAME} characters")
    elif not NAME.match(value):
        errors.add(
            path,
            f"{what}: {value!r} is not a valid developer name: start with a letter, then use only "
            "letters, digits, _ and -",
        )
    elif "__" in value:
        errors.add(path, f"{what}: {value!r} contains '__', which developer names may not")
    else:
        return value
    return None


def _label(item: dict[str, Any], path: str, errors: _Errors, default: str, what: str) -> str:
    key, value = _pick(item, ("masterLabel", "label"), path, errors, what)
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        errors.add(f"{path}.{key}", f"{what}: must be a non-empty string")
        return default
    if len(value) > MAX_NAME:
        errors.add(f"{path}.{key}", f"{what}: the label is longer than {MAX_NAME} characters")
    elif has_control(value):
        errors.add(f"{path}.{key}", f"{what}: the label contains control characters")
    return value


def _event(item: Any, path: str, errors: _Errors, parsed: Parsed) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        errors.add(path, "must be an object with developerName, masterLabel, category and fields")
        return None
    key, raw_name = _pick(item, ("developerName", "name"), path, errors, "event")
    label = raw_name if isinstance(raw_name, str) else "?"
    name = _name(raw_name, f"{path}.{key}", errors, f"event at {path}")
    what = f"event {name or label!r}"
    master = _label(item, path, errors, name or "", what)
    cat_key, raw_category = _pick(item, ("category",), path, errors, what)
    category = CATEGORIES.get(raw_category.lower()) if isinstance(raw_category, str) else None
    if category is None:
        errors.add(f"{path}.{cat_key}", f"{what}: category must be Engagement or Profile")
    fields_key, raw_fields = _pick(item, ("fields", "externalDataTranFields"), path, errors, what)
    if not isinstance(raw_fields, list) or not raw_fields:
        errors.add(f"{path}.{fields_key}", f"{what}: needs a non-empty list of fields")
        return None
    if len(raw_fields) > MAX_FIELDS:
        errors.add(
            f"{path}.{fields_key}", f"{what}: has {len(raw_fields)} fields; an event has at most {MAX_FIELDS}"
        )
        return None
    fields = _fields(raw_fields, f"{path}.{fields_key}", errors, what, name, parsed)
    if name is None or category is None or fields is None:
        return None
    return _finish(
        {"developerName": name, "masterLabel": master, "category": category, "fields": fields},
        f"{path}.{fields_key}",
        errors,
    )


def _fields(
    raw_fields: list[Any], path: str, errors: _Errors, what: str, event: str | None, parsed: Parsed
) -> list[dict[str, Any]] | None:
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    broken = False
    for index, item in enumerate(raw_fields):
        where = f"{path}[{index}]"
        parsed_field = _field(item, where, errors, what)
        if parsed_field is None:
            broken = True
            continue
        name = parsed_field["developerName"]
        if name.lower() in seen:
            errors.add(
                f"{where}.developerName",
                f"field {name!r} of {what}: the name is already used by {seen[name.lower()]} "
                "(field names are unique case-insensitively)",
            )
            broken = True
            continue
        seen[name.lower()] = where
        out.append(parsed_field)
        if event is not None:
            parsed.field_paths[(event, name)] = where
    return None if broken else out


def _field(item: Any, path: str, errors: _Errors, what: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        errors.add(path, f"{what}: each field must be an object with developerName, masterLabel and dataType")
        return None
    key, raw_name = _pick(item, ("developerName", "name"), path, errors, what)
    name = _name(raw_name, f"{path}.{key}", errors, f"field of {what}")
    fwhat = f"field {name or raw_name!r} of {what}"
    if name is not None and name.lower() in RESERVED:
        errors.add(f"{path}.{key}", f"{fwhat}: {name!r} is a reserved field name; rename it")
        name = None
    label = _label(item, path, errors, name or "", fwhat)
    type_key, raw_type = _pick(item, ("dataType", "type"), path, errors, fwhat)
    data_type = _TYPE_ALIASES.get(raw_type.lower()) if isinstance(raw_type, str) else None
    if data_type is None:
        shown = "is required" if raw_type is None else f"{raw_type!r} is not a data type"
        errors.add(f"{path}.{type_key}", f"{fwhat}: {shown}; use one of {TYPE_NAMES}")
    pk_key, primary = _primary(item, path, errors, fwhat)
    req_key, required = _pick(item, ("isDataRequired", "required"), path, errors, fwhat)
    if required is None:
        required = False
    if not isinstance(required, bool):
        errors.add(f"{path}.{req_key}", f"{fwhat}: must be true or false")
    if name is None or data_type is None or primary is None or not isinstance(required, bool):
        return None
    return {
        "developerName": name,
        "masterLabel": label,
        "dataType": data_type,
        "isPrimaryKey": primary,
        "isDataRequired": required or primary or name in MANDATORY,
        "_pkKey": pk_key,
        "_typeKey": type_key,
    }


def _primary(item: dict[str, Any], path: str, errors: _Errors, what: str) -> tuple[str, bool | None]:
    key, flag = _pick(item, ("isPrimaryKey", "primaryKey"), path, errors, what)
    order = item.get("primaryIndexOrder")
    if order is not None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            errors.add(f"{path}.primaryIndexOrder", f"{what}: must be a positive integer (1 = primary key)")
            return "primaryIndexOrder", None
        if flag is not None and bool(flag) != (order >= 1):
            errors.add(f"{path}.primaryIndexOrder", f"{what}: disagrees with {key}; send one of them")
            return "primaryIndexOrder", None
        if flag is None:
            return "primaryIndexOrder", order >= 1
    if flag is None:
        return key, False
    if not isinstance(flag, bool):
        errors.add(f"{path}.{key}", f"{what}: must be true or false")
        return key, None
    return key, flag


def _finish(event: dict[str, Any], path: str, errors: _Errors) -> dict[str, Any] | None:
    """The rules that need the whole event: one primary key, the mandatory fields and their types."""
    what = f"event {event['developerName']!r}"
    fields = event["fields"]
    keys = [i for i, f in enumerate(fields) if f["isPrimaryKey"]]
    ok = True
    if len(keys) != 1:
        where = f"{path}[{keys[1]}].{fields[keys[1]]['_pkKey']}" if len(keys) > 1 else path
        found = ", ".join(repr(fields[i]["developerName"]) for i in keys) or "none"
        hint = "eventId usually" if event["category"] == "Engagement" else "deviceId usually"
        errors.add(where, f"{what}: needs exactly one primary key field ({hint}); found {found}")
        ok = False
    else:
        pk = fields[keys[0]]
        if pk["dataType"] not in STRING_TYPES:
            errors.add(
                f"{path}[{keys[0]}].{pk['_typeKey']}",
                f"field {pk['developerName']!r} of {what}: a primary key must be a Text field, "
                f"not {pk['dataType']}",
            )
            ok = False
    by_name = {f["developerName"]: (i, f) for i, f in enumerate(fields)}
    for name, types in MANDATORY.items():
        if name not in by_name:
            near = next(
                (f["developerName"] for f in fields if f["developerName"].lower() == name.lower()), None
            )
            hint = f" (found {near!r}: names are case-sensitive)" if near else ""
            errors.add(
                path,
                f"{what}: the mandatory field {name!r} is missing{hint}; every server event has "
                f"{', '.join(MANDATORY)}",
            )
            ok = False
            continue
        index, found = by_name[name]
        if found["dataType"] not in types:
            errors.add(
                f"{path}[{index}].{found['_typeKey']}",
                f"field {name!r} of {what}: the mandatory field must be {' or '.join(types)}, "
                f"not {found['dataType']}",
            )
            ok = False
    for f in fields:
        f.pop("_pkKey", None)
        f.pop("_typeKey", None)
    if not ok:
        return None
    event["primaryKey"] = fields[keys[0]]["developerName"]
    return event


def _engagement_types_agree(parsed: Parsed, errors: _Errors) -> None:
    """Engagement events share one data stream, so a field name has one data type across them, and
    they share the primary key (the stream's record id)."""
    first: dict[str, tuple[str, str]] = {}  # field -> (event, type)
    key: tuple[str, str] | None = None  # (event, primary key)
    for event in parsed.events:
        if event["category"] != "Engagement":
            continue
        key = key or (event["developerName"], event["primaryKey"])
        if event["primaryKey"] != key[1]:
            path = parsed.field_paths.get((event["developerName"], event["primaryKey"]), parsed.list_key)
            errors.add(
                f"{path}.isPrimaryKey",
                f"event {event['developerName']!r} has primary key {event['primaryKey']!r} but the "
                f"Engagement event {key[0]!r} has {key[1]!r}: Engagement events share one data stream, "
                "so they share the primary key field",
            )
        for f in event["fields"]:
            name, kind = f["developerName"], f["dataType"]
            seen = first.setdefault(name, (event["developerName"], kind))
            if seen[1] != kind:
                path = parsed.field_paths.get((event["developerName"], name), parsed.list_key)
                errors.add(
                    f"{path}.dataType",
                    f"field {name!r} of event {event['developerName']!r} is {kind} but the Engagement "
                    f"event {seen[0]!r} has it as {seen[1]}: Engagement events share one data stream, "
                    "so a field has one data type across them",
                )


def has_control(text: str) -> bool:
    """Control characters (NUL above all) have no place in names and labels; databases refuse NUL."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


# --- additive updates ---
@dataclass
class Changes:
    added_events: list[str] = field(default_factory=list)
    added_fields: list[tuple[str, str]] = field(default_factory=list)  # (event, field)

    def as_json(self) -> dict[str, Any]:
        return {
            "addedEvents": self.added_events,
            "addedFields": [{"event": e, "field": f} for e, f in self.added_fields],
        }


def compare(old: list[dict[str, Any]], new: Parsed) -> tuple[Changes, list[dict[str, str]]]:
    """What ``new`` adds to ``old``, and every non-additive difference (removals, changed types,
    primary keys or categories, a field made required)."""
    changes, errors = Changes(), _Errors()
    for old_event in old:
        name = old_event["developerName"]
        event = new.event(name)
        if event is None:
            errors.add(
                new.list_key,
                f"event {name!r} ({old_event['category']}) was removed: an updated schema keeps every "
                "event and field of the previous one; add it back",
            )
            continue
        path = new.event_paths[name]
        if event["category"] != old_event["category"]:
            errors.add(
                f"{path}.category",
                f"event {name!r}: category changed from {old_event['category']} to {event['category']}; "
                "an event's category cannot change",
            )
        fields = {f["developerName"]: f for f in event["fields"]}
        for old_field in old_event["fields"]:
            _compare_field(name, old_field, fields.get(old_field["developerName"]), new, path, errors)
        known = {f["developerName"] for f in old_event["fields"]}
        changes.added_fields += [(name, f) for f in fields if f not in known]
    known_events = {e["developerName"] for e in old}
    changes.added_events = [e["developerName"] for e in new.events if e["developerName"] not in known_events]
    return changes, list(errors)


def _compare_field(
    event: str,
    old: dict[str, Any],
    new_field: dict[str, Any] | None,
    parsed: Parsed,
    event_path: str,
    errors: _Errors,
) -> None:
    name = old["developerName"]
    what = f"field {name!r} of event {event!r}"
    if new_field is None:
        errors.add(
            event_path,
            f"{what} was removed: an updated schema keeps every field of the previous one; add it back",
        )
        return
    path = parsed.field_paths.get((event, name), event_path)
    if new_field["dataType"] != old["dataType"]:
        errors.add(
            f"{path}.dataType",
            f"{what}: data type changed from {old['dataType']} to {new_field['dataType']}; "
            "a field's type cannot change",
        )
    if new_field["isPrimaryKey"] != old["isPrimaryKey"]:
        was = "was" if old["isPrimaryKey"] else "was not"
        errors.add(f"{path}.isPrimaryKey", f"{what}: {was} the primary key; the primary key cannot change")
    if new_field["isDataRequired"] and not old["isDataRequired"]:
        errors.add(
            f"{path}.isDataRequired",
            f"{what}: made required; senders of the previous schema may not send it",
        )


def xdm_field(spec: dict[str, Any], event: str) -> dict[str, Any]:
    """The XDM field an event field becomes (in a generated field group)."""
    return {
        "title": spec["masterLabel"],
        "description": f"{spec['dataType']} field {spec['developerName']} of event {event}",
        **XDM_TYPES[spec["dataType"]],
    }


def preview(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schema as the console shows it: per event its category, primary key and typed fields."""
    return [
        {
            "developerName": e["developerName"],
            "masterLabel": e["masterLabel"],
            "category": e["category"],
            "primaryKey": e["primaryKey"],
            "fieldCount": len(e["fields"]),
            "fields": [dict(f) for f in e["fields"]],
        }
        for e in events
    ]
