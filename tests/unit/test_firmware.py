"""The firmware update procedure with fake ports: steps, retries, resumption, refusals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from cpagent.station.firmware import (
    FirmwareError,
    FirmwareJob,
    FirmwareStatus,
    FirmwareUpdater,
    Phase,
)

S = FirmwareStatus
WAIT_S = 5.0
NOW = 1_800_000_000.0


@dataclass
class FakeWorld:
    """Ports, station and clock in one: every call is logged in order."""

    now: float = NOW
    download_failures: int = 0
    install_error: str | None = None
    install_gate: asyncio.Event | None = None
    saved: list[FirmwareJob | None] = field(default_factory=list)
    reports: list[FirmwareStatus] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    installing: asyncio.Event = field(default_factory=asyncio.Event)

    # -- ports
    async def download(self, url: str, dest_dir: Path) -> Path:
        self.calls.append(f"download {url}")
        if self.download_failures:
            self.download_failures -= 1
            raise FirmwareError("404 Not Found")
        return dest_dir / "fw.deb"

    async def install(self, path: Path) -> None:
        self.calls.append(f"install {path.name}")
        self.installing.set()
        if self.install_gate is not None:
            await self.install_gate.wait()
        if self.install_error:
            raise FirmwareError(self.install_error)

    async def report(self, status: FirmwareStatus, job: FirmwareJob) -> None:
        self.reports.append(status)
        if status in (S.INSTALLED, S.INSTALLATION_FAILED, S.DOWNLOAD_FAILED):
            self.done.set()

    async def save(self, job: FirmwareJob | None) -> None:
        self.saved.append(job)

    async def discard(self, path: Path) -> None:
        self.calls.append(f"discard {path.name}")

    # -- station
    async def hold_for_maintenance(self) -> None:
        self.calls.append("hold")

    async def end_maintenance(self) -> None:
        self.calls.append("release")

    # -- time
    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    async def finished(self) -> None:
        await asyncio.wait_for(self.done.wait(), WAIT_S)


def make(world: FakeWorld, version: str = "1.0.0") -> FirmwareUpdater:
    return FirmwareUpdater(
        world,
        world,
        download_dir=Path("/data/firmware"),
        current_version=version,
        clock=world.clock,
        sleep=world.sleep,
    )


def job(**kw: object) -> FirmwareJob:
    fields: dict[str, object] = {
        "location": "http://fw.example/fw.deb",
        "retrieve_at": NOW,
        "retries": 2,
        "retry_interval_s": 30.0,
    }
    fields.update(kw)
    return FirmwareJob(**fields)  # type: ignore[arg-type]


async def test_a_full_update_reports_every_step_and_waits_for_sessions() -> None:
    world = FakeWorld()
    updater = make(world)
    assert await updater.request(job())
    await world.finished()
    assert world.reports == [S.DOWNLOADING, S.DOWNLOADED, S.INSTALLING, S.INSTALLED]
    assert world.calls == [
        "download http://fw.example/fw.deb",
        "hold",
        "install fw.deb",
        "discard fw.deb",
        "release",
    ]
    phases = [j.phase if j else None for j in world.saved]
    assert phases == [
        Phase.SCHEDULED,
        Phase.DOWNLOADING,
        Phase.DOWNLOADED,
        Phase.INSTALLING,
        None,
    ]
    installing = world.saved[3]
    assert installing is not None and installing.version_before == "1.0.0"
    assert updater.job is None and updater.status is S.IDLE


async def test_the_retrieve_date_is_waited_for_on_the_wall_clock() -> None:
    world = FakeWorld()
    updater = make(world)
    await updater.request(job(retrieve_at=NOW + 150))
    await world.finished()
    assert sum(world.sleeps) == pytest.approx(150)
    assert max(world.sleeps) <= 60  # the clock is re-read at least every minute
    assert world.reports[0] is S.DOWNLOADING


async def test_downloads_are_retried_then_given_up() -> None:
    world = FakeWorld(download_failures=10)
    updater = make(world)
    await updater.request(job(retries=2, retry_interval_s=30.0))
    await world.finished()
    assert world.calls == ["download http://fw.example/fw.deb"] * 3
    assert world.sleeps == [30.0, 30.0]
    assert world.reports == [S.DOWNLOADING, S.DOWNLOAD_FAILED]
    assert world.saved[-1] is None and updater.job is None


async def test_a_download_that_works_on_retry_goes_on() -> None:
    world = FakeWorld(download_failures=1)
    await make(world).request(job(retries=1))
    await world.finished()
    assert world.reports == [S.DOWNLOADING, S.DOWNLOADED, S.INSTALLING, S.INSTALLED]


async def test_a_failed_installation_is_reported_and_the_charger_released() -> None:
    world = FakeWorld(install_error="installer exited with 1")
    updater = make(world)
    await updater.request(job())
    await world.finished()
    assert world.reports[-1] is S.INSTALLATION_FAILED
    assert world.calls[-2:] == ["discard fw.deb", "release"]
    assert updater.job is None
    # A second request is taken afterwards.
    world.install_error, world.done = None, asyncio.Event()
    assert await updater.request(job())
    await world.finished()
    assert world.reports[-1] is S.INSTALLED


async def test_a_request_while_installing_is_ignored_and_one_before_replaces() -> None:
    world = FakeWorld(install_gate=asyncio.Event())
    updater = make(world)
    await updater.request(job(retrieve_at=NOW + 10_000))
    assert updater.status is S.IDLE  # scheduled
    await updater.request(job(location="http://fw.example/other.deb"))
    await asyncio.wait_for(world.installing.wait(), WAIT_S)
    assert updater.status is S.INSTALLING
    assert await updater.request(job(location="http://fw.example/third.deb")) is False
    assert world.install_gate is not None
    world.install_gate.set()
    await world.finished()
    assert [c for c in world.calls if c.startswith("download")] == [
        "download http://fw.example/other.deb"
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.SCHEDULED, [S.DOWNLOADING, S.DOWNLOADED, S.INSTALLING, S.INSTALLED]),
        (Phase.DOWNLOADING, [S.DOWNLOADING, S.DOWNLOADED, S.INSTALLING, S.INSTALLED]),
        (Phase.DOWNLOADED, [S.INSTALLING, S.INSTALLED]),
    ],
)
async def test_a_saved_job_resumes_where_it_stood(
    phase: Phase, expected: list[FirmwareStatus]
) -> None:
    world = FakeWorld()
    saved = job(phase=phase, file="/data/firmware/fw.deb" if phase is Phase.DOWNLOADED else None)
    await make(world).start(saved)
    await world.finished()
    assert world.reports == expected


@pytest.mark.parametrize(
    ("version_now", "status"), [("1.1.0", S.INSTALLED), ("1.0.0", S.INSTALLATION_FAILED)]
)
async def test_after_an_installer_restart_the_version_decides(
    version_now: str, status: FirmwareStatus
) -> None:
    world = FakeWorld()
    saved = job(phase=Phase.INSTALLING, file="/data/firmware/fw.deb", version_before="1.0.0")
    updater = make(world, version=version_now)
    await updater.start(saved)
    assert world.reports == [status]
    assert world.saved == [None]
    assert world.calls == ["discard fw.deb"]
    assert updater.job is None


async def test_the_job_survives_its_json_form() -> None:
    original = job(phase=Phase.INSTALLING, file="/x", version_before="1", request_id=7)
    assert FirmwareJob.from_json(original.to_json()) == original
    assert replace(original, phase=Phase.SCHEDULED) != original


async def test_an_unexpected_error_ends_the_job_instead_of_the_agent() -> None:
    world = FakeWorld()

    async def broken(url: str, dest_dir: Path) -> Path:
        raise RuntimeError("bug")

    world.download = broken  # type: ignore[method-assign]
    updater = make(world)
    await updater.request(job())
    await world.finished()
    assert world.reports[-1] is S.INSTALLATION_FAILED
    assert updater.job is None
