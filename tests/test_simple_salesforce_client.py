"""The bundled Salesforce-compatible server speaks Salesforce's REST API as a real client expects it:
simple-salesforce (PyPI), unchanged but for its instance URL and credentials, describes, queries and pages
through it over HTTPS. What our connector is tested against is what Salesforce's own clients accept.

simple-salesforce logs in only at ``https://{domain}.salesforce.com`` (SOAP or OAuth): the session comes
from the server's own OAuth token endpoint (the username-password grant, as Salesforce answers it), and
simple-salesforce takes it as ``session_id`` with the ``instance_url`` that endpoint returned.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.salesforce import SalesforceFake
from tests.fakes.tls import SinkCerts

pytest.importorskip("simple_salesforce")
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

PEOPLE = 450


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[SinkCerts, Path]:
    directory = tmp_path_factory.mktemp("salesforce-tls")
    generated = SinkCerts.generate()
    generated.write(directory)
    return generated, directory


@pytest.fixture(scope="module")
def salesforce(certs: tuple[SinkCerts, Path]) -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start(tls=certs[1])
    fake.add_object("Person", {"first_name": "string", "email": "email", "score": "double"})
    fake.insert(
        "Person",
        [{"first_name": f"Ada{i}", "email": f"ada{i}@example.com", "score": i / 2} for i in range(PEOPLE)],
        modified=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
    )
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def trusted(certs: tuple[SinkCerts, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under simple-salesforce) trusts the test CA the way its users configure it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs[1] / "ca.pem"))


def _client(salesforce: SalesforceFake, ca_file: Path) -> Salesforce:
    granted = httpx.post(
        f"{salesforce.base_url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": salesforce.client_id,
            "client_secret": salesforce.client_secret,
            "username": salesforce.username,
            "password": salesforce.password + salesforce.security_token,
        },
        verify=ssl.create_default_context(cafile=str(ca_file)),
    ).json()
    return Salesforce(
        instance_url=granted["instance_url"],
        session_id=granted["access_token"],
        version=salesforce.api_version,
    )


def test_describe_query_and_paging(salesforce: SalesforceFake, certs: tuple[SinkCerts, Path]) -> None:
    sf = _client(salesforce, certs[1] / "ca.pem")
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Contact", "Account", "Person"} <= names
    fields = {f["name"]: f["type"] for f in sf.Person.describe()["fields"]}
    assert fields["email"] == "email" and fields["score"] == "double"
    # One page, then every page by nextRecordsUrl (batchSize through Sforce-Query-Options).
    first: dict[str, Any] = sf.query("SELECT Id, first_name, score FROM Person")
    assert first["totalSize"] == PEOPLE
    paged = sf.query_all(
        "SELECT Id, email FROM Person WHERE score >= 100", headers={"Sforce-Query-Options": "batchSize=200"}
    )
    emails = [r["email"] for r in paged["records"]]
    assert len(emails) == len(set(emails)) == PEOPLE - 200 and paged["done"] is True
    page = sf.query("SELECT Id FROM Person", headers={"Sforce-Query-Options": "batchSize=200"})
    assert page["done"] is False and page["nextRecordsUrl"].startswith("/services/data/")
    more = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)  # the rest, default batch size
    assert (
        len(more["records"]) == PEOPLE - 200
        and more["done"] is True
        and {r["Id"] for r in more["records"]}.isdisjoint(r["Id"] for r in page["records"])
    )


def test_errors_are_the_exceptions_simple_salesforce_raises(
    salesforce: SalesforceFake, certs: tuple[SinkCerts, Path]
) -> None:
    sf = _client(salesforce, certs[1] / "ca.pem")
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Nope FROM Person")
    stale = Salesforce(instance_url=salesforce.base_url, session_id="00D000000000001!AQ.expired")
    with pytest.raises(SalesforceExpiredSession):
        stale.query("SELECT Id FROM Person")
