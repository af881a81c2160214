"""The files connectors against real files in a temporary folder."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from headwater.catalog import ids
from headwater.connectors import registry
from headwater.connectors.base import ReadRequest
from headwater.connectors.errors import ConnectorError, InvalidSourceParams, SourceNotFound
from headwater.connectors.files import FileInfo, client
from headwater.connectors.files.reader import LocalFilesConnector, UploadedFilesConnector, rebatch
from headwater.connectors.outbound import OutboundPolicy
from headwater.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", environment="development", files_roots=str(tmp_path))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def files(root: Path, settings: Settings) -> Iterator[LocalFilesConnector]:
    connector = registry.connector_for(ids.LOCAL_FILES, {"rootPath": str(root)}, OutboundPolicy([]), settings)
    assert isinstance(connector, LocalFilesConnector)
    yield connector
    connector.close()


def read(
    connector: LocalFilesConnector, fmt: str = "delimited", batch_size: int = 65_536, **params: Any
) -> pa.Table:
    return table_of(connector.read(ReadRequest(params=params, data_format=fmt, batch_size=batch_size)))


def table_of(batches: Iterator[pa.RecordBatch]) -> pa.Table:
    collected = list(batches)
    return pa.Table.from_batches(collected) if collected else pa.table({"id": pa.array([], pa.string())})


def rows(table: pa.Table) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = table.to_pylist()
    return out


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- delimited -------------------------------------------------------------------------------------


def test_csv_header_quoting_embedded_newlines_and_nulls(files: LocalFilesConnector, root: Path) -> None:
    write(root / "c.csv", 'id,name,note\n1,"Doe, Jane","line one\nline two"\n2,"Say ""hi""",\n3,,""\n')
    table = read(files, path="c.csv")
    assert table.schema == pa.schema([("id", pa.string()), ("name", pa.string()), ("note", pa.string())])
    assert rows(table) == [
        {"id": "1", "name": "Doe, Jane", "note": "line one\nline two"},
        {"id": "2", "name": 'Say "hi"', "note": None},
        {"id": "3", "name": None, "note": None},
    ]


def test_csv_keeps_leading_zeros_as_strings(files: LocalFilesConnector, root: Path) -> None:
    write(root / "z.csv", "zip,amount\n007,1.50\n10115,2\n")
    assert rows(read(files, path="z.csv")) == [
        {"zip": "007", "amount": "1.50"},
        {"zip": "10115", "amount": "2"},
    ]


def test_semicolon_delimiter_gzip_and_zstd(files: LocalFilesConnector, root: Path) -> None:
    write(root / "a.csv.gz", gzip.compress(b"id;city\n1;Paris, FR\n"))
    assert rows(read(files, path="a.csv.gz", columnDelimiter=";")) == [{"id": "1", "city": "Paris, FR"}]
    with pa.CompressedOutputStream(str(root / "b.data"), "zstd") as out:
        out.write(b"id;city\n2;Berlin\n")
    table = read(files, path="b.data", columnDelimiter=";", compressionType="zstd")
    assert rows(table) == [{"id": "2", "city": "Berlin"}]


def test_no_header_takes_names_from_columns(files: LocalFilesConnector, root: Path) -> None:
    write(root / "n.csv", "1,Ada\n2,Grace\n")
    table = read(files, path="n.csv", header=False, columns=[{"name": "id"}, {"name": "first"}])
    assert rows(table) == [{"id": "1", "first": "Ada"}, {"id": "2", "first": "Grace"}]
    assert read(files, path="n.csv", header=False).column_names == ["f0", "f1"]


def test_escape_char_encoding_and_column_selection(files: LocalFilesConnector, root: Path) -> None:
    write(root / "e.csv", b'id|name|x\n1|"O\\"Brien"|drop\n')
    table = read(files, path="e.csv", columnDelimiter="|", escapeChar="\\", columns=["name", "id"])
    assert rows(table) == [{"name": 'O"Brien', "id": "1"}]
    write(root / "l.csv", "name\nJos\xe9\n".encode("latin-1"))
    assert rows(read(files, path="l.csv", encoding="ISO-8859-1")) == [{"name": "José"}]


def test_infer_types_option(files: LocalFilesConnector, root: Path) -> None:
    write(root / "t.csv", "id,score\n1,2.5\n")
    request = ReadRequest(params={"path": "t.csv"}, data_format="delimited", options={"infer_types": True})
    batch = next(iter(files.read(request)))
    assert batch.schema.field("id").type == pa.int64()
    assert batch.schema.field("score").type == pa.float64()


