"""G05: a cable lock that fails is reported to an OCPP 2.0.1 CSMS with NotifyEvent, queued
durably, and reported again, cleared, when the lock works once more."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ocpp.messages import MessageType

from cpagent.config import parse_config
from cpagent.protocol.v201 import schemas
from cpagent.protocol.v201.adapter import V201Adapter
from cpagent.protocol.v201.device_model import DeviceModel
from cpagent.protocol.v201.settings import Variables
from cpagent.station.model import ConnectorState, ConnectorStatus, StatusChanged
from cpagent.store import Store


@dataclass
class FakeStation:
    """What the adapter reads of the station when a status changes."""

    connectors: dict[int, ConnectorState] = field(
        default_factory=lambda: {1: ConnectorState(1), 2: ConnectorState(2)}
    )

    def plugged(self, connector_id: int) -> bool:
        return False


async def no_reset(_kind: str) -> None:
    raise AssertionError("no reset expected")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    s.open()
    yield s
    s.close()


def status(code: str, status: ConnectorStatus, evse: int = 1) -> StatusChanged:
    return StatusChanged(evse, status, code, "2026-12-07T10:00:00.000Z")


async def test_a_lock_failure_and_its_end_are_notified_once_each(
    tmp_path: Path, store: Store
) -> None:
    config = parse_config(
        {
            "charge_point": {"id": "CP", "vendor": "V", "model": "M", "connectors": 2},
            "csms": {"url": "ws://127.0.0.1:9/ocpp", "ocpp_version": "2.0.1"},
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    model, _ = DeviceModel.from_config(2, {})
    adapter = V201Adapter(config, store, Variables(model), request_reset=no_reset)
    adapter.attach(FakeStation())  # type: ignore[arg-type]
    adapter.status_changed(status("NoError", ConnectorStatus.AVAILABLE))
    adapter.status_changed(status("ConnectorLockFailure", ConnectorStatus.FAULTED))
    adapter.status_changed(status("ConnectorLockFailure", ConnectorStatus.FAULTED))  # again
    adapter.status_changed(status("NoError", ConnectorStatus.PREPARING, evse=2))
    adapter.status_changed(status("NoError", ConnectorStatus.AVAILABLE))
    for task in list(adapter._tasks):
        await task
    rows = store.pending("2.0.1")
    assert [r.action for r in rows] == ["NotifyEvent", "NotifyEvent"]
    events = [r.payload["eventData"][0] for r in rows]
    for row in rows:
        schemas.validate(MessageType.Call, "NotifyEvent", row.payload, formats=True)
    assert [(e["actualValue"], e.get("cleared")) for e in events] == [
        ("true", None),
        ("false", True),
    ]
    assert all(
        e["component"]
        == {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}}
        for e in events
    )
    assert events[1]["eventId"] == events[0]["eventId"] + 1
