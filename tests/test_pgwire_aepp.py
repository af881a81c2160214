"""aepp's interactive Query Service client (``QueryService.connection()`` then ``InteractiveQuery2``,
psycopg2 underneath) against the wire endpoint, with only aepp's hosts changed: it fetches the connection
parameters, connects, finds the default merge policy and the namespaces in the Query Accelerated Store's
dimension tables (services/queryaccel.py), and returns query results as DataFrames."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from headwater.services.merge_policies import implicit_id
from headwater.stores.metadata import Scope
from tests.support import ApiClient, LiveServer, role_client
from tests.test_pgwire import _connect
from tests.test_pgwire_catalog import live, tables, token

__all__ = ["live", "tables", "token"]  # the fixtures, from test_pgwire_catalog.py


def test_aepp_connects_through_its_connection_parameters_and_queries(
    live: LiveServer,
    token: str,
    tables: tuple[ApiClient, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aepp
    from aepp import config, queryservice

    api, table, _ = tables
    monkeypatch.chdir(tmp_path)  # aepp may write files in the working folder
    c = live.creds
    aepp.configure(
        org_id=c["orgId"], client_id=c["apiKey"], secret=c["clientSecret"], scopes="openid",
        sandbox=api.sandbox_name,
    )  # fmt: skip
    config.endpoints["global"] = live.base_url
    config.config_object["imsEndpoint"] = live.base_url
    config.config_object["oauthTokenEndpointV2"] = live.base_url + "/ims/token/v3"

    parameters = queryservice.QueryService().connection()
    assert parameters | {"token": "", "compressedToken": ""} == {
        "username": c["orgId"],
        "dbName": f"{api.sandbox_name}:all",
        "host": "127.0.0.1",
        "version": 1,
        "port": live.settings.pgwire_port,
        "token": "",
        "compressedToken": "",
        "websocketHost": "127.0.0.1",
    }

    interactive = queryservice.InteractiveQuery2(parameters)  # psycopg2, sslmode "allow"
    try:
        record = live.services.store.get_sandbox(api.org_id, api.sandbox_name)
        assert record is not None
        assert interactive.default_merge_policy_id == implicit_id(Scope(api.org_id, record.id))
        assert interactive.default_merge_policy_queryId == 1
        assert interactive._mapping_namespace_id_name[6] == "Email"  # a standard namespace, by its id
        frame = interactive.query(f"SELECT _id, n FROM {table}")
        assert frame.to_dict("records") == [{"_id": "p0", "n": 1}]
        segments = interactive.query("SELECT * FROM qsaccel.profile_agg.adwh_dim_segments")
        assert segments.empty  # no segment definitions in this sandbox
    finally:
        interactive.close()


def test_a_viewer_gets_neither_the_parameters_nor_a_session(
    live: LiveServer, tables: tuple[ApiClient, str, str]
) -> None:
    """As the Query Service API (a viewer cannot read query results), the endpoint asks for
    manage-queries: a Viewer's token is refused at login, and its connection parameters with a 403."""
    api, table, _ = tables
    with role_client(live, api, "Viewer") as viewer:
        refused = viewer.get("/data/foundation/query/connection_parameters")
        assert refused.status_code == 403 and "manage-queries" in refused.text
        with pytest.raises(psycopg.OperationalError, match="manage-queries"):
            _connect(live, viewer.token, f"{api.sandbox_name}:all")
    with role_client(live, api, "User") as user:
        parameters = user.get("/data/foundation/query/connection_parameters").json()
        assert parameters["token"] == user.token
        with _connect(live, parameters["token"], parameters["dbName"], autocommit=True) as conn:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
