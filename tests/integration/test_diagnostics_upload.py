"""GetDiagnostics end to end: the real ``cpagent run`` process, the loopback CSMS and loopback
HTTP/FTP file servers (:mod:`cpagent.testing.fileservers`).

The agent names the file in its answer, reports Uploading, builds the archive (logs from
``[logging] file`` in the requested window, the config with its secrets redacted, a store
summary, a manifest), uploads it (HTTP PUT or multipart POST, FTP STOR) with the requested
retries and reports Uploaded or UploadFailed. The file servers' blocking waits run through
``asyncio.to_thread``; every other wait is the CSMS's event-driven ``wait_for``.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S
from cpagent.testing.fileservers import FtpFileServer, HttpBehaviour, HttpFileServer
from cpagent.timeutil import iso
from tests.integration.conftest import AgentProcess
from tests.integration.test_session import booted, start_session

AgentFactory = Callable[..., AgentProcess]

CSMS_PASSWORD = "s3cret-pw"
FTP_PASSWORD = "ftp-pw-7781"
FILE_NAME = re.compile(r"^CP001-diagnostics-(\d{8}T\d{6}Z)\.tar\.gz$")
MEMBERS = ["logs.txt", "config.toml", "store.json", "manifest.json"]
DSN = "DiagnosticsStatusNotification"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def http_server() -> Iterator[HttpFileServer]:
    # A sync fixture: close() joins the server's threads outside the event loop.
    with HttpFileServer() as server:
        yield server


@pytest.fixture
def ftp_server() -> Iterator[FtpFileServer]:
    with FtpFileServer(password=FTP_PASSWORD) as server:
        yield server


# ----------------------------------------------------------------------------- helpers


def log_file(agent: AgentProcess) -> Path:
    return agent.workdir / "logs" / "cpagent.log"


async def started(agent_factory: AgentFactory, csms: LoopbackCsms, **firmware: Any) -> AgentProcess:
    """A booted agent with a CSMS password, a log file and ``[firmware]`` settings."""
    csms.password = CSMS_PASSWORD
    agent = agent_factory(csms={"password": CSMS_PASSWORD})
    agent.tables["logging"]["file"] = str(log_file(agent))
    agent.tables["firmware"] = {"stall_timeout_s": 5.0, **firmware}
    agent.write()
    await agent.start()
    await booted(csms, 1)
    return agent


async def get_diagnostics(csms: LoopbackCsms, location: str, **extra: Any) -> str:
    """Send GetDiagnostics; check the answered file name (pattern and time) and return it."""
    before = datetime.now(UTC).replace(microsecond=0)
    answer = await csms.call("GetDiagnostics", {"location": location, **extra})
    after = datetime.now(UTC)
    assert set(answer) == {"fileName"}, answer
    name: str = answer["fileName"]
    stamp = name_time(name)
    assert before <= stamp <= after, (name, before, after)
    return name


def name_time(name: str) -> datetime:
    """The UTC time in an archive name (whole seconds)."""
    match = FILE_NAME.match(name)
    assert match, name
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def statuses(csms: LoopbackCsms, since: int) -> list[str]:
    return [p["status"] for p in csms.payloads(DSN, since=since)]


async def wait_diagnostics(csms: LoopbackCsms, status: str, since: int) -> None:
    await csms.wait_for(DSN, lambda p: p["status"] == status, since=since)


async def trigger_diagnostics_status(csms: LoopbackCsms) -> str:
    """TriggerMessage DiagnosticsStatusNotification; the status it brings."""
    mark = csms.mark()
    answer = await csms.call("TriggerMessage", {"requestedMessage": DSN})
    assert answer == {"status": "Accepted"}
    status: str = (await csms.wait_for(DSN, since=mark))["status"]
    return status


def open_archive(data: bytes, expected: list[str] = MEMBERS) -> dict[str, bytes]:
    """The members of an uploaded tar.gz, checked to be exactly ``expected`` (by default
    the four of a diagnostics archive)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == expected
        members: dict[str, bytes] = {}
        for info in tar.getmembers():
            assert info.isfile(), info
            extracted = tar.extractfile(info)
            assert extracted is not None
            members[info.name] = extracted.read()
    return members


