"""Query Service (``/data/foundation/query/queries``): queries run asynchronously by the query runner over
the sandbox's datasets; a SELECT's rows read back, CREATE TABLE AS and INSERT INTO written in one commit,
refusals ending FAILED, other sandboxes seeing nothing, bad bodies 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.stores.metadata import Scope
from tests.flows_helpers import CAT
from tests.support import ApiClient, LiveServer, role_client, wait_until
from tests.test_batch_ingestion import ingested_people

pytestmark = pytest.mark.usefixtures("query_runner")

QS = "/data/foundation/query/queries"


@pytest.fixture
def people(api: ApiClient) -> tuple[str, str]:
    """A dataset with three people, loaded by the Batch Ingestion API: (dataset id, table name)."""
    return ingested_people(api)


def submit(api: ApiClient, sql: str | None, **extra: Any) -> dict[str, Any]:
    body = {"dbName": f"{api.sandbox_name}:all", "name": "test", **extra}
    if sql is not None:
        body["sql"] = sql
    response = api.post(QS, json=body)
    assert response.status_code == 202, response.text
    query = response.json()
    assert query["state"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILED")
    assert sql is None or query["request"]["sql"] == sql
    assert query["request"]["dbName"] == body["dbName"]
    return dict(query)


def ended(api: ApiClient, query_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = api.get(f"{QS}/{query_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        return dict(body) if body["state"] in ("SUCCESS", "FAILED", "CANCELLED") else None

    return dict(wait_until(done, timeout=30))


def run(api: ApiClient, sql: str) -> dict[str, Any]:
    return ended(api, submit(api, sql)["id"])


def rows(api: ApiClient, query: dict[str, Any]) -> list[dict[str, Any]]:
    assert query["state"] == "SUCCESS", query
    response = api.get(f"{QS}/{query['id']}/results?limit=1000")
    assert response.status_code == 200, response.text
    return list(response.json()["rows"])


def stored_query(server: LiveServer, api: ApiClient, query_id: str) -> Any:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    stored = server.services.store.get("queryServiceQuery", Scope(api.org_id, sandbox.id), query_id)
    assert stored is not None
    return stored


def test_a_select_succeeds_and_its_rows_are_read_in_pages(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    sql = f"SELECT _id, person.name.firstName AS first FROM {table} ORDER BY _id"
    query = submit(api, sql)
    assert query["isCTAS"] is False and query["isInsertInto"] is False
    assert query["_links"]["cancel"]["method"] == "PATCH"
    done = ended(api, query["id"])
    assert done["rowCount"] == 3 and done["errors"] == [] and done["truncated"] is False
    assert rows(api, done) == [{"_id": f"id-{i}", "first": f"First{i}"} for i in range(3)]
    page = api.get(f"{QS}/{done['id']}/results?start=1&limit=1").json()
    assert page["rows"] == [{"_id": "id-1", "first": "First1"}]
    assert page["_page"] == {"start": 1, "count": 1, "totalCount": 3}
    assert page["columns"][1]["name"] == "first" and "next" in page["_links"]
    listed = api.get(f"{QS}?limit=1").json()
    assert [q["id"] for q in listed["queries"]] == [done["id"]]
    assert listed["_page"]["count"] == 1 and listed["version"] == 1
    # Past its retention the rows are gone (404), and the runner's sweep deletes the file.
    svc = server.services
    files = svc.query_jobs.result_files
    assert svc.query_jobs.save_if_unchanged(stored_query(server, api, done["id"]), resultsExpire=1)
    gone = api.get(f"{QS}/{done['id']}/results")
    assert gone.status_code == 404 and gone.json()["report"]["id"] == done["id"]
    written_ms = files.written_ms(done["id"])
    assert written_ms is not None
    assert files.sweep(written_ms + 1) >= 1 and not files.exists(done["id"])
    # Cancelling a query that ended is refused; the op is checked.
    assert api.patch(f"{QS}/{done['id']}", json={"op": "cancel"}).status_code == 409
    bad_op = api.patch(f"{QS}/{done['id']}", json={"op": "stop"})
    assert bad_op.status_code == 400 and "op" in bad_op.json()["detail"]


def test_failing_and_refused_sql_ends_failed_with_the_engines_message(
    api: ApiClient, people: tuple[str, str], tmp_path: Any
) -> None:
    _, table = people
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    cases = {
        f"SELECT no_such_column FROM {table}": "no_such_column",
        "SELECT * FROM no_such_table": "no_such_table",
        f"COPY {table} TO '{tmp_path}/out.csv'": "Only SELECT",
        f"SELECT * FROM read_csv('{secret}')": "datasets of this sandbox",
        "SELECT 1; SELECT 2": "exactly one SELECT",
    }
    for sql, words in cases.items():
        done = run(api, sql)
        assert done["state"] == "FAILED", (sql, done)
        assert done["rowCount"] == 0
        assert words in done["errors"][0]["message"], (sql, done["errors"])
        assert done["errors"][0]["code"].startswith("QRY-")
        assert api.get(f"{QS}/{done['id']}/results").status_code == 409
    assert not (tmp_path / "out.csv").exists()


def test_create_table_as_makes_a_dataset_in_one_commit_and_insert_into_appends(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    select = f"SELECT _id AS key, personalEmail.address AS email FROM {table}"
    ctas = run(api, f"CREATE TABLE people_copy AS {select}")
    assert ctas["state"] == "SUCCESS", ctas
    assert ctas["isCTAS"] is True and ctas["rowCount"] == 3
    dataset_id = ctas["datasetId"]
    found = api.get(f"{CAT}/dataSets/{dataset_id}").json()[dataset_id]
    assert found["tags"]["adobe/pqs/table"] == ["people_copy"]
    ns = "_" + api.tenant_id
    back = run(api, f"SELECT {ns}.key AS key, {ns}.email AS email FROM people_copy ORDER BY key")
    assert rows(api, back) == [{"key": f"id-{i}", "email": f"person{i}@example.com"} for i in range(3)]
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    lake_table = server.services.lake.load(Scope(api.org_id, sandbox.id), dataset_id)
    assert lake_table is not None and len(lake_table.snapshots()) == 1  # one commit
    # The name is taken now: a second CTAS is refused before it runs.
    sql = "CREATE TABLE people_copy AS SELECT 1 AS x"
    again = api.post(QS, json={"dbName": api.sandbox_name, "sql": sql})
    assert again.status_code == 400 and again.json()["report"]["field"] == "sql"

    values = "'new' AS key, 'n@example.com' AS email"
    insert = run(api, f"INSERT INTO people_copy SELECT {values} FROM {table} LIMIT 1")
    assert insert["state"] == "SUCCESS", insert
    assert insert["isInsertInto"] is True and insert["rowCount"] == 1
    counted = run(api, f"SELECT count(*) AS n FROM people_copy WHERE {ns}.key = 'new'")
    assert rows(api, counted) == [{"n": 1}]
    lake_table = server.services.lake.load(Scope(api.org_id, sandbox.id), dataset_id)
    assert lake_table is not None and len(lake_table.snapshots()) == 2

    # A column that names no field of the table's schema is refused, naming it; nothing is written.
    wrong = api.post(QS, json={"dbName": api.sandbox_name, "sql": "INSERT INTO people_copy SELECT 1 AS nope"})
    assert wrong.status_code == 400, wrong.text
    report = wrong.json()["report"]
    assert report["field"] == "sql" and report["column"] == "nope" and "nope" in wrong.json()["detail"]
    missing = api.post(QS, json={"dbName": api.sandbox_name, "sql": "INSERT INTO nowhere SELECT 1 AS x"})
    assert missing.status_code == 400 and "nowhere" in missing.json()["detail"]
    # A column of the wrong type is refused naming it; a value that does not convert fails the query,
    # and nothing is written either way.
    typed = run(api, "CREATE TABLE typed AS SELECT 1 AS n, DATE '2024-01-31' AS d")
    assert typed["state"] == "SUCCESS", typed
    text = api.post(QS, json={"dbName": api.sandbox_name, "sql": "INSERT INTO typed SELECT 'x' AS n"})
    assert text.status_code == 400 and text.json()["report"]["column"] == "n", text.text
    bad = run(api, "INSERT INTO typed SELECT 2 AS n, 'not a date' AS d")
    assert bad["state"] == "FAILED" and "Nothing was written" in bad["errors"][0]["message"], bad
    assert "d" in bad["errors"][0]["message"]
    assert rows(api, run(api, f"SELECT {ns}.n AS n, {ns}.d AS d FROM typed")) == [{"n": 1, "d": "2024-01-31"}]


def test_another_sandbox_sees_neither_the_query_nor_the_datasets(
    api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    done = run(api, f"SELECT count(*) AS n FROM {table}")
    for other in (other_sandbox_api, other_org_api):
        assert other.get(f"{QS}/{done['id']}").status_code == 404
        assert other.get(f"{QS}/{done['id']}/results").status_code == 404
        assert other.patch(f"{QS}/{done['id']}", json={"op": "cancel"}).status_code == 404
        assert done["id"] not in [q["id"] for q in other.get(QS).json()["queries"]]
        theirs = run(other, f"SELECT count(*) AS n FROM {table}")
        assert theirs["state"] == "FAILED" and table in theirs["errors"][0]["message"]
    # dbName must be the request's sandbox.
    elsewhere = api.post(QS, json={"dbName": f"{other_sandbox_api.sandbox_name}:all", "sql": "SELECT 1"})
    assert elsewhere.status_code == 400 and elsewhere.json()["report"]["field"] == "dbName"


def test_bad_bodies_are_400s_naming_the_field_and_viewers_cannot_run_queries(
    server: LiveServer, api: ApiClient
) -> None:
    cases: list[tuple[Any, str]] = [
        ({"sql": "SELECT 1"}, "dbName"),
        ({"dbName": 5, "sql": "SELECT 1"}, "dbName"),
        ({"dbName": f"{api.sandbox_name}:all"}, "sql"),
        ({"dbName": "prod:all", "sql": "SELECT 1"}, "dbName"),
        ({"dbName": api.sandbox_name, "sql": "   "}, "sql"),
        ({"dbName": api.sandbox_name, "sql": 1}, "sql"),
        ({"dbName": api.sandbox_name, "sql": "CREATE VIEW v AS SELECT 1"}, "sql"),
        ({"dbName": api.sandbox_name, "sql": "SELECT 1", "name": 3}, "name"),
        ({"dbName": api.sandbox_name, "sql": "SELECT 1", "templateId": "t"}, "templateId"),
        ({"dbName": api.sandbox_name, "sql": "SELECT 1", "queryParameters": [1]}, "queryParameters"),
        ({"dbName": api.sandbox_name, "sql": "SELECT 1", "ctasParameters": {}}, "ctasParameters.datasetName"),
        (
            {"dbName": api.sandbox_name, "sql": "SELECT 1 AS a", "ctasParameters": {"datasetName": "a\x00"}},
            "ctasParameters.datasetName",
        ),
        (
            {
                "dbName": api.sandbox_name,
                "sql": "CREATE TABLE t2 AS SELECT 1 AS x",
                "ctasParameters": {"datasetName": "d"},
            },
            "ctasParameters",
        ),
    ]
    for body, field in cases:
        response = api.post(QS, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["report"]["field"] == field, (body, response.json())
    unnamed = api.post(QS, json={"dbName": api.sandbox_name, "sql": "CREATE TABLE t1 AS SELECT 1 + 1"})
    assert unnamed.status_code == 400 and unnamed.json()["report"]["column"] == "(1 + 1)", unnamed.text
    assert api.post(QS, json=["SELECT 1"]).status_code == 400
    assert api.get(f"{QS}?limit=0").status_code == 400
    assert api.get(f"{QS}/no-such-query").status_code == 404
    viewer = role_client(server, api, "Viewer")
    with viewer:
        refused = viewer.post(QS, json={"dbName": api.sandbox_name, "sql": "SELECT 1"})
        assert refused.status_code == 403 and "manage-queries" in refused.text
        assert viewer.get(QS).status_code == 200


def test_a_submitted_query_can_be_cancelled(server: LiveServer, api: ApiClient) -> None:
    server.services.query_job_runner.stop()  # nothing claims it meanwhile
    query = submit(api, "SELECT 42 AS answer")
    response = api.patch(f"{QS}/{query['id']}", json={"op": "cancel"})
    assert response.status_code == 202 and response.json()["statusCode"] == 202
    assert api.get(f"{QS}/{query['id']}").json()["state"] == "CANCELLED"
    server.services.query_job_runner.start()
    deleted = api.delete(f"{QS}/{query['id']}")
    assert deleted.status_code == 200
    assert query["id"] not in [q["id"] for q in api.get(QS).json()["queries"]]
    shown = api.get(f"{QS}?excludeSoftDeleted=false").json()["queries"]
    assert query["id"] in [q["id"] for q in shown]


def test_a_query_template_runs_with_its_parameters(api: ApiClient, people: tuple[str, str]) -> None:
    _, table = people
    templates = "/data/foundation/query/query-templates"
    sql = f"SELECT _id FROM {table} WHERE _id = $key"
    body = {"name": "by id", "sql": sql, "queryParameters": {"key": "'id-0'"}}
    response = api.post(templates, json=body)
    assert response.status_code == 202, response.text
    template = response.json()
    assert template["sql"] == body["sql"] and template["_links"]["update"]["method"] == "PUT"
    by_default = ended(api, submit(api, None, templateId=template["id"])["id"])
    assert rows(api, by_default) == [{"_id": "id-0"}]
    query = submit(api, None, templateId=template["id"], queryParameters={"key": "'id-2'"})
    assert query["request"]["sql"].endswith("_id = 'id-2'")
    assert rows(api, ended(api, query["id"])) == [{"_id": "id-2"}]
    listed = api.get(f"{templates}?property=name==by id").json()
    assert [t["id"] for t in listed["templates"]] == [template["id"]]
    replaced = api.put(f"{templates}/{template['id']}", json={"name": "by id", "sql": "SELECT $n AS n"})
    assert replaced.status_code == 202 and replaced.json()["sql"] == "SELECT $n AS n"
    missing = api.post(QS, json={"dbName": api.sandbox_name, "templateId": template["id"]})
    assert missing.status_code == 400 and missing.json()["report"]["field"] == "queryParameters"
    unknown = api.post(QS, json={"dbName": api.sandbox_name, "templateId": "nope"})
    assert unknown.status_code == 400 and unknown.json()["report"]["field"] == "templateId"
    assert api.post(templates, json={"name": "x"}).json()["report"]["field"] == "sql"
    assert api.delete(f"{templates}/{template['id']}").status_code == 202
    assert api.get(f"{templates}/{template['id']}").status_code == 404


def test_aepp_runs_queries_and_templates(
    server: LiveServer,
    api: ApiClient,
    people: tuple[str, str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aepp's QueryService, configured for the platform with only the hosts changed (as in
    tests/test_aepp_client.py), in this test's sandbox."""
    aepp = pytest.importorskip("aepp")
    from aepp import config, queryservice

    _, table = people
    monkeypatch.chdir(tmp_path)  # aepp may write files in the working folder
    c = server.creds
    aepp.configure(
        org_id=c["orgId"],
        client_id=c["apiKey"],
        secret=c["clientSecret"],
        scopes="openid",
        sandbox=api.sandbox_name,
    )
    config.endpoints["global"] = server.base_url
    config.config_object["imsEndpoint"] = server.base_url
    config.config_object["oauthTokenEndpointV2"] = server.base_url + "/ims/token/v3"
    qs = queryservice.QueryService()
    dbname = f"{api.sandbox_name}:all"
    first = qs.postQueries(name="count", dbname=dbname, sql=f"SELECT count(*) AS n FROM {table}")
    assert first["state"] in ("SUBMITTED", "IN_PROGRESS", "SUCCESS"), first
    wait_until(lambda: qs.getQuery(first["id"])["state"] == "SUCCESS", timeout=30)
    template = qs.createQueryTemplate(name="ids", sql=f"SELECT _id FROM {table} WHERE _id = $key")
    assert template["id"] in [t["id"] for t in qs.getTemplates()]
    assert qs.getTemplate(template["id"])["sql"].endswith("$key")
    second = qs.postQueries(
        name="one", dbname=dbname, templateId=template["id"], queryParameters={"key": "'id-1'"}
    )
    wait_until(lambda: qs.getQuery(second["id"])["state"] == "SUCCESS", timeout=30)
    assert rows(api, qs.getQuery(second["id"])) == [{"_id": "id-1"}]
    # Pages of one, followed through _links.next as aepp does.
    listed = qs.getQueries(limit=1, n_results=2)
    assert [q["id"] for q in listed] == [second["id"], first["id"]]
    # aepp's createQuery with ctasParameters, then insertIntoParameters (the dataset by its name).
    ctas = qs.createQuery(
        name="ctas",
        dbname=dbname,
        sql=f"SELECT _id AS key FROM {table}",
        ctasParameters={"datasetName": "Key copy", "description": "keys"},
    )
    wait_until(lambda: qs.getQuery(ctas["id"])["state"] == "SUCCESS", timeout=30)
    copy = api.get(f"{CAT}/dataSets/{qs.getQuery(ctas['id'])['datasetId']}").json()
    assert [(d["name"], d["description"]) for d in copy.values()] == [("Key copy", "keys")]
    more = qs.createQuery(
        name="more", dbname=dbname, sql="SELECT 'x' AS key", insertIntoParameters={"datasetName": "Key copy"}
    )
    wait_until(lambda: qs.getQuery(more["id"])["state"] == "SUCCESS", timeout=30)
    assert qs.getQuery(more["id"])["isInsertInto"] is True
    qs.deleteTemplate(template["id"])
    assert api.get(f"/data/foundation/query/query-templates/{template['id']}").status_code == 404


