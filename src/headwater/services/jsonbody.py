"""Parsing request bodies the way real clients send them.

The reference tutorials' bodies contain sloppy JSON (a trailing comma before ``}``), and scripts copied
from them send it as written. Strict JSON is tried first; on failure, trailing commas outside strings
are dropped and the text parsed again. Anything else that is not JSON is a 400 saying where it broke.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from headwater.errors import BadRequest


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON document.", code="HW-1402-400")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The request body is not UTF-8 text.", code="HW-1402-400") from exc
    relaxed = _drop_trailing_commas(text)
    try:
        return json.loads(relaxed)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            code="HW-1402-400",
            report={"line": exc.lineno, "column": exc.colno},
        ) from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BadRequest(f"The request body is not usable JSON: {exc}.", code="HW-1402-400") from exc


def _drop_trailing_commas(text: str) -> str:
    out: list[str] = []
    in_string = escaped = False
    pending_comma: int | None = None
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "}]" and pending_comma is not None:
            out[pending_comma] = ""
        if ch == ",":
            pending_comma = len(out)
        elif not ch.isspace():
            pending_comma = None
        if ch == '"':
            in_string = True
        out.append(ch)
    return "".join(out)
