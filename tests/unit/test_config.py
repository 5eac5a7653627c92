"""The TOML configuration: the example file, every rule and its exact problem line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import cpagent
from cpagent.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    TokenSettings,
    default_config_path,
    load_config,
    parse_config,
    security_warnings,
    summary,
)
from cpagent.exc import ConfigError
from cpagent.protocol.v16.config_keys import KEYS, capabilities, read_initial
from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.device_model import DeviceModel

EXAMPLE = Path(__file__).parents[2] / "config" / "sim.toml"


def minimal() -> dict[str, Any]:
    return {
        "charge_point": {"id": "CP001", "vendor": "V", "model": "M"},
        "csms": {"url": "ws://127.0.0.1:9000/ocpp"},
    }


def with_value(dotted: str, value: object) -> dict[str, Any]:
    data = minimal()
    *tables, key = dotted.split(".")
    table = data
    for name in tables:
        table = table.setdefault(name, {})
    table[key] = value
    return data


def problems_of(data: dict[str, Any], base_dir: Path | None = Path("/base")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=base_dir)
    return info.value.problems


def only_problem(dotted: str, value: object) -> str:
    problems = problems_of(with_value(dotted, value))
    assert len(problems) == 1, problems
    return problems[0]


# -- the example file ------------------------------------------------------------------------


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    repo = EXAMPLE.parents[1]
    assert config.source == EXAMPLE
    assert config.charge_point.id == "CP001"
    assert config.charge_point.connectors == 2
    assert config.csms.url == "ws://127.0.0.1:9000/ocpp"
    assert config.endpoint == "ws://127.0.0.1:9000/ocpp/CP001"
    assert config.storage.data_dir == repo / "demo-data"
    assert config.control.socket == Path("/tmp/cpagent-sim.sock")
    assert config.hal.backend == "sim"
    assert dict(config.ocpp16) == {
        "HeartbeatInterval": "300",
        "MeterValueSampleInterval": "60",
        "LocalAuthorizeOffline": "true",
        "SecurityProfile": "0",
        "MeterValuesSampledData": (
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
        ),
    }


def test_example_file_states_the_defaults() -> None:
    """Apart from the values the example deliberately sets, it matches the built-in defaults."""
    example = load_config(EXAMPLE)
    defaults = parse_config(minimal(), base_dir=EXAMPLE.parent)
    assert example.csms == dataclasses.replace(defaults.csms, url=example.csms.url)
    assert example.hal == defaults.hal
    assert example.firmware == defaults.firmware
    assert example.logging == defaults.logging


def test_summary_mentions_the_essentials() -> None:
    text = summary(load_config(EXAMPLE))
    assert "CP001" in text
    assert "ws://127.0.0.1:9000/ocpp/CP001" in text
    assert "demo-data" in text
    assert "HeartbeatInterval=300" in text


def test_summary_never_shows_the_password() -> None:
    data = with_value("csms.password", "s3cret-password")
    config = parse_config(data)
    assert "s3cret-password" not in summary(config)
    assert "s3cret-password" not in repr(config)


def test_summary_never_shows_a_write_only_key() -> None:
    key = "0123456789abcdef0123456789abcdef"
    config = parse_config(with_value("ocpp16.authorizationkey", key))
    assert key not in summary(config)
    assert "AuthorizationKey=***" in summary(config)


# -- defaults ------------------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config(minimal(), base_dir=Path("/base"))
    assert isinstance(config, Config)
    cp = config.charge_point
    assert (cp.serial_number, cp.firmware_version, cp.connectors) == (None, cpagent.__version__, 1)
    csms = config.csms
    assert csms.ocpp_version == "1.6"
    assert csms.password is None
    assert (csms.reconnect_initial_s, csms.reconnect_max_s) == (1.0, 60.0)
    assert (csms.response_timeout_s, csms.boot_retry_s) == (30.0, 30)
    assert config.storage.data_dir == Path("/var/lib/cpagent")
    assert config.control.socket == Path("/run/cpagent/control.sock")
    assert config.hal.backend == "sim"
    sim = config.hal.sim
    assert (sim.voltage_v, sim.phases, sim.ev_max_current_a) == (230.0, 3, 32.0)
    assert (sim.ev_battery_wh, sim.ev_initial_soc, sim.max_current_a) == (60000.0, 20.0, 32.0)
    assert config.firmware.install_command == "/usr/lib/cpagent/install-firmware"
    assert config.logging.level == "INFO"
    assert dict(config.ocpp16) == {}
    assert config.source is None


def test_config_is_immutable() -> None:
    config = parse_config(with_value("ocpp16.HeartbeatInterval", 60))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.charge_point.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.ocpp16["HeartbeatInterval"] = "1"  # type: ignore[index]


# -- charge_point ------------------------------------------------------------------------------

ID_REASON = "must be 1 to 48 printable ASCII characters without '/', '?', '#', '%' or whitespace"


@pytest.mark.parametrize("key", ["id", "vendor", "model"])
def test_required_charge_point_keys(key: str) -> None:
    data = minimal()
    del data["charge_point"][key]
    assert problems_of(data) == [f"charge_point.{key}: required"]


@pytest.mark.parametrize("value", ["", "x" * 49, "a/b", "a?b", "a#b", "a%b", "a b", "é", 5])
def test_charge_point_id_rejected(value: object) -> None:
    assert only_problem("charge_point.id", value) == f"charge_point.id: {ID_REASON}"


def test_charge_point_id_accepts_48_chars() -> None:
    config = parse_config(with_value("charge_point.id", "A-b_c.~" + "x" * 41))
    assert len(config.charge_point.id) == 48


def test_charge_point_id_with_colon_cannot_use_basic_auth() -> None:
    data = with_value("charge_point.id", "CP:1")
    assert parse_config(data).charge_point.id == "CP:1"
    data["csms"]["password"] = "secret"
    assert problems_of(data) == ["charge_point.id: must not contain ':' when csms.password is set"]


@pytest.mark.parametrize(
    ("dotted", "value", "reason"),
    [
        ("charge_point.vendor", "x" * 21, "must be 1 to 20 characters"),
        ("charge_point.vendor", "", "must be 1 to 20 characters"),
        ("charge_point.model", "x" * 21, "must be 1 to 20 characters"),
        ("charge_point.model", 3, "must be 1 to 20 characters"),
        ("charge_point.serial_number", "x" * 26, "must be 1 to 25 characters"),
        ("charge_point.firmware_version", "x" * 51, "must be 1 to 50 characters"),
        ("charge_point.connectors", 0, "must be an integer between 1 and 32"),
        ("charge_point.connectors", 33, "must be an integer between 1 and 32"),
        ("charge_point.connectors", "2", "must be an integer between 1 and 32"),
        ("charge_point.connectors", True, "must be an integer between 1 and 32"),
        ("charge_point.connectors", 2.0, "must be an integer between 1 and 32"),
    ],
)
def test_charge_point_rules(dotted: str, value: object, reason: str) -> None:
    assert only_problem(dotted, value) == f"{dotted}: {reason}"


def test_charge_point_limits_are_inclusive() -> None:
    data = minimal()
    data["charge_point"].update(
        vendor="v" * 20, model="m" * 20, serial_number="s" * 25, firmware_version="f" * 50
    )
    data["charge_point"]["connectors"] = 32
    cp = parse_config(data).charge_point
    assert (cp.serial_number, cp.connectors) == ("s" * 25, 32)


# -- csms ------------------------------------------------------------------------------------


def test_csms_url_required() -> None:
    data = minimal()
    del data["csms"]
    assert problems_of(data) == ["csms.url: required"]


@pytest.mark.parametrize("value", ["http://example.com/ocpp", "example.com", "", 5])
def test_csms_url_scheme(value: object) -> None:
    assert only_problem("csms.url", value) == "csms.url: must start with ws:// or wss://"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ws:///ocpp", "must name a host"),
        (
            "ws://host/ocpp?x=1",
            "must not have a query or fragment (the charge point id is appended)",
        ),
        (
            "ws://host/ocpp#frag",
            "must not have a query or fragment (the charge point id is appended)",
        ),
        ("ws://host/oc pp", "must not contain whitespace"),
    ],
)
def test_csms_url_shape(value: str, reason: str) -> None:
    assert only_problem("csms.url", value) == f"csms.url: {reason}"


def test_csms_url_bad_port() -> None:
    assert only_problem("csms.url", "ws://host:99999/ocpp").startswith(
        "csms.url: is not a valid URL"
    )


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("ws://127.0.0.1:9000/ocpp/", "ws://127.0.0.1:9000/ocpp"),
        ("wss://csms.example.com/ocpp16", "wss://csms.example.com/ocpp16"),
        ("ws://[::1]:9000", "ws://[::1]:9000"),
    ],
)
def test_csms_url_accepted(value: str, url: str) -> None:
    assert parse_config(with_value("csms.url", value)).csms.url == url


@pytest.mark.parametrize("value", ["1.5", 1.6, "2.0", "2.1", "1.6J"])
def test_csms_ocpp_version(value: object) -> None:
    reason = 'must be "1.6" or "2.0.1"'
    assert only_problem("csms.ocpp_version", value) == f"csms.ocpp_version: {reason}"


@pytest.mark.parametrize("value", ["1.6", "2.0.1"])
def test_csms_ocpp_version_accepted(value: str) -> None:
    assert parse_config(with_value("csms.ocpp_version", value)).csms.ocpp_version == value


@pytest.mark.parametrize(
    ("dotted", "value", "reason"),
    [
        ("csms.password", "", "must be 1 to 40 characters"),
        ("csms.password", "p" * 41, "must be 1 to 40 characters"),
        ("csms.reconnect_initial_s", 0, "must be a number > 0"),
        ("csms.reconnect_initial_s", "1", "must be a number > 0"),
        ("csms.reconnect_initial_s", float("inf"), "must be a number > 0"),
        ("csms.reconnect_max_s", 0.5, "must be >= csms.reconnect_initial_s (1)"),
        ("csms.reconnect_max_s", -1, "must be a number > 0"),
        ("csms.response_timeout_s", 0.0, "must be a number > 0"),
        ("csms.response_timeout_s", float("nan"), "must be a number > 0"),
        ("csms.response_timeout_s", False, "must be a number > 0"),
        ("csms.boot_retry_s", 0, "must be an integer >= 1"),
        ("csms.boot_retry_s", 1.5, "must be an integer >= 1"),
    ],
)
def test_csms_rules(dotted: str, value: object, reason: str) -> None:
    assert only_problem(dotted, value) == f"{dotted}: {reason}"


def test_csms_numbers_accept_ints_for_floats() -> None:
    data = minimal()
    data["csms"].update(
        password="p" * 40,
        reconnect_initial_s=2,
        reconnect_max_s=2,
        response_timeout_s=10,
        boot_retry_s=1,
    )
    csms = parse_config(data).csms
    assert csms.password == "p" * 40
    assert (csms.reconnect_initial_s, csms.reconnect_max_s, csms.response_timeout_s) == (2, 2, 10)
    assert isinstance(csms.reconnect_initial_s, float)
    assert csms.boot_retry_s == 1


def test_reconnect_max_checked_against_configured_initial() -> None:
    data = minimal()
    data["csms"].update(reconnect_initial_s=10, reconnect_max_s=5)
    assert problems_of(data) == ["csms.reconnect_max_s: must be >= csms.reconnect_initial_s (10)"]


# -- storage and control ---------------------------------------------------------------------


def test_relative_paths_resolve_against_base_dir() -> None:
    data = minimal()
    data["storage"] = {"data_dir": "../data"}
    data["control"] = {"socket": "run/agent.sock"}
    config = parse_config(data, base_dir=Path("/srv/cpagent/etc"))
    assert config.storage.data_dir == Path("/srv/cpagent/data")
    assert config.control.socket == Path("/srv/cpagent/etc/run/agent.sock")


def test_relative_paths_resolve_against_the_config_file_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = conf_dir / "agent.toml"
    path.write_text(
        '[charge_point]\nid = "CP1"\nvendor = "V"\nmodel = "M"\n'
        '[csms]\nurl = "ws://localhost/ocpp"\n'
        '[storage]\ndata_dir = "data"\n'
        '[control]\nsocket = "ctl.sock"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../etc/agent.toml"))
    assert config.storage.data_dir == conf_dir / "data"
    assert config.control.socket == conf_dir / "ctl.sock"
    assert config.source == conf_dir / "agent.toml"


def test_absolute_paths_kept() -> None:
    data = with_value("storage.data_dir", "/data/cp")
    assert parse_config(data, base_dir=Path("/base")).storage.data_dir == Path("/data/cp")


def test_no_base_dir_means_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config(with_value("storage.data_dir", "data"))
    assert config.storage.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("dotted", "value"), [("storage.data_dir", ""), ("storage.data_dir", 5), ("control.socket", "")]
)
def test_paths_must_be_non_empty_strings(dotted: str, value: object) -> None:
    assert only_problem(dotted, value) == f"{dotted}: must be a non-empty path"


def test_socket_path_length_limit() -> None:
    ok = "/" + "s" * 99
    assert parse_config(with_value("control.socket", ok)).control.socket == Path(ok)
    too_long = "/" + "s" * 100
    assert only_problem("control.socket", too_long) == (
        "control.socket: must be at most 100 bytes once resolved (unix socket path limit);"
        f" {too_long} is 101"
    )


def test_socket_path_length_counts_the_resolved_path() -> None:
    data = with_value("control.socket", "s" * 90)
    problems = problems_of(data, base_dir=Path("/" + "d" * 20))
    assert len(problems) == 1
    assert problems[0].startswith("control.socket: must be at most 100 bytes once resolved")


# -- hal -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("gpio", 'must be "sim" or "hardware"'),
        (1, 'must be "sim" or "hardware"'),
    ],
)
def test_hal_backend(value: object, reason: str) -> None:
    assert only_problem("hal.backend", value) == f"hal.backend: {reason}"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("voltage_v", 99, "must be a number between 100 and 400"),
        ("voltage_v", 400.5, "must be a number between 100 and 400"),
        ("voltage_v", "230", "must be a number between 100 and 400"),
        ("phases", 2, "must be 1 or 3"),
        ("phases", 1.0, "must be 1 or 3"),
        ("phases", True, "must be 1 or 3"),
        ("ev_max_current_a", 5.9, "must be a number between 6 and 80"),
        ("ev_max_current_a", 81, "must be a number between 6 and 80"),
        ("ev_battery_wh", 0, "must be a number > 0"),
        ("ev_initial_soc", -1, "must be a number between 0 and 100"),
        ("ev_initial_soc", 100.1, "must be a number between 0 and 100"),
        ("max_current_a", 100, "must be a number between 6 and 80"),
        ("phase_switch", "yes", "must be true or false"),
    ],
)
def test_hal_sim_rules(key: str, value: object, reason: str) -> None:
    dotted = f"hal.sim.{key}"
    assert only_problem(dotted, value) == f"{dotted}: {reason}"


def test_hal_sim_values_accepted() -> None:
    data = minimal()
    data["hal"] = {
        "backend": "sim",
        "sim": {
            "voltage_v": 400,
            "phases": 1,
            "ev_max_current_a": 6,
            "ev_battery_wh": 1,
            "ev_initial_soc": 100,
            "max_current_a": 80.0,
        },
    }
    sim = parse_config(data).hal.sim
    assert (sim.voltage_v, sim.phases, sim.ev_max_current_a) == (400.0, 1, 6.0)
    assert (sim.ev_battery_wh, sim.ev_initial_soc, sim.max_current_a) == (1.0, 100.0, 80.0)
    assert sim.phase_switch is False


def test_hal_sim_phase_switch_needs_three_phases() -> None:
    data = minimal()
    data["hal"] = {"sim": {"phases": 1, "phase_switch": True}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert "hal.sim.phase_switch: a phase switch needs phases = 3" in str(info.value)
    data["hal"] = {"sim": {"phase_switch": True}}
    assert parse_config(data).hal.sim.phase_switch is True


# -- firmware and logging --------------------------------------------------------------------


def test_firmware_install_command() -> None:
    data = with_value("firmware.install_command", "/opt/fw/install")
    assert parse_config(data).firmware.install_command == "/opt/fw/install"
    assert only_problem("firmware.install_command", "") == (
        "firmware.install_command: must be a non-empty string"
    )


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_logging_level_case_insensitive(value: str, level: str) -> None:
    assert parse_config(with_value("logging.level", value)).logging.level == level


@pytest.mark.parametrize("value", ["TRACE", "CRITICAL", 10])
def test_logging_level_rejected(value: object) -> None:
    assert only_problem("logging.level", value) == (
        "logging.level: must be one of DEBUG, INFO, WARNING, ERROR"
    )


# -- ocpp16 ----------------------------------------------------------------------------------


def test_ocpp16_values_canonicalized() -> None:
    data = minimal()
    data["ocpp16"] = {
        "HeartbeatInterval": 60,
        "LocalPreAuthorize": "TRUE",
        "MeterValuesSampledData": ["Voltage", "SoC"],
        "StopTxnSampledData": "Voltage, Current.Import",
    }
    assert dict(parse_config(data).ocpp16) == {
        "HeartbeatInterval": "60",
        "LocalPreAuthorize": "true",
        "MeterValuesSampledData": "Voltage,SoC",
        "StopTxnSampledData": "Voltage,Current.Import",
    }


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("NumberOfConnectors", 2, "the agent's value is 1; only that value can be set"),
        ("GetConfigurationMaxKeys", 1000, "the agent supports at most 100"),
        (
            "ConnectorSwitch3to1PhaseSupported",
            True,
            "the agent's value is false; only that value can be set",
        ),
        ("HeartbeatInterval", -1, "must be an integer >= 0"),
        ("HeartbeatInterval", True, "must be an integer >= 0"),
        ("LocalAuthorizeOffline", "yes", "must be true or false"),
        ("MeterValuesSampledData", ["Voltage", "Foo"], "'Foo' is not a supported measurand"),
        ("MeterValuesSampledData", ["Voltage"] * 9, "must have at most 8 items"),
        ("LightIntensity", 150, "must be an integer between 0 and 100"),
    ],
)
def test_ocpp16_rules(key: str, value: object, reason: str) -> None:
    assert only_problem(f"ocpp16.{key}", value) == f"ocpp16.{key}: {reason}"


def test_example_file_documents_every_read_only_key() -> None:
    """The commented read-only keys at the end of config/sim.toml: each of them, with the
    agent's value (accepted as it is) and, for a limit, the lowest value it takes."""
    text = EXAMPLE.read_text().partition("# Read-only keys")[2]
    lines = [line.removeprefix("#   ") for line in text.splitlines() if line.startswith("#   ")]
    documented = tomllib.loads("\n".join(lines))
    read_only = [name for name, spec in KEYS.items() if not spec.writable]
    assert sorted(documented) == sorted(read_only)
    judged = read_initial(documented, capabilities(connectors=1, phase_switch=False))
    assert judged.problems == [] and judged.unknown == []
    for line in lines:
        name = line.split("=")[0].strip()
        if KEYS[name].in_config == "at_most":
            assert f"# [{KEYS[name].minimum}]" in line, line
            assert str(documented[name]) == KEYS[name].default, line


