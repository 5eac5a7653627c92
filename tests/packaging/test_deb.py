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

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpagent.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONF = ROOT / "packaging" / "debian" / "cpagent.toml"
OUT = ROOT / "build" / "deb-test"
DEBS = OUT / "debs"  # not build/deb: "make deb"'s package stays what the tree builds
CONF = "/etc/cpagent/cpagent.toml"
VENV = "/usr/lib/cpagent/venv"


def apt_source(release: str) -> str:
    """The URI this machine's apt sources fetch ``release`` from ("" when none does)."""
    try:
        out = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(REPO_URI)", f"Release: {release}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        return ""
    return next(iter(out.split()), "").rstrip("/")


MIRROR = os.environ.get("CPAGENT_DEB_TEST_MIRROR") or apt_source("bookworm")
SECURITY_MIRROR = os.environ.get("CPAGENT_DEB_TEST_SECURITY_MIRROR") or apt_source(
    "bookworm-security"
)

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


# --- the package in a chroot (CPAGENT_DEB_TEST=1) ------------------------------------------

deb_test = pytest.mark.skipif(
    os.environ.get("CPAGENT_DEB_TEST") != "1", reason="set CPAGENT_DEB_TEST=1 (make deb-test)"
)
TIMINGS: list[tuple[str, float]] = []


class Timer:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        self.start = time.monotonic()
        print(f"\n[deb-test] {self.what} ...", flush=True)

    def __exit__(self, *exc: object) -> None:
        took = time.monotonic() - self.start
        TIMINGS.append((self.what, took))
        print(f"[deb-test] {self.what}: {took:.1f} s", flush=True)


def run(
    args: list[str], *, timeout: float = 300, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


class Deb:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = run(["dpkg-deb", "-f", str(path), "Version"]).stdout.strip()

    def field(self, name: str) -> str:
        return run(["dpkg-deb", "-f", str(self.path), name]).stdout.strip()


def build(version: str | None, *, lint: bool) -> Deb:
    env = dict(os.environ)
    env.pop("DEB_VERSION", None)
    if version:
        env["DEB_VERSION"] = version
    if not lint:
        env["DEB_NO_LINT"] = "1"
    env["DEB_OUT"] = str(DEBS)
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"build-{version or 'default'}.log"
    with log.open("w") as f:
        proc = subprocess.run(
            ["bash", str(ROOT / "packaging" / "build-deb.sh")],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=900,
            check=False,
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise AssertionError(f"packaging/build-deb.sh failed (see {log}):\n{tail}")
    return Deb(Path((DEBS / "latest").read_text().strip()))


def repack(deb: Deb, version: str, dest: Path) -> Deb:
    """``deb`` as ``version`` with a changed default config: what a later release with a new
    option in cpagent.toml looks like to dpkg."""
    tree = dest / "tree"
    run(["dpkg-deb", "-R", str(deb.path), str(tree)])
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
    with (tree / CONF.lstrip("/")).open("a") as f:
        f.write("# A line the next release added to the default config.\n")
    out = dest / f"cpagent_{version}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return Deb(out)


@pytest.fixture(scope="module")
def debs() -> Iterator[tuple[Deb, Deb]]:
    """The package as the tree is (linted) and rebuilt as a newer version."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, unshare, dpkg-buildpackage's build-dep install)")
    if "PYTEST_XDIST_WORKER" in os.environ:
        pytest.skip("run without xdist (make deb-test): the builds share build/deb-test")
    with Timer("build the package (make deb)"):
        first = build(None, lint=True)
    with Timer("build a newer version (DEB_VERSION)"):
        second = build(f"{first.version}+debtest1", lint=False)
    yield first, second
    total = sum(took for _, took in TIMINGS)
    lines = [f"  {took:7.1f} s  {what}" for what, took in TIMINGS]
    report = "\n".join(["[deb-test] timings:", *lines, f"  {total:7.1f} s  total"])
    print("\n" + report, flush=True)
    (OUT / "timings.txt").write_text(report + "\n")


def _package_names(depends: str) -> list[str]:
    """Debian package names in a Depends field (first alternative, no versions)."""
    names = []
    for item in depends.split(","):
        first = item.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return sorted(set(names))


@pytest.fixture(scope="module")
def base(debs: tuple[Deb, Deb]) -> Path:
    """A tarball of a minbase bookworm root with the package's Depends installed, cached."""
    includes = _package_names(debs[0].field("Depends"))
    mirrors = [
        f"deb {MIRROR} bookworm main",
        f"deb {MIRROR} bookworm-updates main",
        f"deb {SECURITY_MIRROR} bookworm-security main",
    ]
    key = hashlib.sha256("\n".join([*includes, *mirrors]).encode()).hexdigest()[:12]
    tarball = OUT / f"bookworm-minbase-{key}.tar"
    if tarball.exists():
        print(f"\n[deb-test] cached base root {tarball.name} ({', '.join(includes)})")
        return tarball
    if shutil.which("mmdebstrap") is None:
        with Timer("apt-get install mmdebstrap"):
            run(["apt-get", "install", "-y", "-q", "mmdebstrap"], timeout=600)
    partial = tarball.with_suffix(".partial.tar")
    with Timer(f"mmdebstrap minbase bookworm + {', '.join(includes)}"):
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(includes)}",
                "--format=tar",
                "bookworm",
                str(partial),
                *mirrors,
            ],
            timeout=900,
        )
    partial.rename(tarball)
    return tarball