def test_malformed_csv_is_invalid_params_naming_the_file(files: LocalFilesConnector, root: Path) -> None:
    write(root / "bad.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidSourceParams, match=r"bad\.csv"):
        read(files, path="bad.csv")


def test_empty_and_header_only_files(files: LocalFilesConnector, root: Path) -> None:
    write(root / "empty.csv", "")
    write(root / "header.csv", "a,b\n")
    assert read(files, path="empty.csv").num_rows == 0
    assert read(files, path="header.csv").num_rows == 0


# --- JSON and Parquet ------------------------------------------------------------------------------


def test_json_lines_nested(files: LocalFilesConnector, root: Path) -> None:
    write(
        root / "p.jsonl", '{"id": 1, "person": {"name": "Ada"}, "tags": ["a"]}\n\n{"id": 2, "person": null}\n'
    )
    table = read(files, "json", path="p.jsonl")
    assert rows(table) == [
        {"id": 1, "person": {"name": "Ada"}, "tags": ["a"]},
        {"id": 2, "person": None, "tags": None},
    ]


def test_json_array_file(files: LocalFilesConnector, root: Path) -> None:
    write(root / "arr.json", orjson.dumps([{"id": i, "v": f"x{i}"} for i in range(5)]))
    table = read(files, "json", batch_size=2, path="arr.json")
    assert table.column("id").to_pylist() == [0, 1, 2, 3, 4]
    with pytest.raises(InvalidSourceParams, match="array of objects"):
        write(root / "nums.json", "[1, 2]")
        read(files, "json", path="nums.json")


def test_json_batches_are_cut_in_blocks(files: LocalFilesConnector, root: Path) -> None:
    lines = b"".join(orjson.dumps({"id": i, "name": "n" * 50}) + b"\n" for i in range(5000))
    write(root / "big.jsonl", gzip.compress(lines))
    request = ReadRequest(
        params={"path": "big.jsonl", "compressionType": "gzip"},
        data_format="json",
        batch_size=1000,
        options={"block_size": 1 << 16},
    )
    batches = list(files.read(request))
    assert [b.num_rows for b in batches][:3] == [1000, 1000, 1000]
    assert sum(b.num_rows for b in batches) == 5000
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(5000))


def test_parquet(files: LocalFilesConnector, root: Path) -> None:
    table = pa.table({"id": [1, 2, 3], "at": pa.array([datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 3)])})
    pq.write_table(table, root / "t.parquet", row_group_size=2)
    out = read(files, "parquet", batch_size=2, path="t.parquet", columns=["id"])
    assert rows(out) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert files.describe("t.parquet").field("at").type == pa.timestamp("us", "UTC")


# --- paths -----------------------------------------------------------------------------------------


def test_glob_reads_files_in_sorted_order_and_skips_hidden(files: LocalFilesConnector, root: Path) -> None:
    for name in ("b.csv", "a.csv", "c.csv", ".partial.csv"):
        write(root / "in" / name, f"file\n{name}\n")
    write(root / "in" / "sub" / "d.csv", "file\nd.csv\n")
    assert read(files, path="in/*.csv").column("file").to_pylist() == ["a.csv", "b.csv", "c.csv"]
    assert read(files, path="in/**/*.csv").column("file").to_pylist() == ["a.csv", "b.csv", "c.csv", "d.csv"]
    assert read(files, path="in").column("file").to_pylist() == ["a.csv", "b.csv", "c.csv"]
    assert read(files, path="in/*.tsv").num_rows == 0
    assert read(files, path="in/.partial.csv").num_rows == 1


def test_files_listing_and_restricting_a_read(files: LocalFilesConnector, root: Path) -> None:
    write(root / "in" / "1.csv", "n\none\n")
    write(root / "in" / "2.csv", "n\ntwo\n")
    infos = files.files({"path": "in/*.csv"})
    assert [i.path for i in infos] == ["in/1.csv", "in/2.csv"]
    assert infos[0] == FileInfo("in/1.csv", 6, os.stat(root / "in" / "1.csv").st_mtime_ns)
    request = ReadRequest(
        params={"path": "in/*.csv"}, data_format="delimited", options={"files": ["in/2.csv"]}
    )
    assert pa.Table.from_batches(list(files.read(request))).column("n").to_pylist() == ["two"]
    assert [i.path for i in files.files_read] == ["in/2.csv"]