def test_ocpp16_takes_another_chargers_key_list() -> None:
    """Read-only keys with the agent's values (or lower limits) are accepted, names in any
    case, under the spec's spelling; a name the agent does not know is a warning."""
    data = minimal()
    data["charge_point"]["connectors"] = 2
    data["hal"] = {"sim": {"phase_switch": True}}
    data["ocpp16"] = {
        "NumberOfConnectors": "2",
        "ConnectorSwitch3to1PhaseSupported": True,
        "SupportedFeatureProfiles": (
            "SmartCharging,Reservation,RemoteTrigger,LocalAuthListManagement,"
            "FirmwareManagement,Core"
        ),
        "SupportedFileTransferProtocols": "FTP,HTTP,HTTPS",
        "ReserveConnectorZeroSupported": False,
        "MeterValuesSampledDataMaxLength": 4,
        "connectiontimeout": 45,
        "ChargeBoxVendorMode": "eco",
    }
    config = parse_config(data)
    assert config.ocpp16["ConnectionTimeOut"] == "45"
    assert config.ocpp16["MeterValuesSampledDataMaxLength"] == "4"
    assert config.ocpp16["ConnectorSwitch3to1PhaseSupported"] == "true"
    assert config.warnings == (
        "ocpp16.ChargeBoxVendorMode: not an OCPP 1.6 configuration key cpagent knows; ignored",
    )
    data["hal"] = {}
    assert problems_of(data) == [
        "ocpp16.ConnectorSwitch3to1PhaseSupported:"
        " the agent's value is false; only that value can be set"
    ]


