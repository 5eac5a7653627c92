"""OCPP 1.6 Smart Charging as pure domain code: profiles, their stacking, the limit in force.

The CSMS installs *charging profiles* (SetChargingProfile, or a TxProfile carried by
RemoteStartTransaction); each says, over time, how much current (A) or power (W) a
connector or the whole charger may draw. This module decides which profile is in force
at any instant and what that means for a connector (OCPP 1.6 §3.13), without I/O: the
station asks :func:`limit_at` for the limit to signal on the pilot, :func:`next_change`
for when to ask again (exactly at a period boundary, no polling), and the protocol
adapter answers GetCompositeSchedule with :func:`composite_schedule`. Persistence is the
caller's: :func:`profile_to_ocpp` / :func:`parse_profile` round-trip a profile.

The rules, per connector and instant:

* A profile is valid from ``valid_from`` (inclusive) to ``valid_to`` (exclusive).
* Its schedule's offset 0 is ``startSchedule`` (Absolute, Recurring) or the start of the
  transaction (Relative; and Absolute/Recurring without ``startSchedule``, which the spec's
  field description calls "relative to start of charging"). A Recurring schedule restarts
  every day or week after that, never before it. Period *i* is in force from its
  ``startPeriod`` to the next one's; once ``duration`` has elapsed (within each recurrence
  for Recurring) the profile gives no limit, and the next lower stack level shows through.
* Per purpose, the profile with the highest stack level that gives a limit wins; at equal
  stack levels a TxDefaultProfile on the connector beats one on connector 0 (which is the
  default for every connector).
* A TxProfile (for the transaction running on the connector) overrides the
  TxDefaultProfiles; the result is capped by the ChargePointMaxProfile (always installed on
  connector 0) and by the hardware's maximum current. The query for connector 0 is the
  ChargePointMaxProfile alone.

Simplifications, on purpose:

* The ChargePointMaxProfile limits the whole charger, but each connector is capped by it
  on its own (``min``), not by its share of it: with several connectors charging at once
  their sum may exceed it. A single-connector charger (the common case) is exact.
* Limits of different units are compared as the current per phase they allow:
  ``limit_W = limit_A * voltage * phases``. ``phases`` is the smallest ``numberPhases`` of
  the periods in force, else the connector's own (3 unless told), and never more than the
  connector's: a 3-phase 11 kW limit on a single-phase car allows 11 kW on one phase. A
  connector that cannot switch phases (``phase_switching=False``) charges on all of its
  phases whatever ``numberPhases`` says, so a W limit is divided among all of them: a
  1-phase 7.4 kW limit on such a 3-phase connector is 10.7 A per phase, not 32 A.
* Without a transaction, a Relative schedule reads as if one started at the instant asked
  about (its first period): it is the limit a session starting then would be given. So
  :func:`limit_at` and :func:`composite_schedule` agree at every instant. A Relative
  ChargePointMaxProfile counts from the start of the transaction of the connector asked
  about (and, asked about connector 0, from the instant asked about).
* The composite schedule has whole-second offsets: a change between two seconds is reported
  at the later one, and limits are rounded *down* to the 0.1 the message allows. The
  station acts on :func:`limit_at` and :func:`next_change`, which are exact.

Below :data:`MIN_CURRENT_A` (IEC 61851-1's lowest PWM duty cycle) a car cannot be offered
current at all: the caller then suspends charging (SuspendedEVSE) rather than signal less.
"""

from __future__ import annotations

import enum
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from cpagent.exc import CpagentError
from cpagent.timeutil import iso, parse_iso

__all__ = [
    "DEFAULT_PHASES",
    "DEFAULT_VOLTAGE_V",
    "MIN_CURRENT_A",
    "ChargingProfile",
    "ChargingSchedule",
    "ChargingSchedulePeriod",
    "InstalledProfile",
    "Kind",
    "Limit",
    "ProfileFormatError",
    "ProfileSet",
    "Purpose",
    "Recurrency",
    "RejectReason",
    "Rejection",
    "SmartChargingLimits",
    "Unit",
    "composite_schedule",
    "floor_tenth",
    "limit_at",
    "next_change",
    "parse_allowed_units",
    "parse_profile",
    "profile_to_ocpp",
    "schedule_to_ocpp",
    "to_amps",
    "to_watts",
    "validate_profile",
]

