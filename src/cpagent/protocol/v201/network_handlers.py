"""SetNetworkProfile (B09): the CSMS adds a connection profile to a slot."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on

from cpagent.protocol.v201.enums import Action
from cpagent.systemd import journal_fields

if TYPE_CHECKING:
    from cpagent.protocol.v201.adapter import V201Adapter

log = logging.getLogger(__name__)


class NetworkHandlers:
    adapter: V201Adapter

    @on(Action.set_network_profile)
    async def on_set_network_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Accepted profiles are stored in their slot; they are used once
        NetworkConfigurationPriority names the slot, after the next start (B10)."""
        network = self.adapter.network
        if network is None:
            return {"status": "Rejected"}
        slot, data = payload["configurationSlot"], payload["connectionData"]
        current = self.adapter.values.int("SecurityCtrlr", "SecurityProfile")
        why = network.refusal(slot, data, current)
        if why is not None:
            log.warning(
                "SetNetworkProfile of slot %d refused: %s",
                slot,
                why,
                extra=journal_fields(action="SetNetworkProfile"),
            )
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "Other", "additionalInfo": why[:512]},
            }
        await self.adapter.store.run(network.set, slot, data)
        return {"status": "Accepted"}
