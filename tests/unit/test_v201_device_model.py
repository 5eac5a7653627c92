"""OCPP 2.0.1 device model: catalogue, values, keys, and the model's answers to the CSMS."""

from __future__ import annotations

import datetime as dt

import ocpp.v201.enums as enums
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpagent.protocol.v201.addressing import (
    AddressError,
    ComponentRef,
    VariableRef,
    component_key,
    parse_component_key,
    parse_variable_key,
    variable_key,
)
from cpagent.protocol.v201.catalogue import (
    CATALOGUE,
    IMPLEMENTED,
    KNOWN,
    MAX_SET_VALUE_LENGTH,
    Attribute,
    DataType,
    Mutability,
    VariableSpec,
)
from cpagent.protocol.v201.device_model import (
    Criterion,
    DeviceModel,
    DeviceModelConfigError,
    GetStatus,
    ReportBase,
    Selector,
    SetStatus,
)
from cpagent.protocol.v201.values import (
    Secret,
    ValueRejected,
    from_toml,
    from_wire,
    render,
)

# The variables Part 2 marks required for the blocks cpagent implements, written out
# independently of the catalogue so that a lost or demoted entry fails here.
REQUIRED = {
    "OCPPCommCtrlr": {
        "FileTransferProtocols",
        "MessageTimeout",
        "MessageAttemptInterval",
        "MessageAttempts",
        "NetworkConfigurationPriority",
        "NetworkProfileConnectionAttempts",
        "OfflineThreshold",
        "ResetRetries",
        "UnlockOnEVSideDisconnect",
    },
    "AuthCtrlr": {"AuthorizeRemoteStart", "LocalAuthorizeOffline", "LocalPreAuthorize"},
    "LocalAuthListCtrlr": {"Enabled", "Entries", "ItemsPerMessage", "BytesPerMessage"},
    "TxCtrlr": {
        "EVConnectionTimeOut",
        "StopTxOnEVSideDisconnect",
        "StopTxOnInvalidId",
        "TxStartPoint",
        "TxStopPoint",
    },
    "SampledDataCtrlr": {
        "TxEndedMeasurands",
        "TxEndedInterval",
        "TxStartedMeasurands",
        "TxUpdatedMeasurands",
        "TxUpdatedInterval",
    },
    "AlignedDataCtrlr": {"Measurands", "Interval", "TxEndedMeasurands", "TxEndedInterval"},
    "SecurityCtrlr": {"OrganizationName", "CertificateEntries", "SecurityProfile"},
    "DeviceDataCtrlr": {"ItemsPerMessage", "BytesPerMessage"},
    "ClockCtrlr": {"DateTime", "TimeSource"},
    "ChargingStation": {"AvailabilityState", "Available"},
    "EVSE": {"AvailabilityState", "Available", "Power", "SupplyPhases"},
    "Connector": {"AvailabilityState", "Available", "ConnectorType", "SupplyPhases"},
}

STATION = ComponentRef("OCPPCommCtrlr")
HEARTBEAT = VariableRef("HeartbeatInterval")


def spec(component: str, variable: str) -> VariableSpec:
    return CATALOGUE[component].variables[variable]


def model(evses: int = 2, **tables: dict[str, object]) -> DeviceModel:
    built, _warnings = DeviceModel.from_config(evses, tables)
    return built


def problems(evses: int, tables: dict[str, object]) -> tuple[str, ...]:
    with pytest.raises(DeviceModelConfigError) as caught:
        DeviceModel.from_config(evses, tables)
    return caught.value.problems


# -- catalogue ------------------------------------------------------------------------------


def library_known() -> dict[str, frozenset[str]]:
    """Every standardized component name with its variable names, from the library's enums
    (ControllerComponentName, PhysicalComponentName, ``<Component>VariableName``)."""
    known: dict[str, frozenset[str]] = {}
    for component in (*enums.ControllerComponentName, *enums.PhysicalComponentName):
        name = str(component.value)
        cls = getattr(enums, f"{name}VariableName", None)
        known[name] = frozenset(str(m.value) for m in cls) if isinstance(cls, type) else frozenset()
    return known


