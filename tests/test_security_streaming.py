"""Streaming inlets under attack (issue 12, 1b and 5c): hostile messages never stop a flow, a failing lake
shows the flow failing and catches up, and an authenticated inlet wants the ``ingest-data`` permission.

Every acknowledged message either lands or becomes a row error of its flow's run, with its reason; what
is not a message at all is refused at once with a 4xx. The corpus is posted in one go, before the
micro-batcher starts, so that it is one micro-batch whose first message is the empty object of the
original attack; each hostile message is followed by a valid one that must land.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.streaming_helpers import (
    FS,
    cio_event,
    customerio_flow,
    http_api_flow,
    rows,
    scope_of,
    streaming,
    wait_rows,
)
from tests.support import ApiClient, LiveServer, role_client, wait_until

HUGE = 900_000  # characters: under the inlets' 1 MB body limit
DEEP = 60  # levels: under the inlets' nesting limit (64)


def nested(levels: int, leaf: Any = "bottom") -> Any:
    """An object ``levels`` deep (the outermost object counts as one)."""
    value: Any = {"leaf": leaf}
    for _ in range(levels - 1):
        value = {"down": value}
    return value


def row_errors(api: ApiClient, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The row errors of a streaming run (its batch's ``row_errors``), through the API."""
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors"})
    assert listing.status_code == 200, listing.text
    answer = api.get(listing.json()["data"][0]["_links"]["self"]["href"])
    assert answer.status_code == 200, answer.text
    return [orjson.loads(line) for line in answer.content.splitlines() if line.strip()]


def runs_of(api: ApiClient, flow_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"}).json()[
        "items"
    ]
    return items


def run_with(api: ApiClient, flow_id: str, failed: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll until the flow's run counts ``failed`` failed records (and return it)."""

    def found() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in runs_of(api, flow_id)
                if r["metrics"]["recordSummary"]["failedRecordCount"] >= failed
            ),
            None,
        )

    run: dict[str, Any] = wait_until(found, timeout=timeout, interval=0.2)
    return run


# Refused at once: not a message at all, or nested deeper than anything can keep.
REFUSED: list[tuple[str, bytes]] = [
    ("empty body", b""),
    ("blank body", b"  \n"),
    ("array", b"[]"),
    ("array of a message", orjson.dumps([cio_event("in-an-array")])),
    ("null", b"null"),
    ("number", b"42"),
    ("string", b'"text"'),
    ("not JSON", b'{"event_id": '),
    ("not UTF-8", b"\xff\xfe{}"),
    ("not UTF-8 inside a string", b'{"event_id": "caf\xe9"}'),
    ("NaN", b'{"event_id": "nan", "data": {"amount": NaN}}'),
    ("Infinity", b'{"event_id": "inf", "data": {"amount": Infinity}}'),
    ("too deep", orjson.dumps({"event_id": "too-deep", "extra": nested(70)})),
]

# Acknowledged, and then row errors of the run: (marker found in the stored row error, message).
BAD: list[tuple[str, dict[str, Any]]] = [
    ("{}", {}),
    ("top-level nulls", {"data": None, "event_id": None, "metric": None, "object_type": None}),
    ("nested nulls", {"data": {"identifiers": {"cio_id": None, "email": None}, "amount": None}}),
    ("null object", {"data": {"identifiers": None}}),
    ("wrong-type-amount", {"event_id": "wrong-type-amount", "data": {"amount": "lots"}}),
    ("array where an object is expected", {"data": []}),
    ("unmapped only", {"unrelated": {"x": 1}, "other": [1, 2, 3]}),
]

# Hostile but valid: acknowledged, and they land (event_id -> a check of the landed row).
ODD: list[tuple[str, dict[str, Any]]] = [
    ("huge", cio_event("huge", metric="m" * HUGE)),
    ("deep", {**cio_event("deep"), "extra": nested(DEEP)}),
    ("mixed-types-int", cio_event("mixed-types-int", amount=5)),  # type: ignore[arg-type]
    ("odd-keys", {**cio_event("odd-keys"), "": 1, "a.b": {"c.d": 2}, "emoji 🎉": "\u0000\u2028"}),
    ("nul-and-emoji", cio_event("nul-and-emoji", email="a\u0000b🎉@example.com")),
]


