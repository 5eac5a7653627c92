"""OCPP 1.6 Local Auth List Management end to end: the real ``cpagent run`` process.

The CSMS manages the list with SendLocalList and GetLocalListVersion; the list then decides
offline (LocalAuthorizeOffline), before the CSMS online (LocalPreAuthorize) and ahead of the
authorization cache. What a CSMS cannot see (the stored entries) is read from the agent's
store once the agent has stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cpagent.store import AuthCacheRow, Store
from cpagent.testing import LoopbackCsms
from cpagent.testing.csms import CsmsCallError
from tests.integration.conftest import AgentProcess

AgentFactory = Callable[..., AgentProcess]

MAX = 1000  # LocalAuthListMaxLength and SendLocalListMaxLength as the agent reports them


# --------------------------------------------------------------------------- helpers


async def started(agent_factory: AgentFactory, csms: LoopbackCsms, **kwargs: Any) -> AgentProcess:
    """Start an agent made with ``kwargs`` and wait until it reported its connectors."""
    agent = agent_factory(**kwargs)
    await agent.start()
    last = agent.tables["charge_point"]["connectors"]
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == last)
    return agent


def entry(id_tag: str, status: str | None = "Accepted", **info: str) -> dict[str, Any]:
    """An AuthorizationData; ``status=None`` leaves out idTagInfo (a removal)."""
    if status is None:
        return {"idTag": id_tag}
    return {"idTag": id_tag, "idTagInfo": {"status": status, **info}}


async def send(
    csms: LoopbackCsms, version: int, update_type: str, entries: list[dict[str, Any]] | None
) -> str:
    payload: dict[str, Any] = {"listVersion": version, "updateType": update_type}
    if entries is not None:
        payload["localAuthorizationList"] = entries
    result = await csms.call("SendLocalList", payload)
    status: str = result["status"]
    return status


async def list_version(csms: LoopbackCsms) -> int:
    version: int = (await csms.call("GetLocalListVersion", {}))["listVersion"]
    return version


async def stored(agent: AgentProcess) -> tuple[int, list[AuthCacheRow]]:
    """Stop the agent and read the list's stored version and entries from its data_dir."""
    assert await agent.stop() == 0
    store = Store(agent.data_dir)
    store.open()
    try:
        return store.local_list_version(), store.local_list()
    finally:
        store.close()


async def restart(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """Start a stopped agent again on the same data_dir and wait for its boot."""
    await csms.wait_disconnected(agent.cp_id)
    mark = csms.mark()
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, since=mark)


async def go_offline(agent: AgentProcess, csms: LoopbackCsms) -> None:
    await agent.sim("network", "down")
    await csms.wait_disconnected(agent.cp_id)
    await agent.wait_status(lambda s: not s["csms"]["connected"])


def tx_of(state: dict[str, Any], connector_id: int = 1) -> dict[str, Any] | None:
    tx: dict[str, Any] | None = state["connectors"][connector_id - 1]["transaction"]
    return tx


def sessions(state: dict[str, Any]) -> list[tuple[str, int | None] | None]:
    """``(id_tag, transaction id)`` of each connector's session, None where there is none."""
    return [
        None if (tx := c["transaction"]) is None else (tx["id_tag"], tx["id"])
        for c in state["connectors"]
    ]


async def show_card_online(agent: AgentProcess, csms: LoopbackCsms, tag: str) -> None:
    """Show ``tag`` with no EV (ConnectionTimeOut 1): the CSMS is asked and the
    authorization lapses again."""
    mark = csms.mark()
    await agent.sim("tag", tag)
    assert (await csms.wait_for("Authorize", since=mark))["idTag"] == tag
    preparing = await csms.wait_for_message(
        "StatusNotification", lambda p: p["status"] == "Preparing", since=mark
    )
    await csms.wait_for(
        "StatusNotification", lambda p: p["status"] == "Available", since=preparing.index
    )


def authorized(csms: LoopbackCsms, tag: str) -> bool:
    return any(p["idTag"] == tag for p in csms.payloads("Authorize"))


# -------------------------------------------------------------- managing the list


