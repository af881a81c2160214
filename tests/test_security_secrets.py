"""Issue 12, section 2 and 5c: secrets inside destination requests (header values, query values, the
OAuth token request's extra headers and form items, a body marked secret, Basic and OAuth credentials)
are sealed at rest, masked in every answer, scrubbed from what an echoing destination sends back, and
still sent for real. Section 4: the OAuth token URL is judged against the outbound policy when saved.

The attack: plant unique strings in every place, Test Request and deliver to a sink that echoes the
request (answering 400, so each delivery is a dead letter), then look for the strings in every answer
(as Admin and as a Viewer), in the whole home (metadata database with its WAL, lake, logs, streams), in
the PostgreSQL rows, and in the server's log records. The sink must have received the real values.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.activation_helpers import (
    BODY,
    FS,
    HTTP_DESTINATION,
    activating,
    activation_flow,
    connection_body,
    dead_letters,
    echoing_sink,
    event,
    inlet_source,
)
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.support import ApiClient, LiveServer, role_client, wait_until

MASK = "********"
AUDIT = "/data/foundation/audit/events"


def planted(name: str) -> str:
    return f"planted-{name}-{uuid.uuid4().hex}"


class Plants(dict[str, str]):
    """The planted secret strings of one test, by place."""

    def found_in(self, text: str) -> list[str]:
        return [place for place, value in self.items() if value in text]


@pytest.fixture
def plants() -> Plants:
    places = ("header", "bearer", "query", "password", "clientSecret", "extraHeader", "formItem", "body")
    return Plants({place: planted(place) for place in places})


@pytest.fixture
def echo_sink(server: LiveServer, plants: Plants) -> Iterator[SinkFake]:
    """A sink whose OAuth client secret is planted, trusted for outbound TLS, echoing with 400."""
    with echoing_sink(server, plants["clientSecret"]) as fake:
        yield fake


def save_destination(
    api: ApiClient, name: str, auth: dict[str, Any], params: dict[str, Any]
) -> tuple[str, str]:
    conn = created_id(api.post(f"{FS}/connections", json=connection_body(name, auth)))
    body = {
        "name": f"{name} request",
        "baseConnectionId": conn,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "params": params,
    }
    return conn, created_id(api.post(f"{FS}/targetConnections", json=body))


def basic_destination(plants: Plants, sink: SinkFake) -> tuple[dict[str, Any], dict[str, Any]]:
    auth = {
        "specName": "Basic Authentication",
        "params": {"username": "esp-user", "password": plants["password"]},
    }
    params = {
        "method": "POST",
        "url": sink.url + "/echo/${email}?api_key=" + plants["query"] + "&n=${amount}",
        "headers": {
            "X-Api-Key": plants["header"],
            "X-Auth": "Token " + plants["bearer"],
            "X-Trace": {"value": "visible-trace", "secret": False},
            "X-Email": "${email}",
        },
        "body": BODY,
    }
    return auth, params


def oauth_destination(plants: Plants, sink: SinkFake) -> tuple[dict[str, Any], dict[str, Any]]:
    auth = {
        "specName": "OAuth 2 Client Credentials",
        "params": {
            "accessTokenUrl": sink.token_url,
            "clientId": sink.client_id,
            "clientSecret": plants["clientSecret"],
            "extraHeaders": {"X-Partner-Key": plants["extraHeader"], "Accept": "application/json"},
            "formItems": {"resource_key": plants["formItem"], "audience": {"value": "esp", "secret": False}},
        },
    }
    body = '{"key": "' + plants["body"] + '", "email": "${email}", "name": "${name}", "amount": ${amount}}'
    params = {
        "method": "POST",
        "url": sink.https_url + "/api/${email}",
        "body": {"value": body, "secret": True},
    }
    return auth, params


VARIABLES = {"email": "ada@example.com", "name": "Ada", "amount": 3}


def test_request_secrets_are_sealed_masked_scrubbed_and_still_sent(
    server: LiveServer,
    api: ApiClient,
    echo_sink: SinkFake,
    plants: Plants,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = echo_sink
    basic_auth, basic_params = basic_destination(plants, sink)
    oauth_auth, oauth_params = oauth_destination(plants, sink)
    basic_conn, basic_target = save_destination(
        api, "Echo basic " + uuid.uuid4().hex[:6], basic_auth, basic_params
    )
    oauth_conn, oauth_target = save_destination(
        api, "Echo oauth " + uuid.uuid4().hex[:6], oauth_auth, oauth_params
    )
    answers: list[str] = []

    # Test Request, saved and unsaved: the sink gets the real values, the answers none of them
    for target in (basic_target, oauth_target):
        tested = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": VARIABLES})
        assert tested.status_code == 200, tested.text
        assert tested.json()["response"]["status"] == 400  # the echo
        answers.append(tested.text)
    unsaved = api.post(
        f"{FS}/targetConnections/test",
        json={"auth": basic_auth, "params": basic_params, "variables": VARIABLES},
    )
    assert unsaved.status_code == 200 and unsaved.json()["response"]["status"] == 400, unsaved.text
    answers.append(unsaved.text)
    shown = unsaved.json()["request"]
    assert shown["headers"]["X-Api-Key"] == MASK and shown["headers"]["X-Trace"] == "visible-trace"
    assert shown["headers"]["X-Email"] == "ada@example.com"  # record data, not a stored secret
    assert f"api_key={MASK}&n=3" in shown["url"]
    echoed = json.loads(unsaved.json()["response"]["body"])
    assert echoed["headers"]["x-api-key"] == MASK and echoed["headers"]["x-trace"] == "visible-trace"
    assert echoed["headers"]["authorization"] == f"Basic {MASK}"

    to_basic = [r for r in sink.received() if r.path.startswith("/echo/")]
    assert len(to_basic) == 2
    for got in to_basic:
        assert got.header("x-api-key") == plants["header"]
        assert got.header("x-auth") == "Token " + plants["bearer"]
        assert f"api_key={plants['query']}" in got.query
        expected = base64.b64encode(f"esp-user:{plants['password']}".encode()).decode()
        assert got.header("authorization") == f"Basic {expected}"
    (to_oauth,) = [r for r in sink.received() if r.path.startswith("/api/")]
    assert json.loads(to_oauth.body)["key"] == plants["body"]
    bearer = (to_oauth.header("authorization") or "").removeprefix("Bearer ")
    assert bearer
    (token_request,) = sink.token_requests
    assert token_request.granted and dict(token_request.headers).get("x-partner-key") == plants["extraHeader"]
    assert (
        token_request.form["resource_key"] == plants["formItem"] and token_request.form["audience"] == "esp"
    )

    # Delivery: each record is refused (the echo answers 400) and kept as a dead letter
    flows = []
    for target in (basic_target, oauth_target):
        source, inlet = inlet_source(api)
        flows.append(activation_flow(api, source, target))
        with activating(server, api):
            posted = httpx.post(server.base_url + inlet, json=event(1))
            assert posted.status_code == 200, posted.text
            wait_until(lambda: dead_letters(api, flows[-1]), timeout=20)
    letters = [letter for flow in flows for letter in dead_letters(api, flow)]
    assert len(letters) == 2 and all(letter["response"]["status"] == 400 for letter in letters)
    basic_letter = next(letter for letter in letters if letter["flowId"] == flows[0])
    assert basic_letter["request"]["headers"]["X-Api-Key"] == MASK
    assert basic_letter["request"]["headers"]["X-Trace"] == "visible-trace"
    oauth_letter = next(letter for letter in letters if letter["flowId"] == flows[1])
    assert oauth_letter["request"]["body"] == MASK
    replayed = api.post(f"{FS}/deadLetters/replay", json={"ids": [letter["id"] for letter in letters]})
    assert replayed.status_code == 200, replayed.text
    answers.append(replayed.text)
    assert len(sink.received(path="/echo/")) == 4 and len(sink.received(path="/api/")) == 3

    # Every answer, as an Admin and as a Viewer
    viewer = role_client(server, api, "Viewer")
    for client in (api, viewer):
        for path in (
            f"{FS}/connections/{basic_conn}",
            f"{FS}/connections/{oauth_conn}",
            f"{FS}/targetConnections/{basic_target}",
            f"{FS}/targetConnections/{oauth_target}",
            f"{FS}/connections?limit=100",
            f"{FS}/targetConnections?limit=100",
            f"{FS}/deadLetters?limit=100",
            *(f"{FS}/deadLetters/{letter['id']}" for letter in letters),
        ):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            answers.append(answer.text)
    audit = api.get(AUDIT, params={"limit": "1000"})
    assert audit.status_code == 200, audit.text
    answers.append(audit.text)
    for text in answers:
        assert plants.found_in(text) == [], text[:2000]
        assert bearer not in text

    shown_request = api.get(f"{FS}/targetConnections/{basic_target}").json()["items"][0]["params"]
    assert (
        shown_request["headers"]["X-Api-Key"] == MASK
        and shown_request["headers"]["X-Trace"] == "visible-trace"
    )
    assert shown_request["headers"]["X-Email"] == "${email}" and "urlSecret" not in shown_request
    assert shown_request["url"].endswith(f"?api_key={MASK}&n=${{amount}}")
    shown_auth = api.get(f"{FS}/connections/{oauth_conn}").json()["items"][0]["auth"]["params"]
    assert shown_auth["extraHeaders"] == {"X-Partner-Key": MASK, "Accept": "application/json"}
    assert shown_auth["formItems"] == {"resource_key": MASK, "audience": "esp"}

    # At rest: nothing in the home (database and its WAL, lake, logs, streams), nor in PostgreSQL's rows
    values = [*plants.values(), bearer]
    hits = home_hits(server, values)
    assert hits == [], hits
    if server.settings.database_url is not None:
        assert postgres_hits(server, values) == []
    assert [value for value in values if value in caplog.text] == []


def home_hits(server: LiveServer, values: list[str]) -> list[str]:
    """Files of the home holding any of ``values``. Scanned from another process: opening the SQLite
    file in the server's process and closing it would drop the server's POSIX locks on it."""
    patterns = "\n".join(values)
    found = subprocess.run(
        ["grep", "-r", "-l", "-a", "-F", "-f", "-", str(server.settings.home)],
        input=patterns,
        capture_output=True,
        text=True,
    )
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.split()


def postgres_hits(server: LiveServer, values: list[str]) -> list[str]:
    from sqlalchemy import text

    with server.services.store.engine.connect() as conn:
        return [
            value
            for value in values
            if conn.execute(
                text("SELECT count(*) FROM resources WHERE doc::text LIKE :v"), {"v": f"%{value}%"}
            ).scalar_one()
        ]


def test_the_mask_sent_back_as_a_value_is_refused(api: ApiClient, sink: SinkFake) -> None:
    conn = created_id(api.post(f"{FS}/connections", json=connection_body("Masked " + uuid.uuid4().hex[:6])))
    body = {
        "name": "Copied from a GET",
        "baseConnectionId": conn,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "params": {"method": "POST", "url": sink.url + f"/x?key={MASK}", "headers": {"X-Api-Key": MASK}},
    }
    refused = api.post(f"{FS}/targetConnections", json=body)
    assert refused.status_code == 400, refused.text
    paths = {e["path"] for e in refused.json()["report"]["errors"]}
    assert {"params.headers.X-Api-Key", "params.url"} <= paths


@pytest.mark.parametrize("token_url", ["https://169.254.169.254/token", "https://10.1.2.3/oauth/token"])
def test_the_oauth_token_url_is_judged_by_the_outbound_policy_when_saved(
    api: ApiClient, sink: SinkFake, token_url: str
) -> None:
    auth = {
        "specName": "OAuth 2 Client Credentials",
        "params": {"accessTokenUrl": token_url, "clientId": "c", "clientSecret": "s"},
    }
    saved = api.post(f"{FS}/connections", json=connection_body("Token URL " + uuid.uuid4().hex[:6], auth))
    assert saved.status_code == 400, saved.text
    assert "auth.params.accessTokenUrl" in {e["path"] for e in saved.json()["report"]["errors"]}
    params = {"method": "POST", "url": sink.url + "/t", "body": None}
    tested = api.post(f"{FS}/targetConnections/test", json={"auth": auth, "params": params, "variables": {}})
    assert tested.status_code == 400, tested.text
    assert "auth.params.accessTokenUrl" in {e["path"] for e in tested.json()["report"]["errors"]}
    assert sink.received() == []


# --- the rule, form by form (no server) ---


@pytest.mark.parametrize(
    ("url", "flag", "shown"),
    [
        ("https://h/p?key=abc&n=${n}", None, f"https://h/p?key={MASK}&n=${{n}}"),
        ("https://u:pw@h/p", None, f"https://u:{MASK}@h/p"),
        ("https://h/p?key=k-${id}#top", None, f"https://h/p?key={MASK}#top"),
        ("https://hooks.example/services/T0/B0/XYZ", True, f"https://hooks.example/{MASK}"),
        ("https://h/p?format=json", False, "https://h/p?format=json"),
        ("https://h/p/${email}", None, "https://h/p/${email}"),
    ],
)
def test_which_parts_of_a_url_are_secret(url: str, flag: bool | None, shown: str) -> None:
    from headwater.connectors.http_destination.secrecy import masked_url

    assert masked_url(url, flag) == shown


def test_a_rendered_url_is_shown_with_its_secret_parts_masked() -> None:
    from headwater.connectors.http_destination.secrecy import Secrecy

    secrecy = Secrecy.of(query=["key"], values=["pw-123456"])
    shown = secrecy.url("https://u:pw-123456@h/p/ada%40example.com?key=k1&n=3")
    assert shown == f"https://u:{MASK}@h/p/ada%40example.com?key={MASK}&n=3"
    assert Secrecy.of(whole_url=True).url("https://h/services/T0/XYZ?x=1") == f"https://h/{MASK}"
    echoing = Secrecy.of(values=['p/w "123" 456'])
    echoed = 'json "p/w \\"123\\" 456", query p%2Fw%20%22123%22%20456, form p%2Fw+%22123%22+456'
    assert echoing.scrub(echoed) == f'json "{MASK}", query {MASK}, form {MASK}'


@pytest.mark.parametrize(
    ("name", "value", "flag", "secret"),
    [
        ("X-Api-Key", "k", None, True),
        ("Authorization", "Bearer ${token}", None, True),
        ("X-Tenant", "${tenant}", None, False),
        ("Accept-Encoding", "", None, False),
        ("content-type", "application/json", None, False),
        ("Content-Type", "application/json", True, True),
        ("X-Trace", "t1", False, False),
    ],
)
def test_which_header_values_are_secret(name: str, value: str, flag: bool | None, secret: bool) -> None:
    from headwater.connectors.http_destination.secrecy import header_is_secret

    assert header_is_secret(name, value, flag) is secret


def test_a_sealed_value_copied_to_another_destination_does_not_open(
    server: LiveServer, api: ApiClient, sink: SinkFake
) -> None:
    """The associated data binds a sealed request value to its organization, destination and place."""
    from dataclasses import replace

    from headwater.services.destination_secrets import request_of
    from headwater.stores.metadata import Scope

    params = {"method": "POST", "url": sink.url + "/x", "headers": {"X-Api-Key": planted("copied")}}
    _, first = save_destination(api, "Sealed one " + uuid.uuid4().hex[:6], {"specName": "None"}, params)
    other, _ = save_destination(api, "Sealed two " + uuid.uuid4().hex[:6], {"specName": "None"}, params)
    store, box = server.services.store, server.services.box
    sandbox = store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    stored = store.get("targetConnection", Scope(api.org_id, sandbox.id), first)
    assert stored is not None
    assert request_of(stored.scope, stored, box).params["headers"]["X-Api-Key"].startswith("planted-copied-")
    moved = replace(stored, doc={**stored.doc, "baseConnectionId": other})
    with pytest.raises(ValueError, match="does not decrypt"):
        request_of(moved.scope, moved, box)
