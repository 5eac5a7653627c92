"""The TOML configuration file, read into frozen dataclasses.

Every option is read and checked here, once, at start-up: the rest of the agent
receives typed, bounded values and never looks at raw TOML. Validation collects
*every* problem before failing, so ``cpagent check-config`` can show an
installer all mistakes at once, one ``dotted.key: reason`` line each. Unknown
tables and keys are errors, not warnings: a misspelt option that silently keeps
its default is worse than a refusal to start. The one exception is a name in
``[ocpp16]`` that is no OCPP 1.6 key the agent knows: a key list taken from another
charger may hold vendor keys, so such a name is a warning (:attr:`Config.warnings`).

The tables of the OCPP versions (``[ocpp16]``, ``[ocpp201]``) belong to their adapters:
this module knows no protocol and asks :mod:`cpagent.protocol.tables` to judge the table
of the version ``[csms] ocpp_version`` selects. The other version's table is ignored with a
warning, so that a file can be switched between versions by one line.

Relative paths resolve against the config file's directory, so a config means
the same thing whatever the working directory of the process reading it.
``config/sim.toml`` documents every option with its default.
"""

from __future__ import annotations

import os
import string
import tomllib
import types
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpagent import __version__
from cpagent.configcheck import (
    Invalid,
    Table,
    flag,
    integer,
    nonempty_text,
    number_between,
    positive_number,
    text,
)
from cpagent.exc import ConfigError
from cpagent.protocol.tables import TABLES, VERSIONS, StationFacts, table_for_version

if TYPE_CHECKING:
    from cpagent.hal.hardware_config import HardwareConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ChargePointSection",
    "Config",
    "ControlSection",
    "CsmsSection",
    "FirmwareSection",
    "HalSection",
    "LoggingSection",
    "SimSection",
    "StorageSection",
    "default_config_path",
    "load_config",
    "parse_config",
    "summary",
]

DEFAULT_CONFIG_PATH = Path("/etc/cpagent/cpagent.toml")
CONFIG_ENV = "CPAGENT_CONFIG"

#: sockaddr_un.sun_path is 108 bytes on Linux (104 on BSDs); stay clear of both.
MAX_SOCKET_PATH_BYTES = 100

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The id is one URL path segment and the HTTP basic-auth user name: no separators, no
# percent sign (so it can be quoted without ambiguity), no whitespace.
_ID_FORBIDDEN = frozenset("/?#%")
_ID_CHARS = frozenset(string.printable) - frozenset(string.whitespace) - _ID_FORBIDDEN
_ID_MAX = 48


