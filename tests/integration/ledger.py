"""The transaction ledger: what the CSMS received, checked against the delivery guarantee.

The guarantee (docs: "Guarantees a user relies on"): every transaction message the agent
created — StartTransaction, StopTransaction, MeterValues with a ``transactionId`` — reaches
the CSMS exactly once and in creation order. The one exception is a message that was in
flight when the agent was killed or the socket dropped: it is sent again, under the SAME
unique id and with the same payload. On top of that:

- all MeterValues and the StopTransaction of a session carry the transactionId the CSMS
  returned to that session's StartTransaction;
- per connector a session is StartTransaction, its MeterValues, StopTransaction; sessions do
  not interleave on one connector and timestamps never go back;
- per connector the energy register (meterStart, Energy.Active.Import.Register samples,
  meterStop) never decreases, across sessions too;
- every session that started ends with exactly one StopTransaction;
- every periodic or clock-aligned sample that the StopTransaction's ``transactionData`` says
  was taken during the session arrived as a MeterValues of that session (that is how a lost
  MeterValues shows on the CSMS side; disable with ``check_transaction_data=False`` when
  ``MeterValuesSampledData`` is empty and samples produce no MeterValues).

Use::

    ids = TransactionIds(csms).install()          # before the agent starts
    ...
    report = check_ledger(csms.received, ids.assigned)   # raises AssertionError if broken
    report.summary()                              # sessions, messages, duplicates, ...

:func:`analyse_ledger` does the same without raising, for callers that count problems
(``report.count(LOST)``) instead of failing on the first run.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import Received

START, METER_VALUES, STOP = "StartTransaction", "MeterValues", "StopTransaction"
TRANSACTION_ACTIONS = (START, METER_VALUES, STOP)
ENERGY = "Energy.Active.Import.Register"
SAMPLE_CONTEXTS = ("Sample.Periodic", "Sample.Clock")
"""transactionData entries that each stand for a MeterValues the session sent."""

STOP_REASONS = frozenset({"Local", "EVDisconnected", "Remote", "PowerLoss"})
"""What a session may end with in the scenarios these tests drive."""

# Problem kinds.
LOST = "lost"
REORDERED = "reordered"
DUPLICATE = "duplicate"
TRANSACTION_ID = "transaction-id"
METER = "meter"
MALFORMED = "malformed"
STOP_REASON = "stop-reason"
KINDS = (LOST, REORDERED, DUPLICATE, TRANSACTION_ID, METER, MALFORMED, STOP_REASON)


# ------------------------------------------------------------------------ the CSMS side


class TransactionIds:
    """The CSMS's StartTransaction responder, wrapped to record which transactionId it gave
    to which StartTransaction unique id (``assigned``: unique id -> ids answered, in order).

    ``inner`` is the responder to wrap (default: the CSMS's ``default_reply``, which takes ids
    from its counter). It may return a payload, a CALLERROR, None (no answer) or an
    awaitable of one of those; only answered ids are recorded. With ``idempotent=True`` a
    StartTransaction sent again under a unique id already answered gets the same answer, as
    a CSMS that de-duplicates by message id would give.
    """

    def __init__(
        self,
        csms: LoopbackCsms,
        inner: Callable[[dict[str, Any]], Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> None:
        self.csms = csms
        self.inner = inner
        self.idempotent = idempotent
        self.assigned: dict[str, list[int]] = {}
        self._answers: dict[str, dict[str, Any]] = {}

    def install(self) -> TransactionIds:
        self.csms.responders[START] = self
        return self

    def unique_id_of(self, payload: dict[str, Any]) -> str:
        """The unique id of the StartTransaction whose payload (the very object) this is."""
        for received in reversed(self.csms.received):
            if received.payload is payload:
                return received.unique_id
        raise AssertionError(f"StartTransaction {payload} is not among the received CALLs")

    async def __call__(self, payload: dict[str, Any]) -> Any:
        unique_id = self.unique_id_of(payload)
        if self.idempotent and unique_id in self._answers:
            return self._answers[unique_id]
        result = (
            self.inner(payload)
            if self.inner is not None
            else self.csms.default_reply(START, payload)
        )
        if isinstance(result, Awaitable):
            result = await result
        if isinstance(result, dict) and "transactionId" in result:
            self.assigned.setdefault(unique_id, []).append(int(result["transactionId"]))
            self._answers[unique_id] = result
        return result


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Problem:
    kind: str
    cp_id: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.cp_id}: {self.text}"


@dataclass
class Session:
    """One transaction as the CSMS saw it (first copies only)."""

    cp_id: str
    connector_id: int
    start: Received
    transaction_id: int | None
    meter_values: list[Received] = field(default_factory=list)
    stop: Received | None = None

    @property
    def reason(self) -> str | None:
        return None if self.stop is None else self.stop.payload.get("reason", "Local")

    @property
    def messages(self) -> list[Received]:
        return [self.start, *self.meter_values, *([self.stop] if self.stop else [])]

    def describe(self) -> str:
        return (
            f"session tx={self.transaction_id} connector {self.connector_id}"
            f" idTag={self.start.payload.get('idTag')} (Start #{self.start.index})"
        )


class Ended(Protocol):
    """What a report reads of a session: its charge point and how it ended."""

    @property
    def cp_id(self) -> str: ...

    @property
    def reason(self) -> str | None: ...


S = TypeVar("S", bound=Ended)


@dataclass
class LedgerReport(Generic[S]):
    """The outcome of a ledger check, for either OCPP version (``S``: 1.6's
    :class:`Session`, 2.0.1's ``Transaction``)."""

    sessions: list[S] = field(default_factory=list)
    messages: int = 0
    """Distinct transaction messages (by unique id)."""
    received: int = 0
    """Transaction CALLs received, re-sends included."""
    duplicates: list[Received] = field(default_factory=list)
    """Re-sends: CALLs under a unique id already received."""
    problems: list[Problem] = field(default_factory=list)

    def problem(self, kind: str, cp_id: str, text: str) -> None:
        self.problems.append(Problem(kind, cp_id, text))

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)

    @property
    def clean(self) -> bool:
        return not self.problems

    def stop_reasons(self) -> collections.Counter[str]:
        return collections.Counter(s.reason for s in self.sessions if s.reason is not None)

    def summary(self) -> dict[str, Any]:
        """The figures a benchmark prints; ``lost`` and ``reordered`` count problems."""
        return {
            "charge_points": len({s.cp_id for s in self.sessions}),
            "sessions": len(self.sessions),
            "messages": self.messages,
            "received": self.received,
            "duplicates": len(self.duplicates),
            "stop_reasons": dict(self.stop_reasons()),
            "lost": self.count(LOST),
            "reordered": self.count(REORDERED),
            "problems": len(self.problems),
        }

    def assert_clean(self, context: str = "") -> None:
        """Raise AssertionError listing every problem (after ``context``, if given)."""
        if self.problems:
            listing = "\n".join(f"  {p}" for p in self.problems[:50])
            more = len(self.problems) - 50
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise AssertionError(
                f"{context}{': ' if context else ''}ledger has {len(self.problems)} problem(s);"
                f" {self.summary()}\n{listing}{tail}"
            )

    def merge(self, other: LedgerReport[S]) -> None:
        self.sessions += other.sessions
        self.messages += other.messages
        self.received += other.received
        self.duplicates += other.duplicates
        self.problems += other.problems


