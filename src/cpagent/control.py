"""The local control socket: JSON lines over a unix socket.

One request per line, one answer per line:
``{"cmd": "status"}`` → ``{"ok": true, "result": {...}}``;
``{"cmd": "sim", "args": ["plug", "1"]}`` → ``{"ok": true, "result": "..."}``;
``{"cmd": "restart", "when": "idle", "reason": "..."}`` and ``{"cmd": "prepare-upgrade"}``
(see :class:`cpagent.agent.Agent`); failures → ``{"ok": false, "error": "message"}``.
It is how ``cpagent status`` and ``cpagent sim`` talk to the running agent, and how a
manufacturer's own display process can read state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cpagent.exc import ControlError, CpagentError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_REQUEST = 64 * 1024
CLOSE_ANSWERS_S = 2.0
"""How long :meth:`ControlServer.close` lets answers being written reach their clients."""


class ControlServer:
    """The server side. :meth:`close` lets the answers being written reach their clients
    (an agent that restarts has said so first), then closes every connection, so nothing
    of the socket is left open in the process (or in a new image it re-executes)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._answering = 0
        self._answered = asyncio.Event()

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # stale: the store lock proves no other agent owns it
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_REQUEST
            )
            os.chmod(self.path, 0o660)
        except OSError as err:
            raise ControlError(
                f"cannot open the control socket {self.path}: {err.strerror or err}"
            ) from err

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_ANSWERS_S):
                    while self._answering:
                        self._answered.clear()
                        await self._answered.wait()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                self._answering += 1
                try:
                    writer.write(json.dumps(await self._answer(line)).encode() + b"\n")
                    await writer.drain()
                finally:
                    self._answering -= 1
                    self._answered.set()
        except (ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("a request is a JSON object with a string 'cmd'")
            return {"ok": True, "result": await self.handler(request)}
        except (ValueError, CpagentError) as err:
            return {"ok": False, "error": str(err)}
        except Exception as err:
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {err!r}"}


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> Any:
    """Blocking client used by the CLI: send one request, return its result or raise
    (``timeout``: seconds for the connection and for the answer)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise ControlError(f"no agent answers on {path} (is cpagent running?)") from err
    except OSError as err:
        raise ControlError(f"control socket {path}: {err}") from err
    try:
        answer = json.loads(data)
    except ValueError as err:
        raise ControlError(f"the agent on {path} sent an unreadable answer") from err
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "request failed")))
    return answer.get("result")
