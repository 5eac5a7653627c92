"""Charging sessions of the installed package, and its upgrade while a car charges.

Run with ``CPAGENT_DEB_TEST=1`` as root (``make deb-test`` conditions, see test_deb.py).
The test process runs the loopback CSMS on 127.0.0.1; the package's own ``cpagent run``
runs in a throwaway bookworm chroot that shares the host's loopback and has no systemd
(tests/packaging/chroot_agent.py starts it as cpagent.service would). Everything is
asserted where a user sees it: the frames the CSMS receives, ``cpagent status``, the exit
status and output of apt-get and apply-firmware.

The upgrade tests install a later release made from the newer build with another Python
package version (the agent reports it as its firmware version), so the BootNotification
tells which code runs.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from tests.packaging.chroot_agent import (
    ChrootAgent,
    kill_all_in,
    processes_in,
    run_in,
    scaled,
)
from tests.packaging.debroot import (
    SLOW,
    Chroot,
    Deb,
    Timer,
    deb_test,
    load_version,
    repack_release,
)

SAMPLE_S = 2
"""MeterValueSampleInterval of the test agent."""
ID_TAG = "CARD-DEB-1"
NEW_PY_VERSION = f"{load_version()}+upgraded"


# ----------------------------------------------------------------------------- helpers


def boot_s() -> float:
    """Bound of an agent's start up to its BootNotification (a cold Python in a chroot)."""
    return scaled(60)


def wire_s() -> float:
    """Bound of one step on the wire (a CLI command's effect reaching the CSMS)."""
    return scaled(30)


@pytest.fixture
async def agent_root(debs: tuple[Deb, Deb], chroot: Chroot) -> AsyncIterator[Chroot]:
    """The chroot with the first package installed; every process in it killed after."""
    with Timer(f"install {debs[0].path.name} offline"):
        chroot.dpkg_install(debs[0])
    try:
        yield chroot
    finally:
        kill_all_in(chroot)


def cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def agents_in(root: Chroot) -> list[int]:
    """PIDs of ``cpagent run`` processes in the chroot."""
    found = []
    for pid in processes_in(root):
        args = cmdline(pid)
        if "cpagent" in args and "run" in args:
            found.append(pid)
    return found


def uid_of(pid: int) -> int:
    """The real UID of a process (its /proc status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


async def start_agent(root: Chroot, csms: LoopbackCsms) -> ChrootAgent:
    agent = ChrootAgent(root, csms.url, sample_interval_s=SAMPLE_S)
    with Timer("cpagent run in the chroot, up to its BootNotification"):
        await agent.start()
        try:
            await csms.wait_for("BootNotification", timeout=boot_s())
            await csms.wait_for(
                "StatusNotification", lambda p: p["connectorId"] == 1, timeout=wire_s()
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- agent log\n{agent.tail()}") from None
    return agent


async def start_session(agent: ChrootAgent, csms: LoopbackCsms) -> int:
    """Plug, present a card; the StartTransaction's id once the connector charges."""
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for(
        "StatusNotification", lambda p: p["status"] == "Preparing", since=mark, timeout=wire_s()
    )
    await agent.sim("tag", ID_TAG)
    start = await csms.wait_for(
        "StartTransaction", lambda p: p["idTag"] == ID_TAG, since=mark, timeout=wire_s()
    )
    await csms.wait_for(
        "StatusNotification", lambda p: p["status"] == "Charging", since=mark, timeout=wire_s()
    )
    assert start["connectorId"] == 1
    tx_ids = list(csms.transactions)
    assert len(tx_ids) == 1, csms.transactions
    return tx_ids[0]


async def meter_values(csms: LoopbackCsms, tx_id: int, count: int, *, since: int) -> None:
    """Wait until ``count`` MeterValues of the transaction have arrived after ``since``."""
    mark = since
    for _ in range(count):
        found = await csms.wait_for_message(
            "MeterValues",
            lambda p: p.get("transactionId") == tx_id,
            since=mark,
            timeout=scaled(SAMPLE_S + 20),
        )
        mark = found.index + 1