# -- ocpp201 ---------------------------------------------------------------------------------

EXAMPLE_201 = EXAMPLE.parent / "sim-ocpp201.toml"


def v201(**tables: dict[str, object]) -> dict[str, Any]:
    data = with_value("csms.ocpp_version", "2.0.1")
    data["charge_point"]["connectors"] = 2
    data["ocpp201"] = tables
    return data


def test_ocpp201_example_file_loads() -> None:
    config = load_config(EXAMPLE_201)
    assert config.csms.ocpp_version == "2.0.1"
    assert config.warnings == ()
    assert dict(config.ocpp16) == {}
    assert config.ocpp201["OCPPCommCtrlr"]["MessageAttempts:TransactionEvent"] == 3
    model, warnings = DeviceModel.from_config(config.charge_point.connectors, config.ocpp201)
    assert warnings == []
    got = model.get(ComponentRef("TxCtrlr"), VariableRef("TxStopPoint"))
    assert got.value == "EVConnected,Authorized"


@pytest.mark.parametrize("path", [EXAMPLE, EXAMPLE_201], ids=lambda p: p.name)
def test_check_config_accepts_the_simulator_examples_without_warnings(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cpagent", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert f"config:         {path}" in done.stdout.splitlines()


def test_ocpp201_tables_are_kept_as_written_and_read_only() -> None:
    tables: dict[str, dict[str, object]] = {
        "ocppcommctrlr": {"heartbeatinterval": 60},
        "EVSE@2": {},
        "SampledDataCtrlr": {"TxUpdatedMeasurands": "Voltage, SoC"},
    }
    config = parse_config(v201(**tables))
    assert {key: dict(table) for key, table in config.ocpp201.items()} == tables
    assert config.warnings == ()
    with pytest.raises(TypeError):
        config.ocpp201["EVSE@2"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        config.ocpp201["EVSE@2"]["Power"] = 1  # type: ignore[index]
    text = summary(config)
    assert "OCPP 2.0.1" in text
    assert "ocpp201:        2 device-model values set" in text.splitlines()
    assert "  OCPPCommCtrlr.HeartbeatInterval = 60" in text.splitlines()
    assert "  SampledDataCtrlr.TxUpdatedMeasurands = Voltage,SoC" in text.splitlines()


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        (
            {"NoSuchCtrlr": {"X": 1}},
            "ocpp201.NoSuchCtrlr: 'NoSuchCtrlr' is not a standardized OCPP 2.0.1 component",
        ),
        (
            {"OCPPCommCtrlr": {"Nope": 1}},
            "ocpp201.OCPPCommCtrlr.Nope: 'Nope' is not a variable of OCPPCommCtrlr",
        ),
        (
            {"SecurityCtrlr": {"BasicAuthPassword": "0123456789abcdef"}},
            "ocpp201.SecurityCtrlr.BasicAuthPassword: BasicAuthPassword is WriteOnly:"
            " only the CSMS sets it",
        ),
        (
            {"AuthCacheCtrlr": {"Policy": "MRU"}},
            "ocpp201.AuthCacheCtrlr.Policy: 'MRU' is not one of LRU,LFU,FIFO,CUSTOM",
        ),
        (
            {"SecurityCtrlr": {"SecurityProfile": 4}},
            "ocpp201.SecurityCtrlr.SecurityProfile: 4 is above the maximum 3",
        ),
        (
            {"OCPPCommCtrlr": {"HeartbeatInterval": True}},
            "ocpp201.OCPPCommCtrlr.HeartbeatInterval: expects integer, got a boolean",
        ),
        (
            {"OCPPCommCtrlr": {"HeartbeatInterval": "soon"}},
            "ocpp201.OCPPCommCtrlr.HeartbeatInterval: 'soon' is not an integer",
        ),
        ({"EVSE@3": {"Power": 0}}, "ocpp201.EVSE@3.Power: there is no EVSE 3 (EVSEs 1-2)"),
        (
            {"HeartbeatInterval": 60},
            "ocpp201.HeartbeatInterval: a value must be inside a component table"
            ' ([ocpp201.Component] or [ocpp201."Component@evseId"])',
        ),
        (
            {
                "OCPPCommCtrlr": {"HeartbeatInterval": 60},
                "ocppcommctrlr": {"heartbeatinterval": 90},
            },
            "ocpp201.ocppcommctrlr.heartbeatinterval: already set"
            " (as ocpp201.OCPPCommCtrlr.HeartbeatInterval)",
        ),
    ],
)
def test_ocpp201_problems_name_the_key(tables: dict[str, object], problem: str) -> None:
    assert problems_of(v201(**tables)) == [problem]  # type: ignore[arg-type]


