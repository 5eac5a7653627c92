"""The OCPP 1.6 pieces of the agent: configuration keys, adapter, charge point."""

from __future__ import annotations

from typing import Any

from cpagent.config import Config
from cpagent.hal.base import Hardware
from cpagent.hal.factory import meter_type
from cpagent.protocol.v16 import redaction
from cpagent.protocol.v16.adapter import V16Adapter, settings_from_keys
from cpagent.protocol.v16.charge_point import ChargePoint
from cpagent.protocol.v16.config_keys import ConfigurationKeys, capabilities
from cpagent.protocol.wiring import ResetRequest, Wiring
from cpagent.station.model import StationSettings
from cpagent.store import Store

SUBPROTOCOL = "ocpp1.6"


def wire(config: Config, store: Store, hw: Hardware, request_reset: ResetRequest) -> Wiring:
    keys = ConfigurationKeys(
        initial=config.ocpp16,
        persisted=store.config_keys(),
        computed=capabilities(
            connectors=len(hw.connectors),
            phase_switch=any(c.phase_switch is not None for c in hw.connectors.values()),
        ),
    )
    settings = StationSettings()
    settings_from_keys(keys, settings)
    keys.subscribe(lambda _k, _v: settings_from_keys(keys, settings))
    adapter = V16Adapter(
        config, store, keys, meter_type=meter_type(config), request_reset=request_reset
    )
    password = config.csms.password

    def value(name: str) -> str | None:
        found = keys.get(name)
        if found is None and name == "AuthorizationKey" and password is not None:
            return password.encode().hex()  # the configured basic-auth password
        return found

    def restore(name: str, previous: str | None) -> None:
        if previous is None:
            store.delete_config_key(name)
            keys.unset(name)
        else:
            store.set_config_key(name, previous)
            keys.apply(name, previous)

    def charge_point(connection: Any, response_timeout: float) -> ChargePoint:
        return ChargePoint(
            config.charge_point.id, connection, adapter, response_timeout=response_timeout
        )

    return Wiring(
        adapter=adapter,
        settings=settings,
        subprotocol=SUBPROTOCOL,
        ping_interval=lambda: keys.get_int("WebSocketPingInterval"),
        charge_point=charge_point,
        subscribe=lambda listener: keys.subscribe(lambda _k, _v: listener()),
        security_value=value,
        security_restore=restore,
        max_certificates=keys.get_int("CertificateStoreMaxLength"),
        redact=redaction.redact,
        base_url=lambda: config.csms.url,
        max_chain_size=keys.get_int("CertificateSignedMaxChainSize"),
    )