def sample_times(csms: LoopbackCsms, tx_id: int) -> list[datetime]:
    """The sample timestamps of the transaction's MeterValues, in the order they came."""
    return [
        datetime.fromisoformat(mv["timestamp"].replace("Z", "+00:00"))
        for p in csms.payloads("MeterValues")
        if p.get("transactionId") == tx_id
        for mv in p["meterValue"]
    ]


def energy(payload: dict[str, Any]) -> float:
    (value,) = [
        sv["value"]
        for mv in payload["meterValue"]
        for sv in mv["sampledValue"]
        if sv.get("measurand") == "Energy.Active.Import.Register"
    ]
    return float(value)


def connector(state: dict[str, Any], cid: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in state["connectors"] if c["id"] == cid)
    return found


# --------------------------------------------------------------------- a full session


@deb_test
@pytest.mark.timeout(int(1800 * SLOW))
async def test_a_session_of_the_installed_agent(agent_root: Chroot, csms: LoopbackCsms) -> None:
    root = agent_root
    agent = await start_agent(root, csms)
    boot = csms.payloads("BootNotification")[0]
    assert boot["firmwareVersion"] == load_version()
    assert (boot["chargePointVendor"], boot["chargePointModel"]) == ("TestVendor", "TestModel")
    assert csms.subprotocols == ["ocpp1.6"]
    # As the unit runs it: the service user, /run/cpagent as RuntimeDirectory= makes it.
    assert uid_of(agent.pid) == int(root.sh("id -u cpagent"))
    assert root.stat("/run/cpagent") == "cpagent:cpagent 750"

    with Timer("a session: plug, card, StartTransaction, 2 MeterValues, unplug, Stop"):
        tx_id = await start_session(agent, csms)
        await meter_values(csms, tx_id, 2, since=0)
        text = (await agent.cli("status")).stdout
        assert f"transaction {tx_id} for {ID_TAG}" in text, text
        assert "Charging" in text and "restart pending" not in text, text
        mark = csms.mark()
        await agent.sim("unplug", "1")
        stop = await csms.wait_for("StopTransaction", since=mark, timeout=wire_s())
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "EVDisconnected")
    start = csms.transactions[tx_id]
    values = csms.payloads("MeterValues")
    assert values and all(p["transactionId"] == tx_id for p in values)
    assert start["meterStart"] <= energy(values[0]) <= energy(values[-1]) <= stop["meterStop"]
    assert stop["meterStop"] > start["meterStart"], "the simulated car drew no energy"

    state = await agent.wait_status(
        lambda s: connector(s)["status"] == "Available" and s["queue"]["depth"] == 0,
        "the connector Available and the queue empty",
    )
    assert state["csms"]["connected"] and state["csms"]["registration"] == "Accepted"
    assert state["version"] == load_version()
    assert state.get("restart") is None
    assert len(csms.payloads("StopTransaction")) == 1
    assert agents_in(root) == [agent.pid]

    with Timer("SIGTERM the agent"):
        assert await agent.stop() == 0
    assert processes_in(root) == []


# -------------------------------------------------------------- upgrade during a session