def test_ocpp201_problems_come_with_the_others_all_at_once() -> None:
    data = v201(OCPPCommCtrlr={"HeartbeatInterval": 0, "OfflineThreshold": "x"})
    data["charge_point"]["connectors"] = 0
    data["logging"] = {"level": "LOUD"}
    assert problems_of(data) == [
        "charge_point.connectors: must be an integer between 1 and 32",
        "logging.level: must be one of DEBUG, INFO, WARNING, ERROR",
        "ocpp201.OCPPCommCtrlr.HeartbeatInterval: 0 is below the minimum 1",
        "ocpp201.OCPPCommCtrlr.OfflineThreshold: 'x' is not an integer",
    ]


def test_ocpp201_block_cpagent_does_not_implement_is_a_warning() -> None:
    config = parse_config(v201(ReservationCtrlr={"Available": False}))
    assert config.warnings == (
        "ocpp201.ReservationCtrlr.Available: cpagent does not implement ReservationCtrlr;"
        " value reported only",
    )
    assert "  ReservationCtrlr.Available = false" in summary(config).splitlines()


def test_ocpp201_version_without_a_table() -> None:
    config = parse_config(with_value("csms.ocpp_version", "2.0.1"))
    assert dict(config.ocpp201) == {} and dict(config.ocpp16) == {}
    assert config.warnings == ()
    assert "ocpp201" not in summary(config) and "ocpp16" not in summary(config)


