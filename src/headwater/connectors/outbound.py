"""Where connectors may connect: the SSRF guard shared by every outbound HTTP client.

Public HTTPS hosts are always allowed. Plain HTTP, and any address that is loopback, private,
link-local (cloud metadata at 169.254.169.254 included), reserved or multicast, are allowed only for
hosts or CIDRs listed in ``HEADWATER_OUTBOUND_ALLOW``. The check runs on the resolved addresses (a DNS
name pointing at 127.0.0.1 is loopback) and again on every redirect.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from headwater.connectors.errors import HostUnresolved, OutboundRefused
from headwater.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundPolicy:
    def __init__(self, allow: list[str]) -> None:
        self.hosts = {a for a in allow if _network(a) is None}
        self.networks = [n for n in (_network(a) for a in allow) if n is not None]

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.outbound_allow_entries)

    def check_url(self, url: str) -> None:
        """Raise :class:`OutboundRefused` unless ``url`` may be reached."""
        self.resolve(url)

    def resolve(self, url: str) -> list[Address]:
        """The addresses ``url``'s host resolves to, once each is allowed; :class:`OutboundRefused` when
        any is not (the rules of :meth:`check_url`). A client that connects to these addresses itself,
        instead of resolving the name again, cannot be steered elsewhere by DNS rebinding."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise OutboundRefused(f"{_safe(url)} is not an http(s) URL.")
        addresses = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        listed = host in self.hosts or all(self._listed(a) for a in addresses)
        if parts.scheme == "http" and not listed:
            raise OutboundRefused(
                f"Plain HTTP to {host} is refused: use https, or list the host in HEADWATER_OUTBOUND_ALLOW."
            )
        for address in addresses:
            if _internal(address) and not (host in self.hosts or self._listed(address)):
                raise OutboundRefused(
                    f"{host} resolves to the internal address {address}; list it in HEADWATER_OUTBOUND_ALLOW "
                    "to allow it."
                )
        return addresses

    def _listed(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client that checks every request, redirects included, against this policy."""

        def guard(request: httpx.Request) -> None:
            self.check_url(str(request.url))

        hooks = {"request": [guard]}
        return httpx.Client(event_hooks=hooks, **kwargs)  # type: ignore[arg-type]


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HostUnresolved(f"Cannot resolve {host}: {exc.strerror or exc}.") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _internal(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
