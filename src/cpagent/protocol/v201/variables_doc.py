"""The README's table of the OCPP 2.0.1 device-model variables, made from the catalogue.

``python -m cpagent.protocol.v201.variables_doc`` prints it; a test keeps the README's copy
equal to it, so the documentation cannot drift from what the agent offers.
"""

from __future__ import annotations

from cpagent.protocol.v201.catalogue import CATALOGUE, Mutability, Scope, VariableSpec

_SCOPES = {Scope.STATION: "", Scope.EVSE: " (each EVSE)", Scope.CONNECTOR: " (each connector)"}
_MUTABILITY = {
    Mutability.READ_ONLY: "R",
    Mutability.READ_WRITE: "RW",
    Mutability.WRITE_ONLY: "W",
}


_LISTED = 8
"""Longer value lists (the measurands) are cut in the table; check-config knows them all."""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _values(spec: VariableSpec) -> str:
    parts = []
    if len(spec.values_list) > _LISTED:
        parts.append(f"{len(spec.values_list)} values: {', '.join(spec.values_list[:2])}, ...")
    elif spec.values_list:
        parts.append(", ".join(spec.values_list))
    if spec.min_limit is not None or spec.max_limit is not None:
        low = "" if spec.min_limit is None else _number(spec.min_limit)
        high = "" if spec.max_limit is None else _number(spec.max_limit)
        parts.append(f"{low}..{high}")
    if spec.unit:
        parts.append(spec.unit)
    return "; ".join(parts)


def _default(spec: VariableSpec) -> str:
    if spec.mutability is Mutability.WRITE_ONLY:
        return "(never shown)"
    if spec.default is None:
        return "(the station's state)"
    return f"`{spec.default}`" if spec.default else '`""`'


def variables_table() -> str:
    """Markdown: one row per variable of each component the agent implements."""
    lines = [
        "| component | variable | type | access | values | factory value |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for component in sorted(CATALOGUE.values(), key=lambda c: c.name):
        if not component.implemented:
            continue
        for spec in sorted(component.variables.values(), key=lambda v: v.name):
            instances = [i for i in spec.instances if i is not None]
            name = spec.name + "".join(f" `:{i}`" for i in instances)
            lines.append(
                f"| {component.name}{_SCOPES[component.scope]} | {name} | {spec.data_type.value}"
                f" | {_MUTABILITY[spec.mutability]} | {_values(spec)} | {_default(spec)} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(variables_table(), end="")