class Chroot:
    """A throwaway copy of the base root; commands run in it without network by default."""

    def __init__(self, base: Path) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="root-", dir=OUT))
        run(["tar", "-C", str(self.dir), "-xf", str(base)])
        policy = self.dir / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# deb-test: no service starts in the chroot\nexit 101\n")
        policy.chmod(0o755)

    def run(
        self,
        *args: str,
        user: str | None = None,
        network: bool = False,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [] if network else ["unshare", "--net"]
        cmd += ["chroot"]
        if user:
            cmd.append(f"--userspec={user}:{user}")
        cmd += [str(self.dir), *args]
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
            "HOME": "/root" if user is None else "/tmp",
        }
        return run(cmd, env=env, check=check, timeout=timeout)

    def sh(
        self,
        script: str,
        *,
        user: str | None = None,
        network: bool = False,
        check: bool = True,
        timeout: float = 300,
    ) -> str:
        proc = self.run(
            "sh", "-c", script, user=user, network=network, check=check, timeout=timeout
        )
        return proc.stdout.strip()

    def path(self, path: str) -> Path:
        return self.dir / path.lstrip("/")

    def copy_in(self, deb: Deb) -> str:
        inside = f"/tmp/{deb.path.name}"
        shutil.copy2(deb.path, self.path(inside))
        return inside

    def dpkg_install(self, deb: Deb, *options: str) -> None:
        self.run("dpkg", *options, "-i", self.copy_in(deb), timeout=600)

    def stat(self, path: str) -> str:
        return self.sh(f"stat -c '%U:%G %a' {path}")

    def status(self) -> str:
        return self.sh("dpkg-query -W -f='${Status} ${Version}' cpagent", check=False)

    def remove(self) -> None:
        mounts = Path("/proc/mounts").read_text().split()
        if any(m.startswith(str(self.dir)) for m in mounts):
            raise AssertionError(f"something is mounted under {self.dir}: not deleting it")
        shutil.rmtree(self.dir)


@pytest.fixture()
def chroot(base: Path) -> Iterator[Chroot]:
    with Timer("unpack a fresh root"):
        root = Chroot(base)
        # Raspberry Pi OS has a gpio group, plain Debian has not: make one so that the
        # test also sees cpagent added to it.
        root.run("groupadd", "--system", "gpio")
    try:
        yield root
    finally:
        root.remove()


