"""OCPP 1.6 configuration keys: registry, normalisation and effective values."""

from __future__ import annotations

import logging

import pytest

from cpagent.protocol.v16.config_keys import (
    KEYS,
    LOCAL_AUTH_LIST_MAX,
    SUPPORTED_MEASURANDS,
    Access,
    ConfigurationKeys,
    KeySpec,
    normalize,
)

COMPUTED = {
    "NumberOfConnectors": "2",
    "SupportedFeatureProfiles": "Core,FirmwareManagement",
    "ConnectorSwitch3to1PhaseSupported": "false",
}


def reason(spec: KeySpec, value: object) -> str:
    """The reason normalize() gives for refusing ``value``."""
    with pytest.raises(ValueError) as info:
        normalize(spec, value)
    return str(info.value)


def make_keys(
    initial: dict[str, str] | None = None, persisted: dict[str, str] | None = None
) -> ConfigurationKeys:
    return ConfigurationKeys(initial=initial or {}, persisted=persisted or {}, computed=COMPUTED)


# -- registry ------------------------------------------------------------------------------

CORE_KEYS = [
    "AllowOfflineTxForUnknownId",
    "AuthorizationCacheEnabled",
    "AuthorizeRemoteTxRequests",
    "BlinkRepeat",
    "ClockAlignedDataInterval",
    "ConnectionTimeOut",
    "ConnectorPhaseRotation",
    "ConnectorPhaseRotationMaxLength",
    "GetConfigurationMaxKeys",
    "HeartbeatInterval",
    "LightIntensity",
    "LocalAuthorizeOffline",
    "LocalPreAuthorize",
    "MaxEnergyOnInvalidId",
    "MeterValuesAlignedData",
    "MeterValuesAlignedDataMaxLength",
    "MeterValuesSampledData",
    "MeterValuesSampledDataMaxLength",
    "MeterValueSampleInterval",
    "MinimumStatusDuration",
    "NumberOfConnectors",
    "ResetRetries",
    "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId",
    "StopTxnAlignedData",
    "StopTxnAlignedDataMaxLength",
    "StopTxnSampledData",
    "StopTxnSampledDataMaxLength",
    "SupportedFeatureProfiles",
    "SupportedFeatureProfilesMaxLength",
    "TransactionMessageAttempts",
    "TransactionMessageRetryInterval",
    "UnlockConnectorOnEVSideDisconnect",
    "WebSocketPingInterval",
]


LOCAL_AUTH_LIST_KEYS = ["LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength"]
RESERVATION_KEYS = ["ReserveConnectorZeroSupported"]
SMART_CHARGING_KEYS = [
    "ChargeProfileMaxStackLevel",
    "ChargingScheduleAllowedChargingRateUnit",
    "ChargingScheduleMaxPeriods",
    "ConnectorSwitch3to1PhaseSupported",
    "MaxChargingProfilesInstalled",
]
SECURITY_KEYS = [
    "AdditionalRootCertificateCheck",
    "AuthorizationKey",
    "CertificateSignedMaxChainSize",
    "CertificateStoreMaxLength",
    "CpoName",
    "SecurityProfile",
]
PROFILE_KEYS = LOCAL_AUTH_LIST_KEYS + RESERVATION_KEYS + SMART_CHARGING_KEYS + SECURITY_KEYS


def test_registry_holds_the_core_then_the_profile_keys_in_spec_order() -> None:
    assert list(KEYS) == CORE_KEYS + PROFILE_KEYS
    assert all(spec.name == name for name, spec in KEYS.items())


def test_reservation_key() -> None:
    """§9.4: ReserveConnectorZeroSupported is the agent's to report; it does not offer it."""
    spec = KEYS["ReserveConnectorZeroSupported"]
    assert (spec.kind, spec.access, spec.default) == ("bool", Access.READ, "false")
    keys = make_keys()
    assert keys.get_bool("ReserveConnectorZeroSupported") is False
    assert keys.check_change("ReserveConnectorZeroSupported", "true")[0] == "Rejected"
    with pytest.raises(ValueError, match="read-only"):
        make_keys(initial={"ReserveConnectorZeroSupported": "true"})


