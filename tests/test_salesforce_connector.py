"""The Salesforce connector against the Salesforce fake (tests/fakes/salesforce.py) on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from headwater.catalog.ids import SALESFORCE, SALESFORCE_SERVICE_CLOUD
from headwater.connectors.base import ReadRequest
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
from headwater.connectors.salesforce.config import RetryPolicy
from headwater.connectors.salesforce.reader import SalesforceConnector
from headwater.settings import Settings
from tests.conftest import make_settings
from tests.fakes.salesforce import SalesforceFake

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LOCAL = OutboundPolicy(["127.0.0.1"])


@pytest.fixture
def sf() -> Iterator[SalesforceFake]:
    with SalesforceFake() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def connect(settings: Settings) -> Iterator[Any]:
    made: list[SalesforceConnector] = []

    def make(auth: dict[str, Any], outbound: OutboundPolicy = LOCAL, **kwargs: Any) -> SalesforceConnector:
        connector = SalesforceConnector(auth, outbound, settings, retry=kwargs.pop("retry", FAST), **kwargs)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def read_all(connector: SalesforceConnector, **kwargs: Any) -> pa.Table:
    params = kwargs.pop("params", {"tableName": "Contact"})
    batches = list(connector.read(ReadRequest(params=params, data_format="tabular", **kwargs)))
    for batch in batches:
        assert batch.num_rows <= kwargs.get("batch_size", 65_536)
    return pa.Table.from_batches(batches) if batches else pa.table({"Id": pa.array([], pa.string())})


def ids(table: pa.Table) -> list[str]:
    return [str(v) for v in table.column("Id").to_pylist()]


# -- login ---------------------------------------------------------------------------------------------


def test_soap_login_escapes_the_password_and_token_and_explores(sf: SalesforceFake, connect: Any) -> None:
    sf.add_object("AccountHistory", {"Field": "string"}, queryable=False)
    connector = connect(sf.soap_auth())  # the password holds '<' and '&': the envelope must escape them

    items = [item.as_json() for item in connector.explore()]

    assert {"type": "table", "name": "Contact", "label": "Contact", "path": "Contact"} in items
    assert "AccountHistory" not in [i["name"] for i in items]
    assert sf.count("/services/Soap/u/59.0") == 1
    assert sf.count("/services/oauth2/token") == 0


def test_soap_invalid_login_is_authentication_failed_without_secrets(
    sf: SalesforceFake, connect: Any
) -> None:
    auth = {**sf.soap_auth(), "password": "wrong-password"}

    with pytest.raises(AuthenticationFailed) as caught:
        connect(auth).explore()

    assert "INVALID_LOGIN" in caught.value.message
    assert "securityToken" in caught.value.message  # says what to check
    assert "wrong-password" not in caught.value.message and sf.security_token not in caught.value.message
    assert caught.value.transient is False
    assert sf.count("/services/Soap") == 1  # a refused login is not retried


def test_oauth_password_grant(sf: SalesforceFake, connect: Any) -> None:
    connector = connect(sf.password_grant_auth())

    assert "Contact" in [i.name for i in connector.explore()]
    assert sf.count("/services/oauth2/token") == 1
    assert sf.count("/services/Soap") == 0


def test_oauth_password_grant_appends_a_separate_security_token(sf: SalesforceFake, connect: Any) -> None:
    auth = {**sf.password_grant_auth(), "password": sf.password, "securityToken": sf.security_token}

    assert "Contact" in [i.name for i in connect(auth).explore()]


def test_oauth_client_credentials(sf: SalesforceFake, connect: Any) -> None:
    connector = connect(sf.client_credentials_auth())

    assert connector.config.grant == "client_credentials"
    assert "Account" in [i.name for i in connector.explore()]
    assert sf.count("/services/oauth2/token") == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"clientSecret": "not-the-secret"}, "invalid_client"), ({"password": "nope-nope"}, "invalid_grant")],
)
def test_oauth_refusals_are_authentication_failed(
    sf: SalesforceFake, connect: Any, change: dict[str, str], expected: str
) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        connect({**sf.password_grant_auth(), **change}).explore()

    assert expected in caught.value.message
    assert all(secret not in caught.value.message for secret in change.values())


def test_missing_credentials_are_refused_up_front(settings: Settings) -> None:
    with pytest.raises(AuthenticationFailed, match="username, password and securityToken"):
        SalesforceConnector({"environmentUrl": "https://login.salesforce.com"}, LOCAL, settings)
    with pytest.raises(AuthenticationFailed, match="clientSecret"):
        SalesforceConnector({"clientId": "x"}, LOCAL, settings)


def test_plain_http_to_a_host_not_allowed_is_refused(sf: SalesforceFake, connect: Any) -> None:
    with pytest.raises(OutboundRefused):
        connect(sf.soap_auth(), outbound=OutboundPolicy([])).explore()

    assert sf.seen == []


def test_the_instance_url_a_login_returns_is_checked(sf: SalesforceFake, connect: Any) -> None:
    sf.instance_url = "http://169.254.169.254"

    with pytest.raises(OutboundRefused):
        connect(sf.client_credentials_auth()).explore()

    assert sf.count("/services/data") == 0


def test_the_registry_builds_the_connector_for_both_specs(sf: SalesforceFake, settings: Settings) -> None:
    for spec in (SALESFORCE, SALESFORCE_SERVICE_CLOUD):
        connector = connector_for(spec, sf.soap_auth(), LOCAL, settings)
        assert isinstance(connector, SalesforceConnector)
        connector.close()


# -- describe and full reads ---------------------------------------------------------------------------


def test_describe_maps_salesforce_types_to_arrow(sf: SalesforceFake, connect: Any) -> None:
    sf.add_object(
        "Mixed__c", {"Ratio__c": "percent", "Big__c": "long", "Home__c": "address", "Blob__c": "base64"}
    )
    connector = connect(sf.soap_auth())

    schema = connector.describe("Contact")

    expected = {
        "Id": pa.string(),
        "LastModifiedDate": pa.timestamp("us", tz="UTC"),
        "Birthdate": pa.date32(),
        "HasOptedOutOfEmail": pa.bool_(),
        "Visits__c": pa.int64(),
        "Score__c": pa.float64(),
        "LifetimeValue__c": pa.float64(),
        "Email": pa.string(),
        "AccountId": pa.string(),
        "Website__c": pa.string(),
    }
    assert {name: schema.field(name).type for name in expected} == expected
    assert schema.field("LifetimeValue__c").metadata[b"originalType"] == b"currency"
    mixed = connector.describe("Mixed__c")
    assert mixed.field("Ratio__c").type == pa.float64() and mixed.field("Big__c").type == pa.int64()
    assert "Home__c" not in mixed.names and "Blob__c" not in mixed.names  # compound and blob: on request


def test_describe_of_an_unknown_object_is_source_not_found(sf: SalesforceFake, connect: Any) -> None:
    with pytest.raises(SourceNotFound):
        connect(sf.soap_auth()).describe("Nope__c")


def test_full_read_across_pages_with_types(sf: SalesforceFake, connect: Any) -> None:
    [known] = sf.insert(
        "Contact",
        [
            {
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Email": "ada@example.org",
                "Birthdate": date(1815, 12, 10),
                "HasOptedOutOfEmail": True,
                "Visits__c": 42,
                "Score__c": 9.5,
                "LifetimeValue__c": 1234.56,
            }
        ],
        modified=datetime(2024, 2, 1, 8, 30, 15, 123_000, tzinfo=UTC),
    )
    sf.generate("Contact", 4_499, start=T0)
    connector = connect(sf.soap_auth())

    table = read_all(connector, batch_size=1_000)

    assert table.num_rows == 4_500 and len(set(ids(table))) == 4_500
    assert sf.count("/query") == 3  # the query, then two nextRecordsUrl pages of 2000
    assert table.schema == connector.describe("Contact")
    row = table.filter(pa.compute.equal(table.column("Id"), known)).to_pylist()[0]
    assert row["LastModifiedDate"] == datetime(2024, 2, 1, 8, 30, 15, 123_000, tzinfo=UTC)
    assert row["Birthdate"] == date(1815, 12, 10)
    assert (row["HasOptedOutOfEmail"], row["Visits__c"], row["Score__c"]) == (True, 42, 9.5)
    assert row["LifetimeValue__c"] == 1234.56 and row["Phone"] is None


def test_columns_from_the_source_connection_keep_their_spelling(sf: SalesforceFake, connect: Any) -> None:
    sf.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    sf.insert("Person", [{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.org"}])
    columns = [
        {"name": "first_name", "type": "string", "meta": {"originalType": "String"}},
        {"name": "LAST_NAME", "type": "string"},
        {"name": "email", "type": "string"},
    ]

    table = read_all(connect(sf.soap_auth()), params={"tableName": "Person", "columns": columns})

    assert table.column_names == ["first_name", "LAST_NAME", "email"]
    assert table.to_pylist() == [{"first_name": "Grace", "LAST_NAME": "Hopper", "email": "grace@example.org"}]
    assert "SELECT first_name, last_name, email FROM Person" in sf.seen[-1].query.replace("+", " ").replace(
        "%2C", ","
    )


@pytest.mark.parametrize("column", ["Nope__c", "Account.Name"])
def test_unreadable_columns_are_invalid_params(sf: SalesforceFake, connect: Any, column: str) -> None:
    params = {"tableName": "Contact", "columns": [{"name": column}]}

    with pytest.raises(InvalidSourceParams, match="source connection"):
        read_all(connect(sf.soap_auth()), params=params)


def test_a_non_datetime_delta_column_is_invalid_params(sf: SalesforceFake, connect: Any) -> None:
    with pytest.raises(InvalidSourceParams, match="datetime"):
        read_all(connect(sf.soap_auth()), delta_column="Email", window_end=T0)


def test_preview_asks_salesforce_for_only_the_rows_it_shows(sf: SalesforceFake, connect: Any) -> None:
    sf.generate("Contact", 300, start=T0)

    table = connect(sf.soap_auth()).preview("Contact", limit=5)

    assert table.num_rows == 5
    assert "LIMIT+5" in sf.seen[-1].query


# -- incremental windows -------------------------------------------------------------------------------


def window(
    connector: SalesforceConnector, start: datetime | None, end: datetime | None, **kw: Any
) -> list[str]:
    kw.setdefault("delta_column", "LastModifiedDate")
    return ids(read_all(connector, window_start=start, window_end=end, **kw))


def test_window_includes_its_end_and_excludes_its_start(sf: SalesforceFake, connect: Any) -> None:
    stamps = {
        "at_start": T0,
        "after_start": T0 + timedelta(milliseconds=1),
        "at_end": T0 + timedelta(seconds=5),
        "after_end": T0 + timedelta(seconds=5, milliseconds=1),
    }
    made = {name: sf.insert("Contact", [{"LastName": name}], modified=at)[0] for name, at in stamps.items()}
    connector = connect(sf.soap_auth())

    got = window(connector, T0, T0 + timedelta(seconds=5))

    assert sorted(got) == sorted([made["after_start"], made["at_end"]])
    assert window(connector, None, T0) == [made["at_start"]]
    assert sorted(window(connector, T0 + timedelta(seconds=5), None)) == [made["after_end"]]


def test_sub_second_window_bounds_are_exact(sf: SalesforceFake, connect: Any) -> None:
    # SOQL literals have whole seconds: the query is widened and the rows filtered exactly afterwards.
    start, end = T0 + timedelta(milliseconds=250), T0 + timedelta(seconds=5, milliseconds=750)
    offsets = [0, 250, 251, 999, 5_750, 5_751, 6_000]
    made = {
        ms: sf.insert("Contact", [{"LastName": str(ms)}], modified=T0 + timedelta(milliseconds=ms))[0]
        for ms in offsets
    }
    connector = connect(sf.soap_auth())

    got = window(connector, start, end, delta_column="SystemModstamp")

    assert sorted(got) == sorted([made[251], made[999], made[5_750]])
    assert sorted(window(connector, end, None)) == sorted([made[5_751], made[6_000]])


def test_rows_with_a_null_delta_come_only_without_a_lower_bound(sf: SalesforceFake, connect: Any) -> None:
    sf.add_object("Sync__c", {"Synced__c": "datetime"})
    [dated] = sf.insert("Sync__c", [{"Synced__c": T0}])
    [undated] = sf.insert("Sync__c", [{"Synced__c": None}])
    connector = connect(sf.soap_auth())
    params = {"tableName": "Sync__c"}

    assert sorted(window(connector, None, T0, params=params, delta_column="Synced__c")) == sorted(
        [dated, undated]
    )
    assert window(connector, T0 - timedelta(days=1), T0, params=params, delta_column="Synced__c") == [dated]


def test_a_date_delta_column_compares_as_midnight_utc(sf: SalesforceFake, connect: Any) -> None:
    made = {
        d: sf.insert("Contact", [{"LastName": str(d), "Birthdate": date(2024, 1, d)}])[0] for d in (1, 2, 3)
    }
    connector = connect(sf.soap_auth())
    day = timedelta(days=1)
    jan1 = datetime(2024, 1, 1, tzinfo=UTC)

    assert window(connector, jan1, jan1 + day, delta_column="Birthdate") == [made[2]]
    assert window(connector, jan1 + day / 2, jan1 + day * 1.5, delta_column="Birthdate") == [made[2]]


def test_a_query_too_long_for_one_request_is_invalid_params(sf: SalesforceFake, connect: Any) -> None:
    sf.add_object("Wide__c", {f"Some_Rather_Long_Custom_Field_Name_{i:03d}__c": "string" for i in range(400)})

    with pytest.raises(InvalidSourceParams, match="list only the columns you need"):
        read_all(connect(sf.soap_auth()), params={"tableName": "Wide__c"})


def test_a_bulk_update_is_read_exactly_once_across_consecutive_windows(
    sf: SalesforceFake, connect: Any
) -> None:
    created = sf.generate("Contact", 5_000, start=T0, step=timedelta(milliseconds=7))
    connector = connect(sf.soap_auth())
    first_end = T0 + timedelta(minutes=1)
    first = window(connector, None, first_end)

    bulk_at = T0 + timedelta(minutes=5)  # one timestamp for 4,321 rows: more than two query pages
    sf.update("Contact", created[:4_321], {"LeadSource": "Bulk"}, modified=bulk_at)
    second_end = bulk_at  # the next run's window ends exactly at the bulk update's timestamp
    second = window(connector, first_end, second_end, batch_size=1_000)
    third = window(connector, second_end, T0 + timedelta(hours=1))

    assert sorted(first) == sorted(created)
    assert sorted(second) == sorted(created[:4_321])
    assert third == []


# -- failures ------------------------------------------------------------------------------------------


def test_an_expired_session_mid_read_logs_in_again_without_losing_or_repeating_rows(
    sf: SalesforceFake, connect: Any
) -> None:
    created = sf.generate("Contact", 5_000, start=T0)
    connector = connect(sf.soap_auth())
    request = ReadRequest(params={"tableName": "Contact"}, data_format="tabular", batch_size=2_000)
    seen: list[str] = []

    for batch in connector.read(request):
        seen += batch.column("Id").to_pylist()
        if len(seen) == 2_000:
            sf.expire_sessions()  # the next page's request meets INVALID_SESSION_ID

    assert sorted(seen) == sorted(created)
    assert sf.count("/services/Soap") == 2
    assert connector.client.logins == 2


def test_503_then_success_is_retried(sf: SalesforceFake, connect: Any) -> None:
    created = sf.generate("Contact", 2_500, start=T0)
    sf.fail(503, times=2, path="/query/")  # the second page fails twice

    table = read_all(connect(sf.soap_auth()))

    assert sorted(ids(table)) == sorted(created)
    assert sf.count("/query/") == 3


def test_429_waits_for_retry_after(sf: SalesforceFake, connect: Any) -> None:
    sf.generate("Contact", 10, start=T0)
    sf.fail(429, retry_after=1, path="/query")
    connector = connect(sf.soap_auth(), retry=RetryPolicy(base_delay=0.001))  # real sleep: Retry-After

    assert read_all(connector).num_rows == 10

    refused, retried = [s for s in sf.seen if "/query" in s.path]
    assert retried.at - refused.at >= 1.0


def test_429_asking_for_a_long_wait_is_rate_limited_at_once(sf: SalesforceFake, connect: Any) -> None:
    sf.fail(429, retry_after=120, path="/query")

    with pytest.raises(RateLimited) as caught:
        read_all(connect(sf.soap_auth()))

    assert caught.value.retry_after == 120 and caught.value.transient
    assert sf.count("/query") == 1


def test_persistent_503_is_source_unavailable_after_bounded_retries(sf: SalesforceFake, connect: Any) -> None:
    sf.fail(503, times=None, path="/services/data")
    waits: list[float] = []
    connector = connect(sf.soap_auth(), retry=RetryPolicy(base_delay=0.001, sleep=waits.append))

    with pytest.raises(SourceUnavailable) as caught:
        connector.explore()

    assert caught.value.transient is True
    assert sf.count("/services/data") == 5 and len(waits) == 4
    assert "retried later" in caught.value.message


def test_connect_errors_are_retried_then_source_unavailable(connect: Any, sf: SalesforceFake) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, never listening: connections are refused
        auth = {**sf.soap_auth(), "environmentUrl": f"http://127.0.0.1:{closed}"}
        waits: list[float] = []

        with pytest.raises(SourceUnavailable, match="after 5 attempts"):
            connect(auth, retry=RetryPolicy(sleep=waits.append)).explore()

    assert len(waits) == 4 and all(0 < w <= 8 for w in waits)
