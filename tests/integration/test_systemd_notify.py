"""``cpagent run`` under a stand-in for systemd: ``$NOTIFY_SOCKET`` names a datagram socket
the test binds, ``$WATCHDOG_USEC`` asks for watchdog pings.

Every agent runs twice over: with ``systemd-python`` sending (libsystemd's sd_notify) and
with the library hidden, so the agent's own datagram code sends. Waits are bounded reads of
the socket through the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from tests.integration.conftest import CPAGENT, AgentProcess, reap, run_cli, write_config

WATCHDOG_USEC = 200_000  # pings every 0.1 s
WAIT_S = 30.0
HIDE_SYSTEMD_PYTHON = (
    "import sys; sys.modules['systemd'] = None; "
    "from cpagent.cli import main; sys.exit(main(sys.argv[1:]))"
)
JOURNAL_CAPTURE = (
    # systemd.journal.send hands the FIELD=value lines to sendv (sd_journal_sendv); here
    # they go to a file instead of /run/systemd/journal/socket.
    "import json, sys; import systemd.journal as j; out = open(sys.argv[1], 'a', buffering=1); "
    "j.sendv = lambda *lines: out.write(json.dumps(lines) + '\\n'); "
    "from cpagent.cli import main; sys.exit(main(sys.argv[2:]))"
)
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


class NotifySocket:
    """systemd's end of ``$NOTIFY_SOCKET``. Like systemd, it reads every datagram as it comes
    (a reader task): libsystemd's sd_notify blocks its sender when the socket's queue is full
    (``net.unix.max_dgram_qlen``, 10 by default, 512 where systemd runs)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[str] = []
        self._cursor = 0  # messages before it were looked at by wait_for or skipped
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="notify-reader")

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append(data.decode())
            self._arrived.set()

    def flush(self) -> None:
        """Take in what is queued on the socket now, without waiting for the reader."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append(data.decode())

    def skip(self) -> list[str]:
        """Everything not looked at yet, now marked as looked at."""
        self.flush()
        new, self._cursor = self.messages[self._cursor :], len(self.messages)
        return new

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        """The next message that matches, looking at (and passing) the ones before it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._cursor < len(self.messages):
                text = self.messages[self._cursor]
                self._cursor += 1
                if predicate(text):
                    return text
            self._arrived.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._arrived.wait()
            except TimeoutError:
                raise AssertionError(f"no matching notification in {self.messages}") from None

    def statuses(self) -> list[str]:
        return [
            line[len("STATUS=") :]
            for text in self.messages
            for line in text.split("\n")
            if line.startswith("STATUS=")
        ]

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        self.sock.close()


def is_ready(text: str) -> bool:
    return "READY=1" in text.split("\n")


def assignments(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.split("\n") if "=" in line)


class NotifiedAgent(AgentProcess):
    """An AgentProcess started with a systemd-like environment."""

    env: dict[str, str]
    hide_library: bool = False
    argv: list[str] | None = None

    async def start(self) -> None:
        argv = self.argv or (
            [sys.executable, "-c", HIDE_SYSTEMD_PYTHON] if self.hide_library else [CPAGENT]
        )
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            "run",
            "--config",
            str(self.config_path),
            stdout=log,
            stderr=log,
            env=self.env,
            cwd=self.workdir,  # not the checkout: its systemd/ folder is no package to import
            start_new_session=True,
        )
        log.close()


@pytest.fixture(params=["libsystemd", "builtin"])
def sender(request: pytest.FixtureRequest) -> str:
    if request.param == "libsystemd":
        try:
            import systemd.daemon  # noqa: F401
        except ImportError:
            pytest.skip("systemd-python is not installed")
    return str(request.param)


@pytest.fixture
async def notify(workdir: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(str(workdir / "notify.sock"))
    yield sock
    await sock.close()


@pytest.fixture
async def make_agent(
    workdir: Path, csms: LoopbackCsms, sender: str, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., NotifiedAgent]]:
    """``make(notify_socket=..., watchdog_usec=..., **AgentProcess kwargs)``; stopped at the
    end (and its log shown when the test failed)."""
    made: list[NotifiedAgent] = []

    def make(
        name: str = "a",
        *,
        notify_socket: str | None = None,
        watchdog_usec: int | None = WATCHDOG_USEC,
        **kwargs: Any,
    ) -> NotifiedAgent:
        path = workdir / name
        path.mkdir(exist_ok=True)
        agent = NotifiedAgent(path, kwargs.pop("csms_url", csms.url), **kwargs)
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        if notify_socket is not None:
            env["NOTIFY_SOCKET"] = notify_socket
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        agent.env = env
        agent.hide_library = sender == "builtin"
        made.append(agent)
        return agent

    yield make
    await reap(made, request)


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


# ------------------------------------------------------------------------------- tests


