"""The machinery of the package tests: building the .deb, a cached minimal bookworm root
and throwaway chroots made from it. Used by the tests under tests/packaging that run with
``make deb-test`` (``CPAGENT_DEB_TEST=1``)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONF = ROOT / "packaging" / "debian" / "cpagent.toml"
OUT = ROOT / "build" / "deb-test"
DEBS = OUT / "debs"  # not build/deb: "make deb"'s package stays what the tree builds
CONF = "/etc/cpagent/cpagent.toml"
VENV = "/usr/lib/cpagent/venv"


def _build_arch() -> str:
    try:
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


BUILD_ARCH = _build_arch()
# The architecture under test (make deb-test ARCH=...): packages are cross-built for it and
# its roots run under qemu-user-static when it is not the build machine's.
ARCH = os.environ.get("CPAGENT_DEB_ARCH") or BUILD_ARCH
EMULATED = ARCH != BUILD_ARCH
# How much longer things take in the root: CPU emulation is several times slower
# (CPAGENT_DEB_TEST_SLOWDOWN overrides the factor).
SLOW = float(os.environ.get("CPAGENT_DEB_TEST_SLOWDOWN") or (10.0 if EMULATED else 1.0))
TEST_TIMEOUT = int(1800 * SLOW)


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


def enable_emulation() -> None:
    """Let this machine run ARCH's binaries (qemu-user-static through binfmt_misc)."""
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
    if shutil.which("update-binfmts") is None or shutil.which("qemu-aarch64-static") is None:
        with Timer("apt-get install qemu-user-static binfmt-support"):
            run(
                ["apt-get", "install", "-y", "-q", "qemu-user-static", "binfmt-support"],
                timeout=600,
            )
    run(["update-binfmts", "--enable"], check=False)