@pytest.mark.parametrize("path", ["../etc/passwd", "in/../../etc/passwd", "/etc/passwd", "../*"])
def test_paths_outside_the_root_are_refused(files: LocalFilesConnector, path: str) -> None:
    with pytest.raises(InvalidSourceParams, match="relative"):
        read(files, path=path)


def test_symlinks_out_of_the_root_are_refused(files: LocalFilesConnector, root: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.csv", "password\nhunter2\n")
    (root / "in").mkdir()
    (root / "in" / "link.csv").symlink_to(secret)
    (root / "out").symlink_to(tmp_path)
    write(root / "in" / "ok.csv", "a\n1\n")
    for path in ("in/link.csv", "in/*.csv", "out/secret.csv", "out/*"):
        with pytest.raises(InvalidSourceParams, match="outside"):
            read(files, path=path)
    with pytest.raises(InvalidSourceParams, match="outside"):
        files.describe("in/link.csv")
    assert [item.name for item in files.explore_path("in")] == ["ok.csv"]


def test_symlink_inside_the_root_is_followed(files: LocalFilesConnector, root: Path) -> None:
    write(root / "real.csv", "a\n1\n")
    (root / "alias.csv").symlink_to(root / "real.csv")
    assert rows(read(files, path="alias.csv")) == [{"a": "1"}]


@pytest.mark.parametrize("proc", [True, False], ids=["proc-self-fd", "stat-compare"])
def test_a_folder_swapped_for_a_symlink_after_matching_is_refused_when_opened(
    files: LocalFilesConnector, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: bool
) -> None:
    write(root / "in" / "a.csv", "a\n1\n")
    write(tmp_path / "outside" / "a.csv", "password\nhunter2\n")
    [(info, path)] = files.folder.match("in/a.csv")
    (root / "in").rename(root / "in-old")
    (root / "in").symlink_to(tmp_path / "outside")  # the race: after the check, before the open
    if not proc:  # a system without /proc/self/fd: the path is resolved again and compared by inode
        real_readlink = os.readlink
        monkeypatch.setattr(
            os,
            "readlink",
            lambda p: (_ for _ in ()).throw(OSError()) if "/proc/" in str(p) else real_readlink(p),
        )
    with pytest.raises(InvalidSourceParams, match="outside"):
        client.opener(path, info.path, None, files.folder.root)()


def test_a_relative_root_is_inside_the_sandbox_files_folder(settings: Settings) -> None:
    auth = {"rootPath": "exports", "_orgId": "ORG1@AdobeOrg", "_sandboxName": "prod"}
    write(settings.home / "files" / "ORG1@AdobeOrg" / "prod" / "exports" / "c.csv", "a\n3\n")
    assert rows(read(LocalFilesConnector(auth, OutboundPolicy([]), settings), path="c.csv")) == [{"a": "3"}]
    for escape in ("..", "../other", "exports/../../other/exports"):
        with pytest.raises(InvalidSourceParams, match="HEADWATER_FILES_ROOTS"):
            LocalFilesConnector({**auth, "rootPath": escape}, OutboundPolicy([]), settings).explore()


def test_missing_file_and_bad_root(files: LocalFilesConnector, root: Path, settings: Settings) -> None:
    with pytest.raises(SourceNotFound):
        read(files, path="nope.csv")
    policy = OutboundPolicy([])
    for auth in ({"rootPath": str(root / "missing")}, {"rootPath": "relative/dir"}, {}):
        with pytest.raises(InvalidSourceParams):
            LocalFilesConnector(auth, policy, settings).explore()
    write(root / "f.csv", "a\n")
    with pytest.raises(InvalidSourceParams, match="not a folder"):
        LocalFilesConnector({"rootPath": str(root / "f.csv")}, policy, settings).explore()


def test_root_may_not_overlap_headwater_home(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / "keys").mkdir()
    for folder in (settings.home, settings.home / "keys", settings.home.parent, Path("/")):
        connector = LocalFilesConnector({"rootPath": str(folder)}, OutboundPolicy([]), settings)
        with pytest.raises(InvalidSourceParams, match="home"):
            connector.explore()


# --- windows ---------------------------------------------------------------------------------------

WINDOW_CSV = (
    "id,updated\n"
    "1,2024-01-01 00:00:00\n"  # == start: excluded
    "2,2024-01-01 00:00:01\n"
    "3,2024-01-02T00:00:00Z\n"  # == end: included
    "4,2024-01-02 00:00:00.000001\n"  # just after end
    "5,\n"  # null
    "6,not a date\n"  # unparseable
    "7,2024-01-01T02:00:00+02:00\n"  # == start as an instant: excluded
)
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 2, tzinfo=UTC)


