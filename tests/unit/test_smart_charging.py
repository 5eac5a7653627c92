"""OCPP 1.6 Smart Charging domain: parsing, validation, the profile registry, stacking,
the limit in force and the composite schedule; examples first, then properties."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpagent.station.smart_charging import (
    MIN_CURRENT_A,
    ChargingProfile,
    ChargingSchedule,
    ChargingSchedulePeriod,
    InstalledProfile,
    Kind,
    Limit,
    ProfileFormatError,
    ProfileSet,
    Purpose,
    Recurrency,
    RejectReason,
    SmartChargingLimits,
    Unit,
    composite_schedule,
    floor_tenth,
    limit_at,
    next_change,
    parse_allowed_units,
    parse_profile,
    profile_to_ocpp,
    schedule_to_ocpp,
    to_amps,
    to_watts,
    validate_profile,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
H = 3600
DAY = 86400
V = 230.0
HW_A = 32.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sched(
    *periods: tuple[int, float] | tuple[int, float, int],
    unit: Unit = "A",
    duration: int | None = None,
    start: datetime | None = None,
    min_rate: float | None = None,
) -> ChargingSchedule:
    return ChargingSchedule(
        unit=unit,
        periods=tuple(ChargingSchedulePeriod(*p) for p in periods),
        duration_s=duration,
        start_schedule=start,
        min_charging_rate=min_rate,
    )


def prof(
    pid: int,
    schedule: ChargingSchedule,
    *,
    level: int = 0,
    purpose: Purpose = Purpose.TX_DEFAULT,
    kind: Kind = Kind.ABSOLUTE,
    recurrency: Recurrency | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    tx: int | None = None,
) -> ChargingProfile:
    return ChargingProfile(
        id=pid,
        stack_level=level,
        purpose=purpose,
        kind=kind,
        recurrency=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=tx,
        schedule=schedule,
    )


def pset(*entries: tuple[int, ChargingProfile]) -> ProfileSet:
    profiles = ProfileSet()
    for connector_id, profile in entries:
        profiles = profiles.install(connector_id, profile)
    return profiles


def amps(
    profiles: ProfileSet,
    when: datetime,
    *,
    connector_id: int = 1,
    tx_start: datetime | None = None,
    transaction_id: int | None = None,
    phases: int = 3,
    max_current_a: float | None = None,
) -> float | None:
    limit = limit_at(
        profiles,
        connector_id,
        when,
        tx_start=tx_start,
        transaction_id=transaction_id,
        phases=phases,
        voltage_v=V,
        max_current_a=max_current_a,
    )
    return None if limit is None else limit.current_a


# ------------------------------------------------------------------------------ parsing

SPEC_DAILY_TX_DEFAULT: dict[str, Any] = {
    # The shape of the spec's example: a daily TxDefaultProfile, 11 kW at night, 6 kW by day.
    "chargingProfileId": 100,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "chargingSchedule": {
        "startSchedule": "2013-01-01T00:00:00Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000},
            {"startPeriod": 28800, "limit": 6000},
            {"startPeriod": 72000, "limit": 11000},
        ],
    },
}

SPEC_TX_PROFILE: dict[str, Any] = {
    "chargingProfileId": 158798,
    "transactionId": 7,
    "stackLevel": 1,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Absolute",
    "validFrom": "2026-03-02T00:00:00Z",
    "validTo": "2026-03-03T00:00:00.500Z",
    "chargingSchedule": {
        "duration": 86400,
        "startSchedule": "2026-03-02T15:09:18+01:00",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
            {"startPeriod": 780, "limit": 9000.5, "numberPhases": 3},
            {"startPeriod": 1680, "limit": 4140, "numberPhases": 1},
        ],
        "minChargingRate": 1380.0,
    },
}


def test_parse_daily_recurring_example() -> None:
    p = parse_profile(SPEC_DAILY_TX_DEFAULT)
    assert p.id == 100
    assert p.stack_level == 0
    assert p.purpose is Purpose.TX_DEFAULT
    assert p.kind is Kind.RECURRING
    assert p.recurrency is Recurrency.DAILY
    assert p.valid_from is None and p.valid_to is None and p.transaction_id is None
    assert p.schedule == ChargingSchedule(
        unit="W",
        periods=(
            ChargingSchedulePeriod(0, 11000.0),
            ChargingSchedulePeriod(28800, 6000.0),
            ChargingSchedulePeriod(72000, 11000.0),
        ),
        start_schedule=datetime(2013, 1, 1, tzinfo=UTC),
    )


def test_parse_tx_profile_with_every_field() -> None:
    p = parse_profile(SPEC_TX_PROFILE)
    assert p.purpose is Purpose.TX and p.kind is Kind.ABSOLUTE
    assert p.transaction_id == 7 and p.stack_level == 1
    assert p.valid_from == T0
    assert p.valid_to == datetime(2026, 3, 3, 0, 0, 0, 500000, tzinfo=UTC)
    s = p.schedule
    assert s.duration_s == DAY
    assert s.start_schedule == datetime(2026, 3, 2, 14, 9, 18, tzinfo=UTC)
    assert s.min_charging_rate == 1380.0
    assert s.periods[1] == ChargingSchedulePeriod(780, 9000.5, 3)
    assert s.periods[2].number_phases == 1


def test_parse_accepts_the_snake_case_keys_the_ocpp_library_hands_over() -> None:
    snake = {
        "charging_profile_id": 3,
        "stack_level": 2,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 16, "number_phases": 1}],
            "min_charging_rate": 6,
        },
    }
    p = parse_profile(snake)
    assert (p.id, p.stack_level, p.purpose, p.kind) == (3, 2, Purpose.TX, Kind.RELATIVE)
    assert p.schedule.periods == (ChargingSchedulePeriod(0, 16.0, 1),)
    assert p.schedule.min_charging_rate == 6.0


def test_parse_remote_start_profile_and_accept_it_before_the_transaction() -> None:
    data = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        },
    }
    p = parse_profile(data)
    assert (
        validate_profile(
            p,
            1,
            limits=SmartChargingLimits(),
            installed=ProfileSet(),
            transaction_running=False,
            transaction_id=None,
            remote_start=True,
        )
        is None
    )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"stackLevel": None}, "stackLevel: missing"),
        ({"stackLevel": "1"}, "stackLevel: not an integer"),
        ({"chargingProfileId": True}, "chargingProfileId: not an integer"),
        ({"chargingProfilePurpose": "Max"}, "chargingProfilePurpose: unknown value"),
        ({"chargingProfileKind": "Sometimes"}, "chargingProfileKind: unknown value"),
        ({"recurrencyKind": "Monthly"}, "recurrencyKind: unknown value"),
        ({"validFrom": "yesterday"}, "validFrom: not an RFC 3339"),
        ({"validTo": 12}, "validTo: not a date-time"),
        ({"chargingSchedule": None}, "chargingSchedule: missing"),
        ({"chargingSchedule": []}, "chargingSchedule: not an object"),
    ],
)
def test_parse_rejects_malformed_profiles(patch: dict[str, Any], message: str) -> None:
    data = {**SPEC_DAILY_TX_DEFAULT, **patch}
    with pytest.raises(ProfileFormatError, match=message):
        parse_profile(data)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"chargingRateUnit": "kW"}, "chargingRateUnit: unknown value"),
        ({"chargingSchedulePeriod": None}, "chargingSchedulePeriod: missing"),
        ({"chargingSchedulePeriod": {"startPeriod": 0}}, "not an array"),
        ({"chargingSchedulePeriod": [7]}, "not an object"),
        ({"chargingSchedulePeriod": [{"startPeriod": 0.5, "limit": 1}]}, "startPeriod"),
        ({"chargingSchedulePeriod": [{"startPeriod": 0, "limit": "16"}]}, "limit: not a number"),
        ({"chargingSchedulePeriod": [{"startPeriod": 0}]}, "limit: missing"),
        ({"duration": "1h"}, "duration: not an integer"),
    ],
)
def test_parse_rejects_malformed_schedules(patch: dict[str, Any], message: str) -> None:
    data = {
        **SPEC_DAILY_TX_DEFAULT,
        "chargingSchedule": {**SPEC_DAILY_TX_DEFAULT["chargingSchedule"], **patch},
    }
    with pytest.raises(ProfileFormatError, match=message):
        parse_profile(data)


@pytest.mark.parametrize("data", [SPEC_DAILY_TX_DEFAULT, SPEC_TX_PROFILE])
def test_profile_round_trips_through_the_ocpp_shape(data: dict[str, Any]) -> None:
    p = parse_profile(data)
    assert parse_profile(profile_to_ocpp(p)) == p


def test_profile_to_ocpp_writes_rfc3339_z() -> None:
    out = profile_to_ocpp(parse_profile(SPEC_TX_PROFILE))
    assert out["validTo"] == "2026-03-03T00:00:00.500Z"
    assert out["chargingSchedule"]["startSchedule"] == "2026-03-02T14:09:18.000Z"
    assert out["chargingSchedule"]["chargingSchedulePeriod"][1] == {
        "startPeriod": 780,
        "limit": 9000.5,
        "numberPhases": 3,
    }
    assert "recurrencyKind" not in out


def test_schedule_to_ocpp_is_the_get_composite_schedule_shape() -> None:
    s = ChargingSchedule(
        unit="A",
        periods=(ChargingSchedulePeriod(0, 15.94, 3), ChargingSchedulePeriod(60, 16.0)),
        duration_s=300,
        start_schedule=T0 + timedelta(microseconds=250000),
    )
    assert schedule_to_ocpp(s) == {
        "duration": 300,
        "startSchedule": "2026-03-02T00:00:00.250Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 15.9, "numberPhases": 3},
            {"startPeriod": 60, "limit": 16},
        ],
    }


# ------------------------------------------------------------------------------ validation

LIMITS = SmartChargingLimits(
    max_stack_level=5, max_periods=3, allowed_units=frozenset({"A", "W"}), max_profiles=3
)
OK_SCHEDULE = sched((0, 16.0))


def check(
    profile: ChargingProfile,
    connector_id: int = 1,
    *,
    limits: SmartChargingLimits = LIMITS,
    installed: ProfileSet | None = None,
    running: bool = True,
    transaction_id: int | None = 7,
    remote_start: bool = False,
) -> RejectReason | None:
    rejection = validate_profile(
        profile,
        connector_id,
        limits=limits,
        installed=installed if installed is not None else ProfileSet(),
        transaction_running=running,
        transaction_id=transaction_id,
        remote_start=remote_start,
    )
    if rejection is not None:
        assert rejection.reason.value in str(rejection)
    return None if rejection is None else rejection.reason


@pytest.mark.parametrize(
    ("profile", "connector_id", "reason"),
    [
        (prof(1, OK_SCHEDULE, level=6), 1, RejectReason.STACK_LEVEL),
        (prof(1, OK_SCHEDULE, level=-1), 1, RejectReason.STACK_LEVEL),
        (prof(1, sched((0, 1), (10, 2), (20, 3), (30, 4))), 1, RejectReason.TOO_MANY_PERIODS),
        (prof(1, sched()), 1, RejectReason.BAD_PERIODS),
        (prof(1, sched((5, 16))), 1, RejectReason.BAD_PERIODS),
        (prof(1, sched((0, 16), (60, 10), (60, 8))), 1, RejectReason.BAD_PERIODS),
        (prof(1, sched((0, 16), (60, 10), (30, 8))), 1, RejectReason.BAD_PERIODS),
        (prof(1, sched((0, 16), duration=-1)), 1, RejectReason.BAD_DURATION),
        (prof(1, OK_SCHEDULE, kind=Kind.RECURRING), 1, RejectReason.NO_RECURRENCY),
        (prof(1, sched((0, 16), (60, -0.1))), 1, RejectReason.NEGATIVE_LIMIT),
        (
            prof(1, replace(OK_SCHEDULE, min_charging_rate=-1.0)),
            1,
            RejectReason.NEGATIVE_LIMIT,
        ),
        (prof(1, sched((0, 16, 0))), 1, RejectReason.BAD_PHASES),
        (prof(1, sched((0, 16, 4))), 1, RejectReason.BAD_PHASES),
        (
            prof(1, OK_SCHEDULE, purpose=Purpose.STATION_MAX),
            1,
            RejectReason.STATION_MAX_NOT_ON_0,
        ),
        (prof(1, OK_SCHEDULE, purpose=Purpose.TX), 0, RejectReason.TX_PROFILE_ON_0),
        (prof(1, OK_SCHEDULE, purpose=Purpose.TX, tx=8), 1, RejectReason.WRONG_TRANSACTION),
    ],
)
def test_validation_reasons(
    profile: ChargingProfile, connector_id: int, reason: RejectReason
) -> None:
    assert check(profile, connector_id) is reason


def test_unit_not_allowed() -> None:
    only_current = replace(LIMITS, allowed_units=parse_allowed_units("Current"))
    assert check(prof(1, sched((0, 11000), unit="W")), limits=only_current) is (
        RejectReason.UNIT_NOT_ALLOWED
    )
    assert check(prof(1, sched((0, 16), unit="A")), limits=only_current) is None


def test_parse_allowed_units() -> None:
    assert parse_allowed_units("Current,Power") == frozenset({"A", "W"})
    assert parse_allowed_units(" power ") == frozenset({"W"})
    assert parse_allowed_units("") == frozenset()
    with pytest.raises(ValueError, match="Energy"):
        parse_allowed_units("Current,Energy")


def test_tx_profile_needs_a_running_transaction() -> None:
    tx = prof(1, OK_SCHEDULE, purpose=Purpose.TX, tx=7)
    assert check(tx, running=False, transaction_id=None) is RejectReason.NO_TRANSACTION
    assert check(tx, running=True, transaction_id=7) is None
    # Without a transactionId it is for whatever runs on the connector, even before the
    # CSMS has answered StartTransaction.
    anonymous = prof(1, OK_SCHEDULE, purpose=Purpose.TX)
    assert check(anonymous, running=True, transaction_id=None) is None
    # A transaction whose CSMS id is still unknown cannot be the profile's transaction.
    assert check(tx, running=True, transaction_id=None) is RejectReason.WRONG_TRANSACTION


def test_remote_start_profile_must_be_a_tx_profile_without_transaction_id() -> None:
    for profile in (
        prof(1, OK_SCHEDULE, purpose=Purpose.TX_DEFAULT),
        prof(1, OK_SCHEDULE, purpose=Purpose.TX, tx=7),
    ):
        assert check(profile, running=False, remote_start=True) is RejectReason.NOT_TX_PROFILE
    assert check(prof(1, OK_SCHEDULE, purpose=Purpose.TX), running=False, remote_start=True) is None


def test_accepted_profiles() -> None:
    assert check(prof(1, OK_SCHEDULE, purpose=Purpose.STATION_MAX), 0) is None
    assert check(prof(1, OK_SCHEDULE), 0, running=False) is None
    assert check(prof(1, OK_SCHEDULE, level=5), 2, running=False) is None
    recurring = prof(1, OK_SCHEDULE, kind=Kind.RECURRING, recurrency=Recurrency.WEEKLY)
    assert check(recurring) is None
    assert check(prof(1, sched((0, 16), (10, 0), (20, 32, 1), duration=0))) is None


def test_too_many_profiles_but_a_replacement_does_not_count() -> None:
    full = pset(
        (0, prof(1, OK_SCHEDULE, level=0)),
        (0, prof(2, OK_SCHEDULE, level=1)),
        (1, prof(3, OK_SCHEDULE, level=0)),
    )
    assert check(prof(4, OK_SCHEDULE, level=2), 1, installed=full) is (
        RejectReason.TOO_MANY_PROFILES
    )
    assert check(prof(2, OK_SCHEDULE, level=4), 2, installed=full) is None  # same id
    assert check(prof(9, OK_SCHEDULE, level=0), 1, installed=full) is None  # same level


# ------------------------------------------------------------------------------ registry


def ids(profiles: ProfileSet) -> list[int]:
    return sorted(e.profile.id for e in profiles)


def test_install_replaces_the_same_id_wherever_it_is() -> None:
    profiles = pset((0, prof(1, OK_SCHEDULE, level=0)), (1, prof(2, OK_SCHEDULE, level=0)))
    profiles = profiles.install(2, prof(1, sched((0, 8)), level=3))
    assert ids(profiles) == [1, 2]
    assert list(profiles)[-1] == InstalledProfile(2, prof(1, sched((0, 8)), level=3))
    assert profiles.on_connector(0) == ()


def test_install_replaces_same_stack_level_and_purpose_on_the_same_connector_only() -> None:
    profiles = pset(
        (1, prof(1, OK_SCHEDULE, level=2)),
        (2, prof(2, OK_SCHEDULE, level=2)),
        (1, prof(3, OK_SCHEDULE, level=2, purpose=Purpose.TX, tx=7)),
        (1, prof(4, OK_SCHEDULE, level=1)),
    )
    assert ids(profiles) == [1, 2, 3, 4]
    profiles = profiles.install(1, prof(5, OK_SCHEDULE, level=2))
    assert ids(profiles) == [2, 3, 4, 5]


def test_install_does_not_mutate() -> None:
    before = pset((1, prof(1, OK_SCHEDULE)))
    before.install(1, prof(2, OK_SCHEDULE, level=1))
    assert ids(before) == [1]


CLEAR_SET = pset(
    (0, prof(1, OK_SCHEDULE, level=0, purpose=Purpose.STATION_MAX)),
    (0, prof(2, OK_SCHEDULE, level=0)),
    (0, prof(3, OK_SCHEDULE, level=1)),
    (1, prof(4, OK_SCHEDULE, level=1)),
    (1, prof(5, OK_SCHEDULE, level=1, purpose=Purpose.TX, tx=7)),
    (2, prof(6, OK_SCHEDULE, level=0)),
)


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({}, []),
        ({"profile_id": 4}, [1, 2, 3, 5, 6]),
        # with an id the other criteria are ignored (errata 3.26)
        ({"profile_id": 4, "connector_id": 2, "stack_level": 0}, [1, 2, 3, 5, 6]),
        ({"connector_id": 0}, [4, 5, 6]),
        ({"connector_id": 1}, [1, 2, 3, 6]),
        ({"purpose": Purpose.TX_DEFAULT}, [1, 5]),
        ({"stack_level": 1}, [1, 2, 6]),
        ({"connector_id": 0, "purpose": Purpose.TX_DEFAULT}, [1, 4, 5, 6]),
        ({"connector_id": 1, "stack_level": 1}, [1, 2, 3, 6]),
        ({"purpose": Purpose.TX_DEFAULT, "stack_level": 0}, [1, 3, 4, 5]),
        ({"connector_id": 1, "purpose": Purpose.TX_DEFAULT, "stack_level": 1}, [1, 2, 3, 5, 6]),
    ],
)
def test_clear_criteria(criteria: dict[str, Any], left: list[int]) -> None:
    cleared, matched = CLEAR_SET.clear(**criteria)
    assert ids(cleared) == left
    assert matched


@pytest.mark.parametrize(
    "criteria",
    [
        {"profile_id": 99},
        {"connector_id": 3},
        {"connector_id": 2, "stack_level": 1},
        {"connector_id": 0, "purpose": Purpose.TX},
        {"purpose": Purpose.STATION_MAX, "stack_level": 1},
    ],
)
def test_clear_without_a_match_is_unknown(criteria: dict[str, Any]) -> None:
    cleared, matched = CLEAR_SET.clear(**criteria)
    assert not matched
    assert cleared == CLEAR_SET
    _, matched = ProfileSet().clear()
    assert not matched


def test_end_transaction_drops_its_tx_profiles_only() -> None:
    profiles = pset(
        (1, prof(1, OK_SCHEDULE, level=0, purpose=Purpose.TX, tx=7)),
        (1, prof(2, OK_SCHEDULE, level=1, purpose=Purpose.TX)),  # from RemoteStart
        (1, prof(3, OK_SCHEDULE, level=2, purpose=Purpose.TX, tx=8)),
        (2, prof(4, OK_SCHEDULE, level=0, purpose=Purpose.TX)),
        (1, prof(5, OK_SCHEDULE, level=0)),
    )
    assert ids(profiles.end_transaction(1, 7)) == [3, 4, 5]
    assert ids(profiles.end_transaction(1, None)) == [1, 3, 4, 5]


def test_drop_expired() -> None:
    profiles = pset(
        (1, prof(1, OK_SCHEDULE, level=0, valid_to=at(H))),
        (1, prof(2, OK_SCHEDULE, level=1, valid_to=at(2 * H))),
        (1, prof(3, OK_SCHEDULE, level=2)),
    )
    assert ids(profiles.drop_expired(at(H))) == [2, 3]


# ------------------------------------------------------------------------------ the limit


def test_no_profile_no_limit_and_the_composite_is_the_hardware_max() -> None:
    assert amps(ProfileSet(), T0) is None
    composite = composite_schedule(
        ProfileSet(), 1, T0, 600, "W", tx_start=None, transaction_id=None, max_current_a=16
    )
    assert composite.periods == (ChargingSchedulePeriod(0, 16 * V * 3, 3),)
    assert next_change(ProfileSet(), 1, T0, tx_start=None, transaction_id=None) is None


def test_highest_stack_level_wins_and_lower_ones_show_through() -> None:
    profiles = pset(
        (1, prof(1, sched((0, 16)), level=0)),
        (1, prof(2, sched((0, 10), duration=H, start=at(2 * H)), level=5)),
        (1, prof(3, sched((0, 8)), level=9, valid_from=at(5 * H), valid_to=at(6 * H))),
    )
    assert amps(profiles, at(0)) == 16  # level 5 not started yet
    assert amps(profiles, at(2 * H)) == 10
    assert amps(profiles, at(3 * H - 1)) == 10
    assert amps(profiles, at(3 * H)) == 16  # level 5's duration is over
    assert amps(profiles, at(5 * H)) == 8  # validFrom is inclusive
    assert amps(profiles, at(6 * H)) == 16  # validTo is exclusive


def test_absolute_schedule_periods() -> None:
    profiles = pset((1, prof(1, sched((0, 16), (600, 10), (1200, 32), start=at(H)))))
    assert amps(profiles, at(H - 1)) is None
    assert [amps(profiles, at(H + s)) for s in (0, 599, 600, 1199, 1200, 10 * DAY)] == [
        16,
        16,
        10,
        10,
        32,
        32,
    ]


def test_daily_recurrence_across_midnight() -> None:
    night = prof(
        1,
        sched((0, 32), (6 * H, 10), duration=8 * H, start=at(22 * H)),  # 22:00-06:00
        kind=Kind.RECURRING,
        recurrency=Recurrency.DAILY,
    )
    profiles = pset((1, night))
    assert amps(profiles, at(21 * H)) is None  # before the first occurrence
    assert amps(profiles, at(22 * H)) == 32
    assert amps(profiles, at(DAY - 1)) == 32
    assert amps(profiles, at(DAY)) == 32  # midnight
    assert amps(profiles, at(DAY + 4 * H)) == 10  # 04:00 = 6 h into the night
    assert amps(profiles, at(DAY + 6 * H)) is None  # duration over
    assert amps(profiles, at(DAY + 21 * H + 3599)) is None
    assert amps(profiles, at(DAY + 22 * H)) == 32
    assert amps(profiles, at(40 * DAY + 23 * H)) == 32
    tx = dict(tx_start=None, transaction_id=None)
    assert next_change(profiles, 1, at(DAY), **tx) == at(DAY + 4 * H)
    assert next_change(profiles, 1, at(DAY + 4 * H), **tx) == at(DAY + 6 * H)
    assert next_change(profiles, 1, at(DAY + 7 * H), **tx) == at(DAY + 22 * H)


def test_spec_daily_example_over_a_day_in_watts() -> None:
    profiles = pset((0, parse_profile(SPEC_DAILY_TX_DEFAULT)))
    composite = composite_schedule(
        profiles,
        1,
        at(20 * DAY + 6 * H),
        DAY,
        "W",
        tx_start=None,
        transaction_id=None,
        voltage_v=V,
        max_current_a=32,
    )
    # 06:00 11 kW, 08:00 6 kW, 20:00 11 kW, 00:00 (merged, still 11 kW), 06:00 end
    assert composite.periods == (
        ChargingSchedulePeriod(0, 11000.0, 3),
        ChargingSchedulePeriod(2 * H, 6000.0, 3),
        ChargingSchedulePeriod(14 * H, 11000.0, 3),
    )
    assert composite.start_schedule == at(20 * DAY + 6 * H)
    assert composite.duration_s == DAY


def test_weekly_recurrence_across_the_week_boundary() -> None:
    weekly = prof(
        1,
        sched((0, 10), (5 * DAY, 32), start=T0),  # Mon-Fri 10 A, weekend 32 A
        kind=Kind.RECURRING,
        recurrency=Recurrency.WEEKLY,
    )
    profiles = pset((1, weekly))
    assert amps(profiles, at(4 * DAY + 23 * H)) == 10  # Friday night
    assert amps(profiles, at(5 * DAY)) == 32  # Saturday 00:00
    assert amps(profiles, at(7 * DAY - 1)) == 32  # Sunday 23:59:59
    assert amps(profiles, at(7 * DAY)) == 10  # Monday again
    assert amps(profiles, at(52 * 7 * DAY + 6 * DAY)) == 32
    assert amps(profiles, at(-1)) is None
    assert next_change(profiles, 1, at(6 * DAY), tx_start=None, transaction_id=None) == at(7 * DAY)


def test_relative_schedule_counts_from_the_transaction_start() -> None:
    relative = prof(1, sched((0, 10), (H, 20), duration=2 * H), kind=Kind.RELATIVE)
    profiles = pset((1, relative))
    start = at(5 * H)
    tx = dict(tx_start=start, transaction_id=7)
    assert amps(profiles, at(5 * H + 1800), **tx) == 10
    assert amps(profiles, at(6 * H), **tx) == 20
    assert amps(profiles, at(7 * H), **tx) is None
    assert amps(profiles, at(4 * H), **tx) is None  # before the transaction
    # Without a transaction: what a session starting at that instant would get.
    assert amps(profiles, at(0)) == 10
    assert amps(profiles, at(30 * DAY)) == 10
    assert next_change(profiles, 1, at(0), tx_start=None, transaction_id=None) is None
    assert next_change(profiles, 1, start, **tx) == at(6 * H)


def test_absolute_without_start_schedule_is_relative_to_the_transaction() -> None:
    profiles = pset((1, prof(1, sched((0, 10), (H, 20)))))
    assert amps(profiles, at(H + 1), tx_start=at(1), transaction_id=7) == 20
    assert amps(profiles, at(H + 1), tx_start=at(2), transaction_id=7) == 10


def test_tx_profile_overrides_tx_default_for_its_transaction() -> None:
    profiles = pset(
        (1, prof(1, sched((0, 32)), level=9)),
        (
            1,
            prof(
                2, sched((0, 10), duration=H), level=0, purpose=Purpose.TX, tx=7, kind=Kind.RELATIVE
            ),
        ),
    )
    tx_start = at(0)
    assert amps(profiles, at(60), tx_start=tx_start, transaction_id=7) == 10
    assert amps(profiles, at(H), tx_start=tx_start, transaction_id=7) == 32  # TxProfile over
    assert amps(profiles, at(60), tx_start=tx_start, transaction_id=8) == 32  # not its tx
    assert amps(profiles, at(60)) == 32  # no transaction
    assert amps(profiles, at(60), connector_id=2, tx_start=tx_start, transaction_id=7) is None


def test_tx_profile_without_transaction_id_applies_to_the_running_one() -> None:
    profiles = pset((1, prof(1, sched((0, 12)), purpose=Purpose.TX)))
    assert amps(profiles, at(0), tx_start=at(0), transaction_id=None) == 12
    assert amps(profiles, at(0), tx_start=at(0), transaction_id=41) == 12
    assert amps(profiles, at(0)) is None


def test_connector_tx_default_beats_connector_0_at_equal_level_only() -> None:
    everywhere = prof(1, sched((0, 20)), level=1)
    here = prof(2, sched((0, 12)), level=1)
    profiles = pset((0, everywhere), (1, here))
    assert amps(profiles, T0, connector_id=1) == 12
    assert amps(profiles, T0, connector_id=2) == 20
    higher = pset((0, replace(everywhere, stack_level=2)), (1, here))
    assert amps(higher, T0, connector_id=1) == 20


def test_charge_point_max_caps_but_never_raises() -> None:
    cap = prof(9, sched((0, 16), (H, 40), start=T0), purpose=Purpose.STATION_MAX, level=3)
    profiles = pset(
        (0, cap),
        (1, prof(1, sched((0, 32), (2 * H, 10), start=T0))),
        (0, prof(2, sched((0, 6)))),
    )
    assert amps(profiles, at(0)) == 16
    assert amps(profiles, at(H)) == 32
    assert amps(profiles, at(2 * H)) == 10
    assert amps(profiles, at(0), max_current_a=13) == 13
    assert amps(profiles, at(H), max_current_a=13) == 13
    # Connector 0 is the ChargePointMaxProfile alone (the TxDefault on 0 is no limit on 0).
    assert amps(profiles, at(0), connector_id=0) == 16
    assert amps(profiles, at(H), connector_id=0) == 40
    assert amps(pset((0, prof(2, sched((0, 6))))), at(0), connector_id=0) is None
    # A connector with only the charger's cap is limited by it.
    assert amps(pset((0, cap)), at(0), connector_id=2) == 16


def test_composite_for_connector_0_is_the_charge_point_max_profile() -> None:
    cap = prof(9, sched((0, 16), (H, 40), start=T0), purpose=Purpose.STATION_MAX)
    profiles = pset((0, cap), (0, prof(2, sched((0, 6)))))
    composite = composite_schedule(
        profiles, 0, T0, 2 * H, "A", tx_start=None, transaction_id=None, max_current_a=63
    )
    assert composite.periods == (
        ChargingSchedulePeriod(0, 16.0, 3),
        ChargingSchedulePeriod(H, 40.0, 3),
    )


def test_watts_and_amps_with_phases() -> None:
    assert to_watts(16, V, 3) == 11040
    assert to_amps(11040, V, 3) == 16
    assert to_amps(3680, V, 1) == 16
    with pytest.raises(ValueError):
        to_amps(1000, 0, 3)
    three = pset((1, prof(1, sched((0, 11040), unit="W"))))
    assert amps(three, T0) == 16
    one = pset((1, prof(1, sched((0, 3680, 1), unit="W"))))
    limit = limit_at(one, 1, T0, tx_start=None, transaction_id=None, voltage_v=V)
    assert limit == Limit(16.0, 1, V)
    assert limit.value("W") == 3680
    # A single-phase connector: the 3-phase default does not apply.
    assert amps(three, T0, phases=1) == 48
    assert amps(pset((1, prof(1, sched((0, 16, 3))))), T0, phases=1) == 16


def test_mixed_units_compare_as_current_per_phase() -> None:
    # 16 A on one phase is 3.68 kW: well within an 11 kW charger cap.
    profiles = pset(
        (0, prof(9, sched((0, 11000), unit="W"), purpose=Purpose.STATION_MAX)),
        (1, prof(1, sched((0, 16, 1)))),
    )
    limit = limit_at(profiles, 1, T0, tx_start=None, transaction_id=None, voltage_v=V)
    assert limit == Limit(16.0, 1, V)
    # On three phases the 11 kW cap binds: 11000 / (230 * 3) A.
    three = pset(
        (0, prof(9, sched((0, 11000), unit="W"), purpose=Purpose.STATION_MAX)),
        (1, prof(1, sched((0, 16)))),
    )
    assert amps(three, T0) == pytest.approx(15.942, abs=1e-3)
    composite = composite_schedule(
        three, 1, T0, 60, "A", tx_start=None, transaction_id=None, voltage_v=V, max_current_a=32
    )
    assert composite.periods == (ChargingSchedulePeriod(0, 15.9, 3),)


def test_composite_merges_equal_neighbours_and_rounds_offsets_up() -> None:
    profiles = pset(
        (1, prof(1, sched((0, 16), (60, 16), (120, 10), start=T0))),
        (1, prof(2, sched((0, 10)), level=1, valid_from=at(120), valid_to=at(240))),
    )
    composite = composite_schedule(
        profiles, 1, T0, 600, "A", tx_start=None, transaction_id=None, max_current_a=32
    )
    assert composite.periods == (
        ChargingSchedulePeriod(0, 16.0, 3),
        ChargingSchedulePeriod(120, 10.0, 3),
    )
    # A change between two whole seconds is reported at the later one.
    late = composite_schedule(
        profiles,
        1,
        T0 - timedelta(milliseconds=300),
        600,
        "A",
        tx_start=None,
        transaction_id=None,
        max_current_a=32,
    )
    assert [p.start_period_s for p in late.periods] == [0, 1, 121]
    assert late.periods[0].limit == 32  # nothing before T0


def test_next_change_skips_boundaries_that_change_nothing() -> None:
    profiles = pset(
        (1, prof(1, sched((0, 16), (H, 10), start=T0), level=1)),
        (1, prof(2, sched((0, 16), (600, 12), (1200, 16), start=T0), level=0)),  # shadowed
    )
    tx = dict(tx_start=None, transaction_id=None)
    assert next_change(profiles, 1, T0, **tx) == at(H)
    assert next_change(profiles, 1, at(H), **tx) is None
    exact = pset((1, prof(1, sched((0, 16)), valid_from=T0 + timedelta(microseconds=1))))
    assert next_change(exact, 1, T0, **tx) == T0 + timedelta(microseconds=1)


def test_next_change_far_ahead_behind_a_shadowed_recurrence() -> None:
    profiles = pset(
        (
            1,
            prof(
                1,
                sched((0, 16), (H, 10), start=T0),
                kind=Kind.RECURRING,
                recurrency=Recurrency.DAILY,
            ),
        ),
        (1, prof(2, sched((0, 20)), level=1, valid_to=at(40 * DAY))),
    )
    assert next_change(profiles, 1, T0, tx_start=None, transaction_id=None) == at(40 * DAY)


LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "profile",
    [
        prof(1, sched((0, 10), (2**31 - 1, 6), start=LAST_SECOND)),
        prof(2, sched((0, 10), (H, 6), start=LAST_SECOND)),
        prof(3, sched((0, 10), (H, 6)), valid_from=LAST_SECOND),
        prof(
            4,
            sched((0, 10), (H, 6), start=LAST_SECOND),
            kind=Kind.RECURRING,
            recurrency=Recurrency.WEEKLY,
        ),
        prof(
            5,
            sched((0, 10), (2**31 - 1, 6), start=datetime(1, 1, 1, tzinfo=UTC)),
            kind=Kind.RECURRING,
            recurrency=Recurrency.DAILY,
        ),
    ],
    ids=["start-9999", "start-9999-hour", "valid-from-9999", "recurring-9999", "recurring-year-1"],
)
def test_profiles_at_the_ends_of_the_calendar_are_evaluated(profile: ChargingProfile) -> None:
    """A CSMS may mean "never" or "always" by the calendar's first or last second: limits,
    changes and the composite schedule are still computed, not an OverflowError (which
    stopped the station)."""
    profiles = pset((1, profile))
    tx = dict(tx_start=T0, transaction_id=1)
    limit_at(profiles, 1, T0, **tx)
    next_change(profiles, 1, T0, **tx)
    schedule = composite_schedule(profiles, 1, T0, 2**31 - 1, "A", max_current_a=HW_A, **tx)
    assert schedule.periods[0].start_period_s == 0


def test_min_current() -> None:
    assert MIN_CURRENT_A == 6.0
    assert floor_tenth(15.99) == 15.9
    assert floor_tenth(16.0) == 16.0
    assert floor_tenth(0.3) == 0.3


def test_bad_query_arguments() -> None:
    with pytest.raises(ValueError):
        limit_at(ProfileSet(), 1, T0, tx_start=None, transaction_id=None, phases=0)
    with pytest.raises(ValueError):
        composite_schedule(
            ProfileSet(), 1, T0, 0, "A", tx_start=None, transaction_id=None, max_current_a=16
        )


# ------------------------------------------------------------------------------ properties

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI never fails by chance
)
STEP = 900  # boundaries on a quarter-hour grid make coincidences (and merges) likely
A_LIMITS = (0.0, 6.0, 10.0, 16.0, 32.0)
W_LIMITS = (0.0, 4140.0, 7360.0, 11040.0, 22080.0)


# Strategies are built once: building them inside the draw functions costs more than
# drawing from them.
_UNITS: st.SearchStrategy[Unit] = st.sampled_from(["A", "W"])
_STARTS = st.sets(st.integers(1, 2 * DAY // STEP), max_size=4)
_A_VALUES = st.sampled_from(A_LIMITS)
_W_VALUES = st.sampled_from(W_LIMITS)
_PHASES = st.none() | st.integers(1, 3)
_DURATIONS = st.none() | st.integers(0, 2 * DAY // STEP).map(lambda n: n * STEP)
_START_SCHEDULES = st.none() | st.integers(-DAY // STEP, DAY // STEP).map(lambda n: at(n * STEP))
_PURPOSES = st.sampled_from(list(Purpose))
_KINDS = st.sampled_from(list(Kind))
_RECURRENCIES = st.sampled_from(list(Recurrency))
_CONNECTORS = st.sampled_from([0, 1, 2])
_VALID_FROMS = st.none() | st.integers(-DAY // STEP, 2 * DAY // STEP).map(lambda n: at(n * STEP))
_VALID_TOS = st.none() | st.integers(0, 3 * DAY // STEP).map(lambda n: at(n * STEP))
_LEVELS = st.integers(0, 4)
_TX_IDS = st.sampled_from([None, 7, 8])


@st.composite
def schedules(draw: st.DrawFn, *, phases: bool = True) -> ChargingSchedule:
    unit = draw(_UNITS)
    values = _A_VALUES if unit == "A" else _W_VALUES
    periods = tuple(
        ChargingSchedulePeriod(start * STEP, draw(values), draw(_PHASES) if phases else None)
        for start in [0, *sorted(draw(_STARTS))]
    )
    return ChargingSchedule(
        unit=unit,
        periods=periods,
        duration_s=draw(_DURATIONS),
        start_schedule=draw(_START_SCHEDULES),
    )


_SCHEDULES = schedules()
_SCHEDULES_NO_PHASES = schedules(phases=False)


@st.composite
def profiles_(draw: st.DrawFn, *, pid: int, phases: bool = True) -> tuple[int, ChargingProfile]:
    purpose = draw(_PURPOSES)
    kind = draw(_KINDS)
    connector_id = {
        Purpose.STATION_MAX: 0,
        Purpose.TX: 1,
        Purpose.TX_DEFAULT: draw(_CONNECTORS),
    }[purpose]
    profile = prof(
        pid,
        draw(_SCHEDULES if phases else _SCHEDULES_NO_PHASES),
        level=draw(_LEVELS),
        purpose=purpose,
        kind=kind,
        recurrency=draw(_RECURRENCIES) if kind is Kind.RECURRING else None,
        valid_from=draw(_VALID_FROMS),
        valid_to=draw(_VALID_TOS),
        tx=draw(_TX_IDS) if purpose is Purpose.TX else None,
    )
    return connector_id, profile


_PROFILES = {
    phases: [profiles_(pid=pid, phases=phases) for pid in range(1, 6)] for phases in (True, False)
}


@st.composite
def profile_sets(draw: st.DrawFn, *, phases: bool = True) -> ProfileSet:
    profiles = ProfileSet()
    for strategy in _PROFILES[phases][: draw(st.integers(0, 5))]:
        connector_id, profile = draw(strategy)
        profiles = profiles.install(connector_id, profile)
    return profiles


_TX_STARTS = st.none() | st.integers(-DAY, DAY).map(at)
_CONNECTOR_PHASES = st.integers(1, 3)
_HARDWARE = st.sampled_from([16.0, 32.0, 63.0])


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    tx_start = draw(_TX_STARTS)
    return {
        "tx_start": tx_start,
        "transaction_id": None if tx_start is None else draw(_TX_IDS),
        "phases": draw(_CONNECTOR_PHASES),
        "voltage_v": V,
        "max_current_a": draw(_HARDWARE),
    }


def _expected(
    profiles: ProfileSet, connector_id: int, when: datetime, ctx: dict[str, Any]
) -> Limit:
    limit = limit_at(profiles, connector_id, when, **ctx)
    return limit or Limit(ctx["max_current_a"], ctx["phases"], V)


@PROPERTY_SETTINGS
@given(
    profiles=profile_sets(),
    ctx=contexts(),
    connector_id=st.sampled_from([0, 1, 2]),
    start=st.integers(-DAY, 2 * DAY).map(at),
    duration=st.integers(1, 3 * DAY),
    unit=st.sampled_from(["A", "W"]),
    samples=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_composite_agrees_with_limit_at_and_is_well_formed(
    profiles: ProfileSet,
    ctx: dict[str, Any],
    connector_id: int,
    start: datetime,
    duration: int,
    unit: Unit,
    samples: list[float],
) -> None:
    composite = composite_schedule(profiles, connector_id, start, duration, unit, **ctx)
    periods = composite.periods
    assert periods[0].start_period_s == 0
    assert all(p.start_period_s < duration for p in periods)
    for before, after in itertools.pairwise(periods):
        assert before.start_period_s < after.start_period_s
        assert (before.limit, before.number_phases) != (after.limit, after.number_phases)
    offsets = {int(s * duration) for s in samples} | {p.start_period_s for p in periods}
    for offset in offsets:
        expected = _expected(profiles, connector_id, start + timedelta(seconds=offset), ctx)
        period = composite.period_at(offset)
        assert period is not None
        assert period.limit == floor_tenth(expected.value(unit))
        assert period.number_phases == expected.number_phases


@PROPERTY_SETTINGS
@given(
    profiles=profile_sets(phases=False),
    ctx=contexts(),
    start=st.integers(-DAY, 2 * DAY).map(at),
    duration=st.integers(1, 3 * DAY),
    samples=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_never_above_the_charge_point_max_nor_the_hardware(
    profiles: ProfileSet,
    ctx: dict[str, Any],
    start: datetime,
    duration: int,
    samples: list[float],
) -> None:
    composite = composite_schedule(profiles, 1, start, duration, "A", **ctx)
    for s in samples:
        when = start + timedelta(seconds=int(s * duration))
        charger = limit_at(profiles, 0, when, **ctx)
        period = composite.period_at(int(s * duration))
        assert period is not None
        assert period.limit <= ctx["max_current_a"]
        if charger is not None:
            assert period.limit <= floor_tenth(charger.current_a)
            here = limit_at(profiles, 1, when, **ctx)
            assert here is not None and here.current_a <= charger.current_a


@PROPERTY_SETTINGS
@given(
    profiles=profile_sets(),
    data=st.data(),
    ctx=contexts(),
    samples=st.lists(st.integers(-DAY, 3 * DAY), min_size=1, max_size=20),
)
def test_a_lower_stack_level_never_changes_a_higher_ones_limit(
    profiles: ProfileSet, data: st.DataObject, ctx: dict[str, Any], samples: list[int]
) -> None:
    connector_id, extra = data.draw(profiles_(pid=99))
    extra = replace(extra, stack_level=data.draw(st.integers(0, 3)))
    if profiles.replaced_by(connector_id, extra):
        return  # a replacement is not an addition
    more = profiles.install(connector_id, extra)
    higher = [
        e
        for e in profiles
        if e.profile.purpose is extra.purpose and e.profile.stack_level > extra.stack_level
    ]
    for q in (0, 1, 2):
        for s in samples:
            when = at(s)
            if any(limit_at(ProfileSet((e,)), q, when, **ctx) is not None for e in higher):
                assert limit_at(more, q, when, **ctx) == limit_at(profiles, q, when, **ctx)


@PROPERTY_SETTINGS
@given(
    current=st.floats(0, 1000, allow_nan=False),
    voltage=st.floats(100, 480),
    phases=st.integers(1, 3),
)
def test_watts_amps_round_trip(current: float, voltage: float, phases: int) -> None:
    assert to_amps(to_watts(current, voltage, phases), voltage, phases) == pytest.approx(current)
    limit = Limit(current, phases, voltage)
    assert limit.value("W") == pytest.approx(to_watts(limit.value("A"), voltage, phases))


@PROPERTY_SETTINGS
@given(
    profiles=profile_sets(phases=False),
    ctx=contexts(),
    samples=st.lists(st.integers(-DAY, 3 * DAY)),
)
def test_a_profile_restated_in_the_other_unit_gives_the_same_limit(
    profiles: ProfileSet, ctx: dict[str, Any], samples: list[int]
) -> None:
    def restated(e: InstalledProfile) -> InstalledProfile:
        s = e.profile.schedule
        unit: Unit = "W" if s.unit == "A" else "A"
        periods = []
        for p in s.periods:
            n = min(ctx["phases"], p.number_phases or 3)
            factor = V * n
            limit = p.limit * factor if s.unit == "A" else p.limit / factor
            periods.append(ChargingSchedulePeriod(p.start_period_s, limit, n))
        schedule = replace(s, unit=unit, periods=tuple(periods))
        return InstalledProfile(e.connector_id, replace(e.profile, schedule=schedule))

    # W limits are power, A limits current per phase: restating one as the other is exact
    # when every period in force uses the same phases (here: the connector's). Restating
    # fixes each period's phases; compare against the same fixing in the original.
    def fixed(e: InstalledProfile) -> InstalledProfile:
        s = e.profile.schedule
        periods = tuple(
            replace(p, number_phases=min(ctx["phases"], p.number_phases or 3)) for p in s.periods
        )
        return replace(e, profile=replace(e.profile, schedule=replace(s, periods=periods)))

    original = ProfileSet(tuple(fixed(e) for e in profiles))
    other = ProfileSet(tuple(restated(e) for e in profiles))
    for s in samples:
        a = limit_at(original, 1, at(s), **ctx)
        b = limit_at(other, 1, at(s), **ctx)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert b.number_phases == a.number_phases
            assert b.current_a == pytest.approx(a.current_a)


@PROPERTY_SETTINGS
@given(profiles=profile_sets(), ctx=contexts(), connector_id=st.sampled_from([0, 1, 2]))
def test_clearing_everything_leaves_the_hardware_max_only(
    profiles: ProfileSet, ctx: dict[str, Any], connector_id: int
) -> None:
    cleared, matched = profiles.clear()
    assert matched == bool(len(profiles))
    assert len(cleared) == 0
    assert limit_at(cleared, connector_id, T0, **ctx) is None
    composite = composite_schedule(cleared, connector_id, T0, DAY, "A", **ctx)
    assert composite.periods == (ChargingSchedulePeriod(0, ctx["max_current_a"], ctx["phases"]),)


@PROPERTY_SETTINGS
@given(
    profiles=profile_sets(),
    ctx=contexts(),
    connector_id=st.sampled_from([0, 1, 2]),
    after=st.integers(-DAY, 2 * DAY).map(at),
    samples=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_next_change_is_the_first_instant_the_limit_differs(
    profiles: ProfileSet,
    ctx: dict[str, Any],
    connector_id: int,
    after: datetime,
    samples: list[float],
) -> None:
    now = limit_at(profiles, connector_id, after, **ctx)
    change = next_change(profiles, connector_id, after, **ctx)
    span = (change - after) if change is not None else timedelta(days=10)
    assert span > timedelta(0)
    for s in samples:
        within = timedelta(microseconds=int(span / timedelta(microseconds=1) * s))
        assert limit_at(profiles, connector_id, after + within, **ctx) == now
    if change is not None:
        assert limit_at(profiles, connector_id, change, **ctx) != now


@PROPERTY_SETTINGS
@given(entry=st.integers(1, 50).flatmap(lambda pid: profiles_(pid=pid)))
def test_profiles_round_trip_through_json_shape(entry: tuple[int, ChargingProfile]) -> None:
    _, profile = entry
    assert parse_profile(profile_to_ocpp(profile)) == profile
