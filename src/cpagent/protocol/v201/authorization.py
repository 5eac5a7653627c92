"""Whether an id token may charge, in OCPP 2.0.1 terms (C01, C10-C12, C15, D01-D02).

What the station knows locally comes from the local authorization list (while
LocalAuthListCtrlr.Enabled) and, only for a token not on it, from the authorization cache
(while AuthCacheCtrlr.Enabled): the list has priority. With AuthCtrlr.LocalPreAuthorize a
locally Accepted token starts at once, without an Authorize (C12). Any other token is put
to the CSMS when it can be reached, and its answer wins and is cached (C10). Without an
answer: a locally Accepted token with AuthCtrlr.LocalAuthorizeOffline (C12), an unknown
one with AuthCtrlr.OfflineTxForUnknownIdEnabled (C15), else refused.

The cache and the list live in the same store tables as 1.6's: a token is kept by its
idToken text; its 2.0.1 status is mapped to the station's (:func:`messages.auth_decision`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ocpp.exceptions import OCPPError

from cpagent.protocol.rpc import ConnectionLost
from cpagent.protocol.v201 import messages
from cpagent.protocol.v201.settings import Variables
from cpagent.station.model import AuthDecision, AuthStatus
from cpagent.store import AuthCacheRow, Store
from cpagent.systemd import journal_fields
from cpagent.timeutil import expired, iso

log = logging.getLogger(__name__)

_STATUSES = {s.value: s for s in AuthStatus}


Ask = Callable[[str], Awaitable[dict[str, Any] | None]]
"""Sends Authorize for a token and returns its idTokenInfo; None when there is no
connection to ask on."""


class Authorization:
    def __init__(self, store: Store, values: Variables, ask: Ask) -> None:
        self.store = store
        self.values = values
        self.ask = ask

    async def authorize(self, id_token: str) -> AuthDecision:
        local = await self._local(id_token)
        if (
            local is not None
            and local.accepted
            and self.values.bool("AuthCtrlr", "LocalPreAuthorize")
        ):
            return local
        try:
            info = await self.ask(id_token)
        except (OCPPError, TimeoutError, ConnectionLost) as err:
            log.warning(
                "Authorize of %s failed (%s); deciding offline",
                id_token,
                err,
                extra=journal_fields(action="Authorize"),
            )
            info = None
        if info is not None:
            return await self.remember(id_token, info)
        return self._offline(id_token, local)

    def _offline(self, id_token: str, local: AuthDecision | None) -> AuthDecision:
        if local is not None:
            if local.accepted and self.values.bool("AuthCtrlr", "LocalAuthorizeOffline"):
                return local
            return local if not local.accepted else AuthDecision(AuthStatus.INVALID)
        if self.values.bool("AuthCtrlr", "OfflineTxForUnknownIdEnabled"):
            log.info("offline: unknown id token %s accepted (OfflineTxForUnknownId)", id_token)
            return AuthDecision(AuthStatus.ACCEPTED)
        return AuthDecision(AuthStatus.INVALID)

    async def _local(self, id_token: str) -> AuthDecision | None:
        """The local list's entry for the token, else the cache's; None when neither has one
        (an expired entry counts as Expired)."""
        if self.values.bool("LocalAuthListCtrlr", "Enabled"):
            row = await self.store.run(self.store.local_list_get, id_token)
            if row is not None:
                return self._row_decision(row)
        if self.values.bool("AuthCacheCtrlr", "Enabled"):
            row = await self.store.run(self.store.cache_get, id_token)
            if row is not None:
                return self._row_decision(row)
        return None

    @staticmethod
    def _row_decision(row: AuthCacheRow) -> AuthDecision:
        if expired(row.expiry):
            return AuthDecision(AuthStatus.EXPIRED, row.parent_id_tag)
        return AuthDecision(_STATUSES.get(row.status, AuthStatus.INVALID), row.parent_id_tag)

    async def remember(self, id_token: str, info: dict[str, Any]) -> AuthDecision:
        """Take an IdTokenInfo from the CSMS (Authorize, TransactionEvent): cache it while
        AuthCacheCtrlr.Enabled, unless the token is on the local list (C10); its expiry is
        the answer's cacheExpiryDateTime, else AuthCacheCtrlr.LifeTime from now."""
        found = messages.auth_decision(info)
        if self.values.bool("AuthCacheCtrlr", "Enabled"):
            expiry = info.get("cacheExpiryDateTime")
            if expiry is None:
                life = self.values.int("AuthCacheCtrlr", "LifeTime")
                expiry = iso(datetime.now(UTC) + timedelta(seconds=life)) if life > 0 else None
            await self.store.run(
                self.store.cache_put,
                AuthCacheRow(id_token, str(found.status), expiry, found.group_token),
                unless_listed=self.values.bool("LocalAuthListCtrlr", "Enabled"),
            )
        return found
