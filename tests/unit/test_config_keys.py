"""OCPP 1.6 configuration keys: registry, normalisation and effective values."""

from __future__ import annotations

import logging

import pytest

from cpagent.protocol.v16.config_keys import (
    KEYS,
    LOCAL_AUTH_LIST_MAX,
    SUPPORTED_FEATURE_PROFILES,
    SUPPORTED_MEASURANDS,
    Access,
    ConfigurationKeys,
    KeySpec,
    lookup,
    normalize,
    read_initial,
)
from cpagent.transfer import SCHEMES

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
FIRMWARE_KEYS = ["SupportedFileTransferProtocols"]
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
PROFILE_KEYS = (
    LOCAL_AUTH_LIST_KEYS + FIRMWARE_KEYS + RESERVATION_KEYS + SMART_CHARGING_KEYS + SECURITY_KEYS
)


def test_registry_holds_the_core_then_the_profile_keys_in_spec_order() -> None:
    assert list(KEYS) == CORE_KEYS + PROFILE_KEYS
    assert all(spec.name == name for name, spec in KEYS.items())


def test_reservation_key() -> None:
    """§9.4: ReserveConnectorZeroSupported is the agent's to report: off unless the config
    turns it on; the CSMS cannot change it."""
    spec = KEYS["ReserveConnectorZeroSupported"]
    assert (spec.kind, spec.access, spec.default) == ("bool", Access.READ, "false")
    keys = make_keys()
    assert keys.get_bool("ReserveConnectorZeroSupported") is False
    assert keys.check_change("ReserveConnectorZeroSupported", "true")[0] == "Rejected"
    on = make_keys(initial={"ReserveConnectorZeroSupported": "true"})
    assert on.get_bool("ReserveConnectorZeroSupported") is True


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
    assert make_keys(initial={"SendLocalListMaxLength": "5"}).get_int("SendLocalListMaxLength") == 5
    with pytest.raises(ValueError, match="at most 1000"):
        make_keys(initial={"SendLocalListMaxLength": "5000"})


def test_every_default_is_canonical() -> None:
    for spec in KEYS.values():
        if spec.default is not None:
            assert normalize(spec, spec.default) == spec.default, spec.name


def test_computed_keys_and_access() -> None:
    assert KEYS["NumberOfConnectors"].default is None
    assert KEYS["SupportedFeatureProfiles"].default == SUPPORTED_FEATURE_PROFILES
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
    with pytest.raises(ValueError, match="the agent's value is 2"):
        make_keys(initial={"NumberOfConnectors": "3"})
    with pytest.raises(ValueError, match="unknown"):
        make_keys(initial={"VendorKey": "3"})


def test_keys_are_case_insensitive_and_kept_under_the_spec_spelling() -> None:
    """Key names are CiString50Type: any case names the key; values live under the spec's
    spelling, so listeners, the store and the answers always see that one."""
    keys = make_keys(initial={"connectiontimeout": "45"}, persisted={"HEARTBEATINTERVAL": "90"})
    assert lookup("connectionTIMEOUT") is KEYS["ConnectionTimeOut"]
    assert lookup("Authorization\u212aey") is None  # KELVIN SIGN lower-cases to "k"
    assert lookup(7) is None
    assert keys.known("heartbeatinterval")
    assert keys.get("CONNECTIONTIMEOUT") == "45" and keys.get("heartbeatinterval") == "90"
    assert keys.get_int("ConnectionTimeOut") == 45
    seen: list[tuple[str, str]] = []
    keys.subscribe(lambda name, value: seen.append((name, value)))
    assert keys.check_change("connectionTimeout", "30") == ("Accepted", "30")
    keys.apply("connectionTimeout", "30")
    assert seen == [("ConnectionTimeOut", "30")]
    assert ("ConnectionTimeOut" in dict((s.name, v) for s, v in keys.items())) is True
    assert keys.check_change("numberofconnectors", "3")[0] == "Rejected"
    assert keys.check_change("NoSuchKey", "3")[0] == "NotSupported"


def test_report_lists_every_key_and_shows_no_secret() -> None:
    """GetConfiguration: every known key is listed, AuthorizationKey and CpoName without a
    value while they are unset, AuthorizationKey never with one; an unknown name comes back
    as asked, a known one once under the spec's spelling."""
    keys = make_keys()
    listed, unknown = keys.report()
    assert [spec.name for spec, _ in listed] == list(KEYS) and unknown == []
    shown = {spec.name: value for spec, value in listed}
    assert shown["AuthorizationKey"] is None and shown["CpoName"] is None
    assert shown["HeartbeatInterval"] == "300"

    keys.apply("AuthorizationKey", "00112233445566778899aabbccddeeff")
    keys.apply("CpoName", "Example CPO")
    listed, unknown = keys.report(["authorizationkey", "CPONAME", "Foo", "CpoName", "fOO"])
    assert [(spec.name, value) for spec, value in listed] == [
        ("AuthorizationKey", None),
        ("CpoName", "Example CPO"),
    ]
    assert unknown == ["Foo", "fOO"]


def test_file_transfer_protocols() -> None:
    """§9.3: SupportedFileTransferProtocols names the URL schemes the transfers handle."""
    spec = KEYS["SupportedFileTransferProtocols"]
    assert (spec.kind, spec.access) == ("csl", Access.READ)
    keys = make_keys()
    assert sorted(keys.get_list("SupportedFileTransferProtocols")) == sorted(
        scheme.upper() for scheme in SCHEMES
    )
    assert keys.check_change("SupportedFileTransferProtocols", "HTTP")[0] == "Rejected"


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


# -- [ocpp16] values of read-only keys -------------------------------------------------------


