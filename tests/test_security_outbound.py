"""Issue 12 section 4 and 5c: the outbound policy allows only globally routable addresses, reads a host
one way only, and connectors connect to the address it checked.

The policy is judged form by form on IP literals (no lookup, no connection is made), then the same forms
are sent through the real server: a Salesforce or Dynamics explore, or a destination saved with such a
URL, answers 400 naming the field, and nothing reaches the fakes."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from headwater.connectors.errors import OutboundRefused
from headwater.connectors.outbound import Address, OutboundPolicy
from headwater.connectors.salesforce.config import RetryPolicy
from headwater.connectors.salesforce.reader import SalesforceConnector
from headwater.settings import Settings
from tests.activation_helpers import connection_body, request_params
from tests.conftest import make_settings
from tests.fakes.dynamics import DynamicsFake
from tests.fakes.salesforce import SalesforceFake
from tests.support import ApiClient, LiveServer
from tests.test_destinations import paths_of, target_body

FS = "/data/foundation/flowservice"
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
DYNAMICS = "38ad80fe-8b06-4938-94f4-d4ee80266b07"
POSTGRESQL = "deb251f1-86be-44d2-ae93-634cd683b572"
FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01)


def teredo(server: str, client: str) -> str:
    """The Teredo address (2001::/32) of a client behind ``client`` using the Teredo ``server``."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
    value |= int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF  # the client address is stored inverted
    return f"[{ipaddress.IPv6Address(value)}]"


# Legacy numeric spellings of 127.0.0.1 that resolvers still accept (inet_aton) and httpx cannot parse.
LEGACY_SPELLINGS = [
    "0177.0.0.1",
    "127.000.000.001",
    "0x7f.1",
    "2130706433",
    "127.1",
    "0x7f000001",
    "017700000001",
]

REFUSED = [
    # IPv4 special-purpose ranges
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT, RFC 6598)
    "100.100.100.200",  # Alibaba Cloud metadata
    "100.127.255.254",
    "127.0.0.2",
    "169.254.169.254",
    "172.16.0.1",
    "192.0.0.8",
    "192.0.0.9",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6 special-purpose ranges
    "[::]",
    "[::1]",
    "[fec0::1]",  # site-local (deprecated)
    "[fc00::1]",
    "[fd00:ec2::254]",  # AWS metadata over IPv6
    "[fe80::1]",
    "[ff02::1]",
    "[ff0e::1]",
    "[100::1]",
    "[5f00::1]",
    "[2001:2::1]",
    "[2001:20::1]",
    "[2001:db8::1]",
    "[3fff::1]",
    "[64:ff9b:1::a00:1]",  # NAT64 local-use prefix
    # IPv6 forms that embed a refused IPv4 address
    "[::ffff:127.0.0.1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:100.64.0.1]",
    "[::ffff:169.254.169.254]",
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    "[::8.8.8.8]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[2002:6440:1::]",  # 6to4 of 100.64.0.1
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b::6464:64c8]",  # NAT64 of 100.100.100.200
    teredo("8.8.8.8", "127.0.0.1"),
    teredo("127.0.0.1", "8.8.8.8"),
    teredo("8.8.8.8", "10.0.0.1"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "192.0.1.1",
    "100.128.0.1",
    "[2606:4700:4700::1111]",
    "[2a00:1450:4001::1]",
    "[::ffff:8.8.8.8]",
    "[64:ff9b::808:808]",  # NAT64 of 8.8.8.8: IPv6-only networks reach IPv4 hosts this way
    "[2002:808:808::]",  # 6to4 of 8.8.8.8
    teredo("8.8.8.8", "1.1.1.1"),
]


# -- the policy, form by form ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", [*LEGACY_SPELLINGS, "1.2.3.4.5", "example.0x1", "%31%32%37.0.0.1", "[fe80::1%25eth0]"]
)
def test_hosts_not_spelled_the_standard_way_are_refused_before_any_lookup(host: str) -> None:
    policy = OutboundPolicy(["127.0.0.1"])  # 127.0.0.1 itself is allowed: only the spelling is refused

    with pytest.raises(OutboundRefused, match="written the standard way"):
        policy.check_url(f"https://{host}/x")
    with pytest.raises(OutboundRefused, match="written the standard way"):
        policy.target(f"https://{host}:8443/x")


