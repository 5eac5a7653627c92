"""``cpagent demo``: a whole charging session on loopback, with the OCPP traffic printed.

It starts the loopback CSMS and an agent on simulated hardware in a temporary
data directory, plugs an EV, shows a card, charges for a few seconds, stops
with the same card and unplugs — all through the control socket, exactly as
``cpagent sim`` would. ``--ocpp 2.0.1`` shows the same session in OCPP 2.0.1.
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


MEASURANDS = [
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "SoC",
]
REGISTER = "Energy.Active.Import.Register"


def demo_config(data_dir: Path, csms_url: str, version: str = "1.6") -> Config:
    tables: dict[str, Any] = {
        "ocpp16": {"MeterValueSampleInterval": 2, "MeterValuesSampledData": MEASURANDS}
    }
    if version == "2.0.1":
        tables = {
            "ocpp201": {
                "SampledDataCtrlr": {
                    "TxUpdatedInterval": 2,
                    "TxUpdatedMeasurands": ",".join(MEASURANDS),
                }
            }
        }
    return parse_config(
        {
            "charge_point": {
                "id": "DEMO-CP",
                "vendor": "cpagent",
                "model": "Demo",
                "connectors": 1,
            },
            "csms": {
                "url": csms_url,
                "ocpp_version": version,
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": 2.0,
            },
            "storage": {"data_dir": str(data_dir)},
            "control": {"socket": str(data_dir / "control.sock")},
            "hal": {"backend": "sim", "sim": {"phases": 3, "ev_max_current_a": 16}},
            "logging": {"level": "WARNING"},
            **tables,
        }
    )


async def _sim(config: Config, *words: str) -> None:
    print(f"         $ cpagent sim {' '.join(words)}", flush=True)
    await asyncio.to_thread(request, config.control.socket, {"cmd": "sim", "args": list(words)})


async def _demo(data_dir: Path, version: str) -> int:
    from cpagent.agent import Agent

    start = time.monotonic()
    session = _session_201 if version == "2.0.1" else _session_16
    async with LoopbackCsms(on_frame=_printer(start)) as csms:
        config = demo_config(data_dir, csms.url, version)
        agent = Agent(config)
        runner = asyncio.create_task(agent.run(), name="agent")
        try:
            meter_start, meter_stop, reason = await session(csms, config)
        finally:
            agent.stop()
            await runner
    print()
    print(
        f"Session: {ID_TAG} on connector 1 (OCPP {version}), meter {meter_start} Wh -> "
        f"{meter_stop} Wh ({meter_stop - meter_start} Wh delivered, stop reason {reason})"
    )
    final = "the StopTransaction's meterStop" if version == "1.6" else "the Ended event's"
    print(
        f"Final meter reading: {meter_stop} Wh ({final}); "
        f"{len(csms.frames)} frames exchanged, schema violations: {len(csms.schema_errors)}"
    )
    for problem in csms.schema_errors:
        print(f"  schema violation: {problem}")
    return 0 if not csms.schema_errors else 1


async def _session_16(csms: LoopbackCsms, config: Config) -> tuple[int, int, str]:
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    await _sim(config, "plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
    await _sim(config, "tag", ID_TAG)
    started = await csms.wait_for("StartTransaction")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
    await asyncio.sleep(CHARGE_SECONDS)  # let the simulated EV draw power
    await _sim(config, "tag", ID_TAG)
    stop = await csms.wait_for("StopTransaction")
    await _sim(config, "unplug", "1")
    await csms.wait_for(
        "StatusNotification", lambda p: p["status"] == "Available", since=csms.mark() - 1
    )
    return started["meterStart"], stop["meterStop"], stop["reason"]


def _register(event: dict[str, Any], context: str) -> int:
    """The energy register a TransactionEvent carries in ``context``, in Wh."""
    for meter_value in event.get("meterValue", []):
        for sampled in meter_value["sampledValue"]:
            measurand = sampled.get("measurand", REGISTER)
            if measurand == REGISTER and sampled.get("context") == context:
                return round(float(sampled["value"]))
    raise AssertionError(f"no {REGISTER} in {context} of the {event['eventType']} event")


async def _session_201(csms: LoopbackCsms, config: Config) -> tuple[int, int, str]:
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1)
    await _sim(config, "plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
    await _sim(config, "tag", ID_TAG)
    started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    await csms.wait_for(
        "TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging"
    )
    await asyncio.sleep(CHARGE_SECONDS)  # let the simulated EV draw power
    await _sim(config, "tag", ID_TAG)
    ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    await _sim(config, "unplug", "1")
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorStatus"] == "Available",
        since=csms.mark() - 1,
    )
    reason = ended["transactionInfo"].get("stoppedReason", "Local")
    return (
        _register(started, "Transaction.Begin"),
        _register(ended, "Transaction.End"),
        reason,
    )


def run_demo(version: str = "1.6") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ESCAPE_CONTROLS)
    print("cpagent demo: loopback CSMS + agent on simulated hardware\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="cpagent-demo-") as tmp:
        try:
            return asyncio.run(_demo(Path(tmp), version))
        except KeyboardInterrupt:
            return 130
        except AssertionError as err:
            print(f"demo failed: {err}", file=sys.stderr)
            return 1
