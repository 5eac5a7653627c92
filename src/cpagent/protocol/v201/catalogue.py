"""The standardized components and variables of OCPP 2.0.1 (Part 2, appendix 3).

Two layers, because the spec gives names for far more than cpagent implements:

* :data:`KNOWN` maps every standardized component name to the set of its standardized
  variable names, as the ``ocpp`` library's v201 enums list them
  (:mod:`~cpagent.protocol.v201.standard_names`). A name in :data:`KNOWN` but not in
  :data:`CATALOGUE` belongs to a functional block cpagent does not implement: the config may
  still give it a value (with a warning).
* :data:`CATALOGUE` holds, for the components cpagent implements (and the
  ``Available``/``Enabled`` switches of some it does not, so that a CSMS can read that they are
  off), each variable's characteristics, mutability, attributes, whether the spec requires it,
  its instances and cpagent's factory value. Its names are written as the spec spells them;
  the unit tests check that each is one of :data:`KNOWN` (and the instance names the
  library's).

Characteristics were read from Part 2's tables (edition 3 errata where known) and checked
against independent implementations where possible; entries marked ``UNSURE`` in a comment
are cpagent's best reading and should be confirmed against the spec's CSV appendix.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cpagent.protocol.v201 import enums
from cpagent.protocol.v201.standard_names import KNOWN
from cpagent.station.model import SUPPORTED_TX_POINTS, TxPoint


class DataType(enum.StrEnum):
    """VariableCharacteristics.dataType (DataEnumType)."""

    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATETIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"


class Mutability(enum.StrEnum):
    """VariableAttribute.mutability: whom it binds is the CSMS, never the installer."""

    READ_ONLY = "ReadOnly"
    READ_WRITE = "ReadWrite"
    WRITE_ONLY = "WriteOnly"


class Attribute(enum.StrEnum):
    """AttributeEnumType."""

    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class Scope(enum.Enum):
    """Where a component lives: once per station, once per EVSE, or once per connector."""

    STATION = "station"
    EVSE = "evse"
    CONNECTOR = "connector"


@dataclass(frozen=True)
class VariableSpec:
    """One standardized variable of one component, with what cpagent offers of it.

    ``default`` is cpagent's factory Actual value as a wire string, or None when the value is
    only known at run time (the station fills it in, for instance DateTime or
    AvailabilityState). ``instances`` is empty for a variable without instances; otherwise
    the variable exists once per instance name, and without one only if None is among them
    (ClockCtrlr.TimeOffset and TimeOffset:NextTransition). ``reboot_required``
    makes a CSMS change answer RebootRequired: cpagent applies it on its next start.
    """

    name: str
    data_type: DataType
    mutability: Mutability
    required: bool
    default: str | None
    unit: str | None = None
    values_list: tuple[str, ...] = ()
    min_limit: float | None = None
    max_limit: float | None = None
    instances: tuple[str | None, ...] = ()
    attributes: tuple[Attribute, ...] = (Attribute.ACTUAL,)
    reboot_required: bool = False


@dataclass(frozen=True)
class ComponentSpec:
    """A component cpagent describes: its scope, whether its block is implemented, variables."""

    name: str
    scope: Scope
    implemented: bool
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)


#: The measurands a MemberList of SampledDataCtrlr / AlignedDataCtrlr may name.
MEASURANDS: Final[tuple[str, ...]] = enums.MEASURANDS

#: TxStartPoint / TxStopPoint members (Part 2, TxCtrlr; E01-E10) the station has facts for:
#: no parking bay sensor, no signed meter data.
TX_POINTS: Final[tuple[str, ...]] = tuple(
    str(point) for point in TxPoint if point in SUPPORTED_TX_POINTS
)

#: AvailabilityState options of ChargingStation, EVSE and Connector.
AVAILABILITY_STATES: Final[tuple[str, ...]] = (
    "Available",
    "Occupied",
    "Reserved",
    "Unavailable",
    "Faulted",
)

#: DeviceDataCtrlr and its message instances.
MESSAGE_INSTANCES: Final[tuple[str, ...]] = (
    "GetReport",
    "GetVariables",
    "SetVariables",
)

#: Longest attributeValue a SetVariables request may carry (SetVariableDataType, 1000).
MAX_SET_VALUE_LENGTH: Final = 1000
#: Longest value a report or GetVariables result may carry (VariableAttributeType, 2500).
MAX_REPORT_VALUE_LENGTH: Final = 2500

#: Capacity (maxLimit, bytes) cpagent reports for the authorization cache and local list.
STORAGE_BYTES: Final = 1048576

_RO = Mutability.READ_ONLY
_RW = Mutability.READ_WRITE
_WO = Mutability.WRITE_ONLY
_T = DataType


def _v(
    name: str,
    data_type: DataType,
    mutability: Mutability,
    required: bool,
    default: str | None,
    *,
    unit: str | None = None,
    values_list: tuple[str, ...] = (),
    min_limit: float | None = None,
    max_limit: float | None = None,
    instances: tuple[str | None, ...] = (),
    attributes: tuple[Attribute, ...] = (Attribute.ACTUAL,),
    reboot_required: bool = False,
) -> VariableSpec:
    return VariableSpec(
        name,
        data_type,
        mutability,
        required,
        default,
        unit=unit,
        values_list=values_list,
        min_limit=min_limit,
        max_limit=max_limit,
        instances=instances,
        attributes=attributes,
        reboot_required=reboot_required,
    )


def _measurands(name: str, default: str) -> VariableSpec:
    """A required, CSMS-writable list of measurands (the sampled and aligned data sets)."""
    return _v(
        name, DataType.MEMBER_LIST, Mutability.READ_WRITE, True, default, values_list=MEASURANDS
    )


def _component(
    name: str, scope: Scope, implemented: bool, *variables: VariableSpec
) -> ComponentSpec:
    return ComponentSpec(name, scope, implemented, {v.name: v for v in variables})


_TE = ("TransactionEvent",)
_S = "s"

_COMPONENTS: tuple[ComponentSpec, ...] = (
    _component(
        "OCPPCommCtrlr",
        Scope.STATION,
        True,
        _v("ActiveNetworkProfile", _T.INTEGER, _RO, False, "1"),
        _v(
            "FileTransferProtocols",
            _T.MEMBER_LIST,
            _RO,
            True,
            "HTTP,HTTPS",
            values_list=("FTP", "FTPS", "HTTP", "HTTPS", "SFTP"),
        ),
        _v("HeartbeatInterval", _T.INTEGER, _RW, False, "300", unit=_S, min_limit=1),
        # UNSURE: Part 2 lists MessageTimeout:Default as ReadOnly in some editions and
        # ReadWrite in others; cpagent offers it ReadOnly (its own timeout is fixed).
        _v(
            "MessageTimeout",
            _T.INTEGER,
            _RO,
            True,
            "30",
            unit=_S,
            instances=("Default",),
        ),
        _v(
            "MessageAttemptInterval",
            _T.INTEGER,
            _RW,
            True,
            "60",
            unit=_S,
            min_limit=0,
            instances=_TE,
        ),
        _v("MessageAttempts", _T.INTEGER, _RW, True, "3", min_limit=0, instances=_TE),
        _v("MinimumStatusDuration", _T.INTEGER, _RW, False, "0", unit=_S, min_limit=0),
        # valuesList is the configured slots: cpagent has slots 0-7 (UNSURE: the number
        # of slots is the station's choice; the adapter may narrow it).
        _v(
            "NetworkConfigurationPriority",
            _T.SEQUENCE_LIST,
            _RW,
            True,
            "1",
            values_list=tuple(str(i) for i in range(8)),
        ),
        _v("NetworkProfileConnectionAttempts", _T.INTEGER, _RW, True, "3", min_limit=1),
        _v("OfflineThreshold", _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v(
            "PublicKeyWithSignedMeterValue",
            _T.OPTION_LIST,
            _RW,
            False,
            "Never",
            values_list=("Never", "OncePerTransaction", "EveryMeterValue"),
        ),
        _v("QueueAllMessages", _T.BOOLEAN, _RW, False, "false"),
        _v("ResetRetries", _T.INTEGER, _RW, True, "2", min_limit=0),
        # UNSURE: whether the three RetryBackOff variables are required (edition 3 lists
        # them under B "Reconnecting"); cpagent offers all three.
        _v("RetryBackOffRandomRange", _T.INTEGER, _RW, True, "10", unit=_S, min_limit=0),
        _v("RetryBackOffRepeatTimes", _T.INTEGER, _RW, True, "8", min_limit=0),
        _v("RetryBackOffWaitMinimum", _T.INTEGER, _RW, True, "5", unit=_S, min_limit=0),
        _v("UnlockOnEVSideDisconnect", _T.BOOLEAN, _RW, True, "true"),
        _v("WebSocketPingInterval", _T.INTEGER, _RW, False, "30", unit=_S, min_limit=0),
    ),
    _component(
        "AuthCtrlr",
        Scope.STATION,
        True,
        _v("Enabled", _T.BOOLEAN, _RW, False, "true"),
        _v("AdditionalInfoItemsPerMessage", _T.INTEGER, _RO, False, "0"),
        _v("AuthorizeRemoteStart", _T.BOOLEAN, _RW, True, "true"),
        _v("LocalAuthorizeOffline", _T.BOOLEAN, _RW, True, "true"),
        _v("LocalPreAuthorize", _T.BOOLEAN, _RW, True, "false"),
        _v("MasterPassGroupId", _T.STRING, _RW, False, "", max_limit=36),
        _v("OfflineTxForUnknownIdEnabled", _T.BOOLEAN, _RW, False, "false"),
        _v("DisableRemoteAuthorization", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "AuthCacheCtrlr",
        Scope.STATION,
        True,
        _v("Available", _T.BOOLEAN, _RO, False, "true"),
        _v("Enabled", _T.BOOLEAN, _RW, False, "true"),
        _v("LifeTime", _T.INTEGER, _RW, False, "86400", unit=_S, min_limit=0),
        _v(
            "Policy",
            _T.OPTION_LIST,
            _RW,
            False,
            "LRU",
            values_list=("LRU", "LFU", "FIFO", "CUSTOM"),
        ),
        # Storage: Actual is the bytes in use (the station updates it), maxLimit the capacity.
        _v("Storage", _T.INTEGER, _RO, False, "0", unit="B", max_limit=STORAGE_BYTES),
        _v("DisablePostAuthorize", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "LocalAuthListCtrlr",
        Scope.STATION,
        True,
        _v("Available", _T.BOOLEAN, _RO, False, "true"),
        _v("Enabled", _T.BOOLEAN, _RW, True, "true"),
        # Entries: Actual is the ids in the list now, maxLimit the most it holds (the same
        # limit the 1.6 adapter gives as LocalAuthListMaxLength).
        _v("Entries", _T.INTEGER, _RO, True, "0", min_limit=0, max_limit=1000),
        _v("ItemsPerMessage", _T.INTEGER, _RO, True, "100", min_limit=1),
        _v("BytesPerMessage", _T.INTEGER, _RO, True, "65536", min_limit=1),
        _v("Storage", _T.INTEGER, _RO, False, "0", unit="B", max_limit=STORAGE_BYTES),
        _v("DisablePostAuthorize", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "TxCtrlr",
        Scope.STATION,
        True,
        _v("EVConnectionTimeOut", _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v("MaxEnergyOnInvalidId", _T.INTEGER, _RW, False, "0", unit="Wh", min_limit=0),
        _v("StopTxOnEVSideDisconnect", _T.BOOLEAN, _RW, True, "true"),
        _v("StopTxOnInvalidId", _T.BOOLEAN, _RW, True, "true"),
        _v("TxBeforeAcceptedEnabled", _T.BOOLEAN, _RW, False, "false"),
        _v(
            "TxStartPoint",
            _T.MEMBER_LIST,
            _RW,
            True,
            "PowerPathClosed",
            values_list=TX_POINTS,
        ),
        _v(
            "TxStopPoint",
            _T.MEMBER_LIST,
            _RW,
            True,
            "EVConnected,Authorized",
            values_list=TX_POINTS,
        ),
    ),
    _component(
        "SampledDataCtrlr",
        Scope.STATION,
        True,
        _v("Available", _T.BOOLEAN, _RO, False, "true"),
        _v("Enabled", _T.BOOLEAN, _RW, False, "true"),
        _v("SignReadings", _T.BOOLEAN, _RW, False, "false"),
        _measurands("TxEndedMeasurands", "Energy.Active.Import.Register"),
        _v("TxEndedInterval", _T.INTEGER, _RW, True, "0", unit=_S, min_limit=0),
        _measurands("TxStartedMeasurands", "Energy.Active.Import.Register"),
        _measurands("TxUpdatedMeasurands", "Energy.Active.Import.Register,Power.Active.Import"),
        _v("TxUpdatedInterval", _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v("RegisterValuesWithoutPhases", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "AlignedDataCtrlr",
        Scope.STATION,
        True,
        _v("Available", _T.BOOLEAN, _RO, False, "true"),
        _v("Enabled", _T.BOOLEAN, _RW, False, "true"),
        _measurands("Measurands", "Energy.Active.Import.Register"),
        _v("Interval", _T.INTEGER, _RW, True, "900", unit=_S, min_limit=0),
        _v("SendDuringIdle", _T.BOOLEAN, _RW, False, "false"),
        _v("SignReadings", _T.BOOLEAN, _RW, False, "false"),
        _measurands("TxEndedMeasurands", "Energy.Active.Import.Register"),
        _v("TxEndedInterval", _T.INTEGER, _RW, True, "0", unit=_S, min_limit=0),
    ),
    _component(
        "SecurityCtrlr",
        Scope.STATION,
        True,
        # UNSURE: Part 2 gives no maxLimit for BasicAuthPassword; A01 asks for 16 to 40
        # characters (passwordString), enforced here as min/max length.
        _v(
            "BasicAuthPassword",
            _T.STRING,
            _WO,
            False,
            None,
            min_limit=16,
            max_limit=40,
        ),
        # UNSURE: Identity is required here (as other implementations have it); its
        # mutability differs between readings (ReadOnly or ReadWrite). cpagent lets the CSMS
        # change it and applies it on the next start (RebootRequired).
        _v("Identity", _T.STRING, _RW, True, None, max_limit=48, reboot_required=True),
        _v("OrganizationName", _T.STRING, _RW, True, ""),
        _v("CertificateEntries", _T.INTEGER, _RO, True, "0", min_limit=0),
        # UNSURE: whether profile 0 (none) is a valid value; cpagent speaks 1-3.
        _v("SecurityProfile", _T.INTEGER, _RO, True, "1", min_limit=1, max_limit=3),
        _v("AdditionalRootCertificateCheck", _T.BOOLEAN, _RO, False, "false"),
        _v("MaxCertificateChainSize", _T.INTEGER, _RO, False, "10000", max_limit=10000),
        _v("CertSigningWaitMinimum", _T.INTEGER, _RW, False, "60", unit=_S, min_limit=0),
        _v("CertSigningRepeatTimes", _T.INTEGER, _RW, False, "3", min_limit=0),
    ),
    _component(
        "DeviceDataCtrlr",
        Scope.STATION,
        True,
        _v(
            "ItemsPerMessage",
            _T.INTEGER,
            _RO,
            True,
            "50",
            min_limit=1,
            instances=MESSAGE_INSTANCES,
        ),
        _v(
            "BytesPerMessage",
            _T.INTEGER,
            _RO,
            True,
            "65536",
            min_limit=1,
            instances=MESSAGE_INSTANCES,
        ),
        _v(
            "ConfigurationValueSize",
            _T.INTEGER,
            _RO,
            False,
            str(MAX_SET_VALUE_LENGTH),
            max_limit=MAX_SET_VALUE_LENGTH,
        ),
        _v(
            "ReportingValueSize",
            _T.INTEGER,
            _RO,
            False,
            str(MAX_REPORT_VALUE_LENGTH),
            max_limit=MAX_REPORT_VALUE_LENGTH,
        ),
        _v(
            "ValueSize",
            _T.INTEGER,
            _RO,
            False,
            str(MAX_SET_VALUE_LENGTH),
            max_limit=MAX_SET_VALUE_LENGTH,
        ),
    ),
    _component(
        "ClockCtrlr",
        Scope.STATION,
        True,
        _v("DateTime", _T.DATETIME, _RO, True, None),
        _v("NtpSource", _T.OPTION_LIST, _RW, False, "DHCP", values_list=("DHCP", "manual")),
        _v("NtpServerUri", _T.STRING, _RW, False, "", max_limit=512),
        # TimeOffset is an RFC 3339 offset ("+01:00"); the NextTransition instance is the
        # offset that applies from NextTimeOffsetTransitionDateTime. UNSURE: no format check
        # beyond string (the spec gives none as a characteristic).
        _v("TimeOffset", _T.STRING, _RW, False, "+00:00", instances=(None, "NextTransition")),
        _v("NextTimeOffsetTransitionDateTime", _T.DATETIME, _RW, False, None),
        _v(
            "TimeSource",
            _T.SEQUENCE_LIST,
            _RW,
            True,
            "Heartbeat",
            values_list=(
                "Heartbeat",
                "NTP",
                "GPS",
                "RealTimeClock",
                "MobileNetwork",
                "RadioTimeTransmitter",
            ),
        ),
        _v("TimeZone", _T.STRING, _RW, False, ""),
        _v("TimeAdjustmentReportingThreshold", _T.INTEGER, _RW, False, "20", unit=_S),
    ),
    _component(
        "ChargingStation",
        Scope.STATION,
        True,
        _v(
            "AvailabilityState",
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v("Available", _T.BOOLEAN, _RO, True, "true"),
        # UNSURE: Problem and SupplyPhases required for ChargingStation in edition 3.
        _v("Problem", _T.BOOLEAN, _RO, True, "false"),
        _v("SupplyPhases", _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
        _v("Model", _T.STRING, _RO, False, None),
        _v("VendorName", _T.STRING, _RO, False, None),
        _v("AllowNewSessionsPendingFirmwareUpdate", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "EVSE",
        Scope.EVSE,
        True,
        _v(
            "AvailabilityState",
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v("Available", _T.BOOLEAN, _RO, True, "true"),
        _v("Problem", _T.BOOLEAN, _RO, False, "false"),
        # EVSE.Power: Actual is the present power (the station updates it), maxLimit the
        # rating. UNSURE: whether edition 3 requires it; 22 kW is a factory rating that
        # the config cannot change yet (characteristics are not configurable).
        _v("Power", _T.DECIMAL, _RO, True, "0", unit="W", min_limit=0, max_limit=22000),
        _v("SupplyPhases", _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
        _v("AllowReset", _T.BOOLEAN, _RO, False, "true"),
        _v("EvseId", _T.STRING, _RO, False, None, max_limit=36),
    ),
    _component(
        "Connector",
        Scope.CONNECTOR,
        True,
        _v(
            "AvailabilityState",
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v("Available", _T.BOOLEAN, _RO, True, "true"),
        _v("Problem", _T.BOOLEAN, _RO, False, "false"),
        # ConnectorEnumType values are open-ended ("Other1PhMax16A", ...): a string.
        _v("ConnectorType", _T.STRING, _RO, True, "cType2"),
        _v("SupplyPhases", _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
    ),
    # Blocks cpagent does not implement for 2.0.1: their switches say so.
    _component(
        "SmartChargingCtrlr",
        Scope.STATION,
        False,
        _v("Available", _T.BOOLEAN, _RO, False, "false"),
        _v("Enabled", _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        "ReservationCtrlr",
        Scope.STATION,
        False,
        _v("Available", _T.BOOLEAN, _RO, False, "false"),
        _v("Enabled", _T.BOOLEAN, _RW, False, "false"),
    ),
)

#: Components cpagent describes, by name.
CATALOGUE: Final[Mapping[str, ComponentSpec]] = {c.name: c for c in _COMPONENTS}

#: The controllers and physical components whose functional blocks cpagent implements.
IMPLEMENTED: Final[frozenset[str]] = frozenset(c.name for c in _COMPONENTS if c.implemented)


_FOLDED_COMPONENTS: Final[Mapping[str, str]] = {name.casefold(): name for name in KNOWN}


@functools.cache
def _folded_variables(component: str) -> Mapping[str, str]:
    """The variable names of a known component by their case fold (no two fold alike)."""
    names = set(KNOWN.get(component, ()))
    spec = CATALOGUE.get(component)
    if spec is not None:
        names.update(spec.variables)
    return {name.casefold(): name for name in names}


def canonical_component(name: str) -> str | None:
    """The spec's spelling of a component name (names are case-insensitive), or None."""
    return _FOLDED_COMPONENTS.get(name.casefold())


def canonical_variable(component: str, name: str) -> str | None:
    """The spec's spelling of a variable of a known component, or None."""
    if component not in KNOWN and component not in CATALOGUE:
        return None
    return _folded_variables(component).get(name.casefold())
