"""The ``[hal]`` tables that describe real hardware: buses, meters, boards, pins, reader.

A manufacturer wires a charger by writing these tables, so every mistake that
can be found without the hardware is found here, by ``cpagent check-config``:
unknown keys, a meter model that does not exist, a user meter map that does not
decode, a bus nobody defined, two devices with one Modbus id on one bus, a GPIO
pin used twice (under any of its names), a connector without a meter or pilot.
What can only be checked on the target (does ``/dev/ttyUSB0`` exist here?) is a
warning from :func:`device_warnings`, not an error, so a config can be prepared
on a laptop.

The layout, with every default, is documented in ``config/pi-sdm630-evse-din.toml``::

    [hal.buses.NAME]            # a Modbus RTU line (port = ...) or TCP endpoint (host = ...)
    [hal.meter_maps.NAME]       # a user register map, see cpagent.hal.meter_maps.parse_map
    [hal.connectors.N]          # one per connector, N = 1..charge_point.connectors
    [hal.connectors.N.meter]    # required: bus, model, device_id
    [hal.connectors.N.pilot]    # required: the EVSE board (board, bus, device_id)
    [hal.connectors.N.contactor] [hal.connectors.N.lock] [hal.connectors.N.phase_switch]
    [hal.connectors.N.led]      # optional GPIO devices
    [hal.card_reader]           # optional serial RFID reader
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cpagent.configcheck import Invalid, Table, flag, integer, nonempty_text, number_between
from cpagent.hal.gpio import validate_pin
from cpagent.hal.meter_maps import MAPS, MeterMap, parse_map

MODEL_ALIASES = {"sdm72": "sdm630", "abb_b24": "abb_b23", "em330": "em340"}
"""Meters that share a shipped map under another name."""

BOARDS = ("evse-din", "phoenix")
BOARD_WRITE_FUNCTIONS = {"evse-din": 16, "phoenix": 6}
"""The write function code per board unless configured: what evcc and openWB use for
EVSE-DIN (FC16; some boards answer FC06 with exception 1), what Phoenix's manual lists."""
READER_PROTOCOLS = ("line", "rdm6300")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PULLS = ("none", "up", "down")


@dataclass(frozen=True)
class SerialBusConfig:
    """A Modbus RTU line (RS-485 adapter or UART)."""

    name: str
    port: str
    baudrate: int
    parity: str
    stopbits: int
    timeout_s: float
    gap_s: float

    def describe(self) -> str:
        return f"{self.port} {self.baudrate} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True)
class TcpBusConfig:
    """A Modbus TCP endpoint: a meter with Ethernet, or an RTU gateway."""

    name: str
    host: str
    port: int
    timeout_s: float
    gap_s: float

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


BusConfig = SerialBusConfig | TcpBusConfig


@dataclass(frozen=True)
class MeterConfig:
    bus: str
    model: str
    map: MeterMap
    device_id: int
    retries: int


@dataclass(frozen=True)
class BoardConfig:
    """The EVSE controller board that makes the pilot signal of one connector."""

    board: Literal["evse-din", "phoenix"]
    bus: str
    device_id: int
    retries: int
    state_poll_s: float
    write_function: int
    """6 or 16: how registers are written (the other is tried on exception 1)."""


@dataclass(frozen=True)
class InputPinConfig:
    """A feedback contact; ``active_high`` says which level means closed/locked."""

    pin: str
    active_high: bool
    pull: Literal["none", "up", "down"]


@dataclass(frozen=True)
class RelayConfig:
    """An output that moves something (contactor, cable lock), optionally with a feedback
    contact saying where it really is."""

    pin: str
    active_high: bool
    feedback: InputPinConfig | None
    settle_s: float


@dataclass(frozen=True)
class PhaseSwitchConfig:
    pin: str
    active_high: bool
    three_phase_when_active: bool
    pilot_interrupt_pin: str | None
    pilot_interrupt_active_high: bool
    interrupt_s: float


@dataclass(frozen=True)
class LedConfig:
    pin: str
    active_high: bool