def window_ids(
    connector: LocalFilesConnector,
    start: datetime | None,
    end: datetime | None,
    path: str = "w.csv",
    fmt: str = "delimited",
    **options: Any,
) -> list[Any]:
    request = ReadRequest(
        params={"path": path},
        data_format=fmt,
        delta_column="updated",
        window_start=start,
        window_end=end,
        options=options,
    )
    ids: list[Any] = table_of(connector.read(request)).column("id").to_pylist()
    return ids


def test_window_boundaries_on_csv_strings(files: LocalFilesConnector, root: Path) -> None:
    write(root / "w.csv", WINDOW_CSV)
    assert window_ids(files, START, END) == ["2", "3"]
    assert window_ids(files, None, END) == ["1", "2", "3", "5", "6", "7"]
    assert window_ids(files, START, None) == ["2", "3", "4"]
    assert window_ids(files, None, None) == ["1", "2", "3", "4", "5", "6", "7"]


def test_window_fast_paths_and_timezone(files: LocalFilesConnector, root: Path) -> None:
    write(root / "naive.csv", "id,updated\n1,2024-01-01 00:00:00\n2,2024-01-01 01:00:00\n")
    assert window_ids(files, START, END, "naive.csv") == ["2"]
    # 01:00 in Paris is midnight UTC: on the lower bound, so excluded.
    assert window_ids(files, START, END, "naive.csv", delta_timezone="Europe/Paris") == []
    write(root / "fmt.csv", "id,updated\n1,01/01/2024 00:00\n2,02/01/2024 00:00\n3,junk\n")
    assert window_ids(files, START, END, "fmt.csv", delta_format="%d/%m/%Y %H:%M") == ["2"]


def test_window_on_typed_json_and_parquet(files: LocalFilesConnector, root: Path) -> None:
    lines = [{"id": 1, "updated": "2024-01-01T00:00:00Z"}, {"id": 2, "updated": "2024-01-02T00:00:00Z"}]
    write(root / "w.jsonl", b"\n".join(orjson.dumps(x) for x in lines))
    assert window_ids(files, START, END, "w.jsonl", "json") == [2]
    at = [datetime(2024, 1, 1), datetime(2024, 1, 1, 12), None]  # naive: UTC
    pq.write_table(
        pa.table({"id": [1, 2, 3], "updated": pa.array(at, pa.timestamp("ms"))}), root / "w.parquet"
    )
    assert window_ids(files, START, END, "w.parquet", "parquet") == [2]
    assert window_ids(files, None, END, "w.parquet", "parquet") == [1, 2, 3]


def test_window_on_a_missing_delta_column(files: LocalFilesConnector, root: Path) -> None:
    write(root / "x.csv", "id\n1\n")
    with pytest.raises(InvalidSourceParams, match="delta column"):
        window_ids(files, START, END, "x.csv")


# --- batching and scale ----------------------------------------------------------------------------


def test_batches_respect_batch_size_and_never_span_files(files: LocalFilesConnector, root: Path) -> None:
    write(root / "b" / "1.csv", "n\n" + "".join(f"{i}\n" for i in range(10)))
    write(root / "b" / "2.csv", "n\n" + "".join(f"{i}\n" for i in range(4)))
    request = ReadRequest(params={"path": "b/*.csv"}, data_format="delimited", batch_size=3)
    assert [b.num_rows for b in files.read(request)] == [3, 3, 3, 1, 3, 1]


def test_rebatch_joins_small_pieces() -> None:
    pieces = [pa.record_batch({"a": list(range(n))}) for n in (2, 2, 5, 1)]
    assert [b.num_rows for b in rebatch(pieces, 4)] == [4, 4, 2]


