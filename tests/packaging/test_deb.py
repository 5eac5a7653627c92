"""The Debian package (packaging/debian), built and installed into a clean Debian 12 root.

Run with ``make deb-test``; skipped unless ``CPAGENT_DEB_TEST=1``. It needs root (chroot,
unshare), the Debian mirror (mmdebstrap, once: the base root is cached under
build/deb-test/) and PyPI (the package build), and takes a few minutes, mostly the two
package builds. Each scenario installs into its own copy of a minimal bookworm root that
has only the package's Depends preinstalled, and runs dpkg there without network
(``unshare -n``): the agent's own Python dependencies must come from the .deb. A
policy-rc.d denies service starts (no systemd runs in the chroot).

The two tests at the top always run: the default /etc/cpagent/cpagent.toml the package
installs must stay valid as the config schema changes.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from cpagent.config import load_config
from tests.packaging.debroot import (
    ARCH,
    CONF,
    DEBS,
    DEFAULT_CONF,
    IMPORT_ALL,
    MIRROR,
    TEST_TIMEOUT,
    VENV,
    Chroot,
    Deb,
    Timer,
    bookworm_root,
    check_installed,
    deb_test,
    package_names,
    repack,
    run,
)

# The schema validators generated at the package build: every one found, byte-compiled by
# the postinst, and none compiled at run time (fastjsonschema's compile refuses here).
GENERATED_VALIDATORS = """
import os, sys
import fastjsonschema
def refuse(*args, **kwargs):
    raise AssertionError("a schema was compiled at run time")
fastjsonschema.compile = refuse
from cpagent.protocol.v16 import schemas as v16
from cpagent.protocol.v201 import schemas as v201
counts = v16.preload(), v201.preload()
module = sys.modules["cpagent.protocol._validators.v201.BootNotificationRequest"]
assert os.path.exists(module.__cached__), module.__cached__
print("generated validators", *counts)
"""

# --- the shipped default config (always run) ----------------------------------------------


def test_default_conffile_is_valid() -> None:
    config = load_config(DEFAULT_CONF)
    assert config.hal.backend == "sim"  # starts on any board, wired or not
    assert str(config.storage.data_dir) == "/var/lib/cpagent"
    assert str(config.control.socket) == "/run/cpagent/control.sock"
    assert config.firmware.install_command == "/usr/lib/cpagent/install-firmware"


def test_default_conffile_hardware_example_is_valid(tmp_path: Path) -> None:
    """Uncommenting the documented hardware example and switching the backend is valid."""
    text = DEFAULT_CONF.read_text()
    start = text.index("# [hal.buses.rs485]")
    end = text.index("\n\n", start)
    example = "\n".join(line.removeprefix("# ") for line in text[start:end].splitlines())
    text = text[:start] + example + text[end:]
    text = text.replace('backend = "sim"', 'backend = "hardware"', 1)
    path = tmp_path / "cpagent.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.hal.backend == "hardware"
    hardware = config.hal.hardware
    assert hardware is not None and "rs485" in hardware.buses
    assert len(hardware.connectors) == 1 and hardware.card_reader is not None


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_lintian_reports_no_errors(debs: tuple[Deb, Deb]) -> None:
    report = DEBS / f"lintian-{debs[0].version}_{ARCH}.txt"
    tags = [line for line in report.read_text().splitlines() if re.match(r"^[EW]: ", line)]
    print("\n[deb-test] lintian:", *(tags or ["no errors, no warnings"]), sep="\n  ")
    assert not [t for t in tags if t.startswith("E: ")]


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_apt_installs_it_with_its_dependencies_on_a_clean_system(debs: tuple[Deb, Deb]) -> None:
    """What a user does on a freshly installed board: ``apt install ./cpagent_<v>_<arch>.deb``
    with Debian's mirror reachable. apt resolves the Depends (Python 3.11, python3-systemd,
    the libraries the venv's binaries link) and installs them; then the agent runs."""
    first, _ = debs
    root = Chroot(bookworm_root([]))
    try:
        depends = package_names(first.field("Depends"))
        assert root.run("dpkg-query", "-W", "python3.11", check=False).returncode != 0
        root.run("groupadd", "--system", "gpio")  # as Raspberry Pi OS has it
        inside = root.copy_in(first)
        with Timer(f"apt-get install {first.path.name} on a clean minbase {ARCH} root"):
            root.run("apt-get", "update", "-q", network=True, timeout=600)
            root.run("apt-get", "install", "-y", "-q", inside, network=True, timeout=1200)
        check_installed(root, first)
        missing = [p for p in depends if root.run("dpkg-query", "-W", p, check=False).returncode]
        assert not missing, f"apt did not install {missing}"
        with Timer("cpagent demo"):
            out = root.sh("cd /tmp && cpagent demo", user="cpagent", network=True, timeout=180)
        assert "schema violations: 0" in out, out[-2000:]
    finally:
        root.remove()


