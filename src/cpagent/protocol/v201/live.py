"""Run-time values of the OCPP 2.0.1 device model: what the station knows at this moment.

Some variables have no factory value because only the running station can say it: the
clock (ClockCtrlr.DateTime), the AvailabilityState of the station, each EVSE and each
connector, and who the station is (ChargingStation.Model and VendorName,
SecurityCtrlr.Identity). :func:`refresh` writes them into the model just before the CSMS
reads it (GetVariables, GetBaseReport, GetReport), so that every Accepted answer and every
report carries a value, as B06 and B07 expect of a variable that exists.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cpagent.protocol.v201 import messages
from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.device_model import CONNECTOR_ID, DeviceModel
from cpagent.protocol.v201.values import ValueRejected
from cpagent.timeutil import now_iso

if TYPE_CHECKING:
    from cpagent.config import Config
    from cpagent.station.station import Station

_AVAILABILITY = VariableRef("AvailabilityState")


def refresh(model: DeviceModel, station: Station | None, config: Config) -> None:
    """Bring the run-time variables of ``model`` up to date with ``station`` and the clock.

    Identity values the installer or the CSMS set are kept; the config's charge point id,
    vendor and model fill them only where the model has none.
    """
    model.update(ComponentRef("ClockCtrlr"), VariableRef("DateTime"), now_iso())
    station_ref = ComponentRef("ChargingStation")
    cp = config.charge_point
    for ref, variable, value in (
        (station_ref, VariableRef("VendorName"), cp.vendor),
        (station_ref, VariableRef("Model"), cp.model),
        (ComponentRef("SecurityCtrlr"), VariableRef("Identity"), cp.id),
    ):
        if model.actual(ref, variable) is None and value:
            with contextlib.suppress(ValueRejected):  # one too long for its variable
                model.update(ref, variable, value)
    if station is None:
        return
    charger = station.charger.status
    if charger is not None:
        model.update(station_ref, _AVAILABILITY, messages.connector_status(charger))
    for cid, connector in station.connectors.items():
        if connector.status is None:
            continue
        state = messages.connector_status(connector.status, plugged=station.plugged(cid))
        model.update(ComponentRef("EVSE", evse=cid), _AVAILABILITY, state)
        model.update(
            ComponentRef("Connector", evse=cid, connector=CONNECTOR_ID), _AVAILABILITY, state
        )