def judged(raw: dict[str, object]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    result = read_initial(raw, COMPUTED)
    return result.values, dict(result.problems), result.unknown


def test_a_key_list_from_another_charger_with_the_agents_values_is_accepted() -> None:
    """Every read-only key the agent reports, in the forms a TOML file holds it."""
    values, problems, unknown = judged(
        {
            "NumberOfConnectors": 2,
            "SupportedFeatureProfiles": "Core,FirmwareManagement",
            "SupportedFeatureProfilesMaxLength": "6",
            "ConnectorSwitch3to1PhaseSupported": "FALSE",
            "ReserveConnectorZeroSupported": False,
            "AdditionalRootCertificateCheck": "false",
            "SupportedFileTransferProtocols": ["HTTPS", "FTP", "HTTP"],
            "ChargingScheduleAllowedChargingRateUnit": "Power, Current",
            "GetConfigurationMaxKeys": "+100",
            "MeterValuesSampledDataMaxLength": 8,
            "LocalAuthListMaxLength": 1000,
            "ChargeProfileMaxStackLevel": "010",
            "CertificateSignedMaxChainSize": 10000,
            "VendorSpecificKey": "x",
        }
    )
    assert problems == {} and unknown == ["VendorSpecificKey"]
    assert values["SupportedFileTransferProtocols"] == "FTP,HTTP,HTTPS"  # the agent's own
    assert values["ChargeProfileMaxStackLevel"] == "10"
    assert values["ConnectorSwitch3to1PhaseSupported"] == "false"


def test_lower_limits_are_accepted_and_higher_ones_refused() -> None:
    values, problems, _ = judged(
        {
            "GetConfigurationMaxKeys": 20,
            "ChargeProfileMaxStackLevel": 0,
            "MaxChargingProfilesInstalled": 5,
            "ChargingScheduleAllowedChargingRateUnit": ["Current"],
            "ReserveConnectorZeroSupported": True,
            "LocalAuthListMaxLength": 5000,
            "ChargingScheduleMaxPeriods": 0,
        }
    )
    assert values == {
        "GetConfigurationMaxKeys": "20",
        "ChargeProfileMaxStackLevel": "0",
        "MaxChargingProfilesInstalled": "5",
        "ChargingScheduleAllowedChargingRateUnit": "Current",
        "ReserveConnectorZeroSupported": "true",
    }
    assert problems == {
        "LocalAuthListMaxLength": "the agent supports at most 1000",
        "ChargingScheduleMaxPeriods": "must be an integer >= 1",
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("NumberOfConnectors", 3, "the agent's value is 2; only that value can be set"),
        (
            "SupportedFeatureProfiles",
            "Core,Reservation",
            "the agent's value is Core,FirmwareManagement; only that value can be set",
        ),
        (
            "SupportedFeatureProfiles",
            "Core,Core,FirmwareManagement",
            "the agent's value is Core,FirmwareManagement; only that value can be set",
        ),
        (
            "ConnectorSwitch3to1PhaseSupported",
            True,
            "the agent's value is false; only that value can be set",
        ),
        (
            "AdditionalRootCertificateCheck",
            "true",
            "the agent's value is false; only that value can be set",
        ),
        (
            "SupportedFileTransferProtocols",
            "FTP,FTPS,HTTP,HTTPS",
            "the agent's value is FTP,HTTP,HTTPS; only that value can be set",
        ),
        (
            "ChargingScheduleAllowedChargingRateUnit",
            "",
            "must be one or more of Current,Power, the agent's values",
        ),
        (
            "SupportedFeatureProfilesMaxLength",
            10,
            "the agent's value is 6; only that value can be set",
        ),
        ("GetConfigurationMaxKeys", 0, "must be an integer >= 1"),
        ("ReserveConnectorZeroSupported", "yes", "must be true or false"),
    ],
)
def test_another_value_of_a_read_only_key_is_refused_naming_the_agents(
    name: str, value: object, reason: str
) -> None:
    values, problems, _ = judged({name: value})
    assert values == {} and problems == {name: reason}


def test_a_lowered_max_length_bounds_its_list() -> None:
    """A *MaxLength lowered in [ocpp16] holds the list in the config, from the store and
    from the CSMS alike."""
    _, problems, _ = judged(
        {"MeterValuesSampledDataMaxLength": 2, "MeterValuesSampledData": "Voltage,SoC,Frequency"}
    )
    assert problems == {
        "MeterValuesSampledData": "must have at most 2 items (MeterValuesSampledDataMaxLength)"
    }
    keys = make_keys(
        initial={"MeterValuesSampledDataMaxLength": "2", "ConnectorPhaseRotationMaxLength": "1"},
        persisted={"MeterValuesSampledData": "Voltage,SoC,Frequency"},
    )
    assert keys.get("MeterValuesSampledData") == "Energy.Active.Import.Register"
    assert keys.check_change("MeterValuesSampledData", "Voltage,SoC,Frequency") == (
        "Rejected",
        "must have at most 2 items (MeterValuesSampledDataMaxLength)",
    )
    assert keys.check_change("MeterValuesSampledData", "Voltage,SoC")[0] == "Accepted"
    assert keys.check_change("ConnectorPhaseRotation", "1.RST,2.RST")[0] == "Rejected"


def test_a_key_given_twice_in_two_spellings_is_a_problem() -> None:
    values, problems, _ = judged({"HeartbeatInterval": 10, "heartbeatinterval": 20})
    assert values == {"HeartbeatInterval": "10"}
    assert problems == {
        "heartbeatinterval": "HeartbeatInterval is already set (as HeartbeatInterval)"
    }
