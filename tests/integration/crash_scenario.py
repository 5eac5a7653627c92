"""The seeded kill -9 scenario, shared by ``test_fault_injection.py`` and
``benchmarks/crash_soak.py`` so both run exactly the same thing.

One iteration, for one seed and OCPP version ("1.6" or "2.0.1"): start a simulated agent on
a fresh data_dir, play a random but plausible sequence of steps (plug, card, let meter values
flow every second, stop by card or unplug, network down/up, short pauses) against a CSMS that
answers transaction messages at once or a little late (so that the kill finds one in flight
more often), ``kill -9`` it after a random step, possibly after a random short delay, restart
it on the same data_dir, charge once more (always, or when no session got through before the
kill), let everything drain, stop it with SIGTERM and check:

- the ledger of what the CSMS received (1.6: :mod:`tests.integration.ledger`; 2.0.1:
  :mod:`tests.integration.ledger201`, seqNo contiguous per transaction), with one re-send
  allowed per interruption (the kill, each network outage);
- the session open at the kill ends with PowerLoss, stamped after the kill; no other does;
- the agent's store agrees: nothing left queued or set aside as failed, no session left open,
  and every session in the store is one the CSMS saw, with the same id, readings and reason
  (2.0.1: and as many events as the store numbered).

The plan of a seed is the same in both versions; 1.6's meter values are MeterValues
(MeterValueSampleInterval=1), 2.0.1's TransactionEvent Updated (TxUpdatedInterval=1).

Everything random comes from ``random.Random(seed)``; the only sleeps are the injected
pauses, kill delay and answer latency, bounded and seeded. (Which messages exist still
depends on timing: the sim commands return before the agent acts on them.) The agent is
driven through its control socket directly (the same JSON-lines requests ``cpagent sim`` and
``status`` send), which keeps an iteration near the 3 s a soak of hundreds can afford.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cpagent.store import OutboxRow, Store, TransactionRow
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import Received
from tests.integration import ledger201
from tests.integration.conftest import AgentProcess
from tests.integration.ledger import (
    LOST,
    METER,
    METER_VALUES,
    START,
    STOP,
    STOP_REASON,
    LedgerReport,
    Session,
    TransactionIds,
    analyse_ledger,
)

State = dict[str, Any]

CONNECTOR = 1
WAIT_S = 30.0
OCPP16 = {
    "MeterValueSampleInterval": 1,
    "AllowOfflineTxForUnknownId": True,
    "TransactionMessageRetryInterval": 1,
}
OCPP201: dict[str, dict[str, Any]] = {
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
    "AuthCtrlr": {"OfflineTxForUnknownIdEnabled": True},
    "OCPPCommCtrlr": {"MessageAttemptInterval:TransactionEvent": 1},
}
"""The 2.0.1 counterparts of :data:`OCPP16` (device-model values by component)."""
V16, V201 = "1.6", "2.0.1"
VERSIONS = (V16, V201)
TRANSACTION_EVENT = "TransactionEvent"
STOP_STEPS = ("stop-tag", "unplug")
SCHEMA = "schema"
SCENARIO = "scenario"


def agent_options(cp_id: str, version: str = V16) -> dict[str, Any]:
    """The AgentProcess keyword arguments the scenario expects for OCPP ``version``."""
    if version == V201:
        return {"cp_id": cp_id, "ocpp201": {k: dict(v) for k, v in OCPP201.items()}}
    if version != V16:
        raise ValueError(f"OCPP version must be one of {VERSIONS}, not {version!r}")
    return {"cp_id": cp_id, "ocpp16": dict(OCPP16)}


# ---------------------------------------------------------------------- the control socket


async def control(agent: AgentProcess, request: dict[str, Any], timeout: float = WAIT_S) -> Any:
    """One JSON-lines request on the agent's control socket; its result, or AssertionError."""

    async def ask() -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(agent.tables["control"]["socket"])
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
            return answer
        finally:
            writer.close()
            await writer.wait_closed()

    answer = await asyncio.wait_for(ask(), timeout)
    if not answer.get("ok"):
        raise AssertionError(f"control request {request} failed: {answer}")
    return answer["result"]


async def sim(agent: AgentProcess, *args: str) -> None:
    await control(agent, {"cmd": "sim", "args": list(args)})


async def status(agent: AgentProcess) -> State:
    state: State = await control(agent, {"cmd": "status"})
    return state


