"""The [hal] tables for real hardware: the example files, every rule and its problem line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cpagent.config import load_config, parse_config
from cpagent.exc import ConfigError
from cpagent.hal.hardware_config import (
    SerialBusConfig,
    TcpBusConfig,
    device_warnings,
    pin_name,
)
from cpagent.hal.meter_maps import MAPS

CONFIG_DIR = Path(__file__).parents[2] / "config"
# The examples of hardware; sim*.toml run on simulated hardware.
EXAMPLES = sorted(p for p in CONFIG_DIR.glob("*.toml") if not p.name.startswith("sim"))


def hardware(connectors: int = 1, **hal: Any) -> dict[str, Any]:
    """A valid hardware config: an SDM630 and an EVSE-DIN board per connector on one line."""
    data: dict[str, Any] = {
        "charge_point": {"id": "CP1", "vendor": "V", "model": "M", "connectors": connectors},
        "csms": {"url": "ws://127.0.0.1:9000/ocpp"},
        "hal": {
            "backend": "hardware",
            "buses": {"rs485": {"port": "/dev/ttyUSB0"}},
            "connectors": {
                str(cid): {
                    "meter": {"bus": "rs485", "model": "sdm630", "device_id": cid},
                    "pilot": {"board": "evse-din", "bus": "rs485", "device_id": 10 + cid},
                }
                for cid in range(1, connectors + 1)
            },
        },
    }
    data["hal"].update(hal)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_files_load(path: Path) -> None:
    config = load_config(path)
    assert config.hal.backend == "hardware"
    assert len(config.hal.hardware.connectors) == config.charge_point.connectors


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_check_config_accepts_the_examples_and_warns_about_absent_devices(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cpagent", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "connector 1:" in done.stdout
    for line in done.stderr.splitlines():
        assert line.startswith("warning: "), line


def test_pi_example_describes_the_wiring() -> None:
    config = load_config(CONFIG_DIR / "pi-sdm630-evse-din.toml").hal.hardware
    bus = config.buses["rs485"]
    assert bus == SerialBusConfig("rs485", "/dev/ttyUSB0", 9600, "N", 1, 0.5, 0.1)
    (c,) = config.connectors
    assert c.meter.map is MAPS["sdm630"] and c.meter.device_id == 1
    assert (c.pilot.board, c.pilot.device_id) == ("evse-din", 2)
    assert c.contactor is not None and c.contactor.pin == "GPIO17"
    assert c.contactor.feedback is not None and c.contactor.feedback.pin == "GPIO27"
    assert c.led is not None and c.led.pin == "GPIO22"
    assert config.card_reader is not None and config.card_reader.protocol == "line"


def test_tcp_example_uses_a_user_map() -> None:
    config = load_config(CONFIG_DIR / "tcp-meter.toml").hal.hardware
    assert config.buses["meter_lan"] == TcpBusConfig("meter_lan", "192.168.1.50", 502, 1.0, 0.0)
    meter = config.connectors[0].meter
    assert meter.model == "my_em340"
    shipped = MAPS["em340"]
    assert meter.map.registers() == shipped.registers()


def test_defaults() -> None:
    config = parse_config(hardware()).hal.hardware
    (c,) = config.connectors
    assert (c.phases, c.max_current_a, c.poll_interval_s) == (3, 32.0, 1.0)
    assert (c.meter.retries, c.pilot.retries, c.pilot.state_poll_s) == (2, 2, 0.5)
    assert c.pilot.write_function == 16  # as evcc and openWB write EVSE-DIN boards
    assert c.contactor is None and c.lock is None and c.led is None
    assert config.card_reader is None


def test_sim_backend_needs_no_hardware_tables_but_checks_them() -> None:
    data = hardware()
    data["hal"]["backend"] = "sim"
    assert parse_config(data).hal.backend == "sim"
    data["hal"]["connectors"] = {}
    assert parse_config(data).hal.hardware.connectors == ()
    data["hal"]["buses"]["rs485"]["baudrate"] = 9601
    assert problems(data) == [
        "hal.buses.rs485.baudrate: must be one of 1200, 2400, 4800, 9600, 19200, 38400,"
        " 57600, 115200"
    ]


def test_model_aliases() -> None:
    data = hardware()
    data["hal"]["connectors"]["1"]["meter"]["model"] = "sdm72"
    assert parse_config(data).hal.hardware.connectors[0].meter.map is MAPS["sdm630"]


@pytest.mark.parametrize(
    ("value", "name"),
    [(17, "GPIO17"), ("GPIO17", "GPIO17"), ("bcm17", "GPIO17"), ("BOARD11", "GPIO17"),
     ("J8:11", "GPIO17"), ("GPIO0", "GPIO0"), (27, "GPIO27")],
)  # fmt: skip
def test_pin_names(value: object, name: str) -> None:
    assert pin_name(value) == name


@pytest.mark.parametrize("value", [28, -1, "GPIO28", "BOARD1", "BOARD41", "pin17", True, 1.5])
def test_bad_pin_names(value: object) -> None:
    with pytest.raises(ValueError):
        pin_name(value)


def test_one_pin_under_two_names_is_refused() -> None:
    data = hardware(2)
    data["hal"]["connectors"]["1"]["contactor"] = {"pin": "GPIO17"}
    data["hal"]["connectors"]["2"]["contactor"] = {"pin": "BOARD11"}
    assert problems(data) == ["hal.connectors: GPIO17 is used for more than one device"]


def test_two_devices_with_one_id_on_one_bus_are_refused() -> None:
    data = hardware(2)
    data["hal"]["connectors"]["2"]["meter"]["device_id"] = 1
    assert problems(data) == [
        "hal.connectors.2.meter.device_id: id 1 on bus 'rs485' is already hal.connectors.1.meter"
    ]


def test_every_problem_is_named_by_its_key() -> None:
    data = hardware(2)
    hal = data["hal"]
    hal["buses"]["lan"] = {"host": "10.0.0.9", "port": 70000}
    hal["buses"]["rs485"].update(parity="X", colour="red")
    hal["meter_maps"] = {"mine": {"phases": 3, "power_w": {}}, "sdm630": {}}
    one = hal["connectors"]["1"]
    one["meter"].update(bus="rs458", model="sdm63")
    one["pilot"]["board"] = "openevse"
    one["contactor"] = {"pin": "GPIO99", "feedback_pull": "sideways"}
    del hal["connectors"]["2"]["pilot"]
    hal["connectors"]["3"] = {}
    hal["card_reader"] = {"port": "COM1", "protocol": "wiegand"}
    assert sorted(problems(data)) == sorted(
        [
            "hal.buses.lan.port: must be an integer between 1 and 65535",
            'hal.buses.rs485.parity: must be "N", "E" or "O"',
            "hal.buses.rs485.colour: unknown key",
            "hal.meter_maps.mine.energy_import_wh: missing",
            "hal.meter_maps.sdm630: a shipped meter map has this name; choose another",
            "hal.connectors.3: must be 1..2 (charge_point.connectors)",
            "hal.connectors.1.meter.model: unknown meter 'sdm63'; known: abb_b23, abb_b24,"
            " em330, em340, sdm120, sdm230, sdm630, sdm72",
            'hal.connectors.1.pilot.board: must be one of "evse-din", "phoenix"',
            "hal.connectors.1.contactor.pin: GPIO numbers run from 0 to 27, not 'GPIO99'",
            'hal.connectors.1.contactor.feedback_pull: must be one of "none", "up", "down"',
            "hal.connectors.2.pilot: required: the EVSE board that makes the pilot signal",
            'hal.card_reader.port: must be a device path like "/dev/ttyUSB0" (or a pyserial URL)',
            'hal.card_reader.protocol: must be one of "line", "rdm6300"',
        ]
    )


def test_unknown_bus_and_missing_connector() -> None:
    data = hardware(2)
    data["hal"]["connectors"]["1"]["pilot"]["bus"] = "rs458"
    del data["hal"]["connectors"]["2"]
    assert problems(data) == [
        "hal.connectors.2: required: the devices of this connector",
        "hal.connectors.1.pilot.bus: no bus 'rs458' in [hal.buses] (rs485)",
    ]


def test_a_three_phase_connector_needs_a_three_phase_meter() -> None:
    data = hardware()
    data["hal"]["connectors"]["1"]["meter"]["model"] = "sdm120"
    assert parse_config(copy.deepcopy(data)).hal.hardware.connectors[0].phases == 1
    data["hal"]["connectors"]["1"]["phases"] = 3
    assert problems(data) == ["hal.connectors.1.phases: 3 phases, but meter 'sdm120' measures one"]


def test_device_warnings_name_what_is_missing(tmp_path: Path) -> None:
    data = hardware(card_reader={"port": str(tmp_path / "ttyRFID")})
    data["hal"]["buses"]["rs485"]["port"] = str(tmp_path / "ttyUSB9")
    config = parse_config(data).hal.hardware
    assert device_warnings(config) == [
        f"hal.buses.rs485.port: {tmp_path / 'ttyUSB9'} does not exist on this machine",
        f"hal.card_reader.port: {tmp_path / 'ttyRFID'} does not exist on this machine",
    ]
    (tmp_path / "ttyUSB9").touch()
    (tmp_path / "ttyRFID").touch()
    assert device_warnings(config) == []


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cpagent", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_wire_feedback_contacts_as_the_docs_do(path: Path) -> None:
    """docs/hardware.md wires each feedback contact to GND with the pull-up on: closed
    reads low, so ``feedback_active_high = false``. Every example agrees."""
    for c in load_config(path).hal.hardware.connectors:
        for device in (c.contactor, c.lock):
            if device is not None and device.feedback is not None:
                assert device.feedback.pull == "up", (path.name, c.connector_id)
                assert device.feedback.active_high is False, (path.name, c.connector_id)
    assert "feedback" not in check_config(path).stderr
    docs = (CONFIG_DIR.parent / "docs" / "hardware.md").read_text()
    assert 'feedback_pull = "up"' in docs and "feedback_active_high = false" in docs
    assert "feedback_active_high = true" not in docs


def warnings_about(text: str, tmp_path: Path) -> list[str]:
    """The lines check-config prints to stderr for a config file holding ``text``."""
    config = tmp_path / "cpagent.toml"
    config.write_text(text)
    done = check_config(config)
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_check_config_warns_about_a_pull_up_with_an_active_high_feedback(tmp_path: Path) -> None:
    """With the pull-up on, a contact to GND reads low when closed; declared active high,
    every switch would be reported as a welded or stuck contactor."""
    text = (CONFIG_DIR / "pi-sdm630-evse-din.toml").read_text()
    wrong = text.replace("feedback_active_high = false", "feedback_active_high = true", 1)
    assert wrong != text
    assert (
        'warning: hal.connectors.1.contactor: feedback_pull = "up" with feedback_active_high'
        " = true: a contact to GND (docs/hardware.md) reads low when closed, so every switch"
        " would look like a contactor fault; set feedback_active_high = false"
    ) in warnings_about(wrong, tmp_path)

    lock = text + '\n[hal.connectors.1.lock]\npin = "GPIO5"\nfeedback_pin = "GPIO6"\n'
    lock += 'feedback_pull = "down"\nfeedback_active_high = false\n'
    assert (
        'warning: hal.connectors.1.lock: feedback_pull = "down" with feedback_active_high'
        " = false: a contact to 3.3 V reads high when closed, so every switch would look"
        " like a lock fault; set feedback_active_high = true"
    ) in warnings_about(lock, tmp_path)


def test_the_write_function_code_per_board() -> None:
    data = hardware(2)
    data["hal"]["connectors"]["1"]["pilot"]["write_function"] = 6
    data["hal"]["connectors"]["2"]["pilot"]["board"] = "phoenix"
    first, second = parse_config(data).hal.hardware.connectors
    assert (first.pilot.write_function, second.pilot.write_function) == (6, 6)
    data["hal"]["connectors"]["2"]["pilot"]["write_function"] = 3
    assert problems(data) == ["hal.connectors.2.pilot.write_function: must be one of 6, 16"]
