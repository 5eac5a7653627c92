"""A scriptable OCPP-J central system on loopback, for tests and the demo.

It speaks OCPP 1.6J and 2.0.1, whichever subprotocol (``ocpp1.6``, ``ocpp2.0.1``) the charge
point asks for, per connection. It answers every charge-point message with a sensible
default, lets a test replace any answer (``responders``), sends CSMS-initiated CALLs,
injects raw frames, records every frame, and validates every message the charge point sends
and every answer the test gives against the JSON schemas of the connection's version —
violations are collected in ``schema_errors`` so a test can assert there were none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import copy
import itertools
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Opcode
from websockets.frames import Frame as WsFrame
from websockets.http11 import Request, Response
from websockets.protocol import Event
from websockets.typing import Subprotocol

from cpagent.protocol.v16 import schemas as schemas_v16
from cpagent.protocol.v201 import schemas as schemas_v201
from cpagent.timeutil import now_iso

WAIT_S = 30.0
"""Default bound of the waits below. It only guards against a hang (reaching it fails the
test), so it is generous: on a busy machine a charge point process takes seconds to start."""

Responder = Callable[[dict[str, Any]], Any]
"""Returns a payload dict, a :class:`CallErrorReply`, None (no answer at all), or an awaitable
of one of those."""


VERSIONS = ("1.6", "2.0.1")
"""The OCPP versions this CSMS speaks; the subprotocol of each is ``"ocpp" + version``."""

STATION_ACTIONS_201 = (
    "Authorize",
    "BootNotification",
    "ClearedChargingLimit",
    "DataTransfer",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
)
"""Every CALL a 2.0.1 charging station sends to the CSMS (OCPP 2.0.1 Part 2); each has a
schema-valid default answer."""

_SCHEMAS = {"1.6": schemas_v16, "2.0.1": schemas_v201}

_answering: contextvars.ContextVar[str] = contextvars.ContextVar("_answering", default="1.6")
"""The version of the connection whose CALL is being answered (set in each handler task),
so that a responder calling :meth:`LoopbackCsms.default_reply` gets that version's answer."""


def schema_problem(kind: int, action: str, payload: Any, version: str = "1.6") -> str | None:
    """Check a payload against the official schema of OCPP ``version`` ("1.6" or "2.0.1"),
    *with* formats: unlike the agent, the test CSMS is strict, so a timestamp that is not
    RFC 3339 is a failure here. A copy is checked: the compiled schemas fill in the
    defaults they declare (2.0.1 ``offline: false``, ...), and what a test reads must be what
    came over the wire."""
    try:
        _SCHEMAS[version].validate(kind, action, copy.deepcopy(payload), formats=True)
    except OCPPError as err:
        cause = err.details.get("cause") if isinstance(err.details, dict) else None
        return str(cause or err.description)
    return None


@dataclass(frozen=True)
class CallErrorReply:
    """Return this from a responder to answer with a CALLERROR."""

    code: str = "InternalError"
    description: str = ""


