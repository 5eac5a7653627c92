"""Idle footprint: resident memory and CPU time of an agent that has nothing to do.

One ``cpagent run`` with 2 simulated connectors connects to a loopback CSMS that sets
HeartbeatInterval to 60 s, and then idles. After a warm-up (5 s from the accepted boot)
the agent's RSS (VmRSS from /proc/PID/status) and PSS (Pss from /proc/PID/smaps_rollup:
shared pages, the interpreter's and OpenSSL's libraries, counted by the share of each
process mapping them) are sampled every second, and its CPU time is read at the start and
end of the window: the nanosecond run time of each of its threads
(/proc/PID/task/*/schedstat), since utime + stime count whole 10 ms ticks, too coarse for
an agent that runs a few ms a minute. Prints the steady RSS and PSS in MB (goal: RSS <= 32
MB) and the CPU seconds per idle hour, extrapolated from the window (goal <= 0.3 s/h). The
byte code is compiled first, as in startup.py.

    python benchmarks/idle.py [--seconds 180] [--warmup 5] [--ocpp 1.6|2.0.1] [--json]

``--json`` adds one last line: {"idle_rss_median_mb": ..., "idle_rss_max_mb": ...,
"idle_pss_median_mb": ..., "idle_cpu_s_per_h": ..., "window_s": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from benchconfig import add_ocpp_option, idle_agent

CLK_TCK = os.sysconf("SC_CLK_TCK")
RSS_TARGET_MB = 32.0
CPU_TARGET_S_PER_H = 0.3


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no Pss for pid {pid}")


def cpu_s(pid: int) -> float:
    """CPU seconds the process's threads have run: schedstat's nanoseconds where the
    kernel keeps them, else utime + stime in clock ticks."""
    try:
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        pass
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the fields after "(comm)"
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after boot")
    add_ocpp_option(parser)
    parser.add_argument("--json", action="store_true", help="end with one line of JSON figures")
    args = parser.parse_args()

    async with idle_agent(args.ocpp, "IDLE1", args.warmup) as agent:
        pid, csms = agent.proc.pid, agent.csms
        mark = csms.mark()
        frames_before = len(csms.frames)
        rss: list[float] = []
        pss: list[float] = []
        cpu_start, t_start = cpu_s(pid), time.monotonic()
        deadline = t_start + args.seconds
        print(f"measuring for {args.seconds:g} s ...", flush=True)
        while (now := time.monotonic()) < deadline:
            agent.check_running()
            rss.append(rss_mb(pid))
            pss.append(pss_mb(pid))
            await asyncio.sleep(min(1.0, deadline - now))
        rss.append(rss_mb(pid))
        pss.append(pss_mb(pid))
        cpu_end, t_end = cpu_s(pid), time.monotonic()
        window = t_end - t_start
        heartbeats = len(csms.messages("Heartbeat", since=mark))
        frames = len(csms.frames) - frames_before

    used = cpu_end - cpu_start
    per_hour = used / window * 3600.0
    steady = statistics.median(rss)
    print(f"window {window:.1f} s, {heartbeats} heartbeat(s), {frames} frame(s) on the wire")
    print(
        f"RSS: median {steady:.1f} MB  min {min(rss):.1f} MB  max {max(rss):.1f} MB  "
        f"(goal <= {RSS_TARGET_MB:g} MB: {'met' if max(rss) <= RSS_TARGET_MB else 'MISSED'})"
    )
    print(
        f"PSS: median {statistics.median(pss):.1f} MB  min {min(pss):.1f} MB  max {max(pss):.1f} MB"
    )
    print(
        f"CPU: {used:.3f} s in the window = {per_hour:.2f} CPU s per idle hour "
        f"(goal <= {CPU_TARGET_S_PER_H:g}: "
        f"{'met' if per_hour <= CPU_TARGET_S_PER_H else 'MISSED'})"
    )
    if args.json:
        figures = {
            "idle_rss_median_mb": round(steady, 2),
            "idle_rss_max_mb": round(max(rss), 2),
            "idle_pss_median_mb": round(statistics.median(pss), 2),
            "idle_cpu_s_per_h": round(per_hour, 3),
            "window_s": round(window, 1),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