def test_the_other_versions_table_is_ignored_with_a_warning() -> None:
    data = minimal()
    data["ocpp16"] = {"HeartbeatInterval": 60}
    data["ocpp201"] = {"NoSuchCtrlr": {"X": "not checked"}}
    config = parse_config(data)
    assert dict(config.ocpp16) == {"HeartbeatInterval": "60"} and dict(config.ocpp201) == {}
    assert config.warnings == ('ocpp201: ignored, as csms.ocpp_version is "1.6", not "2.0.1"',)
    assert "ocpp201" not in summary(config)

    data["csms"]["ocpp_version"] = "2.0.1"
    data["ocpp201"] = {"OCPPCommCtrlr": {"HeartbeatInterval": 90}}
    data["ocpp16"] = {"NoSuchKey": "x", "HeartbeatInterval": -1}
    config = parse_config(data)
    assert dict(config.ocpp16) == {} and dict(config.ocpp201["OCPPCommCtrlr"]) == {
        "HeartbeatInterval": 90
    }
    assert config.warnings == ('ocpp16: ignored, as csms.ocpp_version is "2.0.1", not "1.6"',)
    assert "HeartbeatInterval=" not in summary(config)


def test_with_an_unknown_version_every_table_present_is_judged() -> None:
    data = with_value("csms.ocpp_version", "2.1")
    data["ocpp16"] = {"HeartbeatInterval": -1}
    data["ocpp201"] = {"OCPPCommCtrlr": {"HeartbeatInterval": -1}}
    assert problems_of(data) == [
        'csms.ocpp_version: must be "1.6" or "2.0.1"',
        "ocpp16.HeartbeatInterval: must be an integer >= 0",
        "ocpp201.OCPPCommCtrlr.HeartbeatInterval: -1 is below the minimum 1",
    ]


