"""Partitioned batch runs (issue 17): a generated CSV folder through 1, 2 and 4 worker processes, beside
DuckDB COPY of the same folder to Parquet, in the same run.

Generates ``--rows`` rows (default 100M) of contacts in ``--files`` CSV files (default 16), then:
  duckdb       COPY (SELECT * FROM read_csv('<folder>/*.csv', all_varchar)) TO one Parquet file, on
               DuckDB's own threads (as many as the machine has cores): the fair "same work without
               Headwater" (no mapping, no validation, no catalog)
  unsplit      one `headwater worker` process, the run not split (HEADWATER_RUN_PARTITION_BYTES=0):
               today's behaviour
  N workers    N `headwater worker` processes (1, 2, 4), the run split into one partition per file
  ray N cpus   (``--engine ray`` or ``both``) one `headwater worker` owning the run, its partitions executed
               as Ray tasks (HEADWATER_PARTITION_ENGINE=ray) on a local Ray cluster of N CPUs (`ray start
               --head --num-cpus N` on loopback, started before the run is queued, as a deployment's
               cluster is); the owner's first connection to it and each Ray worker process's first
               import of Headwater fall inside the timed run
Each Headwater run is timed from queueing it (its workers already started and idle) to its success;
its output record count must equal the rows generated. Prints rows/s, the speed-up over the unsplit run
and the ratio of each time to DuckDB's.

``--lake s3`` puts the lake on the moto server of tests/fakes/s3.py (DuckDB's baseline: its COPY to a
local file, then the file uploaded to the same bucket); the CSV folder stays on local disk (the files
connector reads local folders).

    .venv/bin/python bench/partitioned_runs.py [--rows 100000000] [--files 16] [--workers 1,2,4]
                                               [--lake folder|s3] [--engine queue|ray|both]
                                               [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.batch import bench_services, generate_csv, profile_flow  # noqa: E402
from tests.rayhead import ray_env, session, start_head  # noqa: E402
from tests.support import free_port  # noqa: E402

EXE = str(Path(sys.executable).with_name("headwater"))
LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
FILES_TO_LAKE = "52b72b28-2b0c-4932-b239-a3ed85e219bc"


def generate_folder(folder: Path, rows: int, files: int) -> int:
    """``files`` CSV files of about ``rows / files`` rows each; their total size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    for n in range(files):
        count = min(per_file, rows - n * per_file)
        if count > 0:
            generate_csv(folder / f"contacts-{n:03d}.csv", count)
    return sum(p.stat().st_size for p in folder.glob("*.csv"))


