"""The installed package's ``cpagent run`` inside a test chroot, driven from the test process.

The chroot shares the host's network (the agent reaches a :class:`LoopbackCsms` on
127.0.0.1 in the test process) and has no systemd, so :class:`ChrootAgent` starts the agent
the way cpagent.service would: as the user cpagent, with /run/cpagent made as the unit's
RuntimeDirectory= makes it, ``/usr/bin/cpagent run --config PATH``. Everything that runs in
the chroot while the agent runs (the ``cpagent`` CLI, apt-get, dpkg) is an asyncio
subprocess, so the CSMS in the same event loop keeps answering meanwhile.

Every wait is bounded by a time multiplied by debroot's ``SLOW`` (an emulated root runs
several times slower). Teardown kills every process whose root is the chroot, so nothing
outlives a test, whatever state the agent was left in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.packaging import debroot
from tests.packaging.debroot import OUT, Chroot

AGENT_CONF = "/etc/cpagent/deb-test.toml"
SOCKET = "/run/cpagent/control.sock"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


def scaled(seconds: float) -> float:
    return seconds * debroot.SLOW


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_in(
    root: Chroot,
    *args: str,
    user: str | None = None,
    network: bool = False,
    timeout: float = 60,
    check: bool = True,
) -> Result:
    """``args`` in the chroot (as root, without network unless asked), not blocking the
    event loop; ``timeout`` is in native seconds (scaled here). Killed when it expires."""
    cmd = [] if network else ["unshare", "--net"]
    cmd += ["chroot", *([f"--userspec={user}:{user}"] if user else []), str(root.dir), *args]
    env = {**ENV, "HOME": "/root" if user is None else "/tmp"}
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), scaled(timeout))
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"{' '.join(args)}: not done within {scaled(timeout):.0f} s") from None
    assert proc.returncode is not None
    result = Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def processes_in(root: Chroot) -> list[int]:
    """The PIDs of every process whose root directory is the chroot."""
    found = []
    target = os.path.realpath(root.dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "root") == target:
                found.append(int(entry.name))
    return found


def kill_all_in(root: Chroot, timeout: float = 10) -> None:
    """SIGKILL every process in the chroot and wait (bounded) until none is left."""
    deadline = time.monotonic() + scaled(timeout)
    while pids := processes_in(root):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise AssertionError(f"processes in {root.dir} survived SIGKILL: {pids}")
        time.sleep(0.05)


def agent_config(csms_url: str, *, cp_id: str, sample_interval_s: int) -> str:
    """A config for the packaged agent: simulated hardware, the loopback CSMS, the
    package's data and socket paths, quick reconnects and metering every few seconds."""
    return f"""\
[charge_point]
id = "{cp_id}"
vendor = "TestVendor"
model = "TestModel"
connectors = 1

[csms]
url = "{csms_url}"
reconnect_initial_s = 0.2
reconnect_max_s = 1.0
boot_retry_s = 1

[storage]
data_dir = "/var/lib/cpagent"

[control]
socket = "{SOCKET}"

[hal]
backend = "sim"

[hal.sim]
ev_max_current_a = 16.0

[logging]
level = "DEBUG"

[ocpp16]
MeterValueSampleInterval = {sample_interval_s}
"""


class ChrootAgent:
    """``cpagent run`` of the package installed in ``root``, started as systemd would."""

    def __init__(
        self,
        root: Chroot,
        csms_url: str,
        *,
        cp_id: str = "CP-DEB",
        sample_interval_s: int = 2,
    ) -> None:
        self.root = root
        self.config = AGENT_CONF
        self.log_path = OUT / f"{root.dir.name}-agent.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.write_config(csms_url, cp_id=cp_id, sample_interval_s=sample_interval_s)

    def write_config(self, csms_url: str, *, cp_id: str, sample_interval_s: int) -> None:
        path = self.root.path(self.config)
        path.write_text(agent_config(csms_url, cp_id=cp_id, sample_interval_s=sample_interval_s))
        path.chmod(0o644)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the agent was not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        # What the unit's RuntimeDirectory=cpagent, RuntimeDirectoryMode=0750 and
        # WorkingDirectory= make; the state directory is the package's.
        await run_in(
            self.root,
            "install",
            "-d",
            "-o",
            "cpagent",
            "-g",
            "cpagent",
            "-m",
            "0750",
            "/run/cpagent",
        )
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "chroot",
                "--userspec=cpagent:cpagent",
                str(self.root.dir),
                "/usr/bin/cpagent",
                "run",
                "--config",
                self.config,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**ENV, "HOME": "/var/lib/cpagent", "LG_WD": "/run/cpagent"},
                start_new_session=True,
            )
        finally:
            log.close()

    async def cli(self, *args: str, check: bool = True, timeout: float = 30) -> Result:
        """``cpagent ARGS --config <the test config>`` in the chroot, as an admin (root)."""
        result = await run_in(
            self.root,
            "/usr/bin/cpagent",
            *args,
            "--config",
            self.config,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"cpagent {' '.join(args)}: {result}\n--- agent log\n{self.tail()}"
            )
        return result

    async def sim(self, *args: str) -> Result:
        return await self.cli("sim", *args)

    async def status(self) -> dict[str, Any]:
        result = await self.cli("status", "--json")
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    async def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        """Poll ``cpagent status --json`` until ``predicate`` holds (bounded, scaled). An
        agent that does not answer for a moment (restarting) is polled again."""
        deadline = time.monotonic() + scaled(timeout)
        last: Any = None
        while True:
            result = await self.cli("status", "--json", check=False)
            if result.returncode == 0:
                last = json.loads(result.stdout)
                if predicate(last):
                    return dict(last)
            else:
                last = result.output.strip()
            if not self.running():
                raise AssertionError(f"the agent exited while waiting for {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {scaled(timeout):.0f} s; last: {last}")
            await asyncio.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM (what systemd sends) and wait, bounded; SIGKILL if that expires."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), scaled(timeout))
        except TimeoutError:
            self.kill()
            raise AssertionError(f"the agent did not stop on SIGTERM\n{self.tail()}") from None

    def kill(self) -> None:
        """Teardown: nothing the test started in the chroot survives."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        kill_all_in(self.root)
