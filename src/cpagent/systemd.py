"""Running under systemd: readiness, status and watchdog notifications, and journald logging.

**Notifications** (``Type=notify``, see sd_notify(3)) go to ``$NOTIFY_SOCKET``; without it
(a shell, a test, another init system) the :class:`Notifier` does nothing. They are sent with
``systemd-python`` (``systemd.daemon.notify``) when it can be imported, else as the one
datagram sd_notify sends, written here: an ``AF_UNIX``/``SOCK_DGRAM`` socket, the address
a path or, when it starts with ``@``, a name in the abstract namespace.

What the agent sends (:mod:`cpagent.runner` and :class:`cpagent.agent.Agent` decide when):

* ``READY=1`` once the store is open, the hardware and the station are up and the control
  socket answers, whether or not the CSMS can be reached (an offline charger still charges);
* ``STATUS=`` one line on the link to the CSMS (:func:`status_text`), sent when it changes;
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from a task on the event loop itself, so a
  stalled loop stops the pings and systemd's ``WatchdogSec=`` restarts the agent; not sent
  when ``$WATCHDOG_PID`` names another process;
* ``STOPPING=1`` when a shutdown begins.

A Reset from the CSMS restarts the agent inside the process. That is not a reload in
systemd's sense (``RELOADING=1`` means "re-reading the configuration"), so no
``RELOADING=1`` is sent: the unit stays active, ``STATUS=`` says "restarting (Soft reset)",
the watchdog keeps ticking, and ``READY=1`` is sent again (systemd ignores a repeated one)
when the new agent is up.

**Journald logging**: when stderr is the journal (``$JOURNAL_STREAM`` names stderr's device
and inode) and ``systemd-python`` is installed, :func:`journal_handler` replaces the stderr
handler with ``systemd.journal.JournalHandler`` (``SYSLOG_IDENTIFIER=cpagent``). Fields given
to a log call as ``extra={"CONNECTOR": 1}`` then become journal fields, so an installer can
``journalctl -u cpagent CONNECTOR=1``. The field names the agent uses are the ``FIELD_*``
constants below. Their text values, like the message's arguments, are sent with control
characters escaped (:mod:`cpagent.logescape`): a message id from the CSMS is one line.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cpagent.logescape import ESCAPE_CONTROLS, escape_controls

log = logging.getLogger(__name__)

SYSLOG_IDENTIFIER = "cpagent"

#: Journal fields set at log call sites (``extra={FIELD_CONNECTOR: 1}``).
FIELD_CONNECTOR = "CONNECTOR"
FIELD_TRANSACTION_ID = "TRANSACTION_ID"
"""The CSMS's transactionId, once it is known."""
FIELD_LOCAL_TRANSACTION_ID = "LOCAL_TRANSACTION_ID"
"""The agent's own number for a session ("session 12" in the messages), always known."""
FIELD_OCPP_ACTION = "OCPP_ACTION"
FIELD_OCPP_MESSAGE_ID = "OCPP_MESSAGE_ID"
"""The OCPP-J unique id of a CALL and its answer. Not journald's ``MESSAGE_ID``, which is
reserved for a 128-bit id naming a *kind* of message (catalog entries, ``journalctl -x``)."""

_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]*")
"""A journal field an application may set: upper case, digits, underscores, not starting with
an underscore (those are trusted fields journald adds itself)."""
_NOT_SENT = frozenset({"CODE_ARGS", "EXCEPTION_INFO"})
"""What ``JournalHandler`` adds that is not worth the space: the log call's arguments (for a
traffic line, the whole frame again) and the repr of an exception tuple (the traceback is in
the message, and in ``EXCEPTION_TEXT``)."""


