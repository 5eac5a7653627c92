"""SignedUpdateFirmware and GetLog end to end: the real ``cpagent run`` process, the loopback
CSMS, loopback HTTP file servers and the test installer of ``test_firmware_update``.

Firmware is signed with certificates of the test CA (:mod:`cpagent.testing.pki`); the
manufacturer root reaches the agent through InstallCertificate or the factory bundle of
``[security] manufacturer_root_certificates``. A signed update is reported with
SignedFirmwareStatusNotification carrying its requestId; GetLog uploads the diagnostics
archive or the security log and reports LogStatusNotification with its requestId. Every wait
is the CSMS's event-driven ``wait_for`` or a file server wait through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S, CsmsCallError, Received
from cpagent.testing.fileservers import HttpBehaviour, HttpFileServer
from cpagent.testing.pki import Issued, TestCa, sign_file
from cpagent.timeutil import iso, utcnow
from tests.integration.conftest import AgentProcess
from tests.integration.test_diagnostics_upload import (
    FILE_NAME,
    MEMBERS,
    idle,
    leftovers,
    manifest,
    open_archive,
    started,
)
from tests.integration.test_firmware_update import firmware_agent
from tests.integration.test_session import AgentFactory, booted, eventually, start_session

FIRMWARE = os.urandom(256 * 1024 + 4321)
GOOD = "/fw/cpagent-signed_1.2.0.bin"
SIGNED_SUCCESS = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
SFSN = "SignedFirmwareStatusNotification"
SEN = "SecurityEventNotification"
LSN = "LogStatusNotification"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
SECURITY_FILE_NAME = re.compile(r"^CP001-securitylog-\d{8}T\d{6}Z\.tar\.gz$")
SECURITY_MEMBERS = ["security-log.txt", "manifest.json"]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def files() -> Iterator[HttpFileServer]:
    # A sync fixture: close() joins the server's threads outside the event loop.
    with HttpFileServer() as server:
        server.files[GOOD] = FIRMWARE
        yield server


@pytest.fixture
def root() -> TestCa:
    return TestCa.create("Test Manufacturer Root")


# ----------------------------------------------------------------------------- helpers


def signature(issued: Issued, data: bytes, directory: Path) -> str:
    """The base64 signature of ``data`` by ``issued``, as SignedUpdateFirmware carries it."""
    path = directory / "to-sign.bin"
    path.write_bytes(data)
    try:
        return sign_file(issued, path)
    finally:
        path.unlink()


def signed_update(
    request_id: int,
    location: str,
    signer: Issued,
    sig: str,
    *,
    retrieve: datetime | None = None,
) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "retries": 0,
        "retryInterval": 0,
        "firmware": {
            "location": location,
            "retrieveDateTime": iso(retrieve or utcnow()),
            "signingCertificate": signer.chain_pem(),
            "signature": sig,
        },
    }


async def install_root(csms: LoopbackCsms, ca: TestCa) -> None:
    answer = await csms.call(
        "InstallCertificate", {"certificateType": MANUFACTURER_ROOT, "certificate": ca.pem()}
    )
    assert answer == {"status": "Accepted"}


def signed_statuses(csms: LoopbackCsms, since: int) -> list[tuple[str, int | None]]:
    return [(p["status"], p.get("requestId")) for p in csms.payloads(SFSN, since=since)]


async def signed_until(
    csms: LoopbackCsms, since: int, request_id: int, last: str
) -> list[tuple[str, int | None]]:
    """Every SignedFirmwareStatusNotification from ``since`` once ``last`` came for
    ``request_id``."""
    await csms.wait_for(
        SFSN, lambda p: p["status"] == last and p.get("requestId") == request_id, since=since
    )
    return signed_statuses(csms, since)


async def security_event(csms: LoopbackCsms, kind: str, since: int) -> Received:
    return await csms.wait_for_message(SEN, lambda p: p["type"] == kind, since=since)


def event_types(csms: LoopbackCsms, since: int) -> list[str]:
    return [p["type"] for p in csms.payloads(SEN, since=since)]


async def extended_trigger(csms: LoopbackCsms, message: str, action: str) -> dict[str, Any]:
    """ExtendedTriggerMessage ``message``; the ``action`` it brings."""
    mark = csms.mark()
    answer = await csms.call("ExtendedTriggerMessage", {"requestedMessage": message})
    assert answer == {"status": "Accepted"}
    return await csms.wait_for(action, since=mark)


async def firmware_trigger(csms: LoopbackCsms) -> dict[str, Any]:
    return await extended_trigger(csms, "FirmwareStatusNotification", SFSN)


async def log_trigger(csms: LoopbackCsms) -> dict[str, Any]:
    return await extended_trigger(csms, "LogStatusNotification", LSN)


async def firmware_ready(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, **firmware: Any
) -> AgentProcess:
    """A booted two-connector agent with the test installer."""
    agent = firmware_agent(agent_factory, workdir, **firmware)
    await agent.start()
    await booted(csms, 2)
    return agent


async def firmware_idle(agent: AgentProcess) -> None:
    """Until the agent has forgotten its last job (a little after its last status was sent)."""
    await agent.wait_status(lambda s: s["firmware"]["status"] == "Idle")


def installed(workdir: Path) -> Path:
    """Where the test installer copies the file it was given."""
    return workdir / "installer" / "installed.bin"


def downloads(agent: AgentProcess) -> list[str]:
    directory = agent.data_dir / "firmware"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def end_session(agent: AgentProcess, csms: LoopbackCsms, id_tag: str) -> None:
    mark = csms.mark()
    await agent.sim("tag", id_tag)
    await csms.wait_for("StopTransaction", since=mark)


def get_log(
    request_id: int,
    location: str,
    log_type: str = "DiagnosticsLog",
    **window: str,
) -> dict[str, Any]:
    return {
        "logType": log_type,
        "requestId": request_id,
        "retries": 0,
        "retryInterval": 0,
        "log": {"remoteLocation": location, **window},
    }


def log_statuses(csms: LoopbackCsms, since: int, request_id: int) -> list[str]:
    return [
        p["status"] for p in csms.payloads(LSN, since=since) if p.get("requestId") == request_id
    ]


async def log_until(csms: LoopbackCsms, since: int, request_id: int, last: str) -> list[str]:
    await csms.wait_for(
        LSN, lambda p: p["status"] == last and p.get("requestId") == request_id, since=since
    )
    return log_statuses(csms, since, request_id)


def log_line(event: dict[str, Any]) -> str:
    """A SecurityEventNotification as the security log lists it."""
    info = event.get("techInfo")
    return f"{event['timestamp']} {event['type']}" + (f" {info}" if info else "")


# ------------------------------------------------------------------- signed firmware


@pytest.mark.parametrize("via", ["InstallCertificate", "factory-bundle", "the-root-itself"])
async def test_a_signed_update_is_verified_installed_and_reported_with_its_request_id(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
    via: str,
) -> None:
    if via == "InstallCertificate":
        signer = root.issue_code_signing("Firmware Signer")
        agent = await firmware_ready(agent_factory, csms, workdir)
        await install_root(csms, root)
    elif via == "the-root-itself":  # signed by an installed ManufacturerRootCertificate
        signer = Issued(root.cert, root.key)
        agent = await firmware_ready(agent_factory, csms, workdir)
        await install_root(csms, root)
    else:  # provisioned at the factory, and signed through an intermediate CA
        signer = root.intermediate("Firmware Signing CA").issue_code_signing("Firmware Signer")
        bundle = workdir / "manufacturer-roots.pem"
        bundle.write_text(root.pem())
        agent = firmware_agent(agent_factory, workdir)
        agent.tables["security"] = {"manufacturer_root_certificates": str(bundle)}
        agent.write()
        await agent.start()
        await booted(csms, 2)
        assert len(signer.intermediates) == 1
        assert signer.chain_pem().count("BEGIN CERTIFICATE") == 2
    ids = await csms.call("GetInstalledCertificateIds", {"certificateType": MANUFACTURER_ROOT})
    assert ids["status"] == "Accepted" and len(ids["certificateHashData"]) == 1

    mark = csms.mark()
    request = signed_update(17, files.url(GOOD), signer, signature(signer, FIRMWARE, workdir))
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
    statuses = await signed_until(csms, mark, 17, "Installed")
    assert statuses == [(status, 17) for status in SIGNED_SUCCESS]
    assert csms.payloads("FirmwareStatusNotification", since=mark) == []

    assert installed(workdir).read_bytes() == FIRMWARE
    assert "installing cpagent-signed_1.2.0.bin" in agent.log()
    assert files.requests[GOOD] == 1
    event = await security_event(csms, "FirmwareUpdated", mark)
    done = await csms.wait_for_message(SFSN, lambda p: p["status"] == "Installed", since=mark)
    assert done.index < event.index
    assert event_types(csms, mark) == ["FirmwareUpdated"]

    await agent.wait_status(lambda s: all(c["status"] == "Available" for c in s["connectors"]))
    assert downloads(agent) == []
    await firmware_idle(agent)
    assert await firmware_trigger(csms) == {"status": "Idle"}


@pytest.mark.parametrize("tampered", ["file", "signature"])
async def test_a_tampered_update_is_never_installed_and_the_charger_carries_on(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
    tampered: str,
) -> None:
    signer = root.issue_code_signing("Firmware Signer")
    good_signature = signature(signer, FIRMWARE, workdir)
    if tampered == "file":  # one byte changed on the server after signing
        served = bytearray(FIRMWARE)
        served[len(served) // 2] ^= 0x01
        files.files["/fw/evil.bin"] = bytes(served)
        sig = good_signature
    else:  # a valid signature by the right key, over other bytes
        files.files["/fw/evil.bin"] = FIRMWARE
        sig = signature(signer, FIRMWARE + b"\0", workdir)
    agent = await firmware_ready(agent_factory, csms, workdir)
    await install_root(csms, root)

    mark = csms.mark()
    request = signed_update(21, files.url("/fw/evil.bin"), signer, sig)
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
    statuses = await signed_until(csms, mark, 21, "InvalidSignature")
    assert statuses == [("Downloading", 21), ("Downloaded", 21), ("InvalidSignature", 21)]
    event = await security_event(csms, "InvalidFirmwareSignature", mark)
    assert event_types(csms, mark) == ["InvalidFirmwareSignature"]
    invalid = csms.wait_for_message(SFSN, lambda p: p["status"] == "InvalidSignature", since=mark)
    assert (await invalid).index < event.index
    assert "the signature of evil.bin does not match CN=Firmware Signer" in agent.log()
    assert "does not match CN=Firmware Signer" in event.payload["techInfo"]
    assert files.requests["/fw/evil.bin"] == 1

    # Never installed, not even put on hold; the file is gone.
    assert not installed(workdir).exists()
    assert "firmware: running" not in agent.log()
    unavailable = [
        p for p in csms.payloads("StatusNotification", since=mark) if p["status"] == "Unavailable"
    ]
    assert unavailable == []
    await firmware_idle(agent)
    assert downloads(agent) == []
    assert await firmware_trigger(csms) == {"status": "Idle"}

    # The charger still charges, and a good signed update goes through afterwards.
    await start_session(agent, csms, "AFTER-SIG", cid=1)
    await end_session(agent, csms, "AFTER-SIG")
    mark = csms.mark()
    request = signed_update(22, files.url(GOOD), signer, good_signature)
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
    assert await signed_until(csms, mark, 22, "Installed") == [(s, 22) for s in SIGNED_SUCCESS]
    assert installed(workdir).read_bytes() == FIRMWARE


def _refused_signer(case: str, root: TestCa) -> Issued:
    if case == "other-ca":
        return TestCa.create("Rogue Root").issue_code_signing("Rogue Signer")
    if case == "expired":
        now = datetime.now(UTC)
        return root.issue_code_signing(
            "Old Signer", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
    if case == "not-for-code":
        return root.issue_client("Not A Signer")
    return root.issue_code_signing("Unanchored Signer")  # "no-root": the root is not installed


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("other-ca", "CN=Rogue Signer"),
        ("expired", "expired at"),
        ("no-root", "no ManufacturerRootCertificate is installed"),
        ("not-for-code", "CN=Not A Signer"),
    ],
)
async def test_a_signing_certificate_that_is_not_trusted_is_refused_before_any_download(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
    case: str,
    why: str,
) -> None:
    signer = _refused_signer(case, root)
    agent = await firmware_ready(agent_factory, csms, workdir)
    if case != "no-root":
        await install_root(csms, root)

    mark = csms.mark()
    request = signed_update(31, files.url(GOOD), signer, signature(signer, FIRMWARE, workdir))
    answer = await csms.call("SignedUpdateFirmware", request)
    assert answer == {"status": "InvalidCertificate"}
    event = await security_event(csms, "InvalidFirmwareSigningCertificate", mark)
    assert why in event.payload.get("techInfo", ""), event.payload
    # Nothing was taken on: no job, no status, no request to the file server.
    assert await firmware_trigger(csms) == {"status": "Idle"}
    assert signed_statuses(csms, mark) == [("Idle", None)]
    assert sum(files.requests.values()) == 0
    assert (await agent.status())["firmware"]["status"] == "Idle"
    assert event_types(csms, mark) == ["InvalidFirmwareSigningCertificate"]

    # The refusal is not sticky: a trusted signer then goes through.
    if case == "no-root":
        await install_root(csms, root)
    genuine = root.issue_code_signing("Firmware Signer")
    mark = csms.mark()
    request = signed_update(32, files.url(GOOD), genuine, signature(genuine, FIRMWARE, workdir))
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
    assert await signed_until(csms, mark, 32, "Installed") == [(s, 32) for s in SIGNED_SUCCESS]
    assert files.requests[GOOD] == 1
    assert installed(workdir).read_bytes() == FIRMWARE


async def test_a_second_signed_update_cancels_a_scheduled_one_and_bad_dates_are_refused(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
) -> None:
    files.files["/fw/first.bin"] = FIRMWARE
    signer = root.issue_code_signing("Firmware Signer")
    sig = signature(signer, FIRMWARE, workdir)
    agent = await firmware_ready(agent_factory, csms, workdir)
    await install_root(csms, root)

    mark = csms.mark()
    later = utcnow() + timedelta(minutes=10)
    first = signed_update(41, files.url("/fw/first.bin"), signer, sig, retrieve=later)
    assert await csms.call("SignedUpdateFirmware", first) == {"status": "Accepted"}
    pending = await firmware_trigger(csms)
    assert pending.get("requestId") == 41, pending
    assert pending["status"] == "DownloadScheduled", pending

    for field in ("retrieveDateTime", "installDateTime"):
        malformed = signed_update(99, files.url(GOOD), signer, sig)
        malformed["firmware"][field] = "tomorrow at noon"
        with pytest.raises(CsmsCallError) as info:
            await csms.call("SignedUpdateFirmware", malformed)
        assert info.value.code == "FormationViolation", info.value
        assert field in info.value.description
    assert (await firmware_trigger(csms)).get("requestId") == 41  # still the scheduled one

    # The scheduled update was reported once (durably, so perhaps after the triggered
    # ones) and by the two triggers: nothing else.
    await eventually(lambda: len(signed_statuses(csms, mark)) >= 3, "three statuses for 41")
    assert signed_statuses(csms, mark) == [("DownloadScheduled", 41)] * 3

    replaced = csms.mark()
    second = signed_update(42, files.url(GOOD), signer, sig)
    assert await csms.call("SignedUpdateFirmware", second) == {"status": "AcceptedCanceled"}
    statuses = await signed_until(csms, replaced, 42, "Installed")
    assert statuses == [(s, 42) for s in SIGNED_SUCCESS]  # nothing more for 41, nor for 99
    assert files.requests["/fw/first.bin"] == 0 and files.requests[GOOD] == 1
    assert installed(workdir).read_bytes() == FIRMWARE
    await firmware_idle(agent)
    assert await firmware_trigger(csms) == {"status": "Idle"}  # the first one is gone too
    assert "Traceback" not in agent.log()


async def test_extended_trigger_reports_the_signed_update_in_progress(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
) -> None:
    files.files["/fw/slow.bin"] = FIRMWARE
    files.behaviours["/fw/slow.bin"] = HttpBehaviour(stall_after=4096)
    signer = root.issue_code_signing("Firmware Signer")
    agent = await firmware_ready(agent_factory, csms, workdir, stall_timeout_s=30.0)
    await install_root(csms, root)
    assert await firmware_trigger(csms) == {"status": "Idle"}
    await start_session(agent, csms, "FW-TRIGGER", cid=1)  # holds the installation back

    mark = csms.mark()
    request = signed_update(
        51, files.url("/fw/slow.bin"), signer, signature(signer, FIRMWARE, workdir)
    )
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
    await asyncio.to_thread(files.wait_stalled, "/fw/slow.bin", WAIT_S)
    await signed_until(csms, mark, 51, "Downloading")  # delivered: the next one is triggered
    assert await firmware_trigger(csms) == {"status": "Downloading", "requestId": 51}

    files.release_stalls()
    await signed_until(csms, mark, 51, "SignatureVerified")
    assert await firmware_trigger(csms) == {"status": "SignatureVerified", "requestId": 51}
    assert not installed(workdir).exists()

    await end_session(agent, csms, "FW-TRIGGER")
    statuses = await signed_until(csms, mark, 51, "Installed")
    assert statuses == [
        ("Downloading", 51),
        ("Downloading", 51),  # triggered
        ("Downloaded", 51),
        ("SignatureVerified", 51),
        ("SignatureVerified", 51),  # triggered
        ("Installing", 51),
        ("Installed", 51),
    ]
    assert installed(workdir).read_bytes() == FIRMWARE
    await firmware_idle(agent)
    assert await firmware_trigger(csms) == {"status": "Idle"}


def drain_fifo(path: Path, timeout: float) -> bytes:
    """Read what the next writer of the FIFO ``path`` writes, up to its close (blocking; call
    through ``asyncio.to_thread``). Opening the read end is what lets a blocked writer go on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.05)
            chunk = os.read(fd, 65536) if readable else b""
            data += chunk
            if data and not chunk and readable:
                return data  # end of file: the writer wrote and closed
            if not chunk:
                time.sleep(0.01)
        raise TimeoutError(f"nothing written to {path} within {timeout} s")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("final", "event"),
    [("Installed", "FirmwareUpdated"), ("InvalidSignature", "InvalidFirmwareSignature")],
)
async def test_a_trigger_after_the_final_status_does_not_report_an_earlier_step(
    agent_factory: AgentFactory,
    csms: LoopbackCsms,
    workdir: Path,
    files: HttpFileServer,
    root: TestCa,
    final: str,
    event: str,
) -> None:
    signer = root.issue_code_signing("Firmware Signer")
    sig = signature(signer, FIRMWARE if final == "Installed" else b"other bytes", workdir)
    agent = await firmware_ready(agent_factory, csms, workdir)
    await install_root(csms, root)
    # The agent records the final status's security event right after sending the status; a
    # FIFO in place of its security log holds it there (a slow disk) until the test reads it.
    security_log = agent.data_dir / "security.log"
    assert "StartupOfTheDevice" in security_log.read_text()
    security_log.unlink()
    os.mkfifo(security_log)
    try:
        mark = csms.mark()
        request = signed_update(61, files.url(GOOD), signer, sig)
        assert await csms.call("SignedUpdateFirmware", request) == {"status": "Accepted"}
        await signed_until(csms, mark, 61, final)
        triggered = await firmware_trigger(csms)
    finally:
        written = await asyncio.to_thread(drain_fifo, security_log, WAIT_S)
        security_log.unlink()
    assert f'"type":"{event}"' in written.decode()
    await firmware_idle(agent)
    assert signed_statuses(csms, mark)[-2][0] == final
    # Once the final status is out, the update is over: a trigger reports it (or Idle), never
    # a step before it.
    assert triggered["status"] in ("Idle", final), triggered