# --------------------------------------------------------------------------- the checker


def is_transaction_message(received: Received) -> bool:
    if received.action == METER_VALUES:
        return "transactionId" in received.payload
    return received.action in (START, STOP)


def energy_readings(meter_value: dict[str, Any]) -> list[float]:
    """The register readings (Wh) of one MeterValue: measurand Energy.Active.Import.Register
    (the OCPP default when none is named), all phases together."""
    out: list[float] = []
    for sv in meter_value.get("sampledValue", []):
        if sv.get("measurand", ENERGY) != ENERGY or sv.get("phase"):
            continue
        factor = 1000.0 if sv.get("unit") == "kWh" else 1.0
        out.append(float(sv["value"]) * factor)
    return out


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class Stream(Generic[S]):
    """One charge point's stream of transaction messages, and the check every version makes
    of it first: a message under a unique id already received is a re-send, allowed only as
    the same message, right after its first copy, at most ``max_copies`` times."""

    def __init__(self, cp_id: str, report: LedgerReport[S], max_copies: int | None) -> None:
        self.cp_id = cp_id
        self.report = report
        self.max_copies = max_copies
        self.first: dict[str, Received] = {}
        self.copies: collections.Counter[str] = collections.Counter()
        self.last_new: str | None = None

    def problem(self, kind: str, text: str) -> None:
        self.report.problem(kind, self.cp_id, text)

    def resent(self, received: Received) -> bool:
        """Count ``received``; True (and its problems noted) when it is a re-send."""
        self.report.received += 1
        uid = received.unique_id
        first = self.first.get(uid)
        if first is None:
            return False
        self.copies[uid] += 1
        self.report.duplicates.append(received)
        what = f"{received.action} {uid} (#{received.index}, first #{first.index})"
        if first.action != received.action or first.payload != received.payload:
            self.problem(DUPLICATE, f"unique id reused for a different message: {what}")
        elif uid != self.last_new:
            self.problem(REORDERED, f"re-sent after newer messages: {what}")
        elif self.max_copies is not None and self.copies[uid] + 1 > self.max_copies:
            self.problem(DUPLICATE, f"sent {self.copies[uid] + 1} times: {what}")
        return True


