"""``cpagent demo``: a whole charging session on loopback, with the OCPP traffic printed.

It starts the loopback CSMS and an agent on simulated hardware in a temporary
data directory, plugs an EV, shows a card, charges for a few seconds, stops
with the same card and unplugs — all through the control socket, exactly as
``cpagent sim`` would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpagent.config import Config, parse_config
from cpagent.control import request
from cpagent.logescape import ESCAPE_CONTROLS
from cpagent.testing.csms import Frame, LoopbackCsms

ID_TAG = "DEMO-TAG-01"
CHARGE_SECONDS = 6


def _printer(start: float) -> Any:
    def show(frame: Frame) -> None:
        arrow = "CP -> CSMS" if frame.direction == "in" else "CSMS -> CP"
        message = frame.message
        kind = {2: "CALL", 3: "RESULT", 4: "ERROR"}.get(message[0], "?") if message else "?"
        body = json.dumps(message[2:] if message else frame.raw, separators=(",", ":"))
        if len(body) > 160:
            body = body[:157] + "..."
        print(f"{frame.at - start:6.2f}s  {arrow}  {kind:<6} {body}", flush=True)

    return show


def demo_config(data_dir: Path, csms_url: str) -> Config:
    return parse_config(
        {
            "charge_point": {
                "id": "DEMO-CP",
                "vendor": "cpagent",
                "model": "Demo",
                "connectors": 1,
            },
            "csms": {"url": csms_url, "reconnect_initial_s": 0.2, "reconnect_max_s": 2.0},
            "storage": {"data_dir": str(data_dir)},
            "control": {"socket": str(data_dir / "control.sock")},
            "hal": {"backend": "sim", "sim": {"phases": 3, "ev_max_current_a": 16}},
            "logging": {"level": "WARNING"},
            "ocpp16": {
                "MeterValueSampleInterval": 2,
                "MeterValuesSampledData": [
                    "Energy.Active.Import.Register",
                    "Power.Active.Import",
                    "Current.Import",
                    "SoC",
                ],
            },
        }
    )


async def _sim(config: Config, *words: str) -> None:
    print(f"         $ cpagent sim {' '.join(words)}", flush=True)
    await asyncio.to_thread(request, config.control.socket, {"cmd": "sim", "args": list(words)})


async def _demo(data_dir: Path) -> int:
    from cpagent.agent import Agent

    start = time.monotonic()
    async with LoopbackCsms(on_frame=_printer(start)) as csms:
        config = demo_config(data_dir, csms.url)
        agent = Agent(config)
        runner = asyncio.create_task(agent.run(), name="agent")
        try:
            await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
            await _sim(config, "plug", "1")
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
            await _sim(config, "tag", ID_TAG)
            await csms.wait_for("StartTransaction")
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
            await asyncio.sleep(CHARGE_SECONDS)  # let the simulated EV draw power
            await _sim(config, "tag", ID_TAG)
            stop = await csms.wait_for("StopTransaction")
            await _sim(config, "unplug", "1")
            await csms.wait_for(
                "StatusNotification", lambda p: p["status"] == "Available", since=csms.mark() - 1
            )
        finally:
            agent.stop()
            await runner
    started = csms.payloads("StartTransaction")[0]["meterStart"]
    print()
    print(
        f"Session: {ID_TAG} on connector 1, meter {started} Wh -> {stop['meterStop']} Wh "
        f"({stop['meterStop'] - started} Wh delivered, stop reason {stop['reason']})"
    )
    print(
        f"Final meter reading: {stop['meterStop']} Wh (the StopTransaction's meterStop); "
        f"{len(csms.frames)} frames exchanged, schema violations: {len(csms.schema_errors)}"
    )
    for problem in csms.schema_errors:
        print(f"  schema violation: {problem}")
    return 0 if not csms.schema_errors else 1


def run_demo() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ESCAPE_CONTROLS)
    print("cpagent demo: loopback CSMS + agent on simulated hardware\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="cpagent-demo-") as tmp:
        try:
            return asyncio.run(_demo(Path(tmp)))
        except KeyboardInterrupt:
            return 130
        except AssertionError as err:
            print(f"demo failed: {err}", file=sys.stderr)
            return 1
