"""The agent does not load what a charger may never use: ``cryptography`` (some 10 MB of
memory) comes in only with TLS profiles, certificates or signed firmware; python-pkcs11
never, as the token helper process is the one that uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def loaded_packages(*packages: str, importing: str) -> list[str]:
    """The modules of ``packages`` that a fresh interpreter has loaded after ``importing``."""
    code = (
        f"import json, sys, {importing};"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_the_agent_starts_without_cryptography() -> None:
    agent = "cpagent.agent, cpagent.cli, cpagent.protocol.v16.charge_point"
    assert loaded_packages("cryptography", "pkcs11", importing=agent) == []


def test_the_certificate_store_does_not_load_python_pkcs11() -> None:
    store = "cpagent.security.pki, cpagent.security.keys, cpagent.security.connection"
    loaded = loaded_packages("cryptography", "pkcs11", importing=store)
    assert "cryptography" in loaded
    assert not [name for name in loaded if name.startswith("pkcs11")]


def modules_after(code: str, prefix: str) -> list[str]:
    """The modules named ``prefix`` or under it that a fresh interpreter has loaded after
    running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules"
        f" if m == {prefix!r} or m.startswith({prefix + '.'!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def _parse(version: str, table: str) -> str:
    return (
        "from cpagent.config import parse_config, summary\n"
        "config = parse_config({'charge_point': {'id': 'C', 'vendor': 'V', 'model': 'M'},"
        f" 'csms': {{'url': 'ws://127.0.0.1:9/o', 'ocpp_version': {version!r}}}, {table}}})\n"
        "summary(config)"
    )


def test_a_16_config_does_not_load_the_201_device_model() -> None:
    """Reading and summing up a 1.6 config (check-config, the agent's start) leaves the 2.0.1
    device model, and the ocpp library's 2.0.1 modules, unloaded; a 2.0.1 config loads the
    device model, and a 2.0.1 config does not load the 1.6 key table."""
    ocpp16 = "'ocpp16': {'HeartbeatInterval': 60}"
    assert modules_after(_parse("1.6", ocpp16), "cpagent.protocol.v201") == []
    assert modules_after(_parse("1.6", ocpp16), "ocpp.v201") == []
    ocpp201 = "'ocpp201': {'OCPPCommCtrlr': {'HeartbeatInterval': 60}}"
    assert "cpagent.protocol.v201.device_model" in modules_after(
        _parse("2.0.1", ocpp201), "cpagent.protocol.v201"
    )
    assert modules_after(_parse("2.0.1", ocpp201), "cpagent.protocol.v16") == []


def _wired(version: str, table: str, tmp: str) -> str:
    """Code that builds an agent's pieces for ``version`` as ``cpagent run`` does."""
    return (
        "import tempfile\n"
        "from pathlib import Path\n"
        "from cpagent.agent import Agent\n"
        "from cpagent.config import parse_config\n"
        "from cpagent.hal.factory import build_hardware\n"
        "config = parse_config({'charge_point': {'id': 'C', 'vendor': 'V', 'model': 'M'},"
        f" 'csms': {{'url': 'ws://127.0.0.1:9/o', 'ocpp_version': {version!r}}},"
        f" 'storage': {{'data_dir': {tmp!r}}}, {table}}})\n"
        "agent = Agent(config)\n"
        "agent.store.open()\n"
        "agent._wire(build_hardware(config))\n"
        "agent.store.close()"
    )


def test_each_agent_loads_only_the_adapter_it_runs(tmp_path: Path) -> None:
    v16 = _wired("1.6", "'ocpp16': {}", str(tmp_path / "a"))
    assert "cpagent.protocol.v16.adapter" in modules_after(v16, "cpagent.protocol.v16")
    assert modules_after(v16, "cpagent.protocol.v201") == []
    v201 = _wired("2.0.1", "'ocpp201': {}", str(tmp_path / "b"))
    assert "cpagent.protocol.v201.adapter" in modules_after(v201, "cpagent.protocol.v201")
    assert modules_after(v201, "cpagent.protocol.v16") == []
    assert modules_after(v201, "ocpp.v16") == []