def journal_fields(
    *,
    connector: int | None = None,
    transaction_id: int | None = None,
    local_transaction_id: int | None = None,
    action: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """``extra=`` for a log call: the journal fields of what is known (None is left out).

    Plain stderr and file logging ignore them; :func:`journal_handler` sends them."""
    fields = {
        FIELD_CONNECTOR: connector,
        FIELD_TRANSACTION_ID: transaction_id,
        FIELD_LOCAL_TRANSACTION_ID: local_transaction_id,
        FIELD_OCPP_ACTION: action,
        FIELD_OCPP_MESSAGE_ID: message_id,
    }
    return {key: value for key, value in fields.items() if value is not None}


# ---------------------------------------------------------------------------- notifications

Sender = Callable[[str], bool]


class _DatagramSender:
    """sd_notify without libsystemd: one datagram per message, never blocking the loop."""

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def __call__(self, message: str) -> bool:
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError as err:  # systemd gone, or not reading: nothing to do about it here
            log.debug("sd_notify %r to %r failed: %s", message, self.address, err)
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def _library_sender() -> Sender | None:
    """``systemd.daemon.notify`` (it reads ``$NOTIFY_SOCKET`` itself), if installed."""
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    notify: Callable[[str], bool] = daemon.notify

    def send(message: str) -> bool:
        try:
            return bool(notify(message))
        except OSError as err:
            log.debug("sd_notify %r failed: %s", message, err)
            return False

    return send


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None


class Notifier:
    """The agent's side of sd_notify. Every method is a cheap no-op when not enabled."""

    def __init__(
        self,
        send: Sender | None,
        *,
        watchdog_usec: int | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._close = close
        self.watchdog_interval_s = watchdog_usec / 2e6 if send and watchdog_usec else None
        """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``; None: no watchdog."""
        self._status: str | None = None
        self._stopping = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, use_library: bool | None = None
    ) -> Notifier:
        """From ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        ``use_library``: None to use ``systemd-python`` when it is installed and
        ``environ`` is the process environment (the library only reads that), False to
        always send the datagram here.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return cls(None)
        watchdog = _positive_int(env.get("WATCHDOG_USEC"))
        pid = _positive_int(env.get("WATCHDOG_PID"))
        if pid is not None and pid != os.getpid():
            watchdog = None  # the watchdog is meant for another process (a wrapper's child)
        library = None
        if use_library is not False and env is os.environ:
            library = _library_sender()
        if library is not None:
            return cls(library, watchdog_usec=watchdog)
        if not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%s is not a unix socket; not notifying systemd", address)
            return cls(None)
        sender = _DatagramSender(address)
        return cls(sender, watchdog_usec=watchdog, close=sender.close)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``VAR=value`` assignments in one message; False if not sent."""
        if self._send is None:
            return False
        return self._send("\n".join(assignments))

    def ready(self, status: str | None = None) -> None:
        """``READY=1``, with a status line; again after an in-process restart."""
        if self._stopping:
            return
        assignments = ["READY=1"]
        if status is not None:
            status = _one_line(status)
            assignments.append(f"STATUS={status}")
            self._status = status
        self.notify(*assignments)

    def status(self, text: str) -> None:
        """``STATUS=text`` if it differs from the last one sent (and no shutdown began)."""
        text = _one_line(text)
        if self._send is None or self._stopping or text == self._status:
            return
        self._status = text
        self.notify(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        """``STOPPING=1`` once; status lines after it are not sent."""
        if self._stopping:
            return
        self._stopping = True
        self._status = _one_line(status)
        self.notify("STOPPING=1", f"STATUS={self._status}")

    async def run_watchdog(self) -> None:
        """Ping the watchdog from the event loop until cancelled (returns if there is none)."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def run_status(self, current: Callable[[], str | None], every_s: float) -> None:
        """Check ``current()`` every ``every_s`` and send it when it changed (None: skip)."""
        if not self.enabled:
            return
        while True:
            text = current()
            if text is not None:
                self.status(text)
            await asyncio.sleep(every_s)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def _one_line(text: str) -> str:
    """A notification is newline-separated assignments: a value must be one line, and one
    that may hold text from outside (a server's error) shows its other controls escaped."""
    return escape_controls(" ".join(text.split("\n")).strip())


def status_text(
    *,
    url: str,
    connected: bool,
    registered: bool,
    registration: str | None,
    network_up: bool,
    last_error: str | None,
    connectors: int,
    queue: int,
) -> str:
    """The ``STATUS=`` line: how the link to the CSMS is doing, in a few words."""
    waiting = f", queue {queue}" if queue else ""
    if not network_up:
        return f"offline (network down){waiting}"
    if connected and registered:
        plural = "" if connectors == 1 else "s"
        return f"connected to {url}, {connectors} connector{plural}, queue {queue}"
    if connected:
        return f"registering at {url}: BootNotification {registration or 'sent'}{waiting}"
    if last_error:
        return f"connecting: {last_error}{waiting}"
    return f"connecting to {url}{waiting}"


# ------------------------------------------------------------------------------ journald


def stderr_is_journal(
    environ: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> bool:
    """Whether ``stream`` (stderr) is the journal stream systemd connected it to.

    systemd sets ``$JOURNAL_STREAM`` to ``<device>:<inode>`` of that stream; a child whose
    stderr was redirected inherits the variable, hence the comparison.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        want = (int(device), int(inode))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == want


def journal_handler(send: Callable[..., Any] | None = None) -> logging.Handler | None:
    """A ``JournalHandler`` sending ``SYSLOG_IDENTIFIER=cpagent`` and the records' upper-case
    ``extra`` fields, or None when ``systemd-python`` is not installed.

    ``JournalHandler`` passes every attribute of a record to the journal (``msg``, ``args``,
    ``levelname``, ...); journald would drop the lower-case ones, so they are left out here
    and the work of formatting them is saved, as are ``CODE_ARGS`` and ``EXCEPTION_INFO``.
    ``send`` replaces ``systemd.journal.send`` (tests).
    """
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    target: Callable[..., Any] = send or journal.send

    # Positional-only: the record's attributes come as keywords, ``message`` among them.
    def send_fields(text: str, /, **fields: Any) -> Any:
        return target(
            text,
            **{
                k: escape_controls(v) if isinstance(v, str) else v
                for k, v in fields.items()
                if v is not None and k not in _NOT_SENT and _FIELD_NAME.fullmatch(k)
            },
        )

    handler: logging.Handler = journal.JournalHandler(
        sender_function=send_fields, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER
    )
    # The journal keeps the time, the priority and the logger (LOGGER=); the message is just
    # the message (with a traceback, when there is one).
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(ESCAPE_CONTROLS)
    return handler


def log_handler_for_stderr() -> logging.Handler:
    """The journal handler when stderr is the journal and the library is there; else a
    plain stderr handler."""
    if stderr_is_journal():
        handler = journal_handler()
        if handler is not None:
            return handler
    return logging.StreamHandler(sys.stderr)
