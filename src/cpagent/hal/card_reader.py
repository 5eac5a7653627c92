"""RFID card readers on a serial port.

A reader is split in two parts so each can be replaced on its own:

* the *transport*, :class:`SerialCardReader`, owns the port: it opens it lazily with pyserial,
  watches its file descriptor with the event loop (no thread, no polling), turns device
  failures into :class:`~cpagent.exc.ReaderFault` and re-opens the port on the next read;
* the *framing*, a :class:`Framing`, turns the byte stream into card UIDs. It is pure (bytes in,
  UIDs out) and keeps partial frames between calls, so it is tested without any device.

:data:`FRAMINGS` names the framings config can choose: ``"line"`` (an ASCII hex UID per line,
what most USB-serial readers and the minimal serial protocol send) and ``"rdm6300"`` (the
125 kHz RDM6300 module's STX/ETX frames).

Adding another kind of reader:

* another serial protocol (e.g. a PN532 in UART mode): write a class with ``name``,
  ``feed(data) -> list[str]`` and ``reset()`` (see :class:`Framing`), add it to
  :data:`FRAMINGS`, and pass an instance to :class:`SerialCardReader`;
* a reader that is not a serial port (e.g. a USB keyboard-emulating reader read through
  evdev, or a reader on SPI): subclass :class:`~cpagent.hal.base.CardReader` and implement
  ``async def read_card() -> str``: wait without blocking the loop (``loop.add_reader`` on the
  device's fd works for evdev too), return the UID upper-case, and raise
  :class:`~cpagent.exc.ReaderFault` when the device fails. The station then shows the charger
  Faulted (ReaderFailure), waits and calls ``read_card`` again, so ``read_card`` must retry
  opening the device rather than fail for good.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import serial

from cpagent.exc import ReaderFault
from cpagent.hal.base import CardReader

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64
"""A line longer than this without a terminator is noise (or a wrong baud rate): dropped."""

READ_CHUNK = 4096
_SHOWN_CHARS = 40
"""How much of a dropped line or frame a warning shows."""

_TERMINATOR = re.compile(rb"[\r\n]")
_HEX_UID = re.compile(r"[0-9A-Fa-f]{4,32}")
_RDM6300_BODY = re.compile(rb"[0-9A-Fa-f]{12}\x03")

STX = 0x02
ETX = 0x03
RDM6300_BODY_BYTES = 13
"""After STX: 10 data chars, 2 checksum chars and ETX."""


def _shown(data: bytes | str) -> str:
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    return repr(text)


class Framing(Protocol):
    """Turns a reader's byte stream into card UIDs.

    ``feed`` takes whatever bytes arrived (any split, possibly mid-frame) and returns the UIDs
    of the frames it completed, upper-case and in order; a partial frame is kept for the next
    call. Malformed frames are dropped with a logged warning, never raised: a noisy line must
    not stop the reader. ``reset`` forgets any partial frame; the reader calls it when it
    (re-)opens the port so bytes from before a disconnect never join a new frame.
    """

    name: str

    def feed(self, data: bytes) -> list[str]: ...

    def reset(self) -> None: ...


class LineFraming:
    """An ASCII hex UID per line, terminated by CR, LF or CRLF.

    Surrounding whitespace is stripped and empty lines are ignored (so CRLF is one terminator).
    A line must be 4 to 32 hex digits; any other line is dropped with one warning. A line that
    grows past :data:`MAX_LINE_BYTES` without a terminator is dropped and everything up to the
    next terminator is skipped, so the reader resynchronizes on the next line.
    """

    name = "line"

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False

    def reset(self) -> None:
        self._buffer.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[str]:
        uids: list[str] = []
        parts = _TERMINATOR.split(data)
        for i, part in enumerate(parts):
            terminated = i < len(parts) - 1
            if self._skipping:
                self._skipping = not terminated
                continue
            self._buffer += part
            if len(self._buffer) > MAX_LINE_BYTES:
                log.warning(
                    "card reader: dropped a line longer than %d bytes: %s",
                    MAX_LINE_BYTES,
                    _shown(bytes(self._buffer)),
                )
                self._buffer.clear()
                self._skipping = not terminated
                continue
            if terminated:
                uid = self._parse(bytes(self._buffer))
                self._buffer.clear()
                if uid is not None:
                    uids.append(uid)
        return uids

    @staticmethod
    def _parse(line: bytes) -> str | None:
        text = line.decode("ascii", "replace").strip()
        if not text:
            return None
        if _HEX_UID.fullmatch(text) is None:
            log.warning("card reader: dropped line %s: not a UID of 4-32 hex digits", _shown(text))
            return None
        return text.upper()


class Rdm6300Framing:
    """RDM6300 (125 kHz EM4100) frames: STX, 10 hex data chars, 2 hex checksum chars, ETX.

    The checksum is the XOR of the 5 bytes the data chars encode; the UID is the 10 data chars
    upper-case. A frame with a bad checksum, a non-hex char or no ETX in its place is dropped
    with a warning. Bytes outside a frame are ignored and an STX always starts a new frame
    (dropping an unfinished one), so parsing resynchronizes on the next STX after noise.
    """

    name = "rdm6300"

    def __init__(self) -> None:
        self._frame: bytearray | None = None

    def reset(self) -> None:
        self._frame = None

    def feed(self, data: bytes) -> list[str]:
        uids: list[str] = []
        for byte in data:
            if byte == STX:
                if self._frame is not None:
                    log.warning(
                        "card reader: dropped truncated rdm6300 frame %s",
                        _shown(bytes(self._frame)),
                    )
                self._frame = bytearray()
            elif self._frame is not None:
                self._frame.append(byte)
                if len(self._frame) == RDM6300_BODY_BYTES:
                    uid = self._parse(bytes(self._frame))
                    self._frame = None
                    if uid is not None:
                        uids.append(uid)
        return uids

    @staticmethod
    def _parse(body: bytes) -> str | None:
        if _RDM6300_BODY.fullmatch(body) is None:
            log.warning("card reader: dropped malformed rdm6300 frame %s", _shown(body))
            return None
        data = bytes.fromhex(body[:10].decode("ascii"))
        checksum = int(body[10:12], 16)
        actual = 0
        for byte in data:
            actual ^= byte
        if actual != checksum:
            log.warning(
                "card reader: dropped rdm6300 frame %s: checksum %02X, expected %02X",
                _shown(body[:12]),
                checksum,
                actual,
            )
            return None
        return body[:10].decode("ascii").upper()


FRAMINGS: dict[str, Callable[[], Framing]] = {
    LineFraming.name: LineFraming,
    Rdm6300Framing.name: Rdm6300Framing,
}
"""Framing name (as config spells it) -> factory of a fresh framing."""


class SerialCardReader(CardReader):
    """A card reader on a serial port (or anything with a tty fd, such as a pty in tests).

    The port is opened with pyserial (``baudrate`` 8N1, non-blocking) on the first
    :meth:`read_card` or :meth:`open`, so building the hardware never fails on a missing
    reader. Failures raise :class:`ReaderFault` naming the port: vendor error code
    ``ReaderOpenFailed`` when the port cannot be opened, ``ReaderDisconnected`` when it hangs
    up (end of file) or a read fails. After a failure the port is closed and the next
    :meth:`read_card` opens it again, which is how the station's retry recovers.

    The same UID seen again less than ``repeat_suppress_s`` after its previous sighting is
    ignored; every sighting restarts that window, so a card held on a reader that repeats its
    frame (an RDM6300 does, several times a second) counts once until it is taken away for
    ``repeat_suppress_s``. ``clock`` is injectable for tests.

    One :meth:`read_card` may wait at a time. pyserial flushes the input when it opens the
    port, so bytes sent before the port is open are lost, as with a real device.
    """

    def __init__(
        self,
        port: str,
        *,
        framing: Framing,
        baudrate: int = 9600,
        repeat_suppress_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if baudrate <= 0:
            raise ValueError(f"baudrate: must be positive, not {baudrate!r}")
        if repeat_suppress_s < 0:
            raise ValueError(f"repeat_suppress_s: must not be negative, not {repeat_suppress_s!r}")
        self.port = port
        self.framing = framing
        self.baudrate = baudrate
        self.repeat_suppress_s = repeat_suppress_s
        self._clock = clock
        self._serial: serial.Serial | None = None
        self._watch: tuple[asyncio.AbstractEventLoop, int] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pending: deque[str] = deque()
        self._last_seen: dict[str, float] = {}

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def describe(self) -> str:
        return f"{self.framing.name} reader on {self.port} @ {self.baudrate}"

    def open(self) -> None:
        """Open the port unless it is open; raise :class:`ReaderFault` (ReaderOpenFailed).

        :meth:`read_card` does this itself; call it to find a missing reader early.
        """
        if self._serial is not None:
            return
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as err:
            raise ReaderFault(
                f"card reader {self.port}: cannot open: {err}", vendor_error_code="ReaderOpenFailed"
            ) from err
        self.framing.reset()
        log.info("card reader: opened %s", self.describe())

    async def read_card(self) -> str:
        """Wait for the next UID that is not a repeat; see the class for failures.

        Cancelling it leaves the port open and nothing registered with the loop; bytes that
        arrive meanwhile wait in the port for the next call.
        """
        if self._waiter is not None:
            raise RuntimeError(f"card reader {self.port}: read_card() is already waiting")
        if self._pending:
            return self._pending.popleft()
        self.open()
        ser = self._serial
        assert ser is not None
        fd: int = ser.fileno()
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, self._on_readable)
        self._watch = (loop, fd)
        try:
            while not self._pending:
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
                if self._serial is not ser:
                    raise ReaderFault(
                        f"card reader {self.port}: closed", vendor_error_code="ReaderClosed"
                    )
                self._read_available(fd)
        except ReaderFault:
            self._unwatch()
            if self._serial is ser:
                self._close_port()
            raise
        finally:
            self._waiter = None
            self._unwatch()
        return self._pending.popleft()

    def close(self) -> None:
        """Close the port and drop undelivered UIDs. Idempotent.

        A :meth:`read_card` waiting at the time raises :class:`ReaderFault` (ReaderClosed); a
        later one opens the port again.
        """
        self._unwatch()
        self._close_port()
        self._pending.clear()
        self._on_readable()

    def _on_readable(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _read_available(self, fd: int) -> None:
        """Read what the port holds and queue the new UIDs.

        Uses ``os.read`` on the port's fd, not pyserial's ``read()``: the loop has already
        reported readiness, so one non-blocking read is all it takes. ``EAGAIN`` is a spurious
        wake-up; ``b""`` is end of file, the device is gone (a USB adapter unplugged, a pty
        whose master closed).
        """
        try:
            data = os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            raise ReaderFault(
                f"card reader {self.port}: read failed: {err}",
                vendor_error_code="ReaderDisconnected",
            ) from err
        if not data:
            raise ReaderFault(
                f"card reader {self.port}: device hung up", vendor_error_code="ReaderDisconnected"
            )
        now = self._clock()
        window = self.repeat_suppress_s
        self._last_seen = {uid: t for uid, t in self._last_seen.items() if now - t < window}
        for uid in self.framing.feed(data):
            last = self._last_seen.get(uid)
            self._last_seen[uid] = now
            if last is not None and now - last < window:
                log.debug("card reader %s: ignored repeat of %s", self.port, uid)
                continue
            self._pending.append(uid)

    def _unwatch(self) -> None:
        if self._watch is not None:
            loop, fd = self._watch
            self._watch = None
            if not loop.is_closed():
                loop.remove_reader(fd)

    def _close_port(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError) as err:
                log.debug("card reader %s: error while closing: %s", self.port, err)
