"""Reservations and charging profiles kept across restarts, in the store's ``state`` table.

Both are stored in the OCPP 1.6 shapes (ReserveNow fields, csChargingProfiles), which the
station's domain objects map to one to one; the 2.0.1 agent keeps them the same way, so
a data_dir carries them across a change of OCPP version.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC

from cpagent.station.model import Reservation
from cpagent.station.smart_charging import (
    InstalledProfile,
    ProfileSet,
    parse_profile,
    profile_to_ocpp,
)
from cpagent.store import Store
from cpagent.timeutil import parse_iso

log = logging.getLogger(__name__)

RESERVATIONS_STATE_KEY = "reservations"
"""The ``state`` key holding the reservations in force, as a JSON list."""


def reservations_to_json(reservations: list[Reservation]) -> str:
    return json.dumps(
        [
            {
                "reservationId": r.reservation_id,
                "connectorId": r.connector_id,
                "idTag": r.id_token,
                "parentIdTag": r.group_token,
                "expiryDate": r.expiry.astimezone(UTC).isoformat(),
            }
            for r in reservations
        ],
        separators=(",", ":"),
    )


def reservations_from_json(text: str | None) -> list[Reservation]:
    """The persisted reservations; an entry that cannot be read is dropped with a warning."""
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        log.warning("persisted reservations are not JSON; dropped: %.200r", text)
        return []
    if not isinstance(items, list):
        log.warning("persisted reservations are not a list; dropped: %.200r", text)
        return []
    out: list[Reservation] = []
    for item in items:
        try:
            parent = item.get("parentIdTag")
            reservation = Reservation(
                reservation_id=int(item["reservationId"]),
                connector_id=int(item["connectorId"]),
                id_token=str(item["idTag"]),
                group_token=None if parent is None else str(parent),
                expiry=parse_iso(str(item["expiryDate"])),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            log.warning("persisted reservation cannot be read; dropped: %.200r", item)
            continue
        out.append(reservation)
    return out


CHARGING_PROFILES_STATE_KEY = "charging_profiles"
"""The ``state`` key holding the installed charging profiles, as a JSON list of
``{"connectorId": n, "csChargingProfiles": {...}}`` in the OCPP shape."""


def charging_profiles_to_json(profiles: ProfileSet) -> str:
    return json.dumps(
        [
            {"connectorId": e.connector_id, "csChargingProfiles": profile_to_ocpp(e.profile)}
            for e in profiles
        ],
        separators=(",", ":"),
    )


def charging_profiles_from_json(text: str | None) -> ProfileSet:
    """The persisted charging profiles; an entry that cannot be read is dropped with a
    warning (the CSMS sees it gone in GetCompositeSchedule and can send it again)."""
    if not text:
        return ProfileSet()
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        log.warning("persisted charging profiles are not a JSON list; dropped: %.200r", text)
        return ProfileSet()
    out: list[InstalledProfile] = []
    for item in items:
        try:
            entry = InstalledProfile(
                int(item["connectorId"]), parse_profile(item["csChargingProfiles"])
            )
        except (KeyError, TypeError, ValueError):
            log.warning("persisted charging profile cannot be read; dropped: %.200r", item)
            continue
        out.append(entry)
    return ProfileSet(tuple(out))


class StatePersistence:
    """The station's reservation and profile stores, on the store's ``state`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save_reservations(self, reservations: list[Reservation]) -> None:
        """The reservations in force, under one state key."""
        await self.store.run(
            self.store.set_state, RESERVATIONS_STATE_KEY, reservations_to_json(reservations)
        )

    async def save_charging_profiles(self, profiles: ProfileSet) -> None:
        """Every installed profile, under one state key."""
        await self.store.run(
            self.store.set_state, CHARGING_PROFILES_STATE_KEY, charging_profiles_to_json(profiles)
        )
