"""What the first validation of a message costs in a fresh agent process: loading (or
compiling) its schema's validator, then validating.

Each run is a new interpreter (the venv's, as the agent runs) that imports one OCPP
version's schema set and times, one after the other, the first validation of the messages
below (each the first of its message type and action in that process): the BootNotification
request and its answer are on the start-up path, the others are the first GetVariables,
TransactionEvent and NotifyReport. Byte code is compiled first where it is missing or stale,
as in an installed agent (see startup.py). Prints each message's median over the runs, in
ms.

    python benchmarks/first_validation.py [--runs 15] [--ocpp 1.6|2.0.1] [--json]

``--json`` adds one last line: {"first_<message>_median_ms": ..., "first_total_median_ms":
..., "runs": N}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchconfig import add_ocpp_option, compile_bytecode

PYTHON = str(Path(sys.executable))

MESSAGES = {
    "2.0.1": [
        (
            "boot",
            2,
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
        ),
        (
            "boot_answer",
            3,
            "BootNotification",
            {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"},
        ),
        (
            "getvariables",
            2,
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        (
            "getvariables_answer",
            3,
            "GetVariables",
            {
                "getVariableResult": [
                    {
                        "attributeStatus": "Accepted",
                        "attributeValue": "60",
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        (
            "transactionevent",
            2,
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": "2026-01-01T00:00:00Z",
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "t"},
            },
        ),
        (
            "notifyreport",
            2,
            "NotifyReport",
            {"requestId": 1, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0},
        ),
    ],
    "1.6": [
        ("boot", 2, "BootNotification", {"chargePointModel": "M", "chargePointVendor": "V"}),
        (
            "boot_answer",
            3,
            "BootNotification",
            {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"},
        ),
        ("getconfiguration", 2, "GetConfiguration", {}),
        (
            "getconfiguration_answer",
            3,
            "GetConfiguration",
            {"configurationKey": [{"key": "K", "readonly": True, "value": "1"}]},
        ),
        (
            "starttransaction",
            2,
            "StartTransaction",
            {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
        ),
        (
            "metervalues",
            2,
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [
                    {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}
                ],
            },
        ),
    ],
}

PROBE = """
import json, sys, time
version, messages = json.loads(sys.argv[1])
if version == "2.0.1":
    from cpagent.protocol.v201 import schemas
else:
    from cpagent.protocol.v16 import schemas
times = {}
for name, kind, action, payload in messages:
    started = time.perf_counter()
    schemas.validate(kind, action, payload)
    times[name] = (time.perf_counter() - started) * 1000
print(json.dumps(times))
"""


def one_run(version: str) -> dict[str, float]:
    argument = json.dumps([version, MESSAGES[version]])
    out = subprocess.run(
        [PYTHON, "-c", PROBE, argument], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    times: dict[str, float] = json.loads(out.splitlines()[-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="end with one line of JSON figures")
    add_ocpp_option(parser)
    args = parser.parse_args()
    compile_bytecode()
    one_run(args.ocpp)  # warm-up, not counted: the files into the page cache
    runs = [one_run(args.ocpp) for _ in range(args.runs)]
    figures: dict[str, float] = {}
    print(f"OCPP {args.ocpp}: first validation in a fresh process, median of {args.runs} runs")
    for name, *_ in MESSAGES[args.ocpp]:
        median = statistics.median(run[name] for run in runs)
        figures[f"first_{name}_median_ms"] = round(median, 3)
        print(f"    {name:<26} {median:8.3f} ms")
    total = statistics.median(sum(run.values()) for run in runs)
    figures["first_total_median_ms"] = round(total, 3)
    print(f"    {'all of them':<26} {total:8.3f} ms")
    if args.json:
        print(json.dumps({**figures, "runs": args.runs}))


if __name__ == "__main__":
    main()
