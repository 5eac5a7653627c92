"""Register maps of Modbus energy meters, kept as data.

A map says, for every value a :class:`~cpagent.hal.base.MeterReading` needs,
which function code, address, type, word order and scale to read. Supporting a
new meter means adding a map (here or in the user's config, through
:func:`parse_map`), never code. Addresses are 0-based wire addresses; ``scale``
turns the raw integer or float into the reading's unit (Wh, W, V, A, Hz), so an
energy register in kWh has ``scale=1000``.

The shipped maps follow the manufacturers' manuals as cross-checked in
``design/hardware.md``; verify a map against the device manual before relying
on it for billing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

RegisterType = Literal["f32", "i32", "u32", "u64", "i16", "u16"]
WordOrder = Literal["big", "little"]

REGISTER_WORDS: dict[str, int] = {"f32": 2, "i32": 2, "u32": 2, "u64": 4, "i16": 1, "u16": 1}
"""Number of 16-bit registers each type occupies on the wire."""


@dataclass(frozen=True)
class Register:
    """Where one value lives and how to decode it.

    ``function`` is 3 (holding registers) or 4 (input registers). ``word_order``
    is the order of the 16-bit words ("big": high word first, "little": low
    word first, as Carlo Gavazzi meters send it); bytes within a word are
    always big-endian, as Modbus defines. The decoded value is ``raw * scale``.
    """

    function: int
    address: int
    type: RegisterType
    word_order: WordOrder = "big"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.function not in (3, 4):
            raise ValueError(f"function: must be 3 or 4, not {self.function!r}")
        if not 0 <= self.address <= 0xFFFF:
            raise ValueError(f"address: must be 0..65535, not {self.address!r}")
        if self.type not in REGISTER_WORDS:
            raise ValueError(f"type: must be one of {', '.join(REGISTER_WORDS)}, not {self.type!r}")
        if self.word_order not in ("big", "little"):
            raise ValueError(f"word_order: must be 'big' or 'little', not {self.word_order!r}")
        if self.address + self.words > 0x10000:
            raise ValueError(f"address: {self.address:#x} + {self.words} words passes 0xFFFF")

    @property
    def words(self) -> int:
        return REGISTER_WORDS[self.type]


@dataclass(frozen=True)
class MeterMap:
    """Everything needed to read one meter model.

    The per-phase tuples have ``phases`` entries (L1, L2, L3). ``frequency_hz``
    is optional because some meters do not expose it.
    ``max_registers_per_read`` bounds one request: some meters refuse long
    reads, and a block read the device rejects falls back to per-value reads.
    """

    name: str
    phases: int
    energy_import_wh: Register
    power_w: Register
    power_phase_w: tuple[Register, ...]
    current_a: tuple[Register, ...]
    voltage_v: tuple[Register, ...]
    frequency_hz: Register | None = None
    max_registers_per_read: int = 40

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"phases: must be 1 or 3, not {self.phases!r}")
        for field in ("power_phase_w", "current_a", "voltage_v"):
            regs = getattr(self, field)
            if len(regs) != self.phases:
                raise ValueError(f"{field}: needs {self.phases} registers, got {len(regs)}")
        if not 1 <= self.max_registers_per_read <= 125:
            raise ValueError(
                f"max_registers_per_read: must be 1..125, not {self.max_registers_per_read!r}"
            )
        longest = max(reg.words for reg in self.registers())
        if self.max_registers_per_read < longest:
            raise ValueError(f"max_registers_per_read: must be at least {longest}")

    def registers(self) -> list[Register]:
        """Every register the map reads, without duplicates, in a stable order."""
        regs = [
            self.energy_import_wh,
            self.power_w,
            *self.power_phase_w,
            *self.current_a,
            *self.voltage_v,
        ]
        if self.frequency_hz is not None:
            regs.append(self.frequency_hz)
        return list(dict.fromkeys(regs))


def _series(
    function: int,
    start: int,
    count: int,
    type_: RegisterType,
    word_order: WordOrder,
    scale: float,
) -> tuple[Register, ...]:
    step = REGISTER_WORDS[type_]
    return tuple(
        Register(function, start + i * step, type_, word_order, scale) for i in range(count)
    )


def _eastron(name: str, phases: int) -> MeterMap:
    def f32(address: int, scale: float = 1.0) -> Register:
        return Register(4, address, "f32", "big", scale)

    return MeterMap(
        name=name,
        phases=phases,
        energy_import_wh=f32(0x48, 1000.0),
        power_w=f32(0x34) if phases == 3 else f32(0x0C),
        power_phase_w=_series(4, 0x0C, phases, "f32", "big", 1.0),
        current_a=_series(4, 0x06, phases, "f32", "big", 1.0),
        voltage_v=_series(4, 0x00, phases, "f32", "big", 1.0),
        frequency_hz=f32(0x46),
    )


_SDM120 = _eastron("sdm120", 1)

MAPS: dict[str, MeterMap] = {
    "sdm630": _eastron("sdm630", 3),
    "sdm120": _SDM120,
    "sdm230": _SDM120,
    "abb_b23": MeterMap(
        name="abb_b23",
        phases=3,
        energy_import_wh=Register(3, 0x5000, "u64", "big", 10.0),
        power_w=Register(3, 0x5B14, "i32", "big", 0.01),
        power_phase_w=_series(3, 0x5B16, 3, "i32", "big", 0.01),
        current_a=_series(3, 0x5B0C, 3, "u32", "big", 0.01),
        voltage_v=_series(3, 0x5B00, 3, "u32", "big", 0.1),
        frequency_hz=Register(3, 0x5B2C, "u16", "big", 0.01),
    ),
    "em340": MeterMap(
        name="em340",
        phases=3,
        energy_import_wh=Register(4, 0x34, "i32", "little", 100.0),
        power_w=Register(4, 0x28, "i32", "little", 0.1),
        power_phase_w=_series(4, 0x12, 3, "i32", "little", 0.1),
        current_a=_series(4, 0x0C, 3, "i32", "little", 0.001),
        voltage_v=_series(4, 0x00, 3, "i32", "little", 0.1),
        frequency_hz=Register(4, 0x33, "i16", "big", 0.1),
    ),
}
"""The shipped maps by config name. ``sdm630`` also fits the SDM72D-M v2,
``sdm230`` is the same map as ``sdm120``, ``abb_b23`` fits the B24, and
``em340`` fits the EM330."""


_REGISTER_KEYS = {"function", "address", "type", "word_order", "scale"}
_MAP_KEYS = {
    "name",
    "phases",
    "energy_import_wh",
    "power_w",
    "power_phase_w",
    "current_a",
    "voltage_v",
    "frequency_hz",
    "max_registers_per_read",
}


def _int(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be an integer, not {value!r}")
    return value


def _parse_register(where: str, data: object) -> Register:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a table of {', '.join(sorted(_REGISTER_KEYS))}")
    unknown = set(data) - _REGISTER_KEYS
    if unknown:
        raise ValueError(f"{where}.{sorted(map(str, unknown))[0]}: unknown key")
    for key in ("function", "address", "type"):
        if key not in data:
            raise ValueError(f"{where}.{key}: missing")
    type_ = data["type"]
    if type_ not in get_args(RegisterType):
        raise ValueError(
            f"{where}.type: must be one of {', '.join(get_args(RegisterType))}, not {type_!r}"
        )
    word_order = data.get("word_order", "big")
    if word_order not in get_args(WordOrder):
        raise ValueError(f"{where}.word_order: must be 'big' or 'little', not {word_order!r}")
    scale = data.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale == 0:
        raise ValueError(f"{where}.scale: must be a non-zero number, not {scale!r}")
    try:
        return Register(
            function=_int(f"{where}.function", data["function"]),
            address=_int(f"{where}.address", data["address"]),
            type=cast(RegisterType, type_),
            word_order=cast(WordOrder, word_order),
            scale=float(scale),
        )
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(where) else f"{where}.{message}") from None


def _parse_series(where: str, data: object) -> tuple[Register, ...]:
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise ValueError(f"{where}: must be a list of registers")
    return tuple(_parse_register(f"{where}[{i}]", item) for i, item in enumerate(data))


def parse_map(data: Mapping[str, object]) -> MeterMap:
    """Build a :class:`MeterMap` from a config table (e.g. ``[meter_maps.mymeter]``).

    Registers are tables with ``function``, ``address``, ``type`` and optional
    ``word_order`` (default "big") and ``scale`` (default 1). Raises
    :class:`ValueError` whose message starts with the offending key, e.g.
    ``current_a[1].type: must be one of ...``.
    """
    unknown = set(data) - _MAP_KEYS
    if unknown:
        raise ValueError(f"{sorted(map(str, unknown))[0]}: unknown key")
    for key in ("name", "phases", "energy_import_wh", "power_w", "current_a", "voltage_v"):
        if key not in data:
            raise ValueError(f"{key}: missing")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: must be a non-empty string, not {name!r}")
    phases = _int("phases", data["phases"])
    power_w = _parse_register("power_w", data["power_w"])
    power_phase_w = (
        _parse_series("power_phase_w", data["power_phase_w"])
        if "power_phase_w" in data
        else ((power_w,) if phases == 1 else ())
    )
    frequency = data.get("frequency_hz")
    return MeterMap(
        name=name,
        phases=phases,
        energy_import_wh=_parse_register("energy_import_wh", data["energy_import_wh"]),
        power_w=power_w,
        power_phase_w=power_phase_w,
        current_a=_parse_series("current_a", data["current_a"]),
        voltage_v=_parse_series("voltage_v", data["voltage_v"]),
        frequency_hz=None if frequency is None else _parse_register("frequency_hz", frequency),
        max_registers_per_read=_int(
            "max_registers_per_read", data.get("max_registers_per_read", 40)
        ),
    )
