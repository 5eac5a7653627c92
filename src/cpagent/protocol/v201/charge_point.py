"""OCPP 2.0.1 charging station: CSMS requests translated into station commands.

On the shared OCPP-J endpoint (:mod:`cpagent.protocol.rpc`) and the ``ocpp`` library's
routing. Handlers take the request payload as it came (camelCase, valid by its schema and by
:func:`cpagent.protocol.intake.check_request`) and return the response payload; the answer
is checked against its schema before it is sent. A CALL without a handler is answered
NotSupported when 2.0.1 defines the action, NotImplemented when it does not (Part 4 §4.3).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.exceptions import (
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
    ProtocolError,
)
from ocpp.routing import on

from cpagent.protocol import intake, ocppj
from cpagent.protocol.ocppj import MessageType
from cpagent.protocol.rpc import ConnectionLost, RpcEndpoint
from cpagent.protocol.v201 import live, messages, schemas
from cpagent.protocol.v201.addressing import ComponentRef, VariableRef
from cpagent.protocol.v201.catalogue import Attribute
from cpagent.protocol.v201.device_model import (
    Criterion,
    GetStatus,
    ReportBase,
    Selector,
    SetStatus,
)
from cpagent.protocol.v201.enums import Action
from cpagent.protocol.v201.firmware_handlers import FirmwareHandlers
from cpagent.protocol.v201.network_handlers import NetworkHandlers
from cpagent.protocol.v201.security_handlers import SecurityHandlers
from cpagent.protocol.verdicts import ItemVerdicts
from cpagent.station.model import StopReason
from cpagent.store import AuthCacheRow
from cpagent.systemd import journal_fields
from cpagent.timeutil import utcnow

if TYPE_CHECKING:
    from cpagent.protocol.v201.adapter import V201Adapter
    from cpagent.protocol.v201.device_model import DeviceModel
    from cpagent.station.station import Station

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Payload], Awaitable[Payload]]

VENDOR_ID = "cpagent"
LOCAL_LIST = "LocalAuthListCtrlr"

VERDICTS = ItemVerdicts(
    lambda kind, action, payload: schemas.validate(kind, action, payload),
    lambda kind, action: schemas.SCHEMAS.schema(kind, action),
    {
        (MessageType.Call, "GetVariables"): "getVariableData",
        (MessageType.CallResult, "GetVariables"): "getVariableResult",
    },
)
"""The schema verdicts of every CALL and answer; the items of GetVariables, which a CSMS
reads again and again, judged once each (:mod:`cpagent.protocol.verdicts`). The validator
is looked up at each call, as :mod:`.schemas` has it then."""

ITEM_TEXTS_KEPT = 1024
"""Answer items whose JSON text is kept (as many as the verdicts remember), beyond which
the texts are written afresh."""
_ITEM_TEXTS: dict[bytes, str] = {}
"""The JSON text of each answer item written, by the item's key (:func:`.verdicts.item_key`)."""

_NO_EVSE: Mapping[str, Any] = MappingProxyType({})
"""What a component without an EVSE has of one."""


def _status_info(reason: str | None) -> dict[str, Any]:
    """statusInfo for an answer: a reason code and, shortened, the details."""
    return {"reasonCode": "Other", "additionalInfo": (reason or "")[:512]} if reason else {}


def _component(data: Payload) -> ComponentRef:
    evse = data.get("evse") or {}
    return ComponentRef(data["name"], data.get("instance"), evse.get("id"), evse.get("connectorId"))


def _variable(data: Payload) -> VariableRef:
    return VariableRef(data["name"], data.get("instance"))


