"""Card reader framings (pure) and SerialCardReader over a real pseudo-terminal.

The framing tests feed bytes split and mixed the ways a serial line delivers them. The reader
tests open the slave side of a pty exactly as they would a USB-serial adapter and write what a
reader sends to the master; unplugging is closing the master (the slave then reads end of file
and its /dev/pts node disappears), and a symlink stands for a udev name that comes and goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import selectors
import tty
from collections.abc import AsyncIterator, Iterator
from functools import reduce
from pathlib import Path

import pytest

from cpagent.exc import ReaderFault
from cpagent.hal.card_reader import (
    FRAMINGS,
    MAX_LINE_BYTES,
    Framing,
    LineFraming,
    Rdm6300Framing,
    SerialCardReader,
)

WAIT_S = 30.0


def rdm_frame(data_hex: str, checksum: int | None = None) -> bytes:
    """An RDM6300 frame for ``data_hex`` (10 hex chars), with the right checksum unless given."""
    if checksum is None:
        checksum = reduce(lambda a, b: a ^ b, bytes.fromhex(data_hex))
    return b"\x02" + data_hex.encode() + f"{checksum:02X}".encode() + b"\x03"


def feed_each_byte(framing: Framing, data: bytes) -> list[str]:
    uids: list[str] = []
    for i in range(len(data)):
        uids += framing.feed(data[i : i + 1])
    return uids


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- line framing --------------------------------------------------------------------------


def test_line_terminators_cr_lf_crlf() -> None:
    framing = LineFraming()
    assert framing.feed(b"04A1B2C3\r\nDEADBEEF\n0011223344556677\rCAFE") == [
        "04A1B2C3",
        "DEADBEEF",
        "0011223344556677",
    ]
    assert framing.feed(b"\r\n") == ["CAFE"]


def test_line_split_across_feeds() -> None:
    framing = LineFraming()
    assert framing.feed(b"04A1") == []
    assert framing.feed(b"B2C3\r") == ["04A1B2C3"]
    assert framing.feed(b"\n") == []  # the LF of a CRLF split off is no extra line
    assert feed_each_byte(framing, b"1234ABCD\r\n5678\n") == ["1234ABCD", "5678"]


def test_line_lower_case_and_whitespace() -> None:
    framing = LineFraming()
    assert framing.feed(b"  04a1b2c3\t \r\n\r\n\n \r\ndeadbeef\n") == ["04A1B2C3", "DEADBEEF"]


def test_line_length_bounds(caplog: pytest.LogCaptureFixture) -> None:
    framing = LineFraming()
    data = b"ABC\nABCD\n" + b"F" * 32 + b"\n" + b"E" * 33 + b"\n"
    assert framing.feed(data) == ["ABCD", "F" * 32]
    assert len(warnings(caplog)) == 2


def test_line_garbage_is_dropped_with_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    framing = LineFraming()
    data = b"hello world\r\n04 A1 B2\r\n\xff\xfe1234\r\nXYZ-" + b"9" * 80 + b"\n1234\n"
    assert framing.feed(data) == ["1234"]
    messages = warnings(caplog)
    assert len(messages) == 4
    assert "hello world" in messages[0]
    assert "04 A1 B2" in messages[1]
    assert len(messages[3]) < 120  # a long bad line is shown shortened


def test_line_too_long_without_terminator_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    framing = LineFraming()
    assert framing.feed(b"A" * 60) == []
    assert framing.feed(b"A" * 10) == []  # over the cap: dropped
    assert framing.feed(b"CCCC") == []  # still the same overlong line
    assert framing.feed(b"\r\nDDDD\r\n") == ["DDDD"]
    assert len(warnings(caplog)) == 1


def test_line_cap_counts_bytes_before_the_terminator() -> None:
    framing = LineFraming()
    padded = b"F" * 32 + b" " * (MAX_LINE_BYTES - 32)
    assert framing.feed(padded) == []
    assert framing.feed(b"\n") == ["F" * 32]
    assert framing.feed(padded + b" ") == []
    assert framing.feed(b"\nBEEF\n") == ["BEEF"]


def test_line_reset_forgets_partial_line() -> None:
    framing = LineFraming()
    assert framing.feed(b"ABCD") == []
    framing.reset()
    assert framing.feed(b"1234\n") == ["1234"]


# --- rdm6300 framing -----------------------------------------------------------------------


def test_rdm6300_known_frame() -> None:
    # 62 ^ E3 ^ 08 ^ 6C ^ ED = 08
    assert Rdm6300Framing().feed(b"\x0262E3086CED08\x03") == ["62E3086CED"]


def test_rdm6300_lower_case_hex() -> None:
    assert Rdm6300Framing().feed(b"\x0262e3086ced08\x03") == ["62E3086CED"]


def test_rdm6300_bad_checksum_dropped(caplog: pytest.LogCaptureFixture) -> None:
    framing = Rdm6300Framing()
    assert framing.feed(rdm_frame("62E3086CED", checksum=0x09)) == []
    assert len(warnings(caplog)) == 1
    assert framing.feed(rdm_frame("0A0B0C0D0E")) == ["0A0B0C0D0E"]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x0262E3086CEZ08\x03",  # not hex
        b"\x0262E3086CED08\x04",  # no ETX in its place
        b"\x0262E3 86CED08\x03",  # a space is not hex either
    ],
)
def test_rdm6300_malformed_dropped(bad: bytes, caplog: pytest.LogCaptureFixture) -> None:
    framing = Rdm6300Framing()
    assert framing.feed(bad + rdm_frame("0102030405")) == ["0102030405"]
    assert len(warnings(caplog)) == 1


def test_rdm6300_split_frames_and_noise() -> None:
    framing = Rdm6300Framing()
    noise = b"\x00\xff\x03garbage\r\n"
    data = noise + rdm_frame("62E3086CED") + noise + rdm_frame("1122334455")
    assert feed_each_byte(framing, data) == ["62E3086CED", "1122334455"]
    frame = rdm_frame("62E3086CED")
    assert framing.feed(frame[:5]) == []
    assert framing.feed(frame[5:13]) == []
    assert framing.feed(frame[13:]) == ["62E3086CED"]


def test_rdm6300_several_frames_in_one_chunk() -> None:
    data = rdm_frame("62E3086CED") * 3 + rdm_frame("1122334455")
    assert Rdm6300Framing().feed(data) == ["62E3086CED"] * 3 + ["1122334455"]


def test_rdm6300_resyncs_on_stx_after_truncated_frame(caplog: pytest.LogCaptureFixture) -> None:
    framing = Rdm6300Framing()
    assert framing.feed(b"\x0262E308" + rdm_frame("1122334455")) == ["1122334455"]
    assert len(warnings(caplog)) == 1


def test_rdm6300_reset_forgets_partial_frame() -> None:
    framing = Rdm6300Framing()
    framing.feed(b"\x0262E308")
    framing.reset()
    assert framing.feed(b"6CED08\x03" + rdm_frame("1122334455")) == ["1122334455"]


def test_framings_registry() -> None:
    assert set(FRAMINGS) == {"line", "rdm6300"}
    for name, factory in FRAMINGS.items():
        framing = factory()
        assert framing.name == name
    assert isinstance(FRAMINGS["line"](), LineFraming)
    assert isinstance(FRAMINGS["rdm6300"](), Rdm6300Framing)


# --- reader over a pty ---------------------------------------------------------------------


class PtyPort:
    """A pty whose slave is the "serial port" and whose master is the card reader's side."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.open = True

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def hang_up(self) -> None:
        """Unplug: close both ends we hold; the reader's fd then reads end of file."""
        if self.open:
            self.open = False
            os.close(self.master)
            os.close(self.slave)


