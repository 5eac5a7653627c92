"""``cpagent restart --when-idle`` and ``cpagent prepare-upgrade`` against the real agent.

The restart is what a package upgrade asks for: the agent keeps serving a running session
and re-executes itself (same PID, code from disk) once no transaction runs, or at the
deadline ``[control] restart_max_wait_s``. Every wait is bounded and event-driven (frames
the loopback CSMS receives, ``cpagent status``); the re-execution is seen on the wire as a
second BootNotification from a process whose PID never changed.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from cpagent.protocol.v16.schemas import SCHEMA_DIR
from cpagent.testing import LoopbackCsms
from tests.integration.conftest import AgentProcess, run_cli
from tests.integration.test_session import (
    AgentFactory,
    booted,
    call_times,
    connector,
    start_session,
)

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


async def restart(agent: AgentProcess, *extra: str) -> tuple[int, str, str]:
    result = await run_cli("restart", "--when-idle", *extra, "--config", str(agent.config_path))
    return result.returncode, result.stdout, result.stderr


def open_fds(pid: int) -> list[str]:
    """What each descriptor of the process points at, sockets and pipes by kind only."""
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        out.append(re.sub(r"\[\d+\]$", "", target))
    return sorted(out)


async def test_an_idle_agent_restarts_at_once_in_the_same_process(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    await agent.wait_status(lambda s: s["csms"]["connected"] and s["queue"]["depth"] == 0)
    fds_before = open_fds(pid)
    mark = csms.mark()

    code, out, err = await restart(agent, "--reason", "upgrade to 9.9\nforged line")
    assert (code, out, err) == (0, "restarting now (no transaction is running)\n", "")

    boot = await csms.wait_for("BootNotification", since=mark)
    assert boot["chargePointVendor"] == "TestVendor"
    await booted(csms, 1, since=mark)
    assert agent.proc.returncode is None  # the same process, re-executed
    state = await agent.wait_status(lambda s: s["csms"]["connected"] and s["queue"]["depth"] == 0)
    assert state["restart"] is None
    assert connector(state, 1)["status"] == "Available"
    log = agent.log()
    assert "restart requested: upgrade to 9.9\\nforged line" in log  # one line, escaped
    assert "restarting now: no transaction is running" in log
    assert log.count(" up: ws://") == 2
    assert "STOPPING" not in log and "Traceback" not in log
    # Nothing the first image had open (control socket connections, the old database
    # handles, the old websocket) is left over in the second.
    assert open_fds(pid) == fds_before
    assert await agent.stop() == 0


async def test_a_running_session_is_kept_until_it_ends_then_the_agent_restarts(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory(ocpp16={"MeterValueSampleInterval": 1})
    await agent.start()
    await booted(csms, 1)
    assert agent.proc is not None
    pid = agent.proc.pid
    start = await start_session(agent, csms, "OVERNIGHT")
    state = await agent.wait_status(lambda s: connector(s, 1)["transaction"]["id"] is not None)
    tx_id = connector(state, 1)["transaction"]["id"]

    mark = csms.mark()
    code, out, _ = await restart(agent, "--reason", "cpagent 9.9 installed")
    assert code == 0
    assert re.fullmatch(
        rf"restart pending: waiting for the transaction on connector 1 to end "
        rf"\(at most until {ISO}\)\n",
        out,
    ), out
    state = await agent.status()
    assert state["restart"]["reason"] == "cpagent 9.9 installed"
    assert state["restart"]["waiting_for"] == [1]
    assert re.fullmatch(ISO, state["restart"]["requested_at"])
    deadline = state["restart"]["deadline"]
    assert deadline > state["restart"]["requested_at"]
    text = await run_cli("status", "--config", str(agent.config_path))
    assert re.search(
        rf"^restart pending: cpagent 9\.9 installed; waiting for connector 1 "
        rf"\(requested {ISO}, at most until {deadline}\)$",
        text.stdout,
        re.MULTILINE,
    ), text.stdout

    # The session goes on: meter values on schedule, no StopTransaction, no new boot.
    since = mark
    for _ in range(3):
        since = (await csms.wait_for_message("MeterValues", since=since)).index + 1
    times = [t for t in call_times(csms, "MeterValues")][-3:]
    assert all(0.5 <= b - a <= 2.5 for a, b in itertools.pairwise(times)), times
    assert [r.action for r in csms.messages(since=mark)] == ["MeterValues"] * (since - mark)

    # Asking again changes the reason, not the deadline.
    code, out, _ = await restart(agent, "--reason", "cpagent 9.9.1 installed")
    assert code == 0 and out.startswith("restart already pending since "), out
    state = await agent.status()
    assert state["restart"]["reason"] == "cpagent 9.9.1 installed"
    assert state["restart"]["deadline"] == deadline

    # Offline, the session's last meter values and its StopTransaction are queued; the
    # restart happens with them in the store and they are delivered after it, in order.
    await agent.sim("network", "down")
    await csms.wait_disconnected("CP001")
    await agent.wait_status(lambda s: s["queue"]["depth"] >= 2)
    offline = csms.mark()
    await agent.sim("unplug", "1")

    boot = await csms.wait_for_message("BootNotification", since=offline)
    assert agent.proc.returncode is None and agent.proc.pid == pid
    stop = await csms.wait_for_message("StopTransaction", since=offline)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0 and s["csms"]["connected"])
    after = csms.messages(since=offline)
    assert boot.index < stop.index
    durable = [r for r in after if r.action in ("MeterValues", "StopTransaction")]
    assert durable[-1] is stop and len(durable) >= 3
    assert all(r.payload["transactionId"] == tx_id for r in durable)
    stamps = [r.payload["meterValue"][0]["timestamp"] for r in durable[:-1]]
    stamps.append(stop.payload["timestamp"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    every = csms.messages(since=mark)
    assert len({r.unique_id for r in every}) == len(every)  # each delivered exactly once
    assert [r.action for r in every].count("StopTransaction") == 1
    assert stop.payload["reason"] == "EVDisconnected"
    assert stop.payload["meterStop"] > start["meterStart"]
    log = agent.log()
    assert "restarting now: the last transaction has ended" in log
    assert "restart requested again: cpagent 9.9.1 installed" in log


async def test_a_session_still_running_at_the_deadline_is_ended_as_on_sigterm(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = agent_factory()
    agent.tables["control"]["restart_max_wait_s"] = 2
    agent.write()
    await agent.start()
    await booted(csms, 1)
    await start_session(agent, csms, "TOO-LONG")
    mark = csms.mark()

    code, out, _ = await restart(agent)
    assert code == 0 and out.startswith("restart pending: waiting for the transaction on"), out
    stop = await csms.wait_for_message("StopTransaction", since=mark)
    boot = await csms.wait_for_message("BootNotification", since=mark)
    assert stop.index < boot.index
    assert stop.payload["reason"] == "Reboot"
    assert agent.proc is not None and agent.proc.returncode is None
    state = await agent.wait_status(lambda s: s["csms"]["connected"])
    assert state["restart"] is None and connector(state, 1)["transaction"] is None
    assert re.search(
        r"WARNING .*restarting now although connector\(s\) 1 still have a transaction: "
        r"the restart has waited restart_max_wait_s \(2 s\)",
        agent.log(),
    ), agent.log()


async def test_restart_and_prepare_upgrade_without_an_agent_fail_clearly(
    agent_factory: AgentFactory,
) -> None:
    agent = agent_factory()  # configured, never started
    socket = agent.tables["control"]["socket"]
    for command in (["restart", "--when-idle"], ["prepare-upgrade"]):
        result = await run_cli(*command, "--config", str(agent.config_path))
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"cpagent: no agent answers on {socket} (is cpagent running?)\n"


async def test_prepare_upgrade_loads_everything_and_the_agent_keeps_working(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    result = await run_cli("prepare-upgrade", "--config", str(agent.config_path), timeout=150)
    assert result.returncode == 0, result
    match = re.fullmatch(
        r"prepared for the upgrade: loaded (\d+) cpagent modules, (\d+) library modules "
        r"and (\d+) OCPP schemas in [\d.]+ s\n",
        result.stdout,
    )
    assert match, result.stdout
    cpagent_modules = sorted(Path(__file__).parents[2].joinpath("src/cpagent").rglob("*.py"))
    expected = [p for p in cpagent_modules if "testing" not in p.parts]
    expected = [p for p in expected if p.name not in ("__main__.py", "token_helper.py")]
    # The generated schema validators (make's venv step) come with the schemas, below.
    expected = [p for p in expected if "_validators" not in p.parts]
    assert int(match[1]) == len(expected)
    assert int(match[2]) > 100
    assert int(match[3]) == len(list(SCHEMA_DIR.glob("*.json")))  # every OCPP 1.6 schema

    mark = csms.mark()
    await start_session(agent, csms, "AFTER-PREPARE")
    await agent.sim("unplug", "1")
    stop = await csms.wait_for("StopTransaction", since=mark)
    assert stop["reason"] == "EVDisconnected"
    state = await agent.status()
    assert state["restart"] is None and state["csms"]["connected"]


async def test_a_card_shown_while_the_restart_waits_still_starts_a_session(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """The charger stays usable while a restart waits: a second connector still charges,
    and the restart then waits for both sessions."""
    agent = agent_factory(connectors=2)
    await agent.start()
    await booted(csms, 2)
    await start_session(agent, csms, "FIRST", cid=1)
    code, _, _ = await restart(agent)
    assert code == 0
    await start_session(agent, csms, "SECOND", cid=2)
    state = await agent.status()
    assert state["restart"]["waiting_for"] == [1, 2]
    mark = csms.mark()
    await agent.sim("unplug", "1")
    await csms.wait_for("StopTransaction", since=mark)
    state = await agent.wait_status(lambda s: s["restart"]["waiting_for"] == [2])
    assert [r.action for r in csms.messages("BootNotification", since=mark)] == []
    second = csms.mark()
    await agent.sim("unplug", "2")
    stop = await csms.wait_for_message("StopTransaction", since=second)
    boot = await csms.wait_for_message("BootNotification", since=second)
    assert stop.index < boot.index
    assert agent.proc is not None and agent.proc.returncode is None