def test_the_standardized_names_are_the_ocpp_enums() -> None:
    library = library_known()
    assert list(KNOWN) == list(library)
    for component, names in library.items():
        assert KNOWN[component] == names, (
            component,
            sorted(names - KNOWN[component]),
            sorted(KNOWN[component] - names),
        )


def test_every_name_comes_from_the_ocpp_enums() -> None:
    components = {c.value for c in enums.ControllerComponentName} | {
        c.value for c in enums.PhysicalComponentName
    }
    assert set(KNOWN) == components
    for component in CATALOGUE.values():
        assert component.name in components
        for name in component.variables:
            assert name in KNOWN[component.name], f"{component.name}.{name}"


def test_instances_come_from_the_ocpp_enums() -> None:
    assert spec("OCPPCommCtrlr", "MessageAttempts").instances == ("TransactionEvent",)
    comm = {i.value for i in enums.OCPPCommCtrlrInstanceName}
    for name in ("MessageAttempts", "MessageAttemptInterval", "MessageTimeout"):
        assert set(spec("OCPPCommCtrlr", name).instances) <= comm, name
    assert set(spec("DeviceDataCtrlr", "ItemsPerMessage").instances) == {
        i.value for i in enums.DeviceDataCtrlrInstanceName
    }


@pytest.mark.parametrize("component", sorted(REQUIRED))
def test_each_implemented_component_has_its_required_variables(component: str) -> None:
    assert component in IMPLEMENTED
    variables = CATALOGUE[component].variables
    for name in REQUIRED[component]:
        assert name in variables, name
        assert variables[name].required, name


def test_catalogue_entries_are_consistent() -> None:
    for component in CATALOGUE.values():
        for var in component.variables.values():
            where = f"{component.name}.{var.name}"
            lists = (DataType.OPTION_LIST, DataType.SEQUENCE_LIST, DataType.MEMBER_LIST)
            assert bool(var.values_list) == (var.data_type in lists), where
            assert Attribute.ACTUAL in var.attributes, where
            if var.default is not None:
                from_wire(where, var, var.default)  # the factory value fits its own rules
            if var.mutability is Mutability.WRITE_ONLY:
                assert var.default is None, where


def test_the_write_only_variable_is_basic_auth_password() -> None:
    write_only = [
        (c.name, v.name)
        for c in CATALOGUE.values()
        for v in c.variables.values()
        if v.mutability is Mutability.WRITE_ONLY
    ]
    assert write_only == [("SecurityCtrlr", "BasicAuthPassword")]


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "variable", "toml", "wire"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", 300, "300"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "0300", "300"),
        ("EVSE", "Power", 11000.5, "11000.5"),
        ("EVSE", "Power", 7400, "7400"),
        ("EVSE", "Power", "1.50", "1.5"),
        ("AuthCtrlr", "LocalPreAuthorize", True, "true"),
        ("AuthCtrlr", "LocalPreAuthorize", "False", "false"),
        ("AuthCacheCtrlr", "Policy", "FIFO", "FIFO"),
        ("TxCtrlr", "TxStartPoint", "EVConnected, Authorized", "EVConnected,Authorized"),
        ("ClockCtrlr", "TimeSource", "NTP,Heartbeat", "NTP,Heartbeat"),
        ("SecurityCtrlr", "OrganizationName", "Example Charging", "Example Charging"),
        (
            "ClockCtrlr",
            "NextTimeOffsetTransitionDateTime",
            dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC),
            "2026-03-29T01:00:00.000Z",
        ),
        (
            "ClockCtrlr",
            "NextTimeOffsetTransitionDateTime",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T01:00:00.000Z",
        ),
    ],
)
def test_toml_values_become_canonical_wire_strings(
    component: str, variable: str, toml: object, wire: str
) -> None:
    assert from_toml("x", spec(component, variable), toml) == wire


