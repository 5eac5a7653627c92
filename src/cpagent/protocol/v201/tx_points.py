"""TxCtrlr's TxStartPoint and TxStopPoint: parsing them, and how the station reads them.

OCPP 2.0.1 lets the CSMS choose (Part 2, appendix TxCtrlr; use cases E01-E03, E06-E10)
which facts of an EVSE begin and end a transaction. The station acts on them
(:class:`~cpagent.station.model.TxPoint`, ``StationSettings.tx_start_points`` and
``tx_stop_points``); this module turns the device model's MemberList into them. The rules
as the station implements them, read from Part 2:

* **Start** (E01.FR.01-E01.FR.05): a transaction starts when a configured start point
  becomes true while none runs on the EVSE: EVConnected at the plug-in (E02: energy waits
  for an authorization, which then comes as an Updated event with the idToken), Authorized
  at the card or RequestStartTransaction (E03: the EV is awaited EVConnectionTimeOut
  seconds, then the transaction ends with Timeout), PowerPathClosed when both are there
  and the contactor closes, EnergyTransfer when the EV first draws. We take the edge: a
  start point that stays true after a transaction ended does not start another; an EV
  found connected at start-up (its transaction ended with the power loss) begins one.
* **Stop** (E06.FR.01-E06.FR.07): a transaction ends when a stop point that was true
  during it becomes false: EVConnected at the unplug, Authorized when the card is shown
  again, RequestStopTransaction comes or the CSMS refuses the token, PowerPathClosed when
  the contactor opens, EnergyTransfer when the EV stops drawing (StoppedByEV) or the
  offer goes below 6 A (Other).
* **Authorization ending without Authorized as a stop point**: energy stops and the
  transaction goes on (an Updated event says why) until a stop point falls; a card or a
  RequestStartTransaction may authorize it again. A RequestStopTransaction of a
  transaction never authorized ends it: there is nothing else it could stop.
* **A transaction that ends ends the session**: energy stops and a new transaction needs
  a new start point to rise (a new authorization, a new plug-in); the station never
  supplies energy outside a transaction except to an armed session, which begins its
  transaction as the EV draws (EnergyTransfer as the only start point that can rise).
* **Not supported**: ParkingBayOccupancy and DataSigned (no bay sensor, no signed meter
  values): the catalogue's valuesList leaves them out, so SetVariables refuses them.
"""

from __future__ import annotations

from cpagent.station.model import TxPoint


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
