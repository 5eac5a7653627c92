"""The signed apt repository of the packages (packaging/apt-repo.sh, ``make apt-repo``).

The tests at the top always run (where reprepro, gpg and dpkg-deb are installed): they lay
out repositories of tiny control-only packages and check what the script picks, refuses
and signs. The tests below them run with ``CPAGENT_DEB_TEST=1`` like the other package
tests (root, minutes): the repository of the real package is served over http on
127.0.0.1 from a thread of this process, and apt in a throwaway bookworm root, which knows
no other repository, installs cpagent from it, upgrades it when a newer build is added,
and refuses a repository whose Release was tampered with or that another key signed.

Run with ``CPAGENT_DEB_TEST=1 .venv/bin/pytest -p no:xdist -s tests/packaging/test_apt_repo.py``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.packaging.debroot import (
    ARCH,
    DEBS,
    ROOT,
    TEST_TIMEOUT,
    Chroot,
    Deb,
    Timer,
    check_installed,
    deb_test,
    run,
)

SCRIPT = ROOT / "packaging" / "apt-repo.sh"
CODENAME = "bookworm"
ARCHS = ("amd64", "arm64", "armhf")
KEYRING = "cpagent-archive-keyring"
SIGNED_BY = f"/usr/share/keyrings/{KEYRING}.gpg"

needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("reprepro", "gpg", "gpgv", "dpkg-deb")),
    reason="needs reprepro, gnupg and dpkg-dev",
)


# --- making a repository with the script ----------------------------------------------------


def make_repo(
    out: Path,
    packages: Sequence[Path],
    *,
    key_dir: Path,
    archs: Sequence[str] = ARCHS,
    url: str | None = None,
    key: str | None = None,
    gnupghome: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """packaging/apt-repo.sh on ``packages`` into ``out`` (reprepro's state beside it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APT_REPO_", "GNUPGHOME"))}
    env |= {
        "APT_REPO_OUT": str(out),
        "APT_REPO_KEY_DIR": str(key_dir),
        "APT_REPO_ARCHS": " ".join(archs),
    }
    if url:
        env["APT_REPO_URL"] = url
    if key:
        env["APT_REPO_KEY"] = key
    if gnupghome:
        env["GNUPGHOME"] = str(gnupghome)
    return run(["bash", str(SCRIPT), *map(str, packages)], env=env, check=check, timeout=300)


def printed_sources(stdout: str) -> str:
    """The deb822 sources entry the script prints last."""
    return stdout[stdout.rindex("Types: ") :].strip() + "\n"


def fake_deb(dest: Path, version: str, arch: str, *, payload: str = "") -> Path:
    """A control-only package cpagent ``version`` for ``arch``: enough for reprepro."""
    tree = dest / f"tree-{version}-{arch}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: cpagent\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: Test <test@example.com>\nSection: net\nPriority: optional\n"
        "Description: test package\n"
    )
    if payload:
        (tree / "payload").write_text(payload)
    out = dest / f"cpagent_{version}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return out


def stand_in(deb: Path, arch: str, dest: Path) -> Path:
    """A copy of ``deb`` whose control says Architecture ``arch``: a placeholder for the
    package of another architecture in the repository's layout. Its binaries are still
    those of ``deb``: never install it."""
    tree = dest / f"tree-{arch}"
    run(["dpkg-deb", "-R", str(deb), str(tree)])
    control = tree / "DEBIAN" / "control"
    text = re.sub(r"(?m)^Architecture: .*$", f"Architecture: {arch}", control.read_text())
    control.write_text(text)
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
    out = dest / f"cpagent_{version}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tree), str(out)])
    shutil.rmtree(tree)
    return out


def packages_by_arch(real: Deb, dest: Path) -> dict[str, Path]:
    """A package of each architecture for the layout test: the real one of that version
    where the build made it (build/deb-test/debs/cpagent_<version>_<arch>.deb), else a
    stand-in made from ``real``. Only the layout test uses stand-ins."""
    found = {}
    for arch in ARCHS:
        built = DEBS / f"cpagent_{real.version}_{arch}.deb"
        if real.field("Architecture") == arch:
            found[arch] = real.path
        elif built.exists():
            found[arch] = built
        else:
            found[arch] = stand_in(real.path, arch, dest)
    return found


# --- what a repository must look like -------------------------------------------------------


