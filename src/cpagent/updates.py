"""The agent's side of firmware updates and diagnostics uploads: files, processes, store.

:class:`AgentFirmwarePorts` implements :class:`~cpagent.station.firmware.FirmwarePorts`
with real downloads (:mod:`cpagent.transfer`), the signature check of signed firmware
(:mod:`cpagent.security.firmware_signature`, against the ManufacturerRootCertificates of
the :class:`~cpagent.security.pki.CertificateStore`), the configured installer
(``[firmware] install_command``, the file's path appended as its last argument, exit 0
meaning installed), the store's ``state`` table for the job, and the adapter's durable
queue for the reports.

The installer runs in its own session (process group). It is killed after
``install_timeout_s``; it is *not* killed when the agent stops, because an installer
that restarts the agent (a ``.deb`` upgrade) must be allowed to finish.

:class:`DiagnosticsUploader` answers GetDiagnostics: it names the file at once (the
CALLRESULT carries the name), then builds the archive (:mod:`cpagent.diagnostics`) and
uploads it with the requested retries, reporting Uploading and Uploaded/UploadFailed
durably. One upload runs at a time; a request meanwhile is answered without a file name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import re
import shlex
import signal
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from cpagent.config import Config
from cpagent.security.connection import CertificateSource
from cpagent.security.events import SecurityLog
from cpagent.station.firmware import FirmwareError, FirmwareJob, FirmwareStatus
from cpagent.store import Store
from cpagent.urlredact import redact_url

# cpagent.transfer and cpagent.diagnostics (with ftplib, http.client, tarfile, gzip) are
# imported by the methods that move or build a file: a charger that is never asked to
# update or upload does not hold them in memory.

log = logging.getLogger(__name__)

JOB_STATE_KEY = "firmware.job"
DIAGNOSTICS_DIR = "diagnostics"
NOT_RETRYABLE = frozenset({"UnsupportedScheme", "BadUrl"})
"""Transfer failures that the same request can never get past: not retried."""
OUTPUT_LINES_KEPT = 20
FREE_MARGIN_BYTES = 16 * 2**20
"""Space left free on the data disk after a download, so the store can still write."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


class StatusSink(Protocol):
    """Where the statuses go: durably queued notifications to the CSMS."""

    async def firmware_status(
        self, status: str, request_id: int | None = None, detail: str | None = None
    ) -> None:
        """Queue a firmware status: in OCPP 1.6 with ``request_id`` a
        SignedFirmwareStatusNotification (a SignedUpdateFirmware job), without it a
        FirmwareStatusNotification; in OCPP 2.0.1 a FirmwareStatusNotification carrying the
        UpdateFirmware's ``request_id``."""

    async def diagnostics_status(self, status: str) -> None: ...

    async def log_status(self, status: str, request_id: int) -> None:
        """Queue a LogStatusNotification (GetLog)."""


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
    """The firmware procedure's ports on a real system.

    ``certificates`` holds the ManufacturerRootCertificates signed firmware is checked
    against; without it every signed job fails its check (InvalidSignature), never
    installs unchecked.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        sink: StatusSink,
        *,
        certificates: CertificateSource | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.sink = sink
        self.certificates = certificates

    async def download(self, url: str, dest_dir: Path) -> Path:
        from cpagent.transfer import TransferError, download

        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
        dest = dest_dir / file_name(url)
        try:
            await download(
                url,
                dest,
                max_bytes=int(self.config.firmware.max_download_mb * 2**20),
                free_margin_bytes=FREE_MARGIN_BYTES,
                stall_timeout_s=self.config.firmware.stall_timeout_s,
            )
        except TransferError as err:
            raise FirmwareError(str(err), retryable=err.reason not in NOT_RETRYABLE) from err
        return dest

    async def verify(self, path: Path, job: FirmwareJob) -> None:
        """Check the signing certificate (still valid now, still chaining to an installed
        ManufacturerRootCertificate) and then the file's signature, in a worker thread."""
        from cpagent.security.firmware_signature import FirmwareSignatureError

        try:
            await asyncio.to_thread(self._verify, path, job)
        except FirmwareSignatureError as err:
            raise FirmwareError(f"{err.status}: {err}", retryable=False) from err

    def _verify(self, path: Path, job: FirmwareJob) -> None:
        # Imported here: only signed firmware needs cryptography (see CertificateSource).
        from cpagent.security.firmware_signature import (
            FirmwareSignatureError,
            verify_file_signature,
            verify_signing_certificate,
        )
        from cpagent.security.pki import CertificateUse

        if self.certificates is None:
            raise FirmwareSignatureError(
                "InvalidCertificate", "no certificate store to check signed firmware against"
            )
        roots = self.certificates().roots(CertificateUse.MANUFACTURER_ROOT)
        certificate = verify_signing_certificate(
            job.signing_certificate or "", roots, datetime.now(UTC)
        )
        verify_file_signature(path, job.signature or "", certificate)

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

    async def report(
        self, status: FirmwareStatus, job: FirmwareJob, detail: str | None = None
    ) -> None:
        log.info("firmware: %s (%s)", status, redact_url(job.location))
        if job.request_id is not None or job.signed:
            await self.sink.firmware_status(str(status), job.request_id, detail)
        else:  # the argument left out, not None: sinks from before signed firmware still fit
            await self.sink.firmware_status(str(status))

    async def save(self, job: FirmwareJob | None) -> None:
        await self.store.run(self.store.set_state, JOB_STATE_KEY, job.to_json() if job else "")

    async def discard(self, path: Path) -> None:
        await asyncio.to_thread(path.unlink, missing_ok=True)


