"""The contract every source connector passes, each against its own stand-in (tests/connectors/standins.py).

The cases are every entry of connectors/registry.py's SOURCES, found there: registering a connector
runs it here, and a registered folder without a stand-in fails. A folder whose connectors read another
backend too (the files connectors, the lake's bucket on S3) runs again on each of its VARIANTS. What the
contract checks:

- the window rule of connectors/base.py: ``S < v <= E`` (either bound absent), fractional bounds, null
  deltas only without a lower bound, and the row keys and delta after the output columns;
- paging: every row exactly once across server pages and batches of at most ``batch_size`` rows;
- errors: refused credentials are AuthenticationFailed, a missing object SourceNotFound, a server that is
  down a transient error (all terminal but the last);
- explore: the object is listed, described with its key and delta, and previewed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.connectors import registry
from headwater.connectors.base import ReadRequest, SourceConnector
from headwater.connectors.errors import AuthenticationFailed, ConnectorError, SourceNotFound
from tests.connectors.standins import STAND_INS, VARIANTS, StandIn, stand_in_for

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=1)
COUNT = 450  # above two of Salesforce's smallest pages (200)
ENTRIES = sorted(registry.sources().values(), key=lambda e: (e.folder, e.spec_file))
CASES = [(e, "") for e in ENTRIES] + [(e, v) for e in ENTRIES for v in VARIANTS.get(e.folder, {})]


@pytest.fixture(params=CASES, ids=[f"{e.folder}/{e.spec_file}" + (f"@{v}" if v else "") for e, v in CASES])
def stand_in(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StandIn]:
    entry, variant = request.param
    if entry.folder == "postgresql":
        request.applymarker(pytest.mark.postgres)
    yield from stand_in_for(entry, request, tmp_path, variant)


def keys_of(connector: SourceConnector, stand_in: StandIn, request: ReadRequest) -> list[str]:
    batches = list(connector.read(request))
    for batch in batches:
        assert batch.num_rows <= request.batch_size
    return [str(k) for b in batches for k in b.column(stand_in.key).to_pylist()]


def window(stand_in: StandIn, start: datetime | None, end: datetime | None) -> ReadRequest:
    return stand_in.read_request(delta_column=stand_in.delta, window_start=start, window_end=end)


def test_every_registered_source_connector_has_a_stand_in() -> None:
    assert set(STAND_INS) == set(registry.SOURCES)
    assert {e.spec_id for e in ENTRIES} == set(registry.sources())
    for folder in registry.SOURCES:
        assert folder in {e.folder for e in ENTRIES}


def test_the_window_rule(stand_in: StandIn) -> None:
    nulls = 3 if stand_in.null_deltas else 0
    keys, null_keys = stand_in.seed(COUNT, T0, STEP, nulls=nulls)
    connector = stand_in.connector()

    def between(first: int, last: int) -> list[str]:
        return sorted(keys[first : last + 1])

    inside = keys_of(connector, stand_in, window(stand_in, T0 + 100 * STEP, T0 + 200 * STEP))
    assert sorted(inside) == between(101, 200)  # S excluded, E included
    half = timedelta(milliseconds=500)
    fractional = window(stand_in, T0 + 100 * STEP + half, T0 + 200 * STEP + half)
    assert sorted(keys_of(connector, stand_in, fractional)) == between(101, 200)
    up_to = keys_of(connector, stand_in, window(stand_in, None, T0 + 10 * STEP))
    assert sorted(up_to) == sorted(keys[:11] + null_keys)  # no lower bound: the null deltas too
    since = keys_of(connector, stand_in, window(stand_in, T0 + 440 * STEP, None))
    assert sorted(since) == between(441, COUNT - 1)
    assert keys_of(connector, stand_in, window(stand_in, T0 + 5 * STEP, T0 + 5 * STEP)) == []


def test_row_keys_and_delta_follow_the_output_columns(stand_in: StandIn) -> None:
    keys, _ = stand_in.seed(20, T0, STEP)
    connector = stand_in.connector()
    if connector.default_lookback_seconds is None:
        pytest.skip("the connector declares no lookback: it is never asked for row keys")
    request = ReadRequest(
        params={**stand_in.params(stand_in.table), "columns": [{"name": stand_in.key}]},
        data_format=stand_in.data_format,
        delta_column=stand_in.delta,
        window_start=T0 + 4 * STEP,
        window_end=T0 + 9 * STEP,
        key_columns=(stand_in.key,),
    )
    table = pa.Table.from_batches(list(connector.read(request)))
    assert table.num_columns == 3
    assert sorted(str(k) for k in table.column(1).to_pylist()) == sorted(keys[5:10])
    deltas = sorted(table.column(2).to_pylist())
    assert deltas == [T0 + i * STEP for i in range(5, 10)]


def test_paging_returns_every_row_once(stand_in: StandIn) -> None:
    keys, _ = stand_in.seed(COUNT, T0, STEP)
    connector = stand_in.connector(page_size=200)

    request = stand_in.read_request(batch_size=100)
    batches = list(connector.read(request))

    assert len(batches) >= 5 and all(b.num_rows <= 100 for b in batches)
    read = [str(k) for b in batches for k in b.column(stand_in.key).to_pylist()]
    assert sorted(read) == sorted(keys) and len(read) == len(set(read))
    pages = stand_in.pages_requested()
    assert pages is None or pages >= 3


def test_refused_credentials_are_authentication_failed(stand_in: StandIn) -> None:
    if not stand_in.credentials:
        pytest.skip("the connector holds no credentials to refuse")
    with pytest.raises(AuthenticationFailed) as caught:
        stand_in.refusing().explore()
    assert not caught.value.transient
    assert "not-the-" not in caught.value.message  # no secret in the message


def test_a_missing_object_is_source_not_found(stand_in: StandIn) -> None:
    stand_in.seed(1, T0, STEP)
    connector = stand_in.connector()
    with pytest.raises(SourceNotFound) as caught:
        list(connector.read(stand_in.read_request(stand_in.missing)))
    assert not caught.value.transient


def test_a_source_that_is_down_is_transient(stand_in: StandIn) -> None:
    stand_in.seed(1, T0, STEP)
    connector = stand_in.unavailable()
    with pytest.raises(ConnectorError) as caught:
        list(connector.read(stand_in.read_request()))
    assert caught.value.transient, caught.value


def test_explore_describe_and_preview(stand_in: StandIn) -> None:
    stand_in.seed(12, T0, STEP)
    connector = stand_in.connector()

    listed = {name for item in connector.explore() for name in (item.name, item.path)}
    assert stand_in.table in listed
    assert {stand_in.key, stand_in.delta} <= set(connector.describe(stand_in.table).names)
    preview = connector.preview(stand_in.table, limit=5)
    assert preview.num_rows == 5
    assert {stand_in.key, stand_in.delta} <= set(preview.schema.names)


def test_a_registered_folder_without_a_stand_in_fails(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    entry = registry.SourceEntry("0000", "newsystem", "spec.json", "NewSystemConnector")
    with pytest.raises(pytest.fail.Exception, match="connectors/newsystem is registered but has no stand-in"):
        next(stand_in_for(entry, request, tmp_path))


@pytest.mark.parametrize("folder", sorted(registry.SOURCES))
def test_every_source_connector_folder_has_the_same_files(folder: str) -> None:
    root = Path(registry.__file__).parent / folder
    present = {p.name for p in root.iterdir()}
    assert {"__init__.py", "client.py", "config.py", "errors.py", "reader.py"} <= present
    assert set(registry.SOURCES[folder]) <= present  # its spec files
    assert {n for n in present if n.startswith("spec")} == set(registry.SOURCES[folder])
