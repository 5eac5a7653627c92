"""OCPP 2.0.1 interop: the real ``cpagent run`` against an independent 2.0.1 CSMS.

The central system is ``tests/interop/ocpp201-csms/server.js``: the npm package ``ocpp-rpc``
(pinned in its package-lock.json) serving ``ocpp2.0.1`` only, in strict mode, so every CALL
and every CALLRESULT, both ways, is validated against the OCPP 2.0.1 JSON schemas that ship
with ocpp-rpc, by a JSON-schema implementation (ajv) that none of cpagent's code shares. The
Node process prints every frame on the wire and every strict-mode refusal as JSON lines; the
test reads them as they come (each wait is event-driven on those lines and bounded) and
sends the CSMS's own requests through its standard input.

``make test`` installs the Node modules (``npm ci``) first. Without ``node`` the test is
skipped; with node but without the modules it fails and says how to install them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing.csms import WAIT_S
from tests.integration.conftest import AgentProcess

CSMS_DIR = Path(__file__).resolve().parents[1] / "interop" / "ocpp201-csms"
NODE = shutil.which("node")
CP_ID = "CP-RPC-201"
HEARTBEAT_S = 120  # the CSMS's BootNotification interval, read back with GetVariables
ITEMS_PER_REPORT = 10  # DeviceDataCtrlr.ItemsPerMessage:GetReport, so the report comes in parts
REPORT_ID = 4711

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node (Node.js) is not installed: the ocpp-rpc CSMS cannot run"
)

Line = dict[str, Any]
Match = Callable[[Line], bool]


class NodeCsms:
    """The ocpp-rpc CSMS process: its JSON lines, in order, and its command input."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self._changed = asyncio.Event()
        self._tags = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(text)
            try:
                line = json.loads(text)
            except ValueError:
                line = {"event": "not_json", "text": text}
            self.lines.append(line)
            self._changed.set()
        self.lines.append({"event": "exited"})
        self._changed.set()

    def mark(self) -> int:
        return len(self.lines)

    async def wait_for(self, match: Match, *, since: int = 0, timeout: float = WAIT_S) -> Line:
        """The first line from ``since`` on that ``match`` accepts; fails after ``timeout``
        or when the process has ended without printing one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for line in self.lines[since:]:
                if match(line):
                    return line
                if line["event"] == "exited":
                    raise AssertionError(f"the CSMS exited: {self.tail()}")
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout} s: {self.tail()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def station_call(
        self, action: str, where: Match | None = None, *, since: int = 0
    ) -> Line:
        """The next CALL ``action`` line the station sent (from ``since`` on)."""
        return await self.wait_for(
            lambda m: (
                m["event"] == "message"
                and m["direction"] == "in"
                and m["type"] == "CALL"
                and m["action"] == action
                and (where is None or where(m["payload"]))
            ),
            since=since,
        )

    async def station(
        self, action: str, where: Match | None = None, *, since: int = 0
    ) -> dict[str, Any]:
        """The payload of the next CALL ``action`` the station sent (from ``since`` on)."""
        payload: dict[str, Any] = (await self.station_call(action, where, since=since))["payload"]
        return payload

    async def answered(self, call: Line) -> Line:
        """The CALLRESULT or CALLERROR that answered the CALL ``call``."""
        return await self.wait_for(
            lambda m: (
                m["event"] == "message"
                and m["type"] in ("CALLRESULT", "CALLERROR")
                and m["direction"] != call["direction"]
                and m["id"] == call["id"]
            )
        )

    async def call(self, action: str, params: dict[str, Any]) -> Line:
        """Make the CSMS send CALL ``action``; the ``reply`` or ``reply_error`` line."""
        assert self.proc.stdin is not None
        tag = f"t{next(self._tags)}"
        command = {"call": action, "params": params, "tag": tag}
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.wait_for(
            lambda m: m["event"] in ("reply", "reply_error") and m.get("tag") == tag
        )

    def frames(self, direction: str, kind: str, action: str | None = None) -> list[Line]:
        return [
            m
            for m in self.lines
            if m["event"] == "message"
            and m["direction"] == direction
            and m["type"] == kind
            and (action is None or m["action"] == action)
        ]

    def payloads(self, action: str) -> list[dict[str, Any]]:
        return [m["payload"] for m in self.frames("in", "CALL", action)]

    def problems(self) -> list[Line]:
        """Everything that went wrong on the CSMS's side: strict-mode refusals, frames it
        could not take, handlers that failed, CALLERRORs either way, stray output."""
        bad_events = {"validation_error", "bad_message", "handler_error", "not_json"}
        return [
            m
            for m in self.lines
            if m["event"] in bad_events
            or (m["event"] == "message" and m["type"] not in ("CALL", "CALLRESULT"))
        ]

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.raw[-n:])

    async def close(self) -> int:
        """End the process (closing its input makes it exit); returns its exit code."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, WAIT_S)
        return code


