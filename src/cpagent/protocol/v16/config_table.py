"""The config's ``[ocpp16]`` table, judged and described for ``cpagent.config``.

Registered in :mod:`cpagent.protocol.tables`. The values are the initial OCPP 1.6
configuration keys by the spec's spelling, as canonical OCPP strings (see
:func:`cpagent.protocol.v16.config_keys.read_initial`); a value the CSMS sets later wins.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from cpagent.protocol.tables import Judged, StationFacts
from cpagent.protocol.v16.config_keys import KEYS, capabilities, read_initial

TABLE = "ocpp16"


def judge_table(raw: Mapping[str, object], facts: StationFacts) -> Judged:
    """The initial key values, a problem for each value refused and a warning for each name
    that is no key the agent knows.

    Read-only keys are judged against what the agent will report: its hardware as the
    config describes it (left out when that part of the config is wrong), else its fixed
    values."""
    computed: dict[str, str] = {}
    if facts.connectors is not None and facts.phase_switch is not None:
        computed = capabilities(connectors=facts.connectors, phase_switch=facts.phase_switch)
    elif facts.connectors is not None:
        computed = {"NumberOfConnectors": str(facts.connectors)}
    judged = read_initial(raw, computed)
    return Judged(
        values=types.MappingProxyType(judged.values),
        problems=[f"{TABLE}.{name}: {reason}" for name, reason in judged.problems],
        warnings=[
            f"{TABLE}.{name}: not an OCPP 1.6 configuration key cpagent knows; ignored"
            for name in judged.unknown
        ],
    )


def describe_table(values: Mapping[str, object], facts: StationFacts) -> list[str]:
    """check-config's line for the values, a secret key (AuthorizationKey) masked."""
    if not values:
        return []
    keys = ", ".join(
        f"{name}={'***' if KEYS[name].secret else value}" for name, value in values.items()
    )
    return [f"{TABLE}:         {keys}"]
