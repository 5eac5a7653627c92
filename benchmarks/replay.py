"""Offline queue: what it costs to make a transaction message durable, and how fast a full
queue drains once the CSMS is reachable.

(a) Durable enqueue: ``Store.enqueue`` of N MeterValues-sized payloads, one commit each, in a
    fresh data_dir with the store's defaults (WAL, ``synchronous=FULL``: each returns only
    once on disk). Prints ms per enqueue (mean, median, p99); target <= 2 ms.
(b) Replay: a data_dir whose outbox is pre-filled through the Store API with one session of
    M transaction messages (StartTransaction, M-2 MeterValues, StopTransaction), as an agent
    that charged offline leaves it; then ``cpagent run`` against the loopback CSMS (no frame
    hook, default answers). Timed from the BootNotification frame to the frame of the last
    queued message, both as the CSMS recorded them; prints messages/s (target >= 2,000 with
    the CSMS validating every frame).
    The delivered stream is checked with the ledger: every message once, in order.

    With ``--ocpp 2.0.1`` the session is one transaction's TransactionEvents (Started, M-2
    Updated, Ended) numbered by the store, and the check is that every event arrives once,
    in seqNo order.

    python benchmarks/replay.py [--enqueues 10000] [--messages 10000] [--dir /tmp]
                                [--ocpp 1.6|2.0.1] [--json]

``--json`` prints only one JSON object, on the last line: ``replay_msg_per_s`` (validating
CSMS), ``replay_agent_alone_msg_per_s`` (CSMS not validating), ``replay_agent_busy`` and
``replay_csms_busy`` (CPU share of the validating run), ``enqueue_mean_ms``,
``enqueue_median_ms`` and ``enqueue_p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchconfig import CPAGENT, add_ocpp_option, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.ledger import check_ledger

from cpagent.store import Store
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import Received

ENQUEUE_TARGET_MS = 2.0
DELIVERY_TARGET = 2000.0
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(index: int) -> str:
    at = BASE + timedelta(milliseconds=index)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def meter_values(index: int) -> dict[str, Any]:
    """A MeterValues payload the size a 1-measurand sample has (transactionId comes later)."""
    return {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": stamp(index),
                "sampledValue": [
                    {
                        "value": str(index),
                        "context": "Sample.Periodic",
                        "format": "Raw",
                        "measurand": "Energy.Active.Import.Register",
                        "location": "Outlet",
                        "unit": "Wh",
                    }
                ],
            }
        ],
    }


# ------------------------------------------------------------------------------- (a)


def enqueue_cost(base: Path, count: int) -> list[float]:
    """Seconds per ``Store.enqueue`` call, ``count`` calls in a fresh data_dir."""
    workdir = Path(tempfile.mkdtemp(prefix="cpa-enqueue-", dir=base))
    store = Store(workdir / "data")
    store.open()
    try:
        mode = store._conn.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
        assert mode == 2, f"expected synchronous=FULL (2), the store runs with {mode}"
        times: list[float] = []
        for i in range(count):
            payload = {"transactionId": 1, **meter_values(i)}
            began = time.perf_counter()
            store.enqueue("MeterValues", payload, tx_local_id=None)
            times.append(time.perf_counter() - began)
        assert store.queue_depth() == count
        return times
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------- (b)


def prefill(data_dir: Path, messages: int) -> float:
    """Leave one offline session of ``messages`` queued transaction messages; seconds taken."""
    began = time.perf_counter()
    store = Store(data_dir)
    store.open()
    try:
        start = {"connectorId": 1, "idTag": "REPLAY", "meterStart": 0, "timestamp": stamp(0)}
        tx, _ = store.start_transaction(
            connector_id=1,
            id_tag="REPLAY",
            meter_start_wh=0,
            started_at=stamp(0),
            message=("StartTransaction", start),
        )
        for i in range(1, messages - 1):
            store.enqueue("MeterValues", meter_values(i), tx_local_id=tx.local_id)
        last = messages - 1
        store.stop_transaction(
            tx.local_id,
            meter_stop_wh=last,
            stopped_at=stamp(last),
            reason="Local",
            stop_id_tag=None,
            message=(
                "StopTransaction",
                {"meterStop": last, "timestamp": stamp(last), "reason": "Local"},
            ),
        )
        assert store.queue_depth() == messages
    finally:
        store.close()
    return time.perf_counter() - began


def prefill_201(data_dir: Path, messages: int) -> float:
    """The 2.0.1 counterpart of :func:`prefill`: one offline transaction's events."""
    began = time.perf_counter()
    store = Store(data_dir)
    store.open()
    tx_id = "replay-0000-0000-0000-000000000001"

    def event(kind: str, index: int, trigger: str) -> Any:
        def make(seq_no: int) -> tuple[str, dict[str, Any]]:
            value = meter_values(index)["meterValue"][0]
            for sampled in value["sampledValue"]:
                sampled["value"] = index
                del sampled["format"]
                sampled["unitOfMeasure"] = {"unit": sampled.pop("unit")}
            payload = {
                "eventType": kind,
                "timestamp": stamp(index),
                "triggerReason": trigger,
                "seqNo": seq_no,
                "transactionInfo": {"transactionId": tx_id},
                "offline": True,
                "meterValue": [value],
            }
            if kind == "Started":
                payload["idToken"] = {"idToken": "REPLAY", "type": "ISO14443"}
                payload["evse"] = {"id": 1, "connectorId": 1}
            return "TransactionEvent", payload

        return make

    try:
        tx, _ = store.start_transaction(
            connector_id=1,
            id_tag="REPLAY",
            meter_start_wh=0,
            started_at=stamp(0),
            message=event("Started", 0, "Authorized"),
            protocol="2.0.1",
            ocpp_transaction_id=tx_id,
        )
        for i in range(1, messages - 1):
            store.queue_transaction_message(tx.local_id, event("Updated", i, "MeterValuePeriodic"))
        last = messages - 1
        store.stop_transaction(
            tx.local_id,
            meter_stop_wh=last,
            stopped_at=stamp(last),
            reason="Local",
            stop_id_tag=None,
            message=event("Ended", last, "StopAuthorized"),
        )
        assert store.queue_depth() == messages
    finally:
        store.close()
    return time.perf_counter() - began