async def test_a_security_event_reaches_the_csms_when_the_security_log_cannot_be_written(
    agent_factory: AgentFactory, csms: LoopbackCsms, workdir: Path, files: HttpFileServer
) -> None:
    agent = await firmware_ready(agent_factory, csms, workdir)
    await security_event(csms, "StartupOfTheDevice", 0)
    security_log = agent.data_dir / "security.log"
    security_log.unlink()
    security_log.mkdir()  # the log can no longer be opened for writing

    mark = csms.mark()
    signer = TestCa.create("Rogue Root").issue_code_signing("Rogue Signer")
    request = signed_update(71, files.url(GOOD), signer, "c2ln")
    assert await csms.call("SignedUpdateFirmware", request) == {"status": "InvalidCertificate"}
    # A triggered Heartbeat queues behind the event, if the event was queued at all.
    assert await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
        "status": "Accepted"
    }
    await csms.wait_for("Heartbeat", since=mark)
    assert (
        "security event InvalidFirmwareSigningCertificate not written to the security log"
        in agent.log()
    )
    assert event_types(csms, mark) == ["InvalidFirmwareSigningCertificate"]


# ---------------------------------------------------------------------------- GetLog


@pytest.fixture
def uploads() -> Iterator[HttpFileServer]:
    with HttpFileServer() as server:
        yield server