def test_smart_charging_keys() -> None:
    """§9.4: the limits SetChargingProfile is held to, read-only, with the agent's values."""
    keys = make_keys()
    assert [keys.get(name) for name in SMART_CHARGING_KEYS] == [
        "10",
        "Current,Power",
        "48",
        "false",
        "20",
    ]
    assert all(KEYS[name].access is Access.READ for name in SMART_CHARGING_KEYS)
    assert keys.check_change("ChargeProfileMaxStackLevel", "3")[0] == "Rejected"


def test_security_keys() -> None:
    """The security extension: SecurityProfile 0..3, the write-only AuthorizationKey of 16
    to 20 bytes in hex, CpoName free text."""
    keys = make_keys()
    assert keys.get("SecurityProfile") == "0"
    assert keys.check_change("SecurityProfile", "4")[0] == "Rejected"
    assert KEYS["AuthorizationKey"].secret and KEYS["AuthorizationKey"].writable
    assert keys.get("AuthorizationKey") is None
    key = "00112233445566778899AABBCCDDEEFF"  # 16 bytes
    assert keys.check_change("AuthorizationKey", key) == ("Accepted", key.lower())
    for bad in ("0011", key + "00112233445566778899", "not hex at all, not hex at all!"):
        status, reason = keys.check_change("AuthorizationKey", bad)
        assert (status, reason) == ("Rejected", "must be 16 to 20 bytes in hexadecimal"), bad
    assert keys.check_change("CpoName", "Example CPO") == ("Accepted", "Example CPO")
    keys.apply("AuthorizationKey", key)
    keys.unset("AuthorizationKey")
    assert keys.get("AuthorizationKey") is None


def test_local_auth_list_keys() -> None:
    """§9.2: the CSMS may switch the list off; the limits are the agent's to report."""
    enabled = KEYS["LocalAuthListEnabled"]
    assert (enabled.kind, enabled.access, enabled.default) == ("bool", Access.READ_WRITE, "true")
    for name in ("LocalAuthListMaxLength", "SendLocalListMaxLength"):
        spec = KEYS[name]
        assert (spec.kind, spec.access) == ("int", Access.READ)
        assert spec.default == str(LOCAL_AUTH_LIST_MAX)
    keys = make_keys()
    assert keys.get_bool("LocalAuthListEnabled") is True
    assert keys.check_change("LocalAuthListEnabled", "False") == ("Accepted", "false")
    assert keys.check_change("LocalAuthListMaxLength", "5") == (
        "Rejected",
        "read-only; the agent sets it",
    )
    with pytest.raises(ValueError, match="read-only"):
        make_keys(initial={"SendLocalListMaxLength": "5"})


def test_every_default_is_canonical() -> None:
    for spec in KEYS.values():
        if spec.default is not None:
            assert normalize(spec, spec.default) == spec.default, spec.name


def test_computed_keys_and_access() -> None:
    assert KEYS["NumberOfConnectors"].default is None
    assert KEYS["SupportedFeatureProfiles"].default is None
    assert KEYS["NumberOfConnectors"].access is Access.READ
    assert KEYS["HeartbeatInterval"].access is Access.READ_WRITE
    assert KEYS["GetConfigurationMaxKeys"].access is Access.READ
    assert Access.READ.value == "R" and Access.READ_WRITE.value == "RW"


def test_measurand_list_limits_match_their_max_length_keys() -> None:
    for name in (
        "MeterValuesAlignedData",
        "MeterValuesSampledData",
        "StopTxnAlignedData",
        "StopTxnSampledData",
    ):
        spec = KEYS[name]
        assert spec.allowed == SUPPORTED_MEASURANDS
        assert str(spec.max_items) == KEYS[f"{name}MaxLength"].default


# -- normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [(True, "true"), (False, "false"), ("TRUE", "true"), ("False", "false"), (" true ", "true")],
)
def test_bool_canonical(value: object, canonical: str) -> None:
    assert normalize(KEYS["LocalAuthorizeOffline"], value) == canonical


@pytest.mark.parametrize("value", ["yes", "1", 1, 0, "", None, ["true"]])
def test_bool_rejects(value: object) -> None:
    assert reason(KEYS["LocalAuthorizeOffline"], value) == "must be true or false"


@pytest.mark.parametrize(("value", "canonical"), [(300, "300"), ("300", "300"), (" 0 ", "0")])
def test_int_canonical(value: object, canonical: str) -> None:
    assert normalize(KEYS["HeartbeatInterval"], value) == canonical


