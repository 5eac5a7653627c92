"""The diagnostics archive an OCPP 1.6 GetDiagnostics request uploads.

:func:`build_archive` writes one ``.tar.gz`` into a directory and returns its path; sending
it to the CSMS is someone else's job. The archive holds:

* ``logs.txt``: the agent's log lines within the requested window, after a few ``#`` header
  lines saying where they came from, the window and whether the oldest were cut;
* ``config.toml``: the configuration file with its secrets replaced by ``"***"``
  (:func:`redact_config`);
* ``store.json``: a summary of the store that the agent passes in (see :func:`build_archive`);
* ``manifest.json``: charge point id, creation time, window, sources, member sizes, version.

Logs come from journald when the agent runs under systemd (:func:`journal_source`), else from
the agent's own log file and the siblings ``RotatingFileHandler`` (or logrotate) rotated it to:
``cpagent.log.1``, ``cpagent.log.2``, ... (``.gz`` allowed), read oldest first. A log line
starts with the time the runner's formatter writes (``2026-11-26 02:39:08,963``, local time);
a line without one (a traceback, a multi-line message) belongs to the line before it and is
kept or dropped with it.

Logs can be large and a charge point's memory small: lines are streamed through an unnamed
temporary file in the destination directory (not ``/tmp``, often a RAM disk) straight into the
tar member, never held in memory. Past ``max_log_bytes`` the *newest* lines are kept (the
recent past is what a diagnosis needs) starting at a whole log entry, and the header says how
much was left out. The archive is written under a temporary name, fsynced and renamed, so a
reader never sees half an archive and a crash leaves no file with the final name.

:func:`build_archive` blocks on disk I/O: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import json
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Protocol

import cpagent
from cpagent.fsutil import fsync_dir
from cpagent.timeutil import iso, utcnow

__all__ = [
    "DEFAULT_MAX_LOG_BYTES",
    "JournalSource",
    "JournaldSource",
    "archive_name",
    "build_archive",
    "journal_source",
    "log_files",
    "redact_config",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_LOG_BYTES = 20 * 2**20
JOURNAL_UNIT = "cpagent.service"
JOURNAL_IDENTIFIER = "cpagent"
REDACTED = '"***"'

LOGS_MEMBER = "logs.txt"
CONFIG_MEMBER = "config.toml"
STORE_MEMBER = "store.json"
MANIFEST_MEMBER = "manifest.json"

_COPY_CHUNK = 64 * 1024
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# -- log timestamps --------------------------------------------------------------------------

# The runner's "%(asctime)s %(levelname)-7s %(name)s: %(message)s", asctime in local time.
_LOG_TIME = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


class _LogClock:
    """The time a log line starts with, or None; remembers the last second it converted."""

    def __init__(self) -> None:
        self._second = b""
        self._base = datetime.min.replace(tzinfo=UTC)

    def __call__(self, line: bytes) -> datetime | None:
        match = _LOG_TIME.match(line)
        if match is None:
            return None
        second = match.group(1)
        if second != self._second:
            try:
                naive = datetime.strptime(second.decode("ascii"), "%Y-%m-%d %H:%M:%S")
            except ValueError:
                return None
            self._second, self._base = second, naive.astimezone()  # naive means local time
        return self._base + timedelta(milliseconds=int(match.group(2)))


def _asctime(ts: datetime) -> str:
    """``ts`` as the log formatter writes it: local time, comma, milliseconds."""
    local = ts.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S") + f",{local.microsecond // 1000:03d}"


def _aware(ts: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC, like :func:`cpagent.timeutil.parse_iso`."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


def _in_window(ts: datetime, start: datetime | None, stop: datetime | None) -> bool:
    return (start is None or ts >= start) and (stop is None or ts <= stop)


# -- journald --------------------------------------------------------------------------------


class JournalSource(Protocol):
    """Log lines from somewhere other than the log file: journald, or a fake in tests.

    ``description`` names the source in the ``logs.txt`` header and the manifest. ``lines``
    yields, oldest first, the lines of the entries whose time is within ``[start, stop]``
    (``None`` leaves that side open; both are aware datetimes), formatted like the log file's
    lines, with or without a trailing newline. An :class:`OSError` or :class:`ValueError` it
    raises ends the read; the lines already yielded are kept and the error is noted.
    """

    @property
    def description(self) -> str: ...

    def lines(self, start: datetime | None, stop: datetime | None) -> Iterator[str]: ...


_PRIORITY_LEVELS = {
    0: "CRITICAL",
    1: "CRITICAL",
    2: "CRITICAL",
    3: "ERROR",
    4: "WARNING",
    5: "INFO",
    6: "INFO",
    7: "DEBUG",
}


class JournaldSource:
    """The agent's journal entries, read with ``systemd-python``'s ``systemd.journal.Reader``.

    It matches the agent's unit (``_SYSTEMD_UNIT``), its syslog identifier, and systemd's own
    messages about the unit (``UNIT``: started, exited with a signal, restarted). Entries the
    unit wrote to stderr (``_TRANSPORT=stdout``) already went through the agent's formatter
    and are copied as they are; other entries get the formatter's layout from their journal
    time, priority and identifier. Reading needs the ``systemd-journal`` group (or root).
    """

    def __init__(self, unit: str = JOURNAL_UNIT, identifier: str = JOURNAL_IDENTIFIER) -> None:
        self.unit = unit
        self.identifier = identifier

    @property
    def description(self) -> str:
        return f"journald (_SYSTEMD_UNIT={self.unit} or SYSLOG_IDENTIFIER={self.identifier})"

    def lines(self, start: datetime | None, stop: datetime | None) -> Iterator[str]:
        journal = importlib.import_module("systemd.journal")
        reader = journal.Reader()
        try:
            reader.add_match(_SYSTEMD_UNIT=self.unit)
            reader.add_disjunction()
            reader.add_match(SYSLOG_IDENTIFIER=self.identifier)
            reader.add_disjunction()
            reader.add_match(UNIT=self.unit)
            if start is not None:
                reader.seek_realtime(start.timestamp())
            for entry in reader:
                ts = _entry_time(entry.get("__REALTIME_TIMESTAMP"))
                # No early stop past ``stop``: a clock set by NTP after boot can go back.
                if ts is not None and _in_window(ts, start, stop):
                    yield from self._format(entry, ts)
        finally:
            reader.close()

    def _format(self, entry: Mapping[str, object], ts: datetime) -> Iterator[str]:
        message = entry.get("MESSAGE", "")
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        if entry.get("_TRANSPORT") == "stdout":
            yield from text.split("\n")
            return
        level = _PRIORITY_LEVELS.get(_int_or(entry.get("PRIORITY"), 6), "INFO")
        # The agent's own records carry their logger's name in LOGGER (cpagent.station...).
        name = entry.get("LOGGER") or entry.get("SYSLOG_IDENTIFIER") or self.identifier
        first, *rest = text.split("\n")
        yield f"{_asctime(ts)} {level:<7} {name}: {first}"
        yield from rest


def _int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _entry_time(value: object) -> datetime | None:
    """``__REALTIME_TIMESTAMP``: a naive local datetime by default, or raw microseconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.astimezone()
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1_000_000, UTC)
    return None