def duckdb_copy(folder: Path, out_dir: Path, s3: Any = None, lake: dict[str, Any] | None = None) -> float:
    """Seconds to COPY the folder to one Parquet file; with ``s3``, then to upload it into the lake's
    bucket (DuckDB's httpfs extension is downloaded on first use, which this machine cannot)."""
    import duckdb

    con = duckdb.connect()
    target = out_dir / "duckdb.parquet"
    started = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{folder}/*.csv', all_varchar=true)) TO '{target}' (FORMAT parquet)"
    )
    if s3 is not None and lake is not None:
        from pyarrow import fs

        destination = str(lake["lake_url"]).removeprefix("s3://") + "/duckdb/out.parquet"
        fs.copy_files(str(target), destination, destination_filesystem=s3.filesystem())
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def _env(home: Path, folder: Path, lake: dict[str, Any] | None, partition_bytes: int) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "HEADWATER_HOME": str(home),
        "HEADWATER_ENVIRONMENT": "development",
        "HEADWATER_FILES_ROOTS": str(folder.parent),
        "HEADWATER_WORKER_POLL_SECONDS": "0.1",
        "HEADWATER_RUN_PARTITION_BYTES": str(partition_bytes),
        "HEADWATER_LOG_LEVEL": "warning",
    }
    for key, value in (lake or {}).items():
        env["HEADWATER_" + key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes, returned once each has logged that it started."""
    workers, paths = [], []
    for n in range(count):
        paths.append(logs / f"run-{len(list(logs.iterdir()))}-worker-{n}.log")
        with paths[-1].open("w") as log:
            workers.append(subprocess.Popen([EXE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log))
    deadline = time.monotonic() + 120
    while not all("Headwater worker" in p.read_text() for p in paths):
        alive = all(w.poll() is None for w in workers)
        assert alive and time.monotonic() < deadline, f"a worker did not start: see {logs}"
        time.sleep(0.05)
    return workers


def cpu_seconds(processes: list[subprocess.Popen[bytes]], ray_head: int | None = None) -> float:
    """The CPU time (user + system, every thread) the processes used so far, and every process of the
    Ray head's session (its workers included) with ``ray_head``."""
    pids = [p.pid for p in processes] + (session(ray_head) if ray_head else [])
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


def headwater_run(
    services: Any,
    actor: Any,
    source_id: str,
    env: dict[str, str],
    workers: int,
    logs: Path,
    ray_cpus: int | None = None,
) -> dict[str, Any]:
    flow = profile_flow(services, actor, source_id, FILES_TO_LAKE, "id", ("first_name", "last_name", "email"))
    head = None
    if ray_cpus:
        env = {**env, **ray_env(free_port())}
        head = start_head(env, ray_cpus)
    processes = start_workers(workers, env, logs)
    try:
        cpu = cpu_seconds(processes, head.process.pid if head else None)
        run = services.runs.create_and_queue(actor, {"flowId": flow, "params": {}})
        started = time.perf_counter()
        while True:
            doc = services.runs.get(actor, run.id).doc
            if doc["state"] in ("success", "partialSuccess", "failed"):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(processes, head.process.pid if head else None) - cpu
    finally:
        stop_workers(processes)
        if head is not None:
            head.stop()
    records = doc["metrics"]["recordSummary"]
    parts = services.store.partitions(run.id)
    return {
        "state": doc["state"],
        "errors": doc.get("metrics", {}).get("statusSummary", {}).get("errors")
        if doc["state"] == "failed"
        else None,
        "rows": records["outputRecordCount"],
        "seconds": seconds,
        "partitions": len(parts),
        "cores": cpu / seconds,
        "owners": len({p.lease_owner for p in parts}),
    }


def main() -> None:
    if os.environ.get("BENCH_TRACE"):  # seconds: dump the stacks and exit when the bench hangs
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["BENCH_TRACE"]), exit=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--lake", choices=("folder", "s3"), default="folder")
    parser.add_argument("--engine", choices=("queue", "ray", "both"), default="queue")
    parser.add_argument(
        "--threads", type=int, help="Arrow threads per worker (OMP_NUM_THREADS; default: as many as cores)"
    )
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this folder and keep it")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    scratch = Path(tempfile.mkdtemp(prefix="hw-partitions-"))
    folder = args.keep or scratch / "source"
    s3 = None
    lake: dict[str, Any] | None = None
    try:
        started = time.perf_counter()
        if args.keep and any(folder.glob("*.csv")):
            size = sum(p.stat().st_size for p in folder.glob("*.csv"))
        else:
            size = generate_folder(folder, args.rows, args.files)
        files = len(list(folder.glob("*.csv")))
        generated = time.perf_counter() - started
        if args.lake == "s3":
            from tests.fakes.s3 import S3Server

            s3 = S3Server()
            s3.start()
            lake = s3.settings(s3.new_bucket())
        print(
            f"# bench/partitioned_runs.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  "
            f"{os.cpu_count()} cpus  python {platform.python_version()}  rows={args.rows:,}  "
            f"files={files}  {size / 1e6:,.0f} MB  lake={args.lake}  threads/worker={args.threads or 'all'}  "
            f"(generated in {generated:.0f} s)  load {os.getloadavg()[0]:.1f}"
        )
        duck = duckdb_copy(folder, scratch, s3, lake)
        label = "duckdb COPY + upload" if s3 else "duckdb COPY"
        print(f"{label:20s} {duck:8.2f} s  {args.rows / duck:12,.0f} rows/s")
        home = scratch / "home"
        logs = scratch / "logs"
        logs.mkdir()
        settings: dict[str, Any] = {"files_roots": str(folder.parent), **(lake or {})}
        services, actor = bench_services(home, **settings)
        conn = services.connections.create(
            actor,
            {
                "name": "bench folder",
                "auth": {"specName": "Local Folder", "params": {"rootPath": str(folder)}},
                "connectionSpec": {"id": LOCAL_FILES},
            },
        )
        source = services.source_connections.create(
            actor,
            {
                "name": "contacts",
                "baseConnectionId": conn.id,
                "data": {"format": "delimited"},
                "params": {"path": "*.csv"},
            },
        )
        one_file = max(p.stat().st_size for p in folder.glob("*.csv"))
        plans: list[tuple[str, int, int, int | None]] = [("unsplit, 1 worker", 1, 0, None)]
        if args.engine in ("queue", "both"):
            plans += [(f"{n} worker(s)", n, one_file, None) for n in counts]
        if args.engine in ("ray", "both"):
            plans += [(f"ray {n} cpu(s)", 1, one_file, n) for n in counts]
        base = None
        for label, workers, partition_bytes, ray_cpus in plans:
            env = _env(home, folder, lake, partition_bytes)
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            result = headwater_run(services, actor, source.id, env, workers, logs, ray_cpus)
            if result["state"] != "success":  # the workers' logs of the failed run, before they go
                for log in sorted(logs.glob(f"run-{len(list(logs.iterdir())) - workers}-*.log")):
                    print(f"--- {log.name}\n{log.read_text()[:6000]}")
            assert result["state"] == "success" and result["rows"] == args.rows, result
            base = base or result["seconds"]
            print(
                f"{label:20s} {result['seconds']:8.2f} s  {args.rows / result['seconds']:12,.0f} rows/s  "
                f"speed-up {base / result['seconds']:4.2f}x  ratio to duckdb {result['seconds'] / duck:5.2f}x"
                f"  {result['cores']:.2f} cores busy  partitions={result['partitions']} held by "
                f"{result['owners']} worker(s)"
            )
        services.close()
        print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