def test_the_version_is_known_even_when_another_csms_key_is_wrong() -> None:
    data = v201(OCPPCommCtrlr={"HeartbeatInterval": -1})
    data["csms"]["url"] = "http://x"
    data["ocpp16"] = {"HeartbeatInterval": -1}
    assert problems_of(data) == [
        "csms.url: must start with ws:// or wss://",
        "ocpp201.OCPPCommCtrlr.HeartbeatInterval: -1 is below the minimum 1",
    ]


# -- unknown keys, wrong shapes, many problems -----------------------------------------------


@pytest.mark.parametrize(
    "dotted",
    [
        "charge_point.colour",
        "csms.uri",
        "storage.dir",
        "control.port",
        "hal.pins",
        "hal.sim.temperature",
        "firmware.url",
        "logging.path",
        "metrics",
    ],
)
def test_unknown_keys_rejected_by_name(dotted: str) -> None:
    assert only_problem(dotted, 1) == f"{dotted}: unknown key"


def test_unknown_table_rejected() -> None:
    data = minimal()
    data["ocpp20"] = {"HeartbeatInterval": 10}
    assert problems_of(data) == ["ocpp20: unknown key"]


def test_section_must_be_a_table() -> None:
    data = minimal()
    data["hal"] = "sim"
    assert problems_of(data) == ["hal: must be a table"]


