"""Batch Ingestion API, upload to queryable: a CSV uploaded in chunks, COMPLETE, until the batch is
``success`` (its rows queryable), beside plain copies of the same file.

Generates a CSV of about --mb megabytes (default 256; 1024 for the record) in the profile schema's shape
(``_id,person.name.firstName,person.name.lastName,personalEmail.address``), then measures, in one run:

  disk copy  shutil.copyfile of the file (the floor: the bytes moved once on this disk)
  http copy  the same chunks (--chunk-mb, --parallel at a time) PUT with Content-Range over loopback to
             a trivial ASGI app under uvicorn that pwrites each at its offset and fsyncs (the bytes moved
             to a server's disk the way the API moves them, without parsing anything)
  headwater  `headwater serve` (its embedded worker): create a batch, INITIALIZE, the same chunks by
             PATCH, file COMPLETE, batch COMPLETE, then poll the catalog batch until ``success``

Each prints MB/s (and the server's peak RSS); the ratios are Headwater's time over each copy's (target:
within 2x of a plain copy).
Exactly once is asserted at the end: count(*) and count(DISTINCT _id) of the dataset equal the rows.

    .venv/bin/python bench/batch_ingest.py [--mb 256] [--chunk-mb 64] [--parallel 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXE = str(Path(sys.executable).with_name("headwater"))
IMPORT = "/data/foundation/import/batches"
HEADER = "_id,person.name.firstName,person.name.lastName,personalEmail.address\n"


def generate_csv(path: Path, megabytes: int) -> int:
    """A CSV of about ``megabytes`` MB; returns its row count."""
    target, rows = megabytes * 1024 * 1024, 0
    with path.open("w", buffering=8 << 20) as out:
        out.write(HEADER)
        size = len(HEADER)
        while size < target:
            lines = "".join(
                f"p{i},First{i % 5000},Last{i % 7919},person{i}@example.com\n"
                for i in range(rows, rows + 100_000)
            )
            out.write(lines)
            size += len(lines)
            rows += 100_000
    return rows


def spans(total: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, total) - 1) for s in range(0, total, chunk)]


def read_span(path: Path, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``start..end`` (inclusive) of ``path`` in 1 MiB pieces: no chunk is held whole."""
    with path.open("rb") as handle:
        handle.seek(start)
        left = end - start + 1
        while left:
            piece = handle.read(min(1 << 20, left))
            left -= len(piece)
            yield piece


def send_chunks(client: Any, url: str, path: Path, chunk: int, parallel: int, method: str = "PATCH") -> None:
    total = path.stat().st_size

    def one(span: tuple[int, int]) -> None:
        start, end = span
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{end}/{total}",
        }
        response = client.request(method, url, content=read_span(path, start, end), headers=headers)
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, spans(total, chunk)))


