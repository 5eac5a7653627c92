"""The config's ``[ocpp201]`` tables, judged and described for ``cpagent.config``.

Registered in :mod:`cpagent.protocol.tables`. :meth:`DeviceModel.from_config
<cpagent.protocol.v201.device_model.DeviceModel.from_config>` is the judge of the values;
this module adds what only the file as a whole shows (one variable set twice, under two
spellings of its names) and keeps the validated tables, read-only, as the adapter's input:
it builds its model with ``DeviceModel.from_config(evse_count, config.ocpp201)``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from cpagent.protocol.tables import Judged, StationFacts
from cpagent.protocol.v201.addressing import (
    AddressError,
    full_key,
    parse_component_key,
    parse_variable_key,
)
from cpagent.protocol.v201.device_model import DeviceModel, DeviceModelConfigError
from cpagent.protocol.v201.values import Secret

TABLE = "ocpp201"

#: The most EVSEs a config may have (``[charge_point] connectors``); the model is judged
#: with this many when that key is wrong, so that the other problems still show.
MAX_EVSES = 32


def _evse_count(facts: StationFacts) -> int:
    return facts.connectors if facts.connectors is not None else MAX_EVSES


def _twice(raw: Mapping[str, object]) -> list[str]:
    """A problem for each variable the tables set more than once (names in another case)."""
    written: dict[str, str] = {}
    problems: list[str] = []
    for comp_key, table in raw.items():
        if not isinstance(table, Mapping):
            continue
        try:
            ref = parse_component_key(comp_key)
        except AddressError:
            continue  # from_config names it
        for var_key in table:
            try:
                var = parse_variable_key(ref.name, str(var_key))
            except AddressError:
                continue
            where = f"{comp_key}.{var_key}"
            first = written.setdefault(full_key(ref, var), where)
            if first != where:
                problems.append(f"{TABLE}.{where}: already set (as {TABLE}.{first})")
    return problems


def _frozen(raw: Mapping[str, object]) -> Mapping[str, object]:
    return types.MappingProxyType(
        {
            key: types.MappingProxyType(dict(table)) if isinstance(table, Mapping) else table
            for key, table in raw.items()
        }
    )


def judge_table(raw: Mapping[str, object], facts: StationFacts) -> Judged:
    """The validated tables (as written, read-only), or a problem per key refused; and a
    warning for each value of a block cpagent does not implement."""
    problems = _twice(raw)
    try:
        _model, warnings = DeviceModel.from_config(_evse_count(facts), raw)
    except DeviceModelConfigError as exc:
        return Judged(types.MappingProxyType({}), [*exc.problems, *problems])
    if problems:
        return Judged(types.MappingProxyType({}), problems, warnings)
    return Judged(_frozen(raw), [], warnings)


def describe_table(values: Mapping[str, object], facts: StationFacts) -> list[str]:
    """check-config's lines: each value set, by its full key, as the agent will report it.

    A WriteOnly value never comes from the config (the judge refuses it); it would be
    masked."""
    if not any(isinstance(t, Mapping) and t for t in values.values()):
        return []
    model, _warnings = DeviceModel.from_config(_evse_count(facts), values)
    lines: list[str] = []
    for comp_key, table in values.items():
        assert isinstance(table, Mapping)
        ref = parse_component_key(comp_key)
        for var_key in table:
            var = parse_variable_key(ref.name, str(var_key))
            value = model.actual(ref, var)
            shown = "***" if isinstance(value, Secret) else value
            lines.append(f"  {full_key(ref, var)} = {shown}")
    plural = "s" if len(lines) != 1 else ""
    return [f"{TABLE}:        {len(lines)} device-model value{plural} set", *lines]
