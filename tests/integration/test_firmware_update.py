"""UpdateFirmware end to end: the real agent, loopback HTTP and FTP servers, a test installer.

The installer is a small shell script standing in for ``install-firmware``: it copies the
file it is given next to itself (so the test can compare the bytes), then does what the
test asks through files in its directory: exit with a code, hang, or restart the agent
the way a ``.deb`` upgrade did (SIGTERM, then a new start) or does now (``cpagent restart
--when-idle``: the agent re-executes itself).
"""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import CsmsCallError
from cpagent.testing.fileservers import FtpFileServer, HttpBehaviour, HttpFileServer
from cpagent.timeutil import iso, utcnow
from tests.integration.conftest import CPAGENT, AgentProcess
from tests.integration.test_session import AgentFactory, booted, start_session

FIRMWARE = os.urandom(3 * 2**19 + 12345)  # 1.5 MB: streamed in many chunks, under the cap
SUCCESS = ["Downloading", "Downloaded", "Installing", "Installed"]

INSTALLER = """#!/bin/sh
dir="$(dirname "$0")"
cp "$1" "$dir/installed.bin"
echo "installing $(basename "$1")"
if [ -f "$dir/restart" ]; then kill -TERM "$PPID"; sleep 30; fi
if [ -f "$dir/hang" ]; then sleep 30; fi
exit "$(cat "$dir/exit-code" 2>/dev/null || echo 0)"
"""


def installer(workdir: Path) -> Path:
    path = workdir / "installer" / "install"
    path.parent.mkdir(exist_ok=True)
    path.write_text(INSTALLER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def firmware_agent(make: AgentFactory, workdir: Path, **firmware: Any) -> AgentProcess:
    agent = make(connectors=2)
    agent.tables["firmware"] = {
        "install_command": str(installer(workdir)),
        **firmware,
    }
    agent.write()
    return agent


def update(location: str, *, retries: int = 0, interval: int = 0) -> dict[str, Any]:
    return {
        "location": location,
        "retrieveDate": iso(utcnow()),
        "retries": retries,
        "retryInterval": interval,
    }


async def statuses(csms: LoopbackCsms, since: int, last: str) -> list[str]:
    """The FirmwareStatusNotifications from ``since`` up to and including ``last``."""
    await csms.wait_for("FirmwareStatusNotification", lambda p: p["status"] == last, since=since)
    return [p["status"] for p in csms.payloads("FirmwareStatusNotification", since=since)]


@pytest.fixture
def http() -> Any:
    with HttpFileServer() as server:
        server.files["/fw/cpagent_1.1.0_all.deb"] = FIRMWARE
        yield server


async def test_a_full_update_over_http(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, http: HttpFileServer
) -> None:
    agent = firmware_agent(agent_factory, workdir)
    await agent.start()
    await booted(csms, 2)
    keys = await csms.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
    assert "FirmwareManagement" in keys["configurationKey"][0]["value"].split(",")

    mark = csms.mark()
    assert await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb"))) == {}
    assert await statuses(csms, mark, "Installed") == SUCCESS
    assert (workdir / "installer" / "installed.bin").read_bytes() == FIRMWARE
    assert "installing cpagent_1.1.0_all.deb" in agent.log()

    # While installing the connectors were Unavailable; afterwards they are back.
    unavailable = csms.payloads("StatusNotification", since=mark)
    assert {p["connectorId"] for p in unavailable if p["status"] == "Unavailable"} == {1, 2}
    state = await agent.wait_status(
        lambda s: all(c["status"] == "Available" for c in s["connectors"])
    )
    assert state["firmware"]["status"] == "Idle"
    assert not list((agent.data_dir / "firmware").iterdir())  # the download is gone

    mark = csms.mark()
    await csms.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert (await csms.wait_for("FirmwareStatusNotification", since=mark))["status"] == "Idle"


async def test_a_full_update_over_ftp(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path
) -> None:
    with FtpFileServer(user="fw", password="fw-secret") as ftp:
        (ftp.root / "cpagent.deb").write_bytes(FIRMWARE)
        agent = firmware_agent(agent_factory, workdir)
        await agent.start()
        await booted(csms, 2)
        mark = csms.mark()
        await csms.call("UpdateFirmware", update(ftp.url("cpagent.deb")))
        assert await statuses(csms, mark, "Installed") == SUCCESS
    assert (workdir / "installer" / "installed.bin").read_bytes() == FIRMWARE
    assert "fw-secret" not in agent.log()


async def test_installation_waits_for_the_running_session(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, http: HttpFileServer
) -> None:
    agent = firmware_agent(agent_factory, workdir)
    await agent.start()
    await booted(csms, 2)
    await start_session(agent, csms, "FW-TAG", cid=1)

    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    await csms.wait_for("FirmwareStatusNotification", lambda p: p["status"] == "Downloaded")
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 2 and p["status"] == "Unavailable",
        since=mark,
    )
    # A new session is refused while the update waits, and nothing is installed yet.
    refused = await csms.call("RemoteStartTransaction", {"idTag": "OTHER", "connectorId": 2})
    assert refused == {"status": "Rejected"}
    state = await agent.status()
    assert state["firmware"]["status"] == "Downloaded"
    assert not (workdir / "installer" / "installed.bin").exists()

    stop_mark = csms.mark()
    await agent.sim("tag", "FW-TAG")  # the driver ends the session
    await csms.wait_for("StopTransaction", since=stop_mark)
    assert await statuses(csms, mark, "Installed") == SUCCESS
    installing = next(
        r.index for r in csms.messages("FirmwareStatusNotification", since=mark)
        if r.payload["status"] == "Installing"
    )  # fmt: skip
    stopped = csms.messages("StopTransaction", since=stop_mark)[0].index
    assert stopped < installing


