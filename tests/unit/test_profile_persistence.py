"""Installed charging profiles as the adapter persists them under one ``state`` key, and as
the agent reads them back at start (``Agent._recovery``) through the real store."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpagent.agent import Agent
from cpagent.config import Config, parse_config
from cpagent.hal.sim import SimHardware
from cpagent.station.persistence import (
    CHARGING_PROFILES_STATE_KEY,
    StatePersistence,
    charging_profiles_from_json,
    charging_profiles_to_json,
)
from cpagent.station.smart_charging import (
    ChargingProfile,
    ChargingSchedule,
    ChargingSchedulePeriod,
    InstalledProfile,
    Kind,
    ProfileSet,
    Purpose,
    Recurrency,
    Unit,
)
from cpagent.store import Store
from tests.unit.test_smart_charging import sched as schedule

LOGGER = "cpagent.station.persistence"
T0 = datetime(2030, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def installed(connector_id: int, **fields: Any) -> InstalledProfile:
    return InstalledProfile(connector_id, ChargingProfile(**fields))


EVERY_KIND = ProfileSet(
    (
        # Absolute from a startSchedule, on connector 0 (every connector's default), with a
        # duration, a minimum charging rate and numberPhases on some periods.
        installed(
            0,
            id=1,
            stack_level=0,
            purpose=Purpose.TX_DEFAULT,
            kind=Kind.ABSOLUTE,
            schedule=schedule(
                (0, 16.0), (900, 6.5, 1), (1800, 32.0, 3), duration=3600, start=T0, min_rate=6.1
            ),
        ),
        # Relative, for one transaction, in watts.
        installed(
            1,
            id=2,
            stack_level=3,
            purpose=Purpose.TX,
            kind=Kind.RELATIVE,
            transaction_id=4711,
            schedule=schedule((0, 11040.0), (600, 7360.5, 2), unit="W", min_rate=1380.0),
        ),
        # Recurring daily, the charger's maximum, valid for a while only.
        installed(
            0,
            id=3,
            stack_level=1,
            purpose=Purpose.STATION_MAX,
            kind=Kind.RECURRING,
            recurrency=Recurrency.DAILY,
            valid_from=T0 - timedelta(days=1),
            valid_to=T0 + timedelta(days=30, milliseconds=5),
            schedule=schedule((0, 63.0), (25200, 20.0), (79200, 63.0), start=T0),
        ),
        # Recurring weekly on connector N, valid from a date given with an offset.
        installed(
            2,
            id=4,
            stack_level=10,
            purpose=Purpose.TX_DEFAULT,
            kind=Kind.RECURRING,
            recurrency=Recurrency.WEEKLY,
            valid_from=datetime(2030, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))),
            schedule=schedule((0, 22080.0, 3), (86400, 0.0), unit="W", duration=604800, start=T0),
        ),
        # A TxProfile without transactionId (as RemoteStartTransaction brings), Absolute
        # without startSchedule (counting from the start of charging), valid until a date.
        installed(
            1,
            id=5,
            stack_level=0,
            purpose=Purpose.TX,
            kind=Kind.ABSOLUTE,
            valid_to=T0,
            schedule=schedule((0, 0.0), (60, 10.1), duration=0),
        ),
    )
)


def adapter_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


def entry(connector_id: Any, profile: Any) -> dict[str, Any]:
    return {"connectorId": connector_id, "csChargingProfiles": profile}


def good(profile_id: int) -> dict[str, Any]:
    """A readable ``csChargingProfiles`` object as it is stored."""
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    }


def good_installed(connector_id: int, profile_id: int) -> InstalledProfile:
    return installed(
        connector_id,
        id=profile_id,
        stack_level=0,
        purpose=Purpose.TX_DEFAULT,
        kind=Kind.ABSOLUTE,
        schedule=schedule((0, 16.0)),
    )


def with_field(profile_id: int, path: str, value: Any) -> dict[str, Any]:
    """``good(profile_id)`` with the field at dotted ``path`` set to ``value`` (or removed
    when ``value`` is ``...``)."""
    data = good(profile_id)
    *parents, key = path.split(".")
    target: Any = data
    for name in parents:
        target = target[int(name)] if isinstance(target, list) else target[name]
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return data


# --------------------------------------------------------------------------- the JSON


def test_every_kind_of_profile_round_trips() -> None:
    text = charging_profiles_to_json(EVERY_KIND)
    assert charging_profiles_from_json(text) == EVERY_KIND
    # The order is kept (it is the order of installation).
    assert [e.profile.id for e in charging_profiles_from_json(text)] == [1, 2, 3, 4, 5]


def test_the_stored_shape_is_the_ocpp_one() -> None:
    """What lies on disk: a JSON list of the connector and the OCPP 1.6
    ``csChargingProfiles`` object, camelCase, dates in UTC, absent fields left out. A
    later version must keep reading this."""
    stored = json.loads(charging_profiles_to_json(EVERY_KIND))
    assert stored[0] == {
        "connectorId": 0,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": "2030-03-04T05:06:07.890Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16},
                    {"startPeriod": 900, "limit": 6.5, "numberPhases": 1},
                    {"startPeriod": 1800, "limit": 32, "numberPhases": 3},
                ],
                "minChargingRate": 6.1,
            },
        },
    }
    assert stored[1]["csChargingProfiles"]["transactionId"] == 4711
    assert stored[2]["csChargingProfiles"]["recurrencyKind"] == "Daily"
    assert stored[2]["csChargingProfiles"]["validTo"] == "2030-04-03T05:06:07.895Z"
    assert stored[3]["csChargingProfiles"]["validFrom"] == "2030-01-01T06:00:00.000Z"
    assert [e["connectorId"] for e in stored] == [0, 1, 0, 2, 1]


def test_an_empty_set_round_trips() -> None:
    assert charging_profiles_to_json(ProfileSet()) == "[]"
    assert charging_profiles_from_json("[]") == ProfileSet()


@pytest.mark.parametrize("text", [None, ""])
def test_nothing_stored_is_no_profiles_and_no_warning(
    text: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert charging_profiles_from_json(text) == ProfileSet()
    assert adapter_warnings(caplog) == []


@pytest.mark.parametrize(
    "text", ["not json", "[1, 2", '{"connectorId": 1}', "null", "5", '"a string"', "true"]
)
def test_a_value_that_is_no_json_list_drops_everything_with_a_warning(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert charging_profiles_from_json(text) == ProfileSet()
    (warning,) = adapter_warnings(caplog)
    assert "not a JSON list" in warning
    assert text[:20] in warning


UNREADABLE_ENTRIES: dict[str, Any] = {
    "a number": 1,
    "null": None,
    "a string": "profile",
    "a list": [0, good(90)],
    "no connectorId": {"csChargingProfiles": good(90)},
    "no profile": {"connectorId": 1},
    "connectorId null": entry(None, good(90)),
    "connectorId not a number": entry("one", good(90)),
    "connectorId an object": entry({"id": 1}, good(90)),
    "profile null": entry(1, None),
    "profile a number": entry(1, 7),
    "profile a string": entry(1, "profile"),
    "profile a list": entry(1, [good(90)]),
    "no chargingProfileId": entry(1, with_field(90, "chargingProfileId", ...)),
    "chargingProfileId text": entry(1, with_field(90, "chargingProfileId", "90")),
    "no stackLevel": entry(1, with_field(90, "stackLevel", ...)),
    "stackLevel a fraction": entry(1, with_field(90, "stackLevel", 1.5)),
    "unknown purpose": entry(1, with_field(90, "chargingProfilePurpose", "Cheapest")),
    "unknown kind": entry(1, with_field(90, "chargingProfileKind", "Sometimes")),
    "unknown recurrency": entry(1, with_field(90, "recurrencyKind", "Monthly")),
    "no schedule": entry(1, with_field(90, "chargingSchedule", ...)),
    "schedule a list": entry(1, with_field(90, "chargingSchedule", [])),
    "no unit": entry(1, with_field(90, "chargingSchedule.chargingRateUnit", ...)),
    "unknown unit": entry(1, with_field(90, "chargingSchedule.chargingRateUnit", "kW")),
    "no periods": entry(1, with_field(90, "chargingSchedule.chargingSchedulePeriod", ...)),
    "periods an object": entry(1, with_field(90, "chargingSchedule.chargingSchedulePeriod", {})),
    "a period no object": entry(1, with_field(90, "chargingSchedule.chargingSchedulePeriod", [16])),
    "a period without limit": entry(
        1, with_field(90, "chargingSchedule.chargingSchedulePeriod.0.limit", ...)
    ),
    "a limit as text": entry(
        1, with_field(90, "chargingSchedule.chargingSchedulePeriod.0.limit", "16")
    ),
    "a limit true": entry(
        1, with_field(90, "chargingSchedule.chargingSchedulePeriod.0.limit", True)
    ),
    "a startPeriod fraction": entry(
        1, with_field(90, "chargingSchedule.chargingSchedulePeriod.0.startPeriod", 0.5)
    ),
    "validFrom not a date": entry(1, with_field(90, "validFrom", "soon")),
    "validTo impossible": entry(1, with_field(90, "validTo", "2030-02-30T00:00:00Z")),
    "validTo a number": entry(1, with_field(90, "validTo", 1893456000)),
    "startSchedule bad offset": entry(
        1, with_field(90, "chargingSchedule.startSchedule", "2030-01-01T00:00:00+25:00")
    ),
    "duration text": entry(1, with_field(90, "chargingSchedule.duration", "3600")),
    "minChargingRate text": entry(1, with_field(90, "chargingSchedule.minChargingRate", "6")),
    "transactionId text": entry(1, with_field(90, "transactionId", "4711")),
}


@pytest.mark.parametrize("bad", list(UNREADABLE_ENTRIES.values()), ids=list(UNREADABLE_ENTRIES))
def test_an_unreadable_entry_is_dropped_alone_with_a_warning(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    text = json.dumps([entry(0, good(1)), bad, entry(2, good(2))])
    assert charging_profiles_from_json(text) == ProfileSet(
        (good_installed(0, 1), good_installed(2, 2))
    )
    (warning,) = adapter_warnings(caplog)
    assert "cannot be read; dropped" in warning
    assert repr(bad)[:40] in warning


def test_unreadable_entries_do_not_hide_the_readable_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    text = json.loads(charging_profiles_to_json(EVERY_KIND))
    bad = [None, {"connectorId": 1}, entry(1, with_field(91, "validFrom", "yesterday"))]
    mixed = [bad[0], *text[:2], bad[1], *text[2:], bad[2]]
    assert charging_profiles_from_json(json.dumps(mixed)) == EVERY_KIND
    assert len(adapter_warnings(caplog)) == len(bad)


def test_what_a_csms_could_have_sent_is_read_as_well() -> None:
    """Stored text is parsed as OCPP: dates with an offset or without a fraction, limits
    as integers, optional fields absent or null."""
    text = json.dumps(
        [
            entry(
                1,
                {
                    "chargingProfileId": 7,
                    "stackLevel": 2,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Recurring",
                    "recurrencyKind": "Daily",
                    "validFrom": "2030-03-04T07:06:07.890+02:00",
                    "validTo": None,
                    "transactionId": None,
                    "chargingSchedule": {
                        "startSchedule": "2030-03-04T05:06:07.89Z",
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": 10},
                            {"startPeriod": 3600, "limit": 12.5, "numberPhases": None},
                        ],
                        "duration": None,
                    },
                },
            )
        ]
    )
    assert charging_profiles_from_json(text) == ProfileSet(
        (
            installed(
                1,
                id=7,
                stack_level=2,
                purpose=Purpose.TX_DEFAULT,
                kind=Kind.RECURRING,
                recurrency=Recurrency.DAILY,
                valid_from=T0,
                schedule=schedule((0, 10.0), (3600, 12.5), start=T0),
            ),
        )
    )


def test_sub_millisecond_times_round_trip() -> None:
    """RFC 3339 allows more digits than OCPP's usual milliseconds, and a schedule's
    boundaries are exact to the microsecond: a restart must not move them."""
    precise = T0 + timedelta(microseconds=456)
    profiles = ProfileSet(
        (
            installed(
                0,
                id=1,
                stack_level=0,
                purpose=Purpose.TX_DEFAULT,
                kind=Kind.ABSOLUTE,
                valid_to=precise + timedelta(days=1),
                schedule=schedule((0, 16.0), start=precise),
            ),
        )
    )
    assert charging_profiles_from_json(charging_profiles_to_json(profiles)) == profiles


# --------------------------------------------------------------------------- property

_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_TENTHS = st.integers(0, 1_000_000).map(lambda n: n / 10)
_UNITS: st.SearchStrategy[Unit] = st.sampled_from(["A", "W"])


@st.composite
def profile_sets(draw: st.DrawFn) -> ProfileSet:
    """Any profiles the CSMS can send (limits in tenths, as the schema allows), on any
    connector; nothing is validated, as the store keeps whatever was installed."""
    entries = []
    for _ in range(draw(st.integers(0, 6))):
        periods = [
            ChargingSchedulePeriod(start, draw(_TENTHS), draw(st.none() | st.integers(1, 3)))
            for start in [0, *sorted(draw(st.sets(st.integers(1, 604800), max_size=5)))]
        ]
        kind = draw(st.sampled_from(list(Kind)))
        profile = ChargingProfile(
            id=draw(st.integers(-(2**31), 2**31 - 1)),
            stack_level=draw(st.integers(0, 100)),
            purpose=draw(st.sampled_from(list(Purpose))),
            kind=kind,
            recurrency=draw(st.none() | st.sampled_from(list(Recurrency))),
            valid_from=draw(st.none() | _TIMES),
            valid_to=draw(st.none() | _TIMES),
            transaction_id=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
            schedule=ChargingSchedule(
                unit=draw(_UNITS),
                periods=tuple(periods),
                duration_s=draw(st.none() | st.integers(0, 10**7)),
                start_schedule=draw(st.none() | _TIMES),
                min_charging_rate=draw(st.none() | _TENTHS),
            ),
        )
        entries.append(InstalledProfile(draw(st.integers(0, 8)), profile))
    return ProfileSet(tuple(entries))


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],  # the machine may be busy
)
@given(profile_sets())
def test_any_installed_set_round_trips(profiles: ProfileSet) -> None:
    assert charging_profiles_from_json(charging_profiles_to_json(profiles)) == profiles


# --------------------------------------------------------------------------- the real store


def agent_config(data_dir: Path) -> Config:
    return parse_config(
        {
            "charge_point": {"id": "CP001", "vendor": "V", "model": "M", "connectors": 2},
            "csms": {"url": "ws://127.0.0.1:9/ocpp"},
            "storage": {"data_dir": str(data_dir)},
        },
        base_dir=data_dir,
    )


async def no_reset(_kind: str) -> None:
    raise AssertionError("no reset expected")


async def save_through_adapter(config: Config, *saves: ProfileSet) -> None:
    """Open the store as a running agent would and save ``saves`` one after the other with
    ``StatePersistence.save_charging_profiles`` (the station's profile store); then close
    it."""
    store = Store(config.storage.data_dir)
    store.open()
    try:
        persistence = StatePersistence(store)
        for profiles in saves:
            await persistence.save_charging_profiles(profiles)
    finally:
        store.close()


def recovered(config: Config) -> ProfileSet:
    """What a restarted agent passes to ``Station.start`` as ``charging_profiles``."""
    agent = Agent(config, hardware=SimHardware(config.charge_point.connectors))
    agent.store.open()
    try:
        profiles = agent._recovery()["charging_profiles"]
    finally:
        agent.store.close()
    assert isinstance(profiles, ProfileSet)
    return profiles


def store_state(config: Config, value: str) -> None:
    store = Store(config.storage.data_dir)
    store.open()
    try:
        store.set_state(CHARGING_PROFILES_STATE_KEY, value)
    finally:
        store.close()


async def test_saved_profiles_are_what_a_restarted_agent_recovers(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "data")
    await save_through_adapter(config, EVERY_KIND)
    assert recovered(config) == EVERY_KIND
    # Reading them back changes nothing: a second start recovers the same.
    assert recovered(config) == EVERY_KIND


async def test_the_latest_save_replaces_the_previous_one(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "data")
    fewer, _ = EVERY_KIND.clear(purpose=Purpose.TX)
    await save_through_adapter(config, EVERY_KIND, fewer)
    assert recovered(config) == fewer
    assert [e.profile.id for e in fewer] == [1, 3, 4]
    await save_through_adapter(config, ProfileSet())
    assert recovered(config) == ProfileSet()


def test_a_new_data_dir_recovers_no_profiles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert recovered(agent_config(tmp_path / "data")) == ProfileSet()
    assert adapter_warnings(caplog) == []


def test_a_damaged_state_value_recovers_what_can_be_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    config = agent_config(tmp_path / "data")
    stored = json.loads(charging_profiles_to_json(EVERY_KIND))
    stored.insert(2, entry(1, with_field(91, "chargingSchedule.startSchedule", "noon")))
    store_state(config, json.dumps(stored))
    assert recovered(config) == EVERY_KIND
    assert len(adapter_warnings(caplog)) == 1

    caplog.clear()
    store_state(config, json.dumps(stored)[:-30])  # cut short, as by a torn write
    assert recovered(config) == ProfileSet()
    (warning,) = adapter_warnings(caplog)
    assert "not a JSON list" in warning


def test_a_damaged_entry_does_not_stop_the_agent_from_starting(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "data")
    stored = json.loads(charging_profiles_to_json(EVERY_KIND))
    stored.append(entry(1, "damaged"))
    store_state(config, json.dumps(stored))
    assert recovered(config) == EVERY_KIND
