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
import functools
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
_CLOCK, _DATE_TIME = ComponentRef("ClockCtrlr"), VariableRef("DateTime")
_STATION = ComponentRef("ChargingStation")
_IDENTITY = (
    (_STATION, VariableRef("VendorName")),
    (_STATION, VariableRef("Model")),
    (ComponentRef("SecurityCtrlr"), VariableRef("Identity")),
)


@functools.cache
def _evse_refs(evse_id: int) -> tuple[ComponentRef, ComponentRef]:
    """The EVSE and the Connector component of an EVSE (as many as the station has)."""
    return ComponentRef("EVSE", evse=evse_id), ComponentRef(
        "Connector", evse=evse_id, connector=CONNECTOR_ID
    )


def refresh(model: DeviceModel, station: Station | None, config: Config) -> None:
    """Bring the run-time variables of ``model`` up to date with ``station`` and the clock.

    Identity values the installer or the CSMS set are kept; the config's charge point id,
    vendor and model fill them only where the model has none.
    """
    model.update(_CLOCK, _DATE_TIME, now_iso())
    cp = config.charge_point
    for (ref, variable), value in zip(_IDENTITY, (cp.vendor, cp.model, cp.id), strict=True):
        if model.actual(ref, variable) is None and value:
            with contextlib.suppress(ValueRejected):  # one too long for its variable
                model.update(ref, variable, value)
    if station is None:
        return
    charger = station.charger.status
    if charger is not None:
        model.update(_STATION, _AVAILABILITY, messages.connector_status(charger))
    for cid, connector in station.connectors.items():
        if connector.status is None:
            continue
        state = messages.connector_status(connector.status, plugged=station.plugged(cid))
        evse, plug = _evse_refs(cid)
        model.update(evse, _AVAILABILITY, state)
        model.update(plug, _AVAILABILITY, state)
