"""The GetDiagnostics archive: log window and size cap, redaction, manifest, journald source."""

from __future__ import annotations

import gzip
import json
import os
import sys
import tarfile
import types
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import cpagent
from cpagent.diagnostics import (
    JournaldSource,
    build_archive,
    journal_source,
    log_files,
    redact_config,
)

BASE = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
ARCHIVE = "CP001-diagnostics-20260304T050607Z.tar.gz"
MEMBERS = ["logs.txt", "config.toml", "store.json", "manifest.json"]
TRACEBACK = [
    "Traceback (most recent call last):\n",
    '  File "agent.py", line 1, in run\n',
    "ValueError: boom\n",
]
CONFIG = '[csms]\nurl = "ws://cp:pw@h/ocpp"\npassword = "hunter2"\n'
SUMMARY: dict[str, object] = {"queue_depth": 3, "failed_count": 1, "open_transactions": []}


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def log_line(minute: int, level: str = "INFO") -> str:
    """A line as the runner's formatter writes it (local time) whose message is ``mNN``."""
    local = at(minute).astimezone()
    stamp = local.strftime("%Y-%m-%d %H:%M:%S") + f",{local.microsecond // 1000:03d}"
    return f"{stamp} {level:<7} cpagent.agent: m{minute:02d}\n"


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """cpagent.log.2 holds minutes 0-9, .1 minutes 10-19 (a traceback after 15), the log 20-29."""
    logs = tmp_path / "log"
    logs.mkdir()
    path = logs / "cpagent.log"
    for name, minutes in (("cpagent.log.2", range(10)), ("cpagent.log.1", range(10, 20))):
        lines = []
        for minute in minutes:
            lines.append(log_line(minute, "ERROR" if minute == 15 else "INFO"))
            if minute == 15:
                lines.extend(TRACEBACK)
        (logs / name).write_text("".join(lines))
    path.write_text("".join(log_line(minute) for minute in range(20, 30)))
    return path


def build(tmp_path: Path, **overrides: Any) -> Path:
    kwargs: dict[str, Any] = {
        "charge_point_id": "CP001",
        "config_text": CONFIG,
        "store_summary": SUMMARY,
        "log_file": None,
        "start": None,
        "stop": None,
        "now": NOW,
    }
    kwargs.update(overrides)
    return build_archive(tmp_path / "out", **kwargs)


def members(archive: Path) -> dict[str, str]:
    with tarfile.open(archive, "r:gz") as tar:
        result: dict[str, str] = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            result[member.name] = extracted.read().decode("utf-8")
        return result


def header(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if line.startswith("#")]


def body(logs: str) -> list[str]:
    """The log lines of logs.txt, a timestamped line shortened to its message."""
    result = []
    for line in logs.splitlines():
        if line.startswith("#"):
            continue
        result.append(line.split(": ", 1)[1] if line[:4].isdigit() else line)
    return result


def minutes(first: int, last: int) -> list[str]:
    """The body lines of minutes first..last, the traceback after 15."""
    result = []
    for minute in range(first, last + 1):
        result.append(f"m{minute:02d}")
        if minute == 15:
            result.extend(line.rstrip("\n") for line in TRACEBACK)
    return result


# -- the archive -----------------------------------------------------------------------------


def test_archive_is_named_after_the_charge_point_and_leaves_no_temp_file(
    tmp_path: Path, log_file: Path
) -> None:
    archive = build(tmp_path, log_file=log_file)

    assert archive == tmp_path / "out" / ARCHIVE
    assert os.listdir(tmp_path / "out") == [ARCHIVE]
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getnames() == MEMBERS


def test_unsafe_charge_point_id_characters_are_replaced_in_the_name(tmp_path: Path) -> None:
    archive = build(tmp_path, charge_point_id="CP:01*x")
    assert archive.name == "CP_01_x-diagnostics-20260304T050607Z.tar.gz"


def test_a_failure_while_building_leaves_nothing_behind(tmp_path: Path) -> None:
    class BrokenJournal:
        description = "broken"

        def lines(self, start: datetime | None, stop: datetime | None) -> Iterator[str]:
            yield log_line(1)
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        build(tmp_path, journal=BrokenJournal())
    assert os.listdir(tmp_path / "out") == []


