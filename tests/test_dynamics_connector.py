"""The Microsoft Dynamics connector against the Dataverse fake (tests/fakes/dynamics.py) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from headwater.catalog.ids import DYNAMICS
from headwater.connectors.base import ReadRequest
from headwater.connectors.dynamics.config import RetryPolicy
from headwater.connectors.dynamics.errors import DynamicsProtocolError
from headwater.connectors.dynamics.reader import DynamicsConnector
from headwater.connectors.errors import (
    AuthenticationFailed,
    InvalidSourceParams,
    OutboundRefused,
    RateLimited,
    SourceNotFound,
    SourceUnavailable,
)
from headwater.connectors.outbound import OutboundPolicy
from headwater.connectors.registry import connector_for
from headwater.settings import Settings
from tests.conftest import make_settings
from tests.fakes.dynamics import DynamicsFake

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LOCAL = OutboundPolicy(["127.0.0.1"])
TOKEN_PATH = "/oauth2/v2.0/token"


@pytest.fixture
def dyn() -> Iterator[DynamicsFake]:
    with DynamicsFake() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def connect(settings: Settings) -> Iterator[Any]:
    made: list[DynamicsConnector] = []

    def make(auth: dict[str, Any], outbound: OutboundPolicy = LOCAL, **kwargs: Any) -> DynamicsConnector:
        connector = DynamicsConnector(auth, outbound, settings, retry=kwargs.pop("retry", FAST), **kwargs)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def read_all(connector: DynamicsConnector, **kwargs: Any) -> pa.Table:
    params = kwargs.pop("params", {"tableName": "contact"})
    batches = list(connector.read(ReadRequest(params=params, data_format="tabular", **kwargs)))
    for batch in batches:
        assert batch.num_rows <= kwargs.get("batch_size", 65_536)
    if not batches:
        return pa.table({"contactid": pa.array([], pa.string())})
    return pa.Table.from_batches(batches)


def ids(table: pa.Table) -> list[str]:
    return [str(v) for v in table.column("contactid").to_pylist()]


# -- tokens --------------------------------------------------------------------------------------------


def test_client_credentials_token_and_explore(dyn: DynamicsFake, connect: Any) -> None:
    items = [item.as_json() for item in connect(dyn.service_principal_auth()).explore()]

    assert items == [
        {"type": "table", "name": "account", "label": "Account", "path": "account"},
        {"type": "table", "name": "contact", "label": "Contact", "path": "contact"},
    ]
    assert dyn.count(f"/{dyn.tenant_id}{TOKEN_PATH}") == 1


def test_the_tenant_is_learned_from_the_challenge_when_absent(dyn: DynamicsFake, connect: Any) -> None:
    auth = {k: v for k, v in dyn.service_principal_auth().items() if k != "tenantId"}

    assert [i.name for i in connect(auth).explore()] == ["account", "contact"]
    assert dyn.count(f"/{dyn.tenant_id}{TOKEN_PATH}") == 1


def test_basic_authentication_uses_the_password_grant(dyn: DynamicsFake, connect: Any) -> None:
    connector = connect(dyn.basic_auth())

    assert connector.config.grant == "password"
    assert "contact" in [i.name for i in connector.explore()]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"servicePrincipalKey": "wrong~secret"}, "invalid_client"),
        ({"servicePrincipalId": "00000000-0000-0000-0000-000000000001"}, "unauthorized_client"),
        ({"tenantId": "not-my-tenant"}, "invalid_request"),
    ],
)
def test_refused_tokens_are_authentication_failed_without_secrets(
    dyn: DynamicsFake, connect: Any, change: dict[str, str], expected: str
) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        connect({**dyn.service_principal_auth(), **change}).explore()

    assert expected in caught.value.message and "Check servicePrincipalId" in caught.value.message
    assert "wrong~secret" not in caught.value.message and dyn.client_secret not in caught.value.message
    assert not caught.value.transient


def test_missing_credentials_are_refused_up_front(settings: Settings) -> None:
    with pytest.raises(AuthenticationFailed, match="servicePrincipalKey"):
        DynamicsConnector({"serviceUri": "https://acme.crm.dynamics.com"}, LOCAL, settings)
    with pytest.raises(AuthenticationFailed, match="serviceUri"):
        DynamicsConnector({"servicePrincipalId": "a", "servicePrincipalKey": "b"}, LOCAL, settings)


def test_plain_http_to_a_host_not_allowed_is_refused(dyn: DynamicsFake, connect: Any) -> None:
    with pytest.raises(OutboundRefused):
        connect(dyn.service_principal_auth(), outbound=OutboundPolicy([])).explore()

    assert dyn.seen == []


def test_a_next_link_to_another_origin_is_not_sent_the_token(dyn: DynamicsFake, connect: Any) -> None:
    dyn.generate("contact", 20, start=T0)
    dyn.next_link_base = dyn.base_url.replace("127.0.0.1", "localhost")
    connector = connect(dyn.service_principal_auth(), page_size=10)

    with pytest.raises(DynamicsProtocolError, match="not sent there"):
        read_all(connector)

    assert dyn.count("/contacts") == 1


def test_the_registry_builds_the_connector(dyn: DynamicsFake, settings: Settings) -> None:
    connector = connector_for(DYNAMICS, dyn.service_principal_auth(), LOCAL, settings)
    assert isinstance(connector, DynamicsConnector)
    connector.close()


# -- describe and full reads ---------------------------------------------------------------------------


def test_describe_maps_attribute_types_and_skips_unselectable_ones(dyn: DynamicsFake, connect: Any) -> None:
    schema = connect(dyn.service_principal_auth()).describe("contact")

    expected = {
        "contactid": pa.string(),
        "firstname": pa.string(),
        "birthdate": pa.timestamp("us", tz="UTC"),
        "modifiedon": pa.timestamp("us", tz="UTC"),
        "donotemail": pa.bool_(),
        "numberofchildren": pa.int64(),
        "versionnumber": pa.int64(),
        "statecode": pa.int64(),
        "annualincome": pa.float64(),
        "parentcustomerid": pa.string(),
    }
    assert {name: schema.field(name).type for name in expected} == expected
    assert schema.field("parentcustomerid").metadata[b"originalType"] == b"Customer"
    assert "entityimage" not in schema.names and "parentcustomeridname" not in schema.names


def test_an_unknown_entity_is_source_not_found(dyn: DynamicsFake, connect: Any) -> None:
    with pytest.raises(SourceNotFound, match="explore"):
        connect(dyn.service_principal_auth()).describe("nosuchentity")


def test_full_read_across_pages_with_types(dyn: DynamicsFake, connect: Any) -> None:
    [account] = dyn.insert("account", [{"name": "Contoso"}])
    [known] = dyn.insert(
        "contact",
        [
            {
                "firstname": "Ada",
                "lastname": "Lovelace",
                "birthdate": datetime(1815, 12, 10, tzinfo=UTC),
                "donotemail": True,
                "numberofchildren": 3,
                "annualincome": 1234.5,
                "parentcustomerid": account,
            }
        ],
        modified=datetime(2024, 2, 1, 8, 30, 15, tzinfo=UTC),
    )
    dyn.generate("contact", 2_499, start=T0)
    connector = connect(dyn.service_principal_auth(), page_size=1_000)

    table = read_all(connector, batch_size=700)

    assert table.num_rows == 2_500 and len(set(ids(table))) == 2_500
    assert dyn.count("/contacts") == 3  # two @odata.nextLink pages
    assert table.schema == connector.describe("contact")
    row = table.filter(pa.compute.equal(table.column("contactid"), known)).to_pylist()[0]
    assert row["modifiedon"] == datetime(2024, 2, 1, 8, 30, 15, tzinfo=UTC)
    assert row["birthdate"] == datetime(1815, 12, 10, tzinfo=UTC)  # DateOnly: midnight UTC
    assert (row["donotemail"], row["numberofchildren"], row["annualincome"]) == (True, 3, 1234.5)
    assert row["parentcustomerid"] == account and row["telephone1"] is None


def test_columns_from_the_source_connection(dyn: DynamicsFake, connect: Any) -> None:
    dyn.insert("contact", [{"firstname": "Grace", "emailaddress1": "grace@example.org"}])
    columns = [{"name": "firstname", "type": "string"}, {"name": "EmailAddress1", "type": "string"}]

    table = read_all(
        connect(dyn.service_principal_auth()), params={"tableName": "contacts", "columns": columns}
    )

    assert table.to_pylist() == [{"firstname": "Grace", "EmailAddress1": "grace@example.org"}]


def test_unknown_columns_are_invalid_params(dyn: DynamicsFake, connect: Any) -> None:
    params = {"tableName": "contact", "columns": [{"name": "nosuchattribute"}]}

    with pytest.raises(InvalidSourceParams, match="source connection"):
        read_all(connect(dyn.service_principal_auth()), params=params)


def test_preview_reads_only_the_rows_it_shows(dyn: DynamicsFake, connect: Any) -> None:
    dyn.generate("contact", 50, start=T0)

    assert connect(dyn.service_principal_auth()).preview("contact", limit=4).num_rows == 4
    assert "%24top=4" in dyn.seen[-1].query


# -- incremental windows -------------------------------------------------------------------------------


def window(
    connector: DynamicsConnector, start: datetime | None, end: datetime | None, **kw: Any
) -> list[str]:
    return ids(read_all(connector, window_start=start, window_end=end, **kw))


def test_window_includes_its_end_and_excludes_its_start(dyn: DynamicsFake, connect: Any) -> None:
    offsets = [0, 1, 5, 6]
    made = {
        s: dyn.insert("contact", [{"lastname": str(s)}], modified=T0 + timedelta(seconds=s))[0]
        for s in offsets
    }
    connector = connect(dyn.service_principal_auth())

    assert sorted(window(connector, T0, T0 + timedelta(seconds=5))) == sorted([made[1], made[5]])
    assert window(connector, None, T0) == [made[0]]
    assert window(connector, T0 + timedelta(seconds=5), None) == [made[6]]


def test_sub_second_window_bounds_are_exact(dyn: DynamicsFake, connect: Any) -> None:
    offsets = [0, 1, 5, 6]
    made = {
        s: dyn.insert("contact", [{"lastname": str(s)}], modified=T0 + timedelta(seconds=s))[0]
        for s in offsets
    }
    connector = connect(dyn.service_principal_auth())
    start, end = T0 + timedelta(milliseconds=500), T0 + timedelta(seconds=5, milliseconds=500)

    assert sorted(window(connector, start, end)) == sorted([made[1], made[5]])
    assert window(connector, None, start) == [made[0]]


def test_a_bulk_update_is_read_exactly_once_across_consecutive_windows(
    dyn: DynamicsFake, connect: Any
) -> None:
    created = dyn.generate("contact", 3_000, start=T0)
    connector = connect(dyn.service_principal_auth(), page_size=1_000)
    first_end = T0 + timedelta(hours=1)
    first = window(connector, None, first_end)

    bulk_at = T0 + timedelta(hours=2)  # one timestamp for 2,345 rows: three pages
    dyn.update("contact", created[:2_345], {"description": "bulk"}, modified=bulk_at)
    second = window(connector, first_end, bulk_at, batch_size=500)
    third = window(connector, bulk_at, bulk_at + timedelta(hours=1))

    assert sorted(first) == sorted(created)
    assert sorted(second) == sorted(created[:2_345])
    assert third == []


# -- failures ------------------------------------------------------------------------------------------


def test_an_expired_token_mid_read_is_renewed_without_losing_or_repeating_rows(
    dyn: DynamicsFake, connect: Any
) -> None:
    created = dyn.generate("contact", 2_500, start=T0)
    connector = connect(dyn.service_principal_auth(), page_size=1_000)
    request = ReadRequest(params={"tableName": "contact"}, data_format="tabular", batch_size=1_000)
    seen: list[str] = []

    for batch in connector.read(request):
        seen += batch.column("contactid").to_pylist()
        if len(seen) == 1_000:
            dyn.expire_sessions()

    assert sorted(seen) == sorted(created)
    assert connector.client.tokens_fetched == 2 and dyn.count(TOKEN_PATH) == 2


def test_a_token_about_to_expire_is_renewed_before_use(dyn: DynamicsFake, connect: Any) -> None:
    dyn.token_lifetime = 30  # within the minute of margin: every request first fetches a new token
    connector = connect(dyn.service_principal_auth())

    connector.describe("contact")

    assert dyn.count(TOKEN_PATH) == dyn.count("/api/data") == 2


def test_503_then_success_is_retried(dyn: DynamicsFake, connect: Any) -> None:
    created = dyn.generate("contact", 1_500, start=T0)
    dyn.fail(503, times=2, path="/contacts")

    assert sorted(ids(read_all(connect(dyn.service_principal_auth())))) == sorted(created)
    assert dyn.count("/contacts") == 3


def test_429_waits_for_retry_after(dyn: DynamicsFake, connect: Any) -> None:
    dyn.generate("contact", 10, start=T0)
    dyn.fail(429, retry_after=1, path="/contacts")
    connector = connect(dyn.service_principal_auth(), retry=RetryPolicy(base_delay=0.001))

    assert read_all(connector).num_rows == 10

    refused, retried = [s for s in dyn.seen if s.path.endswith("/contacts")]
    assert retried.at - refused.at >= 1.0


def test_429_asking_for_a_long_wait_is_rate_limited_at_once(dyn: DynamicsFake, connect: Any) -> None:
    dyn.fail(429, retry_after=300, path="/contacts")

    with pytest.raises(RateLimited) as caught:
        read_all(connect(dyn.service_principal_auth()))

    assert caught.value.retry_after == 300 and caught.value.transient


def test_persistent_503_is_source_unavailable_after_bounded_retries(dyn: DynamicsFake, connect: Any) -> None:
    dyn.fail(503, times=None, path="/api/data")
    waits: list[float] = []

    with pytest.raises(SourceUnavailable) as caught:
        connect(
            dyn.service_principal_auth(), retry=RetryPolicy(base_delay=0.001, sleep=waits.append)
        ).explore()

    assert caught.value.transient is True
    assert dyn.count("/api/data") == 5 and len(waits) == 4
