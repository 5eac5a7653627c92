"""systemd/cpagent.service: what the unit promises, and systemd-analyze's verdict on it.

The parse-level tests need nothing but the file. The others run ``systemd-analyze`` offline
(no service manager runs here) and skip without it; ``security --offline`` needs systemd
250 or later. ``verify`` runs against a scratch root (``--root``) that holds the unit, the
host's system units (for the default dependencies, network-online.target, modprobe@) and a
stand-in ``/usr/bin/cpagent``, so its check that ExecStart names an executable is made
rather than skipped; a broken copy of the unit shows that its output is really read.

None of this runs the agent under the sandbox: that takes a Pi with systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).parents[2]
UNIT = REPO / "systemd" / "cpagent.service"
UNIT_NAME = UNIT.name
INSTALL_FIRMWARE = REPO / "packaging" / "install-firmware"
FIRMWARE_PATH_UNIT = REPO / "systemd" / "cpagent-firmware-install.path"
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
MAX_EXPOSURE = 3.0

Unit = dict[str, list[tuple[str, str]]]


# -- reading the unit ----------------------------------------------------------------------


def parse_unit(text: str) -> Unit:
    """Sections -> (key, value) assignments in file order; duplicate keys are all kept.

    Follows systemd.syntax(7) as far as this unit needs: ``#``/``;`` comments, a trailing
    backslash continues the line (comment lines inside are skipped), whitespace around the
    key and the value is dropped.
    """
    logical: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("#", ";")) or (not line and pending is None):
            continue
        if line.endswith("\\"):
            part = line[:-1].rstrip()
            pending = part if pending is None else f"{pending} {part}"
            continue
        if pending is not None:
            line = f"{pending} {line}".strip()
            pending = None
        logical.append(line)
    if pending is not None:
        logical.append(pending)

    unit: Unit = {}
    section: str | None = None
    for line in logical:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        assert section is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def assignments(unit: Unit, section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


def setting(unit: Unit, section: str, key: str) -> str | None:
    """The value that counts for a single-valued setting: the last assignment."""
    values = assignments(unit, section, key)
    return values[-1] if values else None


def list_setting(unit: Unit, section: str, key: str) -> list[str]:
    """A space-separated list setting: assignments add up, an empty one resets."""
    items: list[str] = []
    for value in assignments(unit, section, key):
        items = [*items, *value.split()] if value else []
    return items


def seconds(text: str | None) -> float:
    """A systemd time span as used here: ``30``, ``30s``, ``2min``, ``1min 30s``."""
    assert text, "no time span"
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        assert unit in units, f"unexpected time unit in {text!r}"
        total += float(number) * units[unit]
    return total


def is_true(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "yes", "true", "on"}


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


# -- what the unit promises ----------------------------------------------------------------


def test_it_is_a_notify_service_with_a_watchdog(unit: Unit) -> None:
    from cpagent.config import DEFAULT_CONFIG_PATH

    assert setting(unit, "Service", "Type") == "notify"
    # The agent notifies from its own (main) process; the wrapper execs, it does not fork.
    assert setting(unit, "Service", "NotifyAccess") == "main"
    assert seconds(setting(unit, "Service", "WatchdogSec")) == 30
    assert setting(unit, "Service", "ExecStart") == (
        f"/usr/bin/cpagent run --config {DEFAULT_CONFIG_PATH}"
    )


def test_a_crash_is_always_retried_and_a_broken_config_is_not(unit: Unit) -> None:
    from cpagent.cli import EXIT_CONFIG, EXIT_ERROR

    assert setting(unit, "Service", "Restart") == "always"
    restart_s = seconds(setting(unit, "Service", "RestartSec"))
    assert 1 <= restart_s <= 30
    # Automatic restarts come at least RestartSec apart, so within one start-limit
    # interval there are at most interval/RestartSec + 1 of them: below the burst, they
    # can never put the unit into the failed state.
    interval_s = seconds(setting(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(setting(unit, "Unit", "StartLimitBurst") or "0")
    assert interval_s > 0 and burst > 0, "an explicit limit, not systemd's default"
    assert interval_s / restart_s + 1 < burst
    # `cpagent run` exits EXIT_CONFIG for a config that does not load: not retried...
    assert list_setting(unit, "Service", "RestartPreventExitStatus") == [str(EXIT_CONFIG)]
    # ...while a failure at run time (store, hardware, control socket) still is.
    assert EXIT_ERROR != EXIT_CONFIG


def test_stopping_waits_for_the_agents_shutdown(unit: Unit) -> None:
    from cpagent.agent import SHUTDOWN_DRAIN_S, SHUTDOWN_STOP_S

    stop_s = seconds(setting(unit, "Service", "TimeoutStopSec"))
    assert stop_s == 20
    assert stop_s >= SHUTDOWN_STOP_S + SHUTDOWN_DRAIN_S + 5  # with room for closing up


def test_it_runs_as_cpagent_with_its_own_directories(unit: Unit) -> None:
    assert setting(unit, "Service", "User") == "cpagent"
    assert setting(unit, "Service", "Group") == "cpagent"
    # A group that does not exist (gpio off Raspberry Pi OS) would make every start fail:
    # the package's postinst adds cpagent to the groups the system has instead.
    assert not assignments(unit, "Service", "SupplementaryGroups")
    assert setting(unit, "Service", "UMask") == "0027"
    for kind in ("State", "Runtime", "Configuration", "Logs"):
        assert list_setting(unit, "Service", f"{kind}Directory") == ["cpagent"], kind
    for kind in ("State", "Runtime", "Logs"):
        assert setting(unit, "Service", f"{kind}DirectoryMode") == "0750", kind


def test_what_the_agent_writes_by_default_is_writable(unit: Unit, tmp_path: Path) -> None:
    """ProtectSystem=strict leaves only the unit's directories writable: the default
    data_dir, control socket and firmware spool must be inside them."""
    from cpagent.config import DEFAULT_CONFIG_PATH, load_config

    state = PurePosixPath("/var/lib") / list_setting(unit, "Service", "StateDirectory")[0]
    runtime = PurePosixPath("/run") / list_setting(unit, "Service", "RuntimeDirectory")[0]
    config_dir = PurePosixPath("/etc") / list_setting(unit, "Service", "ConfigurationDirectory")[0]

    path = tmp_path / "cpagent.toml"
    path.write_text(
        '[charge_point]\nid = "CP1"\nvendor = "V"\nmodel = "M"\n'
        '[csms]\nurl = "ws://127.0.0.1:9000/ocpp"\n'
    )
    config = load_config(path)
    assert PurePosixPath(config.storage.data_dir).is_relative_to(state)
    assert PurePosixPath(config.control.socket).is_relative_to(runtime)
    assert PurePosixPath(DEFAULT_CONFIG_PATH).parent == config_dir

    spool = re.search(r"CPAGENT_FIRMWARE_SPOOL:-([^}]+)\}", INSTALL_FIRMWARE.read_text())
    assert spool is not None
    assert PurePosixPath(spool.group(1)).is_relative_to(state)
    watched = parse_unit(FIRMWARE_PATH_UNIT.read_text())
    pending = setting(watched, "Path", "PathExists")
    assert pending is not None
    assert PurePosixPath(pending).parent == PurePosixPath(spool.group(1))


def test_lgpio_has_a_writable_working_directory(unit: Unit) -> None:
    # lgpio makes its notification FIFO in $LG_WD (it chdirs there), else in the working
    # directory, and its Python module opens it by a relative name: both must agree.
    runtime = "/run/" + list_setting(unit, "Service", "RuntimeDirectory")[0]
    assert setting(unit, "Service", "WorkingDirectory") == runtime
    environment = " ".join(assignments(unit, "Service", "Environment")).split()
    assert f"LG_WD={runtime}" in environment


def test_the_sandbox(unit: Unit) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateMounts": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RemoveIPC": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallErrorNumber": "EPERM",
    }
    actual = {key: setting(unit, "Service", key) for key in expected}
    assert actual == expected
    # No capabilities at all: every assignment is the empty one.
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        values = assignments(unit, "Service", key)
        assert values and all(value == "" for value in values), key
    assert set(list_setting(unit, "Service", "RestrictAddressFamilies")) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    assert assignments(unit, "Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]


def test_serial_ports_and_gpio_stay_reachable(unit: Unit) -> None:
    # PrivateDevices= would replace /dev with one without them.
    assert not is_true(setting(unit, "Service", "PrivateDevices"))
    assert setting(unit, "Service", "DevicePolicy") == "closed"
    allowed = {}
    for value in assignments(unit, "Service", "DeviceAllow"):
        spec, _, access = value.partition(" ")
        allowed[spec] = access.strip()
    for group in ("ttyS", "ttyAMA", "ttyUSB", "ttyACM", "gpiochip"):
        assert allowed.get(f"char-{group}") == "rw", group
    # char-ttyUSB/char-ttyACM resolve only if the driver is registered when the unit starts.
    for module in ("usbserial", "cdc_acm"):
        wanted = f"modprobe@{module}.service"
        assert wanted in list_setting(unit, "Unit", "Wants"), module
        assert wanted in list_setting(unit, "Unit", "After"), module
    # gpiozero reads the board revision from /proc/device-tree and /proc/cpuinfo.
    assert setting(unit, "Service", "ProcSubset") in (None, "all")
    # The device and journal groups are host groups; a private user namespace hides them.
    assert not is_true(setting(unit, "Service", "PrivateUsers"))


def test_the_parser_reads_continuations_and_duplicates() -> None:
    parsed = parse_unit(
        "[Service]\n# comment\nDeviceAllow=char-ttyS rw\n; other comment\n"
        "DeviceAllow=char-ttyUSB rw\nCapabilityBoundingSet=\nExecStart=/bin/a \\\n"
        "  # skipped\n  --flag\n"
    )
    assert assignments(parsed, "Service", "DeviceAllow") == ["char-ttyS rw", "char-ttyUSB rw"]
    assert assignments(parsed, "Service", "CapabilityBoundingSet") == [""]
    assert setting(parsed, "Service", "ExecStart") == "/bin/a --flag"
    assert seconds("1min 30s") == 90


# -- systemd-analyze -------------------------------------------------------------------------


def systemd_version(tool: str) -> int:
    first = subprocess.run(
        [tool, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.split("\n", 1)[0]
    match = re.match(r"systemd (\d+)", first)
    return int(match.group(1)) if match else 0


@pytest.fixture(scope="module")
def analyze_tool() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    return tool


@pytest.fixture(scope="module")
def root(analyze_tool: str) -> Iterator[Path]:
    """A scratch root: the unit, the host's system units, a stand-in /usr/bin/cpagent."""
    host_units = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    if host_units is None:
        pytest.skip("no systemd unit directory with sysinit.target on this host")
    with tempfile.TemporaryDirectory(prefix="cpagent-unit-") as tmp:
        top = Path(tmp)
        shutil.copytree(host_units, top / "usr/lib/systemd/system", symlinks=True)
        (top / "etc/systemd/system").mkdir(parents=True)
        shutil.copy(UNIT, top / "etc/systemd/system" / UNIT_NAME)
        fake = top / "usr/bin/cpagent"
        fake.parent.mkdir(parents=True)
        fake.write_text("#!/bin/sh\n# stands in for the packaged wrapper\nexit 0\n")
        fake.chmod(0o755)
        yield top


