"""Connector status as a pure function of the connector's state (OCPP 1.6 §4.9 semantics)."""

from __future__ import annotations

from cpagent.station.model import ConnectorState, ConnectorStatus


def derive_status(c: ConnectorState) -> tuple[ConnectorStatus, str]:
    """Return ``(status, error_code)`` for a connector.

    Precedence: a device fault beats everything; a running transaction reports
    where the energy flow stands; without one, availability, then the plug, then an
    id tag waiting for the plug, then a reservation. A connector's own reservation
    holds it Reserved with an EV plugged in too: only its reserved user's card makes it
    Preparing (OCPP 1.6 §4.9, G2: "the reservation's identity is presented"). It is
    never reported Reserved while Faulted or Unavailable (a reservation does not
    outlive either, see Station).
    """
    if c.faults:
        first = next(iter(c.faults.values()))
        return ConnectorStatus.FAULTED, first.error_code
    if c.pilot == "E":
        return ConnectorStatus.FAULTED, "EVCommunicationError"
    if c.transaction is not None:
        tx = c.transaction
        if not tx.authorized and c.pilot in ("B", "C", "D"):
            # No energy by design: awaiting its first authorization, or after it ended.
            status = ConnectorStatus.PREPARING if tx.id_token is None else ConnectorStatus.FINISHING
            return status, "NoError"
        if c.pilot in ("C", "D"):
            if c.contactor_closed and c.offered_a >= 6.0:
                return ConnectorStatus.CHARGING, "NoError"
            return ConnectorStatus.SUSPENDED_EVSE, "NoError"
        if c.pilot == "B":
            if c.offered_a < 6.0:
                return ConnectorStatus.SUSPENDED_EVSE, "NoError"
            return ConnectorStatus.SUSPENDED_EV, "NoError"
        if not tx.ev_seen:  # begun by a card, the EV awaited
            return ConnectorStatus.PREPARING, "NoError"
        return ConnectorStatus.FINISHING, "NoError"
    if not c.operative or c.maintenance or c.pilot == "F":
        return ConnectorStatus.UNAVAILABLE, "NoError"
    if c.pilot in ("B", "C", "D"):
        if c.finishing:
            return ConnectorStatus.FINISHING, "NoError"
        if c.reservation is not None and c.authorized_token is None:
            return ConnectorStatus.RESERVED, "NoError"
        return ConnectorStatus.PREPARING, "NoError"
    if c.authorized_token is not None:
        return ConnectorStatus.PREPARING, "NoError"
    if c.reservation is not None or c.reserved_for_any:
        return ConnectorStatus.RESERVED, "NoError"
    return ConnectorStatus.AVAILABLE, "NoError"