@pytest.mark.parametrize(
    ("component", "variable", "toml", "why"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", True, "expects integer, got a boolean"),
        ("OCPPCommCtrlr", "HeartbeatInterval", 1.5, "expects integer"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "5min", "not an integer"),
        ("OCPPCommCtrlr", "HeartbeatInterval", 0, "below the minimum 1"),
        ("SecurityCtrlr", "SecurityProfile", 4, "above the maximum 3"),
        ("EVSE", "Power", float("nan"), "not a finite number"),
        ("EVSE", "Power", "1e3", "not a decimal"),
        ("AuthCtrlr", "LocalPreAuthorize", "yes", "not true or false"),
        ("AuthCtrlr", "LocalPreAuthorize", 1, "expects boolean"),
        ("AuthCacheCtrlr", "Policy", "MRU", "not one of LRU,LFU,FIFO,CUSTOM"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,Plugged", "Plugged not among"),
        ("TxCtrlr", "TxStartPoint", "Authorized,Authorized", "names a member twice"),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", "Energy", "Energy not among"),
        ("AuthCtrlr", "MasterPassGroupId", "g" * 37, "more than 36"),
        ("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "2026-03-29T01:00", "no time zone"),
        ("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "tomorrow", "not an RFC 3339"),
        ("SecurityCtrlr", "OrganizationName", ["a"], "got a list"),
    ],
)
def test_values_outside_the_characteristics_are_rejected_with_the_reason(
    component: str, variable: str, toml: object, why: str
) -> None:
    with pytest.raises(ValueRejected) as caught:
        from_toml(f"{component}.{variable}", spec(component, variable), toml)
    assert str(caught.value).startswith(f"{component}.{variable}: ")
    assert why in str(caught.value)


def test_a_wire_value_longer_than_set_variables_allows_is_rejected() -> None:
    long = "a" * (MAX_SET_VALUE_LENGTH + 1)
    with pytest.raises(ValueRejected, match="longer than 1000"):
        from_wire("SecurityCtrlr.OrganizationName", spec("SecurityCtrlr", "OrganizationName"), long)


def test_a_secret_is_never_shown_and_never_rendered() -> None:
    password = "correct horse battery staple"
    stored = from_wire("p", spec("SecurityCtrlr", "BasicAuthPassword"), password)
    assert isinstance(stored, Secret)
    assert stored.reveal() == password
    for shown in (repr(stored), str(stored), f"{stored}", repr([stored]), repr({"k": stored})):
        assert password not in shown
    with pytest.raises(PermissionError):
        render(stored)


def test_basic_auth_password_length_is_16_to_40() -> None:
    var = spec("SecurityCtrlr", "BasicAuthPassword")
    with pytest.raises(ValueRejected, match="fewer than 16"):
        from_wire("p", var, "short")
    with pytest.raises(ValueRejected, match="more than 40"):
        from_wire("p", var, "x" * 41)


@given(st.integers(min_value=1, max_value=10**12))
def test_integer_round_trip(number: int) -> None:
    var = spec("OCPPCommCtrlr", "HeartbeatInterval")
    wire = render(from_toml("h", var, number))
    assert int(wire) == number
    assert from_wire("h", var, wire) == wire


@given(st.decimals(min_value=0, max_value=22000, places=3, allow_nan=False))
def test_decimal_round_trip(number: object) -> None:
    var = spec("EVSE", "Power")
    wire = render(from_wire("p", var, str(number)))
    assert from_wire("p", var, wire) == wire
    assert float(wire) == pytest.approx(float(str(number)))


@given(
    st.lists(st.sampled_from(spec("SampledDataCtrlr", "TxUpdatedMeasurands").values_list)).map(
        lambda members: list(dict.fromkeys(members))
    )
)
def test_member_list_round_trip(members: list[str]) -> None:
    var = spec("SampledDataCtrlr", "TxUpdatedMeasurands")
    wire = render(from_wire("m", var, ",".join(members)))
    assert (wire.split(",") if wire else []) == members
    assert from_wire("m", var, wire) == wire


@given(st.datetimes(timezones=st.just(dt.UTC)))
def test_datetime_round_trip(moment: dt.datetime) -> None:
    var = spec("ClockCtrlr", "NextTimeOffsetTransitionDateTime")
    wire = render(from_toml("d", var, moment))
    assert wire.endswith("Z")
    assert from_wire("d", var, wire) == wire


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ref"),
    [
        ("OCPPCommCtrlr", ComponentRef("OCPPCommCtrlr")),
        ("ocppcommctrlr", ComponentRef("OCPPCommCtrlr")),
        ("Controller:main", ComponentRef("Controller", "main")),
        ("EVSE@1", ComponentRef("EVSE", evse=1)),
        ("Connector@2.1", ComponentRef("Connector", evse=2, connector=1)),
        ("Controller:main@1.1", ComponentRef("Controller", "main", 1, 1)),
        ("TokenReader:front@2", ComponentRef("TokenReader", "front", 2)),
    ],
)
def test_component_keys_parse_and_print_back(key: str, ref: ComponentRef) -> None:
    assert parse_component_key(key) == ref
    assert parse_component_key(component_key(ref)) == ref


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("NoSuchCtrlr", "'NoSuchCtrlr' is not a standardized OCPP 2.0.1 component"),
        ("EVSE@", "is not a component key"),
        ("EVSE@1.", "is not a component key"),
        ("EVSE@x", "is not a component key"),
        ("EVSE@1:main", "is not a component key"),
        ("EVSE@0", "evseId starts at 1"),
        ("Connector@1.0", "connectorId starts at 1"),
        ("Controller:" + "i" * 51, "longer than 50"),
    ],
)
def test_bad_component_keys_are_named(key: str, why: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_component_key(key)
    assert repr(key) in str(caught.value)
    assert why in str(caught.value)


def test_variable_keys_parse_and_print_back() -> None:
    ref = parse_variable_key("OCPPCommCtrlr", "messageattempts:TransactionEvent")
    assert ref == VariableRef("MessageAttempts", "TransactionEvent")
    assert variable_key(ref) == "MessageAttempts:TransactionEvent"
    assert variable_key(parse_variable_key("EVSE", "Power")) == "Power"
    with pytest.raises(AddressError, match="'Bogus' is not a variable of OCPPCommCtrlr"):
        parse_variable_key("OCPPCommCtrlr", "Bogus")


# -- the model from the config --------------------------------------------------------------


def test_interface_md_example_is_valid() -> None:
    built, warnings = DeviceModel.from_config(
        2,
        {
            "OCPPCommCtrlr": {
                "HeartbeatInterval": 300,
                "MessageAttempts:TransactionEvent": 3,
                "MessageAttemptInterval:TransactionEvent": 60,
            },
            "SampledDataCtrlr": {
                "TxUpdatedInterval": 60,
                "TxUpdatedMeasurands": "Energy.Active.Import.Register,Power.Active.Import",
            },
            "AuthCtrlr": {"LocalPreAuthorize": True},
            "EVSE@1": {},
            "DeviceDataCtrlr": {"ItemsPerMessage:GetReport": 4},
            "SecurityCtrlr": {"SecurityProfile": 1},
            "ReservationCtrlr": {"Available": False},
        },
    )
    assert warnings == [
        "ocpp201.ReservationCtrlr.Available: cpagent does not implement ReservationCtrlr; "
        "value reported only"
    ]
    got = built.get(ComponentRef("DeviceDataCtrlr"), VariableRef("ItemsPerMessage", "GetReport"))
    assert (got.status, got.value) == (GetStatus.ACCEPTED, "4")
    got = built.get(ComponentRef("AuthCtrlr"), VariableRef("LocalPreAuthorize"))
    assert got.value == "true"


def test_unimplemented_standard_names_are_accepted_with_a_warning() -> None:
    built, warnings = DeviceModel.from_config(
        1, {"TokenReader:front": {"Enabled": True}, "OCPPCommCtrlr": {"FieldLength": 5}}
    )
    assert len(warnings) == 2
    assert all("cpagent does not implement" in w for w in warnings)
    got = built.get(ComponentRef("TokenReader", "front"), VariableRef("Enabled"))
    assert (got.status, got.value) == (GetStatus.ACCEPTED, "true")
    refused = built.set(ComponentRef("TokenReader", "front"), VariableRef("Enabled"), "false")
    assert refused.status is SetStatus.REJECTED


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        ({"Nope": {"X": 1}}, "ocpp201.Nope: 'Nope' is not a standardized"),
        ({"OCPPCommCtrlr": {"Nope": 1}}, "ocpp201.OCPPCommCtrlr.Nope: 'Nope' is not a variable"),
        ({"EVSE@0": {"Power": 1}}, "ocpp201.EVSE@0: evseId starts at 1"),
        ({"HeartbeatInterval": 5}, "ocpp201.HeartbeatInterval: a value must be inside"),
        (
            {"SecurityCtrlr": {"BasicAuthPassword": "0123456789abcdef"}},
            "ocpp201.SecurityCtrlr.BasicAuthPassword: BasicAuthPassword is WriteOnly",
        ),
        (
            {"OCPPCommCtrlr": {"HeartbeatInterval": -1}},
            "ocpp201.OCPPCommCtrlr.HeartbeatInterval: -1 is below the minimum 1",
        ),
        (
            {"OCPPCommCtrlr": {"MessageAttempts": 3}},
            "ocpp201.OCPPCommCtrlr.MessageAttempts: MessageAttempts needs an instance",
        ),
        (
            {"OCPPCommCtrlr": {"MessageAttempts:Heartbeat": 3}},
            "needs an instance, one of TransactionEvent",
        ),
        ({"OCPPCommCtrlr": {"HeartbeatInterval:x": 3}}, "HeartbeatInterval has no instances"),
        ({"EVSE@3": {"Power": 1}}, "ocpp201.EVSE@3.Power: there is no EVSE 3 (EVSEs 1-2)"),
        ({"EVSE": {"Power": 1}}, "EVSE belongs to an EVSE: write EVSE@evseId"),
        ({"Connector@1": {"ConnectorType": "cCCS2"}}, "needs @evseId.1"),
        ({"Connector@1.2": {"ConnectorType": "cCCS2"}}, "needs @evseId.1"),
        ({"TxCtrlr@1": {"StopTxOnInvalidId": True}}, "TxCtrlr is station-wide: leave out @1"),
        ({"TxCtrlr:a": {"StopTxOnInvalidId": True}}, "a single TxCtrlr, without instances"),
        ({"TxCtrlr": {"TxStopPoint": {"a": 1}}}, "TxCtrlr.TxStopPoint: must be a single value"),
        ({"TokenReader@9": {"Enabled": True}}, "there is no EVSE 9"),
        # A variable cpagent does not offer still needs its component's scope right.
        ({"EVSE": {"DCCurrent": 5}}, "ocpp201.EVSE.DCCurrent: EVSE belongs to an EVSE"),
    ],
)
def test_check_config_rejections_name_the_key(tables: dict[str, object], problem: str) -> None:
    found = problems(2, tables)
    assert any(problem in p for p in found), found


