"""systemd integration without systemd: sd_notify against real datagram sockets, journald
logging against a fake journal.

Notifications are read from an ``AF_UNIX``/``SOCK_DGRAM`` socket the test binds (a path in
a temporary directory, or a name in the abstract namespace), with bounded waits on the
event loop; journal entries are caught where ``systemd-python`` would send them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpagent import systemd
from cpagent.agent import _LoggedConnection
from cpagent.hal.sim import SimHardware
from cpagent.station.model import ConnectorStatus, StationSettings, TransactionStarted
from cpagent.station.station import Station
from cpagent.systemd import Notifier, journal_fields, status_text, stderr_is_journal
from tests.unit.test_station import FakeAuthorizer, FakeOutput

WAIT_S = 30.0


def has_systemd_python() -> bool:
    try:
        importlib.import_module("systemd.journal")
        importlib.import_module("systemd.daemon")
    except ImportError:
        return False
    return True


needs_library = pytest.mark.skipif(not has_systemd_python(), reason="systemd-python missing")


class NotifySocket:
    """The receiving end of ``$NOTIFY_SOCKET``, read through the event loop."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it goes into NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    async def recv(self, timeout: float = WAIT_S) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        return data.decode()

    def pending(self) -> list[str]:
        """Whatever arrived so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tmp_short() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to ~100 bytes."""
    with tempfile.TemporaryDirectory(prefix="cpa-sd-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture
async def notify_path(tmp_short: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(str(tmp_short / "notify.sock"))
    yield sock
    sock.close()


@pytest.fixture
async def notify_abstract() -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(f"@cpagent-test-{uuid.uuid4().hex}")
    yield sock
    sock.close()


# ---------------------------------------------------------------------------- sd_notify


async def test_fallback_sends_ready_status_and_stopping(notify_path: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path.address})
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None
    try:
        notifier.ready("connecting to ws://csms/CP001")
        assert await notify_path.recv() == "READY=1\nSTATUS=connecting to ws://csms/CP001"
        notifier.status("connecting to ws://csms/CP001")  # unchanged: not sent again
        notifier.status("connected to ws://csms/CP001, 1 connector, queue 0")
        notifier.status("connected to ws://csms/CP001, 1 connector, queue 0")
        assert (
            await notify_path.recv() == "STATUS=connected to ws://csms/CP001, 1 connector, queue 0"
        )
        notifier.status("two\nlines")
        assert await notify_path.recv() == "STATUS=two lines"
        notifier.status("connecting: HTTP 500\rREADY=1\x00\u2028!")  # text from outside
        assert await notify_path.recv() == "STATUS=connecting: HTTP 500\\rREADY=1\\x00\\u2028!"
        notifier.stopping()
        assert await notify_path.recv() == "STOPPING=1\nSTATUS=stopping"
        notifier.stopping()
        notifier.status("connected again")
        notifier.ready("ready again")
        assert notifier.notify("STATUS=explicit")
        assert await notify_path.recv() == "STATUS=explicit"  # nothing came in between
    finally:
        notifier.close()


async def test_fallback_reaches_an_abstract_socket(notify_abstract: NotifySocket) -> None:
    notifier = Notifier.from_env(
        {"NOTIFY_SOCKET": notify_abstract.address, "WATCHDOG_USEC": "60000"}
    )
    try:
        notifier.ready()
        assert await notify_abstract.recv() == "READY=1"
        assert notifier.watchdog_interval_s == pytest.approx(0.03)
        watchdog = asyncio.create_task(notifier.run_watchdog())
        try:
            for _ in range(3):
                assert await notify_abstract.recv() == "WATCHDOG=1"
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
    finally:
        notifier.close()


async def test_watchdog_stops_when_the_loop_stalls(notify_path: NotifySocket) -> None:
    """The pings come from the event loop: while it is blocked, none are sent."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path.address, "WATCHDOG_USEC": "40000"})
    watchdog = asyncio.create_task(notifier.run_watchdog())
    try:
        assert await notify_path.recv() == "WATCHDOG=1"
        assert await notify_path.recv() == "WATCHDOG=1"
        notify_path.pending()
        time.sleep(0.2)  # noqa: ASYNC251 - the loop stalls for 10 intervals on purpose
        assert notify_path.pending() == []
        assert await notify_path.recv() == "WATCHDOG=1"  # and it resumes with the loop
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        notifier.close()


async def test_watchdog_pid_for_another_process_disables_the_watchdog(
    notify_path: NotifySocket,
) -> None:
    env = {"NOTIFY_SOCKET": notify_path.address, "WATCHDOG_USEC": "1000000"}
    mine = Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())})
    other = Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    bad = Notifier.from_env({**env, "WATCHDOG_USEC": "soon"})
    try:
        assert mine.watchdog_interval_s == pytest.approx(0.5)
        assert other.watchdog_interval_s is None
        assert bad.watchdog_interval_s is None
        await asyncio.wait_for(other.run_watchdog(), WAIT_S)  # returns at once
        assert other.enabled  # the other notifications still go out
    finally:
        for n in (mine, other, bad):
            n.close()


async def test_nothing_happens_without_notify_socket() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "100000"}):
        notifier = Notifier.from_env(env)
        assert not notifier.enabled
        assert notifier.watchdog_interval_s is None
        assert notifier.notify("READY=1") is False
        notifier.ready("x")
        notifier.status("y")
        notifier.stopping()
        await asyncio.wait_for(notifier.run_watchdog(), WAIT_S)
        await asyncio.wait_for(notifier.run_status(lambda: "z", 0.01), WAIT_S)
        notifier.close()


def test_a_socket_that_is_not_unix_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "not a unix socket" in caplog.text


def test_a_vanished_socket_does_not_raise(tmp_short: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_short / "gone.sock")})
    try:
        assert notifier.notify("READY=1") is False
    finally:
        notifier.close()


async def test_status_is_checked_periodically_and_sent_on_change(
    notify_path: NotifySocket,
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path.address})
    texts = iter(["starting", "starting", None, "connected", "connected", "connected"])
    last = "connected"

    def current() -> str | None:
        return next(texts, last)

    task = asyncio.create_task(notifier.run_status(current, 0.01))
    try:
        assert await notify_path.recv() == "STATUS=starting"
        assert await notify_path.recv() == "STATUS=connected"
        with pytest.raises(TimeoutError):
            await notify_path.recv(timeout=0.1)  # ten more checks, no change, nothing sent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()


@needs_library
async def test_library_notify_is_used_when_installed(
    notify_abstract: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_abstract.address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier.from_env()
    assert notifier.enabled and notifier.watchdog_interval_s == pytest.approx(1.0)
    assert notifier._close is None  # no socket of its own: libsystemd's sd_notify sends
    notifier.ready("up")
    assert await notify_abstract.recv() == "READY=1\nSTATUS=up"
    assert Notifier.from_env(use_library=False)._close is not None


def test_status_texts() -> None:
    base: dict[str, Any] = {
        "url": "ws://csms:9000/ocpp/CP001",
        "connected": True,
        "registered": True,
        "registration": "Accepted",
        "network_up": True,
        "last_error": None,
        "connectors": 2,
        "queue": 0,
    }
    assert status_text(**base) == "connected to ws://csms:9000/ocpp/CP001, 2 connectors, queue 0"
    assert status_text(**{**base, "connectors": 1, "queue": 3}).endswith("1 connector, queue 3")
    assert (
        status_text(**{**base, "registered": False, "registration": "Pending"})
        == "registering at ws://csms:9000/ocpp/CP001: BootNotification Pending"
    )
    down = {**base, "connected": False, "last_error": "[Errno 111] Connection refused"}
    assert status_text(**down) == "connecting: [Errno 111] Connection refused"
    assert status_text(**{**down, "queue": 4}) == (
        "connecting: [Errno 111] Connection refused, queue 4"
    )
    assert status_text(**{**down, "last_error": None}) == (
        "connecting to ws://csms:9000/ocpp/CP001"
    )
    assert status_text(**{**down, "network_up": False}) == "offline (network down)"
    assert status_text(**{**base, "network_up": False, "queue": 2}) == (
        "offline (network down), queue 2"
    )


# ------------------------------------------------------------------------------ journald


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as stream, (tmp_path / "other").open("w") as other:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, stream)
        assert not stderr_is_journal(env, other)  # redirected: the variable was inherited
        assert not stderr_is_journal({}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:"}, stream)


@needs_library
def test_stderr_handler_is_the_journal_only_when_stderr_is_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = importlib.import_module("systemd.journal")
    with (tmp_path / "stderr").open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr("sys.stderr", stream)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        handler = systemd.log_handler_for_stderr()
        assert type(handler) is logging.StreamHandler
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert isinstance(systemd.log_handler_for_stderr(), journal.JournalHandler)


def test_without_the_library_stderr_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails
    assert systemd.journal_handler() is None
    with (tmp_path / "stderr").open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr("sys.stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert type(systemd.log_handler_for_stderr()) is logging.StreamHandler


class FakeJournal:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def send(self, message: str, **fields: Any) -> None:
        self.entries.append({"MESSAGE": message, **fields})


@pytest.fixture
def journal_logger() -> Iterator[tuple[logging.Logger, FakeJournal]]:
    if not has_systemd_python():
        pytest.skip("systemd-python missing")
    fake = FakeJournal()
    handler = systemd.journal_handler(send=fake.send)
    assert handler is not None
    logger = logging.getLogger(f"cpagent.test.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, fake
    logger.removeHandler(handler)


def test_structured_fields_reach_the_journal(
    journal_logger: tuple[logging.Logger, FakeJournal],
) -> None:
    logger, fake = journal_logger
    logger.info(
        "connector %d: session %d started",
        1,
        7,
        extra=journal_fields(connector=1, local_transaction_id=7, transaction_id=None),
    )
    logger.debug(
        "-> frame", extra=journal_fields(action="Heartbeat", message_id="a-b-c", connector=None)
    )
    first, second = fake.entries
    assert first["MESSAGE"] == "connector 1: session 7 started"
    assert first["CONNECTOR"] == 1
    assert first["LOCAL_TRANSACTION_ID"] == 7
    assert "TRANSACTION_ID" not in first
    assert first["SYSLOG_IDENTIFIER"] == "cpagent"
    assert first["PRIORITY"] == "6"
    assert first["LOGGER"] == logger.name
    # journald would drop the record's lower-case attributes; they are not even sent
    assert all(key == key.upper() for key in first), sorted(first)
    assert "CODE_ARGS" not in first  # the arguments are in the message already
    assert second["OCPP_ACTION"] == "Heartbeat"
    assert second["OCPP_MESSAGE_ID"] == "a-b-c"
    assert second["PRIORITY"] == "7"
    assert "CONNECTOR" not in second


def test_a_traceback_goes_into_the_message(
    journal_logger: tuple[logging.Logger, FakeJournal],
) -> None:
    logger, fake = journal_logger
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed", extra=journal_fields(connector=2))
    (entry,) = fake.entries
    assert entry["MESSAGE"].startswith("it failed\nTraceback")
    assert "RuntimeError: boom" in entry["MESSAGE"]
    assert entry["PRIORITY"] == "3" and entry["CONNECTOR"] == 2
    assert "RuntimeError: boom" in entry["EXCEPTION_TEXT"]
    assert "EXCEPTION_INFO" not in entry


def test_text_from_outside_is_escaped_in_the_message_and_the_fields(
    journal_logger: tuple[logging.Logger, FakeJournal],
) -> None:
    """A message id, an action and an error text from the CSMS carry a line break, NUL and a
    line separator: the journal gets them escaped, as message arguments and as fields."""
    logger, fake = journal_logger
    message_id = "m-1\nFORGED\x00\u2028"
    logger.warning(
        "CSMS %s %s refused: %s",
        "Reset",
        message_id,
        ValueError("bad\r\nFORGED"),
        extra=journal_fields(connector=1, action="Re\x1bset", message_id=message_id),
    )
    (entry,) = fake.entries
    assert entry["MESSAGE"] == "CSMS Reset m-1\\nFORGED\\x00\\u2028 refused: bad\\r\\nFORGED"
    assert entry["OCPP_MESSAGE_ID"] == "m-1\\nFORGED\\x00\\u2028"
    assert entry["OCPP_ACTION"] == "Re\\x1bset"
    assert entry["CONNECTOR"] == 1


def test_the_agents_own_lines_stay_and_an_exception_message_is_one_line(
    journal_logger: tuple[logging.Logger, FakeJournal],
) -> None:
    logger, fake = journal_logger
    try:
        try:
            raise RuntimeError("inner\nFORGED-INNER")
        except RuntimeError as err:
            raise ValueError("idTag 'x\nFORGED'") from err
    except ValueError:
        logger.exception("first line\nsecond line about %s", "a\nb")
    (entry,) = fake.entries
    message = entry["MESSAGE"]
    assert message.startswith("first line\nsecond line about a\\nb\nTraceback"), message
    assert "\nValueError: idTag 'x\\nFORGED'\n" in message + "\n"
    assert "\nRuntimeError: inner\\nFORGED-INNER\n" in message
    assert "direct cause" in message
    assert not [line for line in message.splitlines() if line.startswith("FORGED")]
    assert "idTag 'x\\nFORGED'" in entry["EXCEPTION_TEXT"]


@needs_library
def test_fields_arrive_on_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real ``systemd.journal.send``, down to the FIELD=value lines journald
    gets (``sendv`` is where the library hands them to sd_journal_sendv)."""
    journal = importlib.import_module("systemd.journal")
    lines: list[tuple[str, ...]] = []
    monkeypatch.setattr(journal, "sendv", lambda *args: lines.append(args))
    handler = systemd.journal_handler()
    assert handler is not None
    logger = logging.getLogger(f"cpagent.test.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    try:
        logger.warning(
            "x",
            extra=journal_fields(
                connector=1, transaction_id=42, action="StartTransaction", message_id="m-1"
            ),
        )
    finally:
        logger.removeHandler(handler)
    (args,) = lines
    for line in (
        "MESSAGE=x",
        "CONNECTOR=1",
        "TRANSACTION_ID=42",
        "OCPP_ACTION=StartTransaction",
        "OCPP_MESSAGE_ID=m-1",
        "SYSLOG_IDENTIFIER=cpagent",
        "PRIORITY=4",
    ):
        assert line in args, args


# ------------------------------------------------------------------- fields at call sites


def test_traffic_lines_name_action_and_message_id() -> None:
    conn = _LoggedConnection(None, str)  # type: ignore[arg-type]
    assert conn._fields('[2,"id-1","BootNotification",{}]') == {
        "OCPP_MESSAGE_ID": "id-1",
        "OCPP_ACTION": "BootNotification",
    }
    assert conn._fields('[3, "id-1", {"status": "Accepted"}]') == {
        "OCPP_MESSAGE_ID": "id-1",
        "OCPP_ACTION": "BootNotification",
    }
    assert conn._fields('[2,"r-9","Reset",{"type":"Soft"}]')["OCPP_ACTION"] == "Reset"
    assert conn._fields('[4,"r-9","NotSupported","",{}]') == {
        "OCPP_MESSAGE_ID": "r-9",
        "OCPP_ACTION": "Reset",
    }
    assert conn._fields('[3,"unknown",{}]') == {"OCPP_MESSAGE_ID": "unknown"}
    assert conn._fields("not json") == {}
    assert conn._fields(b"\x00") == {}
    for n in range(200):  # answers that never come do not pile up
        conn._fields(f'[2,"n{n}","Heartbeat",{{}}]')
    assert len(conn._actions) <= 64


async def test_station_logs_carry_connector_and_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hw = SimHardware(2)
    out, auth = FakeOutput(), FakeAuthorizer()
    station = Station(hw, out, auth, StationSettings())
    await station.start(availability={}, unfinished=[])
    task = asyncio.create_task(station.run())
    caplog.set_level(logging.INFO, logger="cpagent.station")
    try:
        hw.plug(2)
        await out.wait_status(2, ConnectorStatus.PREPARING)
        hw.present_card("TAG-1")
        started = await out.wait_for(TransactionStarted)
        await out.wait_status(2, ConnectorStatus.CHARGING)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert started.connector_id == 2
    by_message = {r.getMessage(): r for r in caplog.records}
    start = by_message["connector 2: session 1 started for TAG-1 at 0 Wh"]
    assert start.CONNECTOR == 2  # type: ignore[attr-defined]
    assert start.LOCAL_TRANSACTION_ID == 1  # type: ignore[attr-defined]
    charging = by_message["connector 2: Charging"]
    assert charging.CONNECTOR == 2  # type: ignore[attr-defined]
