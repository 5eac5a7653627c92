"""Start-up failures of ``cpagent run`` end with a message and exit code, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run_cli, write_config


async def test_run_with_an_unusable_control_socket_exits_1_with_the_reason(
    workdir: Path,
) -> None:
    config = workdir / "cpagent.toml"
    write_config(
        config,
        {
            "charge_point": {"id": "X1", "vendor": "V", "model": "M"},
            "csms": {"url": "ws://127.0.0.1:9/ocpp"},
            "storage": {"data_dir": str(workdir / "data")},
            "control": {"socket": "/proc/no-such-dir/control.sock"},
        },
    )
    result = await run_cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "cannot open the control socket /proc/no-such-dir/control.sock" in result.stderr
    assert "Traceback" not in result.stderr


async def test_run_without_a_usable_gpio_library_exits_1_naming_the_pin(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = workdir / "cpagent.toml"
    write_config(
        config,
        {
            "charge_point": {"id": "X1", "vendor": "V", "model": "M"},
            "csms": {"url": "ws://127.0.0.1:9/ocpp"},
            "storage": {"data_dir": str(workdir / "data")},
            "control": {"socket": str(workdir / "control.sock")},
            "hal": {"backend": "hardware"},
            "hal.buses.lan": {"host": "127.0.0.1", "port": 9},
            "hal.connectors.1.meter": {"bus": "lan", "model": "sdm630"},
            "hal.connectors.1.pilot": {"board": "evse-din", "bus": "lan", "device_id": 2},
            "hal.connectors.1.contactor": {"pin": "BOARD11"},
        },
    )
    # A pin library that does not exist stands for a board without one installed.
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-pin-library")
    result = await run_cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "cannot open the contactor on pin 'GPIO17'" in result.stderr
    assert "no-such-pin-library" in result.stderr
    assert "Traceback" not in result.stderr
