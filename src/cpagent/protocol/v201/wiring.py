"""The OCPP 2.0.1 pieces of the agent: device model, adapter, charge point.

The device model is built from the catalogue, the ``[ocpp201]`` tables and then the values
the CSMS set before (they win). Security settings map onto the 1.6 names the shared
connection code asks for: SecurityCtrlr.SecurityProfile, and SecurityCtrlr.BasicAuthPassword
(else ``[csms] password``) as the basic-auth key.

A BasicAuthPassword the CSMS sets (A01) is persisted with the other values, then put on
trial as 1.6 puts a new AuthorizationKey: once the SetVariables answer is sent the station
reconnects with it, and if it cannot connect with it the previous password comes back, in
the device model and in the store (none when there was none: ``[csms] password`` again).
The password is never logged; the trial keeps the previous one in the store's state, as
1.6 does.
"""

from __future__ import annotations

import logging
from typing import Any

from cpagent.config import Config
from cpagent.hal.base import Hardware
from cpagent.protocol.v201 import network_profiles, redaction
from cpagent.protocol.v201.adapter import V201Adapter
from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.charge_point import ChargePoint
from cpagent.protocol.v201.device_model import DeviceModel
from cpagent.protocol.v201.network_profiles import NetworkProfiles
from cpagent.protocol.v201.persistence import from_store, store_key, to_store
from cpagent.protocol.v201.settings import Variables, settings_from_model
from cpagent.protocol.wiring import ResetRequest, Wiring
from cpagent.station.model import StationSettings
from cpagent.store import Store

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
MAX_CERTIFICATES = 20
"""Installed certificates kept at most (1.6's CertificateStoreMaxLength)."""
MAX_CHAIN_SIZE = 10000
"""Bytes of a CertificateSigned chain taken at most (1.6's CertificateSignedMaxChainSize)."""


def wire(config: Config, store: Store, hw: Hardware, request_reset: ResetRequest) -> Wiring:
    model, warnings = DeviceModel.from_config(len(hw.connectors), config.ocpp201)
    warnings += model.load_persisted(from_store(store.device_variables()))
    for warning in warnings:
        log.warning("device model: %s", warning)
    values = Variables(model)
    _, listed = store.local_list_state()
    values.set_runtime("LocalAuthListCtrlr", "Entries", str(listed))
    settings = StationSettings()
    settings_from_model(values, settings)
    adapter = V201Adapter(config, store, values, request_reset=request_reset)
    adapter.boot_reason = "RemoteReset" if store.get_state("reset.pending") else "PowerUp"
    listeners = adapter.variable_listeners
    listeners.append(lambda: settings_from_model(values, settings))
    persisted: dict[Any, str] = {}

    async def persist() -> None:
        """The values the CSMS set that the store does not hold yet, in one commit."""
        rows = {k: v for k, v in to_store(model.changed()).items() if persisted.get(k) != v}
        if rows:
            await store.run(store.set_device_variables, rows)
            persisted.update(rows)

    persisted.update(to_store(model.changed()))
    adapter.persist_variables = persist
    explicit_profile = "SecurityProfile" in config.ocpp201.get("SecurityCtrlr", {})
    network = adapter.network = NetworkProfiles(
        values,
        config.csms.url,
        store.get_state(network_profiles.STATE_KEY),
        lambda text: store.set_state(network_profiles.STATE_KEY, text),
    )

    def on_attempt(established: bool) -> None:
        if established:
            network.connected()
        else:
            network.attempt_failed()

    def value(name: str) -> str | None:
        if name == "SecurityProfile" and network.security_profile() is not None:
            return str(network.security_profile())  # a profile the CSMS set (B09)
        if name == "SecurityProfile":
            # Unless set, the connection is as the URL and credentials configure it.
            changed = any(
                c == "SecurityCtrlr" and v == "SecurityProfile" for c, v in model.changed()
            )
            return values.text("SecurityCtrlr", name) if explicit_profile or changed else "0"
        if name == "AuthorizationKey":
            password = values.text("SecurityCtrlr", "BasicAuthPassword") or config.csms.password
            return password.encode().hex() if password else None
        return None

    password_ref = (ComponentRef("SecurityCtrlr"), VariableRef("BasicAuthPassword"))
    password_row = store_key("SecurityCtrlr", "BasicAuthPassword")
    seen = {"password": values.text("SecurityCtrlr", "BasicAuthPassword")}

    def password_changed() -> None:
        """A01: a new BasicAuthPassword is tried once the answer that set it is sent."""
        current = values.text("SecurityCtrlr", "BasicAuthPassword")
        previous = seen["password"]
        if current == previous:
            return
        seen["password"] = current
        security = adapter.security
        if security is None:
            return
        previous_key = previous.encode().hex() if previous is not None else None

        async def trial() -> None:
            security.changing("AuthorizationKey", previous_key)

        cp = adapter.cp
        if isinstance(cp, ChargePoint):
            cp.after_answer(trial)
        else:
            security.changing("AuthorizationKey", previous_key)

    listeners.append(password_changed)

    def restore(name: str, previous: str | None) -> None:
        """Put back the BasicAuthPassword in force before the one that could not connect
        (``previous``: its hex, None for none), in the model and the store."""
        if name != "AuthorizationKey":
            log.warning("%s cannot be restored in OCPP 2.0.1", name)
            return
        if previous is None:
            model.withdraw_secret(*password_ref)
            store.delete_device_variable(password_row)
            persisted.pop(password_row, None)
        else:
            text = bytes.fromhex(previous).decode()
            model.set(*password_ref, text)
            store.set_device_variable(password_row, text)
            persisted[password_row] = text
        seen["password"] = values.text("SecurityCtrlr", "BasicAuthPassword")

    def charge_point(connection: Any, response_timeout: float) -> ChargePoint:
        return ChargePoint(
            config.charge_point.id, connection, adapter, model, response_timeout=response_timeout
        )

    return Wiring(
        adapter=adapter,
        settings=settings,
        subprotocol=SUBPROTOCOL,
        ping_interval=lambda: values.int("OCPPCommCtrlr", "WebSocketPingInterval"),
        charge_point=charge_point,
        subscribe=listeners.append,
        security_value=value,
        security_restore=restore,
        max_certificates=MAX_CERTIFICATES,
        redact=redaction.redact,
        base_url=network.base_url,
        on_attempt=on_attempt,
        max_chain_size=MAX_CHAIN_SIZE,
    )
