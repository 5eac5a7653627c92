"""The standardized components and variables of OCPP 2.0.1 (Part 2, appendix 3).

Two layers, because the spec gives names for far more than cpagent implements:

* :data:`KNOWN` maps every standardized component name to the set of its standardized
  variable names. It is built from the ``ocpp`` library's v201 enums (ControllerComponentName,
  PhysicalComponentName and the per-component ``*VariableName`` enums), so that no name is
  retyped here. A name in :data:`KNOWN` but not in :data:`CATALOGUE` belongs to a functional
  block cpagent does not implement: the config may still give it a value (with a warning).
* :data:`CATALOGUE` holds, for the components cpagent implements (and the
  ``Available``/``Enabled`` switches of some it does not, so that a CSMS can read that they are
  off), each variable's characteristics, mutability, attributes, whether the spec requires it,
  its instances and cpagent's factory value.

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

from cpagent.protocol.v201 import enums as _enums
from cpagent.protocol.v201.enums import (
    AlignedDataCtrlrVariableName as AlignedV,
)
from cpagent.protocol.v201.enums import (
    AuthCacheCtrlrVariableName as AuthCacheV,
)
from cpagent.protocol.v201.enums import (
    AuthCtrlrVariableName as AuthV,
)
from cpagent.protocol.v201.enums import (
    ChargingStationVariableName as StationV,
)
from cpagent.protocol.v201.enums import (
    ClockCtrlrVariableName as ClockV,
)
from cpagent.protocol.v201.enums import (
    ConnectorVariableName as ConnectorV,
)
from cpagent.protocol.v201.enums import (
    ControllerComponentName as Ctrlr,
)
from cpagent.protocol.v201.enums import (
    DeviceDataCtrlrInstanceName as DeviceDataI,
)
from cpagent.protocol.v201.enums import (
    DeviceDataCtrlrVariableName as DeviceDataV,
)
from cpagent.protocol.v201.enums import (
    EVSEVariableName as EvseV,
)
from cpagent.protocol.v201.enums import (
    LocalAuthListCtrlrVariableName as LocalListV,
)
from cpagent.protocol.v201.enums import (
    MeasurandEnumType,
    PhysicalComponentName,
)
from cpagent.protocol.v201.enums import (
    OCPPCommCtrlrInstanceName as CommI,
)
from cpagent.protocol.v201.enums import (
    OCPPCommCtrlrVariableName as CommV,
)
from cpagent.protocol.v201.enums import (
    ReservationCtrlrVariableName as ReservationV,
)
from cpagent.protocol.v201.enums import (
    SampledDataCtrlrVariableName as SampledV,
)
from cpagent.protocol.v201.enums import (
    SecurityCtrlrVariableName as SecurityV,
)
from cpagent.protocol.v201.enums import (
    SmartChargingCtrlrVariableName as SmartV,
)
from cpagent.protocol.v201.enums import (
    TxCtrlrVariableName as TxV,
)
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


def _enum_values(cls: type[enum.Enum]) -> frozenset[str]:
    return frozenset(str(member.value) for member in cls)


def _known_names() -> dict[str, frozenset[str]]:
    """Every standardized component name with its standardized variable names."""
    known: dict[str, frozenset[str]] = {}
    for component in (*Ctrlr, *PhysicalComponentName):
        name = str(component.value)
        cls = getattr(_enums, f"{name}VariableName", None)
        known[name] = _enum_values(cls) if isinstance(cls, type) else frozenset()
    return known


#: Every standardized component name -> its standardized variable names (from ``ocpp``).
KNOWN: Final[Mapping[str, frozenset[str]]] = _known_names()

#: The measurands a MemberList of SampledDataCtrlr / AlignedDataCtrlr may name.
MEASURANDS: Final[tuple[str, ...]] = tuple(str(m.value) for m in MeasurandEnumType)

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
    str(DeviceDataI.get_report.value),
    str(DeviceDataI.get_variables.value),
    str(DeviceDataI.set_variables.value),
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
    name: enum.Enum,
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
        str(name.value),
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


def _measurands(name: enum.Enum, default: str) -> VariableSpec:
    """A required, CSMS-writable list of measurands (the sampled and aligned data sets)."""
    return _v(
        name, DataType.MEMBER_LIST, Mutability.READ_WRITE, True, default, values_list=MEASURANDS
    )


def _component(
    name: enum.Enum, scope: Scope, implemented: bool, *variables: VariableSpec
) -> ComponentSpec:
    return ComponentSpec(str(name.value), scope, implemented, {v.name: v for v in variables})


_TE = (str(CommI.transaction_event.value),)
_S = "s"

_COMPONENTS: tuple[ComponentSpec, ...] = (
    _component(
        Ctrlr.ocpp_comm_ctrlr,
        Scope.STATION,
        True,
        _v(CommV.active_network_profile, _T.INTEGER, _RO, False, "1"),
        _v(
            CommV.file_transfer_protocols,
            _T.MEMBER_LIST,
            _RO,
            True,
            "HTTP,HTTPS",
            values_list=("FTP", "FTPS", "HTTP", "HTTPS", "SFTP"),
        ),
        _v(CommV.heartbeat_interval, _T.INTEGER, _RW, False, "300", unit=_S, min_limit=1),
        # UNSURE: Part 2 lists MessageTimeout:Default as ReadOnly in some editions and
        # ReadWrite in others; cpagent offers it ReadOnly (its own timeout is fixed).
        _v(
            CommV.message_timeout,
            _T.INTEGER,
            _RO,
            True,
            "30",
            unit=_S,
            instances=(str(CommI.default.value),),
        ),
        _v(
            CommV.message_attempt_interval,
            _T.INTEGER,
            _RW,
            True,
            "60",
            unit=_S,
            min_limit=0,
            instances=_TE,
        ),
        _v(CommV.message_attempts, _T.INTEGER, _RW, True, "3", min_limit=0, instances=_TE),
        _v(CommV.minimum_status_duration, _T.INTEGER, _RW, False, "0", unit=_S, min_limit=0),
        # valuesList is the configured slots: cpagent has slots 0-7 (UNSURE: the number
        # of slots is the station's choice; the adapter may narrow it).
        _v(
            CommV.network_configuration_priority,
            _T.SEQUENCE_LIST,
            _RW,
            True,
            "1",
            values_list=tuple(str(i) for i in range(8)),
        ),
        _v(CommV.network_profile_connection_attempts, _T.INTEGER, _RW, True, "3", min_limit=1),
        _v(CommV.offline_threshold, _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v(
            CommV.public_key_with_signed_meter_value,
            _T.OPTION_LIST,
            _RW,
            False,
            "Never",
            values_list=("Never", "OncePerTransaction", "EveryMeterValue"),
        ),
        _v(CommV.queue_all_messages, _T.BOOLEAN, _RW, False, "false"),
        _v(CommV.reset_retries, _T.INTEGER, _RW, True, "2", min_limit=0),
        # UNSURE: whether the three RetryBackOff variables are required (edition 3 lists
        # them under B "Reconnecting"); cpagent offers all three.
        _v(CommV.retry_back_off_random_range, _T.INTEGER, _RW, True, "10", unit=_S, min_limit=0),
        _v(CommV.retry_back_off_repeat_times, _T.INTEGER, _RW, True, "8", min_limit=0),
        _v(CommV.retry_back_off_wait_minimum, _T.INTEGER, _RW, True, "5", unit=_S, min_limit=0),
        _v(CommV.unlock_on_ev_side_disconnect, _T.BOOLEAN, _RW, True, "true"),
        _v(CommV.web_socket_ping_interval, _T.INTEGER, _RW, False, "30", unit=_S, min_limit=0),
    ),
    _component(
        Ctrlr.auth_ctrlr,
        Scope.STATION,
        True,
        _v(AuthV.enabled, _T.BOOLEAN, _RW, False, "true"),
        _v(AuthV.additional_info_items_per_message, _T.INTEGER, _RO, False, "0"),
        _v(AuthV.authorize_remote_start, _T.BOOLEAN, _RW, True, "true"),
        _v(AuthV.local_authorize_offline, _T.BOOLEAN, _RW, True, "true"),
        _v(AuthV.local_pre_authorize, _T.BOOLEAN, _RW, True, "false"),
        _v(AuthV.master_pass_group_id, _T.STRING, _RW, False, "", max_limit=36),
        _v(AuthV.offline_tx_for_unknown_id_enabled, _T.BOOLEAN, _RW, False, "false"),
        _v(AuthV.disable_remote_authorization, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        Ctrlr.auth_cache_ctrlr,
        Scope.STATION,
        True,
        _v(AuthCacheV.available, _T.BOOLEAN, _RO, False, "true"),
        _v(AuthCacheV.enabled, _T.BOOLEAN, _RW, False, "true"),
        _v(AuthCacheV.life_time, _T.INTEGER, _RW, False, "86400", unit=_S, min_limit=0),
        _v(
            AuthCacheV.policy,
            _T.OPTION_LIST,
            _RW,
            False,
            "LRU",
            values_list=("LRU", "LFU", "FIFO", "CUSTOM"),
        ),
        # Storage: Actual is the bytes in use (the station updates it), maxLimit the capacity.
        _v(AuthCacheV.storage, _T.INTEGER, _RO, False, "0", unit="B", max_limit=STORAGE_BYTES),
        _v(AuthCacheV.disable_post_authorize, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        Ctrlr.local_auth_list_ctrlr,
        Scope.STATION,
        True,
        _v(LocalListV.available, _T.BOOLEAN, _RO, False, "true"),
        _v(LocalListV.enabled, _T.BOOLEAN, _RW, True, "true"),
        # Entries: Actual is the ids in the list now, maxLimit the most it holds (the same
        # limit the 1.6 adapter gives as LocalAuthListMaxLength).
        _v(LocalListV.entries, _T.INTEGER, _RO, True, "0", min_limit=0, max_limit=1000),
        _v(LocalListV.items_per_message, _T.INTEGER, _RO, True, "100", min_limit=1),
        _v(LocalListV.bytes_per_message, _T.INTEGER, _RO, True, "65536", min_limit=1),
        _v(LocalListV.storage, _T.INTEGER, _RO, False, "0", unit="B", max_limit=STORAGE_BYTES),
        _v(LocalListV.disable_post_authorize, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        Ctrlr.tx_ctrlr,
        Scope.STATION,
        True,
        _v(TxV.ev_connection_time_out, _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v(TxV.max_energy_on_invalid_id, _T.INTEGER, _RW, False, "0", unit="Wh", min_limit=0),
        _v(TxV.stop_tx_on_ev_side_disconnect, _T.BOOLEAN, _RW, True, "true"),
        _v(TxV.stop_tx_on_invalid_id, _T.BOOLEAN, _RW, True, "true"),
        _v(TxV.tx_before_accepted_enabled, _T.BOOLEAN, _RW, False, "false"),
        _v(
            TxV.tx_start_point,
            _T.MEMBER_LIST,
            _RW,
            True,
            "PowerPathClosed",
            values_list=TX_POINTS,
        ),
        _v(
            TxV.tx_stop_point,
            _T.MEMBER_LIST,
            _RW,
            True,
            "EVConnected,Authorized",
            values_list=TX_POINTS,
        ),
    ),
    _component(
        Ctrlr.sampled_data_ctrlr,
        Scope.STATION,
        True,
        _v(SampledV.available, _T.BOOLEAN, _RO, False, "true"),
        _v(SampledV.enabled, _T.BOOLEAN, _RW, False, "true"),
        _v(SampledV.sign_readings, _T.BOOLEAN, _RW, False, "false"),
        _measurands(SampledV.tx_ended_measurands, "Energy.Active.Import.Register"),
        _v(SampledV.tx_ended_interval, _T.INTEGER, _RW, True, "0", unit=_S, min_limit=0),
        _measurands(SampledV.tx_started_measurands, "Energy.Active.Import.Register"),
        _measurands(
            SampledV.tx_updated_measurands, "Energy.Active.Import.Register,Power.Active.Import"
        ),
        _v(SampledV.tx_updated_interval, _T.INTEGER, _RW, True, "60", unit=_S, min_limit=0),
        _v(SampledV.register_values_without_phases, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        Ctrlr.aligned_data_ctrlr,
        Scope.STATION,
        True,
        _v(AlignedV.available, _T.BOOLEAN, _RO, False, "true"),
        _v(AlignedV.enabled, _T.BOOLEAN, _RW, False, "true"),
        _measurands(AlignedV.measurands, "Energy.Active.Import.Register"),
        _v(AlignedV.interval, _T.INTEGER, _RW, True, "900", unit=_S, min_limit=0),
        _v(AlignedV.send_during_idle, _T.BOOLEAN, _RW, False, "false"),
        _v(AlignedV.sign_readings, _T.BOOLEAN, _RW, False, "false"),
        _measurands(AlignedV.tx_ended_measurands, "Energy.Active.Import.Register"),
        _v(AlignedV.tx_ended_interval, _T.INTEGER, _RW, True, "0", unit=_S, min_limit=0),
    ),
    _component(
        Ctrlr.security_ctrlr,
        Scope.STATION,
        True,
        # UNSURE: Part 2 gives no maxLimit for BasicAuthPassword; A01 asks for 16 to 40
        # characters (passwordString), enforced here as min/max length.
        _v(
            SecurityV.basic_auth_password,
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
        _v(SecurityV.identity, _T.STRING, _RW, True, None, max_limit=48, reboot_required=True),
        _v(SecurityV.organization_name, _T.STRING, _RW, True, ""),
        _v(SecurityV.certificate_entries, _T.INTEGER, _RO, True, "0", min_limit=0),
        # UNSURE: whether profile 0 (none) is a valid value; cpagent speaks 1-3.
        _v(SecurityV.security_profile, _T.INTEGER, _RO, True, "1", min_limit=1, max_limit=3),
        _v(SecurityV.additional_root_certificate_check, _T.BOOLEAN, _RO, False, "false"),
        _v(SecurityV.max_certificate_chain_size, _T.INTEGER, _RO, False, "10000", max_limit=10000),
        _v(SecurityV.cert_signing_wait_minimum, _T.INTEGER, _RW, False, "60", unit=_S, min_limit=0),
        _v(SecurityV.cert_signing_repeat_times, _T.INTEGER, _RW, False, "3", min_limit=0),
    ),
    _component(
        Ctrlr.device_data_ctrlr,
        Scope.STATION,
        True,
        _v(
            DeviceDataV.items_per_message,
            _T.INTEGER,
            _RO,
            True,
            "50",
            min_limit=1,
            instances=MESSAGE_INSTANCES,
        ),
        _v(
            DeviceDataV.bytes_per_message,
            _T.INTEGER,
            _RO,
            True,
            "65536",
            min_limit=1,
            instances=MESSAGE_INSTANCES,
        ),
        _v(
            DeviceDataV.configuration_value_size,
            _T.INTEGER,
            _RO,
            False,
            str(MAX_SET_VALUE_LENGTH),
            max_limit=MAX_SET_VALUE_LENGTH,
        ),
        _v(
            DeviceDataV.reporting_value_size,
            _T.INTEGER,
            _RO,
            False,
            str(MAX_REPORT_VALUE_LENGTH),
            max_limit=MAX_REPORT_VALUE_LENGTH,
        ),
        _v(
            DeviceDataV.value_size,
            _T.INTEGER,
            _RO,
            False,
            str(MAX_SET_VALUE_LENGTH),
            max_limit=MAX_SET_VALUE_LENGTH,
        ),
    ),
    _component(
        Ctrlr.clock_ctrlr,
        Scope.STATION,
        True,
        _v(ClockV.date_time, _T.DATETIME, _RO, True, None),
        _v(ClockV.ntp_source, _T.OPTION_LIST, _RW, False, "DHCP", values_list=("DHCP", "manual")),
        _v(ClockV.ntp_server_uri, _T.STRING, _RW, False, "", max_limit=512),
        # TimeOffset is an RFC 3339 offset ("+01:00"); the NextTransition instance is the
        # offset that applies from NextTimeOffsetTransitionDateTime. UNSURE: no format check
        # beyond string (the spec gives none as a characteristic).
        _v(ClockV.time_offset, _T.STRING, _RW, False, "+00:00", instances=(None, "NextTransition")),
        _v(ClockV.next_time_offset_transition_date_time, _T.DATETIME, _RW, False, None),
        _v(
            ClockV.time_source,
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
        _v(ClockV.time_zone, _T.STRING, _RW, False, ""),
        _v(ClockV.time_adjustment_reporting_threshold, _T.INTEGER, _RW, False, "20", unit=_S),
    ),
    _component(
        PhysicalComponentName.charging_station,
        Scope.STATION,
        True,
        _v(
            StationV.availability_state,
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v(StationV.available, _T.BOOLEAN, _RO, True, "true"),
        # UNSURE: Problem and SupplyPhases required for ChargingStation in edition 3.
        _v(StationV.problem, _T.BOOLEAN, _RO, True, "false"),
        _v(StationV.supply_phases, _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
        _v(StationV.model, _T.STRING, _RO, False, None),
        _v(StationV.vendor_name, _T.STRING, _RO, False, None),
        _v(StationV.allow_new_sessions_pending_firmware_update, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        PhysicalComponentName.evse,
        Scope.EVSE,
        True,
        _v(
            EvseV.availability_state,
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v(EvseV.available, _T.BOOLEAN, _RO, True, "true"),
        _v(EvseV.problem, _T.BOOLEAN, _RO, False, "false"),
        # EVSE.Power: Actual is the present power (the station updates it), maxLimit the
        # rating. UNSURE: whether edition 3 requires it; 22 kW is a factory rating that
        # the config cannot change yet (characteristics are not configurable).
        _v(EvseV.power, _T.DECIMAL, _RO, True, "0", unit="W", min_limit=0, max_limit=22000),
        _v(EvseV.supply_phases, _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
        _v(EvseV.allow_reset, _T.BOOLEAN, _RO, False, "true"),
        _v(EvseV.evse_id, _T.STRING, _RO, False, None, max_limit=36),
    ),
    _component(
        PhysicalComponentName.connector,
        Scope.CONNECTOR,
        True,
        _v(
            ConnectorV.availability_state,
            _T.OPTION_LIST,
            _RO,
            True,
            None,
            values_list=AVAILABILITY_STATES,
        ),
        _v(ConnectorV.available, _T.BOOLEAN, _RO, True, "true"),
        _v(ConnectorV.problem, _T.BOOLEAN, _RO, False, "false"),
        # ConnectorEnumType values are open-ended ("Other1PhMax16A", ...): a string.
        _v(ConnectorV.connector_type, _T.STRING, _RO, True, "cType2"),
        _v(ConnectorV.supply_phases, _T.INTEGER, _RO, True, "3", min_limit=0, max_limit=3),
    ),
    # Blocks cpagent does not implement for 2.0.1: their switches say so.
    _component(
        Ctrlr.smart_charging_ctrlr,
        Scope.STATION,
        False,
        _v(SmartV.available, _T.BOOLEAN, _RO, False, "false"),
        _v(SmartV.enabled, _T.BOOLEAN, _RW, False, "false"),
    ),
    _component(
        Ctrlr.reservation_ctrlr,
        Scope.STATION,
        False,
        _v(ReservationV.available, _T.BOOLEAN, _RO, False, "false"),
        _v(ReservationV.enabled, _T.BOOLEAN, _RW, False, "false"),
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