def stanzas(text: str) -> list[dict[str, str]]:
    """The paragraphs of a Debian control-style file (Packages, Release), one dict each."""
    out = []
    for para in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        name = ""
        for line in para.splitlines():
            if line.startswith((" ", "\t")):
                fields[name] += "\n" + line.strip()
            else:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        out.append(fields)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(keyring: Path, home: Path) -> list[str]:
    """The primary key fingerprints in ``keyring`` (binary or armored), without a keyring
    of anyone's (``home`` is a scratch GnuPG home)."""
    home.mkdir(mode=0o700, exist_ok=True)
    out = run(
        ["gpg", "--batch", "--homedir", str(home), "--with-colons", "--show-keys", str(keyring)]
    ).stdout
    fprs, want = [], False
    for line in out.splitlines():
        kind = line.split(":")[0]
        if kind == "pub":
            want = True
        elif kind == "fpr" and want:
            fprs.append(line.split(":")[9])
            want = False
    return fprs


def gpgv(keyring: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return run(["gpgv", "--keyring", str(keyring), *map(str, files)], check=False)


def check_layout(out: Path, packages: Mapping[str, Path]) -> None:
    """``out`` is a signed repository of exactly ``packages`` (architecture -> .deb)."""
    dists = out / "dists" / CODENAME
    for name in ("InRelease", "Release", "Release.gpg"):
        assert (dists / name).stat().st_size > 0, name
    release = stanzas((dists / "Release").read_text())[0]
    assert release["Codename"] == CODENAME
    assert release["Components"] == "main"
    assert release["Architectures"].split() == list(packages)
    listed = {}
    for line in release["SHA256"].splitlines()[1:]:
        digest, _size, name = line.split()
        listed[name] = digest

    keyring = out / f"{KEYRING}.gpg"
    verified = gpgv(keyring, dists / "InRelease")
    assert verified.returncode == 0, verified.stderr
    assert gpgv(keyring, dists / "Release.gpg", dists / "Release").returncode == 0
    # InRelease signs the same Release.
    assert (dists / "Release").read_text() in (dists / "InRelease").read_text()

    pool = set()
    for arch, deb in packages.items():
        index = dists / "main" / f"binary-{arch}" / "Packages"
        assert listed[f"main/binary-{arch}/Packages"] == sha256(index), arch
        [entry] = stanzas(index.read_text())
        version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
        assert (entry["Package"], entry["Version"], entry["Architecture"]) == (
            "cpagent",
            version,
            arch,
        )
        assert entry["Filename"].startswith("pool/main/c/cpagent/"), entry["Filename"]
        published = out / entry["Filename"]
        assert published.read_bytes() == deb.read_bytes(), arch
        assert entry["SHA256"] == sha256(deb)
        pool.add(published)
    assert set((out / "pool").rglob("*.deb")) == pool, "pool/ holds other files"
    indices = {p.name for p in (dists / "main").iterdir()}
    assert indices == {f"binary-{arch}" for arch in packages}, indices
    assert not (out / "conf").exists() and not (out / "db").exists(), "reprepro's state leaked"


# --- the script, with tiny packages (always run) -------------------------------------------


@pytest.fixture(scope="module")
def dev_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the script makes its development key: one per module (RSA takes a moment)."""
    return tmp_path_factory.mktemp("apt-repo") / "key"


@needs_tools
def test_a_missing_architecture_is_refused_clearly(tmp_path: Path, dev_key: Path) -> None:
    only_amd64 = fake_deb(tmp_path, "1.0", "amd64")
    proc = make_repo(tmp_path / "repo", [only_amd64], key_dir=dev_key, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "apt-repo: no package for arm64 armhf in the packages given (the repository holds"
        " amd64 arm64 armhf): build it (make deb ARCH=arm64), or narrow the list:"
        ' APT_REPO_ARCHS="amd64"'
    )
    assert not (tmp_path / "repo" / "dists").exists()

    narrowed = make_repo(tmp_path / "repo", [only_amd64], key_dir=dev_key, archs=["amd64"])
    check_layout(tmp_path / "repo", {"amd64": only_amd64})
    assert "adding cpagent 1.0 (amd64)" in narrowed.stdout


@needs_tools
def test_the_newest_package_of_each_architecture_is_published_and_signed(
    tmp_path: Path, dev_key: Path
) -> None:
    newest = {arch: fake_deb(tmp_path, "1.0", arch) for arch in ARCHS}
    older = fake_deb(tmp_path, "0.9", "arm64")
    newest["amd64"] = fake_deb(tmp_path, "1.0+fix1", "amd64")
    out = tmp_path / "repo"
    all_debs = [*sorted(tmp_path.glob("*.deb")), older]
    proc = make_repo(out, all_debs, key_dir=dev_key, url="http://127.0.0.1:9/cpagent")
    check_layout(out, newest)

    assert dev_key.stat().st_mode & 0o777 == 0o700
    assert "DEVELOPMENT/TEST signing key" in (dev_key / "README").read_text()
    assert "signed with the DEVELOPMENT/TEST key" in proc.stdout
    entry = (
        "Types: deb\nURIs: http://127.0.0.1:9/cpagent\nSuites: bookworm\nComponents: main\n"
        f"Signed-By: {SIGNED_BY}\n"
    )
    assert printed_sources(proc.stdout) == entry
    assert (out / "cpagent.sources").read_text() == entry
    home = tmp_path / "gnupg"
    [fpr] = fingerprints(out / f"{KEYRING}.gpg", home)
    assert fingerprints(out / f"{KEYRING}.asc", home) == [fpr]
    assert (out / f"{KEYRING}.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK")
    assert f"key fingerprint {fpr}" in proc.stdout


@needs_tools
def test_a_rerun_replaces_older_versions_and_refuses_a_changed_published_one(
    tmp_path: Path, dev_key: Path
) -> None:
    first = {arch: fake_deb(tmp_path, "1.0", arch) for arch in ARCHS}
    out = tmp_path / "repo"
    make_repo(out, list(first.values()), key_dir=dev_key)
    release_before = (out / "dists" / CODENAME / "Release").read_text()

    # The same packages again: nothing changes but the date.
    again = make_repo(out, list(first.values()), key_dir=dev_key)
    assert "cpagent 1.0 (amd64) is already in the repository" in again.stdout
    check_layout(out, first)

    # A newer amd64 build replaces the old one; its file leaves pool/.
    newer = tmp_path / "newer"
    newer.mkdir()
    second = {**first, "amd64": fake_deb(newer, "1.1", "amd64")}
    proc = make_repo(out, list(second.values()), key_dir=dev_key)
    assert "replacing cpagent 1.0 with 1.1 (amd64)" in proc.stdout
    check_layout(out, second)
    assert (out / "dists" / CODENAME / "Release").read_text() != release_before

    # An older package does not go back in.
    proc = make_repo(out, list(first.values()), key_dir=dev_key)
    assert "keeping cpagent 1.1 (amd64): cpagent_1.0_amd64.deb is older" in proc.stdout
    check_layout(out, second)

    # A different file with a published version is refused, and nothing changes.
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    changed = fake_deb(rebuilt, "1.0", "arm64", payload="rebuilt")
    published = (out / "dists" / CODENAME / "InRelease").read_text()
    proc = make_repo(out, [second["amd64"], changed, first["armhf"]], key_dir=dev_key, check=False)
    assert proc.returncode == 1
    assert "cpagent 1.0 (arm64) is already published with different content" in proc.stderr
    assert "Give the new build a new version" in proc.stderr
    assert (out / "dists" / CODENAME / "InRelease").read_text() == published
    check_layout(out, second)

    # Fewer architectures on purpose: the dropped ones leave the repository, and come back.
    make_repo(out, [second["amd64"]], key_dir=dev_key, archs=["amd64"])
    check_layout(out, {"amd64": second["amd64"]})
    proc = make_repo(out, list(second.values()), key_dir=dev_key)
    assert proc.stderr == ""
    check_layout(out, second)


@needs_tools
def test_a_release_key_from_the_callers_gnupg_home_signs(
    tmp_path: Path, release_home: Path
) -> None:
    home = release_home
    fpr = new_key(home, "Example Chargers release key <release@example.com>")
    debs = {arch: fake_deb(tmp_path, "1.0", arch) for arch in ARCHS}
    out = tmp_path / "repo"
    unused_dev_key = tmp_path / "dev-key"
    proc = make_repo(
        out,
        list(debs.values()),
        key_dir=unused_dev_key,
        key="release@example.com",
        gnupghome=home,
    )
    check_layout(out, debs)
    assert fingerprints(out / f"{KEYRING}.gpg", tmp_path / "scratch") == [fpr]
    assert f"signed with the release key release@example.com from {home}" in proc.stdout
    assert not unused_dev_key.exists()

    missing = make_repo(
        out, list(debs.values()), key_dir=unused_dev_key, key="nobody", gnupghome=home, check=False
    )
    assert missing.returncode == 1
    assert f'apt-repo: no secret key "nobody" in {home}' in missing.stderr


@pytest.fixture()
def release_home(tmp_path: Path) -> Iterator[Path]:
    """A GnuPG home of the caller's (where a manufacturer keeps the release key). The
    gpg-agent that gpg and reprepro start for it is stopped afterwards."""
    home = tmp_path / "release-gnupg"
    home.mkdir(mode=0o700)
    try:
        yield home
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def new_key(home: Path, uid: str) -> str:
    """A passphrase-less signing key in ``home``; its fingerprint."""
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    run([*gpg, "--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never"])
    out = run([*gpg, "--with-colons", "--list-secret-keys", uid]).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


# --- the real package over http, into a bookworm root (CPAGENT_DEB_TEST=1) -----------------


class Site:
    """A directory served over http on 127.0.0.1 (an ephemeral port) by a thread of this
    process, like the web server a manufacturer publishes the repository on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        site = self

        class Handler(SimpleHTTPRequestHandler):
            timeout = 30  # a client that stops talking does not hold a thread for ever

            def log_message(self, format: str, *args: object) -> None:
                site.requests.append(self.requestline)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="apt-repo-http", daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    served = Site(tmp_path_factory.mktemp("site"))
    try:
        yield served
    finally:
        served.close()


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: bytes = resp.read()
    return data


def use_only(root: Chroot, keyring: bytes, sources: str) -> None:
    """Make ``root`` know one repository, as its user would: ``keyring`` as the key apt is
    to trust, the sources entry, and none of the root's own Debian sources (apt must not
    reach the Debian mirror)."""
    root.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*")
    root.sh("find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete")
    key = root.path(SIGNED_BY)
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(keyring)
    key.chmod(0o644)
    root.path("/etc/apt/sources.list.d/cpagent.sources").write_text(sources)


def apt(root: Chroot, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """apt-get in ``root`` with the host's loopback reachable; signature checks as shipped."""
    return root.run("apt-get", *args, network=True, check=False, timeout=timeout)


def fetched_from(output: str) -> set[str]:
    """The URIs apt's progress lines (Get:/Hit:/Ign:/Err:) name."""
    return set(re.findall(r"(?m)^(?:Get|Hit|Ign|Err):\d+ (\S+)", output))


def assert_refused(root: Chroot, update: subprocess.CompletedProcess[str], url: str) -> None:
    """apt-get update failed on ``url`` and apt offers nothing from it."""
    said = update.stdout + update.stderr
    assert update.returncode == 100, said
    assert f"E: The repository '{url} {CODENAME} InRelease' is not signed." in said, said
    assert not list(root.path("/var/lib/apt/lists").glob("127.0.0.1*")), "apt kept an index"
    assert root.sh("apt-cache policy cpagent") == ""
    install = apt(root, "install", "-y", "cpagent")
    assert install.returncode == 100
    assert "E: Unable to locate package cpagent" in install.stderr
    assert root.status() == ""


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_layout_of_the_three_architectures(debs: tuple[Deb, Deb], tmp_path: Path) -> None:
    first, _ = debs
    packages = packages_by_arch(first, tmp_path)
    dev = tmp_path / "key"
    with Timer("make apt-repo (amd64 arm64 armhf)"):
        make_repo(tmp_path / "repo", list(packages.values()), key_dir=dev)
    check_layout(tmp_path / "repo", packages)
    sizes = {arch: f"{path.stat().st_size // 1024} KiB" for arch, path in packages.items()}
    print(f"\n[deb-test] repository of {sizes}")


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_install_and_upgrade_from_the_repository(
    debs: tuple[Deb, Deb], chroot: Chroot, site: Site, dev_key: Path, tmp_path: Path
) -> None:
    first, second = debs
    root = chroot
    out, url = site.root / "cpagent", site.url("cpagent")
    with Timer(f"make apt-repo with {first.path.name}"):
        made = make_repo(out, [first.path], key_dir=dev_key, archs=[ARCH], url=url)
    check_layout(out, {ARCH: first.path})
    keyring = download(f"{url}/{KEYRING}.gpg")  # what the user downloads
    assert keyring == (out / f"{KEYRING}.gpg").read_bytes()
    use_only(root, keyring, printed_sources(made.stdout))

    with Timer("apt-get update (only the repository on 127.0.0.1)"):
        update = apt(root, "update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert fetched_from(update.stdout) == {url}, update.stdout
    assert "W:" not in update.stderr, update.stderr
    with Timer("apt-get install -y cpagent"):
        install = apt(root, "install", "-y", "cpagent")
    assert install.returncode == 0, install.stdout + install.stderr
    assert root.status() == f"install ok installed {first.version}"
    assert f"{url} {CODENAME}/main {ARCH} cpagent {ARCH} {first.version}" in install.stdout

    with Timer(f"make apt-repo with {second.path.name}"):
        proc = make_repo(out, [second.path], key_dir=dev_key, archs=[ARCH], url=url)
    assert f"replacing cpagent {first.version} with {second.version} ({ARCH})" in proc.stdout
    check_layout(out, {ARCH: second.path})  # the older version left the repository
    with Timer("apt-get update && apt-get upgrade -y"):
        update = apt(root, "update")
        assert update.returncode == 0, update.stdout + update.stderr
        upgrade = apt(root, "upgrade", "-y")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert f"cpagent {ARCH} {second.version}" in upgrade.stdout
    check_installed(root, second)
    assert any("GET /cpagent/pool/main/c/cpagent/" in r for r in site.requests)


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_tampered_release_is_refused(
    debs: tuple[Deb, Deb], chroot: Chroot, site: Site, dev_key: Path
) -> None:
    first, _ = debs
    out, url = site.root / "tampered", site.url("tampered")
    made = make_repo(out, [first.path], key_dir=dev_key, archs=[ARCH], url=url)
    # Someone on the server changes the hash of the Packages index in both Release files
    # (to serve Packages of their own): the signatures no longer match.
    dists = out / "dists" / CODENAME
    index = sha256(dists / "main" / f"binary-{ARCH}" / "Packages")
    forged = index[:-1] + ("0" if index[-1] != "0" else "1")
    for name in ("InRelease", "Release"):
        text = (dists / name).read_text()
        assert index in text
        (dists / name).write_text(text.replace(index, forged))
    assert gpgv(out / f"{KEYRING}.gpg", dists / "InRelease").returncode != 0

    use_only(chroot, download(f"{url}/{KEYRING}.gpg"), printed_sources(made.stdout))
    with Timer("apt-get update (tampered Release)"):
        update = apt(chroot, "update")
    said = update.stdout + update.stderr
    assert "The following signatures were invalid: BADSIG" in said, said
    assert_refused(chroot, update, url)


@deb_test
@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_repository_signed_by_another_key_is_refused(
    debs: tuple[Deb, Deb],
    chroot: Chroot,
    site: Site,
    dev_key: Path,
    tmp_path: Path,
    release_home: Path,
) -> None:
    first, _ = debs
    out, url = site.root / "other", site.url("other")
    made = make_repo(out, [first.path], key_dir=dev_key, archs=[ARCH], url=url)
    trusted = tmp_path / f"{KEYRING}.gpg"  # the key the user installed
    shutil.copy2(out / trusted.name, trusted)
    # Later the repository is signed again, by a key of someone else.
    home = release_home
    other = new_key(home, "Someone Else <else@example.com>")
    make_repo(out, [first.path], key_dir=dev_key, archs=[ARCH], url=url, key=other, gnupghome=home)
    check_layout(out, {ARCH: first.path})  # well signed, by the other key
    assert gpgv(trusted, out / "dists" / CODENAME / "InRelease").returncode != 0

    use_only(chroot, trusted.read_bytes(), printed_sources(made.stdout))
    with Timer("apt-get update (signed by another key)"):
        update = apt(chroot, "update")
    said = update.stdout + update.stderr
    assert f"NO_PUBKEY {other[-16:]}" in said, said
    assert_refused(chroot, update, url)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-p", "no:xdist", "-s", *sys.argv[1:]]))