class CsmsCallError(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


@dataclass
class Frame:
    """One websocket frame. ``direction`` is ``"in"`` (from the charge point) or ``"out"``."""

    direction: str
    cp_id: str
    raw: str
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> list[Any] | None:
        try:
            parsed = json.loads(self.raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None


@dataclass
class Received:
    """A CALL the charge point sent, on a connection of OCPP ``version``."""

    index: int
    cp_id: str
    unique_id: str
    action: str
    payload: dict[str, Any]
    version: str = "1.6"


def server_tls_context(
    cert: Path, key: Path, *, client_roots_pem: str | None = None
) -> ssl.SSLContext:
    """A server context for a ``wss://`` LoopbackCsms presenting ``cert`` (chain) and
    ``key``. With ``client_roots_pem`` it asks for a client certificate and verifies it
    against them when one is sent (security profile 3); without, it asks for none."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_roots_pem is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_roots_pem)
    return context


class _Connection(ServerConnection):
    """A server connection that reports each ping the charge point sends (the websockets
    library answers them itself)."""

    on_ping: Callable[[], None] | None = None

    def process_event(self, event: Event) -> None:
        if isinstance(event, WsFrame) and event.opcode is Opcode.PING and self.on_ping:
            self.on_ping()
        super().process_event(event)


class LoopbackCsms:
    """The CSMS. It offers the subprotocols of ``versions`` (default both) and uses the one
    the charge point asks for, the first it lists if it offers several. A charge point that
    offers none of them completes the websocket handshake without a subprotocol and is
    closed at once with code 1002 (protocol error), as OCPP-J 2.0.1 (Part 4) asks of a CSMS
    (answer without ``Sec-WebSocket-Protocol``, then close); such a connection counts in
    ``subprotocols`` (as None) and ``close_codes`` but never in ``connections``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/ocpp",
        boot_status: str = "Accepted",
        boot_interval: int = 300,
        heartbeat_interval: int = 300,
        password: str | bytes | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        first_transaction_id: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        versions: Sequence[str] = VERSIONS,
    ) -> None:
        """``ssl_context`` makes it a ``wss://`` CSMS (see :func:`server_tls_context`);
        ``password`` demands HTTP basic auth with it; ``versions`` narrows the OCPP versions
        it accepts (``("1.6",)`` refuses a 2.0.1 charge point)."""
        unknown = [v for v in versions if v not in VERSIONS]
        if unknown or not versions:
            raise ValueError(f"versions must be some of {VERSIONS}, not {list(versions)}")
        self.versions = tuple(versions)
        self.host = host
        self.port = port
        self.path = path
        self.boot_status = boot_status
        self.boot_interval = boot_interval
        self.heartbeat_interval = heartbeat_interval
        self.password = password
        self.ssl_context = ssl_context
        self.client_certificates: list[dict[str, Any] | None] = []
        """The TLS client certificate of every connection, as ``getpeercert()`` gives it."""
        self.on_frame = on_frame
        self.responders: dict[str, Responder] = {}
        """Answers by action, replacing :meth:`default_reply`; they serve every version."""
        self.id_tag_status: dict[str, str] = {}
        """Authorization status by id tag (1.6) or idToken string (2.0.1); unknown ones are
        Accepted."""
        self.frames: list[Frame] = []
        self.received: list[Received] = []
        self.call_errors: list[list[Any]] = []
        self.schema_errors: list[str] = []
        self.auth_failures: list[str] = []
        self.subprotocols: list[str | None] = []
        """The subprotocol negotiated on each connection opened, in order; None where the
        charge point offered none this CSMS accepts (it was closed at once)."""
        self.close_codes: list[int | None] = []
        """The close code the charge point sent for each connection that ended, in the order
        they ended; None where it sent none (the connection was cut)."""
        self.pings: list[float] = []
        """When each websocket ping from a charge point arrived (monotonic seconds)."""
        self.connections: dict[str, ServerConnection] = {}
        self.transactions: dict[int, dict[str, Any]] = {}
        """1.6: the StartTransaction payload of each transaction id this CSMS assigned."""
        self.transactions201: dict[str, list[dict[str, Any]]] = {}
        """2.0.1: every TransactionEvent payload received, by transactionId, in arrival
        order (recorded whoever answers, a responder or the default)."""
        self._versions: dict[str, str] = {}
        self._tx_ids = itertools.count(first_transaction_id)
        self._changed = asyncio.Condition()
        self._waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> LoopbackCsms:
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            subprotocols=[Subprotocol(f"ocpp{v}") for v in self.versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            ping_interval=None,
            ssl=self.ssl_context,
            create_connection=_Connection,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def __aenter__(self) -> LoopbackCsms:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    # -------------------------------------------------------------------- server

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """The first subprotocol the client lists that this CSMS accepts; None (no
        ``Sec-WebSocket-Protocol`` in the answer) if there is none, and :meth:`_connection`
        then closes the connection."""
        accepted = {f"ocpp{v}" for v in self.versions}
        return next((p for p in offered if p in accepted), None)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.password is None:
            return None
        cp_id = request.path.rsplit("/", 1)[-1]
        password = self.password.encode() if isinstance(self.password, str) else self.password
        expected = base64.b64encode(cp_id.encode() + b":" + password).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            self.auth_failures.append(cp_id)
            return Response(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                Headers({"WWW-Authenticate": 'Basic realm="ocpp"'}),
                b"",
            )
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        cp_id = ws.request.path.rsplit("/", 1)[-1]
        self.subprotocols.append(ws.subprotocol)
        tls = ws.transport.get_extra_info("ssl_object")
        if tls is not None:
            self.client_certificates.append(tls.getpeercert() or None)
        if ws.subprotocol is None:
            await self._refuse(ws)
            return
        version = ws.subprotocol.removeprefix("ocpp")
        self._versions[cp_id] = version
        self.connections[cp_id] = ws
        if isinstance(ws, _Connection):
            ws.on_ping = self._pinged
        await self._notify()
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                await self._record(Frame("in", cp_id, text))
                task = asyncio.create_task(self._handle(ws, cp_id, version, text))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        except ConnectionClosed:
            pass
        finally:
            received = ws.protocol.close_rcvd
            self.close_codes.append(received.code if received is not None else None)
            if self.connections.get(cp_id) is ws:
                del self.connections[cp_id]
            await self._notify()

    async def _refuse(self, ws: ServerConnection) -> None:
        """Close a connection that negotiated no subprotocol, recording it as ended."""
        await ws.close(CloseCode.PROTOCOL_ERROR, "no supported OCPP subprotocol offered")
        received = ws.protocol.close_rcvd
        self.close_codes.append(received.code if received is not None else None)
        await self._notify()

    def _pinged(self) -> None:
        self.pings.append(time.monotonic())
        task = asyncio.create_task(self._notify())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _record(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
        await self._notify()

    async def _send(self, ws: ServerConnection, cp_id: str, message: list[Any]) -> None:
        raw = json.dumps(message, separators=(",", ":"))
        await self._record(Frame("out", cp_id, raw))
        with contextlib.suppress(ConnectionClosed):
            await ws.send(raw)

    async def _handle(self, ws: ServerConnection, cp_id: str, version: str, raw: str) -> None:
        _answering.set(version)
        try:
            message = json.loads(raw)
        except ValueError:
            self.schema_errors.append(f"non-JSON frame from {cp_id}: {raw[:200]}")
            return
        if not isinstance(message, list) or not message:
            self.schema_errors.append(f"not an OCPP message from {cp_id}: {raw[:200]}")
            return
        kind = message[0]
        if kind in (3, 4):
            future = self._waiting.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message)
            if kind == 4:
                self.call_errors.append(message)
            return
        if kind != 2 or len(message) != 4:
            self.schema_errors.append(f"malformed frame from {cp_id}: {raw[:200]}")
            return
        _, unique_id, action, payload = message
        self._validate(2, action, payload, f"{action} from {cp_id}", version)
        received = Received(len(self.received), cp_id, unique_id, action, payload, version)
        self.received.append(received)
        if version == "2.0.1" and action == "TransactionEvent":
            self._record_transaction_event(payload)
        await self._notify()
        reply = await self._reply(action, payload)
        if reply is None:
            return
        if isinstance(reply, CallErrorReply):
            await self._send(ws, cp_id, [4, unique_id, reply.code, reply.description, {}])
        else:
            self._validate(3, action, reply, f"the test's {action} answer", version)
            await self._send(ws, cp_id, [3, unique_id, reply])

    async def _reply(
        self, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | CallErrorReply | None:
        responder = self.responders.get(action)
        if responder is not None:
            result = responder(payload)
            if isinstance(result, Awaitable):
                result = await result
            reply: dict[str, Any] | CallErrorReply | None = result
            return reply
        return self.default_reply(action, payload)

    def _record_transaction_event(self, payload: Any) -> None:
        info = payload.get("transactionInfo") if isinstance(payload, dict) else None
        tx_id = info.get("transactionId") if isinstance(info, dict) else None
        if isinstance(tx_id, str):
            self.transactions201.setdefault(tx_id, []).append(payload)

    def default_reply(
        self, action: str, payload: dict[str, Any], version: str | None = None
    ) -> dict[str, Any]:
        """What a permissive CSMS answers; tests override per action with ``responders``.
        ``version`` defaults to that of the connection whose CALL is being answered (so a
        responder may delegate here), or 1.6 outside an answer."""
        if (version or _answering.get()) == "2.0.1":
            return self._default_reply_201(action, payload)
        if action == "BootNotification":
            interval = (
                self.heartbeat_interval if self.boot_status == "Accepted" else self.boot_interval
            )
            return {"status": self.boot_status, "currentTime": now_iso(), "interval": interval}
        if action == "Heartbeat":
            return {"currentTime": now_iso()}
        if action == "Authorize":
            return {"idTagInfo": {"status": self.id_tag_status.get(payload["idTag"], "Accepted")}}
        if action == "StartTransaction":
            tx_id = next(self._tx_ids)
            self.transactions[tx_id] = dict(payload)
            status = self.id_tag_status.get(payload["idTag"], "Accepted")
            return {"transactionId": tx_id, "idTagInfo": {"status": status}}
        if action == "StopTransaction":
            if "idTag" in payload:
                return {
                    "idTagInfo": {"status": self.id_tag_status.get(payload["idTag"], "Accepted")}
                }
            return {}
        if action in ("DataTransfer", "SignCertificate"):
            return {"status": "Accepted"}
        return {}

    def _default_reply_201(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The 2.0.1 defaults, one per :data:`STATION_ACTIONS_201` (others get ``{}``).
        The payload is read defensively: a schema-invalid CALL is reported in
        ``schema_errors`` and still answered."""
        if action == "BootNotification":
            interval = (
                self.heartbeat_interval if self.boot_status == "Accepted" else self.boot_interval
            )
            return {"currentTime": now_iso(), "interval": interval, "status": self.boot_status}
        if action == "Heartbeat":
            return {"currentTime": now_iso()}
        if action == "Authorize":
            return {"idTokenInfo": self._id_token_info(payload.get("idToken"))}
        if action == "TransactionEvent":
            if isinstance(payload.get("idToken"), dict):
                return {"idTokenInfo": self._id_token_info(payload["idToken"])}
            return {}
        if action in ("DataTransfer", "SignCertificate"):
            return {"status": "Accepted"}
        if action in ("NotifyEVChargingNeeds", "NotifyEVChargingSchedule"):
            return {"status": "Accepted"}
        if action == "Get15118EVCertificate":
            # No contract certificate pool here: an honest failure, with an empty EXI.
            return {"status": "Failed", "exiResponse": ""}
        if action == "GetCertificateStatus":
            return {"status": "Failed"}  # no OCSP responder to ask
        return {}

    def _id_token_info(self, id_token: Any) -> dict[str, Any]:
        token = id_token.get("idToken") if isinstance(id_token, dict) else None
        status = self.id_tag_status.get(token, "Accepted") if isinstance(token, str) else "Invalid"
        return {"status": status}

    def _validate(
        self, kind: int, action: str, payload: Any, what: str, version: str = "1.6"
    ) -> None:
        problem = schema_problem(kind, action, payload, version)
        if problem is not None:
            self.schema_errors.append(f"{what}: {problem}")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---------------------------------------------------------------- test API

    def version(self, cp_id: str | None = None) -> str:
        """The OCPP version ("1.6" or "2.0.1") of the charge point's latest connection (the
        one connected if ``cp_id`` is None)."""
        if cp_id is None:
            cp_id, _ = self._connection_for(None)
        try:
            return self._versions[cp_id]
        except KeyError:
            raise AssertionError(f"{cp_id} never connected: {list(self._versions)}") from None

    def transaction_events(self, transaction_id: str | None = None) -> list[dict[str, Any]]:
        """2.0.1: the TransactionEvent payloads received, in arrival order; only those of
        ``transaction_id`` if given."""
        if transaction_id is not None:
            return list(self.transactions201.get(transaction_id, []))
        return [
            r.payload
            for r in self.received
            if r.action == "TransactionEvent" and r.version == "2.0.1"
        ]

    def mark(self) -> int:
        """A cursor: pass it as ``since`` to wait only for messages received after now."""
        return len(self.received)

    def messages(self, action: str | None = None, *, since: int = 0) -> list[Received]:
        return [r for r in self.received[since:] if action is None or r.action == action]

    def payloads(self, action: str, *, since: int = 0) -> list[dict[str, Any]]:
        return [r.payload for r in self.messages(action, since=since)]

    async def wait_for(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = WAIT_S,
    ) -> dict[str, Any]:
        """The first CALL of ``action`` at or after ``since`` matching ``where``."""
        return (await self.wait_for_message(action, where, since=since, timeout=timeout)).payload

    async def wait_for_message(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = WAIT_S,
    ) -> Received:
        def find() -> Received | None:
            for r in self.received[since:]:
                if r.action == action and (where is None or where(r.payload)):
                    return r
            return None

        async def wait() -> Received:
            async with self._changed:
                while (found := find()) is None:
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            seen = [f"{r.action}" for r in self.received[since:]]
            raise AssertionError(
                f"no {action} within {timeout} s; received since: {seen}"
            ) from None

    async def wait_connected(self, cp_id: str | None = None, *, timeout: float = WAIT_S) -> str:
        async def wait() -> str:
            async with self._changed:
                while True:
                    for known in self.connections:
                        if cp_id is None or known == cp_id:
                            return known
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no charge point connected within {timeout} s") from None

    async def _wait_count(self, items: list[Any], count: int, timeout: float, what: str) -> None:
        """Until ``items`` (a list this server appends to) holds ``count`` entries."""

        async def wait() -> None:
            async with self._changed:
                while len(items) < count:
                    await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{len(items)} {what} within {timeout} s, not {count}") from None

    async def wait_connections(self, count: int, *, timeout: float = WAIT_S) -> None:
        """Until ``count`` websocket connections have been opened in all, reconnections
        included (``len(self.subprotocols)`` is the count so far)."""
        await self._wait_count(self.subprotocols, count, timeout, "connection(s) opened")

    async def wait_closed(self, count: int, *, timeout: float = WAIT_S) -> list[int | None]:
        """Until ``count`` connections have ended in all; returns their close codes."""
        await self._wait_count(self.close_codes, count, timeout, "connection(s) ended")
        return self.close_codes[:count]

    async def wait_pings(self, count: int, *, timeout: float = WAIT_S) -> None:
        """Until the charge points have sent ``count`` websocket pings in all."""
        await self._wait_count(self.pings, count, timeout, "ping(s)")

    async def wait_disconnected(self, cp_id: str, *, timeout: float = WAIT_S) -> None:
        async def wait() -> None:
            async with self._changed:
                while cp_id in self.connections:
                    await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def _connection_for(self, cp_id: str | None) -> tuple[str, ServerConnection]:
        if cp_id is None:
            if len(self.connections) != 1:
                raise AssertionError(
                    f"expected one connected charge point: {list(self.connections)}"
                )
            cp_id = next(iter(self.connections))
        return cp_id, self.connections[cp_id]

    async def call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        cp_id: str | None = None,
        timeout: float = WAIT_S,
    ) -> dict[str, Any]:
        """Send a CSMS-initiated CALL; return the CALLRESULT payload or raise CsmsCallError."""
        cp_id, ws = self._connection_for(cp_id)
        version = self._versions[cp_id]
        unique_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting[unique_id] = future
        await self._send(ws, cp_id, [2, unique_id, action, payload])
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(unique_id, None)
        if reply[0] == 4:
            raise CsmsCallError(reply[2], reply[3])
        self._validate(3, action, reply[2], f"{action} answer from {cp_id}", version)
        result: dict[str, Any] = reply[2]
        return result

    async def send_raw(self, raw: str, *, cp_id: str | None = None) -> None:
        cp_id, ws = self._connection_for(cp_id)
        await self._record(Frame("out", cp_id, raw))
        await ws.send(raw)

    async def next_frame(self, *, after: int, timeout: float = WAIT_S) -> Frame:
        """The first frame from the charge point recorded at index ``after`` or later."""

        async def wait() -> Frame:
            async with self._changed:
                while True:
                    for frame in self.frames[after:]:
                        if frame.direction == "in":
                            return frame
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def disconnect(self, cp_id: str | None = None) -> None:
        cp_id, ws = self._connection_for(cp_id)
        await ws.close()
