"""Batch ingestion throughput: CSV -> mapping -> Iceberg, beside plain pyarrow CSV -> Parquet.

Generates an N-row contacts CSV (default 10M), then in separate processes (so each has its own peak RSS):
  baseline   pyarrow streaming CSV reader -> ParquetWriter (no mapping, no validation, no catalog)
  headwater  a real flow run: the local-files connector, the mapping set (3 attribute mappings + _id),
             schema validation, Parquet data files and one Iceberg commit with its checkpoint
Prints rows/s, peak RSS and the ratio of Headwater's time to the baseline's.
Targets (shared/DESIGN.md): >= 1,000,000 rows/s, ratio <= 1.5, peak RSS < 1.5 GB for 10M rows.

Then an incremental pull from the Salesforce-compatible server (tests/fakes/salesforce.py, in its own
process): a full first run and an incremental second run over the changed records, beside the raw
rate of downloading the same query pages. Target: >= 50,000 records/s.

    .venv/bin/python bench/batch.py [--rows 10000000] [--sf-records 200000] [--skip-salesforce]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate_csv(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    chunk = 1_000_000
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with pacsv.CSVWriter(
        path, pa.schema([(n, pa.string()) for n in ("id", "first_name", "last_name", "email", "updatedAt")])
    ) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = [str(start + i) for i in range(n)]
            stamp = (base + timedelta(seconds=start)).strftime("%Y-%m-%d %H:%M:%S")
            writer.write_table(
                pa.table(
                    {
                        "id": ids,
                        "first_name": [f"First{i % 5000}" for i in range(n)],
                        "last_name": [f"Last{i % 7919}" for i in range(n)],
                        "email": [f"person{start + i}@example.com" for i in range(n)],
                        "updatedAt": [stamp] * n,
                    }
                )
            )


def phase_baseline(csv_path: Path, out: Path) -> dict[str, Any]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    started = time.perf_counter()
    reader = pacsv.open_csv(csv_path, read_options=pacsv.ReadOptions(block_size=8 << 20))
    rows = 0
    with pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - started}


def bench_services(home: Path, **settings: Any) -> tuple[Any, Any]:
    """Services on a fresh home, and an actor in the default organization's prod sandbox."""
    from headwater.container import Services
    from headwater.services.tenancy import Actor
    from headwater.settings import Settings

    services = Services(Settings(home=home, environment="development", embedded_worker=False, **settings))
    services.start()
    org = services.tenancy.default_org()
    assert org is not None
    sandbox = services.store.get_sandbox(org.id, "prod")
    assert sandbox is not None
    return services, Actor(org, sandbox, "bench")


