"""Integration harness: the real ``cpagent run`` process against the loopback CSMS.

Each test gets a fresh data_dir and config file; the charger is driven with the
real ``cpagent sim`` command and inspected with ``cpagent status --json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import WAIT_S
from cpagent.testing.pki import TestCa

CPAGENT = str(Path(sys.executable).parent / "cpagent")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """``key`` as TOML writes it: bare when it can be, else quoted (``"Variable:instance"``)."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def write_config(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(*args: str, timeout: float = 60.0) -> Result:
    proc = await asyncio.create_subprocess_exec(
        CPAGENT, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class AgentProcess:
    """One ``cpagent run`` process with its own config, data_dir and control socket."""

    def __init__(
        self,
        workdir: Path,
        csms_url: str,
        *,
        connectors: int = 1,
        ocpp16: dict[str, Any] | None = None,
        csms: dict[str, Any] | None = None,
        sim: dict[str, Any] | None = None,
        cp_id: str = "CP001",
        ocpp201: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``ocpp201`` (device-model values by component, possibly empty) makes it an
        OCPP 2.0.1 agent; else it speaks 1.6 with ``ocpp16``."""
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "cpagent.toml"
        self.log_path = workdir / "agent.log"
        self.cp_id = cp_id
        self.proc: asyncio.subprocess.Process | None = None
        self.tables: dict[str, dict[str, Any]] = {
            "charge_point": {
                "id": cp_id,
                "vendor": "TestVendor",
                "model": "TestModel",
                "serial_number": "SN-0001",
                "connectors": connectors,
            },
            "csms": {
                "url": csms_url,
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.5,
                "response_timeout_s": 5.0,
                "boot_retry_s": 1,
                **(csms or {}),
            },
            "storage": {"data_dir": str(self.data_dir)},
            "control": {"socket": str(workdir / "control.sock")},
            "hal": {"backend": "sim"},
            "hal.sim": {"ev_max_current_a": 16.0, **(sim or {})},
            "logging": {"level": "DEBUG"},
            "ocpp16": {"MeterValueSampleInterval": 0, **(ocpp16 or {})},
        }
        if ocpp201 is not None:
            self.tables["csms"]["ocpp_version"] = "2.0.1"
            del self.tables["ocpp16"]
            for component, values in ocpp201.items():
                self.tables[f"ocpp201.{toml_key(component)}"] = values
        self.write()

    def write(self) -> None:
        write_config(self.config_path, self.tables)

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            CPAGENT,
            "run",
            "--config",
            str(self.config_path),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    async def sim(self, *args: str, check: bool = True) -> Result:
        result = await run_cli("sim", *args, "--config", str(self.config_path))
        if check:
            assert result.returncode == 0, (result, self.log())
        return result

    async def status(self) -> dict[str, Any]:
        result = await run_cli("status", "--json", "--config", str(self.config_path))
        assert result.returncode == 0, (result, self.log())
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    async def wait_status(self, predicate: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        """Poll ``cpagent status`` until ``predicate(state)`` holds (the control socket has no
        push channel; polling is bounded by ``timeout``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = await self.status()
            if predicate(state):
                return state
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"status never matched: {state}")
            await asyncio.sleep(0.1)

    async def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        return code

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def wait_exit(self, timeout: float = WAIT_S) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def log(self, path: Path | None = None) -> str:
        """The agent's output (stdout and stderr), or the log file at ``path``."""
        path = path or self.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait_log(
        self, text: str, timeout: float = WAIT_S, *, path: Path | None = None
    ) -> None:
        """Wait until the agent's output (or the log file at ``path``) contains ``text``
        (bounded polling of the file)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while text not in self.log(path):
            assert asyncio.get_running_loop().time() < deadline, f"never logged: {text}"
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def ca() -> TestCa:
    """A certificate authority for the CSMS's and the charge point's certificates."""
    return TestCa.create("Test CSMS Root")


@pytest.fixture
async def started() -> AsyncIterator[list[LoopbackCsms]]:
    """CSMSs (TLS ones) a test starts; stopped at the end, and none may have seen a message
    that breaks the schemas of its OCPP version."""
    servers: list[LoopbackCsms] = []
    yield servers
    for server in servers:
        await server.stop()
    for server in servers:
        assert server.schema_errors == [], server.schema_errors


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cpa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent_factory(
    workdir: Path, csms: LoopbackCsms, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """Make (and on teardown stop) agent processes; ``make(**kw)`` returns an AgentProcess."""
    made: list[AgentProcess] = []

    def make(name: str = "a", **kwargs: Any) -> AgentProcess:
        path = workdir / name
        path.mkdir(exist_ok=True)
        agent = AgentProcess(path, kwargs.pop("csms_url", csms.url), **kwargs)
        made.append(agent)
        return agent

    yield make
    await reap(made, request)


async def reap(made: Sequence[AgentProcess], request: pytest.FixtureRequest) -> None:
    """Stop every agent a test made (resuming a stopped one first; killing one that will
    not stop) and, if the test failed, print their logs."""
    for agent in made:
        if agent.proc is not None and agent.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                agent.proc.send_signal(signal.SIGCONT)
            with contextlib.suppress(Exception):
                await agent.stop()
            if agent.proc.returncode is None:
                agent.proc.kill()
                await agent.proc.wait()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for agent in made:
            sys.stderr.write(f"\n----- agent log {agent.workdir} -----\n{agent.log()[-20000:]}\n")


@pytest.fixture
async def agent(agent_factory: Any, csms: LoopbackCsms) -> AgentProcess:
    """A started single-connector agent whose BootNotification was accepted."""
    a: AgentProcess = agent_factory()
    await a.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return a


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


os.environ.setdefault("CPAGENT_CONFIG", "/nonexistent/cpagent.toml")
