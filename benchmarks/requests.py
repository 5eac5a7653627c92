"""How fast the agent answers CSMS requests, and how fast a remote start reaches the CSMS.

Starts the real ``cpagent run`` (sim HAL, 2 connectors) against the loopback CSMS and times,
on the CSMS side, from the moment a CALL frame is handed to the websocket to the moment the
agent's frame comes out of it (``LoopbackCsms.on_frame``: called with the encoded frame just
before ``ws.send``, and with each received frame before the CSMS parses or validates it, so
the CSMS's own schema checks are outside the figures). Calls run one at a time, each after
the previous answer; everything the agent sends in between is answered as usual. What the
LoopbackCsms adds inside the timed span (recording the frame, waking its waiters before
``ws.send``) is small: a bare websockets server timing around ``send``/``recv`` measured
0.32-0.35 ms for GetConfiguration of all keys where this script measured 0.35-0.39 ms,
interleaved on the same machine.

(a) Requests, ``--calls`` timed calls each after ``--warmup`` untimed ones; median and p99:
    1.6: GetConfiguration of all keys, of one key, ChangeConfiguration (accepted: written to
    the store before the answer), TriggerMessage Heartbeat, DataTransfer, GetLocalListVersion.
    2.0.1: GetVariables of every station variable (up to ItemsPerMessage), of one,
    SetVariables (accepted: written to the store), TriggerMessage Heartbeat, DataTransfer,
    GetLocalListVersion.
    Each also gives the answer time of its first call, warm-up included (``..._first_ms``):
    for the first figure of an action, what the agent's first request of that action costs
    (its schemas' validators loaded, or compiled, then).
(b) Remote start, with the EV plugged into connector 1 first (``cpagent sim plug 1``):
    1.6: RemoteStartTransaction sent -> StartTransaction.req received, ``--rounds`` times,
    each session stopped by RemoteStopTransaction before the next.
    2.0.1: RequestStartTransaction sent -> TransactionEvent received (with the EV plugged
    and the factory TxStartPoint PowerPathClosed: eventType Started), AuthorizeRemoteStart
    set false first (as 1.6's AuthorizeRemoteTxRequests is by default), stopped by
    RequestStopTransaction.
(c) The floor: a websocket ping's round trip to the agent (answered by the websockets
    library, no OCPP code), what no request can go below.

    python benchmarks/requests.py [--calls 500] [--warmup 50] [--rounds 50]
                                  [--ocpp 1.6|2.0.1] [--dir /tmp] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchconfig import CPAGENT, add_ocpp_option, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cpagent.testing import Frame, LoopbackCsms

CP_ID = "REQ1"
ANSWER_MEDIAN_GOAL_MS = 0.5
ANSWER_P99_GOAL_MS = 1.5
REMOTE_START_GOAL_MS = 2.5


class Clock:
    """When each CALL left the CSMS and when the agent's answer (or CALL) came in, by frame,
    stamped with ``perf_counter`` in the CSMS's frame hook before anything parses them."""

    def __init__(self) -> None:
        self.out: list[tuple[float, str]] = []
        self.into: list[tuple[float, str]] = []

    def __call__(self, frame: Frame) -> None:
        at = time.perf_counter()
        (self.out if frame.direction == "out" else self.into).append((at, frame.raw))

    def clear(self) -> None:
        self.out.clear()
        self.into.clear()

    def sent(self, action: str) -> tuple[float, str]:
        """When the CALL of ``action`` left, and its id."""
        for at, raw in self.out:
            message = json.loads(raw)
            if message[0] == 2 and message[2] == action:
                return at, message[1]
        raise AssertionError(f"no {action} CALL sent")

    def answered(self, unique_id: str) -> float:
        for at, raw in self.into:
            message = json.loads(raw)
            if message[0] in (3, 4) and message[1] == unique_id:
                return at
        raise AssertionError(f"no answer to {unique_id}")

    def called(self, action: str, where: Callable[[dict[str, Any]], bool]) -> float:
        """When the agent's first CALL of ``action`` matching ``where`` came in."""
        for at, raw in self.into:
            message = json.loads(raw)
            if message[0] == 2 and message[2] == action and where(message[3]):
                return at
        raise AssertionError(f"no {action} CALL received")


def summary(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    p99 = ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]
    return {"median": statistics.median(ordered), "p99": p99, "n": len(ordered)}


