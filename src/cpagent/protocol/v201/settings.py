"""What the station and the 2.0.1 adapter act on, read from the device model.

The device model holds every value as its wire text; :class:`Variables` reads the ones the
agent acts on as the types it needs, and :func:`settings_from_model` keeps the station's
:class:`StationSettings` current with them (at start and after each SetVariables), the
2.0.1 counterpart of the 1.6 configuration keys.
"""

from __future__ import annotations

from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.device_model import DeviceModel
from cpagent.protocol.v201.tx_points import parse_tx_points
from cpagent.protocol.v201.values import Secret
from cpagent.station.model import StationSettings


class Variables:
    """Typed reads of a device model's Actual values, station-wide components only."""

    def __init__(self, model: DeviceModel) -> None:
        self.model = model

    def text(self, component: str, variable: str, instance: str | None = None) -> str | None:
        value = self.model.actual(ComponentRef(component), VariableRef(variable, instance))
        if isinstance(value, Secret):
            return value.reveal()
        return value

    def int(self, component: str, variable: str, instance: str | None = None) -> int:
        """The value as an integer; 0 when unset (a decimal is cut to its integer part)."""
        text = self.text(component, variable, instance)
        return int(float(text)) if text else 0

    def bool(self, component: str, variable: str, default: bool = False) -> bool:
        text = self.text(component, variable)
        return default if text is None else text.strip().lower() == "true"

    def list(self, component: str, variable: str) -> tuple[str, ...]:
        text = self.text(component, variable) or ""
        return tuple(item.strip() for item in text.split(",") if item.strip())

    def set_runtime(self, component: str, variable: str, value: str) -> None:
        """A value the station itself decides (the heartbeat interval a boot answer gives)."""
        self.model.update(ComponentRef(component), VariableRef(variable), value)


def settings_from_model(values: Variables, settings: StationSettings) -> None:
    """Bring ``settings`` in line with the device model (Part 2 appendix: TxCtrlr,
    SampledDataCtrlr, AlignedDataCtrlr, AuthCtrlr)."""
    settings.connection_timeout_s = values.int("TxCtrlr", "EVConnectionTimeOut")
    settings.stop_on_ev_side_disconnect = values.bool("TxCtrlr", "StopTxOnEVSideDisconnect", True)
    settings.tx_start_points = parse_tx_points(values.text("TxCtrlr", "TxStartPoint") or "")
    settings.tx_stop_points = parse_tx_points(values.text("TxCtrlr", "TxStopPoint") or "")
    settings.stop_on_invalid_id = values.bool("TxCtrlr", "StopTxOnInvalidId", True)
    settings.max_energy_on_invalid_wh = values.int("TxCtrlr", "MaxEnergyOnInvalidId")
    settings.meter_value_sample_interval_s = values.int("SampledDataCtrlr", "TxUpdatedInterval")
    settings.sampled_measurands = values.list("SampledDataCtrlr", "TxUpdatedMeasurands")
    settings.stop_txn_sampled_measurands = values.list("SampledDataCtrlr", "TxEndedMeasurands")
    settings.begin_measurands = values.list("SampledDataCtrlr", "TxStartedMeasurands")
    settings.clock_aligned_interval_s = values.int("AlignedDataCtrlr", "Interval")
    settings.aligned_measurands = values.list("AlignedDataCtrlr", "Measurands")
    settings.stop_txn_aligned_measurands = values.list("AlignedDataCtrlr", "TxEndedMeasurands")
    settings.unlock_on_ev_side_disconnect = values.bool(
        "OCPPCommCtrlr", "UnlockOnEVSideDisconnect", True
    )
    settings.authorize_remote_tx_requests = values.bool("AuthCtrlr", "AuthorizeRemoteStart")
