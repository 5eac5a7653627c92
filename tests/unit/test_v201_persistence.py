"""OCPP 2.0.1 device-model values the CSMS set: kept in the store, winning at the next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpagent.protocol.v201.addressing import AddressError, ComponentRef, VariableRef
from cpagent.protocol.v201.device_model import DeviceModel, GetStatus, SetStatus
from cpagent.protocol.v201.persistence import from_store, store_key, to_store
from cpagent.store import DeviceVariableKey, Store

CONFIG = {"OCPPCommCtrlr": {"HeartbeatInterval": 300}}
COMM = ComponentRef("OCPPCommCtrlr")
SECURITY = ComponentRef("SecurityCtrlr")
PASSWORD = "0123456789abcdefXYZ"


def test_store_keys_carry_every_field_of_the_address() -> None:
    assert store_key("tokenreader:front@1.1", "enabled") == DeviceVariableKey(
        component="TokenReader",
        component_instance="front",
        evse=1,
        connector=1,
        variable="Enabled",
    )
    assert store_key("OCPPCommCtrlr", "MessageAttempts:TransactionEvent") == DeviceVariableKey(
        component="OCPPCommCtrlr", variable="MessageAttempts", variable_instance="TransactionEvent"
    )
    with pytest.raises(AddressError):
        store_key("NoSuchCtrlr", "X")


def test_values_set_by_the_csms_win_over_the_config_after_a_restart(tmp_path: Path) -> None:
    model, _ = DeviceModel.from_config(2, CONFIG)
    results = [
        model.set(COMM, VariableRef("HeartbeatInterval"), "60"),
        model.set(COMM, VariableRef("MessageAttempts", "TransactionEvent"), "5"),
        model.set(ComponentRef("TxCtrlr"), VariableRef("TxStopPoint"), "Authorized"),
        model.set(SECURITY, VariableRef("BasicAuthPassword"), PASSWORD),
    ]
    assert all(r.status is SetStatus.ACCEPTED for r in results), results
    store = Store(tmp_path)
    store.open()
    store.set_device_variables(to_store(model.changed()))
    store.close()

    again = Store(tmp_path)
    again.open()
    try:
        rows = again.device_variables()
    finally:
        again.close()
    assert rows[store_key("SecurityCtrlr", "BasicAuthPassword")] == PASSWORD
    assert rows[store_key("TxCtrlr", "TxStopPoint")] == "Authorized"

    restarted, _ = DeviceModel.from_config(2, CONFIG)
    assert restarted.load_persisted(from_store(rows)) == []
    assert restarted.get(COMM, VariableRef("HeartbeatInterval")).value == "60"
    attempts = restarted.get(COMM, VariableRef("MessageAttempts", "TransactionEvent"))
    assert attempts.value == "5"
    stop = restarted.get(ComponentRef("TxCtrlr"), VariableRef("TxStopPoint"))
    assert stop.value == "Authorized"
    password = restarted.get(SECURITY, VariableRef("BasicAuthPassword"))
    assert password.status is GetStatus.REJECTED and password.write_only
    secret = restarted.actual(SECURITY, VariableRef("BasicAuthPassword"))
    assert secret is not None and not isinstance(secret, str) and secret.reveal() == PASSWORD


def test_rows_that_no_longer_fit_are_skipped_and_other_attributes_left_out() -> None:
    rows = {
        store_key("EVSE@2", "Available"): "false",  # the station now has one EVSE
        store_key("OCPPCommCtrlr", "HeartbeatInterval"): "90",
        DeviceVariableKey(component="EVSE", evse=1, variable="Power", attribute="MaxSet"): "1",
    }
    values = from_store(rows)
    assert values == {
        ("EVSE@2", "Available"): "false",
        ("OCPPCommCtrlr", "HeartbeatInterval"): "90",
    }
    model, _ = DeviceModel.from_config(1, CONFIG)
    warnings = model.load_persisted(values)
    assert len(warnings) == 1 and "EVSE@2.Available" in warnings[0], warnings
    assert model.get(COMM, VariableRef("HeartbeatInterval")).value == "90"