def test_manifest_describes_the_archive(tmp_path: Path, log_file: Path) -> None:
    archive = build(tmp_path, log_file=log_file, start=at(20), stop=at(22))
    content = members(archive)
    manifest = json.loads(content["manifest.json"])

    assert manifest["charge_point_id"] == "CP001"
    assert manifest["created"] == "2026-03-04T05:06:07.890Z"
    assert manifest["cpagent_version"] == cpagent.__version__
    assert manifest["window"] == {
        "start": "2026-03-01T10:20:00.000Z",
        "stop": "2026-03-01T10:22:00.000Z",
    }
    logs = manifest["sources"]["logs"]
    assert logs["kind"] == "file"
    assert logs["source"] == str(log_file)
    assert logs["files"] == [f"{log_file}.2", f"{log_file}.1", str(log_file)]
    assert logs["cut_bytes"] == 0
    assert logs["notes"] == []
    expected_bytes = sum(len(log_line(minute)) for minute in (20, 21, 22))
    assert logs["matched_bytes"] == logs["kept_bytes"] == expected_bytes
    assert manifest["sources"]["config"] == "config file, secrets redacted"
    assert manifest["members"] == {
        name: len(content[name].encode("utf-8")) for name in MEMBERS[:-1]
    }


def test_store_summary_is_pretty_json_without_secrets(tmp_path: Path) -> None:
    summary = {
        "queue_depth": 2,
        "db_path": Path("/var/lib/cpagent/cpagent.db"),
        "config_keys": {"AuthorizationKey": "0011", "HeartbeatInterval": "300"},
    }
    store_json = members(build(tmp_path, store_summary=summary))["store.json"]

    assert json.loads(store_json) == {
        "queue_depth": 2,
        "db_path": "/var/lib/cpagent/cpagent.db",
        "config_keys": {"AuthorizationKey": "***", "HeartbeatInterval": "300"},
    }
    assert store_json.startswith('{\n  "queue_depth": 2,')


def test_config_is_redacted_in_the_archive(tmp_path: Path) -> None:
    config = members(build(tmp_path))["config.toml"]
    assert config == '[csms]\nurl = "ws://cp:***@h/ocpp"\npassword = "***"\n'


def test_no_config_file_is_said_so(tmp_path: Path) -> None:
    archive = build(tmp_path, config_text=None)
    content = members(archive)
    assert content["config.toml"] == (
        "# no config file: the configuration was not read from a file\n"
    )
    assert json.loads(content["manifest.json"])["sources"]["config"] is None


# -- log window ------------------------------------------------------------------------------


def test_rotated_files_are_read_oldest_first(tmp_path: Path, log_file: Path) -> None:
    logs = members(build(tmp_path, log_file=log_file))["logs.txt"]

    assert body(logs) == minutes(0, 29)
    assert f"# log files, oldest first: {log_file}.2, {log_file}.1, {log_file}" in header(logs)


