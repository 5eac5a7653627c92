"""What the benchmark scripts share: the agent's console script, a throwaway config, the
agent's byte code compiled as an installed package has it, and an idle agent to measure."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPAGENT = str(Path(sys.executable).parent / "cpagent")


def write_config(
    workdir: Path,
    csms_url: str,
    *,
    cp_id: str,
    connectors: int,
    csms: dict[str, Any],
    ocpp: str = "1.6",
) -> Path:
    """A config for a simulated agent whose data and control socket live in ``workdir``,
    speaking OCPP ``ocpp`` ("1.6" or "2.0.1") with its factory settings."""
    tables: dict[str, dict[str, Any]] = {
        "charge_point": {
            "id": cp_id,
            "vendor": "Bench",
            "model": "Bench",
            "connectors": connectors,
        },
        "csms": {"url": csms_url, "ocpp_version": ocpp, **csms},
        "storage": {"data_dir": str(workdir / "data")},
        "control": {"socket": str(workdir / "control.sock")},
        "hal": {"backend": "sim"},
        "logging": {"level": "INFO"},
    }
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    path = workdir / "cpagent.toml"
    path.write_text("\n".join(lines))
    return path


def add_ocpp_option(parser: Any) -> None:
    parser.add_argument(
        "--ocpp", choices=["1.6", "2.0.1"], default="1.6", help="the OCPP version the agent speaks"
    )


def compile_bytecode() -> list[str]:
    """Write the byte code of cpagent and of the libraries beside it (site-packages) where
    it is missing or stale, as the Debian package's postinst does at install, so that the
    agent measured does not compile its modules from source at every start: a source tree
    run with PYTHONDONTWRITEBYTECODE, or never run, has none. Returns the directories."""
    import cpagent

    dirs = [str(Path(cpagent.__file__).parent)]
    dirs += sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    for directory in dirs:
        compileall.compile_dir(directory, quiet=1, workers=1)
    return dirs


@dataclass
class IdleAgent:
    """A running ``cpagent run`` and the loopback CSMS it is connected to."""

    proc: asyncio.subprocess.Process
    csms: Any  # cpagent.testing.LoopbackCsms
    log_path: Path

    def check_running(self) -> None:
        """SystemExit with the agent's log if it has exited."""
        if self.proc.returncode is not None:
            raise SystemExit(
                f"agent exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
            )


@contextlib.asynccontextmanager
async def idle_agent(ocpp: str, cp_id: str, warmup: float) -> AsyncIterator[IdleAgent]:
    """An agent with 2 simulated connectors, connected to a loopback CSMS that sets
    HeartbeatInterval to 60 s, its byte code compiled first: yielded once both connectors
    have reported their status and ``warmup`` seconds more have passed; stopped after (SIGTERM,
    killed if it does not end) and its directory removed. SystemExit with the agent's log
    when it does not come up."""
    from cpagent.testing import LoopbackCsms

    compile_bytecode()  # as installed: no module compiled from source in the measured process
    workdir = Path(tempfile.mkdtemp(prefix=f"cpa-{cp_id.lower()}-", dir="/tmp"))
    log_path = workdir / "agent.log"
    log = log_path.open("wb")
    proc: asyncio.subprocess.Process | None = None
    try:
        async with LoopbackCsms(heartbeat_interval=60) as csms:
            config = write_config(workdir, csms.url, cp_id=cp_id, connectors=2, csms={}, ocpp=ocpp)
            proc = await asyncio.create_subprocess_exec(
                CPAGENT, "run", "--config", str(config), stdout=log, stderr=log
            )
            try:
                await csms.wait_for("BootNotification", timeout=30)
                await csms.wait_for(
                    "StatusNotification",
                    lambda p: p.get("connectorId" if ocpp == "1.6" else "evseId") == 2,
                    timeout=30,
                )
            except AssertionError:
                raise SystemExit(f"agent did not come up:\n{log_path.read_text()}") from None
            print(f"OCPP {ocpp} agent pid {proc.pid} up; warming up {warmup:g} s", flush=True)
            await asyncio.sleep(warmup)
            agent = IdleAgent(proc, csms, log_path)
            agent.check_running()
            yield agent
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)
    finally:
        log.close()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