def manifest(members: dict[str, bytes]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(members["manifest.json"])
    assert loaded["charge_point_id"] == "CP001"
    sizes = {name: len(members[name]) for name in MEMBERS[:3]}
    assert loaded["members"] == sizes
    return loaded


async def settled(agent: AgentProcess, csms: LoopbackCsms, since: int) -> list[str]:
    """Every diagnostics status since ``since`` once the upload is over: a triggered status
    queues behind the durable ones, so when it arrives all of those have been delivered."""
    await idle(agent)
    assert await trigger_diagnostics_status(csms) == "Idle"
    return statuses(csms, since)


async def idle(agent: AgentProcess) -> dict[str, Any]:
    """Wait until the agent's own status says no upload runs (the archive is removed then)."""
    return await agent.wait_status(lambda s: s["diagnostics"]["status"] == "Idle")


def leftovers(agent: AgentProcess) -> list[str]:
    """Files left in the agent's diagnostics directory (archives, spools, temp files)."""
    directory = agent.data_dir / "diagnostics"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ------------------------------------------------------------------------------- tests


async def test_http_put_upload_of_a_session_with_window_and_redaction(
    agent_factory: AgentFactory, csms: LoopbackCsms, http_server: HttpFileServer
) -> None:
    agent = await started(agent_factory, csms)
    # The window opens after the boot: the "up" line and the BootNotification are left out.
    window_start = datetime.now(UTC)
    await start_session(agent, csms, "TAG-DIAG")
    window_stop = datetime.now(UTC) + timedelta(seconds=60)

    mark = csms.mark()
    name = await get_diagnostics(
        csms,
        http_server.url("/diag/upload"),
        retries=0,
        retryInterval=0,
        startTime=iso(window_start),
        stopTime=iso(window_stop),
    )
    await wait_diagnostics(csms, "Uploaded", mark)
    assert statuses(csms, mark) == ["Uploading", "Uploaded"]

    assert dict(http_server.requests) == {"/diag/upload": 1}
    upload = http_server.uploads["/diag/upload"]
    assert upload.method == "PUT"
    assert upload.content_type == "application/octet-stream"
    members = open_archive(upload.body)

    logs = members["logs.txt"].decode()
    assert logs.startswith("# cpagent ") and "diagnostics for CP001" in logs.splitlines()[0]
    assert f"# logs from: {log_file(agent)}" in logs
    assert f"# window: {iso(window_start)} to {iso(window_stop)}" in logs
    assert "StartTransaction 1 confirmed: transactionId 1" in logs, logs
    assert "TAG-DIAG" in logs
    assert " up: " not in logs, "a line from before startTime is in the window"
    entries = [line for line in logs.splitlines() if not line.startswith("#")]
    assert entries and re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", entries[0])

    config = members["config.toml"].decode()
    assert 'password = "***"' in config
    assert CSMS_PASSWORD not in config
    assert 'id = "CP001"' in config and csms.url in config  # the rest is kept as it was

    store = json.loads(members["store.json"])
    assert isinstance(store["queue_depth"], int) and store["queue_depth"] >= 0
    assert store["failed_count"] == 0
    (open_tx,) = store["open_transactions"]  # the session is still charging
    assert (open_tx["id_tag"], open_tx["connector_id"]) == ("TAG-DIAG", 1)

    man = manifest(members)
    assert man["window"] == {"start": iso(window_start), "stop": iso(window_stop)}
    assert man["sources"]["logs"]["kind"] == "file"
    assert man["sources"]["logs"]["files"] == [str(log_file(agent))]
    assert man["created"].startswith(name_time(name).strftime("%Y-%m-%dT%H:%M:%S."))

    assert await settled(agent, csms, mark) == ["Uploading", "Uploaded", "Idle"]
    assert leftovers(agent) == []
    assert CSMS_PASSWORD not in agent.log()
    assert CSMS_PASSWORD not in log_file(agent).read_text()


async def test_http_post_multipart_carries_the_answered_file_name(
    agent_factory: AgentFactory, csms: LoopbackCsms, http_server: HttpFileServer
) -> None:
    agent = await started(agent_factory, csms, diagnostics_http_method="POST")
    mark = csms.mark()
    name = await get_diagnostics(csms, http_server.url("/diag/post"), retries=0)
    await wait_diagnostics(csms, "Uploaded", mark)
    assert statuses(csms, mark) == ["Uploading", "Uploaded"]

    assert dict(http_server.requests) == {"/diag/post": 1}
    upload = http_server.uploads["/diag/post"]
    assert upload.method == "POST"
    assert (upload.content_type or "").startswith("multipart/form-data; boundary=")
    assert upload.filename == name
    members = open_archive(upload.body)
    man = manifest(members)
    assert man["window"] == {"start": None, "stop": None}
    assert " up: " in members["logs.txt"].decode()  # no startTime: the whole log
    assert await settled(agent, csms, mark) == ["Uploading", "Uploaded", "Idle"]
    assert leftovers(agent) == []


async def test_ftp_upload_to_a_directory_appends_the_file_name(
    agent_factory: AgentFactory, csms: LoopbackCsms, ftp_server: FtpFileServer
) -> None:
    (ftp_server.root / "diag").mkdir()
    agent = await started(agent_factory, csms)
    location = ftp_server.url("diag/")
    assert FTP_PASSWORD in location
    mark = csms.mark()
    name = await get_diagnostics(csms, location, retries=0)
    await wait_diagnostics(csms, "Uploaded", mark)
    assert statuses(csms, mark) == ["Uploading", "Uploaded"]

    uploaded = sorted(p.name for p in (ftp_server.root / "diag").iterdir())
    assert uploaded == [name]
    assert sorted(p.name for p in ftp_server.root.iterdir()) == ["diag"]
    members = open_archive((ftp_server.root / "diag" / name).read_bytes())
    manifest(members)
    assert await settled(agent, csms, mark) == ["Uploading", "Uploaded", "Idle"]
    assert leftovers(agent) == []
    # The location's password is redacted wherever the agent names the location.
    assert FTP_PASSWORD not in agent.log()
    assert "cpagent:***@" in log_file(agent).read_text()


async def test_failed_upload_is_retried_reported_and_the_agent_carries_on(
    agent_factory: AgentFactory, csms: LoopbackCsms, http_server: HttpFileServer
) -> None:
    http_server.behaviours["/diag/broken"] = HttpBehaviour(status=500)
    agent = await started(agent_factory, csms)

    mark = csms.mark()
    await get_diagnostics(csms, http_server.url("/diag/broken"), retries=1, retryInterval=0)
    await wait_diagnostics(csms, "UploadFailed", mark)
    assert statuses(csms, mark) == ["Uploading", "UploadFailed"]
    assert dict(http_server.requests) == {"/diag/broken": 2}  # the first try and one retry
    assert http_server.uploads == {}
    text = log_file(agent).read_text()
    assert "upload 1 of 2" in text and "upload 2 of 2" in text and "HTTP 500" in text

    # Still connected and answering.
    beat = csms.mark()
    assert await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
        "status": "Accepted"
    }
    await csms.wait_for("Heartbeat", since=beat)
    state = await idle(agent)
    assert state["csms"]["connected"] is True
    assert leftovers(agent) == []

    # And the next request, to a good location, succeeds.
    again = csms.mark()
    await get_diagnostics(csms, http_server.url("/diag/good"), retries=0)
    await wait_diagnostics(csms, "Uploaded", again)
    assert statuses(csms, again) == ["Uploading", "Uploaded"]
    assert http_server.requests["/diag/good"] == 1
    open_archive(http_server.uploads["/diag/good"].body)
    assert await settled(agent, csms, mark) == [
        *("Uploading", "UploadFailed"),
        *("Uploading", "Uploaded"),
        "Idle",
    ]


