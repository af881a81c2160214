"""The profile projection survives kill -9: a worker killed between two chunks of a dataset's first read
into the profiles, and another killed after its last chunk but before its sweep, leave, after a restart,
every row in the profiles exactly once and the sweep finished (real `headwater worker` processes,
SIGKILLed by their own crash points)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from tests.support import wait_until
from tests.test_batch_runs import contact, files_flow, write_csv
from tests.test_crash_recovery import Deployment, _finished, _start_run, deployment  # noqa: F401

ROWS = 6_000  # three projection chunks of HEADWATER_PROFILE_CHUNK_ROWS=2000
SR = "/data/foundation/schemaregistry/tenant"


def _profile_enabled(d: Deployment, schema_id: str, dataset_id: str) -> None:
    """What a user does to make an existing dataset feed profiles, as in AEP."""
    union = d.api.patch(
        f"{SR}/schemas/{schema_id}", json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    )
    assert union.status_code == 200, union.text
    email = d.api.post(
        f"{SR}/descriptors",
        json={
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": "/personalEmail/address",
            "xdm:namespace": "Email",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        },
    )
    assert email.status_code == 201, email.text
    tagged = d.api.patch(
        f"/data/foundation/catalog/dataSets/{dataset_id}", json={"tags": {"unifiedProfile": ["enabled:true"]}}
    )
    assert tagged.status_code == 200, tagged.text


def _profiles(home: Path) -> tuple[int, int, int]:
    """(fragments, distinct fragment keys, identities) in the home's metadata database."""
    with sqlite3.connect(home / "metadata.db") as db:
        fragments, keys = db.execute("SELECT count(*), count(DISTINCT id) FROM profile_fragments").fetchone()
        (identities,) = db.execute("SELECT count(*) FROM profile_identities").fetchone()
    return int(fragments), int(keys), int(identities)


def _links_and_cursors(home: Path) -> tuple[int, list[str]]:
    """(stored identity links, the projection cursors' states)."""
    with sqlite3.connect(home / "metadata.db") as db:
        (links,) = db.execute("SELECT count(*) FROM profile_links").fetchone()
        states = [row[0] for row in db.execute("SELECT state FROM profile_projection_cursors")]
    return int(links), states


def test_kill_9_between_projection_chunks_then_restart_projects_every_row_once(
    deployment: Deployment,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = tmp_path / "people"
    root.mkdir()
    write_csv(root / "contacts.csv", [contact(i, "2024-01-15 00:00:00") for i in range(ROWS)])
    deployment.env["HEADWATER_PROFILE_CHUNK_ROWS"] = "2000"
    ids = files_flow(deployment.api, root)
    _profile_enabled(deployment, ids["schema"], ids["dataset"])
    run_id = _start_run(deployment, ids["flow"])
    doomed = deployment.worker("profile_chunk:2")  # after two of the three chunks
    assert doomed.wait(timeout=120) == -signal.SIGKILL, deployment.worker_logs()
    assert _profiles(deployment.home)[0] < ROWS  # it died with the first read half done
    # The next one reads it all again and dies after the last chunk, before the read's sweep.
    doomed = deployment.worker("profile_sweep:1")
    assert doomed.wait(timeout=120) == -signal.SIGKILL, deployment.worker_logs()
    assert _links_and_cursors(deployment.home) == (ROWS, ["sweep"])

    survivor = deployment.worker()
    try:
        run = _finished(deployment, run_id)
        assert run["state"] == "success", run["metrics"]["statusSummary"]
        wait_until(lambda: _profiles(deployment.home) == (ROWS, ROWS, ROWS), timeout=120, interval=0.5)
        wait_until(lambda: _links_and_cursors(deployment.home) == (ROWS, [""]), timeout=60, interval=0.5)
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)
    params = {
        "schema.name": "_xdm.context.profile",
        "entityIdNS": "Email",
        "entityId": "person5999@example.com",
    }
    (entity,) = deployment.api.get("/data/core/ups/access/entities", params=params).json().values()
    assert entity["entity"]["person"]["name"] == {"firstName": "First5999", "lastName": "Last5999"}