@dataclass(frozen=True)
class DiagnosticsRequest:
    """GetDiagnostics, or the security extension's GetLog (``request_id`` set): a
    ``DiagnosticsLog`` is the same archive, a ``SecurityLog`` the security events."""

    location: str
    retries: int
    retry_interval_s: float
    start: datetime | None
    stop: datetime | None
    log_type: Literal["DiagnosticsLog", "SecurityLog"] = "DiagnosticsLog"
    request_id: int | None = None


_LOG_STATUS = {"Uploading": "Uploading", "Uploaded": "Uploaded", "UploadFailed": "UploadFailure"}
"""DiagnosticsStatusNotification's statuses as LogStatusNotification spells them."""


class DiagnosticsUploader:
    def __init__(
        self,
        config: Config,
        store: Store,
        sink: StatusSink,
        *,
        security_log: SecurityLog | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.sink = sink
        self.security_log = security_log
        self.dest_dir = config.storage.data_dir / DIAGNOSTICS_DIR
        self._task: asyncio.Task[None] | None = None
        self._pending: tuple[DiagnosticsRequest, datetime] | None = None
        self._request_id: int | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None or (self._task is not None and not self._task.done())

    def request(self, req: DiagnosticsRequest) -> str | None:
        """Start an upload and return the file name it will have; None while one runs."""
        if self.busy:
            log.warning(
                "diagnostics: an upload is already running; ignoring %s", redact_url(req.location)
            )
            return None
        from cpagent.diagnostics import SECURITY_ARCHIVE_KIND, archive_name

        now = datetime.now(UTC)
        self._pending = (req, now)
        kind = SECURITY_ARCHIVE_KIND if req.log_type == "SecurityLog" else "diagnostics"
        return archive_name(self.config.charge_point.id, now, kind)

    @property
    def request_id(self) -> int | None:
        """The GetLog request being served, if any (for a triggered LogStatusNotification)."""
        return self._request_id if self.busy else None

    async def begin(self) -> None:
        """Start the upload :meth:`request` named (once its answer has been sent)."""
        if self._pending is not None:
            req, now = self._pending
            self._pending = None
            self._request_id = req.request_id
            self._task = asyncio.create_task(self._run(req, now), name="diagnostics-upload")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, req: DiagnosticsRequest, now: datetime) -> None:
        from cpagent.transfer import TransferError, upload

        where = redact_url(req.location)
        await self._status(req, "Uploading")
        try:
            archive = await self._build(req, now)
        except Exception as err:  # noqa: BLE001 - reported as UploadFailed, never a dead agent
            log.error("diagnostics: cannot build the archive: %s", err)
            await self._status(req, "UploadFailed")
            return
        try:
            attempts = 1 + req.retries
            for attempt in range(1, attempts + 1):
                try:
                    await upload(
                        req.location,  # an FTP location ending in "/" gets the name appended
                        archive,
                        method=self.config.firmware.diagnostics_http_method,
                        stall_timeout_s=self.config.firmware.stall_timeout_s,
                    )
                except TransferError as err:
                    log.warning(
                        "diagnostics: upload %d of %d to %s failed: %s",
                        attempt,
                        attempts,
                        where,
                        err,
                    )
                    if err.reason in NOT_RETRYABLE:
                        break
                    if attempt < attempts:
                        await asyncio.sleep(req.retry_interval_s)
                    continue
                log.info("diagnostics: uploaded %s to %s", archive.name, where)
                await self._status(req, "Uploaded")
                return
            await self._status(req, "UploadFailed")
        finally:
            await asyncio.to_thread(archive.unlink, missing_ok=True)

    async def _status(self, req: DiagnosticsRequest, status: str) -> None:
        if status != "Uploading":
            # Its outcome is reported: a GetLog from now on cancels nothing (the task only
            # removes its archive still), and a triggered LogStatusNotification says Idle.
            self._request_id = None
        if req.request_id is None:
            await self.sink.diagnostics_status(status)
        else:
            await self.sink.log_status(_LOG_STATUS[status], req.request_id)

    async def _build(self, req: DiagnosticsRequest, now: datetime) -> Path:
        from cpagent.diagnostics import build_archive, build_security_archive, journal_source

        config = self.config
        if req.log_type == "SecurityLog":
            security_log = self.security_log
            lines = [] if security_log is None else list(security_log.lines(req.start, req.stop))
            return await asyncio.to_thread(
                build_security_archive,
                self.dest_dir,
                charge_point_id=config.charge_point.id,
                lines=lines,
                start=req.start,
                stop=req.stop,
                now=now,
            )
        config_text = (
            await asyncio.to_thread(config.source.read_text, errors="replace")
            if config.source is not None
            else None
        )
        summary = await self.store.run(self._store_summary)
        return await asyncio.to_thread(
            build_archive,
            self.dest_dir,
            charge_point_id=config.charge_point.id,
            config_text=config_text,
            store_summary=summary,
            log_file=config.logging.file,
            start=req.start,
            stop=req.stop,
            now=now,
            journal=journal_source(),
        )

    def _store_summary(self) -> dict[str, object]:
        store = self.store
        sizes = [p.stat().st_size for p in (store.path, Path(f"{store.path}-wal")) if p.exists()]
        return {
            "db_path": str(store.path),
            "db_bytes": sum(sizes),
            "queue_depth": len(store.pending()),
            "failed_count": store.failed_count(),
            "open_transactions": [dataclasses.asdict(t) for t in store.open_transactions()],
            "recovered_from": str(store.recovered_from) if store.recovered_from else None,
        }