def test_hostile_messages_become_row_errors_and_never_block_the_ones_behind_them(
    server: LiveServer, api: ApiClient
) -> None:
    """The attack of issue 12 (1b): ``{}`` to a public inlet used to be acknowledged and then fail every
    micro-batch (``zip() argument 2 is shorter than argument 1``), so nothing acknowledged after it landed."""
    pipeline = customerio_flow(api, name="Hostile")
    url = pipeline["inletUrl"]
    headers = {"Content-Type": "application/json"}
    valid: list[str] = []
    with httpx.Client(timeout=30) as client:

        def send(message: Any) -> httpx.Response:
            return client.post(url, content=orjson.dumps(message), headers=headers)

        def send_valid(after: str) -> None:
            event_id = f"valid-after-{after}"
            assert send(cio_event(event_id, email=f"{len(valid)}@example.com")).status_code == 200
            valid.append(event_id)

        for label, message in BAD:  # the first message of the micro-batch is {}
            answer = send(message)
            assert answer.status_code == 200, (label, answer.text)
            send_valid(label)
        # Synchronous validation judges a message as the micro-batch would: {} is refused, not stored.
        checked = client.post(url + "?syncValidation=true", content=b"{}", headers=headers)
        assert checked.status_code == 400, checked.text
        assert "none of the fields" in checked.text
        refusals = {}
        for label, body in REFUSED:
            refusals[label] = client.post(url, content=body, headers=headers)
            send_valid(label)
        for label, message in ODD:
            answer = send(message)
            assert answer.status_code == 200, (label, answer.text)
            send_valid(label)
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], len(valid) + len(ODD), timeout=60)
        run = run_with(api, pipeline["flowId"], len(BAD))
    # What is not a message was refused at once, saying why (and nothing of it reached the dataset).
    for label, answer in refusals.items():
        assert answer.status_code == 400, (label, answer.status_code, answer.text)
        assert answer.json()["report"]["message"], label
    assert "64 levels" in refusals["too deep"].json()["report"]["message"]
    by_id = {r["_headwater"]["event_id"]: r for r in landed}
    assert set(by_id) == {*valid, *(label for label, _ in ODD)}
    # Every field of the valid messages landed, although the first message of their micro-batch had none.
    assert [by_id[e]["_headwater"]["email"] for e in valid] == [f"{i}@example.com" for i in range(len(valid))]
    assert all(by_id[e]["_headwater"]["amount"] == 3 for e in valid)
    assert len(by_id["huge"]["_headwater"]["metric"]) == HUGE
    assert by_id["mixed-types-int"]["_headwater"]["amount"] == 5
    assert by_id["nul-and-emoji"]["_headwater"]["email"] == "a\u0000b🎉@example.com"
    summary = run["metrics"]["recordSummary"]
    assert summary["failedRecordCount"] == len(BAD)
    assert summary["outputRecordCount"] == len(valid) + len(ODD)
    # Each bad message is kept as it was received, with its reason.
    stored = row_errors(api, run)
    assert len(stored) == len(BAD)
    received = [e["_corrupt_record"] for e in stored]
    for _, message in BAD:
        assert message in received
    assert all(e["_errors"] and all(x["code"] and x["message"] for x in e["_errors"]) for e in stored)
    empty = next(e for e in stored if e["_corrupt_record"] == {})
    assert "none of the fields" in empty["_errors"][0]["message"]
    lots = next(e for e in stored if e["_corrupt_record"].get("event_id") == "wrong-type-amount")
    assert "lots" in orjson.dumps(lots["_errors"]).decode()
    assert run["state"] == "inProgress"