def test_a_large_csv_streams_in_bounded_memory(files: LocalFilesConnector, root: Path) -> None:
    # Two million rows (about 120 MB): the reader's peak (about 26 MiB, a few batches) does not grow with
    # the file, so half the file's size leaves a wide margin for what other threads allocate meanwhile.
    n = 2_000_000
    ids = pa.array(range(n)).cast(pa.string())
    table = pa.table(
        {
            "id": ids,
            "first": pa.array(["Ada", "Grace", "Alan", "Edsger"] * (n // 4)),
            "email": pa.compute.binary_join_element_wise(ids, "example.com", "@"),
            "updated": pa.array(["2024-01-01 10:00:00"] * n),
        }
    )
    pacsv.write_csv(table, root / "big.csv")
    del table, ids
    baseline = pa.total_allocated_bytes()
    peak = 0
    count = batches = 0
    started = time.perf_counter()
    for batch in files.read(ReadRequest(params={"path": "big.csv"}, data_format="delimited")):
        assert batch.num_rows <= 65_536
        count += batch.num_rows
        batches += 1
        peak = max(peak, pa.total_allocated_bytes() - baseline)
    elapsed = time.perf_counter() - started
    assert count == n
    assert batches == -(-n // 65_536)
    size = (root / "big.csv").stat().st_size
    assert peak < size / 2, f"peak Arrow memory {peak} for a {size}-byte file"
    print(f"\n{n:,}-row CSV: {n / elapsed:,.0f} rows/s, peak Arrow memory {peak / 2**20:.1f} MiB")


# --- explore, describe, preview --------------------------------------------------------------------


def test_explore_describe_preview(files: LocalFilesConnector, root: Path) -> None:
    write(root / "contacts" / "c.csv", "id,email\n1,a@x.org\n2,b@x.org\n3,c@x.org\n")
    write(root / "top.jsonl", '{"a": 1}\n')
    write(root / ".hidden", "x")
    assert [i.as_json() for i in files.explore()] == [
        {"type": "folder", "name": "contacts", "path": "contacts"},
        {"type": "file", "name": "top.jsonl", "path": "top.jsonl"},
    ]
    assert [i.path for i in files.explore_path("contacts")] == ["contacts/c.csv"]
    with pytest.raises(InvalidSourceParams):
        files.explore_path("..")
    assert files.describe("contacts/c.csv") == pa.schema([("id", pa.string()), ("email", pa.string())])
    assert files.describe("top.jsonl") == pa.schema([("a", pa.int64())])
    preview = files.preview("contacts/c.csv", limit=2)
    assert preview.to_pylist() == [{"id": "1", "email": "a@x.org"}, {"id": "2", "email": "b@x.org"}]
    write(root / "e.csv", "id,email\n")
    assert files.preview("e.csv").schema.names == ["id", "email"]
    assert files.describe("contacts").names == ["id", "email"]  # a folder: its first file
    write(root / "noext", "a\n")
    with pytest.raises(InvalidSourceParams, match="format"):
        files.describe("noext")


def test_uploaded_files_live_in_the_sandbox_files_folder(settings: Settings) -> None:
    auth = {"_connectionId": "abc-123", "_orgId": "ORG1@AdobeOrg", "_sandboxName": "prod"}
    connector = registry.connector_for(ids.UPLOADED_FILES, auth, OutboundPolicy([]), settings)
    assert isinstance(connector, UploadedFilesConnector)
    assert connector.explore() == []
    write(settings.home / "files" / "ORG1@AdobeOrg" / "prod" / "uploads" / "abc-123" / "u.csv", "a\n1\n")
    assert rows(read(connector, path="u.csv")) == [{"a": "1"}]
    policy = OutboundPolicy([])
    for bad in (
        {**auth, "_connectionId": "../keys"},
        {**auth, "_sandboxName": ".."},
        {"_connectionId": "abc"},
    ):
        with pytest.raises(InvalidSourceParams):
            UploadedFilesConnector(bad, policy, settings).explore()


def test_uploads_of_an_earlier_release_move_into_the_sandbox_folder(settings: Settings) -> None:
    write(settings.home / "uploads" / "old-1" / "u.csv", "a\n2\n")
    auth = {"_connectionId": "old-1", "_orgId": "ORG1@AdobeOrg", "_sandboxName": "prod"}
    connector = UploadedFilesConnector(auth, OutboundPolicy([]), settings)
    assert rows(read(connector, path="u.csv")) == [{"a": "2"}]
    assert not (settings.home / "uploads" / "old-1").exists()


def test_errors_are_connector_errors_with_codes(files: LocalFilesConnector, root: Path) -> None:
    write(root / "broken.csv.gz", b"not gzip at all")
    with pytest.raises(ConnectorError) as caught:
        read(files, path="broken.csv.gz")
    assert not caught.value.transient
    assert str(root) not in caught.value.message