def test_log_files_lists_rotations_oldest_first_including_gz(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    for name in ("a.log", "a.log.1", "a.log.2", "a.log.10.gz", "a.log.old", "b.log.1"):
        (tmp_path / name).write_text("")
    assert log_files(path) == [
        tmp_path / name for name in ("a.log.10.gz", "a.log.2", "a.log.1")
    ] + [path]
    assert log_files(tmp_path / "missing.log") == []


def test_gzipped_rotation_is_read(tmp_path: Path, log_file: Path) -> None:
    with gzip.open(log_file.parent / "cpagent.log.3.gz", "wt") as older:
        older.write(log_line(-5) + "continued\n")
    logs = members(build(tmp_path, log_file=log_file, stop=at(1)))["logs.txt"]
    assert body(logs) == ["m-5", "continued", "m00", "m01"]


def test_window_keeps_entries_from_start_to_stop_inclusive(tmp_path: Path, log_file: Path) -> None:
    logs = members(build(tmp_path, log_file=log_file, start=at(5), stop=at(24)))["logs.txt"]

    assert body(logs) == minutes(5, 24)
    assert "# window: 2026-03-01T10:05:00.000Z to 2026-03-01T10:24:00.000Z;" in logs


def test_open_window_sides(tmp_path: Path, log_file: Path) -> None:
    until = members(build(tmp_path / "a", log_file=log_file, stop=at(3)))["logs.txt"]
    since = members(build(tmp_path / "b", log_file=log_file, start=at(27)))["logs.txt"]

    assert body(until) == minutes(0, 3)
    assert "# window: the beginning to 2026-03-01T10:03:00.000Z;" in until
    assert body(since) == minutes(27, 29)
    assert "# window: 2026-03-01T10:27:00.000Z to now;" in since


def test_multi_line_entry_is_kept_and_dropped_with_its_line(tmp_path: Path, log_file: Path) -> None:
    only = members(build(tmp_path / "a", log_file=log_file, start=at(15), stop=at(15)))
    after = members(build(tmp_path / "b", log_file=log_file, start=at(16), stop=at(17)))

    assert body(only["logs.txt"]) == minutes(15, 15)
    assert "ERROR   cpagent.agent: m15" in only["logs.txt"]
    assert body(after["logs.txt"]) == ["m16", "m17"]


def test_no_window_keeps_everything_even_lines_before_the_first_timestamp(
    tmp_path: Path, log_file: Path
) -> None:
    oldest = log_file.parent / "cpagent.log.2"
    oldest.write_text("orphan continuation\n" + oldest.read_text())

    everything = members(build(tmp_path / "a", log_file=log_file))["logs.txt"]
    windowed = members(build(tmp_path / "b", log_file=log_file, start=at(0)))["logs.txt"]

    assert body(everything) == ["orphan continuation", *minutes(0, 29)]
    assert body(windowed) == minutes(0, 29)


def test_a_last_line_without_newline_does_not_join_the_next_file(tmp_path: Path) -> None:
    path = tmp_path / "cpagent.log"
    (tmp_path / "cpagent.log.1").write_text(log_line(0).rstrip("\n"))
    path.write_text(log_line(1))
    assert body(members(build(tmp_path, log_file=path))["logs.txt"]) == ["m00", "m01"]


def test_empty_window_is_noted(tmp_path: Path, log_file: Path) -> None:
    logs = members(build(tmp_path, log_file=log_file, start=at(9), stop=at(1)))["logs.txt"]
    assert body(logs) == []
    assert "# note: the window is empty: start is after stop" in header(logs)


def test_naive_window_bounds_are_utc(tmp_path: Path, log_file: Path) -> None:
    naive_start = at(28).replace(tzinfo=None)
    logs = members(build(tmp_path, log_file=log_file, start=naive_start))["logs.txt"]
    assert body(logs) == ["m28", "m29"]


# -- size cap --------------------------------------------------------------------------------


def test_size_cap_keeps_the_newest_whole_entries_and_says_so(
    tmp_path: Path, log_file: Path
) -> None:
    # The budget ends inside the traceback: the tail starts at the next whole entry (m16).
    budget = len("".join(TRACEBACK[1:])) + sum(len(log_line(m)) for m in range(16, 30))
    content = members(build(tmp_path, log_file=log_file, max_log_bytes=budget))
    logs = content["logs.txt"]
    manifest = json.loads(content["manifest.json"])["sources"]["logs"]

    assert body(logs) == minutes(16, 29)
    kept = "".join(line + "\n" for line in logs.splitlines() if not line.startswith("#"))
    assert len(kept.encode()) <= budget
    assert manifest["kept_bytes"] == len(kept.encode())
    assert manifest["cut_bytes"] == manifest["matched_bytes"] - manifest["kept_bytes"] > 0
    cut = [line for line in header(logs) if line.startswith("# cut:")]
    assert cut == [
        f"# cut: the oldest {manifest['cut_bytes']} of {manifest['matched_bytes']} bytes of log"
        f" lines in the window were left out to stay within {budget} bytes; the newest are kept"
    ]


def test_size_cap_falling_inside_a_line_drops_that_line(tmp_path: Path, log_file: Path) -> None:
    budget = sum(len(log_line(m)) for m in range(27, 30)) + 5
    logs = members(build(tmp_path, log_file=log_file, max_log_bytes=budget))["logs.txt"]
    assert body(logs) == ["m27", "m28", "m29"]


def test_within_the_cap_nothing_is_cut(tmp_path: Path, log_file: Path) -> None:
    logs = members(build(tmp_path, log_file=log_file, stop=at(2), max_log_bytes=10_000))
    assert body(logs["logs.txt"]) == minutes(0, 2)
    assert not any(line.startswith("# cut:") for line in header(logs["logs.txt"]))


# -- log sources -----------------------------------------------------------------------------


class FakeJournal:
    description = "journald (fake)"

    def __init__(self, lines: list[str], error: OSError | None = None) -> None:
        self._lines = lines
        self._error = error
        self.calls: list[tuple[datetime | None, datetime | None]] = []

    def lines(self, start: datetime | None, stop: datetime | None) -> Iterator[str]:
        self.calls.append((start, stop))
        yield from self._lines
        if self._error is not None:
            raise self._error


def test_journal_is_used_instead_of_the_log_file(tmp_path: Path, log_file: Path) -> None:
    journal = FakeJournal([log_line(40), "  continued", log_line(41).rstrip("\n")])
    content = members(
        build(tmp_path, log_file=log_file, journal=journal, start=at(40), stop=at(50))
    )
    logs = content["logs.txt"]

    assert journal.calls == [(at(40), at(50))]
    assert body(logs) == ["m40", "  continued", "m41"]
    assert "# logs from: journald (fake)" in header(logs)
    sources = json.loads(content["manifest.json"])["sources"]["logs"]
    assert sources["kind"] == "journal"
    assert sources["files"] == []


def test_journal_read_error_keeps_what_was_read_and_is_noted(tmp_path: Path) -> None:
    journal = FakeJournal([log_line(1)], error=PermissionError(13, "Permission denied"))
    logs = members(build(tmp_path, journal=journal))["logs.txt"]

    assert body(logs) == ["m01"]
    assert "# note: reading journald (fake) stopped: [Errno 13] Permission denied" in logs


def test_no_log_source_is_a_clear_note(tmp_path: Path) -> None:
    content = members(build(tmp_path))
    logs = content["logs.txt"]

    assert body(logs) == []
    assert "# logs from: none" in header(logs)
    assert any(line.startswith("# note: no log source:") for line in header(logs))
    assert json.loads(content["manifest.json"])["sources"]["logs"]["kind"] == "none"


def test_missing_log_file_is_noted(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "cpagent.log"
    logs = members(build(tmp_path, log_file=missing))["logs.txt"]
    assert f"# note: log file {missing} does not exist" in header(logs)
    assert body(logs) == []


# -- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ('password = "hunter2"', 'password = "***"'),
        ("AuthorizationKey = '0011223344'", 'AuthorizationKey = "***"'),
        ('api_token="abc" # the API token', 'api_token="***" # the API token'),
        ('"client_secret" = "x"', '"client_secret" = "***"'),
        ('csms.password = "x"', 'csms.password = "***"'),
        ("PrivateKeyBits = 2048", 'PrivateKeyBits = "***"'),
        ('  # password = "old one"', '  # password = "***"'),
        ('auth = { user = "u", token = "t" }', 'auth = { user = "u", token = "***" }'),
        (
            'url = "wss://cp1:s3cr3t@csms.example.com/ocpp"',
            'url = "wss://cp1:***@csms.example.com/ocpp"',
        ),
        ("# was ws://me:pw@10.0.0.1:9000", "# was ws://me:***@10.0.0.1:9000"),
        ('url = "ws://host:9000/ocpp"', 'url = "ws://host:9000/ocpp"'),
        ('escaped_key = "a\\"b" # c', 'escaped_key = "***" # c'),
        ("HeartbeatInterval = 300", "HeartbeatInterval = 300"),
        ('id = "CP001"', 'id = "CP001"'),
        ("password =", "password ="),
    ],
)
def test_redact_config_line(line: str, redacted: str) -> None:
    assert redact_config(line) == redacted