@pytest.mark.parametrize(
    ("new_version", "verdict"), [("9.9.9", "Installed"), (None, "InstallationFailed")]
)
async def test_an_installer_that_restarts_the_agent_is_judged_by_the_version(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    http: HttpFileServer,
    new_version: str | None,
    verdict: str,
) -> None:
    agent = firmware_agent(agent_factory, workdir)
    agent.tables["charge_point"]["firmware_version"] = "1.0.0"
    agent.write()
    (workdir / "installer" / "restart").touch()
    await agent.start()
    await booted(csms, 2)
    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    await csms.wait_for("FirmwareStatusNotification", lambda p: p["status"] == "Installing")
    assert await agent.wait_exit() == 0  # the installer stopped the agent, like a .deb upgrade

    (workdir / "installer" / "restart").unlink()
    if new_version is not None:
        agent.tables["charge_point"]["firmware_version"] = new_version
        agent.write()
    boot_mark = csms.mark()
    await agent.start()
    await csms.wait_for("BootNotification", since=boot_mark)
    assert await statuses(csms, mark, verdict) == [
        "Downloading",
        "Downloaded",
        "Installing",
        verdict,
    ]
    boot = csms.payloads("BootNotification", since=boot_mark)[0]
    assert boot["firmwareVersion"] == (new_version or "1.0.0")
    state = await agent.status()
    assert state["firmware"]["status"] == "Idle"


RESTARTING_INSTALLER = """#!/bin/sh
# Like the package's postinst: the new version is in place (here: the config naming it),
# then the running agent is asked to restart into it once idle.
dir="$(dirname "$0")"
cp "$dir/new.toml" "$dir/../a/cpagent.toml"
"{cpagent}" restart --when-idle --reason "firmware update" --config "$dir/../a/cpagent.toml" \
    > "$dir/restart.out" 2>&1
echo "$?" > "$dir/restart.code"
"""


async def test_an_installer_that_asks_for_a_restart_when_idle_reports_installed(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, http: HttpFileServer
) -> None:
    """The package's postinst asks for ``cpagent restart --when-idle``: the agent, held
    idle for the installation, re-executes at once (same PID) and the new image judges
    the job by its version."""
    agent = firmware_agent(agent_factory, workdir)
    script = workdir / "installer" / "install"
    script.write_text(RESTARTING_INSTALLER.replace("{cpagent}", CPAGENT))
    agent.tables["charge_point"]["firmware_version"] = "9.9.9"
    agent.write()
    (workdir / "installer" / "new.toml").write_text(agent.config_path.read_text())
    agent.tables["charge_point"]["firmware_version"] = "1.0.0"
    agent.write()
    await agent.start()
    await booted(csms, 2)
    assert agent.proc is not None
    pid = agent.proc.pid

    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    boot = await csms.wait_for("BootNotification", since=mark)
    assert boot["firmwareVersion"] == "9.9.9"
    assert await statuses(csms, mark, "Installed") == SUCCESS
    assert agent.proc.returncode is None and agent.proc.pid == pid  # re-executed, not exited
    assert (workdir / "installer" / "restart.out").read_text() == (
        "restarting now (no transaction is running)\n"
    )
    await agent.wait_log("0\n", path=workdir / "installer" / "restart.code")
    state = await agent.wait_status(lambda s: s["firmware"]["status"] == "Idle")
    assert state["restart"] is None
    assert [c["status"] for c in state["connectors"]] == ["Available", "Available"]


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("sftp://127.0.0.1/fw.deb", "'sftp' is not one of http, https, ftp"),
        ("http://127.0.0.1:9/fw.deb", "refused the connection"),
        ("{http}/fw/missing.deb", "404"),
        ("{http}/fw/stalls.deb", "no progress for 1 s"),
        ("{http}/fw/cut.deb", "connection closed after"),
        ("{http}/fw/huge.deb", "bytes announced, the limit is 2097152"),
    ],
)
async def test_a_failed_download_is_reported_and_a_second_update_works(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    http: HttpFileServer,
    location: str,
    why: str,
) -> None:
    http.files["/fw/stalls.deb"] = FIRMWARE
    http.behaviours["/fw/stalls.deb"] = HttpBehaviour(stall_after=1000)
    http.files["/fw/cut.deb"] = FIRMWARE
    http.behaviours["/fw/cut.deb"] = HttpBehaviour(close_after=100_000)
    http.files["/fw/huge.deb"] = os.urandom(2 * 2**20 + 1)
    agent = firmware_agent(agent_factory, workdir, max_download_mb=2, stall_timeout_s=1.0)
    await agent.start()
    await booted(csms, 2)
    mark = csms.mark()
    url = location.format(http=http.url("").rstrip("/"))
    await csms.call("UpdateFirmware", update(url, retries=1))
    assert await statuses(csms, mark, "DownloadFailed") == ["Downloading", "DownloadFailed"]
    causes = [line for line in agent.log().splitlines() if "firmware: download " in line]
    assert causes and why in causes[-1], causes
    assert len(causes) == (1 if url.startswith("sftp:") else 2)  # no retry can help a scheme
    if url.startswith(http.url("")):
        assert http.requests[url.removeprefix(http.url("").rstrip("/"))] == 2  # one retry
    assert not (workdir / "installer" / "installed.bin").exists()
    assert not [p for p in (agent.data_dir / "firmware").iterdir()]  # no partial file
    http.release_stalls()

    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    assert await statuses(csms, mark, "Installed") == SUCCESS