@dataclass(frozen=True)
class ConnectorConfig:
    connector_id: int
    phases: int
    max_current_a: float
    poll_interval_s: float
    meter: MeterConfig
    pilot: BoardConfig
    contactor: RelayConfig | None
    lock: RelayConfig | None
    phase_switch: PhaseSwitchConfig | None
    led: LedConfig | None


@dataclass(frozen=True)
class ReaderConfig:
    port: str
    protocol: Literal["line", "rdm6300"]
    baudrate: int
    repeat_suppress_s: float


@dataclass(frozen=True)
class HardwareConfig:
    buses: Mapping[str, BusConfig]
    connectors: tuple[ConnectorConfig, ...]
    card_reader: ReaderConfig | None

    def pins(self) -> list[str]:
        """Every GPIO pin in use (canonical names)."""
        pins: list[str] = []
        for c in self.connectors:
            for device in (c.contactor, c.lock):
                if device is not None:
                    pins.append(device.pin)
                    if device.feedback is not None:
                        pins.append(device.feedback.pin)
            if c.phase_switch is not None:
                pins.append(c.phase_switch.pin)
                if c.phase_switch.pilot_interrupt_pin is not None:
                    pins.append(c.phase_switch.pilot_interrupt_pin)
            if c.led is not None:
                pins.append(c.led.pin)
        return pins


EMPTY = HardwareConfig(types.MappingProxyType({}), (), None)


# -- value checks ----------------------------------------------------------------------------


def pin_name(value: object) -> str:
    """A gpiozero pin spec in its canonical BCM form ("GPIO17"), so one pin has one name."""
    try:
        return validate_pin(value)
    except ValueError as err:
        raise Invalid(str(err)) from None


def _serial_port(value: object) -> str:
    if not isinstance(value, str) or not (value.startswith("/") or "://" in value):
        raise Invalid('must be a device path like "/dev/ttyUSB0" (or a pyserial URL)')
    return value


