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


# -- check-config with OCPP 2.0.1 ----------------------------------------------------------


def config_201(workdir: Path, **tables: dict[str, object]) -> Path:
    """A 2.0.1 config file with two EVSEs and the given ``[ocpp201.*]`` tables (their names
    as TOML writes them, quoted where needed; keys are quoted by write_config)."""
    path = workdir / "cpagent.toml"
    write_config(
        path,
        {
            "charge_point": {"id": "CP201", "vendor": "V", "model": "M", "connectors": 2},
            "csms": {"url": "ws://127.0.0.1:9/ocpp", "ocpp_version": "2.0.1"},
            "storage": {"data_dir": str(workdir / "data")},
            "control": {"socket": str(workdir / "control.sock")},
            **{f"ocpp201.{name}": values for name, values in tables.items()},
        },
    )
    return path


async def test_check_config_shows_the_201_values_and_warns_about_unimplemented_blocks(
    workdir: Path,
) -> None:
    config = config_201(
        workdir,
        OCPPCommCtrlr={"HeartbeatInterval": 120, "MessageAttempts:TransactionEvent": 5},
        TxCtrlr={"TxStopPoint": "EVConnected"},
        **{'"Connector@2.1"': {"ConnectorType": "cCCS2"}},
        ReservationCtrlr={"Available": False},
    )
    result = await run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert "csms:           ws://127.0.0.1:9/ocpp/CP201 (OCPP 2.0.1, no password)" in lines
    values = lines[lines.index("ocpp201:        5 device-model values set") + 1 :]
    assert values == [
        "  OCPPCommCtrlr.HeartbeatInterval = 120",
        "  OCPPCommCtrlr.MessageAttempts:TransactionEvent = 5",
        "  TxCtrlr.TxStopPoint = EVConnected",
        "  Connector@2.1.ConnectorType = cCCS2",
        "  ReservationCtrlr.Available = false",
    ]
    assert result.stderr.splitlines() == [
        "warning: ocpp201.ReservationCtrlr.Available: cpagent does not implement"
        " ReservationCtrlr; value reported only"
    ]


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        pytest.param(
            {"ChargingCtrlr": {"Enabled": True}},
            "ocpp201.ChargingCtrlr: 'ChargingCtrlr' is not a standardized OCPP 2.0.1 component",
            id="unknown-component",
        ),
        pytest.param(
            {"OCPPCommCtrlr": {"HeartbeatIntervall": 60}},
            "ocpp201.OCPPCommCtrlr.HeartbeatIntervall:"
            " 'HeartbeatIntervall' is not a variable of OCPPCommCtrlr",
            id="unknown-variable",
        ),
        pytest.param(
            {"SecurityCtrlr": {"BasicAuthPassword": "0123456789abcdef"}},
            "ocpp201.SecurityCtrlr.BasicAuthPassword:"
            " BasicAuthPassword is WriteOnly: only the CSMS sets it",
            id="write-only",
        ),
        pytest.param(
            {"TxCtrlr": {"TxStartPoint": "Plugged"}},
            "ocpp201.TxCtrlr.TxStartPoint: Plugged not among EVConnected,Authorized,"
            "PowerPathClosed,EnergyTransfer",
            id="values-list",
        ),
        pytest.param(
            {"SecurityCtrlr": {"SecurityProfile": 4}},
            "ocpp201.SecurityCtrlr.SecurityProfile: 4 is above the maximum 3",
            id="max-limit",
        ),
        pytest.param(
            {"AuthCtrlr": {"LocalPreAuthorize": 1}},
            "ocpp201.AuthCtrlr.LocalPreAuthorize: expects boolean, got a number",
            id="data-type",
        ),
    ],
)
async def test_check_config_refuses_a_201_value_naming_its_key(
    workdir: Path, tables: dict[str, dict[str, object]], problem: str
) -> None:
    # A valid table beside the refused one: only the refused value is named.
    config = config_201(workdir, **{"AuthCacheCtrlr": {"LifeTime": 600}, **tables})
    result = await run_cli("check-config", "--config", str(config))
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [problem]
    assert result.stdout == ""
