"""Start-up failures of ``cpagent run`` end with a message and exit code, not a traceback."""

from __future__ import annotations

from pathlib import Path

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
