"""Firmware download: throughput and the agent's memory while it streams a large file.

Starts ``cpagent run`` (simulated hardware) against the loopback CSMS, serves a firmware
file of ``--mb`` megabytes from a loopback HTTP server, sends UpdateFirmware and samples
the agent's RSS every 50 ms from Downloading to Downloaded. The installer is ``true``.

Prints the download time and rate, and the RSS before and at its peak during the
download: the file is streamed to disk in 64 KiB chunks, so the peak must not grow with
the file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchconfig import CPAGENT, write_config
from idle import rss_mb

from cpagent.testing import LoopbackCsms
from cpagent.testing.fileservers import HttpFileServer
from cpagent.timeutil import now_iso


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="firmware size in MB")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cpa-fw-", dir="/tmp"))
    log_path = workdir / "agent.log"
    log = log_path.open("wb")
    proc: asyncio.subprocess.Process | None = None
    try:
        with HttpFileServer() as http:
            http.files["/fw.deb"] = os.urandom(2**20) * args.mb
            async with LoopbackCsms() as csms:
                config = write_config(workdir, csms.url, cp_id="FW1", connectors=1, csms={})
                with config.open("a") as f:
                    f.write('[firmware]\ninstall_command = "true"\nmax_download_mb = 4096\n')
                proc = await asyncio.create_subprocess_exec(
                    CPAGENT, "run", "--config", str(config), stdout=log, stderr=log
                )
                await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
                before = rss_mb(proc.pid)
                mark = csms.mark()
                await csms.call(
                    "UpdateFirmware",
                    {"location": http.url("/fw.deb"), "retrieveDate": now_iso(), "retries": 0},
                )
                await csms.wait_for("FirmwareStatusNotification", since=mark, timeout=30)
                started = time.monotonic()
                peak = before

                def downloaded() -> bool:
                    return any(
                        p["status"] in ("Downloaded", "DownloadFailed")
                        for p in csms.payloads("FirmwareStatusNotification", since=mark)
                    )

                while not downloaded():
                    peak = max(peak, rss_mb(proc.pid))
                    await asyncio.sleep(0.05)
                elapsed = time.monotonic() - started
                statuses = [p["status"] for p in csms.payloads("FirmwareStatusNotification")]
                await csms.wait_for(
                    "FirmwareStatusNotification", lambda p: p["status"] == "Installed", timeout=60
                )
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 15)
    finally:
        log.close()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"firmware download of {args.mb} MB over loopback HTTP: {statuses[:2]}")
    print(f"  time {elapsed:.2f} s, {args.mb / elapsed:.0f} MB/s")
    print(f"  agent RSS before {before:.1f} MB, peak during the download {peak:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
