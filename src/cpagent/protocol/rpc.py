"""OCPP-J over one websocket, shared by the 1.6 and 2.0.1 charge points.

Routes actions to handlers the way the ``ocpp`` library's ChargePoint does (its ``@on``
decorator and route map), with the message intake replaced: every frame is bounded and read
by :mod:`.intake`, a request is checked against its schema and then for what its handler
could not use, and whatever is refused gets the CALLERROR its OCPP-J version wants instead
of a log line; responses nobody waits for are dropped. One CALL of the charge point's is in
flight at a time. The library's ChargePoint itself is not used: importing it imports
jsonschema (see :mod:`.ocppj`).

A version's charge point subclasses :class:`RpcEndpoint` and says how its schemas validate
(:meth:`RpcEndpoint._validate`), what a handler could not use
(:meth:`RpcEndpoint._check_request`) and how its codes are named.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from ocpp.exceptions import (
    GenericError,
    InternalError,
    OCPPError,
    UnknownCallErrorCodeError,
)
from ocpp.routing import create_route_map

from cpagent.protocol.intake import FrameError, read_frame
from cpagent.protocol.ocppj import (
    Call,
    CallError,
    CallResult,
    MessageType,
    camel_to_snake_case,
    remove_nones,
    snake_to_camel_case,
)
from cpagent.systemd import journal_fields

log = logging.getLogger(__name__)

_CLOSED = object()
"""Put in the response queue when the connection ends under a CALL waiting for its answer."""


class ConnectionLost(Exception):
    """The websocket went away under a CALL."""


def _reason(error: OCPPError) -> str:
    """What a refusal is about, for the log: a schema error's cause names the field."""
    cause = error.details.get("cause") if isinstance(error.details, dict) else None
    return str(cause) if cause else str(error.description)


class _Unusual(Exception):
    """A handler's answer holds what :func:`_wire` does not convert (a tuple, a key that is
    no string): it goes the ``ocpp`` library's way instead."""


@functools.lru_cache(maxsize=2048)
def _snake_key(key: str) -> str:
    """``key`` as the ``ocpp`` library names it for a handler (its rules, run once per key;
    2048 spellings are kept, more than the OCPP messages use)."""
    spelt: str = next(iter(camel_to_snake_case({key: None})))
    return spelt


@functools.lru_cache(maxsize=2048)
def _camel_key(key: str) -> str:
    """``key`` as the ``ocpp`` library puts it on the wire (its rules, run once per key)."""
    spelt: str = next(iter(snake_to_camel_case({key: None})))
    return spelt