@pytest.mark.parametrize("host", REFUSED)
def test_addresses_that_are_not_globally_routable_are_refused(host: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        OutboundPolicy([]).check_url(f"https://{host}/x")
    assert "not a globally routable" in caught.value.message or "never connects" in caught.value.message


@pytest.mark.parametrize("host", ALLOWED)
def test_globally_routable_addresses_are_allowed(host: str) -> None:
    OutboundPolicy([]).check_url(f"https://{host}/x")


@pytest.mark.parametrize(
    ("allow", "host"),
    [
        (["100.64.0.0/10"], "100.64.0.1"),
        (["10.0.0.0/8"], "[::ffff:10.0.0.1]"),
        (["64:ff9b::/96"], "[64:ff9b::a00:1]"),
        (["fec0::/10"], "[fec0::1]"),
    ],
)
def test_the_allow_list_opens_internal_ranges_and_their_mapped_forms(allow: list[str], host: str) -> None:
    OutboundPolicy(allow).check_url(f"https://{host}/x")


@pytest.mark.parametrize(
    ("allow", "host"),
    [
        (["10.0.0.0/8"], "[64:ff9b::a00:1]"),  # through a NAT64 gateway: not the listed IPv4 host
        (["127.0.0.1"], "[2002:7f00:1::]"),
        (["127.0.0.1"], "[64:ff9b::7f00:1]"),
    ],
)
def test_listing_an_ipv4_address_does_not_list_its_gateway_forms(allow: list[str], host: str) -> None:
    with pytest.raises(OutboundRefused, match="a form of"):
        OutboundPolicy(allow).check_url(f"https://{host}/x")


@pytest.mark.parametrize(
    ("allow", "host"),
    [
        (["100.64.0.0/10"], "100.100.100.200"),
        (["100.64.0.0/10"], "[64:ff9b::6464:64c8]"),
        (["fd00::/8"], "[fd00:ec2::254]"),
        (["169.254.0.0/16"], "169.254.169.254"),  # settings refuse this entry; the policy holds anyway
        (["0.0.0.0/8"], "0.0.0.0"),
        (["224.0.0.0/4"], "224.0.0.1"),
    ],
)
def test_metadata_and_unspecified_addresses_are_never_reached_whatever_the_list(
    allow: list[str], host: str
) -> None:
    with pytest.raises(OutboundRefused, match="never connects"):
        OutboundPolicy(allow).check_url(f"https://{host}/x")


def test_a_host_listed_by_name_may_resolve_to_internal_addresses_but_never_to_metadata() -> None:
    policy = OutboundPolicy(["crm.internal.example"])
    policy.check_address("crm.internal.example", ipaddress.ip_address("10.1.2.3"), named=True)
    with pytest.raises(OutboundRefused, match="never connects"):
        policy.check_address("crm.internal.example", ipaddress.ip_address("169.254.169.254"), named=True)
    with pytest.raises(OutboundRefused, match="internal address"):
        policy.check_address("other.example", ipaddress.ip_address("10.1.2.3"))


@pytest.mark.parametrize("entry", ["100.100.100.200", "100.100.100.200/32", "fd00:ec2::254"])
def test_settings_refuse_naming_a_metadata_address(entry: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="metadata"):
        Settings(home=tmp_path, environment="development", outbound_allow=entry)


# -- through the real server -------------------------------------------------------------------------------


@pytest.fixture
def salesforce() -> Iterator[SalesforceFake]:
    with SalesforceFake() as fake:
        yield fake


@pytest.fixture
def dynamics() -> Iterator[DynamicsFake]:
    with DynamicsFake() as fake:
        yield fake


def explore(api: ApiClient, spec: str, auth_spec: str, params: dict[str, Any]) -> Any:
    created = api.post(
        f"{FS}/connections",
        json={
            "name": "Outbound",
            "auth": {"specName": auth_spec, "params": params},
            "connectionSpec": {"id": spec, "version": "1.0"},
        },
    )
    assert created.status_code == 201, created.text
    return api.get(f"{FS}/connections/{created.json()['id']}/explore", params={"objectType": "root"})


def with_host(url: str, host: str) -> str:
    """``url`` (http://127.0.0.1:PORT) with its host spelled ``host``."""
    return url.replace("127.0.0.1", host)


@pytest.mark.parametrize("host", ["0177.0.0.1", "127.000.000.001", "0x7f.1", "2130706433", "127.1"])
def test_salesforce_explore_of_a_legacy_spelling_is_a_400_naming_the_field(
    api: ApiClient, salesforce: SalesforceFake, host: str
) -> None:
    auth = {**salesforce.soap_auth(), "environmentUrl": with_host(salesforce.base_url, host)}

    response = explore(api, SALESFORCE, "Basic Authentication", auth)

    assert response.status_code == 400, response.text
    assert "environmentUrl" in response.json()["detail"] and "standard way" in response.json()["detail"]
    assert salesforce.seen == []


@pytest.mark.parametrize("host", ["0177.0.0.1", "2130706433"])
def test_dynamics_explore_of_a_legacy_spelling_is_a_400_naming_the_field(
    api: ApiClient, dynamics: DynamicsFake, host: str
) -> None:
    auth = {**dynamics.service_principal_auth(), "tokenUrl": with_host(dynamics.base_url, host)}

    response = explore(api, DYNAMICS, "Service Principal Based Authentication", auth)

    assert response.status_code == 400, response.text
    assert "tokenUrl" in response.json()["detail"] and "standard way" in response.json()["detail"]
    assert dynamics.seen == []


@pytest.mark.parametrize("url", ["https://100.64.0.1", "https://[2002:7f00:1::]", "https://100.100.100.200"])
def test_salesforce_explore_of_a_special_purpose_address_is_refused(
    api: ApiClient, salesforce: SalesforceFake, url: str
) -> None:
    response = explore(
        api, SALESFORCE, "Basic Authentication", {**salesforce.soap_auth(), "environmentUrl": url}
    )

    assert response.status_code == 400, response.text
    assert "environmentUrl" in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "https://100.64.0.1/api",
        "https://100.100.100.200/latest/meta-data/",
        "https://[2002:7f00:1::]/api",
        "https://[64:ff9b::7f00:1]/api",
        "https://[::ffff:100.64.0.1]/api",
        "https://[fec0::1]/api",
        "https://0177.0.0.1/api",
        "https://127.000.000.001/api",
        "https://2130706433/api",
    ],
)
def test_destinations_to_such_addresses_are_refused_at_save(api: ApiClient, url: str) -> None:
    conn = api.post(f"{FS}/connections", json=connection_body("SSRF forms")).json()["id"]

    response = api.post(f"{FS}/targetConnections", json=target_body(conn, request_params(url)))

    assert response.status_code == 400, response.text
    assert "params.url" in paths_of(response)