def test_all_problems_are_reported_at_once() -> None:
    found = problems(
        1, {"Nope": {}, "OCPPCommCtrlr": {"HeartbeatInterval": "x", "OfflineThreshold": -5}}
    )
    assert len(found) == 3


# -- GetVariables / SetVariables ------------------------------------------------------------


def test_get_outcomes() -> None:
    m = model()
    assert m.get(STATION, HEARTBEAT).status is GetStatus.ACCEPTED
    assert m.get(ComponentRef("NoSuch"), HEARTBEAT).status is GetStatus.UNKNOWN_COMPONENT
    assert m.get(ComponentRef("EVSE", evse=3), VariableRef("Power")).status is (
        GetStatus.UNKNOWN_COMPONENT
    )
    assert m.get(ComponentRef("EVSE"), VariableRef("Power")).status is (GetStatus.UNKNOWN_COMPONENT)
    assert m.get(ComponentRef("MonitoringCtrlr"), VariableRef("Enabled")).status is (
        GetStatus.UNKNOWN_COMPONENT
    )
    assert m.get(STATION, VariableRef("NoSuch")).status is GetStatus.UNKNOWN_VARIABLE
    # Known to the spec, not offered by cpagent: unknown to this station.
    assert m.get(STATION, VariableRef("FieldLength")).status is GetStatus.UNKNOWN_VARIABLE
    assert m.get(STATION, VariableRef("MessageAttempts")).status is GetStatus.UNKNOWN_VARIABLE
    assert m.get(STATION, HEARTBEAT, Attribute.TARGET).status is (
        GetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    )


