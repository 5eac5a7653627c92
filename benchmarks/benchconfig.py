"""What the benchmark scripts share: the agent's console script and a throwaway config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CPAGENT = str(Path(sys.executable).parent / "cpagent")


def write_config(
    workdir: Path,
    csms_url: str,
    *,
    cp_id: str,
    connectors: int,
    csms: dict[str, Any],
    ocpp: str = "1.6",
) -> Path:
    """A config for a simulated agent whose data and control socket live in ``workdir``,
    speaking OCPP ``ocpp`` ("1.6" or "2.0.1") with its factory settings."""
    tables: dict[str, dict[str, Any]] = {
        "charge_point": {
            "id": cp_id,
            "vendor": "Bench",
            "model": "Bench",
            "connectors": connectors,
        },
        "csms": {"url": csms_url, "ocpp_version": ocpp, **csms},
        "storage": {"data_dir": str(workdir / "data")},
        "control": {"socket": str(workdir / "control.sock")},
        "hal": {"backend": "sim"},
        "logging": {"level": "INFO"},
    }
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    path = workdir / "cpagent.toml"
    path.write_text("\n".join(lines))
    return path


def add_ocpp_option(parser: Any) -> None:
    parser.add_argument(
        "--ocpp", choices=["1.6", "2.0.1"], default="1.6", help="the OCPP version the agent speaks"
    )