def default_config_path() -> Path:
    """``$CPAGENT_CONFIG`` if set and not empty, else :data:`DEFAULT_CONFIG_PATH`."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


@dataclass(frozen=True)
class ChargePointSection:
    id: str
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str
    connectors: int


@dataclass(frozen=True)
class CsmsSection:
    """Where and how to reach the CSMS; the websocket endpoint is ``<url>/<charge point id>``.

    ``password`` is kept out of ``repr`` so logging a config never leaks it.
    """

    url: str
    ocpp_version: str
    password: str | None = field(repr=False)
    reconnect_initial_s: float
    reconnect_max_s: float
    response_timeout_s: float
    boot_retry_s: int
    allow_basic_auth_without_tls: bool = False
    """Security profile 1 (basic auth over plain ws://) puts the password on the wire."""


@dataclass(frozen=True)
class TokenSettings:
    """The PKCS#11 token that holds the charge point's keys (``[security] pkcs11_*``).

    ``module`` is the token's PKCS#11 library (e.g. ``/usr/lib/softhsm/libsofthsm2.so``,
    ``/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so``), ``token`` its label and
    ``pin_file`` a file holding the user PIN on its first line, read at each use.
    """

    module: Path
    token: str
    pin_file: Path

    def describe(self) -> str:
        return f"PKCS#11 token {self.token!r} ({self.module})"


@dataclass(frozen=True)
class SecuritySection:
    """Certificates and the key provisioned at the factory, copied into the agent's
    certificate store (``data_dir/certs``) at start-up when it does not hold them yet.
    The CSMS manages them from then on (InstallCertificate, CertificateSigned).

    ``charge_point_key`` is a PEM file, or with ``token`` the ``pkcs11:`` URI of a key in
    that token. With ``token``, keys made for a CSR are made in the token."""

    csms_root_certificates: Path | None = None
    manufacturer_root_certificates: Path | None = None
    charge_point_certificate: Path | None = None
    charge_point_key: Path | str | None = None
    token: TokenSettings | None = None


@dataclass(frozen=True)
class StorageSection:
    data_dir: Path


RESTART_MAX_WAIT_S = 259200.0
"""72 h: a restart asked for when idle (``cpagent restart --when-idle``, after an upgrade)
never cuts a normal overnight session short."""
RESTART_MAX_WAIT_LIMIT_S = 7 * 86400.0


@dataclass(frozen=True)
class ControlSection:
    socket: Path
    restart_max_wait_s: float = RESTART_MAX_WAIT_S
    """How long a restart asked for when idle waits for running sessions to end before it
    restarts anyway, ending them; 0: without bound."""


@dataclass(frozen=True)
class SimSection:
    voltage_v: float
    phases: int
    ev_max_current_a: float
    ev_battery_wh: float
    ev_initial_soc: float
    max_current_a: float
    phase_switch: bool = False


HARDWARE_TABLES = ("buses", "meter_maps", "connectors", "card_reader")
"""The tables of ``[hal]`` that describe real devices (:mod:`cpagent.hal.hardware_config`)."""


@dataclass(frozen=True)
class HalSection:
    """``hardware`` is None only with the sim backend and none of :data:`HARDWARE_TABLES`
    in the file: a simulated charger then never loads the hardware modules."""

    backend: str
    sim: SimSection
    hardware: HardwareConfig | None


@dataclass(frozen=True)
class FirmwareSection:
    install_command: str
    install_timeout_s: float = 900.0
    max_download_mb: float = 512.0
    stall_timeout_s: float = 60.0
    """A download or upload that receives or sends nothing for this long fails."""
    diagnostics_http_method: str = "PUT"


@dataclass(frozen=True)
class LoggingSection:
    level: str
    file: Path | None = None
    """Also log here (rotated at 5 MB, 3 old files kept); GetDiagnostics reads it when the
    agent does not log to journald."""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration.

    ``ocpp16`` maps OCPP 1.6 key names (the spec's spelling) to canonical OCPP
    strings (initial values; a value the CSMS sets later wins); empty under 2.0.1.
    ``ocpp201`` is the validated ``[ocpp201]`` table as written, read-only, one mapping
    of variable keys to TOML values per component key: the adapter builds its device
    model with ``DeviceModel.from_config(connectors, config.ocpp201)``; empty under 1.6.
    ``source`` is the file it was read from, if any. ``warnings`` are what
    ``check-config`` shows and the agent logs at start without refusing the config, one
    ``dotted.key: reason`` line each.
    """

    charge_point: ChargePointSection
    csms: CsmsSection
    storage: StorageSection
    control: ControlSection
    hal: HalSection
    firmware: FirmwareSection
    logging: LoggingSection
    ocpp16: Mapping[str, str]
    source: Path | None
    security: SecuritySection = SecuritySection()
    warnings: tuple[str, ...] = ()
    ocpp201: Mapping[str, Mapping[str, object]] = field(
        default_factory=lambda: types.MappingProxyType({})
    )

    @property
    def endpoint(self) -> str:
        """The websocket URL the agent connects to."""
        return f"{self.csms.url}/{self.charge_point.id}"


def _charge_point_id(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _ID_MAX
        or any(char not in _ID_CHARS for char in value)
    ):
        raise Invalid(
            f"must be 1 to {_ID_MAX} printable ASCII characters"
            " without '/', '?', '#', '%' or whitespace"
        )
    return value


def _ws_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
        raise Invalid("must start with ws:// or wss://")
    url = value.rstrip("/")
    if any(char.isspace() for char in url):
        raise Invalid("must not contain whitespace")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as err:
        raise Invalid(f"is not a valid URL ({err})") from None
    if not parts.hostname:
        raise Invalid("must name a host")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise Invalid("must not have a query or fragment (the charge point id is appended)")
    return url


def _ocpp_version(value: object) -> str:
    if isinstance(value, str) and value in VERSIONS:
        return value
    raise Invalid("must be " + " or ".join(f'"{version}"' for version in VERSIONS))


def _backend(value: object) -> str:
    if value not in ("sim", "hardware"):
        raise Invalid('must be "sim" or "hardware"')
    return str(value)


def _phases(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 3):
        raise Invalid("must be 1 or 3")
    return value


def _http_method(value: object) -> str:
    if value not in ("PUT", "POST"):
        raise Invalid('must be "PUT" or "POST"')
    return str(value)


def _log_level(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise Invalid("must be one of " + ", ".join(LOG_LEVELS))
    return value.upper()


def _path(base_dir: Path | None) -> Callable[[object], Path]:
    def check(value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise Invalid("must be a non-empty path")
        base = base_dir if base_dir is not None else Path.cwd()
        # Lexical normalisation: "../demo-data" becomes a clean absolute path without
        # touching the file system (the directory may not exist yet).
        return Path(os.path.normpath(base / value))

    return check


def _socket_path(base_dir: Path | None) -> Callable[[object], Path]:
    to_path = _path(base_dir)

    def check(value: object) -> Path:
        path = to_path(value)
        size = len(os.fsencode(path))
        if size > MAX_SOCKET_PATH_BYTES:
            raise Invalid(
                f"must be at most {MAX_SOCKET_PATH_BYTES} bytes once resolved"
                f" (unix socket path limit); {path} is {size}"
            )
        return path

    return check


# -- sections ------------------------------------------------------------------------------


def _charge_point(table: Table) -> ChargePointSection | None:
    cp_id = table.get("id", _charge_point_id, None)
    vendor = table.get("vendor", text(1, 20), None)
    model = table.get("model", text(1, 20), None)
    serial_ok, serial = table.optional("serial_number", text(1, 25))
    firmware = table.get("firmware_version", text(1, 50), __version__)
    connectors = table.get("connectors", integer(1, 32), 1)
    table.done()
    if cp_id is None or vendor is None or model is None or not serial_ok:
        return None
    if firmware is None or connectors is None:
        return None
    return ChargePointSection(cp_id, vendor, model, serial, firmware, connectors)


def _csms(table: Table) -> CsmsSection | None:
    url = table.get("url", _ws_url, None)
    version = table.get("ocpp_version", _ocpp_version, "1.6")
    password_ok, password = table.optional("password", text(1, 40))
    initial = table.get("reconnect_initial_s", positive_number, 1.0)
    maximum = table.get("reconnect_max_s", positive_number, 60.0)
    if initial is not None and maximum is not None and maximum < initial:
        table.problem("reconnect_max_s", f"must be >= csms.reconnect_initial_s ({initial:g})")
        maximum = None
    timeout = table.get("response_timeout_s", positive_number, 30.0)
    boot_retry = table.get("boot_retry_s", integer(1), 30)
    plain_auth = table.get("allow_basic_auth_without_tls", flag, False)
    table.done()
    if url is None or version is None or not password_ok:
        return None
    if initial is None or maximum is None or timeout is None or boot_retry is None:
        return None
    if plain_auth is None:
        return None
    return CsmsSection(url, version, password, initial, maximum, timeout, boot_retry, plain_auth)


def security_warnings(security: SecuritySection) -> list[str]:
    """Provisioned files this machine lacks (check-config on the target): not an error, as
    the store may already hold what they would seed, but worth knowing before the start."""
    paths = {name: value for name, value in vars(security).items() if isinstance(value, Path)}
    if security.token is not None:
        paths["pkcs11_module"] = security.token.module
        paths["pkcs11_pin_file"] = security.token.pin_file
    return [
        f"security.{name}: {path} does not exist on this machine"
        for name, path in paths.items()
        if not path.exists()
    ]


def _security(table: Table, base_dir: Path | None) -> SecuritySection | None:
    path = _path(base_dir)
    _, csms_roots = table.optional("csms_root_certificates", path)
    _, manufacturer_roots = table.optional("manufacturer_root_certificates", path)
    cert_valid, cert = table.optional("charge_point_certificate", path)
    _, module = table.optional("pkcs11_module", path)
    _, token_label = table.optional("pkcs11_token", text(1, 32))
    _, pin_file = table.optional("pkcs11_pin_file", path)
    token = None
    if module and token_label and pin_file:
        token = TokenSettings(module, token_label, pin_file)
    elif module or token_label or pin_file:
        for name, value in (
            ("pkcs11_module", module),
            ("pkcs11_token", token_label),
            ("pkcs11_pin_file", pin_file),
        ):
            if value is None:
                table.problem(name, "pkcs11_module, pkcs11_token and pkcs11_pin_file go together")

    def key_check(value: object) -> Path | str:
        if isinstance(value, str) and value.startswith("pkcs11:"):
            if token is None:
                raise Invalid("a pkcs11: URI needs pkcs11_module, pkcs11_token, pkcs11_pin_file")
            return value
        return path(value)

    key_valid, key = table.optional("charge_point_key", key_check)
    if key_valid and cert_valid and (cert is None) != (key is None):
        missing = "charge_point_key" if key is None else "charge_point_certificate"
        table.problem(missing, "charge_point_certificate and charge_point_key go together")
    table.done()
    return SecuritySection(csms_roots, manufacturer_roots, cert, key, token)


def _sim(table: Table) -> SimSection | None:
    voltage = table.get("voltage_v", number_between(100, 400), 230.0)
    phases = table.get("phases", _phases, 3)
    ev_max = table.get("ev_max_current_a", number_between(6, 80), 32.0)
    battery = table.get("ev_battery_wh", positive_number, 60000.0)
    soc = table.get("ev_initial_soc", number_between(0, 100), 20.0)
    max_current = table.get("max_current_a", number_between(6, 80), 32.0)
    switch = table.get("phase_switch", flag, False)
    if switch and phases != 3:
        table.problem("phase_switch", "a phase switch needs phases = 3")
    table.done()
    if voltage is None or phases is None or ev_max is None:
        return None
    if battery is None or soc is None or max_current is None or switch is None:
        return None
    return SimSection(voltage, phases, ev_max, battery, soc, max_current, switch)


def _hal(table: Table, connectors: int | None) -> HalSection | None:
    backend = table.get("backend", _backend, "sim")
    sim = _sim(table.table("sim"))
    hardware = None
    if backend != "sim" or any(table.has(name) for name in HARDWARE_TABLES):
        # Checked even for the simulator: a config being prepared for the hardware backend.
        from cpagent.hal.hardware_config import parse_hardware

        hardware = parse_hardware(table, connectors, required=backend == "hardware")
    table.done()
    if backend is None or sim is None:
        return None
    return HalSection(backend, sim, hardware)


def _has_phase_switch(hal: HalSection) -> bool:
    if hal.backend == "sim":
        return hal.sim.phase_switch
    return hal.hardware is not None and any(
        c.phase_switch is not None for c in hal.hardware.connectors
    )


def _version_written(data: Mapping[str, object]) -> str | None:
    """``[csms] ocpp_version`` as written when it is a valid one (the default if absent),
    else None; known even when another key of ``[csms]`` is wrong."""
    csms = data.get("csms")
    if not isinstance(csms, Mapping):
        return None
    version = csms.get("ocpp_version", VERSIONS[0])
    return version if isinstance(version, str) and version in VERSIONS else None


def _protocol_tables(
    root: Table,
    version: str | None,
    facts: StationFacts,
    problems: list[str],
    warnings: list[str],
) -> dict[str, Mapping[str, object]]:
    """The values of each protocol table, judged by its adapter (:mod:`cpagent.protocol.tables`).

    The table of ``version`` is judged, present or not (its values may depend on the
    station); the other version's, when present, is ignored with a warning. When the
    version itself is wrong (None), every table present is judged, so that all problems
    show at once.
    """
    values: dict[str, Mapping[str, object]] = {}
    for protocol in TABLES:
        in_force = version == protocol.version
        if version is not None and not in_force:
            if root.has(protocol.name):
                root.table(protocol.name)  # marked as read: ignored, not unknown
                warnings.append(
                    f"{protocol.name}: ignored, as csms.ocpp_version is"
                    f' "{version}", not "{protocol.version}"'
                )
            continue
        if not in_force and not root.has(protocol.name):
            continue
        table = root.table(protocol.name)
        judged = protocol.judge(table.raw(), facts)
        problems.extend(judged.problems)
        warnings.extend(judged.warnings)
        values[protocol.name] = judged.values
    return values


def _id_fits_basic_auth(
    charge_point: ChargePointSection | None, csms: CsmsSection | None, problems: list[str]
) -> None:
    # RFC 7617: the user-id of HTTP basic auth cannot contain ':'.
    if charge_point and csms and csms.password is not None and ":" in charge_point.id:
        problems.append("charge_point.id: must not contain ':' when csms.password is set")


def parse_config(
    data: Mapping[str, object], *, source: Path | None = None, base_dir: Path | None = None
) -> Config:
    """Validate parsed TOML ``data`` into a :class:`Config`.

    Relative paths resolve against ``base_dir`` (the working directory if
    ``None``). Raises :class:`ConfigError` listing every problem found.
    """
    problems: list[str] = []
    root = Table(data, "", problems)
    charge_point = _charge_point(root.table("charge_point"))
    csms = _csms(root.table("csms"))
    _id_fits_basic_auth(charge_point, csms, problems)

    storage_table = root.table("storage")
    data_dir = storage_table.get("data_dir", _path(base_dir), Path("/var/lib/cpagent"))
    storage_table.done()

    control_table = root.table("control")
    socket = control_table.get("socket", _socket_path(base_dir), Path("/run/cpagent/control.sock"))
    restart_wait = control_table.get(
        "restart_max_wait_s", number_between(0, RESTART_MAX_WAIT_LIMIT_S), RESTART_MAX_WAIT_S
    )
    control_table.done()

    hal = _hal(root.table("hal"), charge_point.connectors if charge_point else None)

    firmware_table = root.table("firmware")
    install_command = firmware_table.get(
        "install_command", nonempty_text, "/usr/lib/cpagent/install-firmware"
    )
    install_timeout = firmware_table.get("install_timeout_s", number_between(1, 86400), 900.0)
    max_download = firmware_table.get("max_download_mb", number_between(1, 65536), 512.0)
    stall = firmware_table.get("stall_timeout_s", number_between(0.1, 3600), 60.0)
    http_method = firmware_table.get("diagnostics_http_method", _http_method, "PUT")
    firmware_table.done()

    logging_table = root.table("logging")
    level = logging_table.get("level", _log_level, "INFO")
    _, log_file = logging_table.optional("file", _path(base_dir))
    logging_table.done()

    facts = StationFacts(
        connectors=charge_point.connectors if charge_point is not None else None,
        phase_switch=_has_phase_switch(hal) if hal is not None else None,
    )
    warnings: list[str] = []
    protocols = _protocol_tables(root, _version_written(data), facts, problems, warnings)

    security = _security(root.table("security"), base_dir)

    root.done()
    if problems:
        raise ConfigError(problems)
    # With no problem recorded every value was built; the asserts only narrow the types.
    assert charge_point is not None and csms is not None and hal is not None
    assert data_dir is not None and socket is not None and restart_wait is not None
    assert install_command is not None and level is not None
    assert install_timeout is not None and max_download is not None
    assert stall is not None and http_method is not None
    return Config(
        charge_point=charge_point,
        csms=csms,
        storage=StorageSection(data_dir),
        control=ControlSection(socket, restart_wait),
        hal=hal,
        firmware=FirmwareSection(
            install_command, install_timeout, max_download, stall, http_method
        ),
        logging=LoggingSection(level, log_file),
        ocpp16=_strings(protocols.get("ocpp16", {})),
        source=source,
        security=security or SecuritySection(),
        warnings=tuple(warnings),
        ocpp201=_tables(protocols.get("ocpp201", {})),
    )


def _strings(values: Mapping[str, object]) -> Mapping[str, str]:
    """The ``[ocpp16]`` values as the 1.6 adapter takes them: canonical OCPP strings."""
    assert all(isinstance(value, str) for value in values.values())
    return types.MappingProxyType({name: str(value) for name, value in values.items()})


def _tables(values: Mapping[str, object]) -> Mapping[str, Mapping[str, object]]:
    """The ``[ocpp201]`` values as the 2.0.1 adapter takes them: a table per component."""
    tables: dict[str, Mapping[str, object]] = {}
    for key, table in values.items():
        assert isinstance(table, Mapping)
        tables[key] = table
    return types.MappingProxyType(tables)


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at ``path``.

    Raises :class:`ConfigError` listing every problem; a file that is missing,
    unreadable or not valid TOML is one problem naming the file.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text ({err.reason})"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{path}: invalid TOML: {err}"]) from None
    absolute = Path(os.path.normpath(path.absolute()))
    return parse_config(data, source=absolute, base_dir=absolute.parent)


def _restart_wait(seconds: float) -> str:
    """How long ``cpagent restart --when-idle`` waits, for check-config's summary."""
    if seconds == 0:
        return "for running sessions to end, without bound"
    return f"at most {seconds:g} s ({seconds / 3600:.4g} h) for running sessions to end"


def summary(config: Config) -> str:
    """A few lines describing ``config``, printed by ``cpagent check-config`` on success."""
    cp = config.charge_point
    csms = config.csms
    auth = "basic auth" if csms.password is not None else "no password"
    plural = "s" if cp.connectors != 1 else ""
    devices: list[str] = []
    if config.hal.hardware is not None:
        from cpagent.hal.hardware_config import describe

        devices = describe(config.hal.hardware)
    lines = [
        f"config:         {config.source if config.source else '(not from a file)'}",
        f"charge point:   {cp.id} ({cp.vendor} {cp.model}, firmware {cp.firmware_version},"
        f" {cp.connectors} connector{plural})",
        f"csms:           {config.endpoint} (OCPP {csms.ocpp_version}, {auth})",
        f"data dir:       {config.storage.data_dir}",
        f"control socket: {config.control.socket}",
        f"restart wait:   {_restart_wait(config.control.restart_max_wait_s)}",
        f"hardware:       {config.hal.backend}",
        *(f"  {line}" for line in devices),
        f"log level:      {config.logging.level}",
    ]
    if config.security.token is not None:
        lines.append(f"keys:           in {config.security.token.describe()}")
    protocol = table_for_version(csms.ocpp_version)
    values = config.ocpp16 if protocol.name == "ocpp16" else config.ocpp201
    facts = StationFacts(cp.connectors, _has_phase_switch(config.hal))
    lines += protocol.describe(values, facts)
    return "\n".join(lines)
