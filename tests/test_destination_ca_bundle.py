"""A destination's own CA bundle (``auth.params.caCertificate``): a destination behind a private CA works
without the operator's HEADWATER_OUTBOUND_CA_FILE (its token endpoint and its requests are trusted by the
bundle stored with it), it is shown back (not a secret), and something that is not PEM is a 400 naming
the field at save and at Test Request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.activation_helpers import FS, HTTP_DESTINATION, connection_body, destination, oauth
from tests.fakes.sink import SinkFake
from tests.support import ApiClient, LiveServer

VARS = {"email": "a@b.c", "name": "A", "amount": 1}
PEM_FIELD = "auth.params.caCertificate"


@pytest.fixture
def private_sink(server: LiveServer) -> Iterator[SinkFake]:
    """A sink whose test CA the server does NOT trust through settings (no outbound CA file)."""
    with SinkFake() as fake:
        settings = server.services.settings
        before = settings.outbound_ca_file
        settings.outbound_ca_file = None
        try:
            yield fake
        finally:
            settings.outbound_ca_file = before


def paths_of(response: object) -> set[str]:
    return {e["path"] for e in response.json()["report"]["errors"]}  # type: ignore[attr-defined]


def test_oauth_destination_with_its_ca_bundle_reaches_an_https_sink(
    api: ApiClient, private_sink: SinkFake
) -> None:
    sink = private_sink
    auth = oauth(sink, caCertificate=sink.certs.ca_cert)
    conn, target = destination(api, sink.https_url + "/emails/${email}", auth=auth)
    saved = api.get(f"{FS}/connections/{conn}").json()["items"][0]["auth"]["params"]
    assert saved["caCertificate"] == sink.certs.ca_cert  # not a secret: shown as stored
    assert saved["clientSecret"] == "********"

    result = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": VARS}).json()
    assert result["error"] is None, result
    assert result["response"]["status"] == 200
    assert len(sink.token_requests) == 1  # the token endpoint, over TLS, trusted by the bundle
    (got,) = sink.received(path="/emails/")
    assert got.listener == "https" and got.json()["email"] == "a@b.c"


def test_without_the_bundle_the_private_ca_is_not_trusted(api: ApiClient, private_sink: SinkFake) -> None:
    _, target = destination(api, private_sink.https_url + "/x")
    result = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": VARS}).json()
    assert result["response"] is None and "not trusted" in result["error"]["message"], result
    assert private_sink.received() == []


def test_unsaved_test_request_uses_the_bundle_of_the_auth(api: ApiClient, private_sink: SinkFake) -> None:
    sink = private_sink
    body = {
        "auth": {"specName": "None", "params": {"caCertificate": sink.certs.ca_cert}},
        "params": {"method": "POST", "url": sink.https_url + "/unsaved", "body": '{"n": ${n}}'},
        "variables": {"n": 7},
    }
    result = api.post(f"{FS}/targetConnections/test", json=body).json()
    assert result["error"] is None and result["response"]["status"] == 200, result
    assert sink.received(path="/unsaved")[0].json() == {"n": 7}


@pytest.mark.parametrize(
    "bad",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    ],
)
def test_a_bundle_that_is_not_pem_is_a_400_naming_the_field(
    api: ApiClient, private_sink: SinkFake, bad: str
) -> None:
    for auth in (
        {"specName": "None", "params": {"caCertificate": bad}},
        {
            "specName": "Basic Authentication",
            "params": {"username": "u", "password": "p", "caCertificate": bad},
        },
        oauth(private_sink, caCertificate=bad),
    ):
        response = api.post(f"{FS}/connections", json=connection_body("Bad CA", auth))
        assert response.status_code == 400, response.text
        assert paths_of(response) == {PEM_FIELD}
        assert bad not in response.text  # messages never echo what was sent

    tested = api.post(
        f"{FS}/targetConnections/test",
        json={
            "auth": {"specName": "None", "params": {"caCertificate": bad}},
            "params": {"method": "POST", "url": private_sink.https_url + "/t"},
            "variables": {},
        },
    )
    assert tested.status_code == 400 and paths_of(tested) == {PEM_FIELD}, tested.text
    assert private_sink.received() == []
    listed = api.get(f"{FS}/connections", params={"property": f"connectionSpec.id=={HTTP_DESTINATION}"})
    assert listed.json()["items"] == []