async def time_call(
    csms: LoopbackCsms, clock: Clock, action: str, payload: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """One CALL; its answer time in ms and its answer."""
    clock.clear()
    reply = await csms.call(action, payload)
    sent, unique_id = clock.sent(action)
    return (clock.answered(unique_id) - sent) * 1000, reply


async def time_request(
    csms: LoopbackCsms,
    clock: Clock,
    action: str,
    payload: dict[str, Any],
    *,
    calls: int,
    warmup: int,
    check: Callable[[dict[str, Any]], None],
    settle: Callable[[int], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """The summary of the ``calls`` timed calls, with ``first``: the answer time of the very
    first call, warm-up included (for the first figure of an action, what the agent's first
    request of that action costs: loading its schemas' validators)."""
    times: list[float] = []
    first = 0.0
    for i in range(warmup + calls):
        mark = csms.mark()
        ms, reply = await time_call(csms, clock, action, payload)
        check(reply)
        if settle is not None:
            await settle(mark)
        if i == 0:
            first = ms
        if i >= warmup:
            times.append(ms)
    return {**summary(times), "first": first}


def expect(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def check(reply: dict[str, Any]) -> None:
        for key, value in fields.items():
            assert reply.get(key) == value, (key, reply)

    return check


async def requests_both(
    csms: LoopbackCsms, clock: Clock, data_transfer_status: str, common: dict[str, int]
) -> dict[str, dict[str, float]]:
    """The requests both versions answer alike: TriggerMessage Heartbeat (timed to the
    answer, the Heartbeat awaited after it), DataTransfer (answered ``data_transfer_status``)
    and GetLocalListVersion."""

    async def heartbeat_answered(mark: int) -> None:
        await csms.wait_for("Heartbeat", since=mark)

    return {
        "triggermessage_heartbeat": await time_request(
            csms,
            clock,
            "TriggerMessage",
            {"requestedMessage": "Heartbeat"},
            check=expect(status="Accepted"),
            settle=heartbeat_answered,
            **common,
        ),
        "datatransfer": await time_request(
            csms,
            clock,
            "DataTransfer",
            {"vendorId": "cpagent", "messageId": "version"},
            check=expect(status=data_transfer_status),
            **common,
        ),
        "getlocallistversion": await time_request(
            csms, clock, "GetLocalListVersion", {}, check=lambda r: None, **common
        ),
    }


# ------------------------------------------------------------------------- 1.6


async def requests_16(csms: LoopbackCsms, clock: Clock, args: Any) -> dict[str, dict[str, float]]:
    _, all_keys = await time_call(csms, clock, "GetConfiguration", {})
    count = len(all_keys["configurationKey"])

    def all_of_them(reply: dict[str, Any]) -> None:
        assert len(reply["configurationKey"]) == count and "unknownKey" not in reply, reply

    def one_key(reply: dict[str, Any]) -> None:
        assert [k["key"] for k in reply["configurationKey"]] == ["HeartbeatInterval"], reply

    common = {"calls": args.calls, "warmup": args.warmup}
    figures = {
        "getconfiguration_all": await time_request(
            csms, clock, "GetConfiguration", {}, check=all_of_them, **common
        ),
        "getconfiguration_one": await time_request(
            csms,
            clock,
            "GetConfiguration",
            {"key": ["HeartbeatInterval"]},
            check=one_key,
            **common,
        ),
        "changeconfiguration": await time_request(
            csms,
            clock,
            "ChangeConfiguration",
            {"key": "MeterValueSampleInterval", "value": "60"},
            check=expect(status="Accepted"),
            **common,
        ),
        **await requests_both(csms, clock, "Accepted", common),
    }
    print(f"    GetConfiguration of all keys answers {count} keys")
    return figures


async def remote_start_16(csms: LoopbackCsms, clock: Clock, rounds: int) -> dict[str, float]:
    times: list[float] = []
    for i in range(rounds + 2):
        mark = csms.mark()
        clock.clear()
        tag = f"REMOTE-{i}"
        answer = await csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": tag})
        assert answer == {"status": "Accepted"}, answer
        start = await csms.wait_for_message("StartTransaction", since=mark)
        sent, _ = clock.sent("RemoteStartTransaction")
        arrived = clock.called("StartTransaction", lambda p, tag=tag: p["idTag"] == tag)
        if i >= 2:
            times.append((arrived - sent) * 1000)
        await csms.wait_for(
            "StatusNotification", lambda p: p["status"] == "Charging", since=start.index
        )
        tx_id = next(t for t, p in csms.transactions.items() if p["idTag"] == tag)
        mark = csms.mark()
        answer = await csms.call("RemoteStopTransaction", {"transactionId": tx_id})
        assert answer == {"status": "Accepted"}, answer
        await csms.wait_for("StopTransaction", since=mark)
        await csms.wait_for("StatusNotification", lambda p: p["status"] == "Finishing", since=mark)
    return summary(times)


# ------------------------------------------------------------------------ 2.0.1


def station_variables() -> list[dict[str, Any]]:
    """GetVariableData for every station-wide variable without instances, up to the factory
    ItemsPerMessage (50)."""
    from cpagent.protocol.v201.catalogue import CATALOGUE, Scope

    data: list[dict[str, Any]] = []
    for component in CATALOGUE.values():
        if component.scope is not Scope.STATION or not component.implemented:
            continue
        for variable in component.variables.values():
            if not variable.instances:
                data.append(
                    {"component": {"name": component.name}, "variable": {"name": variable.name}}
                )
    return data[:50]


async def requests_201(csms: LoopbackCsms, clock: Clock, args: Any) -> dict[str, dict[str, float]]:
    many = station_variables()

    def all_of_them(reply: dict[str, Any]) -> None:
        results = reply["getVariableResult"]
        assert len(results) == len(many), reply
        assert all(r["attributeStatus"] == "Accepted" for r in results), reply

    def one(reply: dict[str, Any]) -> None:
        assert reply["getVariableResult"][0]["attributeStatus"] == "Accepted", reply

    def set_accepted(reply: dict[str, Any]) -> None:
        assert reply["setVariableResult"][0]["attributeStatus"] == "Accepted", reply

    heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    common = {"calls": args.calls, "warmup": args.warmup}
    figures = {
        "getvariables_all": await time_request(
            csms, clock, "GetVariables", {"getVariableData": many}, check=all_of_them, **common
        ),
        "getvariables_one": await time_request(
            csms, clock, "GetVariables", {"getVariableData": [heartbeat]}, check=one, **common
        ),
        "setvariables": await time_request(
            csms,
            clock,
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                        "attributeValue": "60",
                    }
                ]
            },
            check=set_accepted,
            **common,
        ),
        **await requests_both(csms, clock, "UnknownMessageId", common),
    }
    print(f"    GetVariables of all asks for {len(many)} variables")
    return figures


async def remote_start_201(csms: LoopbackCsms, clock: Clock, rounds: int) -> dict[str, float]:
    no_authorize = {
        "setVariableData": [
            {
                "component": {"name": "AuthCtrlr"},
                "variable": {"name": "AuthorizeRemoteStart"},
                "attributeValue": "false",
            }
        ]
    }
    reply = await csms.call("SetVariables", no_authorize)
    assert reply["setVariableResult"][0]["attributeStatus"] == "Accepted", reply
    times: list[float] = []
    kinds: set[str] = set()
    for i in range(rounds + 2):
        mark = csms.mark()
        clock.clear()
        request = {
            "idToken": {"idToken": f"REMOTE-{i}", "type": "Central"},
            "remoteStartId": i + 1,
            "evseId": 1,
        }
        answer = await csms.call("RequestStartTransaction", request)
        assert answer["status"] == "Accepted", answer
        event = await csms.wait_for("TransactionEvent", since=mark)
        kinds.add(event["eventType"])
        sent, _ = clock.sent("RequestStartTransaction")
        arrived = clock.called("TransactionEvent", lambda p: True)
        if i >= 2:
            times.append((arrived - sent) * 1000)
        tx_id = event["transactionInfo"]["transactionId"]
        mark = csms.mark()
        answer = await csms.call("RequestStopTransaction", {"transactionId": tx_id})
        assert answer["status"] == "Accepted", answer
        await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark)
    print(f"    first TransactionEvent after the request: eventType {sorted(kinds)}")
    return summary(times)


