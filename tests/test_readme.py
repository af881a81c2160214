"""The README stays true: its quickstart's shell blocks run as written against a live server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from headwater.runtime.delivery.supervisor import ActivationSupervisor
from headwater.runtime.streamsupervisor import StreamingSupervisor
from headwater.runtime.worker import Worker
from headwater.stores.metadata import Scope
from tests.support import LiveServer

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quickstart uses curl")
@pytest.mark.timeout(300)  # a dozen CLI processes and curl calls; a loaded 2-core machine needs room
def test_readme_quickstart_runs_as_written(server: LiveServer, tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert blocks[0].lstrip().startswith("make run"), "the README opens with the two set-up commands"
    assert "make test" in blocks[0]
    script = "\n".join(blocks[1:])
    # Under pipefail, `curl … | head` fails whenever head exits before curl has written everything.
    assert "| head" not in script, "trim output with the README's first() helper, which reads it all"
    script = script.replace("http://127.0.0.1:8080", server.base_url)
    script = script.replace(".venv/bin/headwater", str(Path(sys.executable).with_name("headwater")))
    script = script.replace(".venv/bin/python", sys.executable)
    # The servers the README starts in the background serve until the reader stops them; so does the test.
    script = "set -euo pipefail\n" + script + '\necho "FLOW=$FLOW"\nkill $SF_PID $SINK_PID\n'
    # A reader's CLI has the home (the default `.headwater` there) and reaches the server at its default
    # address; the server's own variables (development, loopback outbound) are the server's only, as the
    # README sets them for `make run`.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")},
        "HEADWATER_HOME": str(server.settings.home),
        "HEADWATER_URL": server.base_url,
    }
    if server.settings.database_url:
        env["HEADWATER_DATABASE_URL"] = server.settings.database_url
    # `make run` runs the micro-batchers of streaming flows; the test server does that for this sandbox.
    org = server.creds["orgId"]
    sandbox = server.services.store.get_sandbox(org, "prod")
    assert sandbox is not None
    supervisor = StreamingSupervisor(server.services, scopes={Scope(org, sandbox.id)})
    thread = threading.Thread(target=supervisor.run_forever, daemon=True)
    thread.start()
    activations = ActivationSupervisor(server.services, scopes={Scope(org, sandbox.id)})
    activation_thread = threading.Thread(target=activations.run_forever, daemon=True)
    activation_thread.start()
    # `make run`'s worker executes the runs `headwater flows run` queues (it does not schedule here: other
    # tests' flows share the server).
    runner = Worker(server.services, name="readme-worker", schedule=False, streaming=False)
    runner_thread = threading.Thread(target=runner.run_forever, daemon=True)
    runner_thread.start()
    server.services.profile_projector.start()  # as `make run`'s worker does
    server.services.segment_job_runner.start()
    server.services.query_job_runner.start()
    try:
        result = subprocess.run(
            ["bash", "-c", script], env=env, cwd=README.parent, capture_output=True, text=True, timeout=280
        )
    finally:
        server.services.profile_projector.stop()
        server.services.segment_job_runner.stop()
        server.services.query_job_runner.stop()
        runner.stop()
        runner_thread.join(timeout=15)
        supervisor.stop()
        activations.stop()
        thread.join(timeout=15)
        activation_thread.join(timeout=15)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    found = re.search(r"FLOW=([0-9a-f-]{36})\s*$", result.stdout)
    assert found, result.stdout[-2000:]
    flow_id = found.group(1)
    assert f'"id":"{flow_id}"' in result.stdout
    assert '"scheduleParams":{"startTime":1567411548,"frequency":"minute","interval":30}' in result.stdout
    # The CSV flow: 2 rows, then only the changed and the new row; the last query lists all four versions.
    assert '"inputRecordCount":2' in result.stdout.replace(" ", "")
    for email in ("ada@example.com", "grace@example.com", "grace@navy.mil", "kj@nasa.gov"):
        assert email in result.stdout, email
    # Document 002's flow against the Salesforce-compatible server: its 50 people landed mapped.
    assert '"name":"Person"' in result.stdout.replace(" ", "")
    assert re.search(r"people\s*[┃│|]?\s*\n.*\b50\b", result.stdout, re.S), result.stdout[-1500:]
    # Query Service: the SELECT's rows, read back over REST.
    assert '"columns":[{"name":"email"' in result.stdout, result.stdout[-3000:]
    # Streaming: the single message and the batch (207) were acknowledged; two rows, web-1 once.
    assert '"syncValidation":{"skipped":true}' in result.stdout
    assert result.stdout.count("mary@example.com") == 1 and "ike@example.com" in result.stdout
    # Profiles: the CSV row and the streamed message are one profile, found by the ECID; its cluster.
    profile = re.search(r'\{"hw\d+":\{"entityId":.*', result.stdout)
    assert profile, result.stdout[-3000:]
    for part in (
        '"lastName":"Lovelace"',
        '"ECID":[{"id":"12345678901234567890123456789012345678"}]',
        '"Email":',
    ):
        assert part in profile.group(0), profile.group(0)
    assert '"members":[' in result.stdout and '"code":"ECID"' in result.stdout
    realized = r'"segmentMembership":\{"ups":\{"[^"]+":\{"status":"realized"'
    assert re.search(realized, result.stdout), result.stdout[-2000:]
    # Activation: the test request answered 200, and the streamed event was delivered to the sink.
    assert '"status":200' in result.stdout.replace(" ", "")
    assert "'delivered': 1" in result.stdout
    # The audience: Ada entered it and was sent once, to the sink's audience path.
    assert "audience delivered:" in result.stdout
    # Roles: the Viewer client's write was refused naming the permission, and the audit log holds it.
    assert "does not have the permission 'manage-sources'" in result.stdout
    compact = result.stdout.replace(" ", "")
    assert '"status":"Deny"' in compact and '"userEmail":"' in compact