def test_a_retried_ctas_commits_once_and_a_cancelled_one_writes_nothing(
    server: LiveServer, api: ApiClient, people: tuple[str, str]
) -> None:
    _, table = people
    svc = server.services
    sandbox = svc.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    scope = Scope(api.org_id, sandbox.id)
    done = run(api, f"CREATE TABLE retried AS SELECT _id AS key FROM {table}")
    assert done["state"] == "SUCCESS", done
    # The runner died after the commit, before saving the query: its lease ran out, another attempt runs.
    stored = stored_query(server, api, done["id"])
    assert svc.query_jobs.save_if_unchanged(stored, state="IN_PROGRESS", leaseUntil=1) is not None
    svc.query_jobs.pending.mark(stored)  # a query that never ended keeps its marker (pendingjobs.py)
    svc.query_jobs.created.notify()  # the runner looks again now
    again = ended(api, done["id"])
    assert again["state"] == "SUCCESS" and again["rowCount"] == 3 and again["datasetId"] == done["datasetId"]
    lake_table = svc.lake.load(scope, done["datasetId"])
    assert lake_table is not None and len(lake_table.snapshots()) == 1
    tables = [d["tags"]["adobe/pqs/table"][0] for d in api.get(f"{CAT}/dataSets").json().values()]
    assert tables.count("retried") == 1

    # Cancelled while it runs (claimed here, so that the cancel lands first): nothing is created.
    svc.query_job_runner.stop()
    query = submit(api, f"CREATE TABLE never AS SELECT _id AS key FROM {table}")
    claimed = svc.query_jobs.claim_next("test-runner")
    assert claimed is not None and claimed.id == query["id"]
    assert api.patch(f"{QS}/{query['id']}", json={"op": "cancel"}).status_code == 202
    svc.query_job_runner.jobs.run(claimed)  # the runner's own execution of a claimed query
    assert api.get(f"{QS}/{query['id']}").json()["state"] == "CANCELLED"
    tables = [d["tags"]["adobe/pqs/table"][0] for d in api.get(f"{CAT}/dataSets").json().values()]
    assert "never" not in tables
    svc.query_job_runner.start()


