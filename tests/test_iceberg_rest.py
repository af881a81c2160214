"""The Iceberg REST catalog (``/iceberg``): pyiceberg's own RestCatalog, configured only with the URI, a
credential or token and the warehouse (the sandbox), lists the sandbox's tables and scans a dataset's
rows; other sandboxes and organizations see nothing of it; a bad token is 401; every write is refused in
the spec's error shape and changes nothing.

DuckDB, the second outside engine, is in tests/test_iceberg_rest_duckdb.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import ForbiddenError, NoSuchTableError, UnauthorizedError

from headwater.stores.metadata import Scope
from tests.support import ApiClient, LiveServer, role_client
from tests.test_batch_ingestion import ingested_people

pytestmark = pytest.mark.usefixtures("promoter")

ICEBERG = "/iceberg/v1"


@pytest.fixture
def people(api: ApiClient) -> tuple[str, str]:
    """A dataset with three people, loaded by the Batch Ingestion API: (dataset id, table name)."""
    return ingested_people(api)


def catalog(server: LiveServer, sandbox: str, **credentials: str) -> RestCatalog:
    return RestCatalog("headwater", uri=f"{server.base_url}/iceberg", warehouse=sandbox, **credentials)


def spec_error(response: httpx.Response, status: int, kind: str) -> str:
    """The message of an answer in the spec's error model, checked to be ``status`` and ``kind``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["type"] == kind, error
    return str(error["message"])


def scope_of(server: LiveServer, api: ApiClient) -> Scope:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    return Scope(api.org_id, sandbox.id)


def rest(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + ICEBERG, headers={"Authorization": f"Bearer {token}"})