def loaded_after(code: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def under(modules: set[str], *prefixes: str) -> list[str]:
    """The ``modules`` that are one of ``prefixes`` or under one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


NEVER_ON_THE_AGENTS_PATH = (
    # The ocpp library's generic validator and what it brings: the agent validates with its
    # compiled schemas; the library's ChargePoint and dataclasses are what import it.
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "attr",
    "attrs",
    "rpds",
    "ocpp.messages",
    "ocpp.charge_point",
    "ocpp.v16",
    "ocpp.v201",
)
HARDWARE = (
    "cpagent.hal.hardware",
    "cpagent.hal.hardware_config",
    "cpagent.hal.gpio",
    "cpagent.hal.meter_maps",
    "cpagent.hal.modbus",
    "cpagent.hal.evse_board",
    "cpagent.hal.card_reader",
    "gpiozero",
    "serial",
    "pymodbus",
)


def test_a_simulated_agent_loads_no_generic_validator_and_no_hardware_driver(
    tmp_path: Path,
) -> None:
    """What ``cpagent run`` loads for a simulated charger: neither jsonschema (nor the
    ``ocpp`` modules that import it), nor the hardware backend and its config, nor the
    other OCPP version."""
    v16 = loaded_after(_wired("1.6", "'ocpp16': {}", str(tmp_path / "a")))
    assert "cpagent.protocol.v16.charge_point" in v16
    assert under(v16, *NEVER_ON_THE_AGENTS_PATH, *HARDWARE, "cpagent.protocol.v201") == []
    v201 = loaded_after(_wired("2.0.1", "'ocpp201': {}", str(tmp_path / "b")))
    assert "cpagent.protocol.v201.charge_point" in v201
    assert under(v201, *NEVER_ON_THE_AGENTS_PATH, *HARDWARE, "cpagent.protocol.v16") == []


def test_a_201_agent_loads_its_report_and_renewal_code_when_first_used(tmp_path: Path) -> None:
    """What the 2.0.1 agent needs only after its BootNotification (the NotifyReport parts of
    GetBaseReport and GetReport, the certificate renewal) is not loaded by its start-up;
    the integration tests that ask for reports and certificates load them."""
    v201 = loaded_after(_wired("2.0.1", "'ocpp201': {}", str(tmp_path / "b")))
    assert "cpagent.protocol.v201.charge_point" in v201
    late = ("cpagent.protocol.v201.reports", "cpagent.protocol.v201.certificate_renewal")
    assert under(v201, *late) == []


TRANSFERS = ("cpagent.transfer", "cpagent.diagnostics", "ftplib", "tarfile", "gzip")


def test_a_log_file_handler_loads_only_with_a_log_file() -> None:
    """``logging.handlers`` (with pickle) comes in only when ``[logging] file`` is set."""
    code = "from cpagent.runner import setup_logging\nsetup_logging('INFO')"
    assert under(loaded_after(code), "logging.handlers", "pickle") == []


def test_file_transfers_load_when_a_file_is_moved(tmp_path: Path) -> None:
    """The transfer and diagnostics code (and ftplib, tarfile, gzip) stay unloaded until a
    firmware download or a log upload happens."""
    assert under(loaded_after(_wired("1.6", "'ocpp16': {}", str(tmp_path / "a"))), *TRANSFERS) == []


def test_hardware_tables_are_read_by_the_hardware_config_module(tmp_path: Path) -> None:
    """A sim config with hardware tables (being prepared for the hardware backend) still has
    them checked, so the hardware config module loads then, and the drivers do not."""
    table = "'hal': {'backend': 'sim', 'connectors': {}}"
    loaded = loaded_after(_wired("1.6", table, str(tmp_path / "a")))
    assert "cpagent.hal.hardware_config" in loaded
    assert under(loaded, "cpagent.hal.hardware", "gpiozero", "serial", "pymodbus") == []


def test_the_version_is_read_without_importlib_metadata() -> None:
    assert under(loaded_after("import cpagent"), "importlib.metadata") == []
