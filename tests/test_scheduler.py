"""The scheduler queues each flow's latest due slot once, honours state, startTime, endTime and `once`,
and the queued run executes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from headwater.runtime.worker import Worker, latest_due_slot
from headwater.stores.metadata import Scope
from tests.flows_helpers import FS
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_batch_runs import contact, files_flow, rows, write_csv

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_latest_due_slot() -> None:
    start = int((NOW - timedelta(hours=2, minutes=10)).timestamp())
    assert (
        latest_due_slot({"startTime": start, "frequency": "hour", "interval": 1}, NOW)
        == (start + 7200) * 1000
    )
    assert (
        latest_due_slot({"startTime": start, "frequency": "minute", "interval": 15}, NOW)
        == (start + 8 * 900) * 1000
    )
    assert latest_due_slot({"startTime": start, "frequency": "once"}, NOW) == start * 1000
    future = int((NOW + timedelta(minutes=1)).timestamp())
    assert latest_due_slot({"startTime": future, "frequency": "day", "interval": 1}, NOW) is None
    ended = {"startTime": start, "frequency": "hour", "interval": 1, "endTime": start + 3600}
    assert latest_due_slot(ended, NOW) == (start + 3600) * 1000


def _scope(server: LiveServer, api: ApiClient) -> Scope:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    return Scope(api.org_id, sandbox.id)


def test_due_flows_are_queued_once_and_run(
    server: LiveServer, api: ApiClient, worker: Worker, tmp_path: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(i, "2020-01-01 00:00:00") for i in range(3)])
    ids = files_flow(api, tmp_path)
    start = int((datetime.now(UTC) - timedelta(minutes=20)).timestamp())
    flow_url = f"{FS}/flows/{ids['flow']}"
    etag = api.get(flow_url).json()["items"][0]["etag"]
    patched = api.patch(
        flow_url,
        headers={"If-Match": etag},
        json=[
            {
                "op": "add",
                "path": "/scheduleParams",
                "value": {"startTime": start, "frequency": "minute", "interval": 15},
            }
        ],
    )
    assert patched.status_code == 200, patched.text
    scheduler = Worker(server.services, name="test-scheduler")
    scope = _scope(server, api)
    assert scheduler.schedule_due(scopes={scope}) == 1
    assert scheduler.schedule_due(scopes={scope}) == 0  # the slot is queued already

    def done() -> list[dict[str, object]] | None:
        runs = api.get(f"{FS}/runs", params={"property": f"flowId=={ids['flow']}"}).json()["items"]
        return runs if runs and runs[0]["state"] in ("success", "partialSuccess", "failed") else None

    runs = wait_until(done, timeout=60)
    assert runs[0]["state"] == "success" and runs[0]["scheduledFor"]
    assert len(rows(api, ids["dataset"])) == 3

    api.post(f"{FS}/flows/{ids['flow']}/action?op=disable")
    later = datetime.now(UTC) + timedelta(hours=1)
    assert scheduler.schedule_due(now=later, scopes={scope}) == 0  # disabled flows are not scheduled
