"""The OCPP 2.0.1 transaction ledger: the TransactionEvents a CSMS received, checked against
the delivery guarantee.

The guarantee (interface.md, "Guarantees a user relies on", as for 1.6): every
TransactionEvent the agent created reaches the CSMS exactly once and in creation order, with
seqNo contiguous per transaction. The one exception is an event in flight when the agent was
killed or the socket dropped: it is sent again, under the SAME message id and with the same
payload, before anything newer. On top of that, per transaction (by ``transactionId``):

- the events arrive in seqNo order, starting at 0, without a gap;
- exactly one Started, with seqNo 0, comes first, and exactly one Ended comes last: nothing
  arrives after the Ended, and every transaction has one (``require_ended``);
- two different events (another message id, or another payload) never share a seqNo;
- timestamps never go back; on one EVSE transactions do not interleave (a Started while the
  EVSE's previous transaction has no Ended is out of order) and timestamps never go back
  across them either;
- the stoppedReason of the Ended is in the allowed set (absent means Local, the spec's
  default).

Per EVSE the energy register (Energy.Active.Import.Register, no phase, in the contexts
Transaction.Begin, Sample.Periodic, Sample.Clock and Transaction.End) never decreases, across
transactions too; the readings are taken in the order of their own timestamps, because an
Ended event repeats the samples kept during the transaction (TxEndedMeasurands) before its
closing reading. Each Sample.Periodic or Sample.Clock reading an Ended event repeats must have
arrived in an Updated event of the transaction (a lost Updated shows that way too, besides
its seqNo gap).

The ``offline`` flag is not checked: which events were raised while the agent believed it
was offline depends on when it noticed the outage, which the CSMS cannot see.

Use::

    report = analyse_ledger(csms.received, cp_id="CP001")   # problems counted, not raised
    report = check_ledger(csms.received)                    # raises AssertionError if broken

The report is :class:`tests.integration.ledger.LedgerReport` (its Problem, the same problem
kinds, ``summary()``, ``assert_clean()``), with :class:`Transaction` for a session, so that
the soak counts both versions the same way.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cpagent.testing.csms import Received
from tests.integration import ledger
from tests.integration.ledger import (
    DUPLICATE,
    LOST,
    MALFORMED,
    METER,
    REORDERED,
    STOP_REASON,
    TRANSACTION_ID,
    Problem,
)

TRANSACTION_EVENT = "TransactionEvent"
STARTED, UPDATED, ENDED = "Started", "Updated", "Ended"
ENERGY = "Energy.Active.Import.Register"
REGISTER_CONTEXTS = frozenset(
    {"Transaction.Begin", "Sample.Periodic", "Sample.Clock", "Transaction.End"}
)
"""The readings of the register the meter check follows (Trigger and Other are left out)."""
SAMPLE_CONTEXTS = ("Sample.Periodic", "Sample.Clock")
"""Readings an Ended event may repeat from the Updated events of its transaction."""
STOP_REASONS = frozenset({"Local", "EVDisconnected", "PowerLoss"})
"""What a transaction may end with in the scenarios these tests drive."""
DEFAULT_REASON = "Local"
"""TransactionType.stoppedReason: "When absent, the reason is Local"."""

__all__ = [
    "DUPLICATE",
    "LOST",
    "MALFORMED",
    "METER",
    "REORDERED",
    "STOP_REASON",
    "TRANSACTION_ID",
    "LedgerReport",
    "Problem",
    "Transaction",
    "analyse_ledger",
    "check_ledger",
    "energy_readings",
    "is_transaction_message",
]


# ---------------------------------------------------------------------------- the report


@dataclass
class Transaction:
    """One 2.0.1 transaction as the CSMS saw it: its events, first copies, in arrival order."""

    cp_id: str
    transaction_id: str
    events: list[Received] = field(default_factory=list)
    evse_id: int | None = None

    @property
    def started(self) -> Received | None:
        return next((r for r in self.events if r.payload.get("eventType") == STARTED), None)

    @property
    def ended(self) -> Received | None:
        return next((r for r in self.events if r.payload.get("eventType") == ENDED), None)

    @property
    def start(self) -> Received:
        """The Started event (the first event received if the Started never came)."""
        return self.started or self.events[0]

    @property
    def stop(self) -> Received | None:
        return self.ended

    @property
    def reason(self) -> str | None:
        ended = self.ended
        if ended is None:
            return None
        reason: str = ended.payload["transactionInfo"].get("stoppedReason", DEFAULT_REASON)
        return reason

    @property
    def messages(self) -> list[Received]:
        return list(self.events)

    def describe(self) -> str:
        token = (self.start.payload.get("idToken") or {}).get("idToken")
        return (
            f"transaction {self.transaction_id} EVSE {self.evse_id} idToken={token}"
            f" (first event #{self.start.index})"
        )


LedgerReport = ledger.LedgerReport[Transaction]


# --------------------------------------------------------------------------- the checker


def is_transaction_message(received: Received) -> bool:
    return received.action == TRANSACTION_EVENT and received.version == "2.0.1"


def energy_readings(meter_value: dict[str, Any]) -> list[float]:
    """The register readings (Wh) of one MeterValueType in :data:`REGISTER_CONTEXTS`:
    measurand Energy.Active.Import.Register (the default when none is named), all phases
    together, scaled by the unit (Wh or kWh) and its multiplier."""
    out: list[float] = []
    for sv in meter_value.get("sampledValue", []):
        if sv.get("measurand", ENERGY) != ENERGY or sv.get("phase"):
            continue
        if sv.get("context", "Sample.Periodic") not in REGISTER_CONTEXTS:
            continue
        unit = sv.get("unitOfMeasure") or {}
        factor = (1000.0 if unit.get("unit") == "kWh" else 1.0) * 10.0 ** unit.get("multiplier", 0)
        out.append(float(sv["value"]) * factor)
    return out


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class _ChargePointLedger(ledger.Stream[Transaction]):
    """The checks for one charge point's stream of TransactionEvents."""

    def __init__(
        self,
        cp_id: str,
        report: LedgerReport,
        *,
        max_copies: int | None,
        stop_reasons: Collection[str] | None,
    ) -> None:
        super().__init__(cp_id, report, max_copies)
        self.stop_reasons = stop_reasons
        self.transactions: dict[str, Transaction] = {}
        self.by_seq_no: dict[tuple[str, int], Received] = {}
        self.open: dict[int, Transaction] = {}
        self.last_time: dict[str, tuple[datetime, str]] = {}
        self.last_evse_time: dict[int, tuple[datetime, str]] = {}
        self.readings: dict[int, list[tuple[datetime, float, str]]] = collections.defaultdict(list)

    # -- the stream

    def feed(self, received: Received) -> None:
        if self.resent(received):
            return
        uid = received.unique_id
        p = received.payload
        what = f"TransactionEvent #{received.index}"
        info = p.get("transactionInfo")
        tx_id = info.get("transactionId") if isinstance(info, dict) else None
        seq_no = p.get("seqNo")
        if not isinstance(tx_id, str) or not isinstance(seq_no, int) or isinstance(seq_no, bool):
            self.problem(MALFORMED, f"{what} without a transactionId or seqNo: {p}")
            return
        what = f"{what} ({p.get('eventType')} seqNo {seq_no} of {tx_id})"
        earlier = self.by_seq_no.get((tx_id, seq_no))
        if earlier is not None:
            self.report.duplicates.append(received)
            self.problem(
                DUPLICATE,
                f"{what} repeats seqNo {seq_no} of #{earlier.index} under message id"
                f" {uid} (first {earlier.unique_id})"
                + ("" if earlier.payload == p else ", with another payload"),
            )
            return
        self.by_seq_no[(tx_id, seq_no)] = received
        self.first[uid] = received
        self.last_new = uid
        self.report.messages += 1
        self._event(received, tx_id, seq_no, what)

    def _event(self, r: Received, tx_id: str, seq_no: int, what: str) -> None:
        p = r.payload
        tx = self.transactions.get(tx_id)
        if tx is None:
            tx = self.transactions[tx_id] = Transaction(self.cp_id, tx_id)
        first_event = not tx.events
        ended = tx.ended
        if ended is not None:
            self.problem(REORDERED, f"{what} after the Ended #{ended.index} of {tx.describe()}")
        elif tx.events and seq_no < tx.events[-1].payload["seqNo"]:
            latest = tx.events[-1]
            self.problem(
                REORDERED, f"{what} after seqNo {latest.payload['seqNo']} (#{latest.index})"
            )
        tx.events.append(r)
        kind = p.get("eventType")
        evse = p.get("evse")
        if isinstance(evse, dict) and isinstance(evse.get("id"), int):
            if tx.evse_id is not None and tx.evse_id != evse["id"]:
                self.problem(TRANSACTION_ID, f"{what} on EVSE {evse['id']}, not {tx.evse_id}")
            elif tx.evse_id is None:
                tx.evse_id = evse["id"]
                self._opened(tx, what)
        if kind == STARTED:
            if seq_no != 0 or not first_event:
                self.problem(REORDERED, f"{what}: a Started that is not the first event")
            if tx.evse_id is None:
                self.problem(MALFORMED, f"{what}: a Started without its EVSE")
        elif seq_no == 0:
            self.problem(REORDERED, f"{what}: seqNo 0 of {tx_id} is not a Started")
        elif kind == ENDED:
            self._ended(tx, r, what)
        elif kind != UPDATED:
            self.problem(MALFORMED, f"{what}: eventType {kind!r}")
        self._time(tx, p.get("timestamp"), what)
        if tx.evse_id is not None:
            for mv in p.get("meterValue", []):
                at = _parse_time(mv.get("timestamp"))
                if at is None:
                    self.problem(MALFORMED, f"{what}: meterValue timestamp {mv.get('timestamp')!r}")
                    continue
                for wh in energy_readings(mv):
                    self.readings[tx.evse_id].append((at, wh, what))

    def _opened(self, tx: Transaction, what: str) -> None:
        """The transaction's EVSE is known: it is that EVSE's open one now."""
        assert tx.evse_id is not None
        previous = self.open.get(tx.evse_id)
        if previous is not None and previous is not tx:
            self.problem(
                REORDERED,
                f"{what} on EVSE {tx.evse_id} while {previous.describe()} has no Ended yet",
            )
        self.open[tx.evse_id] = tx

    def _ended(self, tx: Transaction, r: Received, what: str) -> None:
        if tx.evse_id is not None and self.open.get(tx.evse_id) is tx:
            del self.open[tx.evse_id]
        reason = r.payload["transactionInfo"].get("stoppedReason", DEFAULT_REASON)
        if self.stop_reasons is not None and reason not in self.stop_reasons:
            self.problem(STOP_REASON, f"{what} ends {tx.describe()} with reason {reason}")
        promised = {
            mv.get("timestamp")
            for mv in r.payload.get("meterValue", [])
            if any(sv.get("context") in SAMPLE_CONTEXTS for sv in mv.get("sampledValue", []))
        }
        sent = {
            mv.get("timestamp")
            for e in tx.events
            if e.payload.get("eventType") == UPDATED
            for mv in e.payload.get("meterValue", [])
        }
        for stamp in sorted(promised - sent):
            self.problem(
                LOST,
                f"the sample of {stamp} is in {what}, but no Updated event of"
                f" {tx.describe()} carried it",
            )

    def _time(self, tx: Transaction, stamp: Any, what: str) -> None:
        at = _parse_time(stamp)
        if at is None:
            self.problem(MALFORMED, f"{what}: timestamp {stamp!r} is not RFC 3339")
            return
        last = self.last_time.get(tx.transaction_id)
        if last is not None and at < last[0]:
            self.problem(REORDERED, f"{what} at {stamp} is older than {last[1]} at {last[0]}")
        else:
            self.last_time[tx.transaction_id] = (at, what)
        if tx.evse_id is None:
            return
        last = self.last_evse_time.get(tx.evse_id)
        if last is not None and at < last[0]:
            self.problem(
                REORDERED,
                f"{what} at {stamp} on EVSE {tx.evse_id} is older than {last[1]} at {last[0]}",
            )
        else:
            self.last_evse_time[tx.evse_id] = (at, what)

    def finish(self, require_ended: bool) -> None:
        for evse_id, readings in sorted(self.readings.items()):
            last: tuple[datetime, float, str] | None = None
            for reading in sorted(readings, key=lambda x: x[0]):  # stable: arrival order kept
                if last is not None and reading[1] < last[1]:
                    self.problem(
                        METER,
                        f"{ENERGY} {reading[1]:g} Wh at {reading[0]} in {reading[2]} on EVSE"
                        f" {evse_id} < {last[1]:g} Wh at {last[0]} in {last[2]}",
                    )
                else:
                    last = reading
        for tx in self.transactions.values():
            seen = {e.payload["seqNo"] for e in tx.events}
            missing = sorted(set(range(max(seen) + 1)) - seen)
            if missing:
                self.problem(
                    LOST, f"{tx.describe()}: no event with seqNo {', '.join(map(str, missing))}"
                )
            if tx.started is None:
                self.problem(LOST, f"{tx.describe()} never got a Started")
            if require_ended and tx.ended is None:
                self.problem(LOST, f"{tx.describe()} never got an Ended")
        self.report.sessions += self.transactions.values()


