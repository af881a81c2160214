"""Where connectors may connect: the SSRF guard shared by every outbound client (HTTP connectors,
destinations, the PostgreSQL source).

A URL passes in three steps:

1. **The host is spelled one way.** It is a canonical IP literal (``203.0.113.7``, ``[2001:db8::1]``)
   or a DNS name. Anything else is refused before any lookup: the inet_aton spellings that resolvers
   still read as IPv4 (``0177.0.0.1``, ``127.000.000.001``, ``0x7f.1``, ``2130706433``, ``127.1``: a
   classic way around address filters), a name whose last label is a number, IPv6 zone ids, percent
   signs, spaces.
2. **Every address it resolves to is globally routable**, or listed in ``HEADWATER_OUTBOUND_ALLOW``
   (by CIDR, or by naming the host). Globally routable means: not in any IANA special-purpose range
   (:data:`_REFUSED_V4`, :data:`_REFUSED_V6`; loopback, private, shared 100.64.0.0/10, link-local,
   documentation, benchmarking, multicast, reserved, site-local fec0::/10, ...), and for IPv6 inside
   the global unicast 2000::/3. An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``,
   NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) is judged by the IPv4 address(es)
   it reaches: ``[2002:7f00:1::]`` is 127.0.0.1.
3. **Plain HTTP** needs the host (or all its addresses) listed; HTTPS to a public host needs nothing.

Whatever the list says, the cloud metadata endpoints and other never-useful targets (:data:`_NEVER`:
link-local, 100.100.100.200, fd00:ec2::254, unspecified, multicast, broadcast) are refused: a listed
name that resolves there is refused too.

:meth:`OutboundPolicy.resolve` returns the checked addresses; clients connect to those instead of
resolving the name again (a DNS answer that changes between check and connect, "DNS rebinding",
cannot steer them): delivery's own HTTP/1.1 client, :meth:`OutboundPolicy.client` for httpx (a
transport whose connections go only to checked addresses, TLS still verifying the name), and libpq's
``hostaddr`` for PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import typing
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from headwater.connectors.errors import HostUnresolved, OutboundRefused
from headwater.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# IANA IPv4 special-purpose registry (RFC 6890 and updates), plus multicast and class E. A few blocks
# the registry marks global inside 192.0.0.0/24 (192.0.0.9, .10) are refused with it: no SaaS lives there.
_REFUSED_V4 = _nets(
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",
    "100.64.0.0/10",  # shared address space (carrier-grade NAT), 100.100.100.200 (Alibaba metadata)
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local: 169.254.169.254 is the metadata service of most clouds
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, 255.255.255.255 included
)
# IPv6 outside 2000::/3 is refused as a whole (loopback, ::/96, ULA fc00::/7, link-local, site-local
# fec0::/10, multicast, 64:ff9b:1::/48, 5f00::/16, ...); these are the special blocks inside it.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_REFUSED_V6 = _nets(
    "2001::/23",  # IETF protocol assignments (benchmarking, ORCHID, ...); Teredo is judged below
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation (RFC 9637)
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
# Never reachable, whatever HEADWATER_OUTBOUND_ALLOW says.
_NEVER = _nets(
    "0.0.0.0/8",
    "169.254.0.0/16",
    "100.100.100.200/32",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "fe80::/10",
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "ff00::/8",
)
NEVER_ALLOWED = _NEVER  # settings.py refuses list entries inside these

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMBER = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")  # WHATWG "ends in a number": then it is an IPv4 form


class OutboundPolicy:
    """The rules of the module docstring, for one ``HEADWATER_OUTBOUND_ALLOW`` list. Immutable."""

    def __init__(self, allow: list[str]) -> None:
        self.hosts = {a.strip().lower().rstrip(".") for a in allow if _network(a) is None}
        self.networks = [n for n in (_network(a) for a in allow) if n is not None]

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.outbound_allow_entries)

    def check_url(self, url: str) -> None:
        """Raise :class:`OutboundRefused` unless ``url`` may be reached."""
        self.resolve(url)

    def target(self, url: str) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of ``url`` without any lookup; :class:`OutboundRefused` when it is not
        an http(s) URL or its host is neither a canonical IP literal nor a DNS name (step 1)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OutboundRefused(
                f"{_safe(url)} is not a valid http(s) URL (check its host and port)."
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundRefused(f"{_safe(url)} is not an http(s) URL.")
        host = canonical_host(parts.hostname)
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)

    def resolve(self, url: str) -> list[Address]:
        """The addresses ``url``'s host resolves to, once each is allowed; :class:`OutboundRefused` when
        any is not (the rules of the module docstring), :class:`HostUnresolved` when the name does not
        resolve. A client that connects to these addresses itself, instead of resolving the name again,
        cannot be steered elsewhere by DNS rebinding."""
        scheme, host, port = self.target(url)
        addresses = _resolve(host, port)
        named = host in self.hosts
        if scheme == "http" and not (named or all(self.listed(a) for a in addresses)):
            raise OutboundRefused(
                f"Plain HTTP to {host} is refused: use https, or list the host in HEADWATER_OUTBOUND_ALLOW."
            )
        for address in addresses:
            self.check_address(host, address, named=named)
        return addresses

    def check_address(self, host: str, address: Address, *, named: bool = False) -> None:
        """Raise :class:`OutboundRefused` unless ``address`` (what ``host`` resolved to) may be reached;
        ``named``: the host is listed by name in HEADWATER_OUTBOUND_ALLOW."""
        where = host if host == str(address) else f"{host} resolves to {address}, which"
        if any(_within(reached, _NEVER) for reached in reached_addresses(address)):
            raise OutboundRefused(
                f"{where} is a link-local, cloud metadata, unspecified or multicast address: Headwater never "
                "connects there."
            )
        if named or self.listed(address):
            return
        reason = refusal(address)
        if reason is not None:
            raise OutboundRefused(
                f"{where} is an internal address ({reason}), not a globally routable one; list it in "
                "HEADWATER_OUTBOUND_ALLOW to allow it."
            )

    def listed(self, address: Address) -> bool:
        """Whether a CIDR of HEADWATER_OUTBOUND_ALLOW covers ``address``, or the IPv4 address an
        IPv4-mapped one is (a dual-stack socket reaches that very address). The other transition forms
        (NAT64, 6to4, Teredo) reach their IPv4 address through a gateway: listing the IPv4 address does
        not list them; list their IPv6 range to allow one."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return _within(address, self.networks)

    def client(self, **kwargs: typing.Any) -> httpx.Client:
        """An httpx client whose every request (redirects included) is checked against this policy and
        connected to the addresses the check resolved, never to a fresh lookup. ``verify`` goes to the
        transport; the environment (proxies, ``.netrc``) is ignored: a proxy would resolve the name
        itself, and ``.netrc`` would hand the server's credentials to hosts users name."""
        verify = kwargs.pop("verify", True)
        return httpx.Client(transport=PinnedTransport(self, verify=verify), trust_env=False, **kwargs)