class _ChargePointLedger(Stream[Session]):
    """The checks for one charge point's stream of CALLs."""

    def __init__(
        self,
        cp_id: str,
        report: LedgerReport[Session],
        assigned: Mapping[str, Sequence[int]] | None,
        *,
        max_copies: int | None,
        stop_reasons: Collection[str] | None,
        check_transaction_data: bool,
    ) -> None:
        super().__init__(cp_id, report, max_copies)
        self.assigned = assigned
        self.stop_reasons = stop_reasons
        self.check_transaction_data = check_transaction_data
        self.by_content: dict[tuple[str, str], Received] = {}
        self.sessions: list[Session] = []
        self.by_transaction_id: dict[int, Session] = {}
        self.open: dict[int, Session] = {}
        self.last_time: dict[int, tuple[datetime, str]] = {}
        self.last_meter: dict[int, tuple[float, str]] = {}

    # -- the stream

    def feed(self, received: Received) -> None:
        if self.resent(received):
            return
        uid = received.unique_id
        content = (received.action, json.dumps(received.payload, sort_keys=True))
        earlier = self.by_content.get(content)
        if earlier is not None:
            self.report.duplicates.append(received)
            self.problem(
                DUPLICATE,
                f"{received.action} #{received.index} repeats #{earlier.index} under a new"
                f" unique id ({received.unique_id} vs {earlier.unique_id})",
            )
            return
        self.by_content[content] = received
        self.first[uid] = received
        self.last_new = uid
        self.report.messages += 1
        if received.action == START:
            self._start(received)
        elif received.action == METER_VALUES:
            self._meter_values(received)
        else:
            self._stop(received)

    def _start(self, r: Received) -> None:
        p = r.payload
        cid = p.get("connectorId")
        if not isinstance(cid, int):
            self.problem(MALFORMED, f"StartTransaction #{r.index} without connectorId")
            return
        ids = self.assigned.get(r.unique_id) if self.assigned is not None else None
        tx_id = ids[-1] if ids else None
        session = Session(self.cp_id, cid, r, tx_id)
        previous = self.open.get(cid)
        if previous is not None:
            self.problem(
                REORDERED,
                f"StartTransaction #{r.index} on connector {cid} while {previous.describe()}"
                " has no StopTransaction yet",
            )
        if tx_id is not None:
            other = self.by_transaction_id.get(tx_id)
            if other is not None:
                self.problem(
                    TRANSACTION_ID, f"transactionId {tx_id} given to two sessions (#{r.index})"
                )
            self.by_transaction_id[tx_id] = session
        self.open[cid] = session
        self.sessions.append(session)
        self._time(cid, p.get("timestamp"), f"StartTransaction #{r.index}")
        self._meter(cid, p.get("meterStart"), f"meterStart of #{r.index}")

    def _session_for(self, tx_id: Any, cid: int | None, what: str) -> Session | None:
        if not isinstance(tx_id, int) or isinstance(tx_id, bool):
            self.problem(MALFORMED, f"{what}: transactionId {tx_id!r} is not an integer")
            return None
        session = self.by_transaction_id.get(tx_id)
        if session is None and self.assigned is None:
            # No record of the CSMS's answers: bind the id to the open session it must be.
            candidates = [
                s
                for s in self.open.values()
                if s.transaction_id is None and (cid is None or s.connector_id == cid)
            ]
            if len(candidates) == 1:
                session = candidates[0]
                session.transaction_id = tx_id
                self.by_transaction_id[tx_id] = session
        if session is None:
            self.problem(
                TRANSACTION_ID,
                f"{what} carries transactionId {tx_id}, which the CSMS gave to no"
                " StartTransaction received before it",
            )
        return session

    def _meter_values(self, r: Received) -> None:
        p = r.payload
        cid = p.get("connectorId")
        what = f"MeterValues #{r.index}"
        session = self._session_for(p.get("transactionId"), cid, what)
        if session is not None:
            if session.stop is not None:
                self.problem(REORDERED, f"{what} after the StopTransaction of {session.describe()}")
            elif session.connector_id != cid:
                self.problem(
                    TRANSACTION_ID,
                    f"{what} on connector {cid} carries the id of {session.describe()}",
                )
            session.meter_values.append(r)
        if not isinstance(cid, int):
            self.problem(MALFORMED, f"{what} without connectorId")
            return
        for mv in p.get("meterValue", []):
            self._time(cid, mv.get("timestamp"), what)
            for wh in energy_readings(mv):
                self._meter(cid, wh, f"{ENERGY} of {what}")

    def _stop(self, r: Received) -> None:
        p = r.payload
        what = f"StopTransaction #{r.index}"
        session = self._session_for(p.get("transactionId"), None, what)
        if session is None:
            return
        if session.stop is not None:
            self.problem(
                DUPLICATE,
                f"second StopTransaction #{r.index} for {session.describe()}"
                f" (first #{session.stop.index})",
            )
            return
        cid = session.connector_id
        if self.open.get(cid) is not session:
            self.problem(REORDERED, f"{what} for {session.describe()}, which is not open")
        else:
            del self.open[cid]
        session.stop = r
        reason = p.get("reason", "Local")
        if self.stop_reasons is not None and reason not in self.stop_reasons:
            self.problem(STOP_REASON, f"{what} ends {session.describe()} with reason {reason}")
        self._time(cid, p.get("timestamp"), what)
        self._meter(cid, p.get("meterStop"), f"meterStop of #{r.index}")
        if self.check_transaction_data:
            self._transaction_data(session, r)

    def _transaction_data(self, session: Session, stop: Received) -> None:
        """Every sample the session kept for its StopTransaction was also sent on its own."""
        promised = {
            mv.get("timestamp")
            for mv in stop.payload.get("transactionData", [])
            if any(sv.get("context") in SAMPLE_CONTEXTS for sv in mv.get("sampledValue", []))
        }
        sent = {
            mv.get("timestamp")
            for r in session.meter_values
            for mv in r.payload.get("meterValue", [])
            if any(sv.get("context") in SAMPLE_CONTEXTS for sv in mv.get("sampledValue", []))
        }
        for stamp in sorted(promised - sent):
            self.problem(
                LOST,
                f"the sample of {stamp} is in the transactionData of StopTransaction"
                f" #{stop.index}, but no MeterValues of {session.describe()} carried it",
            )
        if not promised:
            return  # no StopTxnSampledData kept: nothing to compare with
        for stamp in sorted(sent - promised):
            self.problem(
                LOST,
                f"MeterValues of {stamp} for {session.describe()} is missing from the"
                f" transactionData of StopTransaction #{stop.index}",
            )

    # -- per-connector order and meter

    def _time(self, cid: int, stamp: Any, what: str) -> None:
        at = _parse_time(stamp)
        if at is None:
            self.problem(MALFORMED, f"{what}: timestamp {stamp!r} is not RFC 3339")
            return
        last = self.last_time.get(cid)
        if last is not None and at < last[0]:
            self.problem(
                REORDERED,
                f"{what} at {stamp} on connector {cid} is older than {last[1]} at {last[0]}",
            )
            return
        self.last_time[cid] = (at, what)

    def _meter(self, cid: int, value: Any, what: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.problem(MALFORMED, f"{what}: {value!r} is not a number")
            return
        last = self.last_meter.get(cid)
        if last is not None and value < last[0]:
            self.problem(
                METER, f"{what} = {value:g} Wh on connector {cid} < {last[1]} = {last[0]:g} Wh"
            )
            return
        self.last_meter[cid] = (float(value), what)

    def finish(self, require_stopped: bool) -> None:
        if require_stopped:
            for session in self.open.values():
                self.problem(LOST, f"{session.describe()} never got a StopTransaction")
        self.report.sessions += self.sessions


def _normalise(
    assigned: Mapping[str, int | Sequence[int]] | None,
) -> dict[str, list[int]] | None:
    if assigned is None:
        return None
    return {uid: [ids] if isinstance(ids, int) else list(ids) for uid, ids in assigned.items()}


def analyse_ledger(
    received: Iterable[Received],
    assigned: Mapping[str, int | Sequence[int]] | None = None,
    *,
    cp_id: str | None = None,
    max_copies: int | None = 2,
    max_duplicates: int | None = None,
    stop_reasons: Collection[str] | None = STOP_REASONS,
    require_stopped: bool = True,
    check_transaction_data: bool = True,
) -> LedgerReport[Session]:
    """Check the transaction messages among ``received`` (a LoopbackCsms's ``received``).

    ``assigned`` maps a StartTransaction's unique id to the transactionId(s) the CSMS
    answered it with (:attr:`TransactionIds.assigned`); the last one is the session's id.
    Without it each id is bound to the open session it can only belong to.

    ``max_copies``: how often one message may arrive (2: the in-flight one once more; None:
    no limit, e.g. when the CSMS lets requests time out). ``max_duplicates``: how many
    re-sends there may be in all per charge point (one per kill or socket drop).
    ``stop_reasons``: the reasons a StopTransaction may give (None: any).
    ``require_stopped``: every session must have its StopTransaction.
    ``cp_id``: check only that charge point (default: every one, separately).
    """
    report: LedgerReport[Session] = LedgerReport()
    ids = _normalise(assigned)
    streams: dict[str, list[Received]] = collections.defaultdict(list)
    for r in received:
        if (cp_id is None or r.cp_id == cp_id) and is_transaction_message(r):
            streams[r.cp_id].append(r)
    for cp, stream in streams.items():
        ledger = _ChargePointLedger(
            cp,
            report,
            ids,
            max_copies=max_copies,
            stop_reasons=stop_reasons,
            check_transaction_data=check_transaction_data,
        )
        before = len(report.duplicates)
        for r in stream:
            ledger.feed(r)
        ledger.finish(require_stopped)
        resent = len(report.duplicates) - before
        if max_duplicates is not None and resent > max_duplicates:
            report.problem(
                DUPLICATE, cp, f"{resent} re-sent messages, at most {max_duplicates} allowed"
            )
    return report


def check_ledger(
    received: Iterable[Received],
    assigned: Mapping[str, int | Sequence[int]] | None = None,
    **options: Any,
) -> LedgerReport[Session]:
    """:func:`analyse_ledger`, raising AssertionError listing every problem found."""
    report = analyse_ledger(received, assigned, **options)
    report.assert_clean()
    return report