@deb_test
@pytest.mark.timeout(int(2400 * SLOW))
async def test_upgrade_during_a_session_waits_for_its_end(
    debs: tuple[Deb, Deb], agent_root: Chroot, csms: LoopbackCsms, tmp_path: Path
) -> None:
    """apt installs a newer release while a car charges: the session goes on, on the old
    code; the agent restarts into the new version (same PID) once the car has left, and
    the StopTransaction it could not send meanwhile arrives after the restart, once."""
    root = agent_root
    old = load_version()
    newer = repack_release(debs[1], NEW_PY_VERSION, tmp_path)
    agent = await start_agent(root, csms)
    pid = agent.pid
    tx_id = await start_session(agent, csms)
    await meter_values(csms, tx_id, 2, since=0)

    inside = root.copy_in(newer)
    before = csms.mark()
    upgrade_started = time.monotonic()
    with Timer(f"apt-get install {newer.path.name} during the session"):
        result = await run_in(root, "apt-get", "install", "-y", inside, timeout=600)
    upgrade_took = time.monotonic() - upgrade_started
    sent_during_upgrade = [
        r
        for r in csms.messages("MeterValues", since=before)
        if r.payload.get("transactionId") == tx_id
    ]
    assert root.status() == f"install ok installed {newer.version}"
    assert "restart pending" in result.stdout, result.output[-3000:]
    assert "prepared for the upgrade" in result.stdout, result.output[-3000:]
    # Served while apt and dpkg ran, not only queued and sent afterwards.
    assert len(sent_during_upgrade) >= upgrade_took / SAMPLE_S / 2 - 1, sent_during_upgrade

    # Meanwhile: the old code serves the session; status shows the pending restart.
    state = await agent.status()
    assert state["version"] == old
    assert state["restart"] is not None, state
    assert f"cpagent {newer.version} installed" in state["restart"]["reason"], state["restart"]
    assert connector(state)["status"] == "Charging"
    text = (await agent.cli("status")).stdout
    assert "restart pending: " in text, text
    await meter_values(csms, tx_id, 2, since=csms.mark())
    assert csms.payloads("StopTransaction") == []
    assert csms.payloads("BootNotification", since=before) == []
    assert csms.payloads("StartTransaction") == [csms.transactions[tx_id]]
    during = [
        r
        for r in csms.messages("MeterValues", since=before)
        if r.payload.get("transactionId") == tx_id
    ]
    times = sample_times(csms, tx_id)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    bound = SAMPLE_S * 2 + scaled(3)
    print(
        f"\n[deb-test] upgrade took {upgrade_took:.1f} s; {len(times)} samples, "
        f"gaps {min(gaps):.2f}..{max(gaps):.2f} s (bound {bound:.1f} s), "
        f"{len(sent_during_upgrade)} MeterValues received during it, {len(during)} up to now"
    )
    assert max(gaps) <= bound, gaps
    assert sorted(times) == times
    assert agents_in(root) == [pid]

    # The car leaves while the CSMS is unreachable: the StopTransaction waits in the queue
    # across the restart.
    port = csms.port
    await csms.stop()
    await agent.wait_status(lambda s: not s["csms"]["connected"], "the CSMS connection lost")
    with Timer("unplug: the agent restarts into the new version (offline)"):
        await agent.sim("unplug", "1")
        state = await agent.wait_status(
            lambda s: s["version"] == NEW_PY_VERSION, "the new version running", timeout=90
        )
    assert state["restart"] is None
    assert state["queue"]["depth"] >= 1, state["queue"]
    assert agent.running() and agents_in(root) == [pid], "not the same process"

    async with LoopbackCsms(port=port) as again:
        boot = await again.wait_for("BootNotification", timeout=boot_s())
        assert boot["firmwareVersion"] == NEW_PY_VERSION
        stop = await again.wait_for("StopTransaction", timeout=wire_s())
        assert (stop["transactionId"], stop["reason"]) == (tx_id, "EVDisconnected")
        assert stop["meterStop"] >= energy(csms.payloads("MeterValues")[-1])
        await agent.wait_status(lambda s: s["queue"]["depth"] == 0, "the queue delivered")
        assert again.received[0].action == "BootNotification"
        assert len(again.payloads("StopTransaction")) == 1
        assert csms.payloads("StopTransaction") == []
        assert again.payloads("StartTransaction") == []
        assert again.schema_errors == []
    assert agents_in(root) == [pid]


@deb_test
@pytest.mark.timeout(int(1800 * SLOW))
@pytest.mark.parametrize("installer", ["apt-get", "apply-firmware"])
async def test_upgrade_of_an_idle_charger_restarts_at_once(
    debs: tuple[Deb, Deb], agent_root: Chroot, csms: LoopbackCsms, tmp_path: Path, installer: str
) -> None:
    """No transaction: the upgrade (apt, or the OCPP firmware installer's dpkg as root
    without a terminal) has the agent restart into the new version at once."""
    root = agent_root
    newer = repack_release(debs[1], NEW_PY_VERSION, tmp_path)
    agent = await start_agent(root, csms)
    pid = agent.pid
    mark = csms.mark()
    with Timer(f"{installer} {newer.path.name}, idle"):
        if installer == "apt-get":
            result = await run_in(
                root, "apt-get", "install", "-y", root.copy_in(newer), timeout=600
            )
            assert "restarting now" in result.stdout, result.output[-3000:]
        else:
            spool = "/var/lib/cpagent/firmware-spool"
            shutil.copy2(newer.path, root.path(f"{spool}/pending.deb"))
            root.run("chown", "cpagent:cpagent", f"{spool}/pending.deb")
            result = await run_in(root, "/usr/lib/cpagent/apply-firmware", timeout=600)
            assert root.path(f"{spool}/result").read_text().strip() == "0"
        boot = await csms.wait_for("BootNotification", since=mark, timeout=boot_s())
    assert root.status() == f"install ok installed {newer.version}"
    assert boot["firmwareVersion"] == NEW_PY_VERSION
    state = await agent.wait_status(
        lambda s: s["csms"]["registration"] == "Accepted", "registered after the restart"
    )
    assert state["version"] == NEW_PY_VERSION and state["restart"] is None
    assert agents_in(root) == [pid]
    assert csms.payloads("StopTransaction") == []