async def wait_status(
    agent: AgentProcess, predicate: Callable[[State], bool], what: str, timeout: float = WAIT_S
) -> State:
    """Poll the agent's status until ``predicate`` holds (bounded; status has no push)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await status(agent)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; status {state}")
        await asyncio.sleep(0.02)


def transaction(state: State) -> dict[str, Any] | None:
    tx: dict[str, Any] | None = state["connectors"][CONNECTOR - 1]["transaction"]
    return tx


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    seed: int
    steps: tuple[tuple[str, Any], ...]
    kill_after: int
    """Kill once this many steps have run (1..len(steps))."""
    kill_delay: float
    """... and this many seconds later."""
    finish: tuple[tuple[str, Any], ...]
    """A session after the restart, ..."""
    finish_always: bool
    """... played always, or only when the CSMS has seen no session before it."""
    answer_delay: float
    """How long the CSMS takes to answer a transaction message: the longer, the likelier
    the kill finds one in flight."""

    def describe(self) -> str:
        done = " ".join(_step_text(s) for s in self.steps[: self.kill_after])
        rest = " ".join(_step_text(s) for s in self.steps[self.kill_after :]) or "-"
        after = " ".join(_step_text(s) for s in self.finish)
        when = "" if self.finish_always else "if no session yet: "
        return (
            f"seed {self.seed}: CSMS answers in {self.answer_delay:.2f} s"
            f" | {done} | kill -9 after {self.kill_delay:.2f} s"
            f" | (not played: {rest}) | after the restart: {when}{after}"
        )


def _step_text(step: tuple[str, Any]) -> str:
    name, arg = step
    return name if arg is None else f"{name}({arg})"


def _session_steps(rng: random.Random, tag: str, *, meter: int = 0) -> list[tuple[str, Any]]:
    """Plug and card in either order, at least ``meter`` samples, stop by card or unplug."""
    steps: list[tuple[str, Any]] = [("plug", None), ("tag", tag)]
    rng.shuffle(steps)  # plug first or card first
    steps += [("meter", 1)] * rng.randint(meter, 2)
    if rng.random() < 0.5:
        steps += [("stop-tag", tag), ("unplug", None)]
    else:
        steps.append(("unplug", None))
    return steps


def make_plan(seed: int) -> Plan:
    """The steps for ``seed``: one or two sessions, maybe an outage and pauses, the kill."""
    rng = random.Random(seed)
    steps: list[tuple[str, Any]] = []
    for n in range(rng.choice((1, 1, 2))):
        steps += _session_steps(rng, f"K{seed % 100000}-{n + 1}")
    if rng.random() < 0.5:  # a network outage somewhere
        down = rng.randint(0, len(steps))
        steps.insert(down, ("net-down", None))
        steps.insert(rng.randint(down + 1, len(steps)), ("net-up", None))
    for _ in range(rng.randint(0, 2)):
        steps.insert(rng.randint(0, len(steps)), ("pause", round(rng.uniform(0.05, 0.6), 3)))
    kill_after = rng.randint(1, len(steps))
    kill_delay = 0.0 if rng.random() < 0.4 else round(rng.uniform(0.0, 0.8), 3)
    # A sample step waits for the session to start: the one after the restart surely does.
    finish = _session_steps(rng, f"K{seed % 100000}-after", meter=1)
    return Plan(
        seed,
        tuple(steps),
        kill_after,
        kill_delay,
        tuple(finish),
        finish_always=rng.random() < 0.3,
        answer_delay=rng.choice((0.0, 0.0, 0.05, 0.25)),
    )


# ---------------------------------------------------------------------------- running it


@dataclass
class Driver:
    """Plays steps against one agent, tracking the network, outages and what the charger
    should be doing (``session_tag``: the card whose session the steps so far opened)."""

    agent: AgentProcess
    csms: LoopbackCsms
    version: str = V16
    online: bool = True
    outages: int = 0
    plugged: bool = False
    card: str | None = None
    session_tag: str | None = None

    async def step(self, name: str, arg: Any) -> None:
        agent = self.agent
        if name == "plug":
            await sim(agent, "plug", str(CONNECTOR))
            self.plugged = True
            self.session_tag, self.card = self.card, None
        elif name == "unplug":
            await sim(agent, "unplug", str(CONNECTOR))
            self.plugged, self.session_tag = False, None
        elif name in ("tag", "stop-tag"):
            await sim(agent, "tag", str(arg))
            if self.session_tag == arg:
                self.session_tag = None
            elif self.plugged:
                self.session_tag = str(arg)
            else:
                self.card = str(arg)
        elif name == "meter":
            await self.meter_values(int(arg))
        elif name == "net-down":
            await sim(agent, "network", "down")
            self.online = False
            self.outages += 1
        elif name == "net-up":
            await sim(agent, "network", "up")
            self.online = True
        elif name == "pause":
            await asyncio.sleep(float(arg))  # an injected delay
        else:
            raise ValueError(f"unknown step {name!r}")

    def restarted(self) -> None:
        """A fresh agent process: network up, simulated EV unplugged, no card pending."""
        self.online, self.plugged, self.card, self.session_tag = True, False, None, None

    async def meter_values(self, count: int) -> None:
        """Let ``count`` transaction meter values be made (online: arrive at the CSMS; 1.6
        MeterValues, 2.0.1 TransactionEvent Updated with triggerReason MeterValuePeriodic)."""
        agent = self.agent
        state = await wait_status(agent, lambda s: transaction(s) is not None, "session started")
        if self.online and self.version == V201:
            for _ in range(count):
                mark = self.csms.mark()
                await self.csms.wait_for(
                    TRANSACTION_EVENT,
                    lambda p: (
                        p["eventType"] == "Updated" and p["triggerReason"] == "MeterValuePeriodic"
                    ),
                    since=mark,
                    timeout=WAIT_S,
                )
        elif self.online:
            for _ in range(count):
                mark = self.csms.mark()
                await self.csms.wait_for(
                    "MeterValues",
                    lambda p: "transactionId" in p and p["connectorId"] == CONNECTOR,
                    since=mark,
                    timeout=WAIT_S,
                )
        else:
            depth = state["queue"]["depth"]
            await wait_status(
                agent, lambda s: s["queue"]["depth"] >= depth + count, "MeterValues queued"
            )

    async def drained(self) -> None:
        """Wait until no session runs and the CSMS has everything."""
        await wait_status(
            self.agent,
            lambda s: (
                transaction(s) is None and s["queue"]["depth"] == 0 and s["csms"]["connected"]
            ),
            "everything delivered",
        )


Report = LedgerReport[Session] | ledger201.LedgerReport
"""A ledger report of either version (same shape, same problem kinds)."""


@dataclass
class IterationResult:
    plan: Plan
    report: Report
    seconds: float
    outages: int
    powerloss_expected: bool

    def line(self) -> str:
        s = self.report.summary()
        reasons = ",".join(f"{k}:{v}" for k, v in sorted(s["stop_reasons"].items())) or "-"
        verdict = "ok" if self.report.clean else f"FAIL({len(self.report.problems)})"
        return (
            f"seed {self.plan.seed:5d}  csms {self.plan.answer_delay:.2f}s"
            f"  steps {self.plan.kill_after:2d}/{len(self.plan.steps):2d}"
            f" +{self.plan.kill_delay:.2f}s  sessions {s['sessions']}"
            f"  msgs {s['messages']:2d}  dup {s['duplicates']}  outages {self.outages}"
            f"  [{reasons}]  {self.seconds:.2f}s  {verdict}"
        )


def slow_answer(
    csms: LoopbackCsms, action: str, delay: float
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A responder giving the CSMS's default answer ``delay`` seconds late."""

    async def respond(payload: dict[str, Any]) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)  # injected back-end latency
        return csms.default_reply(action, payload)

    return respond


