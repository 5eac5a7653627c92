"""The TOML configuration file, read into frozen dataclasses.

Every option is read and checked here, once, at start-up: the rest of the agent
receives typed, bounded values and never looks at raw TOML. Validation collects
*every* problem before failing, so ``cpagent check-config`` can show an
installer all mistakes at once, one ``dotted.key: reason`` line each. Unknown
tables and keys are errors, not warnings: a misspelt option that silently keeps
its default is worse than a refusal to start.

Relative paths resolve against the config file's directory, so a config means
the same thing whatever the working directory of the process reading it.
``config/sim.toml`` documents every option with its default.
"""

from __future__ import annotations

import math
import os
import string
import tomllib
import types
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cpagent import __version__
from cpagent.exc import ConfigError
from cpagent.protocol.v16.config_keys import KEYS, normalize

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


@dataclass(frozen=True)
class StorageSection:
    data_dir: Path


@dataclass(frozen=True)
class ControlSection:
    socket: Path


@dataclass(frozen=True)
class SimSection:
    voltage_v: float
    phases: int
    ev_max_current_a: float
    ev_battery_wh: float
    ev_initial_soc: float
    max_current_a: float


@dataclass(frozen=True)
class HalSection:
    backend: str
    sim: SimSection


@dataclass(frozen=True)
class FirmwareSection:
    install_command: str


@dataclass(frozen=True)
class LoggingSection:
    level: str


@dataclass(frozen=True)
class Config:
    """The whole validated configuration.

    ``ocpp16`` maps OCPP 1.6 key names to canonical OCPP strings (initial
    values; a value the CSMS sets later wins). ``source`` is the file it was
    read from, if any.
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

    @property
    def endpoint(self) -> str:
        """The websocket URL the agent connects to."""
        return f"{self.csms.url}/{self.charge_point.id}"


class _Invalid(Exception):
    """Internal: a value failed its check; the message is the reason phrase."""


T = TypeVar("T")
_MISSING = object()


class _Table:
    """One TOML table being read: hands out checked values, records problems.

    Each getter returns the checked value, or ``None`` when the value is missing
    and required, or invalid; the problem has then been recorded under the
    key's dotted name. :meth:`done` reports every key nobody asked for.
    """

    def __init__(self, data: object, prefix: str, problems: list[str]) -> None:
        self._prefix = prefix
        self._problems = problems
        self._seen: set[str] = set()
        self._data: Mapping[str, object]
        if data is _MISSING:
            self._data = {}
        elif isinstance(data, Mapping):
            self._data = data
        else:
            self._data = {}
            problems.append(f"{prefix}: must be a table")

    def path(self, key: str) -> str:
        return f"{self._prefix}.{key}" if self._prefix else key

    def problem(self, key: str, reason: str) -> None:
        self._problems.append(f"{self.path(key)}: {reason}")

    def table(self, key: str) -> _Table:
        self._seen.add(key)
        return _Table(self._data.get(key, _MISSING), self.path(key), self._problems)

    def raw(self) -> Mapping[str, object]:
        """The table's entries, all marked as seen; for tables with open-ended keys."""
        self._seen.update(self._data)
        return self._data

    def get(self, key: str, check: Callable[[object], T], default: T | None) -> T | None:
        """Check ``key`` with ``check``; a missing key gives ``default`` (``None`` = required)."""
        self._seen.add(key)
        if key not in self._data:
            if default is None:
                self.problem(key, "required")
            return default
        try:
            return check(self._data[key])
        except _Invalid as err:
            self.problem(key, str(err))
            return None

    def optional(self, key: str, check: Callable[[object], T]) -> tuple[bool, T | None]:
        """Check an optional ``key`` without a default: (valid, value or None when absent)."""
        self._seen.add(key)
        if key not in self._data:
            return True, None
        try:
            return True, check(self._data[key])
        except _Invalid as err:
            self.problem(key, str(err))
            return False, None

    def done(self) -> None:
        for key in self._data:
            if key not in self._seen:
                self.problem(key, "unknown key")


# -- value checks: each returns the typed value or raises _Invalid(reason) ---------------


def _text(low: int, high: int) -> Callable[[object], str]:
    reason = f"must be {low} to {high} characters" if low else f"must be at most {high} characters"

    def check(value: object) -> str:
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise _Invalid(reason)
        return value

    return check