Unit = Literal["A", "W"]

MIN_CURRENT_A = 6.0
"""The lowest current a pilot can offer (IEC 61851-1); below it the caller suspends charging."""

DEFAULT_PHASES = 3
"""OCPP 1.6: "numberPhases=3 will be assumed unless another number is given"."""

DEFAULT_VOLTAGE_V = 230.0
"""Phase-to-neutral voltage for A <-> W conversion when the caller has no measured one."""

_DAY = timedelta(days=1)
_WEEK = timedelta(weeks=1)
_ZERO = timedelta(0)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _later(when: datetime, delta: timedelta) -> datetime:
    """``when + delta``, or the calendar's last instant where that lies beyond it: a CSMS
    may start a schedule at 9999-12-31T23:59:59Z to mean "never", and its periods then
    begin after the end of time."""
    try:
        return when + delta
    except OverflowError:
        return _END_OF_TIME


_E = TypeVar("_E", bound=enum.StrEnum)


class Purpose(enum.StrEnum):
    """What a profile limits: the whole station, each new transaction by default, or one
    transaction. The values are the stored form (saved profiles keep them), which are
    OCPP 1.6's words; 2.0.1's ChargingStationMaxProfile is STATION_MAX."""

    STATION_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class Kind(enum.StrEnum):
    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(enum.StrEnum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


class ProfileFormatError(CpagentError, ValueError):
    """A charging profile dict is malformed (missing field, wrong type, unknown enum value).
    The ocpp library's schema validation normally catches this first."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ChargingSchedulePeriod:
    """``limit`` (in the schedule's unit) applies from ``start_period_s`` after the
    schedule's start until the next period's start."""

    start_period_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True)
class ChargingSchedule:
    """Periods in increasing ``start_period_s`` order, the first at 0 (see
    :func:`validate_profile`). ``duration_s`` None: the last period lasts forever (or to the
    end of the recurrence)."""

    unit: Unit
    periods: tuple[ChargingSchedulePeriod, ...]
    duration_s: int | None = None
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None

    def period_at(self, offset_s: float) -> ChargingSchedulePeriod | None:
        """The period in force ``offset_s`` seconds after the schedule's start; None before
        the first period or once ``duration_s`` has elapsed."""
        if offset_s < 0 or (self.duration_s is not None and offset_s >= self.duration_s):
            return None
        found = None
        for period in self.periods:
            if period.start_period_s > offset_s:
                break
            found = period
        return found


@dataclass(frozen=True, kw_only=True)
class ChargingProfile:
    """One profile as the CSMS sent it. ``recurrency`` matters only for Recurring,
    ``transaction_id`` only for TxProfile (None: whichever transaction runs on the
    connector, as for a profile given with RemoteStartTransaction)."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    recurrency: Recurrency | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None
    schedule: ChargingSchedule

    def is_valid_at(self, when: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= when) and (
            self.valid_to is None or when < self.valid_to
        )


@dataclass(frozen=True)
class Limit:
    """What a connector may draw: ``current_a`` per phase on ``number_phases`` phases."""

    current_a: float
    number_phases: int
    voltage_v: float

    @property
    def power_w(self) -> float:
        return to_watts(self.current_a, self.voltage_v, self.number_phases)

    def value(self, unit: Unit) -> float:
        return self.current_a if unit == "A" else self.power_w


def to_watts(current_a: float, voltage_v: float, phases: int) -> float:
    return current_a * voltage_v * phases


def to_amps(power_w: float, voltage_v: float, phases: int) -> float:
    if voltage_v <= 0 or phases <= 0:
        raise ValueError(f"cannot convert W to A at {voltage_v} V on {phases} phase(s)")
    return power_w / (voltage_v * phases)


def floor_tenth(value: float) -> float:
    """Round down to 0.1 (the message's resolution), never above ``value`` by more than
    float noise: a reported limit must not allow more than the real one."""
    return math.floor(value * 10 + 1e-6) / 10


# --------------------------------------------------------------------------- OCPP shapes


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _field(data: Mapping[str, Any], name: str, *, required: bool = False) -> Any:
    # The ocpp library hands handlers snake_case keys; tests and stored JSON use camelCase.
    value = data[name] if name in data else data.get(_snake(name))
    if value is None and required:
        raise ProfileFormatError(f"{name}: missing")
    return value


def _int(data: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = _field(data, name, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileFormatError(f"{name}: not an integer: {value!r}")
    return value


def _number(data: Mapping[str, Any], name: str, *, required: bool = False) -> float | None:
    value = _field(data, name, required=required)
    if value is None:
        return None
    # The ocpp library hands the handlers these schemas' decimals as Decimal.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ProfileFormatError(f"{name}: not a number: {value!r}")
    return float(value)


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = _field(data, name)
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ProfileFormatError(f"{name}: not a date-time: {value!r}")
    try:
        return parse_iso(value)
    except ValueError as err:
        raise ProfileFormatError(f"{name}: not an RFC 3339 date-time: {value!r}") from err


def _enum(
    cls: type[_E], data: Mapping[str, Any], name: str, *, required: bool = False
) -> _E | None:
    value = _field(data, name, required=required)
    if value is None:
        return None
    try:
        return cls(value)
    except ValueError as err:
        raise ProfileFormatError(f"{name}: unknown value {value!r}") from err


def _parse_schedule(data: Any) -> ChargingSchedule:
    if not isinstance(data, Mapping):
        raise ProfileFormatError("chargingSchedule: not an object")
    unit = _field(data, "chargingRateUnit", required=True)
    if unit not in ("A", "W"):
        raise ProfileFormatError(f"chargingRateUnit: unknown value {unit!r}")
    raw_periods = _field(data, "chargingSchedulePeriod", required=True)
    if not isinstance(raw_periods, list):
        raise ProfileFormatError("chargingSchedulePeriod: not an array")
    periods = []
    for raw in raw_periods:
        if not isinstance(raw, Mapping):
            raise ProfileFormatError("chargingSchedulePeriod: an element is not an object")
        start = _int(raw, "startPeriod", required=True)
        limit = _number(raw, "limit", required=True)
        assert start is not None and limit is not None
        periods.append(ChargingSchedulePeriod(start, limit, _int(raw, "numberPhases")))
    return ChargingSchedule(
        unit=unit,
        periods=tuple(periods),
        duration_s=_int(data, "duration"),
        start_schedule=_time(data, "startSchedule"),
        min_charging_rate=_number(data, "minChargingRate"),
    )


def _timestamp(when: datetime) -> str:
    """RFC 3339 in UTC: milliseconds as every OCPP timestamp, microseconds when a
    profile's own time has them, so a stored profile comes back exactly."""
    if when.microsecond % 1000 == 0:
        return iso(when)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_profile(data: Mapping[str, Any]) -> ChargingProfile:
    """A profile from the OCPP 1.6 ``csChargingProfiles`` (SetChargingProfile.req) or
    ``chargingProfile`` (RemoteStartTransaction.req) object, camelCase or snake_case keys.
    Only the shape is checked here; :func:`validate_profile` judges the content."""
    if not isinstance(data, Mapping):
        raise ProfileFormatError(f"a charging profile must be an object, not {data!r:.40}")
    profile_id = _int(data, "chargingProfileId", required=True)
    stack_level = _int(data, "stackLevel", required=True)
    purpose = _enum(Purpose, data, "chargingProfilePurpose", required=True)
    kind = _enum(Kind, data, "chargingProfileKind", required=True)
    assert profile_id is not None and stack_level is not None
    assert purpose is not None and kind is not None
    return ChargingProfile(
        id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        recurrency=_enum(Recurrency, data, "recurrencyKind"),
        valid_from=_time(data, "validFrom"),
        valid_to=_time(data, "validTo"),
        transaction_id=_int(data, "transactionId"),
        schedule=_parse_schedule(_field(data, "chargingSchedule", required=True)),
    )


def _limit_json(value: float) -> float | int:
    rounded = round(value, 1)
    return int(rounded) if rounded.is_integer() else rounded


def schedule_to_ocpp(schedule: ChargingSchedule) -> dict[str, Any]:
    """The OCPP 1.6 ``chargingSchedule`` object (GetCompositeSchedule.conf), camelCase,
    absent fields left out, limits at 0.1 resolution."""
    out: dict[str, Any] = {}
    if schedule.duration_s is not None:
        out["duration"] = schedule.duration_s
    if schedule.start_schedule is not None:
        out["startSchedule"] = _timestamp(schedule.start_schedule)
    out["chargingRateUnit"] = schedule.unit
    periods = []
    for period in schedule.periods:
        item: dict[str, Any] = {
            "startPeriod": period.start_period_s,
            "limit": _limit_json(period.limit),
        }
        if period.number_phases is not None:
            item["numberPhases"] = period.number_phases
        periods.append(item)
    out["chargingSchedulePeriod"] = periods
    if schedule.min_charging_rate is not None:
        out["minChargingRate"] = _limit_json(schedule.min_charging_rate)
    return out


def profile_to_ocpp(profile: ChargingProfile) -> dict[str, Any]:
    """The OCPP 1.6 ``csChargingProfiles`` object: what :func:`parse_profile` reads back
    (to persist installed profiles across restarts)."""
    out: dict[str, Any] = {
        "chargingProfileId": profile.id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": str(profile.purpose),
        "chargingProfileKind": str(profile.kind),
    }
    if profile.transaction_id is not None:
        out["transactionId"] = profile.transaction_id
    if profile.recurrency is not None:
        out["recurrencyKind"] = str(profile.recurrency)
    if profile.valid_from is not None:
        out["validFrom"] = _timestamp(profile.valid_from)
    if profile.valid_to is not None:
        out["validTo"] = _timestamp(profile.valid_to)
    out["chargingSchedule"] = schedule_to_ocpp(profile.schedule)
    return out


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class SmartChargingLimits:
    """The Smart Charging configuration keys the agent enforces (OCPP 1.6 §9.4)."""

    max_stack_level: int = 10
    """ChargeProfileMaxStackLevel."""
    max_periods: int = 48
    """ChargingScheduleMaxPeriods."""
    allowed_units: frozenset[Unit] = frozenset({"A", "W"})
    """ChargingScheduleAllowedChargingRateUnit (see :func:`parse_allowed_units`)."""
    max_profiles: int = 20
    """MaxChargingProfilesInstalled."""


def parse_allowed_units(value: str) -> frozenset[Unit]:
    """ChargingScheduleAllowedChargingRateUnit (``"Current,Power"``) as schedule units."""
    names: dict[str, Unit] = {"current": "A", "power": "W"}
    units: set[Unit] = set()
    for item in value.split(","):
        name = item.strip().lower()
        if name:
            if name not in names:
                raise ValueError(f"unknown charging rate unit {item.strip()!r}")
            units.add(names[name])
    return frozenset(units)


class RejectReason(enum.StrEnum):
    """Why a profile is answered Rejected; the value is the reason for the log."""

    UNKNOWN_CONNECTOR = "no such connector"
    STACK_LEVEL = "stack level outside 0..ChargeProfileMaxStackLevel"
    TOO_MANY_PERIODS = "more periods than ChargingScheduleMaxPeriods"
    UNIT_NOT_ALLOWED = "unit not in ChargingScheduleAllowedChargingRateUnit"
    BAD_PERIODS = "periods must start at 0 and strictly increase"
    BAD_DURATION = "negative duration"
    NO_RECURRENCY = "Recurring profile without recurrencyKind"
    NEGATIVE_LIMIT = "negative limit"
    BAD_PHASES = "numberPhases not 1..3"
    STATION_MAX_NOT_ON_0 = "ChargePointMaxProfile on a connector other than 0"
    TX_PROFILE_ON_0 = "TxProfile on connector 0"
    NO_TRANSACTION = "TxProfile without a transaction on the connector"
    WRONG_TRANSACTION = "TxProfile for another transaction than the connector's"
    NOT_TX_PROFILE = "RemoteStartTransaction profile must be a TxProfile without transactionId"
    TOO_MANY_PROFILES = "more profiles than MaxChargingProfilesInstalled"
    NOT_STORED = "the profile could not be stored"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def _check_schedule(schedule: ChargingSchedule, limits: SmartChargingLimits) -> Rejection | None:
    if schedule.unit not in limits.allowed_units:
        allowed = ",".join(sorted(limits.allowed_units)) or "none"
        return Rejection(RejectReason.UNIT_NOT_ALLOWED, f"{schedule.unit} (allowed: {allowed})")
    periods = schedule.periods
    if len(periods) > limits.max_periods:
        return Rejection(RejectReason.TOO_MANY_PERIODS, f"{len(periods)} > {limits.max_periods}")
    if not periods or periods[0].start_period_s != 0:
        first = periods[0].start_period_s if periods else "none"
        return Rejection(RejectReason.BAD_PERIODS, f"first startPeriod is {first}")
    for before, after in itertools.pairwise(periods):
        if after.start_period_s <= before.start_period_s:
            return Rejection(
                RejectReason.BAD_PERIODS,
                f"startPeriod {after.start_period_s} after {before.start_period_s}",
            )
    if schedule.duration_s is not None and schedule.duration_s < 0:
        return Rejection(RejectReason.BAD_DURATION, str(schedule.duration_s))
    for period in periods:
        if period.limit < 0:
            return Rejection(
                RejectReason.NEGATIVE_LIMIT, f"{period.limit} at {period.start_period_s} s"
            )
        if period.number_phases is not None and not 1 <= period.number_phases <= 3:
            return Rejection(
                RejectReason.BAD_PHASES, f"{period.number_phases} at {period.start_period_s} s"
            )
    if schedule.min_charging_rate is not None and schedule.min_charging_rate < 0:
        return Rejection(
            RejectReason.NEGATIVE_LIMIT, f"minChargingRate {schedule.min_charging_rate}"
        )
    return None


def validate_profile(
    profile: ChargingProfile,
    connector_id: int,
    *,
    limits: SmartChargingLimits,
    installed: ProfileSet,
    transaction_running: bool,
    transaction_id: int | None,
    remote_start: bool = False,
) -> Rejection | None:
    """Why ``profile`` must be Rejected for ``connector_id``, or None to accept it.

    ``transaction_running``/``transaction_id``: whether a transaction runs on the connector
    and its CSMS id (None while StartTransaction is unanswered). ``remote_start``: the profile
    came with RemoteStartTransaction, so its transaction is yet to start; it must then be a
    TxProfile without transactionId (§5.11). The caller checks that the connector exists.
    """
    if not 0 <= profile.stack_level <= limits.max_stack_level:
        return Rejection(
            RejectReason.STACK_LEVEL, f"{profile.stack_level} (max {limits.max_stack_level})"
        )
    if (rejection := _check_schedule(profile.schedule, limits)) is not None:
        return rejection
    if profile.kind is Kind.RECURRING and profile.recurrency is None:
        return Rejection(RejectReason.NO_RECURRENCY, f"profile {profile.id}")
    if profile.purpose is Purpose.STATION_MAX and connector_id != 0:
        return Rejection(RejectReason.STATION_MAX_NOT_ON_0, f"connector {connector_id}")
    if remote_start and (profile.purpose is not Purpose.TX or profile.transaction_id is not None):
        return Rejection(
            RejectReason.NOT_TX_PROFILE,
            f"{profile.purpose.value}, transactionId {profile.transaction_id}",
        )
    if profile.purpose is Purpose.TX:
        if connector_id == 0:
            return Rejection(RejectReason.TX_PROFILE_ON_0, f"profile {profile.id}")
        if not remote_start:
            if not transaction_running:
                return Rejection(RejectReason.NO_TRANSACTION, f"connector {connector_id}")
            if profile.transaction_id is not None and profile.transaction_id != transaction_id:
                return Rejection(
                    RejectReason.WRONG_TRANSACTION,
                    f"profile for {profile.transaction_id}, connector runs {transaction_id}",
                )
    count = len(installed) - len(installed.replaced_by(connector_id, profile)) + 1
    if count > limits.max_profiles:
        return Rejection(RejectReason.TOO_MANY_PROFILES, f"{count} > {limits.max_profiles}")
    return None


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class InstalledProfile:
    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True)
class ProfileSet:
    """The installed profiles, each on its connector. Immutable: every change returns a new
    set, so the caller persists and swaps it in one step. Nothing here validates; the
    caller runs :func:`validate_profile` before :meth:`install`."""

    entries: tuple[InstalledProfile, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[InstalledProfile]:
        return iter(self.entries)

    def on_connector(self, connector_id: int) -> tuple[ChargingProfile, ...]:
        return tuple(e.profile for e in self.entries if e.connector_id == connector_id)

    def replaced_by(
        self, connector_id: int, profile: ChargingProfile
    ) -> tuple[InstalledProfile, ...]:
        """What installing ``profile`` replaces (§5.16.3): the profile with the same id
        (wherever it is) and the one with the same stack level and purpose on the same
        connector."""
        return tuple(
            e
            for e in self.entries
            if e.profile.id == profile.id
            or (
                e.connector_id == connector_id
                and e.profile.stack_level == profile.stack_level
                and e.profile.purpose is profile.purpose
            )
        )

    def install(self, connector_id: int, profile: ChargingProfile) -> ProfileSet:
        gone = self.replaced_by(connector_id, profile)
        kept = tuple(e for e in self.entries if e not in gone)
        return ProfileSet((*kept, InstalledProfile(connector_id, profile)))

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> tuple[ProfileSet, bool]:
        """ClearChargingProfile: the new set and whether anything matched (Accepted, else
        Unknown). With ``profile_id`` only that profile goes and the other criteria are
        ignored (errata 3.26); otherwise every profile matching all the given criteria
        goes, and no criteria at all clears everything."""

        def matches(e: InstalledProfile) -> bool:
            if profile_id is not None:
                return e.profile.id == profile_id
            return (
                (connector_id is None or e.connector_id == connector_id)
                and (purpose is None or e.profile.purpose is purpose)
                and (stack_level is None or e.profile.stack_level == stack_level)
            )

        kept = tuple(e for e in self.entries if not matches(e))
        return ProfileSet(kept), len(kept) != len(self.entries)

    def end_transaction(self, connector_id: int, transaction_id: int | None) -> ProfileSet:
        """Drop the TxProfiles of a transaction that ended (§3.13.2) on ``connector_id``:
        those for ``transaction_id`` and those without a transaction id. Call it also when a
        remote start whose profile was installed never became a transaction."""
        return ProfileSet(
            tuple(
                e
                for e in self.entries
                if not (
                    e.connector_id == connector_id
                    and e.profile.purpose is Purpose.TX
                    and e.profile.transaction_id in (None, transaction_id)
                )
            )
        )

    def drop_expired(self, now: datetime) -> ProfileSet:
        """Forget profiles whose ``valid_to`` has passed: they can never apply again and
        would only count against MaxChargingProfilesInstalled."""
        return ProfileSet(
            tuple(e for e in self.entries if e.profile.valid_to is None or now < e.profile.valid_to)
        )


# --------------------------------------------------------------------------- evaluation


def _cycle(profile: ChargingProfile) -> timedelta | None:
    if profile.kind is not Kind.RECURRING or profile.recurrency is None:
        return None
    return _DAY if profile.recurrency is Recurrency.DAILY else _WEEK


def _anchor(profile: ChargingProfile, tx_start: datetime | None) -> datetime | None:
    """The instant the schedule's offset 0 refers to; None: a transaction starting at the
    instant asked about (Relative without a transaction)."""
    start = profile.schedule.start_schedule
    if profile.kind is not Kind.RELATIVE and start is not None:
        return start
    return tx_start


def _period_at(
    profile: ChargingProfile, when: datetime, tx_start: datetime | None
) -> ChargingSchedulePeriod | None:
    if not profile.is_valid_at(when):
        return None
    anchor = _anchor(profile, tx_start)
    offset = _ZERO if anchor is None else when - anchor
    if offset < _ZERO:
        return None
    cycle = _cycle(profile)
    if cycle is not None:
        offset %= cycle
    return profile.schedule.period_at(offset.total_seconds())


def _boundaries(
    profile: ChargingProfile, tx_start: datetime | None, lo: datetime, hi: datetime
) -> list[datetime]:
    """Every instant in (lo, hi] at which ``profile``'s limit may start, end or change."""
    out = [t for t in (profile.valid_from, profile.valid_to) if t is not None]
    anchor = _anchor(profile, tx_start)
    if anchor is not None:
        schedule = profile.schedule
        marks = [p.start_period_s for p in schedule.periods]
        if schedule.duration_s is not None:
            marks.append(schedule.duration_s)
        cycle = _cycle(profile)
        if cycle is None:
            out.extend(_later(anchor, timedelta(seconds=m)) for m in marks)
        elif hi >= anchor:
            marks = [m for m in marks if m < cycle.total_seconds()]
            first = max(0, (lo - anchor) // cycle)
            for k in range(first, (hi - anchor) // cycle + 1):
                base = _later(anchor, k * cycle)
                out.extend(_later(base, timedelta(seconds=m)) for m in marks)
    return [t for t in out if lo < t <= hi]


def _settled_after(profile: ChargingProfile, tx_start: datetime | None) -> datetime | None:
    """After this instant ``profile`` repeats with a period dividing a week (or is constant)."""
    times = [t for t in (profile.valid_from, profile.valid_to) if t is not None]
    anchor = _anchor(profile, tx_start)
    if anchor is not None:
        times.append(anchor)
        if _cycle(profile) is None:
            schedule = profile.schedule
            last = max([p.start_period_s for p in schedule.periods] + [schedule.duration_s or 0])
            times.append(_later(anchor, timedelta(seconds=last)))
    return max(times, default=None)


@dataclass(frozen=True)
class _Query:
    connector_id: int
    tx_start: datetime | None
    transaction_id: int | None
    phases: int
    voltage_v: float
    max_current_a: float | None
    phase_switching: bool

    @property
    def tx_running(self) -> bool:
        return self.tx_start is not None or self.transaction_id is not None


def _relevant(profiles: ProfileSet, q: _Query) -> tuple[InstalledProfile, ...]:
    """The installed profiles that can limit connector ``q.connector_id``."""

    def relevant(e: InstalledProfile) -> bool:
        p = e.profile
        if p.purpose is Purpose.STATION_MAX:
            return e.connector_id == 0
        if q.connector_id == 0:
            return False
        if p.purpose is Purpose.TX_DEFAULT:
            return e.connector_id in (0, q.connector_id)
        return (
            e.connector_id == q.connector_id
            and q.tx_running
            and p.transaction_id in (None, q.transaction_id)
        )

    return tuple(e for e in profiles if relevant(e))


def _winner(
    entries: Iterable[InstalledProfile], purpose: Purpose, when: datetime, q: _Query
) -> tuple[ChargingSchedulePeriod, Unit] | None:
    """The period in force for ``purpose`` (and its unit): highest stack level first, and
    at equal levels the connector's own profile before connector 0's."""
    best: tuple[tuple[int, bool], ChargingSchedulePeriod, Unit] | None = None
    for e in entries:
        if e.profile.purpose is not purpose:
            continue
        period = _period_at(e.profile, when, q.tx_start)
        if period is None:
            continue
        rank = (e.profile.stack_level, e.connector_id != 0)
        if best is None or rank > best[0]:
            best = (rank, period, e.profile.schedule.unit)
    return None if best is None else (best[1], best[2])


def _limit(entries: tuple[InstalledProfile, ...], when: datetime, q: _Query) -> Limit | None:
    tx_level = _winner(entries, Purpose.TX, when, q) or _winner(
        entries, Purpose.TX_DEFAULT, when, q
    )
    charger = _winner(entries, Purpose.STATION_MAX, when, q)
    constraints = [c for c in (tx_level, charger) if c is not None]
    if not constraints:
        return None
    phases = q.phases
    if q.phase_switching:
        phases = min([phases] + [p.number_phases for p, _ in constraints if p.number_phases])
    current = min(
        p.limit if unit == "A" else to_amps(p.limit, q.voltage_v, phases) for p, unit in constraints
    )
    if q.max_current_a is not None:
        current = min(current, q.max_current_a)
    return Limit(current, phases, q.voltage_v)


def _query(
    connector_id: int,
    tx_start: datetime | None,
    transaction_id: int | None,
    phases: int,
    voltage_v: float,
    max_current_a: float | None,
    phase_switching: bool,
) -> _Query:
    if not 1 <= phases <= 3 or voltage_v <= 0:
        raise ValueError(f"need 1..3 phases and a positive voltage, not {phases}, {voltage_v}")
    return _Query(
        connector_id, tx_start, transaction_id, phases, voltage_v, max_current_a, phase_switching
    )


def limit_at(
    profiles: ProfileSet,
    connector_id: int,
    when: datetime,
    *,
    tx_start: datetime | None,
    transaction_id: int | None,
    phases: int = DEFAULT_PHASES,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    max_current_a: float | None = None,
    phase_switching: bool = True,
) -> Limit | None:
    """The limit the profiles put on ``connector_id`` at ``when``; None when no profile
    gives one (the hardware's maximum applies). ``tx_start``/``transaction_id``: the
    transaction running on the connector (TxProfiles apply only to it; Relative schedules
    count from its start). ``phases``: the phases the connector can use. ``max_current_a``:
    the hardware's maximum, capping the result when given. ``phase_switching``: whether
    the connector can charge on fewer phases when a period's numberPhases asks for it;
    without, it charges on all ``phases`` and a limit in W is shared among them. See the
    module docstring."""
    q = _query(
        connector_id, tx_start, transaction_id, phases, voltage_v, max_current_a, phase_switching
    )
    return _limit(_relevant(profiles, q), when, q)


def next_change(
    profiles: ProfileSet,
    connector_id: int,
    after: datetime,
    *,
    tx_start: datetime | None,
    transaction_id: int | None,
    phases: int = DEFAULT_PHASES,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    max_current_a: float | None = None,
    phase_switching: bool = True,
) -> datetime | None:
    """The first instant after ``after`` at which :func:`limit_at` (same arguments) differs
    from its value at ``after``; None if it never does. Exact to the microsecond, so the
    station re-evaluates at the boundary itself. A boundary at which the limit does not
    actually change (a shadowed profile's) is skipped."""
    q = _query(
        connector_id, tx_start, transaction_id, phases, voltage_v, max_current_a, phase_switching
    )
    entries = _relevant(profiles, q)
    current = _limit(entries, after, q)
    settled = [t for e in entries if (t := _settled_after(e.profile, tx_start)) is not None]
    # Past the last one-off event every profile repeats weekly at most: a week more
    # without a change means no change ever.
    horizon = _later(max([after, *settled]), _WEEK)
    lo, window = after, _DAY
    while lo < horizon:
        hi = min(_later(lo, window), horizon)
        found = sorted({t for e in entries for t in _boundaries(e.profile, tx_start, lo, hi)})
        for t in found:
            if _limit(entries, t, q) != current:
                return t
        lo, window = hi, window * 2
    return None


def composite_schedule(
    profiles: ProfileSet,
    connector_id: int,
    start: datetime,
    duration_s: int,
    unit: Unit,
    *,
    tx_start: datetime | None,
    transaction_id: int | None,
    phases: int = DEFAULT_PHASES,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    max_current_a: float,
    phase_switching: bool = True,
) -> ChargingSchedule:
    """GetCompositeSchedule: the limit on ``connector_id`` over ``duration_s`` seconds from
    ``start``, in ``unit``, as periods whose ``start_period_s`` counts from ``start``.
    Where no profile gives a limit, the hardware's ``max_current_a`` is reported. The
    period at offset *k* holds ``floor_tenth(limit_at(start + k s).value(unit))``;
    consecutive periods always differ (in limit or phases). Connector 0: the
    ChargePointMaxProfile alone (``max_current_a`` then being the charger's)."""
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, not {duration_s}")
    q = _query(
        connector_id, tx_start, transaction_id, phases, voltage_v, max_current_a, phase_switching
    )
    entries = _relevant(profiles, q)
    end = _later(start, timedelta(seconds=duration_s))
    offsets = {0}
    for e in entries:
        for t in _boundaries(e.profile, tx_start, start, end):
            offsets.add(math.ceil((t - start).total_seconds()))
    hardware = Limit(max_current_a, phases, voltage_v)
    periods: list[ChargingSchedulePeriod] = []
    for offset in sorted(o for o in offsets if o < duration_s):
        limit = _limit(entries, _later(start, timedelta(seconds=offset)), q) or hardware
        period = ChargingSchedulePeriod(offset, floor_tenth(limit.value(unit)), limit.number_phases)
        if periods and (periods[-1].limit, periods[-1].number_phases) == (
            period.limit,
            period.number_phases,
        ):
            continue
        periods.append(period)
    return ChargingSchedule(
        unit=unit, periods=tuple(periods), duration_s=duration_s, start_schedule=start
    )