@pytest.fixture
async def node_csms(workdir: Path) -> AsyncIterator[NodeCsms]:
    assert NODE is not None
    if not (CSMS_DIR / "node_modules" / "ocpp-rpc").is_dir():
        pytest.fail(
            f"the Node modules of {CSMS_DIR} are not installed: run `make interop-deps` "
            "(npm ci there, with its package-lock.json)"
        )
    stderr = (workdir / "csms.stderr").open("wb")
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(CSMS_DIR / "server.js"),
        "--port",
        "0",
        "--interval",
        str(HEARTBEAT_S),
        cwd=CSMS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    stderr.close()
    csms = NodeCsms(proc)
    try:
        yield csms
    finally:
        code = await csms.close()
        errors = (workdir / "csms.stderr").read_text(errors="replace")
        assert code == 0, f"the CSMS exited with {code}: {errors}"


def _answered(csms: NodeCsms, direction: str, action: str) -> None:
    """Every CALL ``action`` sent in ``direction`` got a CALLRESULT, none a CALLERROR."""
    back = "out" if direction == "in" else "in"
    calls = {m["id"] for m in csms.frames(direction, "CALL", action)}
    results = {m["id"] for m in csms.frames(back, "CALLRESULT", action)}
    assert calls and calls == results, (action, calls - results)