def _host(value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() or c == "/" for c in value):
        raise Invalid("must be a host name or IP address")
    return value.strip("[]")


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    reason = "must be one of " + ", ".join(f'"{o}"' for o in options)

    def check(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise Invalid(reason)
        return value.lower()

    return check


def _one_of(options: tuple[int, ...]) -> Callable[[object], int]:
    reason = "must be one of " + ", ".join(map(str, options))

    def check(value: object) -> int:
        if isinstance(value, bool) or value not in options:
            raise Invalid(reason)
        assert isinstance(value, int)
        return value

    return check


def _parity(value: object) -> str:
    names = {"n": "N", "none": "N", "e": "E", "even": "E", "o": "O", "odd": "O"}
    if not isinstance(value, str) or value.lower() not in names:
        raise Invalid('must be "N", "E" or "O"')
    return names[value.lower()]


# -- tables ------------------------------------------------------------------------------


def _bus(table: Table, name: str) -> BusConfig | None:
    timeout = table.get("timeout_s", number_between(0.05, 10), 0.5)
    gap = table.get("gap_s", number_between(0, 2), 0.0)
    if table.has("host"):  # TCP: host and a port number; RTU: a serial port path
        host = table.get("host", _host, None)
        port = table.get("port", integer(1, 65535), 502)
        table.done()
        if host is None or port is None or timeout is None or gap is None:
            return None
        return TcpBusConfig(name, host, port, timeout, gap)
    device = table.get("port", _serial_port, None)
    baudrate = table.get("baudrate", _one_of(BAUDRATES), 9600)
    parity = table.get("parity", _parity, "N")
    stopbits = table.get("stopbits", _one_of((1, 2)), 1)
    table.done()
    if device is None or baudrate is None or parity is None or stopbits is None:
        return None
    if timeout is None or gap is None:
        return None
    return SerialBusConfig(name, device, baudrate, parity, stopbits, timeout, gap)


def _user_maps(table: Table) -> dict[str, MeterMap]:
    maps: dict[str, MeterMap] = {}
    for name, data in table.raw().items():
        if name in MAPS or name in MODEL_ALIASES:
            table.problem(name, "a shipped meter map has this name; choose another")
            continue
        if not isinstance(data, Mapping):
            table.problem(name, "must be a table")
            continue
        try:
            maps[name] = parse_map({"name": name, **data})
        except ValueError as err:
            key, _, reason = str(err).partition(": ")  # parse_map names the offending key first
            table.table(name).problem(key, reason)
    return maps


def _input_pin(table: Table, prefix: str) -> InputPinConfig | None:
    ok, pin = table.optional(f"{prefix}pin", pin_name)
    active_high = table.get(f"{prefix}active_high", flag, True)
    pull = table.get(f"{prefix}pull", _choice(PULLS), "none")
    if not ok or pin is None or active_high is None or pull is None:
        return None
    return InputPinConfig(pin, active_high, pull)  # type: ignore[arg-type]


def _relay(table: Table, settle_s: float) -> RelayConfig | None:
    pin = table.get("pin", pin_name, None)
    active_high = table.get("active_high", flag, True)
    feedback = _input_pin(table, "feedback_")
    settle = table.get("settle_s", number_between(0, 5), settle_s)
    table.done()
    if pin is None or active_high is None or settle is None:
        return None
    return RelayConfig(pin, active_high, feedback, settle)


def _phase_switch(table: Table) -> PhaseSwitchConfig | None:
    pin = table.get("pin", pin_name, None)
    active_high = table.get("active_high", flag, True)
    three_when_active = table.get("three_phase_when_active", flag, True)
    ok, interrupt_pin = table.optional("pilot_interrupt_pin", pin_name)
    interrupt_high = table.get("pilot_interrupt_active_high", flag, True)
    interrupt_s = table.get("interrupt_s", number_between(0, 30), 3.0)
    table.done()
    if pin is None or active_high is None or three_when_active is None or not ok:
        return None
    if interrupt_high is None or interrupt_s is None:
        return None
    return PhaseSwitchConfig(
        pin, active_high, three_when_active, interrupt_pin, interrupt_high, interrupt_s
    )


def _led(table: Table) -> LedConfig | None:
    pin = table.get("pin", pin_name, None)
    active_high = table.get("active_high", flag, True)
    table.done()
    if pin is None or active_high is None:
        return None
    return LedConfig(pin, active_high)


def _meter(table: Table, maps: Mapping[str, MeterMap]) -> MeterConfig | None:
    bus = table.get("bus", nonempty_text, None)
    model = table.get("model", nonempty_text, None)
    device_id = table.get("device_id", integer(1, 247), 1)
    retries = table.get("retries", integer(0, 5), 2)
    table.done()
    meter_map = None
    if model is not None:
        key = MODEL_ALIASES.get(model, model)
        meter_map = maps.get(key) or MAPS.get(key)
        if meter_map is None:
            known = sorted([*MAPS, *MODEL_ALIASES, *maps])
            table.problem("model", f"unknown meter {model!r}; known: {', '.join(known)}")
    if bus is None or model is None or meter_map is None or device_id is None or retries is None:
        return None
    return MeterConfig(bus, model, meter_map, device_id, retries)


def _board(table: Table) -> BoardConfig | None:
    board = table.get("board", _choice(BOARDS), None)
    bus = table.get("bus", nonempty_text, None)
    device_id = table.get("device_id", integer(1, 247), 1)
    retries = table.get("retries", integer(0, 5), 2)
    state_poll = table.get("state_poll_s", number_between(0.1, 10), 0.5)
    ok, write_function = table.optional("write_function", _one_of((6, 16)))
    table.done()
    if board is None or bus is None or device_id is None or retries is None:
        return None
    if state_poll is None or not ok:
        return None
    return BoardConfig(
        board,  # type: ignore[arg-type]
        bus,
        device_id,
        retries,
        state_poll,
        write_function or BOARD_WRITE_FUNCTIONS[board],
    )


def _connector(table: Table, cid: int, maps: Mapping[str, MeterMap]) -> ConnectorConfig | None:
    meter = pilot = None
    if table.has("meter"):
        meter = _meter(table.table("meter"), maps)
    else:
        table.problem("meter", "required: the connector's energy meter")
    if table.has("pilot"):
        pilot = _board(table.table("pilot"))
    else:
        table.problem("pilot", "required: the EVSE board that makes the pilot signal")
    contactor = _relay(table.table("contactor"), 0.2) if table.has("contactor") else None
    lock = _relay(table.table("lock"), 0.5) if table.has("lock") else None
    phase_switch = _phase_switch(table.table("phase_switch")) if table.has("phase_switch") else None
    led = _led(table.table("led")) if table.has("led") else None
    ok = all(
        table.has(key) == (device is not None)
        for key, device in (
            ("contactor", contactor),
            ("lock", lock),
            ("phase_switch", phase_switch),
            ("led", led),
        )
    )
    phases = table.get("phases", _one_of((1, 3)), meter.map.phases if meter else 3)
    max_current = table.get("max_current_a", number_between(6, 80), 32.0)
    poll = table.get("poll_interval_s", number_between(0.2, 60), 1.0)
    table.done()
    if meter is not None and phases is not None and meter.map.phases < phases:
        table.problem("phases", f"{phases} phases, but meter {meter.model!r} measures one")
        return None
    if meter is None or pilot is None or not ok or phases is None:
        return None
    if max_current is None or poll is None:
        return None
    return ConnectorConfig(
        cid, phases, max_current, poll, meter, pilot, contactor, lock, phase_switch, led
    )


def _card_reader(table: Table) -> ReaderConfig | None:
    port = table.get("port", _serial_port, None)
    protocol = table.get("protocol", _choice(READER_PROTOCOLS), "line")
    baudrate = table.get("baudrate", _one_of(BAUDRATES), 9600)
    repeat = table.get("repeat_suppress_s", number_between(0, 60), 2.0)
    table.done()
    if port is None or protocol is None or baudrate is None or repeat is None:
        return None
    return ReaderConfig(port, protocol, baudrate, repeat)  # type: ignore[arg-type]


def parse_hardware(hal: Table, connectors: int | None, *, required: bool) -> HardwareConfig:
    """Read the hardware tables of ``[hal]``; problems are recorded on ``hal``.

    With ``required`` (``backend = "hardware"``) every connector 1..``connectors``
    needs its table; otherwise the tables are optional but still checked, so a
    config being prepared for the hardware backend is validated while it runs the
    simulator.
    """
    buses_table = hal.table("buses")
    buses: dict[str, BusConfig] = {}
    for name in list(buses_table.raw()):
        bus = _bus(buses_table.table(name), name)
        if bus is not None:
            buses[name] = bus
    maps = _user_maps(hal.table("meter_maps"))

    connectors_table = hal.table("connectors")
    parsed: list[ConnectorConfig] = []
    present = dict(connectors_table.raw())
    for key in present:
        if not key.isdigit() or (connectors is not None and not 1 <= int(key) <= connectors):
            limit = f"1..{connectors}" if connectors is not None else "a connector number"
            connectors_table.problem(key, f"must be {limit} (charge_point.connectors)")
    for cid in range(1, (connectors or 0) + 1):
        if str(cid) not in present:
            if required:
                connectors_table.problem(str(cid), "required: the devices of this connector")
            continue
        connector = _connector(connectors_table.table(str(cid)), cid, maps)
        if connector is not None:
            parsed.append(connector)

    reader = None
    if hal.has("card_reader"):
        reader = _card_reader(hal.table("card_reader"))

    _check_references(hal, buses, parsed)
    config = HardwareConfig(types.MappingProxyType(buses), tuple(parsed), reader)
    _check_pins(hal, config)
    return config


def _check_references(
    hal: Table, buses: Mapping[str, BusConfig], parsed: list[ConnectorConfig]
) -> None:
    used: dict[tuple[str, int], str] = {}
    for c in parsed:
        for kind, device in (("meter", c.meter), ("pilot", c.pilot)):
            where = f"connectors.{c.connector_id}.{kind}"
            if device.bus not in buses:
                known = ", ".join(sorted(buses)) or "none defined"
                hal.problem(f"{where}.bus", f"no bus {device.bus!r} in [hal.buses] ({known})")
                continue
            owner = used.setdefault((device.bus, device.device_id), where)
            if owner != where:
                hal.problem(
                    f"{where}.device_id",
                    f"id {device.device_id} on bus {device.bus!r} is already hal.{owner}",
                )


def _check_pins(hal: Table, config: HardwareConfig) -> None:
    seen: set[str] = set()
    for pin in config.pins():
        if pin in seen:
            hal.problem("connectors", f"{pin} is used for more than one device")
        seen.add(pin)


def device_warnings(config: HardwareConfig) -> list[str]:
    """Devices the config names that this machine does not have (only meaningful on the target)."""
    warnings: list[str] = []
    for bus in config.buses.values():
        if (
            isinstance(bus, SerialBusConfig)
            and "://" not in bus.port
            and not Path(bus.port).exists()
        ):
            warnings.append(f"hal.buses.{bus.name}.port: {bus.port} does not exist on this machine")
    reader = config.card_reader
    if reader is not None and "://" not in reader.port and not Path(reader.port).exists():
        warnings.append(f"hal.card_reader.port: {reader.port} does not exist on this machine")
    if config.pins() and not Path("/dev/gpiochip0").exists():
        warnings.append(
            "hal.connectors: GPIO pins are configured but /dev/gpiochip0 does not exist"
        )
    return warnings


def wiring_warnings(config: HardwareConfig) -> list[str]:
    """Settings that contradict each other as wired: a feedback input whose pull resistor
    holds it at the level its ``feedback_active_high`` calls "closed" reads every open
    contact as closed (and the other way round), so every switch looks like a fault."""
    warnings: list[str] = []
    for c in config.connectors:
        for name, device in (("contactor", c.contactor), ("lock", c.lock)):
            feedback = device.feedback if device is not None else None
            if feedback is None or feedback.pull == "none":
                continue
            up = feedback.pull == "up"
            if feedback.active_high != up:
                continue
            level, to, right = ("low", "GND", "false") if up else ("high", "3.3 V", "true")
            warnings.append(
                f'hal.connectors.{c.connector_id}.{name}: feedback_pull = "{feedback.pull}" '
                f"with feedback_active_high = {str(feedback.active_high).lower()}: a contact to "
                f"{to}{' (docs/hardware.md)' if up else ''} reads {level} when closed, so every "
                f"switch would look like a {name} fault; set feedback_active_high = {right}"
            )
    return warnings


def describe(config: HardwareConfig) -> list[str]:
    """One line per device, for ``cpagent check-config``."""
    lines = []
    for name, bus in config.buses.items():
        lines.append(f"bus {name}: {bus.describe()}")
    for c in config.connectors:
        parts = [
            f"{c.meter.model} meter id {c.meter.device_id} on {c.meter.bus}",
            f"{c.pilot.board} board id {c.pilot.device_id} on {c.pilot.bus}",
            f"{c.phases} phase(s) up to {c.max_current_a:g} A",
        ]
        if c.contactor is not None:
            feedback = f", feedback {c.contactor.feedback.pin}" if c.contactor.feedback else ""
            parts.append(f"contactor {c.contactor.pin}{feedback}")
        if c.lock is not None:
            parts.append(f"lock {c.lock.pin}")
        if c.phase_switch is not None:
            parts.append(f"1p/3p switch {c.phase_switch.pin}")
        if c.led is not None:
            parts.append(f"LED {c.led.pin}")
        lines.append(f"connector {c.connector_id}: " + ", ".join(parts))
    if config.card_reader is not None:
        r = config.card_reader
        lines.append(f"card reader: {r.protocol} on {r.port} @ {r.baudrate}")
    return lines