@pytest.mark.parametrize("failure", ["exit-code", "hang"])
async def test_a_failed_installation_keeps_the_charger_working(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    http: HttpFileServer,
    failure: str,
) -> None:
    # Only the hanging installer is to run into the timeout, however slow the machine.
    timeout_s = 1.5 if failure == "hang" else 600.0
    agent = firmware_agent(agent_factory, workdir, install_timeout_s=timeout_s)
    if failure == "exit-code":
        (workdir / "installer").mkdir(exist_ok=True)
        (workdir / "installer" / "exit-code").write_text("3\n")
    else:
        (workdir / "installer" / "hang").touch()
    await agent.start()
    await booted(csms, 2)
    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    assert await statuses(csms, mark, "InstallationFailed") == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallationFailed",
    ]
    log = agent.log()
    assert ("exited with 3" in log) if failure == "exit-code" else ("was killed" in log)

    await agent.wait_status(lambda s: all(c["status"] == "Available" for c in s["connectors"]))
    await start_session(agent, csms, "AFTER-FW", cid=2)  # the charger still charges
    for name in ("exit-code", "hang"):
        (workdir / "installer" / name).unlink(missing_ok=True)
    mark = csms.mark()
    await csms.call("UpdateFirmware", update(http.url("/fw/cpagent_1.1.0_all.deb")))
    await csms.wait_for("FirmwareStatusNotification", lambda p: p["status"] == "Downloaded")
    await agent.sim("unplug", "2")
    assert await statuses(csms, mark, "Installed") == SUCCESS


async def test_a_retrieve_date_survives_a_restart(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, http: HttpFileServer
) -> None:
    agent = firmware_agent(agent_factory, workdir)
    await agent.start()
    await booted(csms, 2)
    soon = time.time() + 5
    request = update(http.url("/fw/cpagent_1.1.0_all.deb"))
    request["retrieveDate"] = iso(datetime.fromtimestamp(soon, UTC))
    mark = csms.mark()
    await csms.call("UpdateFirmware", request)
    await agent.kill9()  # at once: the answered request must already be on disk

    boot_mark = csms.mark()
    await agent.start()
    await booted(csms, 2, since=boot_mark)
    # However long the restart took: the download starts at the retrieve date, not before.
    await csms.wait_for("FirmwareStatusNotification", since=mark)
    assert time.time() >= soon - 0.2
    assert await statuses(csms, mark, "Installed") == SUCCESS


async def test_a_malformed_date_is_a_formation_violation(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path
) -> None:
    agent = firmware_agent(agent_factory, workdir)
    await agent.start()
    await booted(csms, 2)
    for action, payload in (
        ("UpdateFirmware", {"location": "http://127.0.0.1:9/x.deb", "retrieveDate": "soon"}),
        ("GetDiagnostics", {"location": "ftp://127.0.0.1:9/", "startTime": "yesterday"}),
    ):
        with pytest.raises(CsmsCallError) as info:
            await csms.call(action, payload)
        assert info.value.code == "FormationViolation", info.value
    assert "Traceback" not in agent.log()
    state = await agent.status()
    assert state["firmware"]["status"] == "Idle" and state["csms"]["connected"]