def check_events_201(csms: LoopbackCsms, messages: int) -> None:
    """Every queued event arrived once, in seqNo order."""
    events = csms.payloads("TransactionEvent")
    assert [e["seqNo"] for e in events] == list(range(messages)), "events lost or reordered"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call_frame_at(csms: LoopbackCsms, action: str, *, last: bool = False) -> float:
    """When the CSMS recorded the first (or last) CALL of ``action`` (monotonic s)."""
    found: float | None = None
    for frame in csms.frames:
        message = frame.message if frame.direction == "in" and action in frame.raw else None
        if message and message[0] == 2 and message[2] == action:
            found = frame.at
            if not last:
                break
    assert found is not None, f"no {action} frame"
    return found


async def delivery_rate(
    base: Path, messages: int, *, validate: bool, ocpp: str
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="cpa-replay-", dir=base))
    proc: asyncio.subprocess.Process | None = None
    last_action = "StopTransaction" if ocpp == "1.6" else "TransactionEvent"

    def finished(received: Received) -> bool:
        if ocpp == "1.6":
            return received.action == "StopTransaction"
        return received.action == last_action and received.payload["eventType"] == "Ended"

    try:
        fill = prefill if ocpp == "1.6" else prefill_201
        filled_s = await asyncio.to_thread(fill, workdir / "data", messages)
        async with LoopbackCsms() as csms:
            if not validate:
                csms._validate = lambda *_: None  # type: ignore[method-assign]
            config = write_config(
                workdir,
                csms.url,
                cp_id="REPLAY1",
                connectors=1,
                csms={"reconnect_initial_s": 0.1, "reconnect_max_s": 1.0},
                ocpp=ocpp,
            )
            log = (workdir / "agent.log").open("wb")
            spawned = time.monotonic()
            cpu_before = time.process_time()
            proc = await asyncio.create_subprocess_exec(
                CPAGENT, "run", "--config", str(config), stdout=log, stderr=log
            )
            log.close()
            seen = 0
            deadline = spawned + 300
            while True:  # poll: a waiter re-scanning 10,000 messages would slow the CSMS
                received = csms.received
                if any(finished(r) for r in received[seen:]):
                    break
                seen = len(received)
                if time.monotonic() > deadline or proc.returncode is not None:
                    text = (workdir / "agent.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"the queue did not drain ({seen} received)\n{text}")
                await asyncio.sleep(0.01)
            wall = time.monotonic() - spawned
            csms_cpu = time.process_time() - cpu_before
            agent_cpu = cpu_seconds(proc.pid)
            boot = call_frame_at(csms, "BootNotification")
            done = call_frame_at(csms, last_action, last=True)
            if ocpp == "1.6":
                report = check_ledger(csms.received, max_duplicates=0)
                assert report.messages == messages, report.summary()
            else:
                check_events_201(csms, messages)
            assert csms.schema_errors == [], csms.schema_errors[:3]  # (when validating)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        return {
            "prefill_s": filled_s,
            "spawn_to_boot_s": boot - spawned,
            "boot_to_last_s": done - boot,
            "rate": messages / (done - boot),
            "csms_busy": csms_cpu / wall,
            "agent_busy": agent_cpu / wall,
        }
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enqueues", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where data_dirs go")
    add_ocpp_option(parser)
    parser.add_argument("--json", action="store_true", help="only one line of JSON figures")
    args = parser.parse_args()
    say = (lambda *_: None) if args.json else print

    times = enqueue_cost(args.dir, args.enqueues)
    ms = sorted(t * 1000 for t in times)
    mean = statistics.fmean(ms)
    p99 = ms[int(len(ms) * 0.99) - 1]
    figures = {
        "enqueue_mean_ms": round(mean, 4),
        "enqueue_median_ms": round(statistics.median(ms), 4),
        "enqueue_p99_ms": round(p99, 4),
    }
    say(f"(a) durable enqueue, {args.enqueues} x MeterValues, synchronous=FULL, in {args.dir}")
    say(
        f"    mean {mean:.3f} ms  median {statistics.median(ms):.3f} ms"
        f"  p99 {p99:.3f} ms  max {ms[-1]:.3f} ms"
        f"  (target <= {ENQUEUE_TARGET_MS} ms: {'ok' if mean <= ENQUEUE_TARGET_MS else 'MISSED'})"
    )

    for validate in (True, False):
        result = asyncio.run(
            delivery_rate(args.dir, args.messages, validate=validate, ocpp=args.ocpp)
        )
        if validate:
            figures["replay_msg_per_s"] = round(result["rate"], 1)
            figures["replay_agent_busy"] = round(result["agent_busy"], 3)
            figures["replay_csms_busy"] = round(result["csms_busy"], 3)
        else:
            figures["replay_agent_alone_msg_per_s"] = round(result["rate"], 1)
        csms = "validating every frame" if validate else "not validating (agent alone)"
        say(
            f"(b) OCPP {args.ocpp} replay of {args.messages} queued transaction messages,"
            f" CSMS {csms}"
        )
        say(
            f"    pre-filled in {result['prefill_s']:.1f} s; spawn to BootNotification"
            f" {result['spawn_to_boot_s']:.2f} s"
        )
        say(
            f"    BootNotification to last message {result['boot_to_last_s']:.2f} s:"
            f" {result['rate']:.0f} messages/s (target >= {DELIVERY_TARGET:.0f}:"
            f" {'ok' if result['rate'] >= DELIVERY_TARGET else 'MISSED'})"
        )
        say(
            f"    CPU busy from spawn to the last message: agent {result['agent_busy']:.0%},"
            f" loopback CSMS {result['csms_busy']:.0%}"
        )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