async def test_trigger_reports_idle_then_uploading_during_a_stalled_upload(
    agent_factory: AgentFactory, csms: LoopbackCsms, http_server: HttpFileServer
) -> None:
    # The server takes the request but never answers: the upload fails once nothing has
    # moved for stall_timeout_s, which is also how long the agent is busy.
    http_server.behaviours["/diag/slow"] = HttpBehaviour(stall_after=0)
    agent = await started(agent_factory, csms, stall_timeout_s=10.0)
    assert await trigger_diagnostics_status(csms) == "Idle"

    mark = csms.mark()
    name = await get_diagnostics(csms, http_server.url("/diag/slow"), retries=0)
    await wait_diagnostics(csms, "Uploading", mark)
    await asyncio.to_thread(http_server.wait_stalled, "/diag/slow", WAIT_S)

    # Busy: a trigger says Uploading, a second request gets no file name.
    assert await trigger_diagnostics_status(csms) == "Uploading"
    second = await csms.call("GetDiagnostics", {"location": http_server.url("/diag/other")})
    assert second == {}

    await wait_diagnostics(csms, "UploadFailed", mark)
    assert statuses(csms, mark) == ["Uploading", "Uploading", "UploadFailed"]
    assert "no progress for 10 s" in log_file(agent).read_text()
    assert dict(http_server.requests) == {"/diag/slow": 1}  # the busy request sent nothing
    assert http_server.uploads == {}
    after = await settled(agent, csms, mark)
    assert after == ["Uploading", "Uploading", "UploadFailed", "Idle"]
    assert leftovers(agent) == []
    assert name.endswith(".tar.gz")


async def test_a_request_refused_while_busy_does_not_log_the_location_password(
    agent_factory: AgentFactory, csms: LoopbackCsms, http_server: HttpFileServer
) -> None:
    # Held busy by a stalled server, released by the test: no timing involved.
    http_server.behaviours["/diag/held"] = HttpBehaviour(stall_after=0)
    agent = await started(agent_factory, csms)
    mark = csms.mark()
    await get_diagnostics(csms, http_server.url("/diag/held"), retries=0)
    await asyncio.to_thread(http_server.wait_stalled, "/diag/held", WAIT_S)

    busy = http_server.url("/diag/other").replace("//", "//diag:busy-pw-55@", 1)
    assert await csms.call("GetDiagnostics", {"location": busy}) == {}
    http_server.release_stalls()
    await wait_diagnostics(csms, "Uploaded", mark)
    open_archive(http_server.uploads["/diag/held"].body)
    assert "/diag/other" not in http_server.requests
    await idle(agent)
    assert "busy-pw-55" not in agent.log()