async def test_get_log_of_the_diagnostics_uploads_the_archive_and_reports_it(
    agent_factory: AgentFactory, csms: LoopbackCsms, uploads: HttpFileServer
) -> None:
    agent = await started(agent_factory, csms)
    assert await log_trigger(csms) == {"status": "Idle"}
    oldest = datetime.now(UTC) - timedelta(minutes=5)
    latest = datetime.now(UTC) + timedelta(minutes=5)

    mark = csms.mark()
    before = datetime.now(UTC).replace(microsecond=0)
    request = get_log(
        61,
        uploads.url("/logs/put"),
        oldestTimestamp=iso(oldest),
        latestTimestamp=iso(latest),
    )
    answer = await csms.call("GetLog", request)
    assert answer["status"] == "Accepted" and set(answer) == {"status", "filename"}
    match = FILE_NAME.match(answer["filename"])
    assert match, answer
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)

    assert await log_until(csms, mark, 61, "Uploaded") == ["Uploading", "Uploaded"]
    assert csms.payloads("DiagnosticsStatusNotification", since=mark) == []
    upload = uploads.uploads["/logs/put"]
    assert upload.method == "PUT" and dict(uploads.requests) == {"/logs/put": 1}
    members = open_archive(upload.body)
    assert list(members) == MEMBERS
    assert manifest(members)["window"] == {"start": iso(oldest), "stop": iso(latest)}
    assert " up: " in members["logs.txt"].decode()  # the start-up is inside the window

    await idle(agent)
    assert await log_trigger(csms) == {"status": "Idle"}
    assert leftovers(agent) == []


