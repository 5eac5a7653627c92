"""Network connection profiles (B09, B10): which CSMS the station connects to, and the way
back when a new one cannot be reached.

Slot 1 is the installer's connection: ``[csms] url`` with the configured security. The CSMS
adds others with SetNetworkProfile (B09); they are kept in the store and survive restarts.
``OCPPCommCtrlr.NetworkConfigurationPriority`` orders the slots to try. The station connects
with the first; after ``NetworkProfileConnectionAttempts`` failed attempts in a row it moves
to the next, round the list, so that a profile a CSMS got wrong (B10: a migration to a new
CSMS) falls back to the one that worked. ``ActiveNetworkProfile`` reports the slot of the
connection in use.

The connection code (:class:`~cpagent.security.connection.ConnectionSecurity`) reads its
base URL and security profile through :meth:`NetworkProfiles.base_url` and
:meth:`NetworkProfiles.security_profile`, so a change of slot takes effect at the next
attempt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cpagent.protocol.v201.settings import Variables

log = logging.getLogger(__name__)

CONFIGURED_SLOT = 1
STATE_KEY = "ocpp201.network_profiles"
"""The store ``state`` key of the profiles the CSMS set, as JSON {slot: connectionData}."""


@dataclass(frozen=True)
class Profile:
    url: str
    security_profile: int | None
    """None for the configured slot: the security the config and the device model give."""


class NetworkProfiles:
    def __init__(
        self,
        values: Variables,
        configured_url: str,
        saved: str | None,
        save: Callable[[str], None],
    ) -> None:
        self.values = values
        self.save = save
        self.profiles: dict[int, dict[str, Any]] = {}
        self._configured = Profile(configured_url, None)
        self._failures = 0
        if saved:
            try:
                found = json.loads(saved)
                self.profiles = {int(slot): data for slot, data in found.items()}
            except (ValueError, AttributeError, TypeError):
                log.warning("stored network profiles cannot be read; only slot 1 is used")
        self.active = self.order()[0]
        self._report_active()

    # -------------------------------------------------------------- the slots

    def order(self) -> list[int]:
        """The slots to try, in NetworkConfigurationPriority order; only those that hold a
        profile (slot 1 always does). Never empty."""
        wanted = [int(s) for s in self.values.list("OCPPCommCtrlr", "NetworkConfigurationPriority")]
        usable = [s for s in wanted if s == CONFIGURED_SLOT or s in self.profiles]
        return usable or [CONFIGURED_SLOT]

    def profile(self, slot: int | None = None) -> Profile:
        data = self.profiles.get(self.active if slot is None else slot)
        if data is None:  # slot 1, the configured connection
            return self._configured
        return Profile(data["ocppCsmsUrl"], int(data["securityProfile"]))

    def base_url(self) -> str:
        return self.profile().url

    def security_profile(self) -> int | None:
        return self.profile().security_profile

    # ------------------------------------------------------------------ B09

    def refusal(self, slot: int, data: dict[str, Any], current_profile: int) -> str | None:
        """Why SetNetworkProfile of ``slot`` must be Rejected, or None (B09.FR.01-03)."""
        if slot == CONFIGURED_SLOT:
            return "slot 1 is the configured connection ([csms] url); use another slot"
        if slot == self.active:
            return f"slot {slot} is the connection in use"
        if not 0 <= slot <= 7:
            return f"slot {slot} is not one of this station's slots 0-7"
        if data.get("ocppVersion") != "OCPP20" or data.get("ocppTransport") != "JSON":
            return "only OCPP 2.0.1 over JSON (ocppVersion OCPP20, ocppTransport JSON)"
        url = str(data.get("ocppCsmsUrl", ""))
        scheme = urlsplit(url).scheme
        if scheme not in ("ws", "wss"):
            return f"ocppCsmsUrl {url[:60]!r} is no ws:// or wss:// URL"
        security = int(data.get("securityProfile", 0))
        if security < current_profile:
            return f"securityProfile {security} is below the one in use ({current_profile})"
        if (security == 1 and scheme != "ws") or (security in (2, 3) and scheme != "wss"):
            return f"securityProfile {security} does not go with a {scheme}:// URL"
        return None

    def set(self, slot: int, data: dict[str, Any]) -> None:
        self.profiles[slot] = dict(data)
        self.save(json.dumps({str(s): d for s, d in sorted(self.profiles.items())}))
        log.info("network profile %d set: %s", slot, data.get("ocppCsmsUrl"))

    def priority_refusal(self, value: str) -> str | None:
        """Why NetworkConfigurationPriority ``value`` must be Rejected: a slot without a
        profile."""
        for item in value.split(","):
            slot = int(item) if item.strip().isdigit() else -1
            if slot != CONFIGURED_SLOT and slot not in self.profiles:
                return f"slot {item.strip()} holds no network profile"
        return None

    # ------------------------------------------------------------- B10

    def connected(self) -> None:
        """A connection with the active profile was established (and has now ended)."""
        self._failures = 0

    def attempt_failed(self) -> bool:
        """Count a failed connection attempt; True when the next slot is to be tried."""
        self._failures += 1
        limit = max(1, self.values.int("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"))
        order = self.order()
        if self._failures < limit or len(order) < 2:
            return False
        position = order.index(self.active) if self.active in order else -1
        previous, self.active = self.active, order[(position + 1) % len(order)]
        self._failures = 0
        log.warning(
            "network profile %d could not connect %d times; trying profile %d (%s)",
            previous,
            limit,
            self.active,
            self.base_url(),
        )
        self._report_active()
        return True

    def _report_active(self) -> None:
        self.values.set_runtime("OCPPCommCtrlr", "ActiveNetworkProfile", str(self.active))
