"""A full session of the real ``cpagent run`` process against an independent CSMS.

The central system here is ``ocpp_csms.CentralSystem`` (the ``ocpp-csms`` package: aiohttp
server, the mobilityhouse ``ocpp`` library's routing and JSON-schema validation), not our own
LoopbackCsms, so the agent is checked against an implementation nobody here wrote. Each step
is awaited through the CSMS's event listeners; nothing is polled with fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from ocpp_csms import (
    AuthorizationStatus,
    BootEvent,
    CentralSystem,
    ChargePoint,
    ChargePointErrorCode,
    ChargePointEvent,
    ConnectorStatus,
    MeterValuesEvent,
    RegistrationStatus,
    StatusEvent,
    TransactionStartedEvent,
    TransactionStoppedEvent,
)

from cpagent.testing.csms import WAIT_S
from tests.integration.conftest import AgentProcess

CP_ID = "CP-INDEP-1"
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

E = TypeVar("E", bound=ChargePointEvent)


class _Collect(logging.Handler):
    """Keeps every record the CSMS (and the ``ocpp`` library under it) logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        return [
            f"{r.name} {r.levelname}: {r.getMessage()}"
            for r in self.records
            if r.levelno >= logging.WARNING
        ]

    def wire(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == "ocpp_csms.wire"]


@dataclass
class Recorder:
    """The CSMS's events, in order, with a bounded wait for the next matching one."""

    seen: list[ChargePointEvent] = field(default_factory=list)
    authorized: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: ChargePointEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    async def authorize(self, _cp: ChargePoint, id_tag: str) -> AuthorizationStatus:
        self.authorized.append(id_tag)
        return AuthorizationStatus.ACCEPTED

    def mark(self) -> int:
        return len(self.seen)

    async def wait_for(
        self,
        kind: type[E],
        where: Callable[[E], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = WAIT_S,
    ) -> E:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.seen[since:]:
                if isinstance(event, kind) and (where is None or where(event)):
                    return event
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                names = [type(e).__name__ for e in self.seen[since:]]
                raise AssertionError(f"no matching {kind.__name__} within {timeout} s: {names}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


@dataclass
class Central:
    system: CentralSystem
    events: Recorder
    logs: _Collect

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.system.port}/ocpp"

    @property
    def cp(self) -> ChargePoint:
        return self.system.charge_points[CP_ID]


@pytest.fixture
async def central() -> AsyncIterator[Central]:
    events = Recorder()
    logs = _Collect()
    csms_logger = logging.getLogger("ocpp_csms")
    wire_logger = logging.getLogger("ocpp_csms.wire")
    old_wire_level = wire_logger.level
    csms_logger.addHandler(logs)
    wire_logger.setLevel(logging.DEBUG)  # keep the full frames for a failure report
    system = CentralSystem(host="127.0.0.1", port=0, authorize=events.authorize)
    system.add_listener(events)
    try:
        async with system:
            yield Central(system, events, logs)
    finally:
        csms_logger.removeHandler(logs)
        wire_logger.setLevel(old_wire_level)


@pytest.fixture
async def agent(agent_factory: Any, central: Central) -> AgentProcess:
    """One agent pointed at the independent CSMS, sampling energy and power every second."""
    a: AgentProcess = agent_factory(
        csms_url=central.url,
        cp_id=CP_ID,
        ocpp16={"MeterValueSampleInterval": 1, "MeterValuesSampledData": f"{ENERGY},{POWER}"},
    )
    await a.start()
    return a


def _status(connector_id: int, status: ConnectorStatus) -> Callable[[StatusEvent], bool]:
    return lambda e: e.connector.connector_id == connector_id and e.connector.status is status


def _value(event: MeterValuesEvent, measurand: str) -> float:
    values = [r.numeric for r in event.readings if r.measurand == measurand and r.phase is None]
    assert len(values) == 1 and values[0] is not None, event
    return values[0]


async def test_full_session_against_ocpp_csms(agent: AgentProcess, central: Central) -> None:
    events = central.events
    try:
        # Registration: the CSMS took the id from the URL's last segment and accepted it.
        boot = await events.wait_for(BootEvent)
        assert boot.charge_point_id == CP_ID
        assert boot.info.vendor == "TestVendor" and boot.info.model == "TestModel"
        assert boot.info.serial_number == "SN-0001"
        cp = central.cp
        assert cp.registration_status is RegistrationStatus.ACCEPTED
        await events.wait_for(StatusEvent, _status(0, ConnectorStatus.AVAILABLE))
        await events.wait_for(StatusEvent, _status(1, ConnectorStatus.AVAILABLE))

        # The CSMS reads the configuration we asked for, and learns of an unknown key.
        config = await cp.async_get_configuration(
            ["MeterValueSampleInterval", "MeterValuesSampledData", "HeartbeatInterval", "NoSuch"]
        )
        assert config.values["MeterValueSampleInterval"].value == "1"
        assert config.values["MeterValuesSampledData"].value == f"{ENERGY},{POWER}"
        assert config.values["HeartbeatInterval"].value == "300"  # the CSMS's default interval
        assert config.unknown_keys == ("NoSuch",)

        # Plug, card: Authorize, then a transaction with our idTag and meter start.
        mark = events.mark()
        await agent.sim("plug", "1")
        await events.wait_for(StatusEvent, _status(1, ConnectorStatus.PREPARING), since=mark)
        await agent.sim("tag", "TAG-1")
        started = await events.wait_for(TransactionStartedEvent, since=mark)
        tx = started.transaction
        assert tx.connector_id == 1 and tx.id_tag == "TAG-1" and tx.meter_start == 0
        assert tx.started_at is not None and tx.started_at.utcoffset() is not None
        assert tx.id_tag_status is AuthorizationStatus.ACCEPTED
        assert events.authorized == ["TAG-1", "TAG-1"]  # Authorize, then StartTransaction
        await events.wait_for(StatusEvent, _status(1, ConnectorStatus.CHARGING), since=mark)
        assert cp.get_transaction(1) == tx

        # Periodic meter values of the transaction: energy and power, every second.
        samples: list[MeterValuesEvent] = []
        since = mark
        while len(samples) < 3:
            sample = await events.wait_for(
                MeterValuesEvent, lambda e: e.transaction_id == tx.transaction_id, since=since
            )
            since = events.seen.index(sample) + 1
            samples.append(sample)
        energies = [_value(s, ENERGY) for s in samples]
        powers = [_value(s, POWER) for s in samples]
        assert energies == sorted(energies) and energies[0] >= tx.meter_start
        assert energies[-1] > tx.meter_start, energies
        assert all(p == pytest.approx(3 * 230 * 16, rel=0.01) for p in powers), powers
        for s in samples:
            assert s.connector_id == 1
            assert {r.context for r in s.readings} == {"Sample.Periodic"}
            assert {r.unit for r in s.readings} == {"Wh", "W"}
        reading = cp.get_meter_reading(1, POWER, location="Outlet")
        assert reading is not None and reading.numeric == pytest.approx(11040, rel=0.01)

        # The CSMS stops the session remotely.
        mark = events.mark()
        assert await cp.async_remote_stop_transaction(tx.transaction_id) == "Accepted"
        stopped = (await events.wait_for(TransactionStoppedEvent, since=mark)).transaction
        assert stopped.transaction_id == tx.transaction_id
        assert stopped.stop_reason == "Remote"
        assert stopped.meter_stop is not None and stopped.meter_stop >= tx.meter_start
        assert stopped.meter_stop >= energies[-1]
        assert stopped.energy_wh is not None and stopped.energy_wh > 0
        assert cp.transactions == {}
        await events.wait_for(StatusEvent, _status(1, ConnectorStatus.FINISHING), since=mark)

        # Unplug: the connector is free again in the CSMS's view of the charger.
        await agent.sim("unplug", "1")
        await events.wait_for(StatusEvent, _status(1, ConnectorStatus.AVAILABLE), since=mark)
        assert {cid: c.status for cid, c in cp.connectors.items()} == {
            0: ConnectorStatus.AVAILABLE,
            1: ConnectorStatus.AVAILABLE,
        }
        assert all(c.error_code is ChargePointErrorCode.NO_ERROR for c in cp.connectors.values())
        assert cp.connected

        # Nothing was refused by the CSMS's schema validation, in either direction.
        assert central.logs.problems() == []
        assert any("StopTransaction" in m for m in central.logs.wire())  # the log is live
        assert not [m for m in central.logs.wire() if re.search(r"\[4,\s*\"", m)]
        assert not re.search(r"(<-|->) \[4,", agent.log()), "a CALLERROR crossed the wire"
        assert "CALLERROR" not in agent.log()

        assert await agent.stop() == 0
    except BaseException:
        wire = "\n".join(central.logs.wire()[-200:])
        print(f"----- ocpp_csms wire log -----\n{wire}")
        print(f"----- ocpp_csms problems -----\n{central.logs.problems()}")
        raise
