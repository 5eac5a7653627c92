"""The firmware update procedure: scheduled, resumable, verified, never under a charging car.

One :class:`FirmwareJob` at a time, persisted at every step through the ``save`` port,
so a restart resumes it where it stood: a job waiting for its retrieve date still
runs after a reboot, a download that was cut short starts again, and a job that was
*installing* when the agent went away (an installer that restarts the agent, as a
``.deb`` upgrade does) is judged on the next start by the firmware version: changed
means Installed, unchanged means InstallationFailed.

The steps, each reported through the ``report`` port as a :class:`FirmwareStatus`::

    scheduled --(retrieve date)--> Downloading --> Downloaded --> (a signed job only:
    SignatureVerified) --> (wait until no session runs; connectors Unavailable)
    --> Installing --> Installed

A job with a ``request_id`` (a signed 1.6 job, every 2.0.1 job) whose retrieve date is still
ahead is first reported DownloadScheduled; one whose ``install_at`` (2.0.1's installDateTime)
is still ahead once its file is ready is reported InstallScheduled and waits for it.
A job ends short of Installed at the step that failed: DownloadFailed after Downloading,
InvalidSignature after Downloaded (a signed job only), InstallationFailed after Installing.

A signed job (the security extension's SignedUpdateFirmware: :attr:`FirmwareJob.signed`)
has its file checked through the ``verify`` port right after Downloaded. A file that
fails is reported InvalidSignature, deleted and never installed: the station is not
even put on hold. The check is not persisted as a step of its own, so a signed job
resumed in its downloaded phase is checked again before it is installed (the file may
have changed while the agent was down). Unsigned jobs (UpdateFirmware) skip the check
and its statuses altogether.

Everything outside the procedure is a port, so it is tested without network or
processes and the next protocol versions add to it rather than rewrite it: OCPP 2.0.1
maps the same statuses onto its own names, carrying the ``request_id`` a job has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cpagent.exc import CpagentError
from cpagent.urlredact import redact_url

log = logging.getLogger(__name__)

CLOCK_RECHECK_S = 60.0
"""A wait for the retrieve date re-reads the wall clock at least this often (NTP may step it)."""


class FirmwareStatus(enum.StrEnum):
    IDLE = "Idle"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    SIGNATURE_VERIFIED = "SignatureVerified"
    INVALID_SIGNATURE = "InvalidSignature"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    INSTALLATION_FAILED = "InstallationFailed"


class Phase(enum.StrEnum):
    SCHEDULED = "scheduled"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"


class FirmwareError(CpagentError):
    """A download or an installation failed; the message names the cause. A download that
    is not ``retryable`` (an unsupported scheme) is not attempted again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class FirmwareJob:
    """One requested update. ``retrieve_at`` is a Unix time; ``file`` is set once the
    download is complete; ``version_before`` is the firmware version when installing began.

    A SignedUpdateFirmware job also has its ``request_id``, the ``signing_certificate`` (PEM,
    the leaf first, then intermediates) and the ``signature`` (base64) of the file; JSON
    persisted before these fields existed loads as an unsigned job. An OCPP 2.0.1 job has
    its ``request_id`` signed or not, and may have ``install_at`` (a Unix time): the file
    is not installed before then.
    """

    location: str
    retrieve_at: float
    retries: int
    retry_interval_s: float
    phase: Phase = Phase.SCHEDULED
    file: str | None = None
    version_before: str | None = None
    request_id: int | None = None
    signing_certificate: str | None = field(default=None, repr=False)
    signature: str | None = field(default=None, repr=False)
    install_at: float | None = None

    @property
    def signed(self) -> bool:
        """Whether the file must pass the signature check before it is installed."""
        return self.signature is not None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FirmwareJob:
        data = json.loads(text)
        data["phase"] = Phase(data["phase"])
        return cls(**data)


class FirmwarePorts(Protocol):
    """What the procedure needs from the rest of the agent."""

    async def download(self, url: str, dest_dir: Path) -> Path:
        """Fetch ``url`` into ``dest_dir``; return the file; raise FirmwareError."""

    async def verify(self, path: Path, job: FirmwareJob) -> None:
        """Check the downloaded ``path`` of a signed ``job`` against its signing certificate
        and signature; raise FirmwareError if it must not be installed. Called for signed
        jobs only."""

    async def install(self, path: Path) -> None:
        """Run the installer on ``path``; raise FirmwareError if it fails or times out."""

    async def report(
        self, status: FirmwareStatus, job: FirmwareJob, detail: str | None = None
    ) -> None:
        """Tell the CSMS (FirmwareStatusNotification; for a signed job
        SignedFirmwareStatusNotification with its ``request_id``); durable once this returns.
        ``detail`` says why a signed job was refused (InvalidSignature)."""

    async def save(self, job: FirmwareJob | None) -> None:
        """Persist the job (None: there is none) before the procedure goes on."""

    async def discard(self, path: Path) -> None:
        """Delete a downloaded file that is no longer needed (missing is fine)."""


