"""Issue 12 §1 (files) and §5c (upload names): a files connection reads only the folders it is allowed,
through the real server. The test servers allow pytest's tmp folder (conftest: HEADWATER_FILES_ROOTS);
everything else (/etc, /proc, the home, other sandboxes' files) must stay unreadable."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.connectors.errors import InvalidSourceParams
from headwater.connectors.files import roots
from headwater.runtime.worker import Worker
from headwater.settings import Settings
from tests.flows_helpers import FS, created_id
from tests.support import ApiClient, LiveServer, role_client
from tests.test_batch_runs import contact, files_flow, rows, run_and_wait, write_csv

LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
SECRET = "secret-outside@example.com"


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside every allowed root (beside pytest's tmp folder, not in it), holding contacts."""
    folder = Path(tempfile.mkdtemp(prefix="headwater-outside-"))
    write_csv(folder / "contacts.csv", [contact(99, "2024-01-01 00:00:00", email=SECRET)])
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def local_folder(api: ApiClient, root: str) -> Any:
    return api.post(
        f"{FS}/connections",
        json={
            "name": "Local",
            "auth": {"specName": "Local Folder", "params": {"rootPath": root}},
            "connectionSpec": {"id": LOCAL_FILES, "version": "1.0"},
        },
    )


def assert_refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert "HEADWATER_FILES_ROOTS" in body["detail"], body
    assert body["report"]["errors"][0]["path"] == "auth.params.rootPath"


def uploads_connection(api: ApiClient) -> str:
    return created_id(
        api.post(
            f"{FS}/connections",
            json={"name": "Uploads", "connectionSpec": {"id": UPLOADED_FILES, "version": "1.0"}},
        )
    )


def test_the_passwd_exploit_is_refused_at_the_first_step(server: LiveServer, api: ApiClient) -> None:
    # The attack: a connection on /, a source on etc/passwd, a flow, a run, a Viewer reads the preview.
    assert_refused(local_folder(api, "/"))
    assert api.get(f"{FS}/connections").json()["items"] == []


def test_root_paths_outside_the_allowed_folders_are_refused_at_save(
    server: LiveServer, api: ApiClient, other_sandbox_api: ApiClient, tmp_path: Path, outside: Path
) -> None:
    home = server.settings.home
    other_area = home / "files" / api.org_id / other_sandbox_api.sandbox_name
    (tmp_path / "to-etc").symlink_to("/etc")  # a symlink inside an allowed root, planted before the save
    for root in (
        "/",
        "/etc",
        "/proc/self",
        "/sys",
        "/dev",
        str(tmp_path) + "/.." * 12 + "/etc",  # `..` is resolved before the check
        str(tmp_path / "to-etc"),
        str(outside),
        str(home),
        str(home / "keys"),
        str(home.parent),  # contains the home
        str(other_area),  # another sandbox's files, its uploads included
        "..",  # relative: inside this sandbox's files folder, and not above it
        f"../{other_sandbox_api.sandbox_name}",
    ):
        assert_refused(local_folder(api, root))
    nul = local_folder(api, str(tmp_path) + "\0/etc")
    assert nul.status_code == 400 and nul.json()["report"]["errors"][0]["path"] == "auth.params.rootPath"
    assert api.get(f"{FS}/connections").json()["items"] == []
    # Allowed: this sandbox's own files folder (relative or absolute) and the operator's folders.
    own = home / "files" / api.org_id / api.sandbox_name
    for root in (".", "exports", str(own), str(tmp_path)):
        assert local_folder(api, root).status_code == 201, root
    assert own.is_dir()  # created on first use


def test_a_symlink_planted_after_the_save_fails_the_run_and_lands_nothing(
    api: ApiClient, worker: Worker, tmp_path: Path, outside: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(1, "2024-01-01 00:00:00")])
    ids = files_flow(api, tmp_path)
    (tmp_path / "contacts.csv").unlink()
    (tmp_path / "contacts.csv").symlink_to(outside / "contacts.csv")
    run = run_and_wait(api, ids["flow"], "2030-01-01T00:00:00Z")
    assert run["state"] == "failed", run
    error = run["metrics"]["statusSummary"]["errors"][0]
    assert "contacts.csv leads outside the connection's folder" in error["message"], error
    assert str(outside) not in str(run)
    assert rows(api, ids["dataset"]) == []