def journal_source() -> JournalSource | None:
    """A :class:`JournaldSource` when the agent runs under systemd and can read the journal.

    Under systemd means ``INVOCATION_ID`` or ``JOURNAL_STREAM`` is set; reading needs
    ``systemd-python`` (``systemd.journal``), an optional dependency. Otherwise ``None``:
    the caller falls back to the log file.
    """
    if not (os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM")):
        return None
    try:
        importlib.import_module("systemd.journal")
    except ImportError:
        return None
    return JournaldSource()


# -- log files -------------------------------------------------------------------------------


def log_files(log_file: Path) -> list[Path]:
    """``log_file`` and its rotated siblings (``.1``, ``.2``, ..., maybe ``.gz``), oldest first.

    The highest number is the oldest; ``log_file`` itself, the newest, comes last. Files that
    do not exist are left out.
    """
    pattern = re.compile(re.escape(log_file.name) + r"\.(\d+)(\.gz)?")
    rotated: list[tuple[int, str, Path]] = []
    with contextlib.suppress(OSError):
        for path in log_file.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match is not None and path.is_file():
                rotated.append((int(match.group(1)), path.name, path))
    rotated.sort(key=lambda item: (-item[0], item[1]))
    files = [path for _, _, path in rotated]
    if log_file.is_file():
        files.append(log_file)
    return files


def _file_lines(paths: list[Path], notes: list[str]) -> Iterator[bytes]:
    """Every line of ``paths`` in order, each ending in a newline.

    All files are opened before the first is read, so a rotation meanwhile (which renames,
    never rewrites) neither skips nor repeats a file. A growing file is read up to the size it
    had when opened: the lines the agent logs while this runs cannot keep the read going.
    """
    with contextlib.ExitStack() as stack:
        opened: list[tuple[Path, io.BufferedIOBase, int | None]] = []
        for path in paths:
            try:
                if path.suffix == ".gz":
                    opened.append((path, stack.enter_context(gzip.open(path, "rb")), None))
                else:
                    file = stack.enter_context(path.open("rb"))
                    opened.append((path, file, os.fstat(file.fileno()).st_size))
            except OSError as exc:
                notes.append(f"cannot read {path}: {exc.strerror or exc}")
        for path, stream, limit in opened:
            read = 0
            try:
                for line in stream:
                    if limit is not None and read >= limit:
                        break
                    read += len(line)
                    yield line if line.endswith(b"\n") else line + b"\n"
            except (OSError, EOFError) as exc:
                notes.append(f"reading {path} stopped: {exc}")


def _window_lines(
    lines: Iterable[bytes], start: datetime | None, stop: datetime | None
) -> Iterator[bytes]:
    """The entries of ``lines`` within the window, continuation lines with their entry.

    Lines before the first timestamp have no known time: kept only if the window has no start.
    """
    clock = _LogClock()
    keep = start is None
    for line in lines:
        ts = clock(line)
        if ts is not None:
            keep = _in_window(ts, start, stop)
        if keep:
            yield line


def _journal_lines(
    journal: JournalSource, start: datetime | None, stop: datetime | None, notes: list[str]
) -> Iterator[bytes]:
    try:
        for line in journal.lines(start, stop):
            yield line.removesuffix("\n").encode("utf-8", "replace") + b"\n"
    except (OSError, ValueError) as exc:
        notes.append(f"reading {journal.description} stopped: {exc}")


# -- the logs member -------------------------------------------------------------------------


@dataclass
class _Logs:
    kind: str  # "journal", "file" or "none"
    source: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    matched_bytes: int = 0
    cut_bytes: int = 0

    @property
    def kept_bytes(self) -> int:
        return self.matched_bytes - self.cut_bytes


def _spool_logs(
    spool: IO[bytes],
    *,
    journal: JournalSource | None,
    log_file: Path | None,
    start: datetime | None,
    stop: datetime | None,
) -> _Logs:
    """Write the window's log lines to ``spool``; describe what was read."""
    if journal is not None:
        logs = _Logs("journal", journal.description)
        lines: Iterable[bytes] = _journal_lines(journal, start, stop, logs.notes)
    elif log_file is not None:
        paths = log_files(log_file)
        logs = _Logs("file", str(log_file), files=[str(path) for path in paths])
        if not paths:
            logs.notes.append(f"log file {log_file} does not exist")
        lines = _window_lines(_file_lines(paths, logs.notes), start, stop)
    else:
        logs = _Logs("none", "none")
        logs.notes.append(
            "no log source: not running under journald (or systemd-python is not installed)"
            " and no log file given"
        )
        lines = ()
    if start is not None and stop is not None and start > stop:
        logs.notes.append("the window is empty: start is after stop")
    for line in lines:
        spool.write(line)
        logs.matched_bytes += len(line)
    return logs


def _keep_newest(spool: IO[bytes], size: int, budget: int) -> int:
    """Where the kept tail of ``spool`` starts: at most ``budget`` bytes, whole entries.

    The tail starts at the first line with a timestamp after the cut, so an entry is never
    kept without its first line; failing one, at the first whole line.
    """
    if size <= budget:
        return 0
    cut = size - budget
    spool.seek(cut - 1)
    if spool.read(1) != b"\n":
        spool.readline()  # the rest of the line the cut falls in
    first_line = position = spool.tell()
    clock = _LogClock()
    while position < size:
        line = spool.readline()
        if clock(line) is not None:
            return position
        position += len(line)
    return first_line


def _logs_header(
    logs: _Logs,
    *,
    charge_point_id: str,
    created: datetime,
    start: datetime | None,
    stop: datetime | None,
    max_log_bytes: int,
) -> bytes:
    offset = datetime.now().astimezone().strftime("%z")
    window_start = iso(start) if start is not None else "the beginning"
    window_stop = iso(stop) if stop is not None else "now"
    lines = [
        f"# cpagent {cpagent.__version__} diagnostics for {charge_point_id},"
        f" created {iso(created)}",
        f"# logs from: {logs.source}",
    ]
    if logs.files:
        lines.append(f"# log files, oldest first: {', '.join(logs.files)}")
    lines.append(
        f"# window: {window_start} to {window_stop}; log times are local time (UTC{offset})"
    )
    if logs.cut_bytes:
        lines.append(
            f"# cut: the oldest {logs.cut_bytes} of {logs.matched_bytes} bytes of log lines"
            f" in the window were left out to stay within {max_log_bytes} bytes;"
            " the newest are kept"
        )
    lines.extend(f"# note: {note}" for note in logs.notes)
    return ("\n".join(lines) + "\n").encode("utf-8")


class _Concat:
    """``head`` then the rest of ``tail``: one tar member without copying the spool again."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = head
        self._tail = tail

    def read(self, size: int = -1) -> bytes:
        # tarfile takes a short read for the end of the data: always fill ``size``.
        if not self._head:
            return self._tail.read(size)
        chunk = self._head if size < 0 else self._head[:size]
        self._head = self._head[len(chunk) :]
        rest = -1 if size < 0 else size - len(chunk)
        return chunk + self._tail.read(rest) if rest != 0 else chunk


# -- config and store ------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(?i)password|secret|key|token")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_ASSIGNMENT = re.compile(
    rf"(?m)(?:^[ \t]*(?P<comment>#+[ \t]*)?|(?P<inline>[{{,])[ \t]*)"
    rf"(?P<key>{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*)[ \t]*=[ \t]*"
)
_BARE_VALUE = re.compile(r"[^,}\]#\n]*")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:\"']*):[^\s/?#@\"']+@")


def _string_end(text: str, pos: int, limit: int) -> int:
    """End of the TOML string starting at ``pos`` (a quote), or ``limit`` if it is open."""
    for triple in ('"""', "'''"):
        if text.startswith(triple, pos):
            end = text.find(triple, pos + 3, limit)
            if end < 0:
                return limit
            end += 3
            while end < limit and text[end] == triple[0]:  # """a"""" ends with a quote
                end += 1
            return end
    quote = text[pos]
    i = pos + 1
    while i < limit and text[i] not in (quote, "\n"):
        i += 2 if quote == '"' and text[i] == "\\" else 1
    return i + 1 if i < limit and text[i] == quote else min(i, limit)


def _value_end(text: str, pos: int, limit: int) -> int:
    """End of the TOML value starting at ``pos``, not past ``limit``."""
    char = text[pos : pos + 1]
    if char in ('"', "'"):
        return _string_end(text, pos, limit)
    if char in ("[", "{"):
        depth = 0
        i = pos
        while i < limit:
            char = text[i]
            if char in "\"'":
                i = _string_end(text, i, limit)
                continue
            if char == "#":
                newline = text.find("\n", i, limit)
                i = limit if newline < 0 else newline
                continue
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return limit
    match = _BARE_VALUE.match(text, pos, limit)
    assert match is not None  # the pattern matches the empty string
    return pos + len(match.group().rstrip())


def redact_config(text: str) -> str:
    """``text`` (a TOML config) with its secrets replaced by ``"***"``, layout kept.

    A value is secret when its key (any part of a dotted key) contains ``password``,
    ``secret``, ``key`` or ``token`` in any case: ``csms.password``, ``AuthorizationKey``,
    ``api_token``. That holds in inline tables, for multi-line strings and arrays, and in
    commented-out lines (``# password = "..."``), where the value ends with the line.
    Credentials in URLs anywhere, comments included, lose their password:
    ``ws://user:pass@host`` becomes ``ws://user:***@host``. Comments and everything else are
    kept as they are. It errs on the side of redacting: text that merely looks like a secret
    assignment is redacted too.
    """
    pieces: list[str] = []
    done = 0
    for match in _ASSIGNMENT.finditer(text):
        if match.start() < done or not _SECRET_NAME.search(match.group("key")):
            continue
        value_start = match.end()
        line_end = text.find("\n", value_start)
        line_end = len(text) if line_end < 0 else line_end
        # Only a real assignment at the start of a line can span lines; inline tables are one
        # line in TOML and a comment ends with its line.
        single_line = match.group("comment") is not None or match.group("inline") is not None
        limit = line_end if single_line else len(text)
        value_end = _value_end(text, value_start, limit)
        if value_end == value_start:
            continue  # "key =" with nothing after it: nothing to hide
        pieces.append(text[done:value_start])
        pieces.append(REDACTED)
        done = value_end
    pieces.append(text[done:])
    return _URL_CREDENTIALS.sub(r"\1:***@", "".join(pieces))


def _redact_summary(value: object) -> object:
    """The store summary with secret-named leaf values (``AuthorizationKey``) hidden."""
    if isinstance(value, Mapping):
        return {
            key: "***"
            if _SECRET_NAME.search(str(key)) and not isinstance(item, Mapping | list | tuple)
            else _redact_summary(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_summary(item) for item in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\1:***@", value)
    return value


# -- the archive -----------------------------------------------------------------------------


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _add_member(
    tar: tarfile.TarFile, name: str, data: bytes | _Concat, size: int, mtime: datetime
) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime.timestamp())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data) if isinstance(data, bytes) else data)