@pytest.mark.parametrize("value", [-1, "-1", "abc", "1.5", 1.5, True, "", "0x10", None])
def test_int_rejects(value: object) -> None:
    assert reason(KEYS["HeartbeatInterval"], value) == "must be an integer >= 0"


def test_int_respects_maximum() -> None:
    spec = KEYS["LightIntensity"]
    assert normalize(spec, "100") == "100"
    assert reason(spec, 101) == "must be an integer between 0 and 100"


def test_int_must_fit_32_bits() -> None:
    assert reason(KEYS["HeartbeatInterval"], 2**31) == "must be an integer <= 2147483647"


def test_csl_from_list_and_string() -> None:
    spec = KEYS["MeterValuesSampledData"]
    assert normalize(spec, ["Voltage", " SoC "]) == "Voltage,SoC"
    assert normalize(spec, "Voltage, SoC") == "Voltage,SoC"
    assert normalize(spec, "") == ""
    assert normalize(spec, []) == ""


def test_csl_rejects_unsupported_measurand_naming_it() -> None:
    assert (
        reason(KEYS["MeterValuesSampledData"], "Voltage,Foo")
        == "'Foo' is not a supported measurand"
    )


def test_csl_max_items() -> None:
    spec = KEYS["MeterValuesSampledData"]
    eight = sorted(SUPPORTED_MEASURANDS)
    assert normalize(spec, eight) == ",".join(eight)
    assert reason(spec, [*eight, "Voltage"]) == "must have at most 8 items"


@pytest.mark.parametrize("value", ["Voltage,,SoC", ["Voltage", ""]])
def test_csl_rejects_empty_items(value: object) -> None:
    assert reason(KEYS["MeterValuesSampledData"], value) == "must not contain empty items"


@pytest.mark.parametrize("value", [3, True, ["Voltage", 3], None])
def test_csl_rejects_other_types(value: object) -> None:
    assert (
        reason(KEYS["MeterValuesSampledData"], value)
        == "must be a list of strings or a comma-separated string"
    )


def test_csl_free_text_members() -> None:
    assert normalize(KEYS["ConnectorPhaseRotation"], "0.RST, 1.RST") == "0.RST,1.RST"


def test_str_kind() -> None:
    spec = KeySpec("Example", "str", Access.READ_WRITE, "")
    assert normalize(spec, "any text") == "any text"
    assert reason(spec, 5) == "must be a string"
    assert reason(spec, "x" * 501) == "must be at most 500 characters"


# -- ConfigurationKeys ---------------------------------------------------------------------


def test_defaults_and_computed_values() -> None:
    keys = make_keys()
    assert keys.get("HeartbeatInterval") == "300"
    assert keys.get_int("NumberOfConnectors") == 2
    assert keys.get_list("SupportedFeatureProfiles") == ["Core", "FirmwareManagement"]
    assert keys.get_bool("AuthorizationCacheEnabled") is True
    assert keys.get_list("StopTxnAlignedData") == []


def test_precedence_persisted_over_initial_over_default() -> None:
    keys = make_keys(
        initial={"HeartbeatInterval": "120", "MeterValueSampleInterval": "30"},
        persisted={"HeartbeatInterval": "90"},
    )
    assert keys.get("HeartbeatInterval") == "90"
    assert keys.get("MeterValueSampleInterval") == "30"
    assert keys.get("ConnectionTimeOut") == "60"


def test_values_are_canonicalized_on_the_way_in() -> None:
    keys = make_keys(persisted={"LocalPreAuthorize": "TRUE"})
    assert keys.get("LocalPreAuthorize") == "true"


def test_invalid_persisted_value_is_ignored_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        keys = make_keys(
            initial={"HeartbeatInterval": "120"},
            persisted={
                "HeartbeatInterval": "soon",
                "NoSuchKey": "1",
                "NumberOfConnectors": "9",
            },
        )
    assert keys.get("HeartbeatInterval") == "120"
    assert keys.get("NumberOfConnectors") == "2"
    assert keys.get("NoSuchKey") is None
    text = caplog.text
    assert "HeartbeatInterval" in text and "NoSuchKey" in text and "NumberOfConnectors" in text


def test_invalid_initial_value_is_a_bug() -> None:
    with pytest.raises(ValueError, match="HeartbeatInterval"):
        make_keys(initial={"HeartbeatInterval": "soon"})
    with pytest.raises(ValueError, match="read-only"):
        make_keys(initial={"NumberOfConnectors": "3"})


