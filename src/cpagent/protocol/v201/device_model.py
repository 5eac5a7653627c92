"""The in-memory OCPP 2.0.1 device model: what GetVariables, SetVariables and the reports see.

:class:`DeviceModel` is built from the catalogue, the number of EVSEs (each with one
connector: evseId N, connectorId 1) and the config's ``[ocpp201]`` tables. Layers, each
winning over the one before: the catalogue's factory values, the installer's config (which
may set ReadOnly variables: ReadOnly binds the CSMS only), the values the CSMS set earlier
(:meth:`DeviceModel.load_persisted`), and what the CSMS sets now (:meth:`DeviceModel.set`).

The model is pure: no I/O, no clock. Persistence belongs to the store: it saves
:meth:`DeviceModel.changed` (the values the CSMS set) and gives them back to
:meth:`DeviceModel.load_persisted` on the next start. The station reports run-time state
(AvailabilityState, DateTime, ...) through :meth:`DeviceModel.update`.

A value of a block cpagent does not implement is accepted from the config with a warning and
reported as a ReadOnly string, so that an installer can tell a CSMS what it needs to read
without cpagent pretending to act on it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cpagent.protocol.v201.addressing import (
    AddressError,
    ComponentRef,
    VariableRef,
    component_key,
    full_key,
    parse_component_key,
    parse_variable_key,
    variable_key,
)
from cpagent.protocol.v201.catalogue import (
    CATALOGUE,
    Attribute,
    ComponentSpec,
    DataType,
    Mutability,
    Scope,
    VariableSpec,
    canonical_component,
    canonical_variable,
)
from cpagent.protocol.v201.values import Secret, Stored, ValueRejected, from_toml, from_wire

#: Each EVSE has exactly one connector, numbered 1.
CONNECTOR_ID: Final = 1


class GetStatus(enum.StrEnum):
    """GetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetStatus(enum.StrEnum):
    """SetVariableStatusEnumType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


class Criterion(enum.StrEnum):
    """ComponentCriterionEnumType of GetReport."""

    ACTIVE = "Active"
    AVAILABLE = "Available"
    ENABLED = "Enabled"
    PROBLEM = "Problem"


class ReportBase(enum.StrEnum):
    """ReportBaseEnumType of GetBaseReport."""

    CONFIGURATION_INVENTORY = "ConfigurationInventory"
    FULL_INVENTORY = "FullInventory"
    SUMMARY_INVENTORY = "SummaryInventory"


#: The variables SummaryInventory reports: a component's availability and problems.
SUMMARY_VARIABLES: Final = frozenset({"AvailabilityState", "Available", "Problem"})


@dataclass(frozen=True)
class GetResult:
    """The outcome of one GetVariableData.

    ``value`` is the wire string when Accepted (None when the value is not known yet);
    ``write_only`` marks the Rejected answer for a WriteOnly variable, which no one reads.
    ``reason`` is for statusInfo.additionalInfo and logs.
    """

    status: GetStatus
    value: str | None = None
    reason: str | None = None
    write_only: bool = False


@dataclass(frozen=True)
class SetResult:
    """The outcome of one SetVariableData; ``reason`` for statusInfo and logs."""

    status: SetStatus
    reason: str | None = None


@dataclass(frozen=True)
class AttributeRecord:
    """One VariableAttribute of a report; ``value`` is None for a WriteOnly or unknown value."""

    type: Attribute
    value: str | None
    mutability: Mutability


@dataclass(frozen=True)
class ReportRecord:
    """One ReportData of NotifyReport: component, variable, attributes, characteristics."""

    component: ComponentRef
    variable: VariableRef
    attributes: tuple[AttributeRecord, ...]
    data_type: DataType
    unit: str | None
    values_list: tuple[str, ...]
    min_limit: float | None
    max_limit: float | None


@dataclass(frozen=True)
class Selector:
    """One ComponentVariable of GetReport: None in a field means any."""

    component: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    variable: str | None = None
    variable_instance: str | None = None


class DeviceModelConfigError(ValueError):
    """The ``[ocpp201]`` tables hold values the model refuses; ``problems`` names each key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass
class _Entry:
    component: ComponentRef
    variable: VariableRef
    spec: VariableSpec
    implemented: bool
    values: dict[Attribute, Stored | None] = field(default_factory=dict)
    answers: dict[str, GetResult] = field(default_factory=dict)
    """The Accepted GetResult of each attribute as last read, good while its value is the
    very object the result holds (values are replaced, never changed in place)."""

    def __repr__(self) -> str:  # values may hold a Secret: its repr hides it anyway
        return f"_Entry({full_key(self.component, self.variable)})"


def _refs_for(spec: ComponentSpec, evse_count: int) -> list[ComponentRef]:
    if spec.scope is Scope.STATION:
        return [ComponentRef(spec.name)]
    if spec.scope is Scope.EVSE:
        return [ComponentRef(spec.name, evse=n) for n in range(1, evse_count + 1)]
    return [
        ComponentRef(spec.name, evse=n, connector=CONNECTOR_ID) for n in range(1, evse_count + 1)
    ]


_Resolved = tuple[_Entry | None, str | None]
Address = tuple[str, str | None, int | None, int | None, str, str | None]
"""A component and variable as a GetVariableData names them, in plain values: component
name, instance, evseId, connectorId, variable name, instance (None where absent)."""

_UNKNOWN_COMPONENT: Final = GetResult(GetStatus.UNKNOWN_COMPONENT)
_UNKNOWN_VARIABLE: Final = GetResult(GetStatus.UNKNOWN_VARIABLE)
_NOT_SUPPORTED: Final = GetResult(GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
_WRITE_ONLY: Final = GetResult(GetStatus.REJECTED, reason="WriteOnly", write_only=True)
RESOLVED_KEPT = 4096
"""Addresses :meth:`DeviceModel._resolve` remembers: every variable of a station, in more
spellings than a CSMS uses."""


def _unimplemented_spec(name: str) -> VariableSpec:
    return VariableSpec(name, DataType.STRING, Mutability.READ_ONLY, False, None)


class DeviceModel:
    """The device model of one station; see the module docstring for the layers."""

    def __init__(self, evse_count: int) -> None:
        """A model with the catalogue's factory values for ``evse_count`` EVSEs."""
        if evse_count < 1:
            raise ValueError("a station has at least one EVSE")
        self.evse_count = evse_count
        self._entries: dict[tuple[ComponentRef, VariableRef], _Entry] = {}
        self._changed: dict[tuple[ComponentRef, VariableRef], Stored] = {}
        self._components: set[ComponentRef] = set()
        self._resolved: dict[tuple[ComponentRef, VariableRef], _Resolved] = {}
        self._addressed: dict[Address, _Resolved] = {}
        for component in CATALOGUE.values():
            for ref in _refs_for(component, evse_count):
                for spec in component.variables.values():
                    for instance in spec.instances or (None,):
                        self._add(ref, VariableRef(spec.name, instance), spec, component)

    def _add(
        self, ref: ComponentRef, var: VariableRef, spec: VariableSpec, component: ComponentSpec
    ) -> None:
        values: dict[Attribute, Stored | None] = {a: None for a in spec.attributes}
        values[Attribute.ACTUAL] = spec.default
        if spec.default is not None and spec.mutability is Mutability.WRITE_ONLY:
            values[Attribute.ACTUAL] = Secret(spec.default)
        self._entries[ref, var] = _Entry(ref, var, spec, component.implemented, values)
        self._components.add(ref)
        self._forget_addresses()

    def _forget_addresses(self) -> None:
        """An entry was added: what :meth:`_resolve` remembers as unknown may now be known."""
        self._resolved.clear()
        self._addressed.clear()

    # -- building from the config -------------------------------------------------------

    @classmethod
    def from_config(
        cls, evse_count: int, tables: Mapping[str, object]
    ) -> tuple[DeviceModel, list[str]]:
        """The model with the ``[ocpp201]`` tables applied, and the warnings to show.

        Raises:
            DeviceModelConfigError: naming every key that is unknown, WriteOnly, out of
                scope or holds a value outside its variable's characteristics.
        """
        model = cls(evse_count)
        problems: list[str] = []
        warnings: list[str] = []
        for key, table in tables.items():
            if not isinstance(table, Mapping):
                problems.append(
                    f"ocpp201.{key}: a value must be inside a component table "
                    f'([ocpp201.Component] or [ocpp201."Component@evseId"])'
                )
                continue
            try:
                ref = parse_component_key(key)
            except AddressError as exc:
                problems.append(f"ocpp201.{key}: {exc.reason}")
                continue
            for var_key, value in table.items():
                model._configure(ref, str(var_key), value, problems, warnings)
        if problems:
            raise DeviceModelConfigError(problems)
        return model, warnings

    def _configure(
        self,
        ref: ComponentRef,
        var_key: str,
        value: object,
        problems: list[str],
        warnings: list[str],
    ) -> None:
        where = f"ocpp201.{component_key(ref)}.{var_key}"
        try:
            var = parse_variable_key(ref.name, var_key)
        except AddressError as exc:
            problems.append(f"{where}: {exc.reason}")
            return
        if isinstance(value, Mapping | list):
            problems.append(f"{where}: must be a single value")
            return
        component = CATALOGUE.get(ref.name)
        if component is not None:
            scope_problem = self._scope_problem(component, ref)
            if scope_problem is not None:
                problems.append(f"{where}: {scope_problem}")
                return
        spec = component.variables.get(var.name) if component is not None else None
        if component is None or spec is None:
            self._configure_unimplemented(ref, var, value, where, problems, warnings)
            return
        if spec.instances and var.instance not in spec.instances:
            named = ", ".join(i for i in spec.instances if i is not None)
            problems.append(f"{where}: {var.name} needs an instance, one of {named}")
            return
        if not spec.instances and var.instance is not None:
            problems.append(f"{where}: {var.name} has no instances")
            return
        if spec.mutability is Mutability.WRITE_ONLY:
            problems.append(f"{where}: {var.name} is WriteOnly: only the CSMS sets it")
            return
        try:
            stored = from_toml(where, spec, value)
        except ValueRejected as exc:
            problems.append(str(exc))
            return
        self._entries[ref, var].values[Attribute.ACTUAL] = stored
        if not component.implemented:
            warnings.append(f"{where}: cpagent does not implement {ref.name}; value reported only")

    def _configure_unimplemented(
        self,
        ref: ComponentRef,
        var: VariableRef,
        value: object,
        where: str,
        problems: list[str],
        warnings: list[str],
    ) -> None:
        if ref.evse is not None and ref.evse > self.evse_count:
            problems.append(f"{where}: there is no EVSE {ref.evse} (EVSEs 1-{self.evse_count})")
            return
        spec = _unimplemented_spec(var.name)
        text = value if isinstance(value, str) else None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        if text is None:
            problems.append(f"{where}: a {type(value).__name__} is not a device-model value")
            return
        try:
            stored = from_wire(where, spec, text)
        except ValueRejected as exc:
            problems.append(str(exc))
            return
        entry = _Entry(ref, var, spec, False, {Attribute.ACTUAL: stored})
        self._entries[ref, var] = entry
        self._components.add(ref)
        self._forget_addresses()
        warnings.append(
            f"{where}: cpagent does not implement {ref.name}.{var.name}; "
            "value reported read-only and not acted on"
        )

    def _scope_problem(self, component: ComponentSpec, ref: ComponentRef) -> str | None:
        if ref.instance is not None:
            return f"cpagent has a single {component.name}, without instances"
        if component.scope is Scope.STATION:
            if ref.evse is not None:
                return f"{component.name} is station-wide: leave out @{ref.evse}"
            return None
        if ref.evse is None:
            return f"{component.name} belongs to an EVSE: write {component.name}@evseId"
        if ref.evse > self.evse_count:
            return f"there is no EVSE {ref.evse} (EVSEs 1-{self.evse_count})"
        if component.scope is Scope.EVSE and ref.connector is not None:
            return f"{component.name} belongs to an EVSE, not to a connector"
        if component.scope is Scope.CONNECTOR and ref.connector != CONNECTOR_ID:
            return f"{component.name} needs @evseId.{CONNECTOR_ID} (one connector per EVSE)"
        return None

    # -- persistence ----------------------------------------------------------------------

    def changed(self) -> dict[tuple[str, str], Stored]:
        """The values the CSMS set, keyed (component key, variable key), for the store.

        A WriteOnly value comes as a :class:`Secret`; the store calls ``reveal()`` to save it.
        """
        return {
            (component_key(c), variable_key(v)): value for (c, v), value in self._changed.items()
        }

    def load_persisted(self, values: Mapping[tuple[str, str], str]) -> list[str]:
        """Apply values the CSMS set before a restart; they win over the config.

        A value that no longer fits (an EVSE removed, a name or limit changed by an upgrade)
        is skipped; the returned warnings say which.
        """
        warnings: list[str] = []
        for (comp_key, var_key), text in values.items():
            where = f"persisted {comp_key}.{var_key}"
            try:
                ref = parse_component_key(comp_key)
                var = parse_variable_key(ref.name, var_key)
                entry = self._entries.get((ref, var))
                if entry is None:
                    raise ValueRejected(f"{where}: no such variable in this station")
                stored = from_wire(where, entry.spec, text)
            except (AddressError, ValueRejected) as exc:
                warnings.append(f"{exc}; skipped")
                continue
            entry.values[Attribute.ACTUAL] = stored
            self._changed[ref, var] = stored
        return warnings

    # -- lookups --------------------------------------------------------------------------

    def _resolve(self, component: ComponentRef, variable: VariableRef) -> _Resolved:
        """The entry, or None with "component"/"variable" saying which part is unknown.

        Remembered per address as asked (entries are only ever added, and that forgets
        them): a CSMS reading the same variables again finds them without the name
        folding. At most :data:`RESOLVED_KEPT` addresses are kept, whatever a CSMS asks."""
        key = (component, variable)
        found = self._resolved.get(key)
        if found is None:
            found = self._look_up(component, variable)
            if len(self._resolved) < RESOLVED_KEPT:
                self._resolved[key] = found
        return found

    def _look_up(self, component: ComponentRef, variable: VariableRef) -> _Resolved:
        name = canonical_component(component.name)
        if name is None:
            return None, "component"
        ref = ComponentRef(name, component.instance, component.evse, component.connector)
        spec = CATALOGUE.get(name)
        if spec is not None and spec.scope is Scope.CONNECTOR and ref.connector is None:
            # One connector per EVSE: "Connector" on EVSE N is that EVSE's connector.
            ref = ComponentRef(name, ref.instance, ref.evse, CONNECTOR_ID)
        if ref not in self._components:
            return None, "component"
        var_name = canonical_variable(name, variable.name)
        if var_name is None:
            return None, "variable"
        instance = variable.instance
        var_spec = spec.variables.get(var_name) if spec is not None else None
        if instance is not None and var_spec is not None:
            # Instance names are case-insensitive too; answer in the spec's spelling.
            folded = instance.casefold()
            instance = next(
                (i for i in var_spec.instances if i is not None and i.casefold() == folded),
                instance,
            )
        entry = self._entries.get((ref, VariableRef(var_name, instance)))
        if entry is None:
            return None, "variable"
        return entry, None

    def _resolve_address(self, address: Address) -> _Resolved:
        """:meth:`_resolve` of an address in plain values, remembered as such: a GetVariables
        of many variables finds each without building its references."""
        found = self._addressed.get(address)
        if found is None:
            name, instance, evse, connector, var_name, var_instance = address
            found = self._resolve(
                ComponentRef(name, instance, evse, connector), VariableRef(var_name, var_instance)
            )
            if len(self._addressed) < RESOLVED_KEPT:
                self._addressed[address] = found
        return found

    def get(
        self,
        component: ComponentRef,
        variable: VariableRef,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> GetResult:
        """Answer one GetVariableData (B06)."""
        return self._read(self._resolve(component, variable), attribute)

    def get_at(self, address: Address, attribute: str = Attribute.ACTUAL) -> GetResult:
        """:meth:`get` of a GetVariableData's address as it came (``attribute`` one of
        AttributeEnumType's names, as the request's schema holds it)."""
        found = self._addressed.get(address)
        return self._read(found or self._resolve_address(address), attribute)

    def _read(self, found: _Resolved, attribute: str) -> GetResult:
        entry, unknown = found
        if entry is None:
            return _UNKNOWN_COMPONENT if unknown == "component" else _UNKNOWN_VARIABLE
        values = entry.values
        if attribute not in values:
            return _NOT_SUPPORTED
        if entry.spec.mutability is Mutability.WRITE_ONLY:
            return _WRITE_ONLY
        value = values[attribute]  # type: ignore[index]  # a name finds its Attribute key
        assert not isinstance(value, Secret)  # only WriteOnly entries hold a Secret
        answer = entry.answers.get(attribute)
        if answer is None or answer.value is not value:
            answer = entry.answers[attribute] = GetResult(GetStatus.ACCEPTED, value)
        return answer

    def set(
        self,
        component: ComponentRef,
        variable: VariableRef,
        value: str,
        attribute: Attribute = Attribute.ACTUAL,
    ) -> SetResult:
        """Apply one SetVariableData from the CSMS (B05); ReadOnly refuses it."""
        entry, unknown = self._resolve(component, variable)
        if entry is None:
            if unknown == "component":
                return SetResult(SetStatus.UNKNOWN_COMPONENT)
            return SetResult(SetStatus.UNKNOWN_VARIABLE)
        if attribute not in entry.values:
            return SetResult(SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        where = full_key(entry.component, entry.variable)
        if entry.spec.mutability is Mutability.READ_ONLY:
            return SetResult(SetStatus.REJECTED, f"{where} is ReadOnly")
        if not entry.implemented:
            # Enabling a block cpagent does not implement would promise what it cannot do.
            return SetResult(SetStatus.REJECTED, f"cpagent does not implement {where}")
        try:
            stored = from_wire(where, entry.spec, value)
        except ValueRejected as exc:
            return SetResult(SetStatus.REJECTED, str(exc))
        entry.values[attribute] = stored
        if attribute is Attribute.ACTUAL:
            self._changed[entry.component, entry.variable] = stored
        if entry.spec.reboot_required:
            return SetResult(SetStatus.REBOOT_REQUIRED)
        return SetResult(SetStatus.ACCEPTED)

    def update(self, component: ComponentRef, variable: VariableRef, value: str) -> None:
        """The station reports a run-time value (AvailabilityState, DateTime, Problem, ...).

        It bypasses mutability (the station owns its state) but not the characteristics.

        Raises:
            LookupError: no such variable; ValueRejected: a value outside its characteristics.
        """
        entry, unknown = self._resolve(component, variable)
        if entry is None:
            raise LookupError(f"no {unknown} {full_key(component, variable)}")
        stored = from_wire(full_key(entry.component, entry.variable), entry.spec, value)
        entry.values[Attribute.ACTUAL] = stored

    def actual(self, component: ComponentRef, variable: VariableRef) -> Stored | None:
        """The Actual value for the agent's own use (a Secret for a WriteOnly variable).

        Raises:
            LookupError: no such variable.
        """
        entry, unknown = self._resolve(component, variable)
        if entry is None:
            raise LookupError(f"no {unknown} {full_key(component, variable)}")
        return entry.values[Attribute.ACTUAL]

    def withdraw_secret(self, component: ComponentRef, variable: VariableRef) -> None:
        """Take back a WriteOnly value the CSMS set (a BasicAuthPassword that could not
        connect, when there was none before): the variable has no value again and
        :meth:`changed` no longer lists it.

        Raises:
            LookupError: no such variable, or one that is not WriteOnly.
        """
        entry, unknown = self._resolve(component, variable)
        if entry is None:
            raise LookupError(f"no {unknown} {full_key(component, variable)}")
        if entry.spec.mutability is not Mutability.WRITE_ONLY:
            raise LookupError(f"{full_key(component, variable)} is not WriteOnly")
        entry.values[Attribute.ACTUAL] = None
        self._changed.pop((entry.component, entry.variable), None)

    # -- reports --------------------------------------------------------------------------

    def _record(self, entry: _Entry) -> ReportRecord:
        attributes = tuple(
            AttributeRecord(
                attr,
                None if isinstance(value, Secret) else value,
                entry.spec.mutability,
            )
            for attr, value in entry.values.items()
        )
        spec = entry.spec
        return ReportRecord(
            entry.component,
            entry.variable,
            attributes,
            spec.data_type,
            spec.unit,
            spec.values_list,
            spec.min_limit,
            spec.max_limit,
        )

    def _ordered(self) -> list[_Entry]:
        def order(entry: _Entry) -> tuple[str, str, int, int, str, str]:
            c, v = entry.component, entry.variable
            return (
                c.name,
                c.instance or "",
                c.evse or 0,
                c.connector or 0,
                v.name,
                v.instance or "",
            )

        return sorted(self._entries.values(), key=order)

    def base_report(self, base: ReportBase = ReportBase.FULL_INVENTORY) -> list[ReportRecord]:
        """GetBaseReport (B07) as plain records, in a stable order.

        FullInventory is every variable; ConfigurationInventory those the CSMS may set (not
        ReadOnly); SummaryInventory the availability and problem state of each component
        (AvailabilityState, Available, Problem).
        """
        return [self._record(e) for e in self._ordered() if _in_base(e, base)]

    def report(
        self,
        criteria: Iterable[Criterion] = (),
        selectors: Iterable[Selector] = (),
    ) -> list[ReportRecord]:
        """GetReport (B08): the variables of components meeting any criterion, narrowed to
        the selectors' component-variables when there are selectors.

        A component meets Active or Problem when it has that variable and it is true; it
        meets Available or Enabled when that variable is true or it has none (UNSURE: Part 2
        leaves components without the variable open; cpagent treats them as always
        available and enabled).
        """
        wanted = tuple(criteria)
        chosen = tuple(selectors)
        return [
            self._record(e)
            for e in self._ordered()
            if (not wanted or any(self._meets(e.component, c) for c in wanted))
            and (not chosen or any(_selected(e, s) for s in chosen))
        ]

    def _meets(self, component: ComponentRef, criterion: Criterion) -> bool:
        entry = self._entries.get((component, VariableRef(criterion.value)))
        if entry is None:
            return criterion in (Criterion.AVAILABLE, Criterion.ENABLED)
        return entry.values.get(Attribute.ACTUAL) == "true"


def _in_base(entry: _Entry, base: ReportBase) -> bool:
    if base is ReportBase.CONFIGURATION_INVENTORY:
        return entry.spec.mutability is not Mutability.READ_ONLY
    if base is ReportBase.SUMMARY_INVENTORY:
        return entry.variable.name in SUMMARY_VARIABLES
    return True


def _selected(entry: _Entry, selector: Selector) -> bool:
    c, v = entry.component, entry.variable
    if (canonical_component(selector.component) or selector.component) != c.name:
        return False
    for want, have in (
        (selector.instance, c.instance),
        (selector.evse, c.evse),
        (selector.connector, c.connector),
    ):
        if want is not None and want != have:
            return False
    if selector.variable is not None:
        if (canonical_variable(c.name, selector.variable) or selector.variable) != v.name:
            return False
        if selector.variable_instance is not None and selector.variable_instance != v.instance:
            return False
    return True


__all__ = [
    "Address",
    "AttributeRecord",
    "Criterion",
    "DeviceModel",
    "DeviceModelConfigError",
    "GetResult",
    "GetStatus",
    "ReportBase",
    "ReportRecord",
    "Selector",
    "SetResult",
    "SetStatus",
]