async def test_session_report_and_variables_against_ocpp_rpc_strict(
    agent_factory: Any, workdir: Path, node_csms: NodeCsms
) -> None:
    csms = node_csms
    try:
        listening = await csms.wait_for(lambda m: m["event"] == "listening")
        assert listening["host"] == "127.0.0.1"
        assert listening["ocppRpc"].startswith("2.2."), listening  # as package-lock.json pins
        agent: AgentProcess = agent_factory(
            csms_url=f"ws://127.0.0.1:{listening['port']}/ocpp",
            cp_id=CP_ID,
            ocpp201={
                "SampledDataCtrlr": {"TxUpdatedInterval": 1},
                "AlignedDataCtrlr": {"Interval": 0},
                "DeviceDataCtrlr": {"ItemsPerMessage:GetReport": ITEMS_PER_REPORT},
            },
        )
        await agent.start()

        # B01, G01: the handshake chose ocpp2.0.1; boot accepted; the EVSE is Available.
        connected = await csms.wait_for(lambda m: m["event"] == "connected")
        assert connected["identity"] == CP_ID
        assert connected["protocol"] == "ocpp2.0.1"
        assert "ocpp2.0.1" in connected["offered"]
        boot = await csms.station("BootNotification")
        assert boot["reason"] == "PowerUp"
        assert boot["chargingStation"]["vendorName"] == "TestVendor"
        assert boot["chargingStation"]["model"] == "TestModel"
        await csms.station(
            "StatusNotification",
            lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Available",
        )

        # C01, E: plug, card, charge with an update every second, unplug.
        mark = csms.mark()
        await agent.sim("plug", "1")
        await csms.station(
            "StatusNotification", lambda p: p["connectorStatus"] == "Occupied", since=mark
        )
        await agent.sim("tag", "CARD-RPC-1")
        authorize = await csms.station("Authorize", since=mark)
        assert authorize["idToken"] == {"idToken": "CARD-RPC-1", "type": "ISO14443"}
        started = await csms.station(
            "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
        )
        tx_id = started["transactionInfo"]["transactionId"]
        assert started["seqNo"] == 0 and started["idToken"]["idToken"] == "CARD-RPC-1"
        await csms.station(
            "TransactionEvent",
            lambda p: p["triggerReason"] == "MeterValuePeriodic" and p["seqNo"] >= 3,
            since=mark,
        )
        await agent.sim("unplug", "1")
        ended_call = await csms.station_call(
            "TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark
        )
        ended = ended_call["payload"]
        assert ended["transactionInfo"]["transactionId"] == tx_id
        assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert (await csms.answered(ended_call))["type"] == "CALLRESULT"
        available = await csms.station_call(
            "StatusNotification",
            lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Available",
            since=mark,
        )
        await csms.answered(available)  # so that every CALL so far has its answer logged
        events = csms.payloads("TransactionEvent")
        assert {e["transactionInfo"]["transactionId"] for e in events} == {tx_id}
        assert [e["seqNo"] for e in events] == list(range(len(events)))
        kinds = [e["eventType"] for e in events]
        assert kinds[0] == "Started" and kinds[-1] == "Ended"
        assert set(kinds[1:-1]) == {"Updated"} and len(kinds) >= 5
        for action in ("BootNotification", "StatusNotification", "Authorize", "TransactionEvent"):
            _answered(csms, "in", action)
        assert csms.problems() == []

        # B06: the CSMS reads variables, one of them on a component the station lacks.
        reply = await csms.call(
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    },
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                    },
                    {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Enabled"}},
                ]
            },
        )
        assert reply["event"] == "reply", reply
        results = reply["result"]["getVariableResult"]
        assert [(r["attributeStatus"], r.get("attributeValue")) for r in results] == [
            ("Accepted", str(HEARTBEAT_S)),
            ("Accepted", "1"),
            ("UnknownComponent", None),
        ]

        # B07: the full inventory arrives in NotifyReport parts within ItemsPerMessage.
        mark = csms.mark()
        reply = await csms.call(
            "GetBaseReport", {"requestId": REPORT_ID, "reportBase": "FullInventory"}
        )
        assert reply["event"] == "reply" and reply["result"]["status"] == "Accepted", reply
        last = await csms.station_call(
            "NotifyReport", lambda p: p["requestId"] == REPORT_ID and not p["tbc"], since=mark
        )
        assert (await csms.answered(last))["type"] == "CALLRESULT"
        parts = [p for p in csms.payloads("NotifyReport") if p["requestId"] == REPORT_ID]
        assert [p["seqNo"] for p in parts] == list(range(len(parts)))
        assert [p["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
        assert len(parts) >= 2
        assert all(1 <= len(p["reportData"]) <= ITEMS_PER_REPORT for p in parts)
        reported = {
            (d["component"]["name"], d["variable"]["name"]) for p in parts for d in p["reportData"]
        }
        assert ("OCPPCommCtrlr", "HeartbeatInterval") in reported
        assert ("SampledDataCtrlr", "TxUpdatedInterval") in reported
        _answered(csms, "in", "NotifyReport")
        _answered(csms, "out", "GetVariables")
        _answered(csms, "out", "GetBaseReport")

        # Nothing failed strict validation either way, no CALLERROR crossed the wire, and
        # every CALL both ways was answered.
        assert csms.problems() == []
        for direction in ("in", "out"):
            back = "out" if direction == "in" else "in"
            calls = {m["id"] for m in csms.frames(direction, "CALL")}
            assert calls == {m["id"] for m in csms.frames(back, "CALLRESULT")}, direction
        assert await agent.stop() == 0
    except BaseException:
        print(f"----- ocpp-rpc CSMS output (last lines) -----\n{csms.tail(200)}")
        raise