def _envelope(pipeline: dict[str, str], org_id: str, entity: Any) -> dict[str, Any]:
    return {
        "header": {
            "schemaRef": {
                "id": pipeline["schemaId"],
                "contentType": "application/vnd.adobe.xed-full+json;version=1.0",
            },
            "imsOrgId": org_id,
            "datasetId": pipeline["datasetId"],
            "flowId": pipeline["flowId"],
        },
        "body": {"xdmMeta": {"schemaRef": {"id": pipeline["schemaId"]}}, "xdmEntity": entity},
    }


def _entity(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "_id": event_id,
        "timestamp": "2026-11-23T10:00:00Z",
        "_headwater": {"email": "ada@example.com", "metric": "opened", **fields},
    }


BAD_XDM: list[tuple[str, Any]] = [
    ("empty entity", {}),
    ("null id and time", {"_id": None, "timestamp": None, "_headwater": None}),
    ("tenant object as text", {"_id": "x-text", "timestamp": "2026-11-23T10:00:00Z", "_headwater": "text"}),
    ("time not a time", {"_id": "x-time", "timestamp": "yesterday", "_headwater": {"metric": "m"}}),
    ("amount not a number", _entity("x-amount", amount="many")),
    ("amount as an object", _entity("x-amount-object", amount={"value": 1})),
    ("tenant object as a list", {"_id": "x-list", "timestamp": "2026-11-23T10:00:00Z", "_headwater": [1]}),
]


def test_hostile_xdm_envelopes_in_one_batch_request_never_block_the_valid_ones(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = http_api_flow(api)
    batch_url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    messages: list[Any] = []
    for index, (_, entity) in enumerate(BAD_XDM):
        messages.append(_envelope(pipeline, api.org_id, entity))
        messages.append(_envelope(pipeline, api.org_id, _entity(f"ok-{index}")))
    messages.append(_envelope(pipeline, api.org_id, {**_entity("ok-deep"), "extra": nested(DEEP - 4)}))
    messages.append([_entity("in-an-array")])  # not a message: refused in its own response
    messages.append(_envelope(pipeline, api.org_id, {**_entity("too-deep"), "extra": nested(70)}))
    answer = httpx.post(batch_url, json={"messages": messages}, timeout=30)
    assert answer.status_code == 207, answer.text
    responses = answer.json()["responses"]
    assert all("xactionId" in r for r in responses[:-2]), responses
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], len(BAD_XDM) + 1, timeout=60)
        run = run_with(api, pipeline["flowId"], len(BAD_XDM))
    assert [r.get("statusCode") for r in responses[-2:]] == [400, 400]
    assert sorted(r["_id"] for r in landed) == sorted([f"ok-{i}" for i in range(len(BAD_XDM))] + ["ok-deep"])
    assert run["metrics"]["recordSummary"]["failedRecordCount"] == len(BAD_XDM)
    received = [e["_corrupt_record"] for e in row_errors(api, run)]
    for _, entity in BAD_XDM:
        assert entity in received


@contextmanager
def lake_unavailable(data_dir: Path) -> Iterator[None]:
    """The dataset's data folder replaced by a file while the block runs: every write of a data file
    fails (as when the lake's volume is gone), whoever the process runs as."""
    aside = data_dir.with_name(data_dir.name + ".unavailable")
    data_dir.rename(aside)
    data_dir.write_text("not a folder\n")
    try:
        yield
    finally:
        data_dir.unlink()
        aside.rename(data_dir)


