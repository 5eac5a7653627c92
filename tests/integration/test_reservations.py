"""Reservations end to end (OCPP 1.6 §5.13, Reservation profile): the real ``cpagent run``
process against the loopback CSMS, driven with ``cpagent sim``. Waits are event-driven and
bounded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cpagent.testing import LoopbackCsms
from cpagent.timeutil import iso
from tests.integration.conftest import AgentProcess
from tests.integration.test_csms_requests import reply_to

AgentFactory = Callable[..., AgentProcess]


def in_s(seconds: float) -> str:
    """An expiryDate ``seconds`` from now."""
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def reserve_now(
    reservation_id: int, connector_id: int, id_tag: str, *, expiry_s: float = 600
) -> dict[str, Any]:
    return {
        "connectorId": connector_id,
        "expiryDate": in_s(expiry_s),
        "idTag": id_tag,
        "reservationId": reservation_id,
    }


def status_is(cid: int, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p["connectorId"] == cid and p["status"] == status


async def booted_agent(agent_factory: AgentFactory, csms: LoopbackCsms, **kw: Any) -> AgentProcess:
    agent = agent_factory(**kw)
    await agent.start()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return agent


async def test_reserved_connector_serves_only_its_id_tag(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await booted_agent(agent_factory, csms)
    mark = csms.mark()
    assert await csms.call("ReserveNow", reserve_now(7, 1, "RES")) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)

    # Another id tag is refused there: it is authorized, but no session starts for it.
    await agent.sim("plug", "1")
    mark = csms.mark()
    await agent.sim("tag", "OTHER")
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "OTHER", since=mark)
    await agent.wait_log("card OTHER authorized but no connector is free for it")

    # The reserved id tag starts a session that consumes the reservation.
    await agent.sim("tag", "RES")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "RES"
    assert start["reservationId"] == 7
    await csms.wait_for("StatusNotification", status_is(1, "Charging"), since=mark)
    assert all(p["idTag"] == "RES" for p in csms.payloads("StartTransaction"))

    # The reservation is gone, and the charging connector cannot be reserved.
    assert await csms.call("CancelReservation", {"reservationId": 7}) == {"status": "Rejected"}
    assert await csms.call("ReserveNow", reserve_now(8, 1, "LATER")) == {"status": "Occupied"}


def statuses(csms: LoopbackCsms, cid: int, since: int) -> list[str]:
    return [
        p["status"]
        for p in csms.payloads("StatusNotification", since=since)
        if p["connectorId"] == cid
    ]


async def test_a_plug_in_leaves_the_connector_reserved_until_its_card(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """1.6 §4.9: only the reservation's identity presented (G2) makes a Reserved connector
    Preparing; an EV plugged in alone leaves it Reserved."""
    agent = await booted_agent(agent_factory, csms)
    mark = csms.mark()
    assert await csms.call("ReserveNow", reserve_now(6, 1, "RES")) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)

    mark = csms.mark()
    await agent.sim("plug", "1")
    state = await agent.wait_status(lambda s: s["connectors"][0]["pilot"] == "B")
    assert state["connectors"][0]["status"] == "Reserved"
    # A heartbeat asked for now comes after anything the plug-in made the agent send.
    assert await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
        "status": "Accepted"
    }
    await csms.wait_for("Heartbeat", since=mark)
    assert statuses(csms, 1, mark) == []

    await agent.sim("tag", "RES")
    start = await csms.wait_for_message("StartTransaction", since=mark)
    assert (start.payload["idTag"], start.payload["reservationId"]) == ("RES", 6)
    await csms.wait_for("StatusNotification", status_is(1, "Charging"), since=mark)
    assert statuses(csms, 1, mark) == ["Preparing", "Charging"]
    preparing = csms.messages("StatusNotification", since=mark)[0]
    assert preparing.index < start.index


async def test_a_reservation_cancelled_with_an_ev_plugged(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    """§4.9: the cancelled reservation makes the connector Available (G1), the EV plugged
    in meanwhile then Preparing (A2); any card may charge there."""
    agent = await booted_agent(agent_factory, csms)
    mark = csms.mark()
    assert await csms.call("ReserveNow", reserve_now(9, 1, "RES")) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)
    await agent.sim("plug", "1")
    await agent.wait_status(lambda s: s["connectors"][0]["pilot"] == "B")

    mark = csms.mark()
    assert await csms.call("CancelReservation", {"reservationId": 9}) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Preparing"), since=mark)
    assert statuses(csms, 1, mark) == ["Available", "Preparing"]
    await agent.sim("tag", "OTHER")
    start = await csms.wait_for("StartTransaction", since=mark)
    assert start["idTag"] == "OTHER" and "reservationId" not in start


async def test_rejected_reservations(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    await booted_agent(agent_factory, csms)
    # ReserveConnectorZeroSupported is false: connector 0 cannot be reserved.
    assert await csms.call("ReserveNow", reserve_now(1, 0, "T")) == {"status": "Rejected"}
    assert await csms.call("ReserveNow", reserve_now(2, 5, "T")) == {"status": "Rejected"}
    assert await csms.call("CancelReservation", {"reservationId": 1}) == {"status": "Rejected"}
    result = await csms.call(
        "GetConfiguration", {"key": ["ReserveConnectorZeroSupported", "SupportedFeatureProfiles"]}
    )
    keys = {e["key"]: e for e in result["configurationKey"]}
    assert keys["ReserveConnectorZeroSupported"] == {
        "key": "ReserveConnectorZeroSupported",
        "readonly": True,
        "value": "false",
    }
    assert "Reservation" in keys["SupportedFeatureProfiles"]["value"].split(",")


async def test_bad_expiry_date_is_a_formation_violation(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await booted_agent(agent_factory, csms)
    after = len(csms.frames)
    await csms.send_raw(
        '[2,"bad-date","ReserveNow",{"connectorId":1,"expiryDate":"tomorrow",'
        '"idTag":"T","reservationId":1}]'
    )
    reply = await reply_to(csms, "bad-date", after)
    assert reply[0] == 4 and reply[2] == "FormationViolation", reply


async def test_cancel_reservation_frees_the_connector(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    await booted_agent(agent_factory, csms)
    mark = csms.mark()
    assert await csms.call("ReserveNow", reserve_now(3, 1, "RES")) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)
    mark = csms.mark()
    assert await csms.call("CancelReservation", {"reservationId": 3}) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Available"), since=mark)
    assert await csms.call("CancelReservation", {"reservationId": 3}) == {"status": "Rejected"}


async def test_reservation_expires(agent_factory: AgentFactory, csms: LoopbackCsms) -> None:
    await booted_agent(agent_factory, csms)
    mark = csms.mark()
    request = reserve_now(4, 1, "RES", expiry_s=2)
    assert await csms.call("ReserveNow", request) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)
    mark = csms.mark()
    await csms.wait_for("StatusNotification", status_is(1, "Available"), since=mark)
    assert await csms.call("CancelReservation", {"reservationId": 4}) == {"status": "Rejected"}


async def test_reservation_survives_a_restart(
    agent_factory: AgentFactory, csms: LoopbackCsms
) -> None:
    agent = await booted_agent(agent_factory, csms)
    mark = csms.mark()
    assert await csms.call("ReserveNow", reserve_now(5, 1, "RES")) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)
    assert await agent.stop() == 0

    mark = csms.mark()
    await agent.start()
    await csms.wait_for("BootNotification", since=mark)
    await csms.wait_for("StatusNotification", status_is(1, "Reserved"), since=mark)
    # Still in force: it can be cancelled, and that is persisted too.
    mark = csms.mark()
    assert await csms.call("CancelReservation", {"reservationId": 5}) == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", status_is(1, "Available"), since=mark)
