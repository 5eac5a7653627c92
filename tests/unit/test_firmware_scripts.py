"""The default installer hand-over (packaging/install-firmware and apply-firmware)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

PACKAGING = Path(__file__).parents[2] / "packaging"
INSTALL = PACKAGING / "install-firmware"
APPLY = PACKAGING / "apply-firmware"


def run(
    script: Path, *args: str, spool: Path, wait_s: int = 60
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "CPAGENT_FIRMWARE_SPOOL": str(spool),
           "CPAGENT_FIRMWARE_WAIT_S": str(wait_s)}  # fmt: skip
    return subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def answer_when_handed_over(spool: Path, verdict: str) -> threading.Thread:
    """Play the root side: once the package is in the spool, take it and write a verdict,
    as apply-firmware does: whole, by a rename (install-firmware may look at any moment)."""

    def root_side() -> None:
        pending = spool / "pending.deb"
        for _ in range(6000):  # a minute at least, however busy the machine
            if pending.exists():
                break
            threading.Event().wait(0.01)
        (spool / "taken.deb").write_bytes(pending.read_bytes())
        pending.unlink()
        (spool / "result.tmp").write_text(verdict + "\n")
        (spool / "result.tmp").rename(spool / "result")

    thread = threading.Thread(target=root_side)
    thread.start()
    return thread


def test_a_package_is_handed_over_and_its_verdict_is_the_exit_code(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    package = tmp_path / "cpagent_1.1.0_arm64.deb"
    package.write_bytes(b"!<arch>\n" + bytes(range(256)) * 100)
    root = answer_when_handed_over(spool, "0")
    done = run(INSTALL, str(package), spool=spool)
    root.join(5)
    assert done.returncode == 0, done
    assert (spool / "taken.deb").read_bytes() == package.read_bytes()
    assert not (spool / "result").exists()

    root = answer_when_handed_over(spool, "dpkg -i failed: dependency problems")
    done = run(INSTALL, str(package), spool=spool)
    root.join(5)
    assert done.returncode == 1
    assert "dependency problems" in done.stderr


def test_no_verdict_in_time_and_bad_arguments(tmp_path: Path) -> None:
    package = tmp_path / "cpagent.deb"
    package.write_bytes(b"x")
    assert run(INSTALL, str(package), spool=tmp_path / "s", wait_s=1).returncode == 124
    assert run(INSTALL, str(tmp_path / "missing.deb"), spool=tmp_path / "s").returncode == 2
    other = tmp_path / "firmware.bin"
    other.write_bytes(b"x")
    refused = run(INSTALL, str(other), spool=tmp_path / "s")
    assert refused.returncode == 3 and "not a .deb" in refused.stderr


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_the_root_side_installs_only_cpagent(tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: notcpagent\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Test <test@example.com>\nDescription: test\n"
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    subprocess.run(
        ["dpkg-deb", "--build", str(tree), str(spool / "pending.deb")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    done = run(APPLY, spool=spool)
    assert done.returncode == 1
    assert "refusing package 'notcpagent'" in (spool / "result").read_text()
    assert not (spool / "pending.deb").exists()

    (spool / "result").unlink()
    (spool / "pending.deb").write_bytes(b"not a package")
    assert run(APPLY, spool=spool).returncode == 1
    assert (spool / "result").read_text().strip() == "not a Debian package"