async def test_ready_status_watchdog_and_stopping(
    make_agent: Callable[..., NotifiedAgent], csms: LoopbackCsms, notify: NotifySocket
) -> None:
    # The CSMS holds its answer to the BootNotification until the agent said it is ready.
    release_boot = asyncio.Event()

    async def boot(_payload: dict[str, Any]) -> dict[str, Any]:
        await release_boot.wait()
        return csms.default_reply("BootNotification", _payload)

    csms.responders["BootNotification"] = boot
    agent = make_agent(notify_socket=notify.address, connectors=2)
    await agent.start()

    # READY while the boot is still unanswered: it does not wait for the CSMS.
    ready = await notify.wait_for(is_ready)
    assert (agent.data_dir / "cpagent.db").exists()  # the store is open by then
    assert assignments(ready)["STATUS"].startswith(("connecting", "registering at"))
    release_boot.set()

    url = f"{csms.url}/CP001"
    connected = f"STATUS=connected to {url}, 2 connectors, queue 0"
    await notify.wait_for(lambda t: t == connected)

    # Watchdog pings keep coming (their interval, half of WATCHDOG_USEC, is test_systemd's).
    for _ in range(3):
        await notify.wait_for(lambda t: t == "WATCHDOG=1")

    # The status is sent when it changes, not with every check or ping.
    assert notify.statuses().count(connected[len("STATUS=") :]) == 1

    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    stopping = await notify.wait_for(lambda t: "STOPPING=1" in t.split("\n"))
    assert assignments(stopping)["STATUS"] == "stopping"
    assert await agent.wait_exit() == 0
    after = notify.skip()
    assert all("READY=1" not in t and "STATUS=" not in t for t in after), after
    assert sum(map(is_ready, notify.messages)) == 1


async def test_ready_without_a_csms_and_the_status_follows_the_link(
    make_agent: Callable[..., NotifiedAgent], notify: NotifySocket, workdir: Path
) -> None:
    # Nothing listens at this address: the agent is ready all the same (it can charge).
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    agent = make_agent(notify_socket=notify.address, csms_url=f"ws://127.0.0.1:{port}/ocpp")
    await agent.start()
    await notify.wait_for(is_ready)
    failing = await notify.wait_for(lambda t: t.startswith("STATUS=connecting: "))
    assert "refused" in failing.lower() or "connect" in failing.lower(), failing
    await agent.sim("network", "down")
    # The queue holds the start-up security event the CSMS has not had yet.
    await notify.wait_for(lambda t: t == "STATUS=offline (network down), queue 1")
    assert await agent.stop() == 0


async def test_watchdog_pings_stop_while_the_agent_is_frozen(
    make_agent: Callable[..., NotifiedAgent], notify: NotifySocket
) -> None:
    """The pings come from the agent's event loop: a stopped process sends none (systemd
    would restart it after WatchdogSec), and they resume when it runs again."""
    agent = make_agent(notify_socket=notify.address)
    await agent.start()
    await notify.wait_for(is_ready)
    await notify.wait_for(lambda t: t == "WATCHDOG=1")
    assert agent.proc is not None
    pid = agent.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(1000):  # stopping takes effect at once; bounded anyway
            if proc_state(pid) == "T":
                break
            await asyncio.sleep(0.001)
        assert proc_state(pid) == "T"
        notify.skip()  # sent before it stopped
        with pytest.raises(AssertionError, match="no matching notification"):
            await notify.wait_for(lambda _: True, timeout=0.5)  # five missed intervals
    finally:
        os.kill(pid, signal.SIGCONT)
    await notify.wait_for(lambda t: t == "WATCHDOG=1")
    assert await agent.stop() == 0


async def test_a_reset_restarts_inside_and_says_ready_again(
    make_agent: Callable[..., NotifiedAgent], csms: LoopbackCsms, notify: NotifySocket
) -> None:
    agent = make_agent(notify_socket=notify.address)
    await agent.start()
    connected = f"STATUS=connected to {csms.url}/CP001, 1 connector, queue 0"
    await notify.wait_for(lambda t: t == connected)
    assert await csms.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    await notify.wait_for(lambda t: t == "STATUS=restarting (Soft reset)")
    again = await notify.wait_for(is_ready)
    assert "STOPPING=1" not in again
    await notify.wait_for(lambda t: t == connected)
    assert not any("STOPPING=1" in t or "RELOADING=1" in t for t in notify.messages)
    assert await agent.stop() == 0


async def test_a_restart_when_idle_re_executes_and_notifies_ready_and_watchdog_again(
    make_agent: Callable[..., NotifiedAgent], csms: LoopbackCsms, notify: NotifySocket
) -> None:
    agent = make_agent(notify_socket=notify.address)
    await agent.start()
    connected = f"STATUS=connected to {csms.url}/CP001, 1 connector, queue 0"
    await notify.wait_for(lambda t: t == connected)
    result = await run_cli("restart", "--when-idle", "--config", str(agent.config_path))
    assert result.returncode == 0, result
    await notify.wait_for(lambda t: t == "STATUS=restarting into the installed version")
    again = await notify.wait_for(is_ready)  # from the new image: it found $NOTIFY_SOCKET
    assert "STOPPING=1" not in again
    await notify.wait_for(lambda t: t == "WATCHDOG=1")  # and $WATCHDOG_USEC
    await notify.wait_for(lambda t: t == connected)
    assert agent.proc is not None and agent.proc.returncode is None
    assert not any("STOPPING=1" in t or "RELOADING=1" in t for t in notify.messages)
    assert agent.log().count(" up: ws://") == 2
    assert await agent.stop() == 0


