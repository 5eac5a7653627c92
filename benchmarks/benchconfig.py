"""What the benchmark scripts share: the agent's console script, a throwaway config, and
the agent's byte code compiled as an installed package has it."""

from __future__ import annotations

import compileall
import json
import sys
import sysconfig
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


def compile_bytecode() -> list[str]:
    """Write the byte code of cpagent and of the libraries beside it (site-packages) where
    it is missing or stale, as the Debian package's postinst does at install, so that the
    agent measured does not compile its modules from source at every start: a source tree
    run with PYTHONDONTWRITEBYTECODE, or never run, has none. Returns the directories."""
    import cpagent

    dirs = [str(Path(cpagent.__file__).parent)]
    dirs += sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    for directory in dirs:
        compileall.compile_dir(directory, quiet=1, workers=1)
    return dirs
