"""Which values of an HTTP destination's request are secrets, and how they are kept out of what people see.

The rule (docs/decisions.md, "Secrets inside destination requests"):

- a header value (request headers and the OAuth token request's ``extraHeaders``) is a secret, except
  an empty value, a value made only of ``${}`` placeholders (nothing stored to hide: the record's data
  fills it) and the values of the content-negotiation headers in :data:`PUBLIC_HEADERS`;
- every OAuth ``formItems`` value is a secret;
- in the URL, the user-info and every query value holding literal text are secrets;
- the body template is not a secret (its structure must be reviewable), but known secrets are scrubbed
  from everything shown;
- any of these given as ``{"value": text, "secret": true|false}`` is what the flag says (a URL marked
  secret hides its whole path and query; a body marked secret is sealed and shown as the mask).

:class:`Secrecy` is what a destination knows at run time: which headers and query values to mask in a
request shown to people, and the secret strings (in the encodings a server may echo them in) to scrub
from responses, error messages and dead letters.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import orjson

MASK = "********"
#: Headers whose values describe content, never credentials: shown unless marked secret.
PUBLIC_HEADERS = frozenset(
    {"accept", "accept-charset", "accept-encoding", "accept-language", "content-type", "content-encoding",
     "content-language"}
)  # fmt: skip
#: Secret strings shorter than this are masked where they are placed but not scrubbed from free text
#: (replacing every "abc" of a response body would make it unreadable, and such values are not keys).
MIN_SCRUBBED = 6
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.){8,})"')
_SCHEMES = frozenset({"basic", "bearer", "digest", "negotiate", "token", "apikey"})  # not secrets themselves


def entry(value: Any) -> tuple[Any, bool | None]:
    """``(text, flag)`` of a value given as text or as ``{"value": text, "secret": bool}`` (flag None when
    not given). Anything else comes back as it is, for the schema to refuse."""
    if isinstance(value, Mapping) and set(value) <= {"value", "secret"} and "value" in value:
        flag = value.get("secret")
        return value["value"], flag if isinstance(flag, bool) else None
    return value, None


def literal(text: str) -> str:
    """``text`` without its placeholders and surrounding space: what a stored template holds itself."""
    return _PLACEHOLDER.sub("", text).strip()


def header_is_secret(name: str, value: str, flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return name.lower() not in PUBLIC_HEADERS and bool(literal(value))


def masked_url(url: str, flag: bool | None) -> str:
    """The URL as shown: user-info password and query values with literal text masked (the whole path
    and query when ``flag`` is True, nothing when it is False). Placeholders stay visible."""
    if flag is False:
        return url
    head, sep, query = url.partition("?")
    query, hash_sep, fragment = query.partition("#")
    scheme, slashes, rest = head.partition("://")
    cut = min((i for i in (rest.find("/"),) if i >= 0), default=len(rest))
    authority, path = _masked_authority(rest[:cut]), rest[cut:]
    if flag:
        return f"{scheme}{slashes}{authority}/{MASK}"
    pairs = []
    for pair in query.split("&") if sep else ():
        name, equals, value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if equals and literal(value) else pair)
    shown = f"{scheme}{slashes}{authority}{path}"
    if sep:
        shown += "?" + "&".join(pairs)
    return shown + (hash_sep + fragment if hash_sep else "")


def _masked_authority(authority: str) -> str:
    """``user:password@host`` with the password masked."""
    if "@" not in authority:
        return authority
    info, _, host = authority.rpartition("@")
    user, colon, _ = info.partition(":")
    return f"{user}{colon}{MASK if colon else ''}@{host}"


def url_secrets(url: str, flag: bool | None) -> list[str]:
    """The secret strings of a URL template (user-info password, literal query values; with ``flag`` True
    the path and query too)."""
    if flag is False:
        return []
    found: list[str] = []
    parts = urlsplit(url)
    if parts.password:
        found.append(parts.password)
    if flag:
        found += [piece for piece in _PLACEHOLDER.split(parts.path + "?" + parts.query) if piece.strip("/?&")]
    for pair in parts.query.split("&"):
        found += [piece for piece in _PLACEHOLDER.split(pair.partition("=")[2]) if piece]
    return found


def body_secrets(body: str) -> list[str]:
    """The string literals of a secret body template (what a server echoing the body would show)."""
    found = []
    for match in _QUOTED.finditer(body):
        found += [piece for piece in _PLACEHOLDER.split(match.group(1)) if piece]
    return found


def text_secrets(value: str) -> list[str]:
    """The literal pieces of a secret value and each of their words (``Bearer sk_live_…`` may come back
    as just ``sk_live_…``), leaving out authorization scheme names."""
    pieces = [piece.strip() for piece in _PLACEHOLDER.split(value) if piece.strip()]
    words = [word for piece in pieces for word in piece.split() if word.lower() not in _SCHEMES]
    return [piece for piece in pieces if piece.lower() not in _SCHEMES] + words


def basic_secrets(username: str, password: str) -> list[str]:
    """The password, and the credentials as a Basic Authorization header carries them (both encodings a
    client may use: plain, and form-encoded as RFC 6749 section 2.3.1 asks for client credentials)."""
    pairs = {f"{username}:{password}", f"{quote_plus(username, safe='')}:{quote_plus(password, safe='')}"}
    return [password, *(base64.b64encode(pair.encode()).decode("ascii") for pair in pairs)]


def _variants(value: str) -> set[str]:
    """``value`` as it may come back: as sent, JSON-escaped, percent- and form-encoded."""
    return {
        value,
        orjson.dumps(value).decode()[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
    }


@dataclass(frozen=True, slots=True)
class Secrecy:
    """What is secret in one destination's requests (see the module docstring for the rule)."""

    headers: frozenset[str] = frozenset()  # lower-case names of headers whose values are masked
    query: frozenset[str] = frozenset()  # names of query parameters whose values are masked
    whole_url: bool = False  # the URL's path and query are masked
    body: bool = False  # the body is masked
    values: tuple[str, ...] = ()  # secret strings in every encoding looked for, longest first

    @classmethod
    def of(
        cls,
        *,
        headers: Iterable[str] = (),
        query: Iterable[str] = (),
        whole_url: bool = False,
        body: bool = False,
        values: Iterable[str] = (),
    ) -> Secrecy:
        return cls(
            frozenset(name.lower() for name in headers),
            frozenset(query),
            whole_url,
            body,
            _ordered(values),
        )

    def scrub(self, text: str, extra: Iterable[str] = ()) -> str:
        """``text`` with every known secret (and ``extra``, e.g. the current OAuth token) masked."""
        values = self.values if not extra else _ordered([*self.values, *extra])
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def scrub_all(self, value: Any, extra: Iterable[str] = ()) -> Any:
        """A JSON-like value with every string scrubbed (keys too: an echo may name a header by a value)."""
        extra = tuple(extra)
        if isinstance(value, str):
            return self.scrub(value, extra)
        if isinstance(value, dict):
            return {self.scrub(str(k), extra): self.scrub_all(v, extra) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_all(v, extra) for v in value]
        return value

    def url(self, url: str) -> str:
        """A rendered URL as shown: the secret query values (or the whole path and query) masked."""
        if self.whole_url:
            return masked_url(url, True)
        scheme, slashes, rest = url.partition("://")
        if "@" in rest.split("/", 1)[0]:
            host, cut, path = rest.partition("/")
            url = f"{scheme}{slashes}{_masked_authority(host)}{cut}{path}"
        if not self.query or "?" not in url:
            return url
        head, _, query = url.partition("?")
        query, hash_sep, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            name, equals, _ = pair.partition("=")
            pairs.append(f"{name}={MASK}" if equals and name in self.query else pair)
        return f"{head}?{'&'.join(pairs)}" + (hash_sep + fragment if hash_sep else "")


NO_SECRETS = Secrecy()


def _ordered(values: Iterable[str]) -> tuple[str, ...]:
    found = {variant for value in values if len(value) >= MIN_SCRUBBED for variant in _variants(value)}
    return tuple(sorted((v for v in found if len(v) >= MIN_SCRUBBED), key=lambda v: (-len(v), v)))


def query_names(display_url: str) -> frozenset[str]:
    """The query parameters a shown URL masks (those whose value is the mask)."""
    query = display_url.partition("?")[2].partition("#")[0]
    pairs = (pair.partition("=") for pair in query.split("&"))
    return frozenset(name for name, equals, value in pairs if equals and value == MASK)