async def test_get_log_of_the_security_log_lists_the_events_in_the_window(
    agent_factory: AgentFactory, csms: LoopbackCsms, uploads: HttpFileServer, root: TestCa
) -> None:
    agent = await started(agent_factory, csms)
    startup = await security_event(csms, "StartupOfTheDevice", 0)
    # Three more events, a few milliseconds apart (the log's timestamps have milliseconds):
    # signed updates refused, as no manufacturer root is installed.
    events = [startup.payload]
    for number in (1, 2, 3):
        await asyncio.sleep(0.005)
        signer = root.issue_code_signing(f"Signer {number}")
        mark = csms.mark()
        request = signed_update(number, uploads.url("/fw.bin"), signer, "c2ln")
        assert await csms.call("SignedUpdateFirmware", request) == {"status": "InvalidCertificate"}
        events.append(
            (await security_event(csms, "InvalidFirmwareSigningCertificate", mark)).payload
        )
        assert f"CN=Signer {number}" in events[-1]["techInfo"]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(set(stamps)), stamps  # distinct: the window can tell them apart

    # The whole log.
    mark = csms.mark()
    answer = await csms.call("GetLog", get_log(71, uploads.url("/logs/all"), "SecurityLog"))
    assert answer["status"] == "Accepted"
    assert SECURITY_FILE_NAME.match(answer["filename"]), answer
    assert await log_until(csms, mark, 71, "Uploaded") == ["Uploading", "Uploaded"]
    members = open_archive(uploads.uploads["/logs/all"].body, SECURITY_MEMBERS)
    text = members["security-log.txt"].decode()
    assert text.splitlines() == [log_line(e) for e in events]
    assert "StartupOfTheDevice" in text
    meta = json.loads(members["manifest.json"])
    assert meta["charge_point_id"] == "CP001"
    assert meta["window"] == {"start": None, "stop": None}
    assert meta["members"] == {"security-log.txt": len(members["security-log.txt"])}
    await idle(agent)

    # A window from the second event to the third, both ends included.
    mark = csms.mark()
    window = {"oldestTimestamp": stamps[1], "latestTimestamp": stamps[2]}
    request = get_log(72, uploads.url("/logs/window"), "SecurityLog", **window)
    assert (await csms.call("GetLog", request))["status"] == "Accepted"
    assert await log_until(csms, mark, 72, "Uploaded") == ["Uploading", "Uploaded"]
    members = open_archive(uploads.uploads["/logs/window"].body, SECURITY_MEMBERS)
    assert members["security-log.txt"].decode().splitlines() == [
        log_line(events[1]),
        log_line(events[2]),
    ]
    assert json.loads(members["manifest.json"])["window"] == {
        "start": stamps[1],
        "stop": stamps[2],
    }
    await idle(agent)
    assert leftovers(agent) == []