def test_a_request_address_reads_as_its_references_do_and_follows_the_value() -> None:
    m = model(2)
    names = [(r.component, r.variable) for r in m.base_report()]
    spelt = [(ComponentRef(c.name.upper(), c.instance, c.evse, c.connector), v) for c, v in names]
    odd = [
        (ComponentRef("Connector", evse=2), VariableRef("connectortype")),
        (ComponentRef("EVSE"), VariableRef("Power")),
        (ComponentRef("EVSE", evse=3), VariableRef("Power")),
        (ComponentRef("NoSuch"), HEARTBEAT),
        (STATION, VariableRef("NoSuch")),
        (ComponentRef("SecurityCtrlr"), VariableRef("BasicAuthPassword")),
    ]
    for _ in range(2):  # the second time as remembered
        for c, v in names + spelt + odd:
            for attribute in Attribute:
                address = (c.name, c.instance, c.evse, c.connector, v.name, v.instance)
                assert m.get_at(address, attribute.value) == m.get(c, v, attribute), address
    address = ("OCPPCommCtrlr", None, None, None, "heartbeatinterval", None)
    assert m.set(STATION, HEARTBEAT, "61").status is SetStatus.ACCEPTED
    assert m.get_at(address, "Actual").value == "61"
    m.update(STATION, HEARTBEAT, "62")
    assert m.get_at(address, "Actual").value == "62"


