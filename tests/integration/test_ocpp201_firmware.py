"""OCPP 2.0.1 blocks L (UpdateFirmware) and N01 (GetLog) end to end: the real ``cpagent run``
speaking 2.0.1 to the loopback CSMS, loopback HTTP file servers and the test installer of
``test_firmware_update``.

An update is reported with FirmwareStatusNotification carrying its requestId at every step;
a signed one (L01) is checked against the ManufacturerRootCertificates InstallCertificate
put in, an unsigned one (L02) installed as it comes. GetLog uploads the diagnostics archive
or the security log and reports LogStatusNotification with its requestId. TriggerMessage
reports what runs. Every frame both ways passes the 2.0.1 schemas; every wait is the CSMS's
event-driven ``wait_for``, a bounded status poll or a file server wait in a thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S
from cpagent.testing.fileservers import HttpBehaviour, HttpFileServer
from cpagent.testing.pki import Issued, TestCa
from cpagent.timeutil import iso, utcnow
from tests.integration.conftest import AgentProcess
from tests.integration.test_diagnostics_upload import FILE_NAME, MEMBERS, open_archive
from tests.integration.test_firmware_update import installer
from tests.integration.test_signed_firmware_and_logs import (
    SECURITY_FILE_NAME,
    SECURITY_MEMBERS,
    signature,
)

AgentFactory = Callable[..., AgentProcess]

FIRMWARE = os.urandom(200 * 1024 + 77)
GOOD = "/fw/cpagent_2.0.0.bin"
FSN = "FirmwareStatusNotification"
LSN = "LogStatusNotification"
SEN = "SecurityEventNotification"
UNSIGNED_SUCCESS = ["Downloading", "Downloaded", "Installing", "Installed"]
SIGNED_SUCCESS = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]


@pytest.fixture
def files() -> Iterator[HttpFileServer]:
    with HttpFileServer() as server:  # sync: close() joins threads outside the loop
        server.files[GOOD] = FIRMWARE
        yield server


@pytest.fixture
def root() -> TestCa:
    return TestCa.create("Test Manufacturer Root")


# -------------------------------------------------------------------------- helpers


async def station(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, **firmware: Any
) -> AgentProcess:
    """A booted two-EVSE 2.0.1 agent with the test installer, nothing queued."""
    agent = agent_factory(connectors=2, ocpp201={})
    agent.tables["firmware"] = {"install_command": str(installer(workdir)), **firmware}
    agent.write()
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
    await agent.wait_status(lambda s: s["queue"]["depth"] == 0)
    return agent


def update(
    request_id: int,
    location: str,
    signer: Issued | None = None,
    sig: str | None = None,
    **when: datetime,
) -> dict[str, Any]:
    firmware: dict[str, Any] = {
        "location": location,
        "retrieveDateTime": iso(when.get("retrieve", utcnow())),
    }
    if "install" in when:
        firmware["installDateTime"] = iso(when["install"])
    if signer is not None:
        firmware["signingCertificate"] = signer.chain_pem()
    if sig is not None:
        firmware["signature"] = sig
    return {"requestId": request_id, "retries": 0, "retryInterval": 0, "firmware": firmware}


def statuses(csms: LoopbackCsms, since: int) -> list[tuple[str, int | None]]:
    return [(p["status"], p.get("requestId")) for p in csms.payloads(FSN, since=since)]


async def until(
    csms: LoopbackCsms, since: int, request_id: int, last: str
) -> list[tuple[str, int | None]]:
    """Every FirmwareStatusNotification since ``since`` once ``last`` came for the request."""
    await csms.wait_for(
        FSN, lambda p: p["status"] == last and p.get("requestId") == request_id, since=since
    )
    return statuses(csms, since)


async def trigger(csms: LoopbackCsms, message: str) -> dict[str, Any]:
    mark = csms.mark()
    answer = await csms.call("TriggerMessage", {"requestedMessage": message})
    assert answer == {"status": "Accepted"}
    return await csms.wait_for(message, since=mark)


async def install_root(csms: LoopbackCsms, ca: TestCa) -> None:
    answer = await csms.call(
        "InstallCertificate",
        {"certificateType": "ManufacturerRootCertificate", "certificate": ca.pem()},
    )
    assert answer == {"status": "Accepted"}


def installed(workdir: Path) -> Path:
    return workdir / "installer" / "installed.bin"


def event_types(csms: LoopbackCsms, since: int) -> list[str]:
    return [p["type"] for p in csms.payloads(SEN, since=since)]


# ------------------------------------------------------------------ L02: unsigned


async def test_an_unsigned_update_is_installed_and_reported_with_its_request_id(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, files: HttpFileServer
) -> None:
    agent = await station(agent_factory, csms, workdir)
    assert await trigger(csms, FSN) == {"status": "Idle"}

    mark = csms.mark()
    assert await csms.call("UpdateFirmware", update(5, files.url(GOOD))) == {"status": "Accepted"}
    assert await until(csms, mark, 5, "Installed") == [(s, 5) for s in UNSIGNED_SUCCESS]
    assert installed(workdir).read_bytes() == FIRMWARE
    assert files.requests[GOOD] == 1
    updated = await csms.wait_for(SEN, lambda p: p["type"] == "FirmwareUpdated", since=mark)
    assert updated["type"] == "FirmwareUpdated"
    await agent.wait_status(lambda s: s["firmware"]["status"] == "Idle")
    assert await trigger(csms, FSN) == {"status": "Idle"}


async def test_a_download_that_fails_is_reported_and_nothing_installed(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, files: HttpFileServer
) -> None:
    files.behaviours["/fw/missing.bin"] = HttpBehaviour(status=404)
    await station(agent_factory, csms, workdir)
    mark = csms.mark()
    request = update(6, files.url("/fw/missing.bin"))
    assert await csms.call("UpdateFirmware", request) == {"status": "Accepted"}
    assert await until(csms, mark, 6, "DownloadFailed") == [
        ("Downloading", 6),
        ("DownloadFailed", 6),
    ]
    assert not installed(workdir).exists()


async def test_scheduled_updates_are_reported_and_a_second_one_cancels_the_first(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, files: HttpFileServer
) -> None:
    """DownloadScheduled while the retrieve date is ahead, InstallScheduled while the
    install date is; TriggerMessage reports either with its requestId; a new request
    replaces the scheduled one (AcceptedCanceled)."""
    agent = await station(agent_factory, csms, workdir)
    mark = csms.mark()
    later = utcnow() + timedelta(minutes=10)
    first = update(7, files.url(GOOD), retrieve=later)
    assert await csms.call("UpdateFirmware", first) == {"status": "Accepted"}
    await until(csms, mark, 7, "DownloadScheduled")
    assert await trigger(csms, FSN) == {"status": "DownloadScheduled", "requestId": 7}

    replaced = csms.mark()
    second = update(8, files.url(GOOD), install=utcnow() + timedelta(minutes=10))
    assert await csms.call("UpdateFirmware", second) == {"status": "AcceptedCanceled"}
    assert await until(csms, replaced, 8, "InstallScheduled") == [
        ("Downloading", 8),
        ("Downloaded", 8),
        ("InstallScheduled", 8),
    ]
    assert await trigger(csms, FSN) == {"status": "InstallScheduled", "requestId": 8}
    assert not installed(workdir).exists()
    assert (await agent.status())["firmware"]["status"] == "InstallScheduled"


# -------------------------------------------------------------------- L01: signed


async def test_a_signed_update_is_verified_installed_and_reported(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
) -> None:
    signer = root.issue_code_signing("Firmware Signer")
    await station(agent_factory, csms, workdir)
    await install_root(csms, root)
    mark = csms.mark()
    request = update(17, files.url(GOOD), signer, signature(signer, FIRMWARE, workdir))
    assert await csms.call("UpdateFirmware", request) == {"status": "Accepted"}
    assert await until(csms, mark, 17, "Installed") == [(s, 17) for s in SIGNED_SUCCESS]
    assert installed(workdir).read_bytes() == FIRMWARE
    await csms.wait_for(SEN, lambda p: p["type"] == "FirmwareUpdated", since=mark)


async def test_a_signature_that_does_not_match_is_never_installed(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
) -> None:
    signer = root.issue_code_signing("Firmware Signer")
    agent = await station(agent_factory, csms, workdir)
    await install_root(csms, root)
    mark = csms.mark()
    request = update(21, files.url(GOOD), signer, signature(signer, FIRMWARE + b"\0", workdir))
    assert await csms.call("UpdateFirmware", request) == {"status": "Accepted"}
    assert await until(csms, mark, 21, "InvalidSignature") == [
        ("Downloading", 21),
        ("Downloaded", 21),
        ("InvalidSignature", 21),
    ]
    event = await csms.wait_for(SEN, lambda p: p["type"] == "InvalidFirmwareSignature", since=mark)
    assert "does not match CN=Firmware Signer" in event["techInfo"]
    assert not installed(workdir).exists()
    assert "firmware: running" not in agent.log()


async def test_a_signing_certificate_that_is_not_trusted_is_refused_before_any_download(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
) -> None:
    await station(agent_factory, csms, workdir)
    await install_root(csms, root)
    rogue = TestCa.create("Rogue Root").issue_code_signing("Rogue Signer")
    mark = csms.mark()
    request = update(31, files.url(GOOD), rogue, signature(rogue, FIRMWARE, workdir))
    answer = await csms.call("UpdateFirmware", request)
    assert answer["status"] == "InvalidCertificate"
    assert "CN=Rogue Signer" in answer["statusInfo"]["additionalInfo"]
    event = await csms.wait_for(
        SEN, lambda p: p["type"] == "InvalidFirmwareSigningCertificate", since=mark
    )
    assert "CN=Rogue Signer" in event["techInfo"]
    assert sum(files.requests.values()) == 0
    assert await trigger(csms, FSN) == {"status": "Idle"}
    assert statuses(csms, mark) == [("Idle", None)]

    # A signature without its certificate is no signed update either.
    half = update(32, files.url(GOOD), sig="c2ln")
    assert (await csms.call("UpdateFirmware", half))["status"] == "Rejected"
    assert event_types(csms, mark) == ["InvalidFirmwareSigningCertificate"]


# ------------------------------------------------------------------------ N01: GetLog


def get_log(request_id: int, location: str, log_type: str = "DiagnosticsLog") -> dict[str, Any]:
    return {
        "logType": log_type,
        "requestId": request_id,
        "retries": 0,
        "retryInterval": 0,
        "log": {"remoteLocation": location},
    }


async def log_until(csms: LoopbackCsms, since: int, request_id: int, last: str) -> list[str]:
    await csms.wait_for(
        LSN, lambda p: p["status"] == last and p.get("requestId") == request_id, since=since
    )
    return [
        p["status"] for p in csms.payloads(LSN, since=since) if p.get("requestId") == request_id
    ]


@pytest.mark.parametrize("log_type", ["DiagnosticsLog", "SecurityLog"])
async def test_get_log_uploads_the_log_and_reports_it(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    log_type: str,
) -> None:
    agent = await station(agent_factory, csms, workdir)
    assert await trigger(csms, LSN) == {"status": "Idle"}
    mark = csms.mark()
    answer = await csms.call("GetLog", get_log(61, files.url("/logs/put"), log_type))
    assert answer["status"] == "Accepted" and set(answer) == {"status", "filename"}
    pattern = SECURITY_FILE_NAME if log_type == "SecurityLog" else FILE_NAME
    assert pattern.match(answer["filename"]), answer
    assert await log_until(csms, mark, 61, "Uploaded") == ["Uploading", "Uploaded"]
    members = open_archive(
        files.uploads["/logs/put"].body,
        SECURITY_MEMBERS if log_type == "SecurityLog" else MEMBERS,
    )
    if log_type == "SecurityLog":
        assert "StartupOfTheDevice" in members["security-log.txt"].decode()
    await agent.wait_status(lambda s: s["diagnostics"]["status"] == "Idle")
    assert await trigger(csms, LSN) == {"status": "Idle"}


async def test_get_log_reports_a_failed_upload_and_a_running_one_when_triggered(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, files: HttpFileServer
) -> None:
    files.behaviours["/logs/refused"] = HttpBehaviour(status=403)
    files.behaviours["/logs/slow"] = HttpBehaviour(stall_after=1024)
    await station(agent_factory, csms, workdir, stall_timeout_s=30.0)
    mark = csms.mark()
    answer = await csms.call("GetLog", get_log(71, files.url("/logs/refused")))
    assert answer["status"] == "Accepted"
    assert await log_until(csms, mark, 71, "UploadFailure") == ["Uploading", "UploadFailure"]

    mark = csms.mark()
    assert (await csms.call("GetLog", get_log(72, files.url("/logs/slow"))))["status"] == (
        "Accepted"
    )
    await asyncio.to_thread(files.wait_stalled, "/logs/slow", WAIT_S)
    await log_until(csms, mark, 72, "Uploading")
    assert await trigger(csms, LSN) == {"status": "Uploading", "requestId": 72}

    # A new GetLog cancels the stalled upload.
    answer = await csms.call("GetLog", get_log(73, files.url("/logs/put")))
    assert answer["status"] == "AcceptedCanceled"
    assert await log_until(csms, mark, 72, "AcceptedCanceled") == [
        "Uploading",
        "Uploading",  # triggered
        "AcceptedCanceled",
    ]
    assert await log_until(csms, mark, 73, "Uploaded") == ["Uploading", "Uploaded"]
    files.release_stalls()