def profile_flow(
    services: Any,
    actor: Any,
    source_id: str,
    flow_spec: str,
    id_column: str,
    columns: tuple[str, str, str],
    delta: str | None = None,
) -> str:
    """A profile schema, dataset, lake target and mapping (id, first, last name, email) and a flow."""
    schema = services.schemas.schemas.create(
        actor,
        {
            "title": "bench",
            "allOf": [
                {"$ref": "https://ns.adobe.com/xdm/context/profile"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
            ],
            "meta:class": "https://ns.adobe.com/xdm/context/profile",
        },
    )
    dataset = services.datasets.create(actor, {"name": "bench", "schemaRef": {"id": schema.id}})
    target = services.target_connections.create(
        actor,
        {
            "name": "lake",
            "params": {"dataSetId": dataset.id},
            "connectionSpec": {"id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c"},
        },
    )
    first, last, email = columns
    mapping = services.mapping_sets.create(
        actor,
        {
            "xdmSchema": schema.id,
            "mappings": [
                {"destinationXdmPath": "_id", "sourceAttribute": id_column},
                {"destinationXdmPath": "person.name.firstName", "sourceAttribute": first},
                {"destinationXdmPath": "person.name.lastName", "sourceAttribute": last},
                {"destinationXdmPath": "personalEmail.address", "sourceAttribute": email},
            ],
        },
    )
    transformations: list[dict[str, Any]] = [{"name": "Mapping", "params": {"mappingId": mapping.id}}]
    if delta:
        transformations.insert(0, {"name": "Copy", "params": {"deltaColumn": {"name": delta}}})
    flow = services.flows.create(
        actor,
        {
            "name": "bench",
            "flowSpec": {"id": flow_spec},
            "sourceConnectionIds": [source_id],
            "targetConnectionIds": [target.id],
            "transformations": transformations,
        },
    )
    return str(flow.id)


def timed_run(
    services: Any, actor: Any, flow_id: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    from headwater.runtime.worker import Worker

    run = services.runs.create_and_queue(actor, {"flowId": flow_id, "params": params or {}})
    started = time.perf_counter()
    assert Worker(services, name="bench").run_one(run.id)
    seconds = time.perf_counter() - started
    doc = services.runs.get(actor, run.id).doc
    records = doc["metrics"]["recordSummary"]
    return {
        "rows": records["outputRecordCount"],
        "records": records["inputRecordCount"],
        "failed": records["failedRecordCount"],
        "seconds": seconds,
        "state": doc["state"],
    }


def phase_headwater(csv_path: Path, home: Path) -> dict[str, Any]:
    services, actor = bench_services(home, files_roots=str(csv_path.parent))  # the CSV is beside the home
    conn = services.connections.create(
        actor,
        {
            "name": "bench files",
            "auth": {"specName": "Local Folder", "params": {"rootPath": str(csv_path.parent)}},
            "connectionSpec": {"id": "c79513cd-ceb9-437a-812d-a5b148aceb4c"},
        },
    )
    source = services.source_connections.create(
        actor,
        {
            "name": "contacts",
            "baseConnectionId": conn.id,
            "data": {"format": "delimited"},
            "params": {"path": csv_path.name},
        },
    )
    flow = profile_flow(
        services,
        actor,
        source.id,
        "52b72b28-2b0c-4932-b239-a3ed85e219bc",
        "id",
        ("first_name", "last_name", "email"),
    )
    result = timed_run(services, actor, flow)
    services.close()
    return result


def raw_download(info: dict[str, Any]) -> dict[str, Any]:
    """The baseline: download and decode the same query's pages with httpx."""
    import httpx

    started = time.perf_counter()
    url = info["instance"] + f"/services/data/v{info['version']}/query"
    params: dict[str, str] | None = {
        "q": "SELECT Id, FirstName, LastName, Email, LastModifiedDate FROM Contact"
    }
    fetched = 0
    with httpx.Client(headers={"Authorization": f"Bearer {info['token']}"}) as client:
        while url:
            page = client.get(url, params=params).json()
            fetched += len(page["records"])
            params = None
            url = info["instance"] + page["nextRecordsUrl"] if page.get("nextRecordsUrl") else ""
    return {"records": fetched, "seconds": time.perf_counter() - started}


def phase_salesforce(records: int, home: Path) -> dict[str, Any]:
    fake_proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", "sf-server", "--sf-records", str(records)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake_proc.stdout is not None
    info = json.loads(fake_proc.stdout.readline())
    try:
        services, actor = bench_services(home, outbound_allow="127.0.0.1")
        raw = raw_download(info)
        conn = services.connections.create(
            actor,
            {
                "name": "sf",
                "auth": {"specName": "Basic Authentication", "params": info["auth"]},
                "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"},
            },
        )
        columns = [{"name": n} for n in ("Id", "FirstName", "LastName", "Email", "LastModifiedDate")]
        source = services.source_connections.create(
            actor,
            {
                "name": "contacts",
                "baseConnectionId": conn.id,
                "data": {"format": "tabular"},
                "params": {"tableName": "Contact", "columns": columns},
            },
        )
        flow = profile_flow(
            services,
            actor,
            source.id,
            "14518937-270c-4525-bdec-c2ba7cce3860",
            "Id",
            ("FirstName", "LastName", "Email"),
            delta="LastModifiedDate",
        )
        results = {
            label: timed_run(services, actor, flow, {"windowEndTime": info[key]})
            for label, key in (("full", "end_full"), ("incremental", "end_incremental"))
        }
        services.close()
        return {"raw": raw, **results}
    finally:
        fake_proc.terminate()
        fake_proc.wait(timeout=30)


def phase_sf_server(records: int) -> None:
    import httpx
    from tests.fakes.salesforce import SalesforceFake

    fake = SalesforceFake().start()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ids = fake.generate("Contact", records, start=t0, step=timedelta(milliseconds=10))
    end_full = t0 + timedelta(milliseconds=10 * records)
    fake.update(
        "Contact",
        ids[: records // 2],
        {"Email": "changed@example.com"},
        modified=end_full + timedelta(hours=1),
    )
    auth = fake.soap_auth()
    token = httpx.post(
        fake.base_url + "/services/oauth2/token",
        data={
            "grant_type": "password",
            **{k: v for k, v in fake.password_grant_auth().items() if k in ("client_id", "client_secret")},
            "client_id": fake.password_grant_auth()["clientId"],
            "client_secret": fake.password_grant_auth()["clientSecret"],
            "username": auth["username"],
            "password": auth["password"] + auth["securityToken"],
        },
    ).json()["access_token"]
    print(
        json.dumps(
            {
                "auth": auth,
                "instance": fake.base_url,
                "version": auth["apiVersion"],
                "token": token,
                "end_full": end_full.isoformat(),
                "end_incremental": (end_full + timedelta(hours=2)).isoformat(),
            }
        ),
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


def run_phase(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sf-records", type=int, default=200_000)
    parser.add_argument("--skip-salesforce", action="store_true")
    parser.add_argument("--phase", choices=["baseline", "headwater", "salesforce", "sf-server"])
    parser.add_argument("--csv")
    parser.add_argument("--home")
    args = parser.parse_args()
    if args.phase:
        if args.phase == "sf-server":
            phase_sf_server(args.sf_records)
            return
        if args.phase == "baseline":
            result = phase_baseline(Path(args.csv), Path(args.home) / "baseline.parquet")
        elif args.phase == "headwater":
            result = phase_headwater(Path(args.csv), Path(args.home))
        else:
            result = phase_salesforce(args.sf_records, Path(args.home))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="hw-bench-batch-"))
    data = work / "data"
    data.mkdir()
    csv_path = data / "contacts.csv"
    started = time.perf_counter()
    generate_csv(csv_path, args.rows)
    print(
        f"# bench/batch.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} cpus  "
        f"python {platform.python_version()}  rows={args.rows:,}  "
        f"csv={csv_path.stat().st_size / 1e6:,.0f} MB "
        f"(generated in {time.perf_counter() - started:.0f} s)"
    )
    base = run_phase("--phase", "baseline", "--csv", str(csv_path), "--home", str(work))
    head = run_phase("--phase", "headwater", "--csv", str(csv_path), "--home", str(work / "home"))
    base_rate, head_rate = base["rows"] / base["seconds"], head["rows"] / head["seconds"]
    ratio = head["seconds"] / base["seconds"]
    print(
        f"baseline  pyarrow CSV->Parquet        {base['rows']:>11,} rows {base['seconds']:7.2f} s "
        f"{base_rate:>12,.0f} rows/s  peak RSS {base['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"headwater CSV->mapping->Iceberg       {head['rows']:>11,} rows {head['seconds']:7.2f} s "
        f"{head_rate:>12,.0f} rows/s  peak RSS {head['peak_rss_mb']:,.0f} MB  state {head['state']}"
    )
    print(
        f"ratio (headwater time / baseline time) {ratio:.2f}x   targets: >= 1,000,000 rows/s "
        f"[{'OK' if head_rate >= 1e6 else 'MISS'}], ratio <= 1.5 [{'OK' if ratio <= 1.5 else 'MISS'}], "
        f"peak RSS < 1.5 GB [{'OK' if head['peak_rss_mb'] < 1536 else 'MISS'}]"
    )
    if args.skip_salesforce:
        return
    sf = run_phase("--phase", "salesforce", "--sf-records", str(args.sf_records), "--home", str(work / "sf"))
    raw_rate = sf["raw"]["records"] / sf["raw"]["seconds"]
    for label in ("full", "incremental"):
        r = sf[label]
        rate = r["records"] / r["seconds"]
        print(
            f"salesforce {label:<12} {r['records']:>9,} records {r['seconds']:6.2f} s "
            f"{rate:>10,.0f} records/s "
            f"({rate / raw_rate:.2f}x of raw page download {raw_rate:,.0f}/s)  state {r['state']}  "
            f"target >= 50,000/s [{'OK' if rate >= 50_000 else 'MISS'}]"
        )


if __name__ == "__main__":
    main()
