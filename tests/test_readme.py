"""The README stays true: its quickstart's shell blocks run as written against a live server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import LiveServer

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quickstart uses curl")
def test_readme_quickstart_runs_as_written(server: LiveServer, tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert blocks[0].lstrip().startswith("make run"), "the README opens with the two set-up commands"
    assert "make test" in blocks[0]
    script = "\n".join(blocks[1:])
    script = script.replace("http://127.0.0.1:8080", server.base_url)
    script = script.replace(".venv/bin/headwater", str(Path(sys.executable).with_name("headwater")))
    script = script.replace(".venv/bin/python", sys.executable)
    script = "set -euo pipefail\n" + script + '\necho "FLOW=$FLOW"\n'
    env = {
        **os.environ,
        "HEADWATER_HOME": str(server.settings.home),
        "HEADWATER_ENVIRONMENT": "development",
        "HEADWATER_OUTBOUND_ALLOW": "127.0.0.1",
    }
    if server.settings.database_url:
        env["HEADWATER_DATABASE_URL"] = server.settings.database_url
    result = subprocess.run(
        ["bash", "-c", script], env=env, cwd=README.parent, capture_output=True, text=True, timeout=120
    )
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