def build(version: str | None, *, lint: bool) -> Deb:
    env = dict(os.environ)
    env.pop("DEB_VERSION", None)
    if version:
        env["DEB_VERSION"] = version
    if not lint:
        env["DEB_NO_LINT"] = "1"
    env["DEB_OUT"] = str(DEBS)
    env["ARCH"] = ARCH
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"build-{version or 'default'}.log"
    with log.open("w") as f:
        proc = subprocess.run(
            ["bash", str(ROOT / "packaging" / "build-deb.sh")],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=3600,  # the first armhf build also builds wheels under emulation
            check=False,
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise AssertionError(f"packaging/build-deb.sh failed (see {log}):\n{tail}")
    return Deb(Path((DEBS / f"latest-{ARCH}").read_text().strip()))


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


@pytest.fixture(scope="session")
def debs() -> Iterator[tuple[Deb, Deb]]:
    """The package as the tree is (linted) and rebuilt as a newer version."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, unshare, dpkg-buildpackage's build-dep install)")
    if "PYTEST_XDIST_WORKER" in os.environ:
        pytest.skip("run without xdist (make deb-test): the builds share build/deb-test")
    if EMULATED:
        enable_emulation()
    with Timer(f"build the package (make deb ARCH={ARCH})"):
        first = build(None, lint=True)
    with Timer("build a newer version (DEB_VERSION)"):
        second = build(f"{first.version}+debtest1", lint=False)
    yield first, second
    total = sum(took for _, took in TIMINGS)
    lines = [f"  {took:7.1f} s  {what}" for what, took in TIMINGS]
    report = "\n".join(["[deb-test] timings:", *lines, f"  {total:7.1f} s  total"])
    print("\n" + report, flush=True)
    (OUT / "timings.txt").write_text(report + "\n")


def package_names(depends: str) -> list[str]:
    """Debian package names in a Depends field (first alternative, no versions)."""
    names = []
    for item in depends.split(","):
        first = item.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return sorted(set(names))


MIRRORS = [
    f"deb {MIRROR} bookworm main",
    f"deb {MIRROR} bookworm-updates main",
    f"deb {SECURITY_MIRROR} bookworm-security main",
]


def bookworm_root(includes: list[str]) -> Path:
    """A tarball of a minbase bookworm root of ARCH with ``includes`` installed, cached."""
    unmount_leftovers()
    key = hashlib.sha256("\n".join([*includes, *MIRRORS]).encode()).hexdigest()[:12]
    tarball = OUT / f"bookworm-{ARCH}-minbase-{key}.tar"
    if tarball.exists():
        print(f"\n[deb-test] cached root {tarball.name} (minbase + {', '.join(includes)})")
        return tarball
    if shutil.which("mmdebstrap") is None:
        with Timer("apt-get install mmdebstrap"):
            run(["apt-get", "install", "-y", "-q", "mmdebstrap"], timeout=600)
    if EMULATED:
        enable_emulation()
    OUT.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    with Timer(f"mmdebstrap minbase bookworm {ARCH} + {', '.join(includes) or 'nothing'}"):
        run(
            [
                "mmdebstrap",
                f"--arch={ARCH}",
                "--variant=minbase",
                *([f"--include={','.join(includes)}"] if includes else []),
                "--format=tar",
                "bookworm",
                str(partial),
                *MIRRORS,
            ],
            timeout=900 * SLOW,
        )
    partial.rename(tarball)
    return tarball


@pytest.fixture(scope="session")
def base(debs: tuple[Deb, Deb]) -> Path:
    """The root most tests use: minbase with the package's Depends already installed, so
    that they can install the package offline."""
    return bookworm_root(package_names(debs[0].field("Depends")))


def unpacked(base: Path) -> Path:
    """The base root unpacked once beside its tarball: the read-only lower layer of every
    chroot made from it."""
    lower = base.with_suffix(".d")
    if not lower.exists():
        partial = base.with_suffix(".d.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        with Timer(f"unpack {base.name}"):
            run(["tar", "-C", str(partial), "-xf", str(base)])
        partial.rename(lower)
    return lower


def unmount_leftovers() -> None:
    """Overlay roots a killed test run left mounted under OUT."""
    for line in Path("/proc/mounts").read_text().splitlines():
        where = line.split()[1]
        if where.startswith(f"{OUT}/root-"):
            run(["umount", "--lazy", where], check=False)


class Chroot:
    """A throwaway root: an overlay whose lower layer is the unpacked base root, so making
    one costs no copy; commands run in it without network by default."""

    def __init__(self, base: Path) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        lower = unpacked(base)
        self.dir = Path(tempfile.mkdtemp(prefix="root-", dir=OUT))
        self.layers = Path(tempfile.mkdtemp(prefix="layers-", dir=OUT))
        upper, work = self.layers / "upper", self.layers / "work"
        upper.mkdir()
        work.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.dir)])
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
        return run(cmd, env=env, check=check, timeout=timeout * SLOW)

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
        if any(m.startswith(f"{self.dir}/") for m in mounts):
            raise AssertionError(f"something is mounted under {self.dir}: not deleting it")
        run(["umount", str(self.dir)])
        self.dir.rmdir()
        shutil.rmtree(self.layers)


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


def repack_release(deb: Deb, python_version: str, dest: Path, version: str | None = None) -> Deb:
    """``deb`` as a later release of cpagent itself: the venv's cpagent distribution says
    ``python_version`` (what the agent reports as its firmware version, from
    importlib.metadata), the package is ``version`` (default: ``deb``'s)."""
    tree = dest / "tree"
    run(["dpkg-deb", "-R", str(deb.path), str(tree)])
    control = tree / "DEBIAN" / "control"
    if version is not None:
        control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
    site = tree / VENV.lstrip("/") / "lib" / "python3.11" / "site-packages"
    (old,) = site.glob("cpagent-*.dist-info")
    new = site / f"cpagent-{python_version}.dist-info"
    old.rename(new)
    metadata = new / "METADATA"
    metadata.write_text(
        re.sub(r"(?m)^Version: .*$", f"Version: {python_version}", metadata.read_text(), count=1)
    )
    record = new / "RECORD"
    record.write_text(record.read_text().replace(f"{old.name}/", f"{new.name}/"))
    packages = tree / "usr/share/doc/cpagent/venv-packages.txt"
    if packages.exists():
        packages.write_text(
            re.sub(r"(?m)^cpagent==.*$", f"cpagent=={python_version}", packages.read_text())
        )
    # dpkg's checksums of the files that changed or moved.
    md5sums = tree / "DEBIAN" / "md5sums"
    lines = []
    for line in md5sums.read_text().splitlines():
        _, path = line.split(maxsplit=1)
        path = path.replace(f"/{old.name}/", f"/{new.name}/")
        digest = hashlib.md5((tree / path).read_bytes()).hexdigest()
        lines.append(f"{digest}  {path}")
    md5sums.write_text("\n".join(lines) + "\n")
    name = f"cpagent_{version or deb.version}_{python_version}.deb".replace("+", "_")
    out = dest / name
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return Deb(out)
