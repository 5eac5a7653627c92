"""When an OCPP 2.0.1 transaction starts and ends: the TxStartPoint / TxStopPoint rules.

OCPP 2.0.1 lets the CSMS choose, through the TxCtrlr variables TxStartPoint and TxStopPoint
(Part 2, appendix "TxCtrlr"; use cases E01-E03 and E06-E10), which facts of an EVSE begin
and end a transaction. This module holds those rules as pure logic: no I/O, no clock, no
asyncio. The adapter feeds it the :class:`EvseFacts` of one EVSE before and after each
station change, with an :class:`EventHint` saying *why* it changed when the facts alone
cannot tell, and acts on the :class:`Decision` it gets back.

The rules, as read from Part 2:

* **Start** (E01.FR.01-E01.FR.05; TxCtrlr.TxStartPoint: the transaction starts when one of
  the listed conditions is met and none has started yet on the EVSE): a transaction starts
  on the *rising edge* of any configured start condition while none runs on the EVSE. A
  condition that was already true when a transaction ended does not start a new one until
  it becomes true again.
* **Stop** (E06.FR.01-E06.FR.07; TxCtrlr.TxStopPoint: the transaction ends when one of the
  listed conditions is no longer met): a running transaction ends on the *falling edge* of
  any configured stop condition. A stop condition that was never true during the
  transaction (TxStartPoint Authorized with TxStopPoint EVConnected, before the cable is
  plugged in) does not end it; E03's EVConnectionTimeOut
  (:attr:`EventHint.EV_CONNECT_TIMEOUT`) does.
* **triggerReason** of the Started event (TriggerReasonEnumType) follows from the condition
  that became true: Authorized -> ``Authorized`` (``RemoteStart`` for a
  RequestStartTransaction, F01/F02), EVConnected -> ``CablePluggedIn``,
  ParkingBayOccupancy -> ``EVDetected``, PowerPathClosed and EnergyTransfer ->
  ``ChargingStateChanged``, DataSigned -> ``SignedDataReceived``.
* **triggerReason and stoppedReason** of the Ended event follow from the condition that
  ended it: EV unplugged -> ``EVCommunicationLost`` / ``EVDisconnected`` (E06);
  authorization ended by the same token presented again -> ``StopAuthorized`` / ``Local``
  (E06.FR.03), by RequestStopTransaction -> ``RemoteStop`` / ``Remote`` (F03), by the CSMS
  refusing the token in a TransactionEventResponse -> ``Deauthorized`` / ``DeAuthorized``
  (E06.FR.04, E05); energy transfer stopped by the EV -> ``ChargingStateChanged`` /
  ``StoppedByEV`` (E06.FR.07, conformance test TC_E_22); EVConnectionTimeOut ->
  ``EVConnectTimeout`` / ``Timeout`` (E03, conformance test TC_E_39). E03.FR.05: the
  stoppedReason may be left out of the Ended event when it is ``Local``; it is always given
  here and the adapter may drop it.
* E01.FR.05 (PowerPathClosed) also requires the driver authorized and the EV connected,
  which the station guarantees by closing the contactor only then.

Where implementations and readings disagree (kept here so the adapter's authors see it):

* Edge versus level for the start: E01 phrases each start point as a state plus "no
  transaction has started yet on this EVSE", which read as a level restarts a transaction
  at once after a stop by Authorized while the cable stays in. We take the edge: a start
  condition must become true again.
* PowerPathClosed as a stop point: E06.FR.06 names only "connection lost OR authorization
  ended" as the causes; we end the transaction whenever the contactor opens during it and
  give the cause when it is one of those, ``Other`` otherwise (a fault opening the
  contactor). EVerest's libocpp leaves this to the application that drives it.
* EnergyTransfer falling because the station lowered the offer below 6 A (a charging
  profile at 0 A, SuspendedEVSE): TC_E_22 shows only the EV-side case
  (``StoppedByEV``); we report ``Other`` for the station-side case.
* An authorization that ends without a hint: we take it as the driver's local stop
  (``StopAuthorized`` / ``Local``); the CSMS withdrawing it must be hinted as
  :attr:`EventHint.DEAUTHORIZED`.
* With stop points that do not include Authorized, a local or remote stop only ends
  authorization; the transaction goes on (as a Updated event, the adapter's business)
  until a configured stop condition falls, e.g. the cable is unplugged. That is how E06
  reads, but some CSMSs expect RequestStopTransaction to end the transaction at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cpagent.protocol.v201.enums import ReasonEnumType, TriggerReasonEnumType
from cpagent.station.model import ConnectorState

#: The lowest current (A) the control pilot may offer for charging (IEC 61851-1 duty cycle
#: range starts at 6 A); below it the EV may not draw current.
MIN_CHARGING_CURRENT_A: Final = 6.0


class TxPoint(enum.StrEnum):
    """A TxStartPoint / TxStopPoint member (Part 2, TxCtrlr; E01-E03, E06-E10)."""

    PARKING_BAY_OCCUPANCY = "ParkingBayOccupancy"
    EV_CONNECTED = "EVConnected"
    AUTHORIZED = "Authorized"
    DATA_SIGNED = "DataSigned"
    POWER_PATH_CLOSED = "PowerPathClosed"
    ENERGY_TRANSFER = "EnergyTransfer"


class TxPointsRejected(ValueError):
    """A TxStartPoint / TxStopPoint MemberList names members that do not exist."""


def parse_tx_points(member_list: str) -> frozenset[TxPoint]:
    """Parse the MemberList the device model holds (``"EVConnected,Authorized"``).

    Members are matched exactly (the spec's spelling); blanks around commas are ignored and
    an empty string is the empty set. Unknown members raise :class:`TxPointsRejected`
    naming each of them.
    """
    names = [part.strip() for part in member_list.split(",")]
    names = [name for name in names if name]
    known = {str(point): point for point in TxPoint}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise TxPointsRejected(
            f"unknown TxStartPoint/TxStopPoint member(s): {', '.join(unknown)}; "
            f"allowed: {', '.join(known)}"
        )
    return frozenset(known[name] for name in names)


@dataclass(frozen=True)
class EvseFacts:
    """The facts of one EVSE at a moment that the start and stop points are made of.

    Protocol-neutral: built from the station's connector by :func:`facts_from_connector`.
    ``parking_bay_occupied`` and ``data_signed`` exist so every point has a fact, but the
    station has no bay sensor and does not sign meter data, so they stay ``False``.
    """

    ev_connected: bool = False
    authorized: bool = False
    power_path_closed: bool = False
    energy_transfer: bool = False
    parking_bay_occupied: bool = False
    data_signed: bool = False

    def holds(self, point: TxPoint) -> bool:
        """Whether the condition named by ``point`` is true in these facts."""
        return {
            TxPoint.PARKING_BAY_OCCUPANCY: self.parking_bay_occupied,
            TxPoint.EV_CONNECTED: self.ev_connected,
            TxPoint.AUTHORIZED: self.authorized,
            TxPoint.DATA_SIGNED: self.data_signed,
            TxPoint.POWER_PATH_CLOSED: self.power_path_closed,
            TxPoint.ENERGY_TRANSFER: self.energy_transfer,
        }[point]


#: No EV, no authorization: the facts assumed before the first observation.
IDLE: Final = EvseFacts()


def facts_from_connector(connector: ConnectorState) -> EvseFacts:
    """The facts of the station's connector (read only).

    * EV connected: control pilot state B, C or D (IEC 61851-1; A is no EV, E/F are errors).
    * Authorized: the connector holds an accepted id token (``authorized_id_tag``; the
      station sets it only for an accepted authorization).
    * Power path closed: the contactor is closed.
    * Energy transfer: pilot C or D (the EV asks for energy), contactor closed and at least
      6 A offered. The station cannot see the energy rise at a single moment (that needs
      two meter readings and a clock), so a suspended EV that keeps pilot C while drawing
      nothing counts as transferring.
    * Parking bay occupied and data signed: not available on this station, always False.
    """
    ev_connected = connector.pilot in ("B", "C", "D")
    return EvseFacts(
        ev_connected=ev_connected,
        authorized=connector.authorized_id_tag is not None,
        power_path_closed=connector.contactor_closed,
        energy_transfer=(
            connector.pilot in ("C", "D")
            and connector.contactor_closed
            and connector.offered_a >= MIN_CHARGING_CURRENT_A
        ),
    )


class EventHint(enum.StrEnum):
    """Why the facts changed, when the facts alone cannot tell (given by the adapter)."""

    NONE = "None"
    REMOTE_START = "RemoteStart"
    """The authorization came from RequestStartTransaction (F01/F02)."""
    STOP_AUTHORIZED = "StopAuthorized"
    """The driver presented the token again (or one of its group) to stop (E06.FR.03)."""
    REMOTE_STOP = "RemoteStop"
    """RequestStopTransaction ended the authorization (F03)."""
    DEAUTHORIZED = "Deauthorized"
    """The CSMS did not accept the token the transaction runs on (E05, E06.FR.04)."""
    EV_CONNECT_TIMEOUT = "EVConnectTimeout"
    """EVConnectionTimeOut ran out before the EV was connected (E03)."""


class Action(enum.StrEnum):
    NOTHING = "Nothing"
    START = "Start"
    STOP = "Stop"


@dataclass(frozen=True)
class Decision:
    """What to do after a change: start, stop or nothing, and the reasons to send.

    ``point`` is the TxPoint whose condition changed (None for nothing, and for a stop by
    EVConnectionTimeOut). ``stopped_reason`` is set only for a stop.
    """

    action: Action
    trigger_reason: TriggerReasonEnumType | None = None
    stopped_reason: ReasonEnumType | None = None
    point: TxPoint | None = None


NOTHING: Final = Decision(Action.NOTHING)

#: Which rising start condition names the Started event when several rise together.
_START_ORDER: Final = (
    TxPoint.AUTHORIZED,
    TxPoint.EV_CONNECTED,
    TxPoint.PARKING_BAY_OCCUPANCY,
    TxPoint.POWER_PATH_CLOSED,
    TxPoint.ENERGY_TRANSFER,
    TxPoint.DATA_SIGNED,
)

#: Which falling stop condition names the Ended event when several fall together: the
#: cause first (unplug, authorization), its consequences (contactor, energy) after.
_STOP_ORDER: Final = (
    TxPoint.EV_CONNECTED,
    TxPoint.AUTHORIZED,
    TxPoint.PARKING_BAY_OCCUPANCY,
    TxPoint.POWER_PATH_CLOSED,
    TxPoint.ENERGY_TRANSFER,
    TxPoint.DATA_SIGNED,
)

_T = TriggerReasonEnumType
_R = ReasonEnumType


def _start_trigger(point: TxPoint, hint: EventHint) -> TriggerReasonEnumType:
    if point is TxPoint.AUTHORIZED:
        return _T.remote_start if hint is EventHint.REMOTE_START else _T.authorized
    return {
        TxPoint.EV_CONNECTED: _T.cable_plugged_in,
        TxPoint.PARKING_BAY_OCCUPANCY: _T.ev_detected,
        TxPoint.POWER_PATH_CLOSED: _T.charging_state_changed,
        TxPoint.ENERGY_TRANSFER: _T.charging_state_changed,
        TxPoint.DATA_SIGNED: _T.signed_data_received,
    }[point]


def _authorization_end(hint: EventHint) -> tuple[TriggerReasonEnumType, ReasonEnumType]:
    if hint is EventHint.REMOTE_STOP:
        return _T.remote_stop, _R.remote
    if hint is EventHint.DEAUTHORIZED:
        return _T.deauthorized, _R.de_authorized
    if hint is EventHint.EV_CONNECT_TIMEOUT:
        return _T.ev_connect_timeout, _R.timeout
    return _T.stop_authorized, _R.local


def _stop_reasons(
    point: TxPoint,
    previous: EvseFacts,
    facts: EvseFacts,
    hint: EventHint,
    energy_offer_withdrawn: bool,
) -> tuple[TriggerReasonEnumType, ReasonEnumType]:
    """The Ended event's reasons when ``point`` fell; a consequence names its cause."""
    if point is TxPoint.EV_CONNECTED or (previous.ev_connected and not facts.ev_connected):
        return _T.ev_communication_lost, _R.ev_disconnected
    if point is TxPoint.AUTHORIZED or (previous.authorized and not facts.authorized):
        return _authorization_end(hint)
    if point is TxPoint.PARKING_BAY_OCCUPANCY:
        return _T.ev_departed, _R.ev_disconnected
    if point is TxPoint.ENERGY_TRANSFER and facts.power_path_closed and not energy_offer_withdrawn:
        # Contactor still closed, EV still there, the offer kept: the EV stopped drawing.
        return _T.charging_state_changed, _R.stopped_by_ev
    return _T.charging_state_changed, _R.other


def decide(
    start_points: frozenset[TxPoint],
    stop_points: frozenset[TxPoint],
    active: bool,
    previous: EvseFacts | None,
    facts: EvseFacts,
    hint: EventHint = EventHint.NONE,
    *,
    energy_offer_withdrawn: bool = False,
) -> Decision:
    """The decision for one change of one EVSE's facts (E01-E03, E06-E10).

    ``active`` says whether a transaction runs on the EVSE; ``previous`` is None before the
    first observation and then counts as :data:`IDLE` (no EV, no authorization), so an EV
    found plugged in at boot starts a transaction with TxStartPoint EVConnected.
    ``energy_offer_withdrawn`` tells an EnergyTransfer stop caused by the station lowering
    its offer below 6 A (reported ``Other``) from one caused by the EV (``StoppedByEV``).
    At most one action per call: a stop and a start never come from the same change.
    """
    before = IDLE if previous is None else previous
    if active:
        if hint is EventHint.EV_CONNECT_TIMEOUT and not facts.ev_connected:
            return Decision(Action.STOP, _T.ev_connect_timeout, _R.timeout, None)
        for point in _STOP_ORDER:
            if point in stop_points and before.holds(point) and not facts.holds(point):
                trigger, reason = _stop_reasons(point, before, facts, hint, energy_offer_withdrawn)
                return Decision(Action.STOP, trigger, reason, point)
        return NOTHING
    for point in _START_ORDER:
        if point in start_points and facts.holds(point) and not before.holds(point):
            return Decision(Action.START, _start_trigger(point, hint), None, point)
    return NOTHING


class EvseTxPoints:
    """The per-EVSE state machine: remembers whether a transaction runs.

    Feed it every change of the EVSE with :meth:`step`; it never stops what it did not
    start and never starts twice without a stop in between. The points are fixed at
    construction: the adapter makes a new one when the CSMS changes TxStartPoint or
    TxStopPoint; whether a change applies to a running transaction is the adapter's call.
    """

    def __init__(
        self,
        start_points: frozenset[TxPoint],
        stop_points: frozenset[TxPoint],
        *,
        active: bool = False,
    ) -> None:
        self.start_points = start_points
        self.stop_points = stop_points
        self.active = active

    @classmethod
    def from_member_lists(cls, start: str, stop: str) -> EvseTxPoints:
        """Build from the device model's TxStartPoint and TxStopPoint values."""
        return cls(parse_tx_points(start), parse_tx_points(stop))

    def step(
        self,
        previous: EvseFacts | None,
        facts: EvseFacts,
        hint: EventHint = EventHint.NONE,
        *,
        energy_offer_withdrawn: bool = False,
    ) -> Decision:
        """Decide on one change (see :func:`decide`) and remember the outcome."""
        decision = decide(
            self.start_points,
            self.stop_points,
            self.active,
            previous,
            facts,
            hint,
            energy_offer_withdrawn=energy_offer_withdrawn,
        )
        if decision.action is Action.START:
            self.active = True
        elif decision.action is Action.STOP:
            self.active = False
        return decision