# ------------------------------------------------------ what the scripts ask of systemd

SYSTEMD_STANDIN = """#!/bin/sh
# deb-test: records what the maintainer scripts ask of systemd; the unit counts as active.
echo "$(basename "$0") $*" >> /var/log/systemd-calls
exit 0
"""
UNIT_ACTIONS = ("start", "stop", "restart", "try-restart", "reload-or-restart", "kill")


@deb_test
@pytest.mark.timeout(int(1800 * SLOW))
async def test_under_systemd_an_upgrade_never_stops_or_restarts_the_unit_itself(
    debs: tuple[Deb, Deb], chroot: Chroot, csms: LoopbackCsms, tmp_path: Path
) -> None:
    """With systemd running (/run/systemd/system; stand-ins for systemctl and
    deb-systemd-invoke record the calls): the unit is started on the first install and
    stopped on remove; an upgrade stops and restarts nothing while the agent answers, and
    falls back to try-restart when it does not (a hung agent: the unit is active)."""
    first, second = debs
    root = chroot
    newer = repack_release(second, NEW_PY_VERSION, tmp_path, version=f"{first.version}+debtest3")
    root.path("/run/systemd/system").mkdir(parents=True)
    for tool in ("systemctl", "deb-systemd-invoke"):
        standin = root.path(f"/usr/local/bin/{tool}")
        standin.write_text(SYSTEMD_STANDIN)
        standin.chmod(0o755)
    calls_file = root.path("/var/log/systemd-calls")

    def calls() -> list[str]:
        """What was asked of cpagent.service's state since the last call (not the
        enable/preset bookkeeping)."""
        made = calls_file.read_text().splitlines() if calls_file.exists() else []
        calls_file.write_text("")
        return [c for c in made if any(f" {a} cpagent.service" in c for a in UNIT_ACTIONS)]

    with Timer(f"install {first.path.name} (systemd stand-ins)"):
        root.dpkg_install(first)
    assert calls() == ["deb-systemd-invoke start cpagent.service"]

    with Timer(f"upgrade to {second.version}, no agent answering"):
        out = root.run("dpkg", "-i", root.copy_in(second), timeout=600).stdout
    assert "restart request not taken" in out, out
    assert calls() == [
        "deb-systemd-invoke start cpagent.service",  # the start of an enabled unit: a no-op
        "deb-systemd-invoke try-restart cpagent.service",  # the fallback
    ]

    agent = await start_agent(root, csms)
    try:
        mark = csms.mark()
        with Timer(f"upgrade to {newer.version}, the agent answering"):
            result = await run_in(root, "dpkg", "-i", root.copy_in(newer), timeout=600)
            boot = await csms.wait_for("BootNotification", since=mark, timeout=boot_s())
        assert "restarting now" in result.stdout, result.output[-3000:]
        assert "prepared for the upgrade" in result.stdout, result.output[-3000:]
        assert boot["firmwareVersion"] == NEW_PY_VERSION
        assert calls() == ["deb-systemd-invoke start cpagent.service"]
        assert agents_in(root) == [agent.pid]
    finally:
        agent.kill()

    with Timer("remove"):
        root.run("dpkg", "--remove", "cpagent")
    assert "deb-systemd-invoke stop cpagent.service" in calls()


if __name__ == "__main__":  # pragma: no cover
    print(f"slowdown {SLOW}")
    sys.exit(pytest.main([__file__, "-p", "no:xdist", "-s", *sys.argv[1:]]))