async def test_get_log_to_a_failing_server_reports_upload_failure(
    agent_factory: AgentFactory, csms: LoopbackCsms, uploads: HttpFileServer
) -> None:
    uploads.behaviours["/logs/broken"] = HttpBehaviour(status=500)
    agent = await started(agent_factory, csms)
    mark = csms.mark()
    answer = await csms.call("GetLog", get_log(81, uploads.url("/logs/broken")))
    assert answer["status"] == "Accepted"
    assert await log_until(csms, mark, 81, "UploadFailure") == ["Uploading", "UploadFailure"]
    assert dict(uploads.requests) == {"/logs/broken": 1}  # retries 0: one attempt
    assert uploads.uploads == {}
    await idle(agent)
    assert await log_trigger(csms) == {"status": "Idle"}
    assert leftovers(agent) == []


async def test_a_get_log_during_a_stalled_upload_cancels_it(
    agent_factory: AgentFactory, csms: LoopbackCsms, uploads: HttpFileServer
) -> None:
    # The server takes the request and never answers: the upload is held until canceled.
    uploads.behaviours["/logs/held"] = HttpBehaviour(stall_after=0)
    agent = await started(agent_factory, csms, stall_timeout_s=30.0)

    mark = csms.mark()
    held = await csms.call("GetLog", get_log(91, uploads.url("/logs/held")))
    assert held["status"] == "Accepted"
    await csms.wait_for(LSN, lambda p: p == {"status": "Uploading", "requestId": 91}, since=mark)
    await asyncio.to_thread(uploads.wait_stalled, "/logs/held", WAIT_S)
    assert await log_trigger(csms) == {"status": "Uploading", "requestId": 91}

    second = await csms.call("GetLog", get_log(92, uploads.url("/logs/good"), "SecurityLog"))
    assert second["status"] == "AcceptedCanceled"
    assert SECURITY_FILE_NAME.match(second["filename"]), second
    assert await log_until(csms, mark, 92, "Uploaded") == ["Uploading", "Uploaded"]
    lines = open_archive(uploads.uploads["/logs/good"].body, SECURITY_MEMBERS)["security-log.txt"]
    assert b"StartupOfTheDevice" in lines
    assert "Uploaded" not in log_statuses(csms, mark, 91)
    assert "/logs/held" not in uploads.uploads and uploads.requests["/logs/held"] == 1

    await idle(agent)
    assert await log_trigger(csms) == {"status": "Idle"}
    assert log_statuses(csms, mark, 91)[0] == "Uploading"
    assert leftovers(agent) == []
    assert "Traceback" not in agent.log()