class Maintenance(Protocol):
    async def hold_for_maintenance(self) -> None: ...

    async def end_maintenance(self) -> None: ...


class FirmwareUpdater:
    """Runs at most one :class:`FirmwareJob`; see the module docstring for the steps."""

    def __init__(
        self,
        ports: FirmwarePorts,
        station: Maintenance,
        *,
        download_dir: Path,
        current_version: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ports = ports
        self.station = station
        self.download_dir = download_dir
        self.current_version = current_version
        self._clock = clock
        self._sleep = sleep
        self.job: FirmwareJob | None = None
        self._task: asyncio.Task[None] | None = None
        self._verified = False
        """The current job's file passed the signature check in this run (not persisted)."""
        self._final: FirmwareStatus | None = None
        """The status a job ended with, while it is being reported."""
        self._install_waiting = False
        """The current job's file is ready and waits for its install date."""

    @property
    def status(self) -> FirmwareStatus:
        """What TriggerMessage(FirmwareStatusNotification) reports now; for a signed job, what
        ExtendedTriggerMessage(SignedFirmwareStatusNotification) reports with its request id
        (SignatureVerified once its file passed the check, until it is installing), and the
        final status while it is being reported, never an earlier step."""
        if self._final is not None:
            return self._final
        if self.job is None:
            return FirmwareStatus.IDLE
        if self.job.phase is Phase.SCHEDULED:
            scheduled = self.job.request_id is not None
            return FirmwareStatus.DOWNLOAD_SCHEDULED if scheduled else FirmwareStatus.IDLE
        if self.job.phase is Phase.DOWNLOADED and self._install_waiting:
            return FirmwareStatus.INSTALL_SCHEDULED
        if self.job.phase is Phase.DOWNLOADED and self._verified:
            return FirmwareStatus.SIGNATURE_VERIFIED
        return {
            Phase.DOWNLOADING: FirmwareStatus.DOWNLOADING,
            Phase.DOWNLOADED: FirmwareStatus.DOWNLOADED,
            Phase.INSTALLING: FirmwareStatus.INSTALLING,
        }[self.job.phase]

    async def start(self, saved: FirmwareJob | None) -> None:
        """Resume ``saved`` (the job persisted before the agent last stopped)."""
        if saved is None:
            return
        if saved.phase is Phase.INSTALLING:
            await self._judge_after_restart(saved)
            return
        if saved.phase is Phase.DOWNLOADING:
            saved = dataclasses.replace(saved, phase=Phase.SCHEDULED)
        self._launch(saved)

    async def request(self, job: FirmwareJob) -> bool:
        """Take a new job (UpdateFirmware) and start it."""
        if not await self.accept(job):
            return False
        await self.begin()
        return True

    async def accept(self, job: FirmwareJob) -> bool:
        """Persist a new job without starting it, so it is durable before UpdateFirmware is
        answered; :meth:`begin` starts it. A job that is installing is never interrupted:
        the new one is then refused (False); an earlier job not yet installing is replaced."""
        if self.job is not None and self.job.phase is Phase.INSTALLING:
            log.warning(
                "firmware: ignoring a new update while installing %s", redact_url(self.job.location)
            )
            return False
        await self.stop()
        await self.ports.save(job)
        self.job = job
        self._verified = False
        return True

    async def begin(self) -> None:
        """Start the job :meth:`accept` took (no-op if it is already running)."""
        if self.job is not None and self._task is None:
            self._launch(self.job)

    async def stop(self) -> None:
        """Cancel the running job's task (at shutdown); its persisted state stays."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _launch(self, job: FirmwareJob) -> None:
        self.job = job
        self._verified = False
        self._task = asyncio.create_task(self._run(job), name="firmware-update")

    async def _set(self, job: FirmwareJob) -> FirmwareJob:
        await self.ports.save(job)
        self.job = job
        return job

    async def _finish(
        self, status: FirmwareStatus, job: FirmwareJob, detail: str | None = None
    ) -> None:
        # Reported before the job is forgotten: a crash in between reports it twice,
        # never not at all.
        self._final = status
        try:
            await self.ports.report(status, job, detail)
            await self.ports.save(None)
            self.job = None
            self._verified = False
        finally:
            self._final = None

    async def _run(self, job: FirmwareJob) -> None:
        try:
            if job.phase is Phase.SCHEDULED:
                if job.request_id is not None and job.retrieve_at > self._clock():
                    # 1.6's FirmwareStatusNotification (no request id) lacks this status.
                    await self.ports.report(FirmwareStatus.DOWNLOAD_SCHEDULED, job)
                await self._wait_until(job.retrieve_at)
                job = await self._download(job)
                if job.phase is not Phase.DOWNLOADED:
                    return
            if job.signed and not await self._verify(job):
                return
            await self._install(job)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the agent down, nor keep a job stuck
            log.exception("firmware: update of %s failed unexpectedly", redact_url(job.location))
            await self._finish(FirmwareStatus.INSTALLATION_FAILED, job)

    async def _wait_until(self, when: float) -> None:
        while (remaining := when - self._clock()) > 0:
            await self._sleep(min(remaining, CLOCK_RECHECK_S))

    async def _download(self, job: FirmwareJob) -> FirmwareJob:
        job = await self._set(dataclasses.replace(job, phase=Phase.DOWNLOADING))
        await self.ports.report(FirmwareStatus.DOWNLOADING, job)
        attempts = 1 + job.retries
        attempt = 0
        for attempt in range(1, attempts + 1):
            try:
                path = await self.ports.download(job.location, self.download_dir)
            except FirmwareError as err:
                log.warning(
                    "firmware: download %d of %d from %s failed: %s",
                    attempt,
                    attempts,
                    redact_url(job.location),
                    err,
                )
                if not err.retryable:
                    break
                if attempt < attempts:
                    await self._sleep(job.retry_interval_s)
                continue
            log.info("firmware: downloaded %s to %s", redact_url(job.location), path)
            job = await self._set(dataclasses.replace(job, phase=Phase.DOWNLOADED, file=str(path)))
            await self.ports.report(FirmwareStatus.DOWNLOADED, job)
            return job
        log.error(
            "firmware: giving up on %s after %d attempt(s)", redact_url(job.location), attempt
        )
        await self._finish(FirmwareStatus.DOWNLOAD_FAILED, job)
        return job

    async def _verify(self, job: FirmwareJob) -> bool:
        """Whether the signed job's file may be installed; one that may not is finished here."""
        assert job.file is not None
        path = Path(job.file)
        try:
            await self.ports.verify(path, job)
        except FirmwareError as err:
            log.error("firmware: %s is not installed: %s", path.name, err)
            # Deleted before the job is forgotten: a crash in between resumes the job,
            # whose check then fails on the missing file and reports InvalidSignature.
            await self.ports.discard(path)
            await self._finish(FirmwareStatus.INVALID_SIGNATURE, job, str(err))
            return False
        self._verified = True
        await self.ports.report(FirmwareStatus.SIGNATURE_VERIFIED, job)
        return True

    async def _install(self, job: FirmwareJob) -> None:
        assert job.file is not None
        path = Path(job.file)
        if job.install_at is not None and job.install_at > self._clock():
            self._install_waiting = True
            try:
                await self.ports.report(FirmwareStatus.INSTALL_SCHEDULED, job)
                await self._wait_until(job.install_at)
            finally:
                self._install_waiting = False
        log.info("firmware: waiting for running sessions to end before installing")
        await self.station.hold_for_maintenance()
        try:
            job = await self._set(
                dataclasses.replace(
                    job, phase=Phase.INSTALLING, version_before=self.current_version
                )
            )
            await self.ports.report(FirmwareStatus.INSTALLING, job)
            try:
                await self.ports.install(path)
            except FirmwareError as err:
                log.error("firmware: installing %s failed: %s", path.name, err)
                await self._finish(FirmwareStatus.INSTALLATION_FAILED, job)
                return
            log.info("firmware: %s installed", path.name)
            await self._finish(FirmwareStatus.INSTALLED, job)
        finally:
            await self.ports.discard(path)
            await self.station.end_maintenance()

    async def _judge_after_restart(self, job: FirmwareJob) -> None:
        if job.file is not None:
            await self.ports.discard(Path(job.file))
        if self.current_version != job.version_before:
            log.info(
                "firmware: now %s (was %s): installed", self.current_version, job.version_before
            )
            await self._finish(FirmwareStatus.INSTALLED, job)
        else:
            log.error(
                "firmware: still %s after the installer restarted the agent: installation failed",
                self.current_version,
            )
            await self._finish(FirmwareStatus.INSTALLATION_FAILED, job)