def test_a_lake_failure_is_retried_and_shown_as_failing_in_the_runs_until_it_lands(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = customerio_flow(api, name="Lake down")
    url = pipeline["inletUrl"]
    assert httpx.post(url, json=cio_event("before")).status_code == 200
    with streaming(server, api):
        wait_rows(server, api, pipeline["datasetId"], 1)
        table = server.services.lake.load(scope_of(server, api), pipeline["datasetId"])
        assert table is not None
        data_dir = Path(table.location().removeprefix("file://")) / "data"
        assert data_dir.is_dir(), data_dir
        with lake_unavailable(data_dir):
            assert httpx.post(url, json=cio_event("during")).status_code == 200

            def failing() -> dict[str, Any] | None:
                return next((r for r in runs_of(api, pipeline["flowId"]) if r["state"] == "failed"), None)

            run = wait_until(failing, timeout=30, interval=0.2)
            assert run["metrics"]["statusSummary"]["status"] == "failed"
            error = run["metrics"]["statusSummary"]["errors"][0]
            assert error["code"] == "INGEST-1500-503"
            assert "FileExistsError" in error["message"] and "Retrying" in error["message"]
            assert run["failure"]["attempts"] >= 1
            assert str(data_dir) not in orjson.dumps(run).decode()  # server paths stay in the log
        landed = wait_rows(server, api, pipeline["datasetId"], 2, timeout=60)

        def recovered() -> dict[str, Any] | None:
            return next(
                (
                    r
                    for r in runs_of(api, pipeline["flowId"])
                    if r["state"] == "inProgress" and r.get("lastFailure")
                ),
                None,
            )

        run = wait_until(recovered, timeout=30, interval=0.2)
    assert sorted(r["_headwater"]["event_id"] for r in landed) == ["before", "during"]
    assert run["metrics"]["statusSummary"]["status"] == "inProgress"
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == 2
    assert run["lastFailure"]["recoveredAt"] >= run["lastFailure"]["since"]
    assert rows(server, api, pipeline["datasetId"], "select count(*) as n from dataset") == [{"n": 2}]


def test_an_authenticated_inlet_refuses_a_token_without_ingest_data(
    server: LiveServer, api: ApiClient
) -> None:
    """Issue 12, 5c: a Viewer's token wrote through an inlet that requires authentication."""
    pipeline = http_api_flow(api, auth_required=True)
    message = _envelope(pipeline, api.org_id, _entity("viewer-write"))
    viewer = role_client(server, api, "Viewer")
    refused = httpx.post(
        pipeline["inletUrl"], json=message, headers={"Authorization": viewer.headers["Authorization"]}
    )
    assert refused.status_code == 403, refused.text
    report = refused.json()["report"]
    assert report["permission"] == "ingest-data" and report["role"] == "Viewer"
    assert "'ingest-data'" in report["message"]
    batch_url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    batch = httpx.post(
        batch_url, json={"messages": [message]}, headers={"Authorization": viewer.headers["Authorization"]}
    )
    assert batch.status_code == 403 and batch.json()["report"]["permission"] == "ingest-data"
    user = role_client(server, api, "User")  # the User role holds ingest-data
    sent = httpx.post(
        pipeline["inletUrl"], json=message, headers={"Authorization": user.headers["Authorization"]}
    )
    assert sent.status_code == 200, sent.text
    # A disabled client's token is refused too, although it has not expired.
    server.services.store.set_client_enabled(user.api_key, False)
    server.services.clients.clear()
    gone = httpx.post(
        pipeline["inletUrl"], json=message, headers={"Authorization": user.headers["Authorization"]}
    )
    assert gone.status_code == 403, gone.text
    # Nothing the refused tokens sent reached the flow's stream.
    records = server.services.streams.log.read(pipeline["flowId"], server.services.streams.log.START)
    assert len(records) == 1


def test_data360_records_keep_every_field_whatever_the_first_record_of_the_micro_batch_holds(
    server: LiveServer, api: ApiClient
) -> None:
    """The Ingestion API feeds the same micro-batches: a field missing from the first record of a
    micro-batch was dropped from every record after it (Arrow took the first record's keys)."""
    from tests.test_data360_connectors import SSOT, acme_schema, create_connector, deploy, upload
    from tests.test_data360_ingest import cart, ingestion_token

    connector = create_connector(api, "Acme hostile")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    made = deploy(api, connector["id"], ["cartAdd"], api.sandbox_name)
    assert made.status_code == 201, made.text
    stream = made.json()["dataStreams"][0]
    faster = api.patch(
        f"{SSOT}/data-streams/{stream['id']}",
        params={"dataspace": api.sandbox_name},
        json={"refreshCadenceSeconds": 0},
    )
    assert faster.status_code == 200, faster.text
    token = ingestion_token(server, api)
    first = {k: v for k, v in cart("d-1").items() if k not in ("price", "quantity")}
    events = [first, cart("d-2", price=7.25), cart("d-3", quantity=None, price=None)]
    sent = httpx.post(
        f"{server.base_url}/server/events/{connector['sourceId']}",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert sent.status_code == 204, sent.text
    with streaming(server, api):
        landed = wait_rows(server, api, stream["dataSetId"], 3, timeout=60)
    by_id = {r["_id"]: r["_headwater"] for r in landed}
    assert by_id["d-2"]["price"] == 7.25 and by_id["d-2"]["quantity"] == 2
    assert by_id["d-1"]["price"] is None and by_id["d-3"]["quantity"] is None


class _Crashing:
    """A mapping that raises on the messages ``crashes`` picks (as a mapping bug would), else maps
    nothing wrong: every row passes, as it came."""

    def __init__(self, crashes: Any) -> None:
        self.crashes = crashes

    def apply(self, batch: Any) -> Any:
        import pyarrow as pa

        from headwater.engines.mapping.results import MappingResult

        if any(self.crashes(row) for row in batch.to_pylist()):
            raise RuntimeError("unexpected shape")
        return MappingResult(batch, [], pa.array([False] * batch.num_rows), batch.num_rows)


def test_a_mapping_that_raises_fails_only_the_message_it_raises_on(tmp_path: Path) -> None:
    from headwater.runtime.streammessages import MappingBroken, _map
    from headwater.stores.objectfiles import ObjectFiles
    from headwater.stores.rowerrors import RowErrorWriter

    messages = [{"n": i, "boom": i == 37} for i in range(100)]
    with RowErrorWriter(ObjectFiles.folder(tmp_path), "one.json") as writer:
        out, failed = _map(_Crashing(lambda row: row["boom"]), messages, list(range(100)), writer)
    assert failed == 1
    assert sorted(p for _, positions in out for p in positions) == [i for i in range(100) if i != 37]
    stored = [orjson.loads(line) for line in (tmp_path / "one.json").read_bytes().splitlines()]
    assert [(e["_corrupt_record"], e["_row"]) for e in stored] == [({"n": 37, "boom": True}, 37)]
    assert "unexpected shape" in stored[0]["_errors"][0]["message"]
    # A mapping that raises on every message is broken, which is no message's fault: the micro-batch
    # fails (and is retried), and no message is turned into a row error.
    with RowErrorWriter(ObjectFiles.folder(tmp_path), "all.json") as writer:
        try:
            _map(_Crashing(lambda row: True), messages, list(range(100)), writer)
        except MappingBroken as exc:
            assert "more than 64 messages" in str(exc)
        else:
            raise AssertionError("a mapping broken for every message must fail the micro-batch")
    assert (tmp_path / "all.json").read_bytes() == b""


@pytest.mark.parametrize("container", [dict, list])
def test_the_inlets_nesting_limit_is_exact(container: type) -> None:
    """64 levels are taken and 65 refused, whichever containers nest (the top one counts as one); a
    body with few brackets is known shallow without walking it."""
    from headwater.api.routes.collection import MAX_DEPTH, _check_depth
    from headwater.services.jsonbody import shallow
    from headwater.services.streaming import MessageRejected

    def levels(n: int) -> Any:
        value: Any = "leaf"
        for _ in range(n):
            value = {"k": value} if container is dict else [value]
        return value

    _check_depth(levels(MAX_DEPTH))
    _check_depth({"wide": [levels(MAX_DEPTH - 2)] * 3, "flat": list(range(1000))})
    with pytest.raises(MessageRejected):
        _check_depth(levels(MAX_DEPTH + 1))
    with pytest.raises(MessageRejected):
        _check_depth({"ok": levels(3), "deep": [levels(MAX_DEPTH)]})
    assert shallow(orjson.dumps(levels(MAX_DEPTH)))
    assert not shallow(orjson.dumps(levels(MAX_DEPTH + 1)))