@pytest.fixture
def ptys() -> Iterator[list[PtyPort]]:
    made: list[PtyPort] = []
    yield made
    for port in made:
        port.hang_up()


@pytest.fixture
def new_pty(ptys: list[PtyPort]) -> Iterator[type[PtyPort]]:
    class Tracked(PtyPort):
        def __init__(self) -> None:
            super().__init__()
            ptys.append(self)

    yield Tracked


def watched_fds() -> set[int]:
    """The fds the running loop watches for reading."""
    loop = asyncio.get_running_loop()
    selector: selectors.BaseSelector = loop._selector  # type: ignore[attr-defined]
    return {key.fd for key in selector.get_map().values() if key.events & selectors.EVENT_READ}


@pytest.fixture
async def readers() -> AsyncIterator[list[SerialCardReader]]:
    """Readers made by a test; closed afterwards, and none may leave a watched fd behind."""
    made: list[SerialCardReader] = []
    before = watched_fds()
    yield made
    for reader in made:
        reader.close()
    assert watched_fds() == before


async def read(reader: SerialCardReader) -> str:
    async with asyncio.timeout(WAIT_S):
        return await reader.read_card()


async def read_fault(reader: SerialCardReader) -> ReaderFault:
    with pytest.raises(ReaderFault) as info:
        await read(reader)
    assert info.value.error_code == "ReaderFailure"
    assert reader.port in str(info.value)
    assert not reader.is_open
    return info.value