def archive_name(charge_point_id: str, now: datetime, kind: str = "diagnostics") -> str:
    """``<id>-<kind>-<UTC yyyymmddThhmmssZ>.tar.gz``; unsafe id characters become ``_``."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{_FILENAME_UNSAFE.sub('_', charge_point_id)}-{kind}-{stamp}.tar.gz"


SECURITY_LOG_MEMBER = "security-log.txt"
SECURITY_ARCHIVE_KIND = "securitylog"


def build_security_archive(
    dest_dir: Path,
    *,
    charge_point_id: str,
    lines: Iterable[str],
    start: datetime | None,
    stop: datetime | None,
    now: datetime,
) -> Path:
    """Write the security log archive (GetLog SecurityLog) into ``dest_dir``: the security
    events of the window, one per line, and a manifest. Atomic like :func:`build_archive`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / archive_name(charge_point_id, now, SECURITY_ARCHIVE_KIND)
    text = "".join(f"{line}\n" for line in lines).encode("utf-8")
    manifest = _json_bytes(
        {
            "charge_point_id": charge_point_id,
            "created": iso(now),
            "cpagent_version": cpagent.__version__,
            "window": {
                "start": iso(start) if start is not None else None,
                "stop": iso(stop) if stop is not None else None,
            },
            "members": {SECURITY_LOG_MEMBER: len(text)},
        }
    )
    _write_archive(
        final,
        [(SECURITY_LOG_MEMBER, text, len(text)), (MANIFEST_MEMBER, manifest, len(manifest))],
        now,
    )
    return final