def test_the_runner_looks_only_at_open_queries_and_finds_one_left_without_its_marker(
    server: LiveServer, api: ApiClient
) -> None:
    """Queries are kept after they end; the runner's poll reads the open ones' markers, not every query
    ever run, and a query whose process died before its marker was written is still run."""
    from headwater.services.pendingjobs import PendingJobs

    store, jobs = server.services.store, server.services.query_jobs
    markers = "queryServiceQueryPending"

    def marked() -> set[str]:
        return {m.id for m in store.scan_kind(markers)}

    server.services.query_job_runner.stop()
    waiting = submit(api, "SELECT 1 AS one")
    assert waiting["id"] in marked()
    server.services.query_job_runner.start()
    assert ended(api, waiting["id"])["state"] == "SUCCESS"
    jobs.created.notify()  # the runner looks again now: that look drops the ended query's marker
    wait_until(lambda: waiting["id"] not in marked(), timeout=10)

    server.services.query_job_runner.stop()
    orphan = submit(api, "SELECT 2 AS two")
    stored = stored_query(server, api, orphan["id"])
    store.delete(markers, stored.scope, stored.id)  # as if its process died before writing the marker
    starting = PendingJobs(store, jobs.kind, jobs.pending.is_open)  # what a process starting now builds
    assert orphan["id"] in [q.id for q in starting.candidates()]
    assert orphan["id"] in marked()
    server.services.query_job_runner.start()
    assert ended(api, orphan["id"])["state"] == "SUCCESS"