def test_pyiceberg_lists_loads_and_scans_a_dataset(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    dataset_id, table = people
    sandbox = api.sandbox_name
    with_token = catalog(server, sandbox, token=api.token)
    # And with the client's credentials, exchanged at the catalog's token endpoint.
    secret = server.creds["clientSecret"]
    with_credential = catalog(
        server,
        sandbox,
        credential=f"{api.api_key}:{secret}",
        **{"oauth2-server-uri": f"{server.base_url}{ICEBERG}/oauth/tokens"},
    )
    for cat in (with_token, with_credential):
        assert cat.properties["prefix"] == sandbox
        assert cat.list_namespaces() == [(sandbox,)]
        assert cat.namespace_exists(sandbox) and not cat.namespace_exists("prod-other")
        assert cat.list_tables(sandbox) == [(sandbox, table)]
        assert cat.table_exists((sandbox, table)) and not cat.table_exists((sandbox, "nope"))
        loaded = cat.load_table((sandbox, table))
        lake_table = server.services.lake.load(scope_of(server, api), dataset_id)
        assert lake_table is not None and loaded.metadata_location == lake_table.metadata_location
        rows = loaded.scan().to_arrow().sort_by("_id").to_pylist()
        assert [(r["_id"], r["person"]["name"]["firstName"]) for r in rows] == [
            (f"id-{i}", f"First{i}") for i in range(3)
        ]
    with pytest.raises(NoSuchTableError):
        with_token.load_table((sandbox, "no_such_table"))
    with rest(server, api.token) as client:
        result = client.get(f"/{sandbox}/namespaces/{sandbox}/tables/{table}").json()
        assert set(result) == {"metadata-location", "metadata", "config"}
        assert result["metadata-location"].startswith("file://") and result["config"] == {}
        assert result["metadata"]["current-snapshot-id"] == loaded.metadata.current_snapshot_id
        assert client.get(f"/{sandbox}/namespaces?parent={sandbox}").json() == {"namespaces": []}
        missing = client.get(f"/{sandbox}/namespaces/elsewhere/tables")
        spec_error(missing, 404, "NoSuchNamespaceException")
        bad = client.get(f"/{sandbox}/namespaces/{sandbox}/tables/{table}?snapshots=some")
        spec_error(bad, 400, "BadRequestException")
    # The sandbox may come as the x-sandbox-name header instead of the warehouse.
    by_header = RestCatalog(
        "headwater", uri=f"{server.base_url}/iceberg", token=api.token, **{"header.x-sandbox-name": sandbox}
    )
    assert by_header.properties["prefix"] == sandbox
    assert by_header.list_tables(sandbox) == [(sandbox, table)]


def test_other_sandboxes_and_organizations_see_nothing(
    server: LiveServer,
    api: ApiClient,
    other_sandbox_api: ApiClient,
    other_org: dict[str, str],
    people: tuple[str, str],
) -> None:
    _, table = people
    other = catalog(server, other_sandbox_api.sandbox_name, token=api.token)
    assert other.list_tables(other_sandbox_api.sandbox_name) == []
    with pytest.raises(NoSuchTableError):
        other.load_table((other_sandbox_api.sandbox_name, table))
    with pytest.raises(NoSuchTableError):  # the first sandbox's namespace is not this catalog's
        other.load_table((api.sandbox_name, table))
    # Another organization: its own prod has none of it, and the first org's sandbox is not its own.
    theirs = catalog(server, "prod", token=other_org["token"])
    assert theirs.list_tables("prod") == []
    with pytest.raises(ForbiddenError):
        catalog(server, api.sandbox_name, token=other_org["token"])
    with rest(server, other_org["token"]) as client:
        path = f"/{api.sandbox_name}/namespaces/{api.sandbox_name}/tables/{table}"
        spec_error(client.get(path), 403, "ForbiddenException")
        spec_error(client.get(f"/prod/namespaces/prod/tables/{table}"), 404, "NoSuchTableException")


def test_a_bad_token_is_401(server: LiveServer, api: ApiClient) -> None:
    with pytest.raises(UnauthorizedError):
        catalog(server, api.sandbox_name, token="not-a-token")
    sandbox = api.sandbox_name
    for path in ("/config", f"/{sandbox}/namespaces", f"/{sandbox}/namespaces/{sandbox}/tables"):
        response = httpx.get(server.base_url + ICEBERG + path, headers={"Authorization": "Bearer x"})
        spec_error(response, 401, "NotAuthorizedException")
        assert response.headers["www-authenticate"] == "Bearer"
    spec_error(httpx.get(f"{server.base_url}{ICEBERG}/config"), 401, "NotAuthorizedException")
    documented = api.get("/openapi.json").json()["paths"]
    load = documented[f"{ICEBERG}/{{prefix}}/namespaces/{{namespace}}/tables/{{table}}"]
    assert load["get"]["security"] == [{"bearer": []}] and "403" in load["delete"]["responses"]
    wrong = httpx.post(
        f"{server.base_url}{ICEBERG}/oauth/tokens",
        data={"grant_type": "client_credentials", "client_id": api.api_key, "client_secret": "wrong"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_writes_are_refused_and_change_nothing(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    sandbox = api.sandbox_name
    cat = catalog(server, sandbox, token=api.token)
    before = cat.load_table((sandbox, table))
    with pytest.raises(NotImplementedError):  # not among the endpoints the config answers
        cat.create_table((sandbox, "made"), schema=before.schema())
    with pytest.raises(NotImplementedError):
        cat.drop_table((sandbox, table))
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"/{sandbox}/namespaces", {"namespace": ["made"]}),
        ("DELETE", f"/{sandbox}/namespaces/{sandbox}", None),
        ("POST", f"/{sandbox}/namespaces/{sandbox}/properties", {"updates": {"a": "b"}}),
        ("POST", f"/{sandbox}/namespaces/{sandbox}/tables", {"name": "made", "schema": {}}),
        ("POST", f"/{sandbox}/namespaces/{sandbox}/tables/{table}", {"updates": []}),
        ("DELETE", f"/{sandbox}/namespaces/{sandbox}/tables/{table}", None),
        ("POST", f"/{sandbox}/tables/rename", {"source": {}, "destination": {}}),
    ]
    with rest(server, api.token) as client:
        for method, path, body in writes:
            message = spec_error(client.request(method, path, json=body), 403, "ForbiddenException")
            assert "read-only" in message
    with rest(server, "bad") as client:  # the token is checked first
        spec_error(
            client.delete(f"/{sandbox}/namespaces/{sandbox}/tables/{table}"), 401, "NotAuthorizedException"
        )
    assert cat.list_tables(sandbox) == [(sandbox, table)]
    after = cat.load_table((sandbox, table))
    assert after.metadata_location == before.metadata_location
    assert after.scan().to_arrow().num_rows == 3


def test_a_viewer_reads_and_odd_names_answer_in_the_spec_shape(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    sandbox = api.sandbox_name
    viewer = role_client(server, api, "Viewer")  # read is all a catalog call needs
    assert catalog(server, sandbox, token=viewer.token).list_tables(sandbox) == [(sandbox, table)]
    with rest(server, api.token) as client:
        spec_error(client.get("/no-such-sandbox/namespaces"), 403, "ForbiddenException")
        nested = f"/{sandbox}/namespaces/{sandbox}%1Finner/tables/{table}"
        spec_error(client.get(nested), 404, "NoSuchNamespaceException")
        spec_error(client.get(f"/{sandbox}/namespaces?parent=x%1Fy"), 404, "NoSuchNamespaceException")
        odd = f"/{sandbox}/namespaces/{sandbox}/tables/%00%F0%9F%90%8D..%2F"
        spec_error(client.get(odd), 404, "NoSuchTableException")
        assert client.head(f"/{sandbox}/namespaces/elsewhere").status_code == 404
        assert client.head(f"/{sandbox}/namespaces/{sandbox}/tables/{table}").status_code == 204
        big = client.post(f"/{sandbox}/namespaces", content=b"{" * 100)
        spec_error(big, 403, "ForbiddenException")


def test_junk_never_causes_a_server_error(server: LiveServer, api: ApiClient) -> None:
    """Every documented /iceberg route, with unknown names, junk queries and junk bodies: 4xx in the spec's
    error model (the token grant's in OAuth2's)."""
    paths = api.get("/openapi.json").json()["paths"]
    names = {"prefix": api.sandbox_name, "namespace": api.sandbox_name, "table": "does-not-exist"}
    with rest(server, api.token) as client:
        for template, methods in paths.items():
            if not template.startswith(ICEBERG):
                continue
            path = template.removeprefix(ICEBERG).format(**names)
            for method in methods:
                for query, body in (("parent=%00&pageSize=-1&snapshots=", b"{"), ("warehouse=%FF", b"[]")):
                    response = client.request(method.upper(), f"{path}?{query}", content=body)
                    assert response.status_code < 500, (method, path, response.text)
                    if response.status_code >= 400 and method != "head":
                        error = response.json()["error"]
                        assert isinstance(error, str if path.endswith("/tokens") else dict), error