async def booted(csms: LoopbackCsms, since: int, version: str = V16) -> None:
    """Wait until the agent reported the connector (2.0.1: its EVSE) after an accepted boot."""
    if version == V201:
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == CONNECTOR, since=since)
        return
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == CONNECTOR, since=since)


def any_session_seen(csms: LoopbackCsms, cp_id: str, version: str) -> bool:
    """Whether the CSMS has seen a session start (1.6 StartTransaction, 2.0.1 Started)."""
    if version == V201:
        return any(
            r.cp_id == cp_id
            and r.action == TRANSACTION_EVENT
            and r.payload.get("eventType") == "Started"
            for r in csms.received
        )
    return any(r.cp_id == cp_id and r.action == START for r in csms.received)


async def run_iteration(
    seed: int, csms: LoopbackCsms, agent: AgentProcess, version: str = V16
) -> IterationResult:
    """Play the plan for ``seed`` against ``agent`` (configured with :func:`agent_options`
    for ``version``, not started) and the CSMS, and check the outcome. Problems are in the
    result's report; a step that cannot complete (the agent stops responding) raises
    AssertionError."""
    plan = make_plan(seed)
    began = time.monotonic()
    ids: TransactionIds | None = None
    if version == V201:
        csms.responders[TRANSACTION_EVENT] = slow_answer(csms, TRANSACTION_EVENT, plan.answer_delay)
    else:
        ids = TransactionIds(csms, slow_answer(csms, START, plan.answer_delay)).install()
        for action in (METER_VALUES, STOP):
            csms.responders[action] = slow_answer(csms, action, plan.answer_delay)
    driver = Driver(agent, csms, version)

    mark = csms.mark()
    await agent.start()
    await booted(csms, mark, version)
    for name, arg in plan.steps[: plan.kill_after]:
        await driver.step(name, arg)
    # PowerLoss is certain when the steps opened a session, it has started and nothing was
    # told to stop it; a stop step just played may or may not have been acted on (the
    # session still running may be the one that card is about to stop).
    running = transaction(await status(agent))
    powerloss_expected = running is not None and running["id_tag"] == driver.session_tag
    if plan.kill_delay:
        await asyncio.sleep(plan.kill_delay)  # the injected kill point
    await agent.kill9()
    killed_at = datetime.now().astimezone()

    mark = csms.mark()
    await agent.start()
    driver.restarted()
    await booted(csms, mark, version)
    await driver.drained()
    if plan.finish_always or not any_session_seen(csms, agent.cp_id, version):
        for name, arg in plan.finish:
            await driver.step(name, arg)
        await driver.drained()
    code = await agent.stop()

    report: Report
    if ids is None:
        report = ledger201.analyse_ledger(
            csms.received,
            cp_id=agent.cp_id,
            max_copies=2 + driver.outages,
            max_duplicates=1 + driver.outages,
            stop_reasons={"Local", "EVDisconnected", "PowerLoss"},
        )
    else:
        report = analyse_ledger(
            csms.received,
            ids.assigned,
            cp_id=agent.cp_id,
            max_copies=2 + driver.outages,
            max_duplicates=1 + driver.outages,
            stop_reasons={"Local", "EVDisconnected", "PowerLoss"},
        )
    cp = agent.cp_id
    if code != 0:
        report.problem(SCENARIO, cp, f"agent exited with {code} on SIGTERM")
    for error in csms.schema_errors:
        report.problem(SCHEMA, cp, error)
    check_powerloss(report, cp, killed_at, powerloss_expected)
    if version == V16:
        report16 = cast(LedgerReport[Session], report)
        for problem in await asyncio.to_thread(store_problems, agent.data_dir, report16):
            report.problem(LOST, cp, problem)
    else:
        report201 = cast(ledger201.LedgerReport, report)
        for kind, text in await asyncio.to_thread(store_problems_201, agent.data_dir, report201):
            report.problem(kind, cp, text)
    return IterationResult(
        plan, report, time.monotonic() - began, driver.outages, powerloss_expected
    )