def test_a_root_swapped_for_a_symlink_after_the_save_fails_the_run(
    api: ApiClient, worker: Worker, tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    write_csv(root / "contacts.csv", [contact(1, "2024-01-01 00:00:00")])
    ids = files_flow(api, root)
    root.rename(tmp_path / "data-old")
    root.symlink_to(outside)
    run = run_and_wait(api, ids["flow"], "2030-01-01T00:00:00Z")
    assert run["state"] == "failed", run
    assert "HEADWATER_FILES_ROOTS" in run["metrics"]["statusSummary"]["errors"][0]["message"]
    assert rows(api, ids["dataset"]) == []
    assert SECRET not in api.get(f"{FS}/runs/{run['id']}").text


def test_uploads_stay_in_their_sandbox(
    server: LiveServer, api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    conn = uploads_connection(api)
    put = api.put(
        f"{FS}/connections/{conn}/files/in/contacts.csv", content=f"id,email\n1,{SECRET}\n".encode()
    )
    assert put.status_code == 201, put.text
    area = server.settings.home / "files" / api.org_id / api.sandbox_name / "uploads" / conn
    assert (area / "in" / "contacts.csv").is_file()
    # This sandbox's Local Folder connections may read its uploads; nobody else's may.
    assert local_folder(api, f"uploads/{conn}").status_code == 201
    for client in (other_sandbox_api, other_org_api):
        assert_refused(local_folder(client, str(area)))
        assert_refused(local_folder(client, f"../{api.sandbox_name}/uploads/{conn}"))
        assert_refused(local_folder(client, f"../../{api.org_id}/{api.sandbox_name}/uploads/{conn}"))
        for answer in (
            client.get(f"{FS}/connections/{conn}/files"),
            client.put(f"{FS}/connections/{conn}/files/x.csv", content=b"a\n"),
            client.get(f"{FS}/connections/{conn}/explore", params={"objectType": "root"}),
        ):
            assert answer.status_code == 404, answer.text


def test_deleting_an_uploaded_files_connection_deletes_its_files(server: LiveServer, api: ApiClient) -> None:
    uploads = server.settings.home / "files" / api.org_id / api.sandbox_name / "uploads"
    gone, kept = uploads_connection(api), uploads_connection(api)
    for conn in (gone, kept):
        for path in ("contacts.csv", "in/more.csv"):
            assert api.put(f"{FS}/connections/{conn}/files/{path}", content=b"a\n1\n").status_code == 201
    assert (uploads / gone / "in" / "more.csv").is_file()
    assert api.delete(f"{FS}/connections/{gone}").status_code == 204
    assert not (uploads / gone).exists()
    assert sorted(p.name for p in (uploads / kept).rglob("*.csv")) == ["contacts.csv", "more.csv"]
    assert api.get(f"{FS}/connections/{gone}/files").status_code == 404


def test_upload_names_the_file_system_refuses_are_4xx(api: ApiClient) -> None:
    conn = uploads_connection(api)
    for path in (
        "a%00b.csv",
        "dir%00/b.csv",
        "x" * 300 + ".csv",
        ("d" * 200 + "/") * 6 + "f.csv",
    ):
        answer = api.put(f"{FS}/connections/{conn}/files/{path}", content=b"a\n1\n")
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["report"]["parameter"] == "path"
        assert api.delete(f"{FS}/connections/{conn}/files/{path}").status_code in (400, 404)
    assert api.put(f"{FS}/connections/{conn}/files/{'x' * 250}.csv", content=b"a\n").status_code == 201
    assert api.put(f"{FS}/connections/{conn}/files/a.csv", content=b"a\n").status_code == 201
    clash = api.put(f"{FS}/connections/{conn}/files/a.csv/b.csv", content=b"a\n")  # a file on the way
    assert clash.status_code == 409, clash.text
    assert api.put(f"{FS}/connections/{conn}/files/d/b.csv", content=b"a\n").status_code == 201
    assert api.put(f"{FS}/connections/{conn}/files/d", content=b"a\n").status_code == 409  # a folder
    listed = [item["path"] for item in api.get(f"{FS}/connections/{conn}/files").json()["items"]]
    assert sorted(listed) == sorted(["a.csv", "d/b.csv", "x" * 250 + ".csv"])  # no partial file left


def test_a_viewer_reads_nothing_from_outside_through_explore(
    server: LiveServer, api: ApiClient, tmp_path: Path
) -> None:
    write_csv(tmp_path / "contacts.csv", [contact(1, "2024-01-01 00:00:00")])
    (tmp_path / "passwd.csv").symlink_to("/etc/passwd")
    conn = created_id(local_folder(api, str(tmp_path)))
    viewer = role_client(server, api, "Viewer")
    with viewer:
        answer = viewer.get(
            f"{FS}/connections/{conn}/explore", params={"objectType": "table", "object": "passwd.csv"}
        )
    assert answer.status_code in (400, 403), answer.text
    refused = api.get(
        f"{FS}/connections/{conn}/explore", params={"objectType": "table", "object": "passwd.csv"}
    )
    assert refused.status_code == 400 and "outside" in refused.json()["detail"]
    assert "root:" not in refused.text
    names = [
        i["name"] for i in api.get(f"{FS}/connections/{conn}/explore", params={"objectType": "root"}).json()
    ]
    assert names == ["contacts.csv"]  # the escaping symlink is not even listed


def test_the_never_readable_folders_hold_whatever_the_operator_lists(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, environment="development", files_roots=f"/{os.pathsep}{tmp_path}")
    place = roots.Place("ORG1@AdobeOrg", "prod")
    for root in ("/proc/self", "/proc/1/environ", "/sys/kernel", "/dev", "/", str(home), str(home / "keys")):
        with pytest.raises(InvalidSourceParams, match="HEADWATER_FILES_ROOTS"):
            roots.confine(settings, place, root)
    with pytest.raises(InvalidSourceParams, match="HEADWATER_FILES_ROOTS"):  # another sandbox's files
        roots.confine(settings, place, str(home / "files" / "ORG1@AdobeOrg" / "dev"))
    assert roots.confine(settings, place, "/etc") == Path("/etc").resolve()  # the operator allowed /
    # By default only the sandbox's own folder: another instance's home is not reachable.
    default = Settings(home=home, environment="development")
    other_home = tmp_path / "other-instance"
    (other_home / "keys").mkdir(parents=True)
    with pytest.raises(InvalidSourceParams, match="HEADWATER_FILES_ROOTS"):
        roots.confine(default, place, str(other_home / "keys"))
    with pytest.raises(ValueError, match="absolute"):
        Settings(home=home, files_roots="relative/folder")