def _nonempty_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be a non-empty string")
    return value


def _integer(low: int, high: int | None = None) -> Callable[[object], int]:
    reason = (
        f"must be an integer between {low} and {high}"
        if high is not None
        else f"must be an integer >= {low}"
    )

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(reason)
        if value < low or (high is not None and value > high):
            raise _Invalid(reason)
        return value

    return check


def _as_float(value: object, reason: str) -> float:
    """A finite number; TOML ints are fine for float fields, bools never are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(reason)
    number = float(value)
    if not math.isfinite(number):
        raise _Invalid(reason)
    return number


def _number_between(low: float, high: float) -> Callable[[object], float]:
    reason = f"must be a number between {low:g} and {high:g}"

    def check(value: object) -> float:
        number = _as_float(value, reason)
        if not low <= number <= high:
            raise _Invalid(reason)
        return number

    return check


def _positive_number(value: object) -> float:
    reason = "must be a number > 0"
    number = _as_float(value, reason)
    if number <= 0:
        raise _Invalid(reason)
    return number


def _charge_point_id(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= _ID_MAX
        or any(char not in _ID_CHARS for char in value)
    ):
        raise _Invalid(
            f"must be 1 to {_ID_MAX} printable ASCII characters"
            " without '/', '?', '#', '%' or whitespace"
        )
    return value


def _ws_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
        raise _Invalid("must start with ws:// or wss://")
    url = value.rstrip("/")
    if any(char.isspace() for char in url):
        raise _Invalid("must not contain whitespace")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as err:
        raise _Invalid(f"is not a valid URL ({err})") from None
    if not parts.hostname:
        raise _Invalid("must name a host")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise _Invalid("must not have a query or fragment (the charge point id is appended)")
    return url


def _ocpp_version(value: object) -> str:
    if value == "1.6":
        return "1.6"
    if value == "2.0.1":
        raise _Invalid("OCPP 2.0.1 is not supported yet")
    raise _Invalid('must be "1.6"')


def _backend(value: object) -> str:
    if value == "sim":
        return "sim"
    if value == "hardware":
        raise _Invalid('hardware backends are not available in this version; use "sim"')
    raise _Invalid('must be "sim" or "hardware"')


def _phases(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 3):
        raise _Invalid("must be 1 or 3")
    return value


def _log_level(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise _Invalid("must be one of " + ", ".join(LOG_LEVELS))
    return value.upper()


def _path(base_dir: Path | None) -> Callable[[object], Path]:
    def check(value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise _Invalid("must be a non-empty path")
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
            raise _Invalid(
                f"must be at most {MAX_SOCKET_PATH_BYTES} bytes once resolved"
                f" (unix socket path limit); {path} is {size}"
            )
        return path

    return check


# -- sections ------------------------------------------------------------------------------


def _charge_point(table: _Table) -> ChargePointSection | None:
    cp_id = table.get("id", _charge_point_id, None)
    vendor = table.get("vendor", _text(1, 20), None)
    model = table.get("model", _text(1, 20), None)
    serial_ok, serial = table.optional("serial_number", _text(1, 25))
    firmware = table.get("firmware_version", _text(1, 50), __version__)
    connectors = table.get("connectors", _integer(1, 32), 1)
    table.done()
    if cp_id is None or vendor is None or model is None or not serial_ok:
        return None
    if firmware is None or connectors is None:
        return None
    return ChargePointSection(cp_id, vendor, model, serial, firmware, connectors)


def _csms(table: _Table) -> CsmsSection | None:
    url = table.get("url", _ws_url, None)
    version = table.get("ocpp_version", _ocpp_version, "1.6")
    password_ok, password = table.optional("password", _text(1, 40))
    initial = table.get("reconnect_initial_s", _positive_number, 1.0)
    maximum = table.get("reconnect_max_s", _positive_number, 60.0)
    if initial is not None and maximum is not None and maximum < initial:
        table.problem("reconnect_max_s", f"must be >= csms.reconnect_initial_s ({initial:g})")
        maximum = None
    timeout = table.get("response_timeout_s", _positive_number, 30.0)
    boot_retry = table.get("boot_retry_s", _integer(1), 30)
    table.done()
    if url is None or version is None or not password_ok:
        return None
    if initial is None or maximum is None or timeout is None or boot_retry is None:
        return None
    return CsmsSection(url, version, password, initial, maximum, timeout, boot_retry)


def _sim(table: _Table) -> SimSection | None:
    voltage = table.get("voltage_v", _number_between(100, 400), 230.0)
    phases = table.get("phases", _phases, 3)
    ev_max = table.get("ev_max_current_a", _number_between(6, 80), 32.0)
    battery = table.get("ev_battery_wh", _positive_number, 60000.0)
    soc = table.get("ev_initial_soc", _number_between(0, 100), 20.0)
    max_current = table.get("max_current_a", _number_between(6, 80), 32.0)
    table.done()
    if voltage is None or phases is None or ev_max is None:
        return None
    if battery is None or soc is None or max_current is None:
        return None
    return SimSection(voltage, phases, ev_max, battery, soc, max_current)


def _hal(table: _Table) -> HalSection | None:
    backend = table.get("backend", _backend, "sim")
    sim = _sim(table.table("sim"))
    table.done()
    if backend is None or sim is None:
        return None
    return HalSection(backend, sim)


def _ocpp16(table: _Table) -> Mapping[str, str]:
    values: dict[str, str] = {}
    for name, value in table.raw().items():
        spec = KEYS.get(name)
        if spec is None:
            reason = "unknown OCPP 1.6 configuration key"
            matches = [key for key in KEYS if key.lower() == name.lower()]
            if matches:
                reason += f" (did you mean {matches[0]}?)"
            table.problem(name, reason)
        elif not spec.writable:
            table.problem(name, "read-only; the agent sets it")
        else:
            try:
                values[name] = normalize(spec, value)
            except ValueError as err:
                table.problem(name, str(err))
    return types.MappingProxyType(values)


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
    root = _Table(data, "", problems)
    charge_point = _charge_point(root.table("charge_point"))
    csms = _csms(root.table("csms"))
    _id_fits_basic_auth(charge_point, csms, problems)

    storage_table = root.table("storage")
    data_dir = storage_table.get("data_dir", _path(base_dir), Path("/var/lib/cpagent"))
    storage_table.done()

    control_table = root.table("control")
    socket = control_table.get("socket", _socket_path(base_dir), Path("/run/cpagent/control.sock"))
    control_table.done()

    hal = _hal(root.table("hal"))

    firmware_table = root.table("firmware")
    install_command = firmware_table.get(
        "install_command", _nonempty_text, "/usr/lib/cpagent/install-firmware"
    )
    firmware_table.done()

    logging_table = root.table("logging")
    level = logging_table.get("level", _log_level, "INFO")
    logging_table.done()

    ocpp16_table = root.table("ocpp16")
    ocpp16 = _ocpp16(ocpp16_table)
    ocpp16_table.done()

    root.done()
    if problems:
        raise ConfigError(problems)
    # With no problem recorded every value was built; the asserts only narrow the types.
    assert charge_point is not None and csms is not None and hal is not None
    assert data_dir is not None and socket is not None
    assert install_command is not None and level is not None
    return Config(
        charge_point=charge_point,
        csms=csms,
        storage=StorageSection(data_dir),
        control=ControlSection(socket),
        hal=hal,
        firmware=FirmwareSection(install_command),
        logging=LoggingSection(level),
        ocpp16=ocpp16,
        source=source,
    )


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


def summary(config: Config) -> str:
    """A few lines describing ``config``, printed by ``cpagent check-config`` on success."""
    cp = config.charge_point
    csms = config.csms
    auth = "basic auth" if csms.password is not None else "no password"
    plural = "s" if cp.connectors != 1 else ""
    lines = [
        f"config:         {config.source if config.source else '(not from a file)'}",
        f"charge point:   {cp.id} ({cp.vendor} {cp.model}, firmware {cp.firmware_version},"
        f" {cp.connectors} connector{plural})",
        f"csms:           {config.endpoint} (OCPP {csms.ocpp_version}, {auth})",
        f"data dir:       {config.storage.data_dir}",
        f"control socket: {config.control.socket}",
        f"hardware:       {config.hal.backend}",
        f"log level:      {config.logging.level}",
    ]
    if config.ocpp16:
        keys = ", ".join(f"{name}={value}" for name, value in config.ocpp16.items())
        lines.append(f"ocpp16:         {keys}")
    return "\n".join(lines)