def check_powerloss(report: Report, cp_id: str, killed_at: datetime, expected: bool) -> None:
    """One kill: at most one PowerLoss, stamped after the kill, for a session begun before."""
    lost = [s for s in report.sessions if s.reason == "PowerLoss"]
    if len(lost) > 1 or (expected and not lost):
        report.problem(
            STOP_REASON,
            cp_id,
            f"{len(lost)} session(s) ended with PowerLoss after one kill"
            f" (a session was {'open' if expected else 'not surely open'} at the kill)",
        )
    for session in report.sessions:
        started = datetime.fromisoformat(session.start.payload["timestamp"])
        if session.reason == "PowerLoss":
            assert session.stop is not None
            stopped = datetime.fromisoformat(session.stop.payload["timestamp"])
            if started > killed_at or stopped < killed_at:
                report.problem(
                    STOP_REASON,
                    cp_id,
                    f"{session.describe()} ended PowerLoss but ran {started}..{stopped},"
                    f" not across the kill at {killed_at}",
                )


def store_problems(data_dir: Path, report: LedgerReport[Session]) -> list[str]:
    """What the stopped agent's store says was created but the ledger does not show."""
    problems: list[str] = []
    pending, failed, transactions = _load_store(data_dir)
    if pending:
        problems.append(
            f"{len(pending)} message(s) still queued in the store: "
            + ", ".join(f"{row.action} {row.message_id}" for row in pending[:5])
        )
    if failed:
        problems.append(f"{failed} message(s) set aside as failed in the store")
    by_id = {s.transaction_id: s for s in report.sessions}
    for tx in transactions:
        session = by_id.pop(tx.transaction_id, None) if tx.transaction_id is not None else None
        if session is None:
            problems.append(
                f"the store's session {tx.local_id} (transactionId {tx.transaction_id},"
                f" {tx.id_tag}, started {tx.started_at}) is not in the ledger"
            )
            continue
        start = session.start.payload
        stop = session.stop.payload if session.stop else {}
        mine = (tx.started_at, tx.meter_start_wh, tx.meter_stop_wh, tx.stop_reason)
        theirs = (
            start["timestamp"],
            start["meterStart"],
            stop.get("meterStop"),
            stop.get("reason"),
        )
        if mine != theirs:
            problems.append(
                f"the store's session {tx.local_id} {mine} differs from what the CSMS got {theirs}"
            )
    for session in by_id.values():
        problems.append(f"the store does not know {session.describe()}")
    return problems


