"""The config tables each OCPP adapter owns (``[ocpp16]``, ``[ocpp201]``), by name.

``cpagent.config`` reads the sections every charger has and knows no protocol: for the
table of an OCPP version it asks this registry, which names the version, the table and the
module that judges it. That module is imported only when its table is judged or described,
so a 1.6 charger never loads the 2.0.1 device model (and the other way round).

A table's judge receives the raw TOML table and what the rest of the config says about the
station (:class:`StationFacts`) and returns a :class:`Judged`: the values the adapter will
start from, and the problems and warnings, each one line naming its key in full
(``ocpp201.OCPPCommCtrlr.HeartbeatInterval: ...``), as every config problem is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "TABLES",
    "Judged",
    "ProtocolTable",
    "StationFacts",
    "table_for_version",
]


@dataclass(frozen=True)
class StationFacts:
    """What the rest of the config says about the station, for judging a protocol table.

    A field is None when the part of the config that sets it is wrong (its problem is
    reported there); a judge then checks what it can without it.
    """

    connectors: int | None
    phase_switch: bool | None


@dataclass(frozen=True)
class Judged:
    """A protocol table judged: ``values`` (read-only, in the form its adapter takes),
    ``problems`` and ``warnings``, one ``dotted.key: reason`` line each."""

    values: Mapping[str, object]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


Judge = Callable[[Mapping[str, object], StationFacts], Judged]
Describe = Callable[[Mapping[str, object], StationFacts], list[str]]


@dataclass(frozen=True)
class ProtocolTable:
    """One protocol's config table: ``name`` in the TOML, the ``version`` it belongs to
    (``[csms] ocpp_version``), and ``module``, which defines ``judge_table`` (a
    :data:`Judge`) and ``describe_table`` (the lines ``check-config`` prints for the
    values, a WriteOnly or secret value masked)."""

    name: str
    version: str
    module: str

    def judge(self, raw: Mapping[str, object], facts: StationFacts) -> Judged:
        judge: Judge = importlib.import_module(self.module).judge_table
        return judge(raw, facts)

    def describe(self, values: Mapping[str, object], facts: StationFacts) -> list[str]:
        describe: Describe = importlib.import_module(self.module).describe_table
        return describe(values, facts)


#: Every protocol table, in the order check-config reports them.
TABLES: Final[tuple[ProtocolTable, ...]] = (
    ProtocolTable("ocpp16", "1.6", "cpagent.protocol.v16.config_table"),
    ProtocolTable("ocpp201", "2.0.1", "cpagent.protocol.v201.config_table"),
)

#: The values ``[csms] ocpp_version`` takes.
VERSIONS: Final[tuple[str, ...]] = tuple(table.version for table in TABLES)


def table_for_version(version: str) -> ProtocolTable:
    """The table of OCPP ``version`` (one of :data:`VERSIONS`).

    Raises:
        KeyError: no adapter speaks that version.
    """
    for table in TABLES:
        if table.version == version:
            return table
    raise KeyError(version)