async def test_without_notify_socket_nothing_changes(
    make_agent: Callable[..., NotifiedAgent], csms: LoopbackCsms
) -> None:
    agent = make_agent(notify_socket=None, watchdog_usec=WATCHDOG_USEC)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    state = await agent.status()
    assert state["csms"]["connected"]
    assert await agent.stop() == 0
    assert "Traceback" not in agent.log()


async def test_a_broken_config_exits_2_with_the_problem_and_no_ready(
    workdir: Path, notify: NotifySocket, sender: str
) -> None:
    config = workdir / "broken.toml"
    write_config(config, {"charge_point": {"id": "CP/1", "vendor": "V", "model": "M"}})
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    argv = [sys.executable, "-c", HIDE_SYSTEMD_PYTHON] if sender == "builtin" else [CPAGENT]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 2
    assert "Traceback" not in err.decode()
    assert "charge_point" in err.decode() or "csms" in err.decode(), err
    assert not any(map(is_ready, notify.skip()))
    assert out == b"" or b"READY" not in out


async def test_abstract_notify_socket(make_agent: Callable[..., NotifiedAgent]) -> None:
    sock = NotifySocket(f"@cpagent-it-{uuid.uuid4().hex}")
    try:
        agent = make_agent(notify_socket=sock.address, watchdog_usec=None)
        await agent.start()
        ready = await sock.wait_for(is_ready)
        assert "STATUS" in assignments(ready)
        assert await agent.stop() == 0
        sock.flush()
        assert any("STOPPING=1" in t for t in sock.messages)
    finally:
        await sock.close()


async def test_run_cli_still_works_with_notify_socket_in_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, notify: NotifySocket
) -> None:
    """Commands other than ``run`` never notify (a ``cpagent status`` in an ExecStartPost,
    say, must not make systemd think the service changed state)."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    result = await run_cli("check-config", "--config", str(workdir / "missing.toml"))
    assert result.returncode == 2
    assert notify.skip() == []


async def test_journal_gets_structured_fields_from_a_running_agent(
    make_agent: Callable[..., NotifiedAgent], csms: LoopbackCsms, sender: str
) -> None:
    """stderr is "the journal" (``$JOURNAL_STREAM`` names it): log lines go through
    ``JournalHandler`` with CONNECTOR, LOCAL_TRANSACTION_ID, TRANSACTION_ID, OCPP_ACTION and
    OCPP_MESSAGE_ID set where they are known; none go to stderr as text. Without
    ``systemd-python`` they go to stderr as before (and reach the journal as plain lines)."""
    agent = make_agent(watchdog_usec=None)
    capture = agent.workdir / "journal.jsonl"
    agent.log_path.touch()
    st = os.stat(agent.log_path)
    agent.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    if sender == "libsystemd":
        agent.argv = [sys.executable, "-c", JOURNAL_CAPTURE, str(capture)]
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    await agent.sim("tag", "TAG-1")
    await csms.wait_for("StartTransaction", since=mark)
    await agent.wait_status(lambda s: s["connectors"][0]["transaction"]["id"] == 1)
    await agent.sim("tag", "TAG-1")
    await csms.wait_for("StopTransaction", since=mark)
    assert await agent.stop() == 0
    if sender == "builtin":
        assert not capture.exists()
        assert " INFO    cpagent.station.station: connector 1: session 1 started" in agent.log()
        return

    entries = [dict(line.split("=", 1) for line in json.loads(text)) for text in capture.open()]
    assert entries and all(e["SYSLOG_IDENTIFIER"] == "cpagent" for e in entries)

    def one(message_start: str) -> dict[str, str]:
        found = [e for e in entries if e["MESSAGE"].startswith(message_start)]
        assert found, [e["MESSAGE"] for e in entries]
        return found[0]

    started = one("connector 1: session 1 started")
    assert started["CONNECTOR"] == "1" and started["LOCAL_TRANSACTION_ID"] == "1"
    assert started["PRIORITY"] == "6" and started["LOGGER"] == "cpagent.station.station"
    stopped = one("connector 1: session 1 stopped")
    assert stopped["TRANSACTION_ID"] == "1"  # the CSMS's id, known by then
    confirmed = one("StartTransaction 1 confirmed")
    assert confirmed["OCPP_ACTION"] == "StartTransaction" and confirmed["TRANSACTION_ID"] == "1"
    sent = one('-> [2,"')
    assert sent["LOGGER"] == "cpagent.traffic" and sent["PRIORITY"] == "7"
    calls = [
        e
        for e in entries
        if e.get("OCPP_ACTION") == "StartTransaction" and e["LOGGER"] == "cpagent.traffic"
    ]
    assert len(calls) == 2  # the CALL and its CALLRESULT, tied by the message id
    assert len({e["OCPP_MESSAGE_ID"] for e in calls}) == 1
    assert "session 1 started" not in agent.log()  # nothing went to stderr as text