def test_keys_are_case_sensitive() -> None:
    keys = make_keys()
    assert keys.known("HeartbeatInterval")
    assert not keys.known("heartbeatinterval")
    assert keys.get("heartbeatinterval") is None
    assert keys.check_change("heartbeatinterval", "10")[0] == "NotSupported"


def test_items_in_registry_order() -> None:
    items = make_keys(initial={"BlinkRepeat": "5"}).items()
    unset = {"AuthorizationKey", "CpoName"}  # no default: no value until set
    assert [spec.name for spec, _ in items] == [
        name for name in CORE_KEYS + PROFILE_KEYS if name not in unset
    ]
    assert dict((spec.name, value) for spec, value in items)["BlinkRepeat"] == "5"


def test_items_leave_out_keys_without_a_value() -> None:
    keys = ConfigurationKeys(initial={}, persisted={}, computed={})
    names = [spec.name for spec, _ in keys.items()]
    assert "NumberOfConnectors" not in names
    assert keys.get("NumberOfConnectors") is None
    with pytest.raises(KeyError):
        keys.get_int("NumberOfConnectors")


def test_typed_getters_check_the_kind() -> None:
    keys = make_keys()
    with pytest.raises(TypeError):
        keys.get_int("LocalAuthorizeOffline")
    with pytest.raises(KeyError):
        keys.get_bool("NoSuchKey")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("NoSuchKey", "1", ("NotSupported", "unknown OCPP 1.6 configuration key")),
        ("NumberOfConnectors", "3", ("Rejected", "read-only; the agent sets it")),
        ("HeartbeatInterval", "-5", ("Rejected", "must be an integer >= 0")),
        ("MeterValuesSampledData", "Foo", ("Rejected", "'Foo' is not a supported measurand")),
        ("HeartbeatInterval", " 60", ("Accepted", "60")),
        ("LocalAuthorizeOffline", "TRUE", ("Accepted", "true")),
        ("MeterValuesSampledData", "Voltage, SoC", ("Accepted", "Voltage,SoC")),
    ],
)
def test_check_change(name: str, value: str, expected: tuple[str, str]) -> None:
    keys = make_keys()
    assert keys.check_change(name, value) == expected
    assert keys.get("HeartbeatInterval") == "300"  # judging changes nothing


def test_apply_sets_value_and_notifies_listeners() -> None:
    keys = make_keys()
    seen: list[tuple[str, str]] = []
    keys.subscribe(lambda name, value: seen.append((name, value)))
    keys.apply("HeartbeatInterval", "60")
    assert keys.get_int("HeartbeatInterval") == 60
    assert seen == [("HeartbeatInterval", "60")]
    keys.apply("HeartbeatInterval", "60")  # no change, no notification
    assert seen == [("HeartbeatInterval", "60")]


def test_apply_refuses_what_check_change_rejects() -> None:
    keys = make_keys()
    with pytest.raises(ValueError, match="read-only"):
        keys.apply("NumberOfConnectors", "4")
    with pytest.raises(ValueError, match="unknown"):
        keys.apply("NoSuchKey", "4")


def test_set_runtime_allows_agent_owned_values() -> None:
    keys = make_keys(persisted={"HeartbeatInterval": "90"})
    seen: list[tuple[str, str]] = []
    keys.subscribe(lambda name, value: seen.append((name, value)))
    keys.set_runtime("HeartbeatInterval", "600")
    keys.set_runtime("NumberOfConnectors", "3")
    assert keys.get("HeartbeatInterval") == "600"
    assert keys.get("NumberOfConnectors") == "3"
    assert seen == [("HeartbeatInterval", "600"), ("NumberOfConnectors", "3")]
    with pytest.raises(ValueError):
        keys.set_runtime("HeartbeatInterval", "later")


def test_failing_listener_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    keys = make_keys()
    seen: list[str] = []

    def broken(name: str, value: str) -> None:
        raise RuntimeError("boom")

    keys.subscribe(broken)
    keys.subscribe(lambda name, value: seen.append(value))
    with caplog.at_level(logging.ERROR):
        keys.apply("BlinkRepeat", "2")
    assert seen == ["2"]
    assert keys.get("BlinkRepeat") == "2"
    assert "BlinkRepeat" in caplog.text