def _load_store(data_dir: Path) -> tuple[list[OutboxRow], int, list[TransactionRow]]:
    """The store's queued rows, dead-letter count and every transaction, oldest first."""
    store = Store(data_dir)
    store.open()
    try:
        pending = store.pending()
        failed = store.failed_count()
        transactions = []
        local_id = 1
        while (tx := store.get_transaction(local_id)) is not None:
            transactions.append(tx)
            local_id += 1
    finally:
        store.close()
    return pending, failed, transactions


def _reading(event: Received | None, context: str) -> float | None:
    """The register reading of ``context`` in a TransactionEvent, if it has one."""
    if event is None:
        return None
    for mv in event.payload.get("meterValue", []):
        for sv in mv.get("sampledValue", []):
            if sv.get("context") == context:
                found = ledger201.energy_readings({"sampledValue": [sv]})
                if found:
                    return found[0]
    return None


def store_problems_201(data_dir: Path, report: ledger201.LedgerReport) -> list[tuple[str, str]]:
    """2.0.1: what the stopped agent's store says that the ledger does not show, as (problem
    kind, text). Nothing may be queued or failed, no transaction open, and each store
    transaction must be one the CSMS saw under its id, with the same start time, meter start
    and stop (the register readings of contexts Transaction.Begin and Transaction.End),
    stopped reason, and as many events as the store numbered (its ``seq_no`` is the next
    event's seqNo). An Ended event without the closing reading is a METER problem: the
    message arrived, but the CSMS cannot bill up to the reading the store closed at."""
    pending, failed, transactions = _load_store(data_dir)
    problems: list[tuple[str, str]] = []
    if pending:
        problems.append(
            (
                LOST,
                f"{len(pending)} message(s) still queued in the store: "
                + ", ".join(f"{row.action} {row.message_id}" for row in pending[:5]),
            )
        )
    if failed:
        problems.append((LOST, f"{failed} message(s) set aside as failed in the store"))
    by_id = {s.transaction_id: s for s in report.sessions}
    for tx in transactions:
        if tx.open:
            problems.append(
                (
                    LOST,
                    f"the store's transaction {tx.local_id} ({tx.ocpp_transaction_id})"
                    " is still open",
                )
            )
        session = by_id.pop(tx.ocpp_transaction_id or "", None)
        if session is None:
            problems.append(
                (
                    LOST,
                    f"the store's transaction {tx.local_id} ({tx.ocpp_transaction_id},"
                    f" {tx.id_tag}, started {tx.started_at}) is not in the ledger",
                )
            )
            continue
        begin = _reading(session.started, "Transaction.Begin")
        end = _reading(session.ended, "Transaction.End")
        mine: tuple[Any, ...] = (
            tx.started_at,
            tx.meter_start_wh,
            tx.meter_stop_wh,
            tx.stop_reason,
            tx.seq_no,
        )
        theirs: tuple[Any, ...] = (
            session.start.payload["timestamp"],
            None if begin is None else round(begin),
            None if end is None else round(end),
            session.reason,
            len(session.events),
        )
        if session.ended is not None and end is None and mine[3:] == theirs[3:]:
            problems.append(
                (
                    METER,
                    f"the Ended event #{session.ended.index} of {session.describe()}"
                    f" ({session.reason}) has no {ledger201.ENERGY} reading of context"
                    f" Transaction.End; the store closed it at {tx.meter_stop_wh} Wh",
                )
            )
            mine, theirs = mine[:2], theirs[:2]
        if mine != theirs:
            problems.append(
                (
                    LOST,
                    f"the store's transaction {tx.local_id} {mine} differs from what the CSMS"
                    f" got {theirs} (start, meter start, meter stop, reason, events)",
                )
            )
    for session in by_id.values():
        problems.append((LOST, f"the store does not know {session.describe()}"))
    return problems