class ChargePoint(
    NetworkHandlers,
    SecurityHandlers,
    FirmwareHandlers,
    RpcEndpoint,
):
    def __init__(
        self,
        cp_id: str,
        connection: Any,
        adapter: V201Adapter,
        model: DeviceModel,
        *,
        response_timeout: float,
    ) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.adapter = adapter
        self.model = model

    @property
    def station(self) -> Station:
        assert self.adapter.station is not None
        return self.adapter.station

    # ------------------------------------------------------------- OCPP-J 2.0.1

    def _validate(self, message_type_id: int, action: str, payload: Payload) -> None:
        VERDICTS.validate(message_type_id, action, payload)

    def _result_frame(self, unique_id: str, action: str, payload: Payload) -> str:
        """A GetVariables answer, judged by its items, is written from the text of each
        item as written before (the same text: an item's key tells its content and
        types apart, and the frame is the items' texts joined as the encoder joins them)."""
        passed = VERDICTS.passed(payload)
        if passed is None:
            return super()._result_frame(unique_id, action, payload)
        field, keys = passed
        texts = []
        for key, item in zip(keys, payload[field], strict=True):
            text = _ITEM_TEXTS.get(key)
            if text is None:
                if len(_ITEM_TEXTS) >= ITEM_TEXTS_KEPT:
                    _ITEM_TEXTS.clear()
                text = _ITEM_TEXTS[key] = ocppj.to_text(item)
            texts.append(text)
        head = f"[{MessageType.CallResult},{ocppj.to_text(unique_id)},{{{ocppj.to_text(field)}:["
        return head + ",".join(texts) + "]}]"

    def _check_request(self, action: str, payload: Payload) -> None:
        intake.check_request(action, payload, schemas.date_time_fields(action))

    def _code(self, error: OCPPError) -> str:
        """A CALL frame with the wrong number of elements is no valid RPC request:
        RpcFrameworkError in OCPP-J 2.0.1 (§4.3), where 1.6 had only ProtocolError. The
        2.0.1 schemas never give a ProtocolError, so the frame check is its one source."""
        if isinstance(error, ProtocolError):
            return "RpcFrameworkError"
        return str(error.code)

    def _unhandled_action(self, action: Any) -> OCPPError:
        try:
            Action(action)
        except ValueError:
            return OcppNotImplementedError(description=f"unknown action {action!r}")
        return NotSupportedError(description=f"{action} is not supported by this station")

    def _late_answer(self, unique_id: str, payload: Payload) -> bool:
        return self.adapter.accept_late_answer(unique_id, payload)

    async def _run_handler(self, handler: Any, payload: Payload) -> Payload:
        answer: Payload = await handler(payload)
        return answer

    def _limit(self, what: str, count: int, instance: str) -> None:
        """A request with more items than DeviceDataCtrlr.ItemsPerMessage allows (B05, B06)."""
        limit = self.adapter.values.int("DeviceDataCtrlr", "ItemsPerMessage", instance)
        if limit > 0 and count > limit:
            raise OccurrenceConstraintViolationError(
                description=f"{count} {what}; ItemsPerMessage:{instance} is {limit}"
            )

    def _refresh(self) -> None:
        """The run-time values (clock, availability) as they are now, before a read."""
        live.refresh(self.model, self.adapter.station, self.adapter.config)

    # ----------------------------------------------------------- B: provisioning

    @on(Action.get_variables)
    async def on_get_variables(self, payload: Payload) -> Payload:
        data = payload["getVariableData"]
        self._limit("getVariableData", len(data), "GetVariables")
        self._refresh()
        get_at = self.model.get_at
        results = []
        for item in data:
            attribute = item.get("attributeType", "Actual")
            component, variable = item["component"], item["variable"]
            evse = component.get("evse") or _NO_EVSE
            found = get_at(
                (
                    component["name"],
                    component.get("instance"),
                    evse.get("id"),
                    evse.get("connectorId"),
                    variable["name"],
                    variable.get("instance"),
                ),
                attribute,
            )
            result: Payload = {
                "attributeStatus": str(found.status),
                "attributeType": attribute,
                "component": component,
                "variable": variable,
            }
            if found.status is GetStatus.ACCEPTED and found.value is not None:
                result["attributeValue"] = found.value
            if found.reason:
                result["attributeStatusInfo"] = _status_info(found.reason)
            results.append(result)
        return {"getVariableResult": results}

    @on(Action.set_variables)
    async def on_set_variables(self, payload: Payload) -> Payload:
        data = payload["setVariableData"]
        self._limit("setVariableData", len(data), "SetVariables")
        results = []
        for item in data:
            attribute = Attribute(item.get("attributeType", "Actual"))
            component, variable = _component(item["component"]), _variable(item["variable"])
            verdict = self.adapter.vet_variable(component, variable, item["attributeValue"])
            if verdict is None:
                found = self.model.set(component, variable, item["attributeValue"], attribute)
            else:
                found = verdict
            result: Payload = {
                "attributeStatus": str(found.status),
                "attributeType": str(attribute),
                "component": item["component"],
                "variable": item["variable"],
            }
            if found.reason:
                result["attributeStatusInfo"] = _status_info(found.reason)
                log.info(
                    "SetVariables %s.%s: %s (%s)",
                    component.name,
                    variable.name,
                    found.status,
                    found.reason,
                    extra=journal_fields(action="SetVariables"),
                )
            results.append(result)
        if any(
            r["attributeStatus"] in (SetStatus.ACCEPTED, SetStatus.REBOOT_REQUIRED) for r in results
        ):
            await self.adapter.variables_changed()
        return {"setVariableResult": results}

    @on(Action.get_base_report)
    async def on_get_base_report(self, payload: Payload) -> Payload:
        try:
            base = ReportBase(payload["reportBase"])
        except ValueError:
            return {"status": "NotSupported"}
        self._refresh()
        records = self.model.base_report(base)
        return self._report(payload["requestId"], records)

    @on(Action.get_report)
    async def on_get_report(self, payload: Payload) -> Payload:
        self._limit("componentVariable", len(payload.get("componentVariable", [])), "GetReport")
        criteria = [Criterion(c) for c in payload.get("componentCriteria", [])]
        selectors = []
        for item in payload.get("componentVariable", []):
            component, variable = item["component"], item.get("variable") or {}
            evse = component.get("evse") or _NO_EVSE
            selectors.append(
                Selector(
                    component["name"],
                    component.get("instance"),
                    evse.get("id"),
                    evse.get("connectorId"),
                    variable.get("name"),
                    variable.get("instance"),
                )
            )
        self._refresh()
        records = self.model.report(criteria, selectors)
        return self._report(payload["requestId"], records)

    def _report(self, request_id: int, records: list[Any]) -> Payload:
        """Accepted, and the NotifyReport parts after the answer (B07, B08); EmptyResultSet
        with no NotifyReport when nothing matches."""
        if not records:
            return {"status": "EmptyResultSet"}
        # Loaded at the first report rather than before the BootNotification.
        from cpagent.protocol.v201 import reports

        parts = reports.notify_report_parts(
            request_id,
            utcnow(),
            records,
            self.adapter.values.int("DeviceDataCtrlr", "ItemsPerMessage", "GetReport") or 1,
            self.adapter.values.int("DeviceDataCtrlr", "BytesPerMessage", "GetReport") or 65536,
        )

        self._after(lambda: self._send_report(parts))
        return {"status": "Accepted"}

    async def _send_report(self, parts: list[Payload]) -> None:
        """Once accepted, the parts join the queue behind what waits there. While the boot
        is Pending the queue does not run, and a CSMS may well wait for the report before it
        accepts the station (B02): the parts go at once, one CALL after the other."""
        from cpagent.protocol.v201 import reports

        if self.adapter.registered:
            for part in parts:
                self.adapter.send_triggered(reports.ACTION, part)
            return
        for part in parts:
            try:
                await self.call_payload(reports.ACTION, part)
            except (OCPPError, TimeoutError, ConnectionLost) as err:
                log.warning(
                    "NotifyReport %d of request %d not delivered: %s",
                    part["seqNo"],
                    part["requestId"],
                    err,
                    extra=journal_fields(action=reports.ACTION),
                )
                return

    @on(Action.reset)
    async def on_reset(self, payload: Payload) -> Payload:
        """B11 (the station) and B12 (one EVSE): Immediate ends sessions now, OnIdle waits
        for them to end; the station restarts after the answer."""
        kind = payload["type"]
        evse_id = payload.get("evseId")
        if evse_id is not None:
            if evse_id not in self.station.connectors:
                return {"status": "Rejected", "statusInfo": _status_info("no such EVSE")}
            tx = self.station.connectors[evse_id].transaction
            if tx is None:
                return {"status": "Accepted"}
            if kind == "Immediate":
                self.station.stop_transaction(tx.local_id, StopReason.HARD_RESET)
                return {"status": "Accepted"}
            return {"status": "Scheduled"}
        busy = bool(self.station.busy_connectors())
        self._after(lambda: self.adapter.request_reset(kind))
        return {"status": "Scheduled" if kind == "OnIdle" and busy else "Accepted"}

    # --------------------------------------------------- C, D: authorization

    @on(Action.clear_cache)
    async def on_clear_cache(self, payload: Payload) -> Payload:
        if not self.adapter.values.bool("AuthCacheCtrlr", "Enabled"):
            return {"status": "Rejected"}
        store = self.adapter.store
        await store.run(store.cache_clear)
        return {"status": "Accepted"}

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, payload: Payload) -> Payload:
        store = self.adapter.store
        version, size = await store.run(store.local_list_state)
        return {"versionNumber": version if size else 0}

    @on(Action.send_local_list)
    async def on_send_local_list(self, payload: Payload) -> Payload:
        """D01: a Full list replaces the stored one; a Differential adds or replaces the
        entries with idTokenInfo and removes those without, and needs a version above the
        current one. The list and its version change in one commit; a list naming one
        token twice, or longer than LocalAuthListCtrlr.Entries' maxLimit, changes nothing
        (Failed). Entries' Actual value follows the list's size."""
        if not self.adapter.values.bool("LocalAuthListCtrlr", "Enabled"):
            return {"status": "Failed", "statusInfo": _status_info("the local list is disabled")}
        store = self.adapter.store
        version, update = payload["versionNumber"], payload["updateType"]
        entries = payload.get("localAuthorizationList", [])
        added, removed = [], []
        for entry in entries:
            token, info = entry["idToken"]["idToken"], entry.get("idTokenInfo")
            if info is None:
                removed.append(token)
                continue
            decision = messages.auth_decision(info)
            added.append(
                AuthCacheRow(
                    token,
                    str(decision.status),
                    info.get("cacheExpiryDateTime"),
                    decision.group_token,
                )
            )
        if update == "Full" and removed:
            return {
                "status": "Failed",
                "statusInfo": _status_info("a Full entry without idTokenInfo"),
            }
        named = [row.id_tag.casefold() for row in added] + [t.casefold() for t in removed]
        if len(set(named)) != len(named):
            return {"status": "Failed", "statusInfo": _status_info("an idToken listed twice")}
        if update == "Differential":
            current, size = await store.run(store.local_list_state)
            if version <= (current if size else 0):
                return {"status": "VersionMismatch"}
        max_size = self._local_list_capacity()
        if update == "Full":
            ok = await store.run(store.local_list_replace, version, added, max_size=max_size)
        else:
            ok = await store.run(
                store.local_list_update, version, added, removed, max_size=max_size
            )
        if not ok:
            return {"status": "Failed", "statusInfo": _status_info("the list would be too long")}
        _, size = await store.run(store.local_list_state)
        self.adapter.values.set_runtime("LocalAuthListCtrlr", "Entries", str(size))
        return {"status": "Accepted"}

    def _local_list_capacity(self) -> int | None:
        """The most ids the local list holds: LocalAuthListCtrlr.Entries' maxLimit."""
        (entries,) = self.model.report(selectors=[Selector(LOCAL_LIST, variable="Entries")])
        return int(entries.max_limit) if entries.max_limit is not None else None

    # ------------------------------------------------------ E, F: transactions

    @on(Action.request_start_transaction)
    async def on_request_start_transaction(self, payload: Payload) -> Payload:
        """F01/F02: the session starts when the EV is plugged in (or at once if it is);
        its Started event carries remoteStartId and triggerReason RemoteStart."""
        if not self.adapter.accepted:
            return {"status": "Rejected", "statusInfo": _status_info("not accepted by the CSMS")}
        if "chargingProfile" in payload:
            return {
                "status": "Rejected",
                "statusInfo": _status_info("charging profiles are not supported in OCPP 2.0.1 yet"),
            }
        token = payload["idToken"]
        evse_id = payload.get("evseId")
        if evse_id is not None and evse_id not in self.station.connectors:
            return {"status": "Rejected", "statusInfo": _status_info("no such EVSE")}
        if not await self.station.remote_start(token["idToken"], evse_id):
            return {"status": "Rejected"}
        # Before anything else runs: the station begins the session (and its Authorize)
        # in a task of its own, after this answer.
        self.adapter.remote_start_expected(
            token["idToken"], payload["remoteStartId"], token["type"]
        )
        answer: Payload = {"status": "Accepted"}
        for c in self.station.connectors.values():
            # F02 (the answer's transactionId): a transaction already begun (the EV first,
            # TxStartPoint EVConnected) is named in the answer; the request authorizes it.
            if c.transaction is not None and c.authorized_token == token["idToken"]:
                transaction_id = self.adapter.transaction_id(c.transaction.local_id)
                if transaction_id is not None:
                    answer["transactionId"] = transaction_id
        return answer

    @on(Action.request_stop_transaction)
    async def on_request_stop_transaction(self, payload: Payload) -> Payload:
        local_id = self.adapter.transaction_of(payload["transactionId"])
        if local_id is None or not self.station.stop_transaction(local_id, StopReason.REMOTE):
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    @on(Action.get_transaction_status)
    async def on_get_transaction_status(self, payload: Payload) -> Payload:
        """E14: whether TransactionEvents (of the transaction, or any) wait to be sent, and
        whether the transaction is still running."""
        wanted = payload.get("transactionId")
        waiting = False
        for item in self.adapter.delivery.pending:
            if item.action != "TransactionEvent":
                continue
            if wanted is None or item.payload["transactionInfo"]["transactionId"] == wanted:
                waiting = True
                break
        answer: Payload = {"messagesInQueue": waiting}
        if wanted is not None:
            answer["ongoingIndicator"] = self.adapter.transaction_of(wanted) is not None
        return answer

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, payload: Payload) -> Payload:
        """F05: an EVSE's connector is released unless a transaction holds it."""
        evse_id, connector_id = payload["evseId"], payload["connectorId"]
        c = self.station.connectors.get(evse_id)
        if c is None or connector_id != 1:
            return {"status": "UnknownConnector"}
        if c.transaction is not None:
            return {"status": "OngoingAuthorizedTransaction"}
        result = await self.station.unlock(evse_id)
        return {"status": "Unlocked" if result == "Unlocked" else "UnlockFailed"}

    @on(Action.trigger_message)
    async def on_trigger_message(self, payload: Payload) -> Payload:
        """F06: the requested message is sent after the answer. MeterValues is a reading of
        AlignedDataCtrlr.Measurands in a MeterValues message, whether or not a transaction
        runs; TransactionEvent is Rejected where no transaction runs."""
        message = payload["requestedMessage"]
        evse = payload.get("evse") or {}
        evse_id = evse.get("id")
        if evse_id is not None and evse_id not in self.station.connectors:
            return {"status": "Rejected", "statusInfo": _status_info("no such EVSE")}
        if message == "BootNotification":
            if self.adapter.accepted:
                return {"status": "Rejected", "statusInfo": _status_info("already accepted")}
            self.adapter.boot_reason = "Triggered"
            self._after(self.adapter.trigger_boot)
        elif message == "Heartbeat":
            self._after(self.adapter.trigger_heartbeat)
        elif message == "StatusNotification":
            self._after(lambda: self.adapter.trigger_status(evse_id))
        elif message == "MeterValues":
            self._after(lambda: self.adapter.trigger_meter_values(evse_id))
        elif message == "TransactionEvent":
            if not self.adapter.transactions_running(evse_id):
                return {
                    "status": "Rejected",
                    "statusInfo": _status_info("no transaction is running there"),
                }
            self._after(lambda: self.adapter.trigger_transaction_events(evse_id))
        elif message in ("FirmwareStatusNotification", "LogStatusNotification"):
            self._after(lambda: self.adapter.trigger_idle_status(message))
        elif message == "SignChargingStationCertificate":
            self._after(self.adapter.sign_certificate)
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    # ------------------------------------------------------------ G: availability

    @on(Action.change_availability)
    async def on_change_availability(self, payload: Payload) -> Payload:
        """G03/G04: the station or one EVSE; a running session defers going Inoperative
        until it ends (Scheduled), and the setting survives a restart."""
        evse = payload.get("evse") or {}
        connector_id = evse.get("id", 0)
        if evse.get("connectorId") not in (None, 1):
            return {"status": "Rejected", "statusInfo": _status_info("no such connector")}
        operative = payload["operationalStatus"] == "Operative"
        return {"status": await self.station.change_availability(connector_id, operative)}

    # ------------------------------------------------------------- P: data transfer

    @on(Action.data_transfer)
    async def on_data_transfer(self, payload: Payload) -> Payload:
        """P01: no vendor extension is implemented; a request for ours has no message."""
        if payload["vendorId"] != VENDOR_ID:
            return {"status": "UnknownVendorId"}
        return {"status": "UnknownMessageId"}