def test_a_postgresql_source_on_the_metadata_database_is_refused(api: ApiClient, server: LiveServer) -> None:
    if not server.settings.database_url:
        pytest.skip("the metadata store of this server is SQLite")
    dsn = server.settings.database_url.replace("postgresql+psycopg://", "postgresql://")

    response = explore(api, POSTGRESQL, "Connection String Based Authentication", {"connectionString": dsn})

    assert response.status_code == 400, response.text
    assert "metadata database" in response.json()["detail"]


@pytest.mark.parametrize("host", ["0177.0.0.1", "127.000.000.001"])
def test_a_postgresql_source_spelled_the_legacy_way_is_a_400(api: ApiClient, host: str) -> None:
    params = {"server": host, "database": "crm", "username": "postgres", "sslMode": "disable"}

    response = explore(api, POSTGRESQL, "Basic Authentication", params)

    assert response.status_code == 400, response.text
    assert "standard way" in response.json()["detail"]


# -- connecting to the checked address -------------------------------------------------------------------


class PinningPolicy(OutboundPolicy):
    """Answers for a name no DNS resolves (``.invalid``, RFC 6761) with the address it checked: a client
    reaches the fake only if it connects to what the policy returned instead of looking the name up."""

    def __init__(self, name: str) -> None:
        super().__init__(["127.0.0.1", name])
        self.name = name
        self.checked: list[str] = []

    def resolve(self, url: str) -> list[Address]:
        host = urlsplit(url).hostname or ""
        self.checked.append(host)
        if host == self.name:
            return [ipaddress.ip_address("127.0.0.1")]
        return super().resolve(url)


def test_salesforce_connects_to_the_address_the_policy_checked(
    salesforce: SalesforceFake, tmp_path: Path
) -> None:
    name = "crm.rebind.invalid"
    salesforce.add_object("Person", {"email": "email"})
    salesforce.instance_url = with_host(salesforce.base_url, name)
    auth = {**salesforce.soap_auth(), "environmentUrl": salesforce.instance_url}
    policy = PinningPolicy(name)
    connector = SalesforceConnector(auth, policy, make_settings(tmp_path), retry=FAST)
    try:
        names = {item.as_json()["name"] for item in connector.explore()}
    finally:
        connector.close()

    assert "Person" in names
    assert policy.checked and set(policy.checked) == {name}  # every request was checked, none went around


def test_dynamics_connects_to_the_address_the_policy_checked(dynamics: DynamicsFake, tmp_path: Path) -> None:
    from headwater.connectors.dynamics.reader import DynamicsConnector

    name = "env.rebind.invalid"
    auth = {**dynamics.service_principal_auth(), "tokenUrl": with_host(dynamics.base_url, name)}
    policy = PinningPolicy(name)
    connector = DynamicsConnector(auth, policy, make_settings(tmp_path), retry=FAST)
    try:
        list(connector.explore())
    finally:
        connector.close()

    assert (
        name in policy.checked
    )  # the token request went to the pinned address of a name that never resolves


def test_a_pinned_https_connection_still_verifies_the_name(tmp_path: Path) -> None:
    from tests.fakes.sink import SinkFake

    with SinkFake() as sink:
        port = sink.https_url.rsplit(":", 1)[1]
        # The certificate names 127.0.0.1 and localhost; the policy pins both names below to 127.0.0.1.
        good, wrong = PinningPolicy("localhost"), PinningPolicy("bank.rebind.invalid")
        trusted = ssl.create_default_context(cafile=sink.ca_file)
        with good.client(verify=trusted) as client:
            assert client.post(f"https://localhost:{port}/pinned", content=b"{}").status_code == 200
        with (
            wrong.client(verify=trusted) as client,
            pytest.raises(httpx.ConnectError, match="certificate"),
        ):
            client.post(f"https://bank.rebind.invalid:{port}/pinned", content=b"{}")
        assert [r.path for r in sink.received()] == ["/pinned"]