def check_installed(root: Chroot, deb: Deb) -> None:
    assert root.status() == f"install ok installed {deb.version}"
    pw = root.sh("getent passwd cpagent").split(":")
    assert (pw[5], pw[6]) == ("/var/lib/cpagent", "/usr/sbin/nologin"), pw
    assert int(pw[2]) < 1000, f"cpagent is not a system user: {pw}"
    groups = set(root.sh("id -nG cpagent").split())
    existing = {line.split(":")[0] for line in root.path("/etc/group").read_text().splitlines()}
    wanted = {"dialout", "gpio", "systemd-journal"} & existing
    assert wanted == {"dialout", "gpio", "systemd-journal"}, f"the base root lacks {existing}"
    assert {"cpagent", *wanted} <= groups, groups

    assert root.stat("/var/lib/cpagent") == "cpagent:cpagent 750"
    assert root.stat("/var/lib/cpagent/firmware-spool") == "cpagent:cpagent 750"
    assert root.stat(CONF) == "root:cpagent 640"
    assert root.stat("/usr/bin/cpagent") == "root:root 755"
    assert root.stat("/usr/lib/cpagent/install-firmware") == "root:root 755"
    assert root.stat("/usr/lib/cpagent/apply-firmware") == "root:root 755"
    assert root.sh(f"readlink -f {VENV}/bin/python3") == "/usr/bin/python3.11"
    conffiles = root.sh("dpkg-query -W -f='${Conffiles}' cpagent")
    assert CONF in conffiles, conffiles
    # Enabled (dh_installsystemd), not started (policy-rc.d, and no systemd running).
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert root.path(f"{wants}/cpagent.service").is_symlink()
    assert root.path(f"{wants}/cpagent-firmware-install.path").is_symlink()
    assert not root.sh("find /etc/systemd -name cpagent-firmware-install.service")
    # The postinst compiled the venv's byte code (the service user could not).
    assert list(root.path(VENV).glob("lib/python3.11/site-packages/cpagent/__pycache__/*.pyc"))

    assert root.sh("cpagent --version") == f"cpagent {load_version()}"
    # The TLS and certificate code loads its native parts on the installed system too.
    made = root.sh(
        f"{VENV}/bin/python -c 'from cpagent.testing.pki import TestCa;"
        ' print(TestCa.create().issue_client("CP1").cert.subject.rfc4514_string())\''
    )
    assert made == "CN=CP1", made
    # So does the PKCS#11 token helper (python-pkcs11): a request it cannot serve is
    # answered, not a crash.
    answer = root.sh(f"echo '{{}}' | {VENV}/bin/python -m cpagent.security.token_helper")
    assert answer.startswith('{"error": "bad token helper request'), answer
    for user in (None, "cpagent"):
        out = root.run("cpagent", "check-config", "--config", CONF, user=user).stdout
        assert "hardware:       sim" in out, out


def load_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


IMPORT_ALL = """
import importlib, pkgutil, sys
import cpagent
# Debian's python3-systemd through --system-site-packages; the rest from the venv.
import systemd.daemon, systemd.journal
assert systemd.journal.__file__.startswith("/usr/lib/python3/dist-packages/"), systemd.__file__
import fastjsonschema, gpiozero, ocpp, pymodbus, serial, websockets
for mod in (ocpp, pymodbus, gpiozero, websockets, serial, fastjsonschema):
    assert mod.__file__.startswith(sys.prefix + "/lib/"), mod.__file__
dev_only = {"pyftpdlib", "ocpp_csms", "pytest"}  # cpagent.testing's test-suite helpers
bad = []
for info in pkgutil.walk_packages(cpagent.__path__, "cpagent."):
    if info.name == "cpagent.__main__":
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as err:
        if not (info.name.startswith("cpagent.testing.") and err.name in dev_only):
            bad.append(f"{info.name}: {err!r}")
    except Exception as err:
        bad.append(f"{info.name}: {err!r}")
assert not bad, bad
print("imported", sys.prefix)
"""


@deb_test
@pytest.mark.timeout(1800)
def test_lintian_reports_no_errors(debs: tuple[Deb, Deb]) -> None:
    report = DEBS / f"lintian-{debs[0].version}.txt"
    tags = [line for line in report.read_text().splitlines() if re.match(r"^[EW]: ", line)]
    print("\n[deb-test] lintian:", *(tags or ["no errors, no warnings"]), sep="\n  ")
    assert not [t for t in tags if t.startswith("E: ")]


@deb_test
@pytest.mark.timeout(1800)
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
@pytest.mark.timeout(1800)
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