def test_redact_config_keeps_layout_and_handles_multi_line_values() -> None:
    text = (
        "# cpagent config\n"
        "\n"
        "[csms]\n"
        'url = "ws://cp:pw@csms/ocpp"   # where\n'
        'password = "hunter2"            # basic auth\n'
        "\n"
        "[ocpp16]\n"
        'AuthorizationKey = "00112233"\n'
        'signing_key = """\n'
        "-----BEGIN KEY-----\n"
        "abc\n"
        '-----END KEY-----"""\n'
        "token_list = [\n"
        '  "a",  # first ] not the end\n'
        '  "b",\n'
        "]\n"
        "HeartbeatInterval = 300\n"
    )
    assert redact_config(text) == (
        "# cpagent config\n"
        "\n"
        "[csms]\n"
        'url = "ws://cp:***@csms/ocpp"   # where\n'
        'password = "***"            # basic auth\n'
        "\n"
        "[ocpp16]\n"
        'AuthorizationKey = "***"\n'
        'signing_key = "***"\n'
        'token_list = "***"\n'
        "HeartbeatInterval = 300\n"
    )


def test_a_commented_out_multi_line_opener_does_not_swallow_the_file() -> None:
    text = '# secret = """\nHeartbeatInterval = 300\n'
    assert redact_config(text) == '# secret = "***"\nHeartbeatInterval = 300\n'