def analyse_ledger(
    received: Iterable[Received],
    *,
    cp_id: str | None = None,
    max_copies: int | None = 2,
    max_duplicates: int | None = None,
    stop_reasons: Collection[str] | None = STOP_REASONS,
    require_ended: bool = True,
) -> LedgerReport:
    """Check the 2.0.1 TransactionEvents among ``received`` (a LoopbackCsms's ``received``).

    ``max_copies``: how often one message may arrive (2: the in-flight one once more; None:
    no limit). ``max_duplicates``: how many re-sends there may be in all per charge point
    (one per kill or socket drop). ``stop_reasons``: the stoppedReasons allowed (None: any).
    ``require_ended``: every transaction must have its Ended event. ``cp_id``: check only
    that charge point (default: every one, separately).
    """
    report = LedgerReport()
    streams: dict[str, list[Received]] = collections.defaultdict(list)
    for r in received:
        if (cp_id is None or r.cp_id == cp_id) and is_transaction_message(r):
            streams[r.cp_id].append(r)
    for cp, stream in streams.items():
        ledger = _ChargePointLedger(cp, report, max_copies=max_copies, stop_reasons=stop_reasons)
        before = len(report.duplicates)
        for r in stream:
            ledger.feed(r)
        ledger.finish(require_ended)
        resent = len(report.duplicates) - before
        if max_duplicates is not None and resent > max_duplicates:
            report.problem(
                DUPLICATE, cp, f"{resent} re-sent messages, at most {max_duplicates} allowed"
            )
    return report


def check_ledger(received: Iterable[Received], **options: Any) -> LedgerReport:
    """:func:`analyse_ledger`, raising AssertionError listing every problem found."""
    report = analyse_ledger(received, **options)
    report.assert_clean()
    return report
