"""Between the device model's values and the store's rows (``device_variables``).

:meth:`DeviceModel.changed <cpagent.protocol.v201.device_model.DeviceModel.changed>` and
:meth:`~cpagent.protocol.v201.device_model.DeviceModel.load_persisted` speak of a value by
its component key and variable key (``("EVSE@1", "Power")``, the ``[ocpp201]`` syntax); the
store keys it by OCPP's fields (:class:`~cpagent.store.DeviceVariableKey`), so that a row
reads as the CSMS addressed it. These functions turn one into the other, and reveal a
WriteOnly value (a :class:`~cpagent.protocol.v201.values.Secret`) at the one place it must
be written: the store.

At start::

    warnings = model.load_persisted(from_store(store.device_variables()))

after a SetVariables whose Accepted values are ``accepted`` (component key, variable key)::

    changed = model.changed()
    store.set_device_variables(to_store({key: changed[key] for key in accepted}))
"""

from __future__ import annotations

from collections.abc import Mapping

from cpagent.protocol.v201.addressing import (
    ComponentRef,
    VariableRef,
    component_key,
    parse_component_key,
    parse_variable_key,
    variable_key,
)
from cpagent.protocol.v201.catalogue import Attribute
from cpagent.protocol.v201.values import Secret, Stored
from cpagent.store import DeviceVariableKey

__all__ = ["from_store", "store_key", "to_store"]


def store_key(
    comp_key: str, var_key: str, attribute: Attribute = Attribute.ACTUAL
) -> DeviceVariableKey:
    """The store's key of a value the model names by its component and variable keys.

    Raises:
        AddressError: a key that names no standardized component or variable.
    """
    ref = parse_component_key(comp_key)
    var = parse_variable_key(ref.name, var_key)
    return DeviceVariableKey(
        component=ref.name,
        component_instance=ref.instance,
        evse=ref.evse,
        connector=ref.connector,
        variable=var.name,
        variable_instance=var.instance,
        attribute=attribute.value,
    )


def to_store(values: Mapping[tuple[str, str], Stored]) -> dict[DeviceVariableKey, str]:
    """Rows for :meth:`Store.set_device_variables <cpagent.store.Store.set_device_variables>`
    from values as :meth:`DeviceModel.changed` gives them; a Secret is revealed."""
    return {
        store_key(comp_key, var_key): value.reveal() if isinstance(value, Secret) else value
        for (comp_key, var_key), value in values.items()
    }


def from_store(rows: Mapping[DeviceVariableKey, str]) -> dict[tuple[str, str], str]:
    """The Actual values of :meth:`Store.device_variables
    <cpagent.store.Store.device_variables>` as :meth:`DeviceModel.load_persisted` takes them.

    Names are not checked here: ``load_persisted`` skips, with a warning, a value that no
    longer fits the model (an EVSE removed, a name dropped by an upgrade). Other attributes
    than Actual are left out: the model persists only Actual values.
    """
    return {
        (
            component_key(
                ComponentRef(key.component, key.component_instance, key.evse, key.connector)
            ),
            variable_key(VariableRef(key.variable, key.variable_instance)),
        ): value
        for key, value in rows.items()
        if key.attribute == Attribute.ACTUAL.value
    }