def test_every_problem_is_reported_together() -> None:
    data: dict[str, Any] = {
        "charge_point": {"id": "a/b", "vendor": "V" * 21, "connectors": 0, "colour": "red"},
        "csms": {"url": "http://x", "ocpp_version": "1.5"},
        "hal": {"backend": "gpio", "sim": {"phases": 2}},
        "logging": {"level": "LOUD"},
        "ocpp16": {"Foo": 1, "HeartbeatInterval": "x"},
        "extra": {},
    }
    assert problems_of(data) == [
        f"charge_point.id: {ID_REASON}",
        "charge_point.vendor: must be 1 to 20 characters",
        "charge_point.model: required",
        "charge_point.connectors: must be an integer between 1 and 32",
        "charge_point.colour: unknown key",
        "csms.url: must start with ws:// or wss://",
        'csms.ocpp_version: must be "1.6" or "2.0.1"',
        'hal.backend: must be "sim" or "hardware"',
        "hal.sim.phases: must be 1 or 3",
        "logging.level: must be one of DEBUG, INFO, WARNING, ERROR",
        "ocpp16.HeartbeatInterval: must be an integer >= 0",
        "extra: unknown key",
    ]


def test_config_error_message_is_one_problem_per_line() -> None:
    data = minimal()
    data["charge_point"]["connectors"] = 0
    data["logging"] = {"level": "LOUD"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).splitlines() == info.value.problems


# -- load_config -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: file not found"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a directory
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{tmp_path}: cannot read")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[charge_point\nid = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: invalid TOML")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[charge_point]\nid = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: not UTF-8")


def test_load_reports_problems_of_a_valid_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[charge_point]\nid = "CP1"\nvendor = "V"\nmodel = "M"\n[csms]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["csms.url: required"]


# -- default path ----------------------------------------------------------------------------


def test_default_config_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPAGENT_CONFIG", "/tmp/agent.toml")
    assert default_config_path() == Path("/tmp/agent.toml")