async def test_feature_profile_and_configuration_keys(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    names = [
        "SupportedFeatureProfiles",
        "LocalAuthListEnabled",
        "LocalAuthListMaxLength",
        "SendLocalListMaxLength",
    ]
    result = await csms.call("GetConfiguration", {"key": names})
    assert "unknownKey" not in result
    keys = {e["key"]: e for e in result["configurationKey"]}
    profiles = keys["SupportedFeatureProfiles"]["value"].split(",")
    assert {"Core", "FirmwareManagement", "LocalAuthListManagement", "RemoteTrigger"} <= set(
        profiles
    )
    assert keys["LocalAuthListEnabled"] == {
        "key": "LocalAuthListEnabled",
        "readonly": False,
        "value": "true",
    }
    for name in ("LocalAuthListMaxLength", "SendLocalListMaxLength"):
        assert keys[name] == {"key": name, "readonly": True, "value": str(MAX)}
    change = await csms.call("ChangeConfiguration", {"key": "SendLocalListMaxLength", "value": "5"})
    assert change == {"status": "Rejected"}


async def test_full_and_differential_updates_survive_a_restart(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    assert await list_version(csms) == 0  # no list installed yet

    full = [
        entry("A", expiryDate="2099-01-01T00:00:00Z", parentIdTag="GROUP"),
        entry("B", "Blocked"),
        entry("C"),
    ]
    assert await send(csms, 3, "Full", full) == "Accepted"
    assert await list_version(csms) == 3

    diff = [entry("d"), entry("a", "Invalid"), entry("B", None), entry("NOT-LISTED", None)]
    assert await send(csms, 5, "Differential", diff) == "Accepted"
    assert await list_version(csms) == 5

    # §5.15 VersionMismatch: "less or equal then version number of current list".
    assert await send(csms, 5, "Differential", [entry("E")]) == "VersionMismatch"
    assert await send(csms, 4, "Differential", [entry("E")]) == "VersionMismatch"
    # A Full update carries a list of its own, whatever its version.
    assert await send(csms, 2, "Full", [entry("A"), entry("C"), entry("D")]) == "Accepted"
    assert await list_version(csms) == 2
    # A Differential without entries changes nothing but the version.
    assert await send(csms, 6, "Differential", None) == "Accepted"
    assert await send(csms, 7, "Differential", [entry("d", "Blocked"), entry("C", None)]) == (
        "Accepted"
    )
    assert await list_version(csms) == 7

    version, entries = await stored(agent)
    assert version == 7
    assert entries == [
        AuthCacheRow("A", "Accepted", None, None),
        AuthCacheRow("d", "Blocked", None, None),  # the case of the latest update
    ]
    await restart(agent, csms)
    assert await list_version(csms) == 7
    assert await send(csms, 7, "Differential", [entry("F")]) == "VersionMismatch"
    assert await send(csms, 8, "Differential", [entry("F")]) == "Accepted"


async def test_an_empty_list_has_version_zero(agent: AgentProcess, csms: LoopbackCsms) -> None:
    """§5.10: "0 (zero) SHALL be used to indicate that the local authorization list is
    empty", also when the update that emptied it carried another version."""
    assert await send(csms, 4, "Full", [entry("A")]) == "Accepted"
    assert await list_version(csms) == 4
    assert await send(csms, 9, "Full", None) == "Accepted"
    assert await list_version(csms) == 0
    assert await send(csms, 1, "Differential", [entry("B")]) == "Accepted"
    assert await list_version(csms) == 1
    assert await send(csms, 2, "Differential", [entry("B", None)]) == "Accepted"
    assert await list_version(csms) == 0
    assert await send(csms, 7, "Full", []) == "Accepted"
    assert await list_version(csms) == 0
    assert await stored(agent) == (7, [])


async def test_bad_updates_fail_and_change_nothing(agent: AgentProcess, csms: LoopbackCsms) -> None:
    good = [entry("A"), entry("B", "Blocked")]
    assert await send(csms, 5, "Full", good) == "Accepted"

    # Duplicate id tags (id tokens compare case-insensitively), in either kind of update.
    assert await send(csms, 6, "Full", [entry("X"), entry("Y"), entry("x")]) == "Failed"
    assert await send(csms, 6, "Differential", [entry("X"), entry("X", None)]) == "Failed"
    # A Full update entry without idTagInfo.
    assert await send(csms, 6, "Full", [entry("X"), entry("Y", None)]) == "Failed"
    # More entries than SendLocalListMaxLength.
    many = [entry(f"T{i:04d}") for i in range(MAX + 1)]
    assert await send(csms, 6, "Full", many) == "Failed"
    assert await send(csms, 6, "Differential", many) == "Failed"
    # A non-empty list at version 0 could not be told from an empty one.
    assert await send(csms, 0, "Full", [entry("X")]) == "Failed"
    # An expiryDate that is no date-time is a malformed request, as in every other message.
    for expiry in ("next tuesday", "2026-13-45T00:00:00Z"):
        with pytest.raises(CsmsCallError) as err:
            await send(csms, 6, "Differential", [entry("A"), entry("X", expiryDate=expiry)])
        assert err.value.code == "FormationViolation", err.value
        assert "localAuthorizationList[1].idTagInfo.expiryDate" in err.value.description
    # Bad entries fail even when the version is stale too.
    assert await send(csms, 1, "Differential", [entry("X"), entry("x")]) == "Failed"

    assert await list_version(csms) == 5
    assert await stored(agent) == (
        5,
        [AuthCacheRow("A", "Accepted", None, None), AuthCacheRow("B", "Blocked", None, None)],
    )


async def test_the_list_never_grows_beyond_its_maximum_length(
    agent: AgentProcess, csms: LoopbackCsms
) -> None:
    full = [entry(f"T{i:04d}") for i in range(MAX)]
    assert await send(csms, 1, "Full", full) == "Accepted"
    assert await send(csms, 2, "Differential", [entry("NEW")]) == "Failed"
    assert await list_version(csms) == 1
    # Judged by the list it leaves: replacing one and swapping another keeps it at MAX.
    swap = [entry("T0000", "Blocked"), entry("T0001", None), entry("NEW")]
    assert await send(csms, 2, "Differential", swap) == "Accepted"
    assert await list_version(csms) == 2

    version, entries = await stored(agent)
    assert version == 2 and len(entries) == MAX
    tags = {e.id_tag: e.status for e in entries}
    assert tags["T0000"] == "Blocked" and "T0001" not in tags and tags["NEW"] == "Accepted"


# --------------------------------------------------------------- authorization


async def test_offline_the_list_decides_before_the_cache(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """§3.5: offline with LocalAuthorizeOffline the list decides, and ahead of the cache
    (§3.5.3); a listed tag that is not Accepted, or has expired, is refused (§3.5.4)."""
    agent = await started(
        agent_factory,
        csms,
        connectors=2,
        ocpp16={
            "LocalAuthorizeOffline": True,
            "AllowOfflineTxForUnknownId": False,
            "ConnectionTimeOut": 1,
        },
    )
    csms.responders["StartTransaction"] = lambda p: {
        "transactionId": 700 + p["connectorId"],
        "idTagInfo": {"status": "Accepted"},
    }
    await show_card_online(agent, csms, "CACHED")  # the CSMS accepts it: now in the cache
    listed = [
        entry("LISTED"),
        entry("CONCURRENT", "ConcurrentTx"),  # §3.5.2: marks a valid identifier
        entry("BLOCKED", "Blocked"),
        entry("CACHED", "Blocked"),
        entry("LAPSED", expiryDate="2020-01-01T00:00:00Z"),
    ]
    assert await send(csms, 1, "Full", listed) == "Accepted"

    await go_offline(agent, csms)
    await agent.sim("plug", "1")
    await agent.sim("plug", "2")
    await agent.wait_status(lambda s: all(c["status"] == "Preparing" for c in s["connectors"][:2]))
    for tag, status in [
        ("BLOCKED", "Blocked"),
        ("CACHED", "Blocked"),
        ("LAPSED", "Expired"),
        ("UNKNOWN", "Invalid"),
    ]:
        await agent.sim("tag", tag)
        await agent.wait_log(f"card {tag} not authorized: {status}")
    assert "offline: CACHED Blocked from the local authorization list" in agent.log()
    state = await agent.status()
    assert tx_of(state, 1) is None and tx_of(state, 2) is None

    await agent.sim("tag", "LISTED")
    await agent.wait_status(lambda s: tx_of(s, 1) is not None)
    await agent.sim("tag", "CONCURRENT")
    state = await agent.wait_status(lambda s: tx_of(s, 2) is not None)
    assert sessions(state) == [("LISTED", None), ("CONCURRENT", None)]
    assert state["queue"]["depth"] >= 2

    mark = csms.mark()
    await agent.sim("network", "up")
    first = await csms.wait_for_message("StartTransaction", since=mark)
    second = await csms.wait_for_message("StartTransaction", since=first.index + 1)
    assert (first.payload["idTag"], first.payload["connectorId"]) == ("LISTED", 1)
    assert (second.payload["idTag"], second.payload["connectorId"]) == ("CONCURRENT", 2)
    await agent.wait_status(lambda s: sessions(s) == [("LISTED", 701), ("CONCURRENT", 702)])
    started_tags = {p["idTag"] for p in csms.payloads("StartTransaction")}
    assert started_tags == {"LISTED", "CONCURRENT"}
    assert not any(authorized(csms, tag) for tag in ("LISTED", "CONCURRENT", "BLOCKED"))


async def test_local_pre_authorize_starts_a_listed_tag_without_authorize(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """§3.5 LocalPreAuthorize: a tag Accepted on the list starts without an Authorize. A
    listed tag that is not Accepted is put to the CSMS, whose answer wins, and the
    disagreement is reported as LocalListConflict (§3.5.2)."""
    agent = await started(agent_factory, csms, connectors=2, ocpp16={"LocalPreAuthorize": True})
    assert await send(csms, 1, "Full", [entry("FAST"), entry("STALE", "Blocked")]) == "Accepted"

    mark = csms.mark()
    await agent.sim("plug", "1")
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", since=mark)
    await agent.sim("tag", "FAST")
    start = await csms.wait_for("StartTransaction", lambda p: p["idTag"] == "FAST", since=mark)
    assert start["connectorId"] == 1
    assert not authorized(csms, "FAST")  # the decision came before the StartTransaction
    assert "FAST Accepted from the local authorization list (LocalPreAuthorize)" in agent.log()

    mark = csms.mark()
    await agent.sim("plug", "2")
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 2 and p["status"] == "Preparing",
        since=mark,
    )
    await agent.sim("tag", "STALE")
    authorize = await csms.wait_for_message("Authorize", since=mark)
    assert authorize.payload == {"idTag": "STALE"}
    conflict = await csms.wait_for(
        "StatusNotification", lambda p: p["errorCode"] == "LocalListConflict", since=mark
    )
    assert conflict["connectorId"] == 0 and conflict["status"] == "Available"
    assert conflict["info"] == "STALE listed Blocked"
    start = await csms.wait_for(
        "StartTransaction", lambda p: p["idTag"] == "STALE", since=authorize.index
    )
    assert start["connectorId"] == 2
    assert await list_version(csms) == 1  # the list stays as the CSMS sent it


async def test_a_disabled_list_is_not_used_nor_updated(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """LocalAuthListEnabled false: GetLocalListVersion answers -1 (§5.10, as without list
    support), SendLocalList NotSupported, and the list takes no part in authorization. A
    tag the CSMS accepted while it was listed is not in the cache either (§3.5.3)."""
    agent = await started(
        agent_factory,
        csms,
        ocpp16={
            "LocalAuthorizeOffline": True,
            "AllowOfflineTxForUnknownId": False,
            "ConnectionTimeOut": 1,
        },
    )
    assert await send(csms, 3, "Full", [entry("LISTED")]) == "Accepted"
    await show_card_online(agent, csms, "LISTED")  # asked, accepted, but not cached
    await show_card_online(agent, csms, "PLAIN")  # asked, accepted and cached

    change = {"key": "LocalAuthListEnabled", "value": "false"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    assert await list_version(csms) == -1
    assert await send(csms, 4, "Full", [entry("OTHER")]) == "NotSupported"

    await go_offline(agent, csms)
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["status"] == "Preparing")
    await agent.sim("tag", "LISTED")
    await agent.wait_log("card LISTED not authorized: Invalid")
    assert tx_of(await agent.status()) is None
    await agent.sim("tag", "PLAIN")
    state = await agent.wait_status(lambda s: tx_of(s) is not None)
    assert sessions(state) == [("PLAIN", None)]

    mark = csms.mark()
    await agent.sim("network", "up")
    await csms.wait_for("StartTransaction", lambda p: p["idTag"] == "PLAIN", since=mark)
    change = {"key": "LocalAuthListEnabled", "value": "true"}
    assert await csms.call("ChangeConfiguration", change) == {"status": "Accepted"}
    assert await list_version(csms) == 3  # kept, untouched, while switched off
