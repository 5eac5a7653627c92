"""The agent's side of the firmware procedure: files, the installer process, the store.

:class:`AgentFirmwarePorts` implements :class:`~cpagent.station.firmware.FirmwarePorts`
with real downloads (:mod:`cpagent.transfer`), the configured installer
(``[firmware] install_command``, the file's path appended as its last argument, exit 0
meaning installed), the store's ``state`` table for the job, and the adapter's durable
queue for the reports.

The installer runs in its own session (process group). It is killed after
``install_timeout_s``; it is *not* killed when the agent stops, because an installer
that restarts the agent (a ``.deb`` upgrade) must be allowed to finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shlex
import signal
import urllib.parse
from pathlib import Path
from typing import Protocol

from cpagent.config import Config
from cpagent.station.firmware import FirmwareError, FirmwareJob, FirmwareStatus
from cpagent.store import Store
from cpagent.transfer import TransferError, download, redact_url

log = logging.getLogger(__name__)

JOB_STATE_KEY = "firmware.job"
OUTPUT_LINES_KEPT = 20
FREE_MARGIN_BYTES = 16 * 2**20
"""Space left free on the data disk after a download, so the store can still write."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


class StatusSink(Protocol):
    async def firmware_status(self, status: str) -> None: ...


def load_job(store: Store) -> FirmwareJob | None:
    """The job persisted by an earlier run (called on the store's thread)."""
    text = store.get_state(JOB_STATE_KEY)
    if not text:
        return None
    try:
        return FirmwareJob.from_json(text)
    except (ValueError, TypeError, KeyError) as err:
        log.error("firmware: dropping an unreadable saved job (%s)", err)
        return None


def file_name(url: str) -> str:
    """A safe local name for what ``url`` points at (its last path segment)."""
    name = Path(urllib.parse.urlsplit(url).path).name
    name = _SAFE_NAME.sub("_", name).lstrip(".")
    return name or "firmware.bin"


class AgentFirmwarePorts:
    def __init__(self, config: Config, store: Store, sink: StatusSink) -> None:
        self.config = config
        self.store = store
        self.sink = sink

    async def download(self, url: str, dest_dir: Path) -> Path:
        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
        dest = dest_dir / file_name(url)
        try:
            await download(
                url,
                dest,
                max_bytes=int(self.config.firmware.max_download_mb * 2**20),
                free_margin_bytes=FREE_MARGIN_BYTES,
            )
        except TransferError as err:
            raise FirmwareError(str(err)) from err
        return dest

    async def install(self, path: Path) -> None:
        argv = [*shlex.split(self.config.firmware.install_command), str(path)]
        timeout = self.config.firmware.install_timeout_s
        log.info("firmware: running %s", shlex.join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise FirmwareError(f"cannot run the installer {argv[0]}: {err}") from err
        tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        try:
            async with asyncio.timeout(timeout):
                assert proc.stdout is not None
                async for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    tail.append(line)
                    log.info("installer: %s", line)
                code = await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise FirmwareError(
                f"the installer did not finish within {timeout:g} s and was killed"
            ) from None
        if code != 0:
            last = tail[-1] if tail else "no output"
            raise FirmwareError(f"the installer exited with {code}: {last}")

    async def report(self, status: FirmwareStatus, job: FirmwareJob) -> None:
        log.info("firmware: %s (%s)", status, redact_url(job.location))
        await self.sink.firmware_status(str(status))

    async def save(self, job: FirmwareJob | None) -> None:
        await self.store.run(self.store.set_state, JOB_STATE_KEY, job.to_json() if job else "")

    async def discard(self, path: Path) -> None:
        await asyncio.to_thread(path.unlink, missing_ok=True)