@pytest.mark.parametrize("value", [None, ""])
def test_default_config_path_fallback(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CPAGENT_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CPAGENT_CONFIG", value)
    assert default_config_path() == DEFAULT_CONFIG_PATH == Path("/etc/cpagent/cpagent.toml")


def test_log_file_is_optional_and_resolved_against_the_config(tmp_path: Path) -> None:
    assert parse_config(minimal()).logging.file is None
    config = parse_config(with_value("logging.file", "logs/cpagent.log"), base_dir=tmp_path)
    assert config.logging.file == tmp_path / "logs" / "cpagent.log"
    assert only_problem("logging.file", "") == "logging.file: must be a non-empty path"


# -- security ----------------------------------------------------------------------------------


def test_security_section_paths_resolve_and_pair(tmp_path: Path) -> None:
    data = minimal()
    data["csms"]["allow_basic_auth_without_tls"] = True
    data["security"] = {
        "csms_root_certificates": "roots.pem",
        "charge_point_certificate": "cp.pem",
        "charge_point_key": "/etc/cpagent/cp-key.pem",
    }
    config = parse_config(data, base_dir=tmp_path)
    assert config.csms.allow_basic_auth_without_tls is True
    assert config.security.csms_root_certificates == tmp_path / "roots.pem"
    assert config.security.manufacturer_root_certificates is None
    assert config.security.charge_point_key == Path("/etc/cpagent/cp-key.pem")
    assert security_warnings(config.security) == [
        f"security.csms_root_certificates: {tmp_path / 'roots.pem'} does not exist on this machine",
        f"security.charge_point_certificate: {tmp_path / 'cp.pem'} does not exist on this machine",
        "security.charge_point_key: /etc/cpagent/cp-key.pem does not exist on this machine",
    ]
    (tmp_path / "roots.pem").write_text("")
    assert len(security_warnings(config.security)) == 2


def test_security_certificate_without_key_is_a_problem() -> None:
    data = minimal()
    data["security"] = {"charge_point_certificate": "/etc/cpagent/cp.pem"}
    assert problems_of(data) == [
        "security.charge_point_key: charge_point_certificate and charge_point_key go together"
    ]
    assert only_problem("csms.allow_basic_auth_without_tls", "yes") == (
        "csms.allow_basic_auth_without_tls: must be true or false"
    )
    assert parse_config(minimal()).csms.allow_basic_auth_without_tls is False


def test_security_token_settings_go_together_and_take_a_key_uri(tmp_path: Path) -> None:
    data = minimal()
    data["security"] = {
        "pkcs11_module": "/usr/lib/softhsm/libsofthsm2.so",
        "pkcs11_token": "cpagent",
        "pkcs11_pin_file": "pin",
        "charge_point_certificate": "cp.pem",
        "charge_point_key": "pkcs11:object=factory;type=private",
    }
    config = parse_config(data, base_dir=tmp_path)
    assert config.security.token == TokenSettings(
        Path("/usr/lib/softhsm/libsofthsm2.so"), "cpagent", tmp_path / "pin"
    )
    assert config.security.charge_point_key == "pkcs11:object=factory;type=private"
    warned = security_warnings(config.security)
    assert f"security.pkcs11_pin_file: {tmp_path / 'pin'} does not exist on this machine" in warned
    assert not any("charge_point_key" in line for line in warned)

    del data["security"]["pkcs11_token"]
    assert problems_of(data) == [
        "security.pkcs11_token: pkcs11_module, pkcs11_token and pkcs11_pin_file go together",
        "security.charge_point_key: a pkcs11: URI needs pkcs11_module, pkcs11_token,"
        " pkcs11_pin_file",
    ]
    data["security"]["pkcs11_token"] = ""
    assert "security.pkcs11_token: must be 1 to 32 characters" in problems_of(data)
    # Without a token, a key is a file, whatever its name.
    plain = minimal()
    plain["security"] = {"charge_point_certificate": "cp.pem", "charge_point_key": "cp-key.pem"}
    parsed = parse_config(plain, base_dir=tmp_path)
    assert parsed.security.charge_point_key == tmp_path / "cp-key.pem"
    assert parsed.security.token is None


def test_restart_max_wait_defaults_to_72_hours_and_zero_means_no_bound() -> None:
    assert parse_config(minimal()).control.restart_max_wait_s == 259200
    assert "restart wait:   at most 259200 s (72 h)" in summary(parse_config(minimal()))
    unbounded = parse_config(with_value("control.restart_max_wait_s", 0))
    assert unbounded.control.restart_max_wait_s == 0
    assert "restart wait:   for running sessions to end, without bound" in summary(unbounded)
    assert (
        parse_config(with_value("control.restart_max_wait_s", 1.5)).control.restart_max_wait_s
        == 1.5
    )


@pytest.mark.parametrize("value", [-1, 604801, "72h", True])
def test_restart_max_wait_is_bounded(value: object) -> None:
    assert only_problem("control.restart_max_wait_s", value) == (
        "control.restart_max_wait_s: must be a number between 0 and 604800"
    )