def test_a_variable_may_exist_with_and_without_an_instance() -> None:
    m = model(ClockCtrlr={"TimeOffset": "+01:00", "TimeOffset:NextTransition": "+02:00"})
    clock = ComponentRef("ClockCtrlr")
    assert m.get(clock, VariableRef("TimeOffset")).value == "+01:00"
    assert m.get(clock, VariableRef("TimeOffset", "nexttransition")).value == "+02:00"
    assert m.get(clock, VariableRef("TimeOffset", "Other")).status is GetStatus.UNKNOWN_VARIABLE


def test_names_and_instances_are_case_insensitive() -> None:
    got = model().get(
        ComponentRef("ocppcommctrlr"), VariableRef("messageattempts", "transactionevent")
    )
    assert (got.status, got.value) == (GetStatus.ACCEPTED, "3")


def test_connector_without_connector_id_is_the_evses_only_connector() -> None:
    got = model().get(ComponentRef("Connector", evse=2), VariableRef("ConnectorType"))
    assert got.status is GetStatus.ACCEPTED


def test_evse_and_connector_exist_per_evse() -> None:
    m = model(3)
    for n in (1, 2, 3):
        assert m.get(ComponentRef("EVSE", evse=n), VariableRef("Available")).value == "true"
        connector = ComponentRef("Connector", evse=n, connector=1)
        assert m.get(connector, VariableRef("Available")).value == "true"
    assert m.get(ComponentRef("EVSE", evse=4), VariableRef("Available")).status is (
        GetStatus.UNKNOWN_COMPONENT
    )