# ELF class (1: 32-bit, 2: 64-bit) and e_machine of each Debian architecture.
ELF_OF_ARCH = {"amd64": (2, 62), "arm64": (2, 183), "armhf": (1, 40)}


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_every_binary_is_built_for_the_package_architecture(
    debs: tuple[Deb, Deb], tmp_path: Path
) -> None:
    """A cross build must not let one extension module of the build machine slip in, and
    the Depends must name what the binaries link."""
    deb = debs[0]
    assert deb.field("Architecture") == ARCH
    run(["dpkg-deb", "-x", str(deb.path), str(tmp_path)])
    found: dict[str, tuple[int, int]] = {}
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                head = f.read(20)
            if head[:4] == b"\x7fELF":
                found[str(path.relative_to(tmp_path))] = (
                    head[4],
                    int.from_bytes(head[18:20], "little"),
                )
    assert len(found) >= 4, found  # cryptography, rpds-py, websockets, _cffi_backend, pkcs11
    wrong = {name: elf for name, elf in found.items() if elf != ELF_OF_ARCH[ARCH]}
    assert not wrong, f"binaries not for {ARCH}: {wrong}"
    depends = package_names(deb.field("Depends"))
    assert {"libc6", "libgcc-s1", "python3.11", "python3-systemd"} <= set(depends), depends
    print(f"\n[deb-test] {len(found)} ELF files, all {ARCH}; Depends: {', '.join(depends)}")


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_install_upgrade_remove_purge(debs: tuple[Deb, Deb], chroot: Chroot) -> None:
    first, second = debs
    root = chroot
    # No network inside: what the package needs must already be there (its Depends).
    mirror_host = MIRROR.split("/")[2]
    assert root.run("getent", "hosts", mirror_host, check=False).returncode != 0

    with Timer(f"install {first.path.name} offline"):
        root.dpkg_install(first)
    check_installed(root, first)
    root.run(f"{VENV}/bin/python3", "-c", IMPORT_ALL, user="cpagent")
    out = root.run(f"{VENV}/bin/python3", "-c", GENERATED_VALIDATORS, user="cpagent").stdout
    assert re.search(r"^generated validators \d+ \d+$", out, re.M), out

    with Timer("reinstall the same version"):
        root.dpkg_install(first)
    check_installed(root, first)

    with Timer("cpagent demo (simulated session, loopback CSMS)"):
        out = root.sh("cd /tmp && cpagent demo", user="cpagent", network=True, timeout=180)
    assert "schema violations: 0" in out, out[-2000:]

    # The admin edits the config and the agent has state; then a newer version arrives.
    conf = root.path(CONF)
    edited = conf.read_text().replace('id = "CP001"', 'id = "CP-EDITED"', 1) + "# mine\n"
    conf.write_text(edited)
    root.run("install", "-o", "cpagent", "-g", "cpagent", "/dev/null", "/var/lib/cpagent/keep")
    with Timer(f"upgrade to {second.version} (plain dpkg -i, no terminal)"):
        root.dpkg_install(second)
    check_installed(root, second)
    assert conf.read_text() == edited, "the upgrade replaced the edited conffile"
    assert not list(root.path("/etc/cpagent").glob("cpagent.toml.dpkg-*"))
    assert root.path("/var/lib/cpagent/keep").exists()
    assert "CP-EDITED" in root.sh(f"cpagent check-config --config {CONF}")

    # What the unit's LogsDirectory= makes when systemd starts the agent.
    root.run("install", "-d", "-o", "cpagent", "-g", "cpagent", "-m", "0750", "/var/log/cpagent")
    root.run("install", "-o", "cpagent", "-g", "cpagent", "/dev/null", "/var/log/cpagent/log")
    with Timer("remove"):
        root.run("dpkg", "--remove", "cpagent")
    assert root.status() == f"deinstall ok config-files {second.version}"
    assert not root.path("/usr/bin/cpagent").exists()
    # The prerm removed the byte code, so dpkg could remove the whole venv.
    assert not root.path("/usr/lib/cpagent").exists()
    assert conf.read_text() == edited
    assert root.path("/var/lib/cpagent/keep").exists()
    assert root.path("/var/log/cpagent/log").exists()
    assert root.run("getent", "passwd", "cpagent", check=False).returncode == 0

    with Timer("purge"):
        root.run("dpkg", "--purge", "cpagent")
    assert root.status() == "", "dpkg still knows cpagent after purge"
    assert not root.path("/var/lib/cpagent").exists()
    assert not root.path("/var/log/cpagent").exists()
    assert not root.path("/etc/cpagent").exists()
    assert not root.sh("dpkg-statoverride --list", check=False)
    assert not root.path("/etc/systemd/system/multi-user.target.wants/cpagent.service").exists()
    # Policy: the user and group stay (files elsewhere may still be theirs).
    assert root.run("getent", "passwd", "cpagent", check=False).returncode == 0

    with Timer("install again after purge (the user exists)"):
        root.dpkg_install(second)
    check_installed(root, second)
    assert "CP001" in root.sh(f"cpagent check-config --config {CONF}")


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_firmware_update_keeps_the_edited_conffile(
    debs: tuple[Deb, Deb], chroot: Chroot, tmp_path: Path
) -> None:
    """An OCPP firmware update through apply-firmware (as cpagent-firmware-install.service
    runs it: root, no terminal) of a release whose default config changed: plain
    "dpkg -i" would stop at the conffile prompt and leave cpagent unpacked, unconfigured."""
    first, second = debs
    root = chroot
    newer = repack(second, f"{first.version}+debtest2", tmp_path)
    with Timer(f"install {first.path.name} offline"):
        root.dpkg_install(first)
    conf = root.path(CONF)
    edited = conf.read_text().replace('id = "CP001"', 'id = "CP-EDITED"', 1)
    conf.write_text(edited)

    spool = "/var/lib/cpagent/firmware-spool"
    shutil.copy2(newer.path, root.path(f"{spool}/pending.deb"))
    root.run("chown", "cpagent:cpagent", f"{spool}/pending.deb")
    with Timer(f"apply-firmware {newer.version} (changed default config)"):
        proc = root.run("/usr/lib/cpagent/apply-firmware", check=False, timeout=600)
    verdict = root.path(f"{spool}/result").read_text().strip()
    assert (proc.returncode, verdict) == (0, "0"), f"{verdict}\n{proc.stdout}{proc.stderr}"
    check_installed(root, newer)
    assert conf.read_text() == edited
    assert root.path(f"{CONF}.dpkg-dist").exists()  # the new default, for the admin to merge


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-p", "no:xdist", "-s", *sys.argv[1:]]))