def analyze(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=120,
        check=False,
    )


def verify(tool: str, root: Path, name: str) -> tuple[int, list[str]]:
    result = analyze(
        tool,
        "verify",
        f"--root={root}",
        "--man=no",
        "--generators=no",
        str(root / "etc/systemd/system" / name),
    )
    output = (result.stdout + result.stderr).splitlines()
    print(f"\n$ systemd-analyze verify {name}: exit {result.returncode}")
    print("\n".join(output) or "(no output)")
    return result.returncode, output


def test_systemd_analyze_verify_passes(analyze_tool: str, root: Path) -> None:
    code, output = verify(analyze_tool, root, UNIT_NAME)
    ours = [line for line in output if "cpagent" in line]
    assert code == 0, output
    assert ours == []


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("Type=notify", "Type=notfy", "Failed to parse service type"),
        ("ExecStart=/usr/bin/cpagent ", "ExecStart=/usr/bin/cpagent-missing ", "not executable"),
    ],
    ids=["bad-value", "missing-executable"],
)
def test_verify_would_notice_a_broken_unit(
    analyze_tool: str, root: Path, old: str, new: str, complaint: str
) -> None:
    """The check above reads real output: a broken copy of the unit is reported."""
    text = UNIT.read_text()
    assert old in text
    name = "cpagent-broken.service"
    broken = root / "etc/systemd/system" / name
    broken.write_text(text.replace(old, new, 1))
    try:
        _, output = verify(analyze_tool, root, name)
    finally:
        broken.unlink()
    assert any(complaint in line and "cpagent" in line for line in output), output


def test_systemd_analyze_security_exposure_is_ok(analyze_tool: str, root: Path) -> None:
    if systemd_version(analyze_tool) < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    result = analyze(
        analyze_tool, "security", "--offline=true", f"--root={root}", "--no-pager", UNIT_NAME
    )
    print(f"\n$ systemd-analyze security --offline=true {UNIT_NAME}: exit {result.returncode}")
    print(result.stdout)
    print(result.stderr)
    assert result.returncode == 0, result.stderr
    match = re.search(
        rf"Overall exposure level for {re.escape(UNIT_NAME)}: (\d+(?:\.\d+)?) (\w+)",
        result.stdout,
    )
    assert match is not None, result.stdout
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} {match.group(2)}"