def test_set_outcomes() -> None:
    m = model()
    assert m.set(STATION, HEARTBEAT, "60").status is SetStatus.ACCEPTED
    assert m.get(STATION, HEARTBEAT).value == "60"
    rejected = m.set(STATION, HEARTBEAT, "soon")
    assert rejected.status is SetStatus.REJECTED
    assert rejected.reason == "OCPPCommCtrlr.HeartbeatInterval: 'soon' is not an integer"
    assert m.get(STATION, HEARTBEAT).value == "60"
    assert m.set(ComponentRef("X"), HEARTBEAT, "1").status is SetStatus.UNKNOWN_COMPONENT
    assert m.set(STATION, VariableRef("X"), "1").status is SetStatus.UNKNOWN_VARIABLE
    assert m.set(STATION, HEARTBEAT, "1", Attribute.MAX_SET).status is (
        SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    )
    identity = m.set(ComponentRef("SecurityCtrlr"), VariableRef("Identity"), "CP-2")
    assert identity.status is SetStatus.REBOOT_REQUIRED


def test_the_csms_cannot_switch_on_a_block_cpagent_does_not_implement() -> None:
    m = model()
    smart = ComponentRef("SmartChargingCtrlr")
    refused = m.set(smart, VariableRef("Enabled"), "true")
    assert refused.status is SetStatus.REJECTED
    assert refused.reason == "cpagent does not implement SmartChargingCtrlr.Enabled"
    assert m.get(smart, VariableRef("Enabled")).value == "false"
    assert m.get(ComponentRef("ReservationCtrlr"), VariableRef("Available")).value == "false"


def test_read_only_binds_the_csms_not_the_installer() -> None:
    items = VariableRef("ItemsPerMessage", "GetReport")
    m = model(DeviceDataCtrlr={"ItemsPerMessage:GetReport": 4})
    refused = m.set(ComponentRef("DeviceDataCtrlr"), items, "100")
    assert refused.status is SetStatus.REJECTED
    assert refused.reason == "DeviceDataCtrlr.ItemsPerMessage:GetReport is ReadOnly"
    assert m.get(ComponentRef("DeviceDataCtrlr"), items).value == "4"
    assert m.changed() == {}


def test_write_only_is_set_by_the_csms_and_never_read() -> None:
    m = model()
    password = "0123456789abcdefGHIJ"
    ref, var = ComponentRef("SecurityCtrlr"), VariableRef("BasicAuthPassword")
    assert m.set(ref, var, password).status is SetStatus.ACCEPTED
    got = m.get(ref, var)
    assert (got.status, got.value, got.write_only) == (GetStatus.REJECTED, None, True)
    stored = m.actual(ref, var)
    assert isinstance(stored, Secret)
    assert stored.reveal() == password
    records = [r for r in m.base_report() if r.variable == var]
    assert [a.value for a in records[0].attributes] == [None]
    assert password not in repr(m.changed())
    assert password not in repr(m.base_report())
    assert password not in repr(got)


def test_changed_values_persist_and_win_over_the_config() -> None:
    m = model(OCPPCommCtrlr={"HeartbeatInterval": 120})
    m.set(STATION, HEARTBEAT, "45")
    m.set(ComponentRef("SecurityCtrlr"), VariableRef("BasicAuthPassword"), "p" * 20)
    saved = {
        key: value.reveal() if isinstance(value, Secret) else value
        for key, value in m.changed().items()
    }
    assert saved == {
        ("OCPPCommCtrlr", "HeartbeatInterval"): "45",
        ("SecurityCtrlr", "BasicAuthPassword"): "p" * 20,
    }
    again = model(OCPPCommCtrlr={"HeartbeatInterval": 120})
    assert again.load_persisted(saved) == []
    assert again.get(STATION, HEARTBEAT).value == "45"
    assert again.changed().keys() == saved.keys()