def canonical_host(host: str) -> str:
    """``host`` lower-cased, without brackets or a trailing dot, when it is a canonical IP literal or a
    DNS name (non-ASCII names as IDNA); :class:`OutboundRefused` otherwise (step 1)."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if ":" in name:  # only IPv6 literals hold a colon (zone ids like fe80::1%eth0 are refused)
        try:
            return str(ipaddress.IPv6Address(name)) if "%" not in name else _refuse_spelling(host)
        except ValueError:
            return _refuse_spelling(host)
    name = name.removesuffix(".")
    try:
        return str(ipaddress.IPv4Address(name))  # dotted quad, no leading zeros (Python >= 3.9.5)
    except ValueError:
        pass
    labels = name.split(".")
    if not name or _NUMBER.match(labels[-1]):
        return _refuse_spelling(host)
    try:
        ascii_name = name if name.isascii() else name.encode("idna").decode("ascii")
    except UnicodeError:
        return _refuse_spelling(host)
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in ascii_name.split(".")):
        return _refuse_spelling(host)
    return ascii_name


def _refuse_spelling(host: str) -> str:
    raise OutboundRefused(
        f"The host {host[:100]!r} is neither a DNS name nor an IP address written the standard way (like "
        "203.0.113.7 or [2001:db8::1]); octal, hexadecimal, shortened and zero-padded forms are refused."
    )


def reached_addresses(address: Address) -> list[Address]:
    """The IPv4 address(es) an IPv6 transition address reaches (IPv4-mapped, NAT64 64:ff9b::/96, 6to4,
    Teredo's server and client), else ``[address]``."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in _TEREDO and address.teredo is not None:
        return list(address.teredo)
    return [address]


def refusal(address: Address) -> str | None:
    """Why ``address`` is not globally routable (a phrase like "in 100.64.0.0/10"), None when it is.
    Judged on the address(es) it reaches (:func:`reached_addresses`)."""
    for reached in reached_addresses(address):
        reason = _refusal_of(reached)
        if reason is not None:
            return reason if reached == address else f"a form of {reached}, which is {reason}"
    return None


def _refusal_of(address: Address) -> str | None:
    if isinstance(address, ipaddress.IPv4Address):
        special = [n for n in _REFUSED_V4 if address in n]
    elif address not in _GLOBAL_UNICAST_V6:
        return "outside the IPv6 global unicast range 2000::/3"
    else:
        special = [n for n in _REFUSED_V6 if address in n]
    if special:
        return f"in the special-purpose range {special[0]}"
    # A second opinion: whatever a newer Python knows to be special is refused too.
    return None if address.is_global and not address.is_multicast else "not global (special-purpose)"


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _network(entry: str) -> Network | None:
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise HostUnresolved(f"Cannot resolve {host}: {reason}.") from None
    out: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


def _safe(url: str) -> str:
    """``url`` without credentials, query or fragment, shortened (for messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return repr(url.split("?", 1)[0][:100])
    return f"{parts.scheme}://{host}{parts.path}"[:200]


# -- pinning for httpx -------------------------------------------------------------------------------


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport that checks each request's URL with the policy and opens connections only to
    the addresses that check returned (in order, the first that accepts). The TLS handshake still sends
    and verifies the URL's host name, so a pinned address must present that name's certificate."""

    def __init__(self, policy: OutboundPolicy, verify: ssl.SSLContext | bool = True) -> None:
        # HTTPTransport.__init__ only builds ``self._pool`` and offers no way to name its network backend:
        # build the same pool (httpx's TLS context and default limits) with ours instead of calling it.
        self._policy = policy
        self._backend = _PinnedBackend()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=self._backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        _, host, port = self._policy.target(url)
        self._backend.pin(host, port, self._policy.resolve(url))
        return super().handle_request(request)


class _PinnedBackend(httpcore.SyncBackend):
    """Connects ``(host, port)`` to the addresses last pinned for it; refuses a host never pinned (no
    lookup of its own)."""

    def __init__(self) -> None:
        self._pinned: dict[tuple[str, int], list[Address]] = {}

    def pin(self, host: str, port: int, addresses: list[Address]) -> None:
        self._pinned[(host, port)] = addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._pinned.get((canonical_host(host), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the outbound policy")
        failure: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure
