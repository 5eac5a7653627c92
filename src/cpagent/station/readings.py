"""Meter readings the station reports: clock-aligned samples, the periodic samples of a
running session, readings a TriggerMessage asks for, and the values that open and close
a transaction.

Contract with the rest of the station: a sample is read and recorded under the station's
lock, so it falls between a session's start and stop, never across them. A sample that
cannot be recorded is skipped, not retried: the session's final reading still reaches the
CSMS. Interval changes take effect at once (:meth:`Station.settings_changed`).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from cpagent.exc import StoreError
from cpagent.hal.base import Hardware, MeterReading
from cpagent.station.metering import sample_values
from cpagent.station.model import ConnectorState, MeterSample, StationOutput, StationSettings
from cpagent.station.reporting import log
from cpagent.systemd import journal_fields
from cpagent.timers import Changes, wait_due
from cpagent.timeutil import now_iso

ALIGNED_RECHECK_S = 60.0


def _next_multiple(t: float, interval: int) -> float:
    """The first multiple of ``interval`` after ``t`` (seconds since the epoch)."""
    return (math.floor(t / interval) + 1) * interval


class Readings:
    """The meter-reading part of :class:`~cpagent.station.station.Station`."""

    hardware: Hardware
    output: StationOutput
    settings: StationSettings
    connectors: dict[int, ConnectorState]
    _lock: asyncio.Lock
    _settings_changes: Changes

    if TYPE_CHECKING:
        # Defined by the other parts of the station.
        async def _read_meter(self, c: ConnectorState) -> MeterReading | None: ...

    async def sample_now(
        self, connector_id: int | None, measurands: tuple[str, ...] | None = None
    ) -> None:
        """Report the current meter values (TriggerMessage MeterValues): the sampled
        measurands, as part of a running session. With ``measurands``, those, as a reading
        of the connector apart from any session (OCPP 2.0.1 sends them in MeterValues)."""
        ids = [connector_id] if connector_id else list(self.connectors)
        async with self._lock:
            for cid in ids:
                c = self.connectors[cid]
                reading = await self._read_meter(c)
                if reading is None:
                    continue
                if measurands is None:
                    sample = self._sample(c, reading, "Trigger", self.settings.sampled_measurands)
                else:
                    sample = MeterSample(
                        cid,
                        now_iso(),
                        round(reading.energy_wh),
                        self._values(c, measurands, reading, "Trigger"),
                    )
                await self._record_sample(sample)

    async def _aligned_loop(self) -> None:
        """Clock-aligned samples at every multiple of ClockAlignedDataInterval counted from
        midnight UTC. A new interval counts from its next boundary at once; the wall clock is
        read again at least every ALIGNED_RECHECK_S, so a clock set by NTP is followed."""
        due: tuple[int, float] | None = None  # the interval in force and its next boundary

        def left() -> float | None:
            nonlocal due
            interval = self.settings.clock_aligned_interval_s
            if interval <= 0:
                return None
            now = time.time()
            if due is None or due[0] != interval or due[1] - now > interval:
                due = (interval, _next_multiple(now, interval))
            return min(due[1] - now, ALIGNED_RECHECK_S)

        while True:
            await wait_due(left, self._settings_changes)
            assert due is not None
            due = (due[0], _next_multiple(max(time.time(), due[1]), due[0]))
            async with self._lock:
                for c in self.connectors.values():
                    reading = await self._read_meter(c)
                    if reading is None:
                        continue
                    await self._record_sample(
                        self._sample(
                            c,
                            reading,
                            "Sample.Clock",
                            self.settings.aligned_measurands,
                            self.settings.stop_txn_aligned_measurands,
                        )
                    )

    async def _sampler(self, c: ConnectorState, local_id: int) -> None:
        last = time.monotonic()

        def left() -> float | None:
            interval = self.settings.meter_value_sample_interval_s
            return last + interval - time.monotonic() if interval > 0 else None

        while True:
            await wait_due(left, self._settings_changes)
            last = time.monotonic()
            async with self._lock:
                tx = c.transaction
                if tx is None or tx.local_id != local_id:
                    return
                reading = await self._read_meter(c)
                if reading is None:
                    continue
                await self._record_sample(
                    self._sample(
                        c,
                        reading,
                        "Sample.Periodic",
                        self.settings.sampled_measurands,
                        self.settings.stop_txn_sampled_measurands,
                    )
                )

    def _sample(
        self,
        c: ConnectorState,
        reading: MeterReading,
        context: str,
        measurands: tuple[str, ...],
        stop_measurands: tuple[str, ...] = (),
    ) -> MeterSample:
        """Values to report now and, during a session, values to keep for its final record."""
        tx = c.transaction
        return MeterSample(
            c.connector_id,
            now_iso(),
            round(reading.energy_wh),
            self._values(c, measurands, reading, context),
            tx.local_id if tx else None,
            self._values(c, stop_measurands, reading, context) if tx else (),
        )

    def _values(
        self, c: ConnectorState, measurands: tuple[str, ...], reading: MeterReading, context: str
    ) -> tuple[Any, ...]:
        hw = self.hardware.connectors[c.connector_id]
        phases = hw.phase_switch.phases if hw.phase_switch is not None else hw.phases
        return sample_values(
            measurands, reading, context=context, offered_a=c.offered_a, phases=phases
        )

    async def _record_sample(self, sample: MeterSample) -> None:
        """Meter values are worth a retry only through the queue; one that cannot even be
        written (disk full) is skipped: the session's final reading still reaches the CSMS."""
        try:
            await self.output.meter_values(sample)
        except StoreError as err:
            log.error(
                "connector %d: meter values not recorded: %s",
                sample.connector_id,
                err,
                extra=journal_fields(
                    connector=sample.connector_id, local_transaction_id=sample.tx_local_id
                ),
            )