# -- journald --------------------------------------------------------------------------------


class FakeReader:
    """Enough of systemd.journal.Reader: matches, seek_realtime, iteration, close."""

    instances: list[FakeReader] = []
    entries: list[dict[str, object]] = []

    def __init__(self) -> None:
        self.matches: list[object] = []
        self.seek: float | None = None
        self.closed = False
        FakeReader.instances.append(self)

    def add_match(self, **match: str) -> None:
        self.matches.append(match)

    def add_disjunction(self) -> None:
        self.matches.append("or")

    def seek_realtime(self, when: float) -> None:
        self.seek = when

    def __iter__(self) -> Iterator[Mapping[str, object]]:
        return iter(self.entries)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_systemd(monkeypatch: pytest.MonkeyPatch) -> type[FakeReader]:
    package = types.ModuleType("systemd")
    module = types.ModuleType("systemd.journal")
    module.Reader = FakeReader  # type: ignore[attr-defined]
    package.journal = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "systemd", package)
    monkeypatch.setitem(sys.modules, "systemd.journal", module)
    FakeReader.instances = []
    FakeReader.entries = []
    return FakeReader


def test_journal_source_needs_systemd_and_the_module(
    monkeypatch: pytest.MonkeyPatch, fake_systemd: type[FakeReader]
) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert journal_source() is None

    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    assert isinstance(journal_source(), JournaldSource)

    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails
    assert journal_source() is None


def test_journald_source_filters_on_the_unit_and_formats_like_the_log_file(
    fake_systemd: type[FakeReader],
) -> None:
    agent_line = log_line(5).rstrip("\n")
    fake_systemd.entries = [
        {"__REALTIME_TIMESTAMP": at(4), "_TRANSPORT": "stdout", "MESSAGE": "too early"},
        {"__REALTIME_TIMESTAMP": at(5), "_TRANSPORT": "stdout", "MESSAGE": agent_line},
        {"__REALTIME_TIMESTAMP": at(5), "_TRANSPORT": "stdout", "MESSAGE": "  traceback"},
        {
            # python-systemd converts the timestamp to a naive local datetime
            "__REALTIME_TIMESTAMP": at(6).astimezone().replace(tzinfo=None),
            "_TRANSPORT": "journal",
            "PRIORITY": 4,
            "SYSLOG_IDENTIFIER": "systemd",
            "MESSAGE": b"cpagent.service: restarting\nsecond line",
        },
        {"__REALTIME_TIMESTAMP": at(9), "_TRANSPORT": "stdout", "MESSAGE": "too late"},
    ]
    source = JournaldSource()

    lines = list(source.lines(at(5), at(8)))

    warning = log_line(6, "WARNING").replace("cpagent.agent: m06\n", "systemd: ")
    assert lines == [
        agent_line,
        "  traceback",
        warning + "cpagent.service: restarting",
        "second line",
    ]
    (reader,) = fake_systemd.instances
    assert reader.matches == [
        {"_SYSTEMD_UNIT": "cpagent.service"},
        "or",
        {"SYSLOG_IDENTIFIER": "cpagent"},
        "or",
        {"UNIT": "cpagent.service"},
    ]
    assert reader.seek == at(5).timestamp()
    assert reader.closed
    assert source.description.startswith("journald (_SYSTEMD_UNIT=cpagent.service")