def _snake(value: Any) -> Any:
    """What ``camel_to_snake_case`` makes of a request payload, with each key's spelling
    looked up instead of worked out by regular expressions every time."""
    if isinstance(value, dict):
        return {_snake_key(k) if isinstance(k, str) else k: _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _wire(value: Any) -> Any:
    """What ``snake_to_camel_case(remove_nones(value))`` makes of a handler's answer (a
    ``call_result`` answer, a dict, and the dicts and lists in it), in one pass: no deep
    copy, each key's spelling looked up. Raises :class:`_Unusual` for a tuple or a key that
    is no string, which that chain treats its own way."""
    if isinstance(value, str | int | float):  # the leaves, most of a payload (enums too)
        return value
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if item is not None:
                if not isinstance(key, str):
                    raise _Unusual
                result[_camel_key(key)] = _wire(item)
        return result
    if isinstance(value, list):
        return [_wire(item) for item in value if item is not None]
    if isinstance(value, tuple):
        raise _Unusual
    return value


def _fields(msg: Call) -> dict[str, Any]:
    """Journal fields of a log line about a CALL from the CSMS."""
    return journal_fields(
        action=msg.action if isinstance(msg.action, str) else None,
        message_id=str(msg.unique_id),
    )


class RpcEndpoint:
    """The OCPP-J side of a charge point: answering CALLs, and one CALL of its own at a time.

    ``route_map`` holds the handlers a subclass marks with the library's ``@on(action)``,
    as the library's ChargePoint builds it; :meth:`start` reads ``connection`` until it
    closes.
    """

    def __init__(self, cp_id: str, connection: Any, *, response_timeout: float) -> None:
        self.id = cp_id
        self._connection = connection
        self._response_timeout = response_timeout
        self.route_map: dict[str, dict[str, Any]] = create_route_map(self)
        self._call_lock = asyncio.Lock()
        self._response_queue: asyncio.Queue[Any] = asyncio.Queue()
        self._unique_id_generator: Callable[[], Any] = uuid.uuid4
        self._awaiting: str | None = None
        self._awaiting_action = ""
        self._on_result: Callable[[dict[str, Any]], None] | None = None
        self._closed = False
        self._deferred: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Take every frame from the connection, one after the other, until it closes
        (the connection's ConnectionClosed ends it)."""
        while True:
            await self.route_message(await self._connection.recv())

    async def _send(self, message: str) -> None:
        await self._connection.send(message)

    # --------------------------------------------------------- what a version says

    def _validate(self, message_type_id: int, action: str, payload: dict[str, Any]) -> None:
        """Raise the OCPPError for a payload its schema refuses."""
        raise NotImplementedError

    def _check_request(self, action: str, payload: dict[str, Any]) -> None:
        """Raise the OCPPError for a schema-valid request a handler could not use."""

    def _unhandled_action(self, action: Any) -> OCPPError:
        """The CALLERROR for a CALL without a handler."""
        raise NotImplementedError

    def _code(self, error: OCPPError) -> str:
        """The error's code as this OCPP-J version spells it."""
        return str(error.code)

    def _late_answer(self, unique_id: str, payload: dict[str, Any]) -> bool:
        """Take a CALLRESULT for a CALL that is no longer awaited; False: nobody wants it."""
        return False

    async def _run_handler(self, handler: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """Call the handler the way the ``ocpp`` library does: the payload's fields as
        snake_case keyword arguments, its answer (snake_case fields, as the version's
        ``call_result`` builds them) back in camelCase with None fields left out. A handler
        may also answer with the payload as it goes on the wire (a plain dict: camelCase
        keys, no None values), taken as it is; the schema check that follows holds either
        to the same rules."""
        response = await handler(**_snake(payload))
        if type(response) is dict:  # the answer as it goes on the wire
            return response
        try:
            answer: dict[str, Any] = _wire(response)
        except _Unusual:
            answer = snake_to_camel_case(remove_nones(response))
        return answer

    def _error_frame(self, unique_id: str, error: OCPPError) -> str:
        details = error.details if isinstance(error.details, dict) else {}
        details = {k: v for k, v in details.items() if k != "ocpp_message"}  # not echoed
        return json.dumps(
            [4, unique_id, self._code(error), error.description, details],
            separators=(",", ":"),
            default=str,
        )

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Take one frame from the wire: answer a CALL, hand an answer to the CALL waiting
        for it. A frame that cannot be taken is refused or ignored (:func:`read_frame`);
        no frame ends the connection."""
        try:
            msg = read_frame(raw_msg)
        except FrameError as err:
            await self._reject_frame(raw_msg, err)
            return
        if isinstance(msg, Call):
            await self._answer_call(msg)
            return
        if msg.unique_id != self._awaiting:
            if isinstance(msg, CallResult) and self._late_answer(msg.unique_id, msg.payload):
                return
            log.warning(
                "ignoring a response for unknown message id %r",
                msg.unique_id,
                extra=journal_fields(message_id=str(msg.unique_id)),
            )
            return
        if isinstance(msg, CallResult) and self._on_result is not None:
            self._result_read(self._awaiting_action, msg.payload, self._on_result)
        self._response_queue.put_nowait(msg)

    def _result_read(
        self, action: str, payload: Any, on_result: Callable[[dict[str, Any]], None]
    ) -> None:
        """Hand a schema-valid answer to ``on_result`` as it is read (an invalid one is
        refused by :meth:`call_payload`); what goes wrong there is logged, not raised into
        the reader."""
        try:
            self._validate(MessageType.CallResult, action, payload)
        except OCPPError:
            return
        try:
            on_result(payload)
        except Exception:
            log.exception("acting on the answer to %s failed", action)

    async def _reject_frame(self, raw_msg: str | bytes, err: FrameError) -> None:
        """A frame that is not a usable OCPP message: answered if it carries a CALL id."""
        error = err.error
        if err.reply_to is None:
            log.warning("ignoring a frame from the CSMS, %s: %.200r", error.description, raw_msg)
            return
        log.warning(
            "CSMS message %.40s refused: %s %s",
            err.reply_to,
            self._code(error),
            _reason(error),
            extra=journal_fields(message_id=err.reply_to),
        )
        await self._send(self._error_frame(err.reply_to, error))

    async def _answer_call(self, msg: Call) -> None:
        """Answer a CALL with its CALLRESULT, or the CALLERROR for what the checks refuse
        (one log line) or a handler fails with (a fault of the agent: logged with its
        traceback, answered InternalError). Follow-ups the handler left run after that."""
        try:
            payload = await self._handle_request(msg)
            reply = self._result_frame(msg.unique_id, msg.action, payload)
        except OCPPError as err:
            log.warning(
                "CSMS %s %s refused: %s %s",
                msg.action,
                msg.unique_id,
                self._code(err),
                _reason(err),
                extra=_fields(msg),
            )
            reply = self._error_frame(msg.unique_id, err)
        except Exception:
            log.exception("handling CSMS %s failed", msg.action, extra=_fields(msg))
            reply = self._error_frame(msg.unique_id, InternalError(description="internal error"))
        await self._send(reply)
        deferred, self._deferred = self._deferred, []
        for make in deferred:
            self._spawn(make())

    def _result_frame(self, unique_id: str, action: str, payload: dict[str, Any]) -> str:
        """The CALLRESULT frame of ``payload``, the schema-valid answer to ``action``: the
        text ``CallResult.to_json`` writes (a version may write answers it has written
        before sooner, to the same text)."""
        return CallResult(unique_id, payload).to_json()

    async def _handle_request(self, msg: Call) -> dict[str, Any]:
        """The CALLRESULT payload for ``msg``. Its handler runs only on a request valid by
        its schema and by :func:`check_request`: it sees nothing it cannot use."""
        routes = self.route_map.get(msg.action) if isinstance(msg.action, str) else None
        if routes is None or "_on_action" not in routes:
            raise self._unhandled_action(msg.action)
        self._validate(MessageType.Call, msg.action, msg.payload)
        self._check_request(msg.action, msg.payload)
        payload = await self._run_handler(routes["_on_action"], msg.payload)
        try:
            self._validate(MessageType.CallResult, msg.action, payload)
        except OCPPError as err:
            raise RuntimeError(f"the {msg.action} answer breaks its schema: {err}") from None
        return payload

    async def call_payload(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        unique_id: str | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send one CALL and return the CALLRESULT payload.

        Raises the CSMS's CALLERROR as an OCPPError, TimeoutError when no answer
        comes in time and :class:`ConnectionLost` when the socket goes away.
        Both the request and the answer are schema-validated. ``on_result`` is called
        with a valid answer the moment it is read from the wire, before any later frame
        is handled: what the CSMS sends right behind its answer already sees its effect.
        """
        call = Call(
            unique_id=unique_id or str(self._unique_id_generator()), action=action, payload=payload
        )
        self._validate(MessageType.Call, action, payload)
        async with self._call_lock:
            if self._closed:
                raise ConnectionLost(f"{action}: the connection is closed")
            self._awaiting = call.unique_id
            self._awaiting_action, self._on_result = action, on_result
            try:
                await self._send(call.to_json())
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that comes
                # as the answer arrives, and the cancelled task (a card being authorized at
                # SIGTERM) then runs on and blocks the shutdown for ever.
                async with asyncio.timeout(self._response_timeout):
                    response = await self._response_queue.get()
            except TimeoutError:
                if self._response_queue.empty():
                    raise TimeoutError(
                        f"no answer to {action} within {self._response_timeout} s"
                    ) from None
                # It came as the time ran out: it is this CALL's, and must not be left for
                # the next one to take.
                response = self._response_queue.get_nowait()
            except Exception as err:
                if type(err).__name__.startswith("ConnectionClosed"):
                    raise ConnectionLost(str(err)) from err
                raise
            finally:
                self._awaiting, self._on_result = None, None
        if response is _CLOSED:
            raise ConnectionLost(f"the connection closed before the answer to {action} came")
        if isinstance(response, CallError):
            try:
                error = response.to_exception()
            except UnknownCallErrorCodeError:
                error = GenericError(
                    description=f"{response.error_code}: {response.error_description}"
                )
            raise error
        assert isinstance(response, CallResult)
        self._validate(MessageType.CallResult, action, response.payload)
        result: dict[str, Any] = response.payload
        return result

    def _after(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``make()`` once the current CALLRESULT has been sent."""
        self._deferred.append(make)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.warning("follow-up of a CSMS request failed: %r", err)

    async def close(self) -> None:
        """The connection is gone: a CALL still waiting for its answer (an Authorize for a
        card) fails with ConnectionLost now, not after the response timeout; follow-ups of
        CSMS requests are cancelled."""
        self._closed = True
        if self._awaiting is not None:
            self._response_queue.put_nowait(_CLOSED)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