def test_persisted_values_that_no_longer_fit_are_skipped_with_a_warning() -> None:
    m = model(1)
    warnings = m.load_persisted(
        {
            ("EVSE@2", "Power"): "1",
            ("OCPPCommCtrlr", "HeartbeatInterval"): "x",
            ("Gone", "Thing"): "1",
        }
    )
    assert len(warnings) == 3
    assert all(w.endswith("; skipped") for w in warnings)
    assert m.get(STATION, HEARTBEAT).value == "300"


def test_station_updates_bypass_mutability_but_not_characteristics() -> None:
    m = model()
    evse = ComponentRef("EVSE", evse=1)
    assert m.get(evse, VariableRef("AvailabilityState")).value is None
    m.update(evse, VariableRef("AvailabilityState"), "Occupied")
    assert m.get(evse, VariableRef("AvailabilityState")).value == "Occupied"
    with pytest.raises(ValueRejected):
        m.update(evse, VariableRef("AvailabilityState"), "Charging")
    with pytest.raises(LookupError):
        m.update(ComponentRef("EVSE", evse=7), VariableRef("Available"), "true")
    assert m.changed() == {}


# -- reports --------------------------------------------------------------------------------


def test_full_and_configuration_inventories() -> None:
    m = model(2)
    full = m.base_report()
    configurable = m.base_report(ReportBase.CONFIGURATION_INVENTORY)
    assert len(configurable) < len(full)
    assert all(a.mutability is not Mutability.READ_ONLY for r in configurable for a in r.attributes)
    keys = [(component_key(r.component), variable_key(r.variable)) for r in full]
    assert len(keys) == len(set(keys))
    assert ("Connector@2.1", "ConnectorType") in keys
    assert ("DeviceDataCtrlr", "BytesPerMessage:SetVariables") in keys
    heartbeat = next(r for r in full if r.variable == HEARTBEAT)
    assert (heartbeat.data_type, heartbeat.unit) == (DataType.INTEGER, "s")
    assert heartbeat.attributes[0].value == "300"


def test_summary_inventory_is_availability_and_problems() -> None:
    summary = model(1).base_report(ReportBase.SUMMARY_INVENTORY)
    assert {r.variable.name for r in summary} == {"AvailabilityState", "Available", "Problem"}
    assert {component_key(r.component) for r in summary} >= {
        "ChargingStation",
        "EVSE@1",
        "Connector@1.1",
    }


def test_report_by_component_criteria() -> None:
    m = model(2)
    m.update(ComponentRef("EVSE", evse=2), VariableRef("Problem"), "true")
    problem = m.report([Criterion.PROBLEM])
    assert {component_key(r.component) for r in problem} == {"EVSE@2"}
    enabled = m.report([Criterion.ENABLED])
    names = {r.component.name for r in enabled}
    assert "SmartChargingCtrlr" not in names  # Enabled = false
    assert "TxCtrlr" in names  # no Enabled variable: cannot be disabled
    assert m.report([Criterion.ACTIVE]) == []


def test_report_by_component_variable() -> None:
    m = model(2)
    evse2 = m.report(selectors=[Selector("evse", evse=2)])
    assert {component_key(r.component) for r in evse2} == {"EVSE@2"}
    one = m.report(selectors=[Selector("OCPPCommCtrlr", variable="messageattempts")])
    assert [variable_key(r.variable) for r in one] == ["MessageAttempts:TransactionEvent"]
    both = m.report([Criterion.PROBLEM], [Selector("EVSE"), Selector("OCPPCommCtrlr")])
    assert both == []