# ---------------------------------------------------------------------------- run


async def ping_floor(csms: LoopbackCsms, calls: int) -> dict[str, float]:
    ws = csms.connections[CP_ID]
    times: list[float] = []
    for _ in range(calls):
        began = time.perf_counter()
        await (await ws.ping())
        times.append((time.perf_counter() - began) * 1000)
    return summary(times)


async def sim(config: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        CPAGENT, "sim", *args, "--config", str(config), stdout=asyncio.subprocess.DEVNULL
    )
    if await asyncio.wait_for(proc.wait(), 60) != 0:
        raise SystemExit(f"cpagent sim {' '.join(args)} failed")


async def run(args: Any) -> dict[str, dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="cpa-requests-", dir=args.dir))
    proc: asyncio.subprocess.Process | None = None
    clock = Clock()
    try:
        async with LoopbackCsms(on_frame=clock) as csms:
            config = write_config(
                workdir, csms.url, cp_id=CP_ID, connectors=2, csms={}, ocpp=args.ocpp
            )
            log = (workdir / "agent.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                CPAGENT, "run", "--config", str(config), stdout=log, stderr=log
            )
            log.close()
            await csms.wait_connected(CP_ID, timeout=60)
            status = "StatusNotification"
            key = "connectorId" if args.ocpp == "1.6" else "evseId"
            await csms.wait_for(status, lambda p: p.get(key) == 2, timeout=60)
            figures: dict[str, dict[str, float]] = {}
            figures["ping"] = await ping_floor(csms, args.calls)
            if args.ocpp == "1.6":
                figures.update(await requests_16(csms, clock, args))
            else:
                figures.update(await requests_201(csms, clock, args))
            mark = csms.mark()
            await sim(config, "plug", "1")
            if args.ocpp == "1.6":
                await csms.wait_for(status, lambda p: p["status"] == "Preparing", since=mark)
                figures["remote_start"] = await remote_start_16(csms, clock, args.rounds)
            else:
                await csms.wait_for(
                    status, lambda p: p["connectorStatus"] == "Occupied", since=mark
                )
                figures["remote_start"] = await remote_start_201(csms, clock, args.rounds)
            assert csms.schema_errors == [], csms.schema_errors[:3]
            assert csms.call_errors == [], csms.call_errors[:3]
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        return figures
    except BaseException:
        text = (workdir / "agent.log").read_text(errors="replace")[-3000:]
        print(text, file=sys.stderr)
        raise
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls per request")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls before them")
    parser.add_argument("--rounds", type=int, default=50, help="timed remote starts")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the data_dir goes")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    add_ocpp_option(parser)
    args = parser.parse_args()

    print(f"OCPP {args.ocpp}, sim HAL, 2 connectors, loopback; CSMS-side frame times")
    figures = asyncio.run(run(args))
    result: dict[str, float] = {}
    for name, figure in figures.items():
        result[f"{name}_median_ms"] = round(figure["median"], 4)
        result[f"{name}_p99_ms"] = round(figure["p99"], 4)
        if "first" in figure:
            result[f"{name}_first_ms"] = round(figure["first"], 4)
    for name, figure in figures.items():
        what = {
            "ping": "websocket ping round trip (the floor)",
            "remote_start": (
                "RemoteStartTransaction -> StartTransaction.req"
                if args.ocpp == "1.6"
                else "RequestStartTransaction -> TransactionEvent"
            ),
        }.get(name, name)
        goal = ""
        if name == "remote_start":
            ok = figure["median"] <= REMOTE_START_GOAL_MS
            goal = f"  (goal median <= {REMOTE_START_GOAL_MS} ms: {'ok' if ok else 'MISSED'})"
        elif name != "ping":
            ok = figure["median"] <= ANSWER_MEDIAN_GOAL_MS
            goal = f"  (goal median <= {ANSWER_MEDIAN_GOAL_MS} ms: {'ok' if ok else 'MISSED'}"
            if name in ("getconfiguration_all", "getvariables_all"):
                ok_p99 = figure["p99"] <= ANSWER_P99_GOAL_MS
                goal += f", p99 <= {ANSWER_P99_GOAL_MS} ms: {'ok' if ok_p99 else 'MISSED'}"
            goal += ")"
        print(
            f"    {what:<48} median {figure['median']:7.3f} ms  p99 {figure['p99']:7.3f} ms"
            f"  (n={int(figure['n'])}){goal}"
        )
        if "first" in figure:
            print(f"    {'':<48} first call {figure['first']:7.3f} ms")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