def _write_archive(
    final: Path, members: list[tuple[str, bytes | _Concat, int]], mtime: datetime
) -> None:
    """Write a ``.tar.gz`` of ``members`` (name, data, size) at ``final`` atomically: into
    a temporary file beside it, fsynced, renamed; nothing is left behind on failure."""
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with tarfile.open(fileobj=out, mode="w:gz") as tar:
                for name, data, size in members:
                    _add_member(tar, name, data, size, mtime)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def build_archive(
    dest_dir: Path,
    *,
    charge_point_id: str,
    config_text: str | None,
    store_summary: Mapping[str, object],
    log_file: Path | None,
    start: datetime | None,
    stop: datetime | None,
    now: datetime | None = None,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    journal: JournalSource | None = None,
) -> Path:
    """Write the diagnostics archive into ``dest_dir`` (created if missing); return its path.

    ``config_text`` is the config file's text as read (``None``: the config was not read from
    a file); it is redacted here. ``start``/``stop`` bound the log window (GetDiagnostics's
    startTime/stopTime; ``None`` is open; naive means UTC). ``journal`` is read instead of
    ``log_file`` when given: pass :func:`journal_source`'s result. ``now`` defaults to the
    current time and names the archive. An archive of the same name is replaced.

    ``store_summary`` is written as ``store.json``; values under secret-looking keys are
    hidden. The agent is expected to pass (from its :class:`~cpagent.store.Store`)::

        {
            "db_path": str(store.path),
            "db_bytes": <size of store.path plus its -wal file>,
            "queue_depth": store.queue_depth(),
            "failed_count": store.failed_count(),
            "open_transactions": [dataclasses.asdict(tx) for tx in store.open_transactions()],
            "recovered_from": str(store.recovered_from) if store.recovered_from else None,
        }

    and may add more (anything ``json`` can write; other objects are written with ``str``).

    Raises :class:`OSError` when the archive cannot be written (nothing is left behind then);
    a log source that cannot be read is a note in ``logs.txt``, not an error.
    """
    if max_log_bytes < 0:
        raise ValueError("max_log_bytes must be >= 0")
    created = _aware(now) or utcnow()
    start, stop = _aware(start), _aware(stop)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / archive_name(charge_point_id, created)

    config_bytes = (
        redact_config(config_text)
        if config_text is not None
        else "# no config file: the configuration was not read from a file\n"
    ).encode("utf-8")
    store_bytes = _json_bytes(_redact_summary(store_summary))

    # The spool lives next to the archive: /tmp may be a RAM disk on a charge point.
    with tempfile.TemporaryFile(dir=dest_dir) as spool:
        logs = _spool_logs(spool, journal=journal, log_file=log_file, start=start, stop=stop)
        keep_from = _keep_newest(spool, logs.matched_bytes, max_log_bytes)
        logs.cut_bytes = keep_from
        header = _logs_header(
            logs,
            charge_point_id=charge_point_id,
            created=created,
            start=start,
            stop=stop,
            max_log_bytes=max_log_bytes,
        )
        spool.seek(keep_from)
        sizes = {
            LOGS_MEMBER: len(header) + logs.kept_bytes,
            CONFIG_MEMBER: len(config_bytes),
            STORE_MEMBER: len(store_bytes),
        }
        manifest = {
            "charge_point_id": charge_point_id,
            "created": iso(created),
            "cpagent_version": cpagent.__version__,
            "window": {
                "start": iso(start) if start is not None else None,
                "stop": iso(stop) if stop is not None else None,
            },
            "sources": {
                "logs": {
                    "kind": logs.kind,
                    "source": logs.source,
                    "files": logs.files,
                    "matched_bytes": logs.matched_bytes,
                    "kept_bytes": logs.kept_bytes,
                    "cut_bytes": logs.cut_bytes,
                    "notes": logs.notes,
                },
                "config": "config file, secrets redacted" if config_text is not None else None,
                "store": "summary from the agent",
            },
            "members": sizes,
        }
        manifest_bytes = _json_bytes(manifest)
        _write_archive(
            final,
            [
                (LOGS_MEMBER, _Concat(header, spool), sizes[LOGS_MEMBER]),
                (CONFIG_MEMBER, config_bytes, len(config_bytes)),
                (STORE_MEMBER, store_bytes, len(store_bytes)),
                (MANIFEST_MEMBER, manifest_bytes, len(manifest_bytes)),
            ],
            created,
        )
    log.info(
        "diagnostics: wrote %s (%d bytes of logs from %s%s)",
        final,
        logs.kept_bytes,
        logs.source,
        f", {logs.cut_bytes} older bytes cut" if logs.cut_bytes else "",
    )
    return final
