"""The firmware update procedure with fake ports: steps, retries, resumption, refusals,
and the signature check of signed (SignedUpdateFirmware) jobs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cpagent.config import parse_config
from cpagent.security.pki import CertificateStore, CertificateUse
from cpagent.station.firmware import (
    FirmwareError,
    FirmwareJob,
    FirmwareStatus,
    FirmwareUpdater,
    Phase,
)
from cpagent.store import Store
from cpagent.testing.pki import TestCa, sign_file
from cpagent.updates import AgentFirmwarePorts

S = FirmwareStatus
WAIT_S = 30.0
NOW = 1_800_000_000.0


@dataclass
class FakeWorld:
    """Ports, station and clock in one: every call is logged in order."""

    now: float = NOW
    download_failures: int = 0
    install_error: str | None = None
    install_gate: asyncio.Event | None = None
    verify_error: str | None = None
    hold_gate: asyncio.Event | None = None
    saved: list[FirmwareJob | None] = field(default_factory=list)
    reports: list[FirmwareStatus] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    installing: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    verified: list[FirmwareJob] = field(default_factory=list)

    # -- ports
    async def download(self, url: str, dest_dir: Path) -> Path:
        self.calls.append(f"download {url}")
        if self.download_failures:
            self.download_failures -= 1
            raise FirmwareError("404 Not Found")
        return dest_dir / "fw.deb"

    async def verify(self, path: Path, job: FirmwareJob) -> None:
        self.calls.append(f"verify {path.name}")
        self.verified.append(job)
        if self.verify_error:
            raise FirmwareError(self.verify_error)

    async def install(self, path: Path) -> None:
        self.calls.append(f"install {path.name}")
        self.installing.set()
        if self.install_gate is not None:
            await self.install_gate.wait()
        if self.install_error:
            raise FirmwareError(self.install_error)

    async def report(
        self, status: FirmwareStatus, job: FirmwareJob, detail: str | None = None
    ) -> None:
        self.reports.append(status)
        if status in (S.INSTALLED, S.INSTALLATION_FAILED, S.DOWNLOAD_FAILED, S.INVALID_SIGNATURE):
            self.done.set()

    async def save(self, job: FirmwareJob | None) -> None:
        self.saved.append(job)

    async def discard(self, path: Path) -> None:
        self.calls.append(f"discard {path.name}")

    # -- station
    async def hold_for_maintenance(self) -> None:
        self.calls.append("hold")
        self.holding.set()
        if self.hold_gate is not None:
            await self.hold_gate.wait()

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


def signed_job(**kw: object) -> FirmwareJob:
    fields: dict[str, object] = {
        "request_id": 42,
        "signing_certificate": "-----BEGIN CERTIFICATE-----\n...",
        "signature": "c2lnbmF0dXJl",
    }
    fields.update(kw)
    return job(**fields)


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


async def test_an_unsigned_job_with_a_request_id_reports_its_schedule() -> None:
    """OCPP 2.0.1's UpdateFirmware without signature: DownloadScheduled while its retrieve
    date is ahead (FirmwareStatusNotification has the status), then the unsigned steps."""
    world = FakeWorld()
    updater = make(world)
    await updater.accept(job(retrieve_at=NOW + 150, request_id=7))
    assert updater.status is S.DOWNLOAD_SCHEDULED
    await updater.begin()
    await world.finished()
    assert world.reports == [
        S.DOWNLOAD_SCHEDULED,
        S.DOWNLOADING,
        S.DOWNLOADED,
        S.INSTALLING,
        S.INSTALLED,
    ]


async def test_the_install_date_is_waited_for_before_the_station_is_held() -> None:
    """OCPP 2.0.1's installDateTime: once downloaded, InstallScheduled, and the station is
    held for installing only when the date has come."""
    world = FakeWorld()
    updater = make(world)
    await updater.request(job(request_id=7, install_at=NOW + 300))
    await world.finished()
    assert world.reports == [
        S.DOWNLOADING,
        S.DOWNLOADED,
        S.INSTALL_SCHEDULED,
        S.INSTALLING,
        S.INSTALLED,
    ]
    assert sum(world.sleeps) == pytest.approx(300)
    assert world.calls.index("hold") > world.calls.index("download http://fw.example/fw.deb")


async def test_the_status_says_install_scheduled_while_waiting_for_the_date() -> None:
    world = FakeWorld()
    gate, waiting = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:  # only the wait for the install date sleeps
        waiting.set()
        await gate.wait()
        world.now += seconds

    updater = FirmwareUpdater(
        world,
        world,
        download_dir=Path("/data/firmware"),
        current_version="1.0.0",
        clock=world.clock,
        sleep=sleep,
    )
    await updater.request(job(request_id=7, install_at=NOW + 30))
    await asyncio.wait_for(waiting.wait(), WAIT_S)
    assert world.reports[-1] is S.INSTALL_SCHEDULED
    assert updater.status is S.INSTALL_SCHEDULED
    assert "hold" not in world.calls
    gate.set()
    await world.finished()
    assert updater.status is S.IDLE


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


# -- signed jobs (SignedUpdateFirmware) -------------------------------------------------------


async def test_a_signed_update_is_verified_before_the_station_is_held() -> None:
    world = FakeWorld()
    updater = make(world)
    assert await updater.request(signed_job())
    await world.finished()
    assert world.reports == [
        S.DOWNLOADING,
        S.DOWNLOADED,
        S.SIGNATURE_VERIFIED,
        S.INSTALLING,
        S.INSTALLED,
    ]
    assert world.calls == [
        "download http://fw.example/fw.deb",
        "verify fw.deb",
        "hold",
        "install fw.deb",
        "discard fw.deb",
        "release",
    ]
    (checked,) = world.verified
    assert checked.signature == "c2lnbmF0dXJl" and checked.request_id == 42
    assert checked.file == "/data/firmware/fw.deb"
    assert updater.job is None and updater.status is S.IDLE


async def test_a_bad_signature_is_reported_and_nothing_is_installed() -> None:
    world = FakeWorld(verify_error="InvalidSignature: does not match")
    updater = make(world)
    assert await updater.request(signed_job())
    await world.finished()
    assert world.reports == [S.DOWNLOADING, S.DOWNLOADED, S.INVALID_SIGNATURE]
    assert world.calls == [
        "download http://fw.example/fw.deb",
        "verify fw.deb",
        "discard fw.deb",
    ]  # never held for maintenance, never installed
    assert world.saved[-1] is None and updater.job is None and updater.status is S.IDLE
    # The updater takes the next request afterwards.
    world.verify_error, world.done = None, asyncio.Event()
    assert await updater.request(signed_job(request_id=43))
    await world.finished()
    assert world.reports[-1] is S.INSTALLED


async def test_the_status_says_verified_while_waiting_for_sessions_to_end() -> None:
    world = FakeWorld(hold_gate=asyncio.Event())
    updater = make(world)
    await updater.request(signed_job())
    await asyncio.wait_for(world.holding.wait(), WAIT_S)
    assert updater.status is S.SIGNATURE_VERIFIED
    assert world.hold_gate is not None
    world.hold_gate.set()
    await world.finished()
    assert updater.status is S.IDLE


async def test_an_unsigned_job_waiting_for_sessions_is_still_downloaded() -> None:
    world = FakeWorld(hold_gate=asyncio.Event())
    updater = make(world)
    await updater.request(job())
    await asyncio.wait_for(world.holding.wait(), WAIT_S)
    assert updater.status is S.DOWNLOADED
    assert world.hold_gate is not None
    world.hold_gate.set()
    await world.finished()
    assert "verify fw.deb" not in world.calls


@pytest.mark.parametrize(
    ("verify_error", "expected"),
    [
        (None, [S.SIGNATURE_VERIFIED, S.INSTALLING, S.INSTALLED]),
        ("InvalidSignature: changed on disk", [S.INVALID_SIGNATURE]),
    ],
)
async def test_a_resumed_signed_download_is_verified_again(
    verify_error: str | None, expected: list[FirmwareStatus]
) -> None:
    world = FakeWorld(verify_error=verify_error)
    saved = signed_job(phase=Phase.DOWNLOADED, file="/data/firmware/fw.deb")
    await make(world).start(saved)
    await world.finished()
    assert world.reports == expected
    assert world.calls[0] == "verify fw.deb"
    assert ("install fw.deb" in world.calls) is (verify_error is None)


async def test_a_signed_job_survives_its_json_form_and_old_json_still_loads() -> None:
    original = signed_job(phase=Phase.DOWNLOADED, file="/x")
    restored = FirmwareJob.from_json(original.to_json())
    assert restored == original and restored.signed
    old = json.dumps(
        {
            "location": "http://fw.example/fw.deb",
            "retrieve_at": NOW,
            "retries": 2,
            "retry_interval_s": 30.0,
            "phase": "downloaded",
            "file": "/x",
            "version_before": None,
            "request_id": None,
        }
    )
    loaded = FirmwareJob.from_json(old)
    assert loaded == job(phase=Phase.DOWNLOADED, file="/x")
    assert not loaded.signed and loaded.signature is None and loaded.signing_certificate is None
    assert "BEGIN CERTIFICATE" not in repr(original)  # logs stay one line


# -- the agent's ports for signed jobs --------------------------------------------------------


@dataclass
class RecordingSink:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def firmware_status(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((*args, *kwargs.items()))

    async def diagnostics_status(self, status: str) -> None:
        raise AssertionError("not a diagnostics test")


def agent_ports(
    tmp_path: Path, certificates: CertificateStore | None
) -> tuple[AgentFirmwarePorts, RecordingSink]:
    config = parse_config(
        {
            "charge_point": {"id": "CP001", "vendor": "V", "model": "M"},
            "csms": {"url": "ws://127.0.0.1:9000/ocpp"},
        }
    )
    sink = RecordingSink()
    source = None if certificates is None else (lambda: certificates)
    ports = AgentFirmwarePorts(config, Store(tmp_path / "db"), sink, certificates=source)
    return ports, sink


async def test_jobs_with_a_request_id_are_reported_with_it(tmp_path: Path) -> None:
    """Signed jobs (1.6 SignedUpdateFirmware) and every 2.0.1 UpdateFirmware, signed or
    not, carry a request id; a 1.6 UpdateFirmware has none, and its sink is called without
    the argument."""
    ports, sink = agent_ports(tmp_path, None)
    await ports.report(S.DOWNLOADING, signed_job(request_id=42))
    await ports.report(S.DOWNLOADING, job(request_id=7))  # unsigned, OCPP 2.0.1
    await ports.report(S.DOWNLOADING, job())  # unsigned, OCPP 1.6
    await ports.report(S.INVALID_SIGNATURE, signed_job(request_id=42), "InvalidSignature: bad")
    assert sink.calls == [
        ("Downloading", 42, None),
        ("Downloading", 7, None),
        ("Downloading",),
        ("InvalidSignature", 42, "InvalidSignature: bad"),
    ]


@pytest.fixture
def manufacturer(tmp_path: Path) -> tuple[TestCa, CertificateStore]:
    root = TestCa.create("Manufacturer Root")
    store = CertificateStore(tmp_path / "pki")
    assert store.install_root(CertificateUse.MANUFACTURER_ROOT, root.pem(), datetime.now(UTC)) == (
        "Accepted"
    )
    return root, store


async def test_the_verify_port_checks_certificate_and_signature(
    tmp_path: Path, manufacturer: tuple[TestCa, CertificateStore]
) -> None:
    root, store = manufacturer
    signer = root.issue_code_signing("Firmware Signer")
    path = tmp_path / "fw.deb"
    path.write_bytes(b"firmware image" * 1000)
    good = signed_job(signing_certificate=signer.chain_pem(), signature=sign_file(signer, path))
    ports, _ = agent_ports(tmp_path, store)
    await ports.verify(path, good)

    stranger = TestCa.create("Someone Else").issue_code_signing("Firmware Signer")
    cases = {
        "InvalidSignature": replace(good, signature=sign_file(stranger, path)),
        "InvalidCertificate": replace(good, signing_certificate=stranger.chain_pem()),
    }
    for status, bad in cases.items():
        with pytest.raises(FirmwareError, match=f"^{status}: "):
            await ports.verify(path, bad)
    path.write_bytes(b"firmware image" * 999 + b"malware image!")
    with pytest.raises(FirmwareError, match=r"^InvalidSignature: .*does not match"):
        await ports.verify(path, good)


async def test_without_a_certificate_store_signed_firmware_is_refused(tmp_path: Path) -> None:
    signer = TestCa.create().issue_code_signing("Firmware Signer")
    path = tmp_path / "fw.deb"
    path.write_bytes(b"firmware image")
    good = signed_job(signing_certificate=signer.chain_pem(), signature=sign_file(signer, path))
    ports, _ = agent_ports(tmp_path, None)
    with pytest.raises(FirmwareError, match=r"^InvalidCertificate: no certificate store"):
        await ports.verify(path, good)


async def test_a_tampered_download_never_reaches_the_installer(
    tmp_path: Path, manufacturer: tuple[TestCa, CertificateStore]
) -> None:
    """The procedure with the agent's real signature check and a file on disk."""
    root, store = manufacturer
    signer = root.issue_code_signing("Firmware Signer")
    path = tmp_path / "fw.deb"
    path.write_bytes(b"genuine firmware")
    signature = sign_file(signer, path)
    path.write_bytes(b"tampered firmware")
    world = FakeWorld()
    ports, _ = agent_ports(tmp_path, store)
    world.verify = ports.verify  # type: ignore[method-assign]
    world.discard = ports.discard  # type: ignore[method-assign]
    updater = FirmwareUpdater(
        world,
        world,
        download_dir=tmp_path,
        current_version="1.0.0",
        clock=world.clock,
        sleep=world.sleep,
    )
    await updater.request(signed_job(signing_certificate=signer.chain_pem(), signature=signature))
    await world.finished()
    assert world.reports == [S.DOWNLOADING, S.DOWNLOADED, S.INVALID_SIGNATURE]
    assert not path.exists()
    assert "install fw.deb" not in world.calls and "hold" not in world.calls