# --- the trivial copy server ---
def copy_app(folder: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        span = dict(scope["headers"]).get(b"content-range")  # none: the probe that it is up
        start = int(span.split(b" ")[1].split(b"-")[0]) if span else 0
        fd = os.open(folder / ("copy.csv" if span else "probe"), os.O_WRONLY | os.O_CREAT, 0o600)
        offset, more = start, True
        while more:
            message = await receive()
            body = message.get("body", b"")
            os.pwrite(fd, body, offset)
            offset += len(body)
            more = message.get("more_body", False)
        os.fsync(fd)
        os.close(fd)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def serve_copy(port: int, folder: Path) -> None:
    import uvicorn

    uvicorn.run(copy_app(folder), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def http_copy(path: Path, work: Path, chunk: int, parallel: int) -> float:
    import httpx
    from tests.support import free_port

    port, folder = free_port(), work / "copy"
    folder.mkdir()
    server = subprocess.Popen([sys.executable, __file__, "--copy-server", str(port), str(folder)])
    try:
        wait_up(f"http://127.0.0.1:{port}/", server)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            started = time.perf_counter()
            send_chunks(client, "/copy", path, chunk, parallel, method="PUT")
            seconds = time.perf_counter() - started
        assert (folder / "copy.csv").stat().st_size == path.stat().st_size
        return seconds
    finally:
        server.kill()
        server.wait()


def arrow_floor(path: Path, work: Path) -> tuple[float, float]:
    """The least a promotion can cost with this lake's tools: pyarrow's streaming CSV reader (all
    columns as strings) straight into one zstd Parquet file (pyiceberg's default codec, row groups of
    1M rows), fsynced; no mapping, validation, ids or catalog. Upload then this is the serial floor.
    Returns (seconds, CPU seconds of all threads): the CPU over the cores bounds any overlap too."""
    import resource

    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    out = work / "floor.parquet"
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    names = HEADER.strip().split(",")
    reader = pv.open_csv(
        path,
        read_options=pv.ReadOptions(block_size=16 << 20),
        convert_options=pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch, row_group_size=1 << 20)
    with out.open("rb+") as handle:
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    out.unlink()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


# --- headwater ---
def headwater(path: Path, rows: int, work: Path, chunk: int, parallel: int) -> dict[str, float]:
    import httpx
    from tests.flows_helpers import CAT, dataset, profile_schema
    from tests.support import ApiClient, free_port, token_for

    port, home = free_port(), work / "home"
    env = {
        **os.environ,
        "HEADWATER_HOME": str(home),
        "HEADWATER_PORT": str(port),
        "HEADWATER_ENVIRONMENT": "development",
        "HEADWATER_LOG_LEVEL": "warning",
    }
    env.pop("HEADWATER_FAULT_POINT", None)
    server = subprocess.Popen([EXE, "serve"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base + "/health", server)
        creds = json.loads(
            subprocess.run([EXE, "credentials", "--json"], env=env, capture_output=True).stdout
        )
        token = token_for(base, creds["apiKey"], creds["clientSecret"])
        with ApiClient(base, token, creds["apiKey"], creds["orgId"], "prod", creds["tenantId"]) as api:
            api.timeout = httpx.Timeout(600)
            dataset_id = dataset(api, profile_schema(api))
            started = time.perf_counter()
            created = api.post(IMPORT, json={"datasetId": dataset_id, "inputFormat": {"format": "csv"}})
            batch_id = created.json()["id"]
            url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/people.csv"
            assert api.post(f"{url}?action=INITIALIZE").status_code == 201
            send_chunks(api, url, path, chunk, parallel)
            assert api.post(f"{url}?action=COMPLETE").status_code == 201
            uploaded = time.perf_counter()
            assert api.post(f"{IMPORT}/{batch_id}?action=COMPLETE").status_code == 200
            while (batch := api.get(f"{CAT}/batches/{batch_id}").json()[batch_id])["status"] == "processing":
                time.sleep(0.2)  # a client polling the catalog, as AEP's guide says
            ended = time.perf_counter()
            assert batch["status"] == "success", batch
            assert batch["metrics"]["outputRecordCount"] == rows, batch["metrics"]
            peak = peak_rss_mb(server.pid)
        count, distinct = query_counts(env, dataset_id)
        assert count == distinct == rows, (count, distinct, rows)
        return {
            "upload": uploaded - started,
            "promotion": ended - uploaded,
            "total": ended - started,
            "rss": peak,
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def peak_rss_mb(pid: int) -> float:
    """The server's peak resident memory (VmHWM), in MB: no chunk or file may be held whole."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def query_counts(env: dict[str, str], dataset_id: str) -> tuple[int, int]:
    sql = "SELECT count(*) AS n, count(DISTINCT _id) AS d FROM dataset"
    command = [EXE, "datasets", "query", dataset_id, "--sandbox", "prod", "--json", sql]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        detail = out.stderr.strip() or out.stdout.strip()
        raise SystemExit(f"the count query failed ({out.returncode}): {detail}")
    row = json.loads(out.stdout.splitlines()[0])
    return int(row["n"]), int(row["d"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--copy-server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.copy_server:
        serve_copy(int(args.copy_server[0]), Path(args.copy_server[1]))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    chunk = args.chunk_mb << 20
    try:
        path = work / "people.csv"
        rows = generate_csv(path, args.mb)
        size_mb = path.stat().st_size / (1 << 20)
        print(f"{platform.node()} {os.cpu_count()} cores; {size_mb:.0f} MB, {rows:,} rows")
        print(f"chunks of {args.chunk_mb} MB, {args.parallel} at a time")
        started = time.perf_counter()
        shutil.copyfile(path, work / "disk-copy.csv")
        os.sync()
        disk = time.perf_counter() - started
        (work / "disk-copy.csv").unlink()
        http = http_copy(path, work, chunk, args.parallel)
        shutil.rmtree(work / "copy")
        floor, floor_cpu = arrow_floor(path, work)
        hw = headwater(path, rows, work, chunk, args.parallel)
        print(f"disk copy  {disk:7.2f} s  {size_mb / disk:7.1f} MB/s")
        print(f"http copy  {http:7.2f} s  {size_mb / http:7.1f} MB/s")
        print(
            f"headwater  {hw['total']:7.2f} s  {size_mb / hw['total']:7.1f} MB/s  "
            f"(upload {hw['upload']:.2f} s, COMPLETE to success {hw['promotion']:.2f} s; "
            f"{rows / hw['total']:,.0f} rows/s)"
        )
        print(
            f"arrow floor {floor:6.2f} s  (CSV read + zstd Parquet write alone; upload + it: "
            f"{(http + floor) / http:.1f}x the http copy; {floor_cpu:.2f} CPU s, so at best "
            f"{floor_cpu / (os.cpu_count() or 1) / http:.1f}x overlapped on {os.cpu_count()} cores)"
        )
        print(f"server peak RSS {hw['rss']:.0f} MB")
        print(
            f"ratio      {hw['total'] / disk:.1f}x the disk copy, {hw['total'] / http:.1f}x the http copy, "
            f"{hw['promotion'] / floor:.1f}x the floor for promotion"
        )
        print(f"exactly once: {rows:,} rows, {rows:,} distinct _id")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