def make_reader(
    readers: list[SerialCardReader], port: str, framing: str = "line", **kwargs: object
) -> SerialCardReader:
    reader = SerialCardReader(port, framing=FRAMINGS[framing](), **kwargs)  # type: ignore[arg-type]
    readers.append(reader)
    return reader


async def test_line_uids_delivered_in_order(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    reader.open()  # pyserial flushes input on open: what a test sends before is lost
    port.send(b"04A1B2C3\r\nDEADBEEF\r\n")
    port.send(b"not a card\r\n")
    port.send(b"cafe")
    port.send(b"f00d\n")
    assert [await read(reader) for _ in range(3)] == ["04A1B2C3", "DEADBEEF", "CAFEF00D"]
    port.send(b"1234\r")
    assert await read(reader) == "1234"


async def test_rdm6300_reader_counts_a_held_card_once(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path, "rdm6300")
    reader.open()
    port.send(b"\x00noise" + rdm_frame("62E3086CED") * 4)
    port.send(rdm_frame("1122334455", checksum=0) + rdm_frame("0102030405"))
    assert await read(reader) == "62E3086CED"
    assert await read(reader) == "0102030405"


async def test_repeat_suppression_window_slides(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    now = [100.0]
    port = new_pty()
    reader = make_reader(readers, port.path, repeat_suppress_s=2.0, clock=lambda: now[0])
    reader.open()
    port.send(b"AAAA\r\n")
    assert await read(reader) == "AAAA"
    now[0] = 101.5
    port.send(b"AAAA\r\nBBBB\r\n")
    assert await read(reader) == "BBBB"
    now[0] = 103.0  # 3 s after the first sighting, but only 1.5 s after the last one
    port.send(b"AAAA\r\nCCCC\r\n")
    assert await read(reader) == "CCCC"
    now[0] = 105.0  # 2 s without seeing it: a new presentation
    port.send(b"AAAA\r\n")
    assert await read(reader) == "AAAA"


async def test_no_repeat_suppression_with_zero_window(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path, repeat_suppress_s=0.0, clock=lambda: 0.0)
    reader.open()
    port.send(b"AAAA\r\nAAAA\r\n")
    assert [await read(reader), await read(reader)] == ["AAAA", "AAAA"]


async def test_missing_port_is_open_failed(readers: list[SerialCardReader], tmp_path: Path) -> None:
    reader = make_reader(readers, str(tmp_path / "ttyUSB9"))
    fault = await read_fault(reader)
    assert fault.vendor_error_code == "ReaderOpenFailed"
    fault = await read_fault(reader)  # every attempt tries again
    assert fault.vendor_error_code == "ReaderOpenFailed"
    with pytest.raises(ReaderFault):
        reader.open()


async def test_hang_up_while_waiting_is_disconnected(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    reader.open()
    port.send(b"ABCD\n")
    assert await read(reader) == "ABCD"
    waiting = asyncio.create_task(read(reader))
    await asyncio.sleep(0)  # let it register with the loop
    assert not waiting.done()
    port.hang_up()
    with pytest.raises(ReaderFault) as info:
        await waiting
    assert info.value.vendor_error_code == "ReaderDisconnected"
    assert port.path in str(info.value)
    assert not reader.is_open
    fault = await read_fault(reader)  # the pty node is gone with its master
    assert fault.vendor_error_code == "ReaderOpenFailed"


async def test_hang_up_before_reading_is_disconnected(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    reader.open()
    port.hang_up()
    fault = await read_fault(reader)
    assert fault.vendor_error_code == "ReaderDisconnected"


async def test_recovers_when_the_port_comes_and_goes(
    readers: list[SerialCardReader], new_pty: type[PtyPort], tmp_path: Path
) -> None:
    link = tmp_path / "ttyRFID"
    reader = make_reader(readers, str(link))
    assert (await read_fault(reader)).vendor_error_code == "ReaderOpenFailed"

    first = new_pty()
    link.symlink_to(first.path)
    reader.open()
    first.send(b"1111\r\n99")  # one write, one read: the reader holds a partial "99"
    assert await read(reader) == "1111"

    first.hang_up()
    assert (await read_fault(reader)).vendor_error_code == "ReaderDisconnected"
    link.unlink()
    assert (await read_fault(reader)).vendor_error_code == "ReaderOpenFailed"

    second = new_pty()
    link.symlink_to(second.path)
    reader.open()
    second.send(b"2222\r\n")
    assert await read(reader) == "2222"  # not "992222": a re-opened port starts afresh


def open_fds() -> set[int]:
    """This process's open fds (without the one listing them)."""
    fds = {int(name) for name in os.listdir("/proc/self/fd")}
    return {fd for fd in fds if _is_open(fd)}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_fault_closes_the_port_fds(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    before = open_fds()
    reader = make_reader(readers, port.path)
    reader.open()
    assert open_fds() - before  # the port (and pyserial's abort pipes)
    port.hang_up()
    await read_fault(reader)
    assert open_fds() == before - {port.master, port.slave}


async def test_cancelled_read_leaves_nothing_watched(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    reader.open()
    before = watched_fds()
    waiting = asyncio.create_task(read(reader))
    await asyncio.sleep(0)  # let it register with the loop
    assert len(watched_fds() - before) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert watched_fds() == before
    assert reader.is_open

    port.send(b"BEEF\r\n")  # arrives while nobody waits: kept by the port
    assert await read(reader) == "BEEF"
    assert watched_fds() == before

    reader.close()
    reader.close()
    assert not reader.is_open
    assert watched_fds() == before
    reader.open()
    port.send(b"F00D\r\n")
    assert await read(reader) == "F00D"


async def test_close_while_waiting_fails_the_read(
    readers: list[SerialCardReader], new_pty: type[PtyPort]
) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    before = watched_fds()
    waiting = asyncio.create_task(read(reader))
    await asyncio.sleep(0)
    assert reader.is_open
    reader.close()
    assert watched_fds() == before
    with pytest.raises(ReaderFault) as info:
        await waiting
    assert info.value.vendor_error_code == "ReaderClosed"
    assert not reader.is_open


async def test_one_read_at_a_time(readers: list[SerialCardReader], new_pty: type[PtyPort]) -> None:
    port = new_pty()
    reader = make_reader(readers, port.path)
    waiting = asyncio.create_task(read(reader))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await read(reader)
    port.send(b"ABCD\n")
    async with asyncio.timeout(WAIT_S):
        assert await waiting == "ABCD"


def test_describe_and_arguments() -> None:
    reader = SerialCardReader("/dev/ttyAMA0", framing=Rdm6300Framing())
    assert reader.describe() == "rdm6300 reader on /dev/ttyAMA0 @ 9600"
    assert not reader.is_open
    line = SerialCardReader("/dev/ttyUSB0", framing=LineFraming(), baudrate=115200)
    assert line.describe() == "line reader on /dev/ttyUSB0 @ 115200"
    with pytest.raises(ValueError):
        SerialCardReader("/dev/ttyUSB0", framing=LineFraming(), baudrate=0)
    with pytest.raises(ValueError):
        SerialCardReader("/dev/ttyUSB0", framing=LineFraming(), repeat_suppress_s=-1)
    reader.close()  # closing a reader that never opened is fine
