"""The SQLite store: durability, locking, atomicity of money-bearing writes, migrations."""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cpagent import store as store_module
from cpagent.exc import AlreadyRunningError, StoreError, StoreFullError
from cpagent.store import (
    QUICK_REMOVALS_PER_CHECKPOINT,
    WAL_AUTOCHECKPOINT,
    AuthCacheRow,
    DeviceVariableKey,
    OutboxRow,
    Store,
    _migrate_v1,
    _migrate_v2,
)

T0 = "2026-01-01T10:00:00.000Z"
T1 = "2026-01-01T10:15:00.000Z"
T2 = "2026-01-01T10:30:00.000Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    s.open()
    yield s
    s.close()


FIXED_NOW = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
STAMP = "20260304T050607Z"


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "utcnow", lambda: FIXED_NOW)


def _quick_check(db: Path) -> list[str]:
    """What ``PRAGMA quick_check`` reports for ``db``, an exception counting as a report."""
    conn = sqlite3.connect(db)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [f"raised: {exc}"]
    finally:
        conn.close()


def _corrupt_sound_database(data_dir: Path) -> bytes:
    """Fill a real store, then overwrite a page in the middle of its file with garbage.

    Returns the damaged file's bytes.
    """
    s = Store(data_dir)
    s.open()
    for i in range(300):
        s.enqueue("MeterValues", {"i": i, "pad": "x" * 400})
    s.close()
    db = data_dir / "cpagent.db"
    assert not (data_dir / "cpagent.db-wal").exists()  # all checkpointed into the file
    assert _quick_check(db) == ["ok"]
    page_size = 4096
    pages = db.stat().st_size // page_size
    assert pages > 20
    with db.open("r+b") as f:
        f.seek((pages // 2) * page_size)
        f.write(b"\xa5" * page_size)
    return db.read_bytes()


def _fail_outbox_inserts(db: Path) -> None:
    """Make every outbox INSERT hit a constraint error, from a second connection."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox"
            " BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
        )
        conn.commit()
    finally:
        conn.close()


# -- lifecycle -------------------------------------------------------------------------


def test_open_creates_data_dir_and_sets_pragmas(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    s = Store(data_dir)
    s.open()
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o750
        assert s.path == data_dir / "cpagent.db"
        assert s.path.exists()
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION
    finally:
        s.close()


def test_schema_version_is_positive_and_persisted(tmp_path: Path) -> None:
    assert Store.SCHEMA_VERSION >= 1
    s = Store(tmp_path)
    s.open()
    s.close()
    conn = sqlite3.connect(tmp_path / "cpagent.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "cpagent.db")
    conn.execute(f"PRAGMA user_version = {Store.SCHEMA_VERSION + 1}")
    conn.close()
    s = Store(tmp_path)
    expected = (
        f"database schema v{Store.SCHEMA_VERSION + 1} is newer than this cpagent"
        f" supports (v{Store.SCHEMA_VERSION})"
    )
    with pytest.raises(StoreError) as info:
        s.open()
    assert expected in str(info.value)
    assert not isinstance(info.value, AlreadyRunningError)
    # The failed open released the lock: another attempt fails on the schema again.
    with pytest.raises(StoreError) as again:
        Store(tmp_path).open()
    assert not isinstance(again.value, AlreadyRunningError)


def test_newer_schema_is_not_moved_aside(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "cpagent.db")
    conn.execute("CREATE TABLE precious (x)")
    conn.execute("INSERT INTO precious VALUES (1)")
    conn.execute(f"PRAGMA user_version = {Store.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    s = Store(tmp_path)
    with pytest.raises(StoreError, match="newer"):
        s.open()
    assert s.recovered_from is None
    assert list(tmp_path.glob("*corrupt*")) == []
    conn = sqlite3.connect(tmp_path / "cpagent.db")
    try:
        assert conn.execute("SELECT x FROM precious").fetchall() == [(1,)]
    finally:
        conn.close()


@pytest.mark.usefixtures("fixed_clock")
def test_non_database_file_is_moved_aside_with_companions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = {
        "cpagent.db": b"this is not a database, just text\n" * 200,
        "cpagent.db-wal": b"wal garbage" * 100,
        "cpagent.db-shm": b"shm garbage" * 100,
    }
    for name, content in garbage.items():
        (tmp_path / name).write_bytes(content)
    s = Store(tmp_path)
    with caplog.at_level(logging.ERROR, logger="cpagent.store"):
        s.open()
    try:
        moved = tmp_path / f"cpagent.db.corrupt-{STAMP}"
        assert s.recovered_from == moved
        assert moved.read_bytes() == garbage["cpagent.db"]
        assert (tmp_path / f"cpagent.db.corrupt-{STAMP}-wal").read_bytes() == garbage[
            "cpagent.db-wal"
        ]
        # -shm is only an index of the WAL that SQLite rebuilds on any access: it moves
        # along, but its bytes are not the ones written above.
        assert (tmp_path / f"cpagent.db.corrupt-{STAMP}-shm").is_file()
        assert sorted(p.name for p in tmp_path.glob("*corrupt*")) == [
            f"cpagent.db.corrupt-{STAMP}",
            f"cpagent.db.corrupt-{STAMP}-shm",
            f"cpagent.db.corrupt-{STAMP}-wal",
        ]

        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].getMessage() == (
            f"{s.path}: database failed its integrity check: file is not a database;"
            f" moved aside to {moved}; starting with an empty store"
        )

        # a fresh, empty, fully migrated store
        assert s.queue_depth() == 0 and s.failed_count() == 0
        assert s.local_list_version() == 0
        row = s.enqueue("Heartbeat", {})
        assert s.pending() == [row]
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        s.close()

    again = Store(tmp_path)
    again.open()
    try:
        assert again.recovered_from is None
        assert again.queue_depth() == 1
    finally:
        again.close()


def test_damaged_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    damaged = _corrupt_sound_database(tmp_path)
    report = _quick_check(tmp_path / "cpagent.db")
    assert report != ["ok"]

    s = Store(tmp_path)
    with caplog.at_level(logging.ERROR, logger="cpagent.store"):
        s.open()
    try:
        assert s.recovered_from is not None
        assert s.recovered_from.parent == tmp_path
        assert re.fullmatch(r"cpagent\.db\.corrupt-\d{8}T\d{6}Z", s.recovered_from.name)
        assert s.recovered_from.read_bytes() == damaged
        assert s.queue_depth() == 0
        s.enqueue("Heartbeat", {})
        assert s.queue_depth() == 1
        (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert "database failed its integrity check: " in message
        assert str(s.recovered_from) in message
        assert "\n" not in message
    finally:
        s.close()
    assert _quick_check(tmp_path / "cpagent.db") == ["ok"]


def test_hot_rollback_journal_is_rolled_back_not_taken_for_damage(tmp_path: Path) -> None:
    s = Store(tmp_path / "source")
    s.open()
    kept = s.enqueue("Heartbeat", {})
    s.close()
    source = tmp_path / "source" / "cpagent.db"
    conn = sqlite3.connect(source, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
        conn.execute("PRAGMA cache_size=1")  # spill the open transaction to the file
        conn.execute("BEGIN")
        for i in range(500):
            conn.execute(
                "INSERT INTO outbox (message_id, action, payload, created_at)"
                " VALUES (?, 'X', '{}', ?)",
                (f"uncommitted-{i}-" + "x" * 200, T0),
            )
        # a copy taken now looks like a power cut in the middle of the write
        crashed = tmp_path / "crashed"
        crashed.mkdir()
        for end in ("", "-journal"):
            (crashed / f"cpagent.db{end}").write_bytes(Path(f"{source}{end}").read_bytes())
        conn.execute("ROLLBACK")
    finally:
        conn.close()

    again = Store(crashed)
    again.open()
    try:
        assert again.recovered_from is None
        assert again.pending() == [kept]
    finally:
        again.close()
    assert not (crashed / "cpagent.db-journal").exists()


@pytest.mark.usefixtures("fixed_clock")
def test_moving_aside_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    earlier = tmp_path / f"cpagent.db.corrupt-{STAMP}"
    earlier.write_bytes(b"earlier")
    (tmp_path / "cpagent.db").write_bytes(b"not a database\n" * 100)
    s = Store(tmp_path)
    s.open()
    s.close()
    assert s.recovered_from == tmp_path / f"cpagent.db.corrupt-{STAMP}-1"
    assert earlier.read_bytes() == b"earlier"
    assert s.recovered_from.read_bytes() == b"not a database\n" * 100


def test_failing_to_move_aside_raises_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cpagent.db").write_bytes(b"not a database\n" * 100)

    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(store_module.os, "rename", refuse)
    with pytest.raises(StoreError, match="cannot move damaged database") as info:
        Store(tmp_path).open()
    assert isinstance(info.value.__cause__, PermissionError)
    monkeypatch.undo()
    # nothing stayed locked, and the file is still there to be moved aside
    s = Store(tmp_path)
    s.open()
    s.close()
    assert s.recovered_from is not None


def test_operational_error_on_first_access_is_not_taken_for_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path)
    s.open()
    s.enqueue("Heartbeat", {})
    s.close()

    class FailingQuickCheck(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if "quick_check" in sql:
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, factory=FailingQuickCheck, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(StoreError, match="disk I/O error") as info:
        Store(tmp_path).open()
    assert not isinstance(info.value, StoreFullError)
    monkeypatch.undo()
    assert list(tmp_path.glob("*corrupt*")) == []
    again = Store(tmp_path)
    again.open()
    try:
        assert again.recovered_from is None
        assert again.queue_depth() == 1
    finally:
        again.close()


def test_database_path_that_is_a_directory_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "cpagent.db").mkdir()
    with pytest.raises(StoreError, match=r"cpagent\.db") as info:
        Store(tmp_path).open()
    assert isinstance(info.value.__cause__, OSError)
    assert (tmp_path / "cpagent.db").is_dir()
    assert list(tmp_path.glob("*corrupt*")) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_data_dir_raises_store_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "data")
    s.open()
    s.close()
    (tmp_path / "data").chmod(0)
    try:
        with pytest.raises(StoreError):
            Store(tmp_path / "data").open()
    finally:
        (tmp_path / "data").chmod(0o750)
    assert list((tmp_path / "data").glob("*corrupt*")) == []


def test_data_dir_that_is_a_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="data"):
        Store(blocker).open()


def test_second_open_in_same_process_names_pid(store: Store) -> None:
    with pytest.raises(AlreadyRunningError) as info:
        Store(store.data_dir).open()
    assert str(info.value) == f"another cpagent (pid {os.getpid()}) is using {store.data_dir}"


def test_second_open_from_other_process_names_pid(store: Store) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cpagent.exc import AlreadyRunningError\n"
        "from cpagent.store import Store\n"
        "try:\n"
        "    Store(Path(sys.argv[1])).open()\n"
        "except AlreadyRunningError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('opened')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(store.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == (
        f"another cpagent (pid {os.getpid()}) is using {store.data_dir}"
    )


def test_lock_released_after_close(tmp_path: Path) -> None:
    first = Store(tmp_path)
    first.open()
    first.close()
    second = Store(tmp_path)
    second.open()
    second.close()


def test_close_is_idempotent_and_methods_after_close_raise(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.enqueue("MeterValues", {})
    with pytest.raises(StoreError, match="closed"):
        s.pending()
    with pytest.raises(StoreError, match="closed"):
        s.get_state("x")


def test_methods_before_open_raise(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path).queue_depth()


async def test_run_executes_on_worker_thread(store: Store) -> None:
    worker = await store.run(threading.get_ident)
    assert worker != threading.get_ident()
    row = await store.run(store.enqueue, "MeterValues", {"connectorId": 1}, tx_local_id=None)
    assert row.action == "MeterValues"
    assert await store.run(store.pending) == [row]
    assert await store.run(threading.get_ident) == worker


async def test_run_after_close_raises(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.run(s.queue_depth)


async def test_close_from_worker(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    await s.run(s.close)
    with pytest.raises(StoreError):
        await s.run(s.queue_depth)
    again = Store(tmp_path)
    again.open()
    again.close()


# -- outgoing queue --------------------------------------------------------------------


def test_enqueue_pending_remove_bump_depth(store: Store) -> None:
    a = store.enqueue("StartTransaction", {"connectorId": 1, "meterStart": 0})
    b = store.enqueue("MeterValues", {"connectorId": 1}, message_id="fixed-id")
    c = store.enqueue("StopTransaction", {"meterStop": 10, "note": "é"})
    assert a.seq < b.seq < c.seq
    assert b.message_id == "fixed-id"
    assert len(a.message_id) == 36 and a.message_id != c.message_id
    assert a.attempts == 0 and a.tx_local_id is None
    assert store.queue_depth() == 3
    assert store.pending() == [a, b, c]

    assert store.bump_attempts(b.seq) == 1
    assert store.bump_attempts(b.seq) == 2
    assert store.pending()[1].attempts == 2

    store.remove(a.seq)
    store.remove(a.seq)  # already gone: no-op
    assert [r.seq for r in store.pending()] == [b.seq, c.seq]
    assert store.queue_depth() == 2

    # seq keeps growing even after the highest row is removed
    store.remove(c.seq)
    d = store.enqueue("MeterValues", {})
    assert d.seq > c.seq


def _rows_on_file(db: Path) -> list[int]:
    """The outbox seqs a second connection reads from the database file and its WAL."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        conn.close()


async def test_remove_answered_deletes_at_once_and_keeps_later_writes_synced(
    store: Store,
) -> None:
    rows = [store.enqueue("MeterValues", {"n": n}) for n in range(5)]
    for row in rows[:3]:
        await store.remove_answered(row.seq)
        # In the file (the WAL) when it returns: a kill -9 now cannot bring it back.
        assert row.seq not in _rows_on_file(store.path)
    await store.remove_answered(rows[0].seq)  # already gone: no-op
    assert [r.seq for r in store.pending()] == [r.seq for r in rows[3:]]
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL for every other write
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT
    late = store.enqueue("MeterValues", {"n": 5})
    assert _rows_on_file(store.path) == [rows[3].seq, rows[4].seq, late.seq]


async def test_remove_answered_then_close_leaves_one_checkpointed_file(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    rows = [s.enqueue("MeterValues", {"n": n}) for n in range(3)]
    for row in rows[:2]:
        await s.remove_answered(row.seq)
    s.close()
    assert not s.path.with_name(s.path.name + "-wal").exists()
    assert _rows_on_file(s.path) == [rows[2].seq]


def _rows_without_wal(db: Path, tmp_path: Path) -> list[int]:
    """The outbox seqs in the database file alone, as checkpoints left it."""
    alone = tmp_path / "alone.db"
    alone.write_bytes(db.read_bytes())
    return _rows_on_file(alone)


async def test_settle_answered_checkpoints_the_quick_deletions(
    store: Store, tmp_path: Path
) -> None:
    rows = [store.enqueue("MeterValues", {"n": n}) for n in range(5)]
    for row in rows[:3]:  # the first by the worker (checkpointing first), then quickly
        await store.remove_answered(row.seq)
    seqs = [row.seq for row in rows]
    assert _rows_without_wal(store.path, tmp_path) == seqs  # deletions only in the WAL
    await store.settle_answered()
    assert _rows_without_wal(store.path, tmp_path) == seqs[3:]
    await store.remove_answered(rows[3].seq)  # after a checkpoint: the worker's turn again
    assert store.pending() == [rows[4]]


async def test_remove_answered_keeps_the_wal_bounded(store: Store) -> None:
    page_size = store._conn.execute("PRAGMA page_size").fetchone()[0]  # type: ignore[union-attr]
    rows = [store.enqueue("MeterValues", {"n": n}) for n in range(1500)]
    for row in rows:
        await store.remove_answered(row.seq)
    assert store.queue_depth() == 0
    # Never checkpointing would leave a few pages per deletion (several thousand here).
    wal = store.path.with_name(store.path.name + "-wal").stat().st_size
    assert wal <= (WAL_AUTOCHECKPOINT + 8 * QUICK_REMOVALS_PER_CHECKPOINT) * (page_size + 24)


async def test_remove_answered_waits_for_a_busy_connection_in_the_worker(store: Store) -> None:
    row = store.enqueue("MeterValues", {})
    await store.remove_answered(store.enqueue("MeterValues", {}).seq)  # the worker's turn
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._mutex:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert store._remove_quickly(row.seq) is False  # would wait: left to the worker
        assert _rows_on_file(store.path) == [row.seq]
    finally:
        release.set()
        holder.join(10)
    await store.remove_answered(row.seq)
    assert store.queue_depth() == 0


def test_bump_attempts_unknown_seq_raises(store: Store) -> None:
    with pytest.raises(StoreError):
        store.bump_attempts(999)


def test_duplicate_message_id_raises_store_error(store: Store) -> None:
    store.enqueue("Heartbeat", {}, message_id="m1")
    with pytest.raises(StoreError):
        store.enqueue("Heartbeat", {}, message_id="m1")
    assert store.queue_depth() == 1


def test_payload_is_stored_compact(store: Store) -> None:
    store.enqueue("MeterValues", {"a": 1, "b": [1, 2]})
    conn = store._conn
    assert conn is not None
    assert conn.execute("SELECT payload FROM outbox").fetchone()[0] == '{"a":1,"b":[1,2]}'


def test_rows_survive_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    row = s.enqueue("MeterValues", {"v": 1})
    tx, _ = s.start_transaction(connector_id=1, id_tag="TAG", meter_start_wh=5, started_at=T0)
    s.set_config_key("HeartbeatInterval", "300")
    s.set_state("connector.1.availability", "Inoperative")
    s.cache_put(AuthCacheRow("TAG", "Accepted", None, None))
    s.close()

    again = Store(tmp_path)
    again.open()
    try:
        assert again.pending() == [row]
        assert again.open_transactions() == [tx]
        assert again.config_keys() == {"HeartbeatInterval": "300"}
        assert again.get_state("connector.1.availability") == "Inoperative"
        assert again.cache_get("TAG") == AuthCacheRow("TAG", "Accepted", None, None)
    finally:
        again.close()


def test_outbox_row_new_fields_default_to_none() -> None:
    row = OutboxRow(1, "m", "Heartbeat", {}, None, 0, T0)
    assert row.failed_at is None and row.last_error is None


def test_failed_messages_are_kept_but_no_longer_pending(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    a = s.enqueue("StartTransaction", {"connectorId": 1})
    b = s.enqueue("MeterValues", {"connectorId": 1})
    c = s.enqueue("StopTransaction", {"meterStop": 10})
    assert s.failed() == [] and s.failed_count() == 0
    assert a.failed_at is None and a.last_error is None

    s.bump_attempts(b.seq)
    s.fail(b.seq, "CALLERROR InternalError: try later")
    s.fail(a.seq, "CALLERROR FormationViolation")
    assert s.pending() == [c]
    assert s.queue_depth() == 1
    assert s.failed_count() == 2
    dead = s.failed()
    assert [r.seq for r in dead] == [a.seq, b.seq]  # oldest first
    dead_b = dead[1]
    assert dead_b.last_error == "CALLERROR InternalError: try later"
    assert dead_b.failed_at is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", dead_b.failed_at)
    assert (dead_b.message_id, dead_b.action, dead_b.payload) == (b.message_id, b.action, b.payload)
    assert dead_b.attempts == 1

    with pytest.raises(StoreError, match="no queued message with seq 999"):
        s.fail(999, "x")
    s.fail(b.seq, "second refusal")
    assert s.failed()[1].last_error == "second refusal"
    s.close()

    again = Store(tmp_path)
    again.open()
    try:
        assert [r.seq for r in again.pending()] == [c.seq]
        assert [r.seq for r in again.failed()] == [a.seq, b.seq]
        again.remove(a.seq)  # a dead letter can still be dealt with deliberately
        assert again.failed_count() == 1
        assert again.queue_depth() == 1
    finally:
        again.close()


def _build_v1_database(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        _migrate_v1(conn)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO transactions (connector_id, id_tag, meter_start_wh, started_at,"
            " last_meter_wh, last_meter_at) VALUES (1, 'TAG', 100, ?, 100, ?)",
            (T0, T0),
        )
        conn.execute(
            "INSERT INTO outbox (message_id, action, payload, tx_local_id, attempts, created_at)"
            " VALUES ('m-1', 'StartTransaction', '{\"connectorId\":1}', 1, 2, ?)",
            (T0,),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_migration_from_v1_keeps_queue_and_adds_the_later_schemas(tmp_path: Path) -> None:
    assert Store.SCHEMA_VERSION == 3
    _build_v1_database(tmp_path / "cpagent.db")
    s = Store(tmp_path)
    s.open()
    try:
        assert s.recovered_from is None
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(outbox)")}
        assert {"failed_at", "last_error", "protocol"} <= columns
        tx_columns = {row["name"] for row in conn.execute("PRAGMA table_info(transactions)")}
        assert {"protocol", "ocpp_transaction_id", "seq_no"} <= tx_columns
        list_columns = [row["name"] for row in conn.execute("PRAGMA table_info(local_auth_list)")]
        assert list_columns == ["id_tag", "status", "expiry", "parent_id_tag"]

        (row,) = s.pending()
        assert row == OutboxRow(
            seq=1,
            message_id="m-1",
            action="StartTransaction",
            payload={"connectorId": 1},
            tx_local_id=1,
            attempts=2,
            created_at=T0,
        )
        assert s.queue_depth() == 1 and s.failed_count() == 0
        assert [(t.local_id, t.protocol) for t in s.open_transactions()] == [(1, "1.6")]
        assert s.pending("1.6") == [row] and s.pending("2.0.1") == []
        assert s.local_list_version() == 0 and s.local_list_size() == 0
        s.fail(row.seq, "refused")
        assert s.pending() == [] and s.failed_count() == 1
    finally:
        s.close()


def _build_v2_database(db: Path) -> None:
    """A database as cpagent with schema v2 left it: a queued message of an open session,
    a configuration key the CSMS set and a local list."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        _migrate_v1(conn)
        _migrate_v2(conn)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO transactions (connector_id, id_tag, meter_start_wh, started_at,"
            " last_meter_wh, last_meter_at) VALUES (1, 'TAG', 100, ?, 100, ?)",
            (T0, T0),
        )
        conn.execute(
            "INSERT INTO outbox (message_id, action, payload, tx_local_id, attempts, created_at)"
            " VALUES ('m-1', 'StartTransaction', '{\"connectorId\":1}', 1, 0, ?)",
            (T0,),
        )
        conn.execute("INSERT INTO config_keys (key, value) VALUES ('HeartbeatInterval', '60')")
        conn.execute("INSERT INTO local_auth_list (id_tag, status) VALUES ('LISTED', 'Accepted')")
        conn.execute("INSERT INTO state (key, value) VALUES ('local_list.version', '7')")
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_migration_from_v2_keeps_everything_and_adds_device_variables(tmp_path: Path) -> None:
    assert Store.SCHEMA_VERSION == 3
    _build_v2_database(tmp_path / "cpagent.db")
    s = Store(tmp_path)
    s.open()
    try:
        assert s.recovered_from is None
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        (row,) = s.pending()
        assert (row.message_id, row.action, row.tx_local_id) == ("m-1", "StartTransaction", 1)
        assert [t.local_id for t in s.open_transactions()] == [1]
        assert s.config_keys() == {"HeartbeatInterval": "60"}
        assert s.local_list_state() == (7, 1)
        assert s.device_variables() == {}
        s.set_device_variable(HEARTBEAT, "120")
    finally:
        s.close()
    again = Store(tmp_path)
    again.open()
    try:
        assert again.device_variables() == {HEARTBEAT: "120"}
        assert again.config_keys() == {"HeartbeatInterval": "60"}
    finally:
        again.close()


# -- disk full -------------------------------------------------------------------------


def _cap_at_current_size(s: Store) -> None:
    conn = s._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages


def test_full_database_rolls_back_and_recovers(store: Store) -> None:
    small = store.enqueue("Heartbeat", {})
    _cap_at_current_size(store)
    big = {"pad": "x" * 50_000}

    with pytest.raises(StoreFullError, match="database or disk is full") as info:
        store.enqueue("MeterValues", big)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    with pytest.raises(StoreFullError):
        store.start_transaction(
            connector_id=1,
            id_tag="A",
            meter_start_wh=0,
            started_at=T0,
            message=("StartTransaction", big),
        )
    assert store.pending() == [small]
    assert store.open_transactions() == []
    conn = store._conn
    assert conn is not None
    assert not conn.in_transaction

    conn.execute("PRAGMA max_page_count = 1000000")
    row = store.enqueue("MeterValues", big)
    tx, out = store.start_transaction(
        connector_id=1, id_tag="A", meter_start_wh=0, started_at=T0, message=("X", big)
    )
    assert store.pending() == [small, row, out]
    assert store.open_transactions() == [tx]


def test_no_space_for_the_lock_file_is_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "pwrite", no_space)
    with pytest.raises(StoreFullError, match="No space left on device"):
        Store(tmp_path).open()
    monkeypatch.undo()
    s = Store(tmp_path)
    s.open()
    s.close()


# -- transactions ----------------------------------------------------------------------


def test_start_transaction_with_message(store: Store) -> None:
    tx, out = store.start_transaction(
        connector_id=2,
        id_tag="ABC",
        meter_start_wh=1000,
        started_at=T0,
        reservation_id=7,
        message=("StartTransaction", {"connectorId": 2, "meterStart": 1000}),
    )
    assert tx.open
    assert (tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.started_at) == (2, "ABC", 1000, T0)
    assert tx.reservation_id == 7
    assert tx.transaction_id is None
    assert (tx.last_meter_wh, tx.last_meter_at) == (1000, T0)
    assert out is not None
    assert out.tx_local_id == tx.local_id
    assert out.payload == {"connectorId": 2, "meterStart": 1000}
    assert store.pending() == [out]
    assert store.get_transaction(tx.local_id) == tx


def test_start_transaction_without_message(store: Store) -> None:
    tx, out = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=0, started_at=T0)
    assert out is None
    assert store.queue_depth() == 0
    assert store.open_transactions() == [tx]


def test_start_transaction_is_atomic_with_its_message(store: Store) -> None:
    _fail_outbox_inserts(store.path)
    with pytest.raises(StoreError, match="forced failure"):
        store.start_transaction(
            connector_id=1,
            id_tag="A",
            meter_start_wh=0,
            started_at=T0,
            message=("StartTransaction", {"connectorId": 1}),
        )
    assert store.open_transactions() == []
    assert store.queue_depth() == 0
    assert store.max_meter_wh(1) == 0


def test_start_transaction_rolls_back_on_unserialisable_payload(store: Store) -> None:
    with pytest.raises(ValueError):
        store.start_transaction(
            connector_id=1,
            id_tag="A",
            meter_start_wh=0,
            started_at=T0,
            message=("StartTransaction", {"meterStart": float("nan")}),
        )
    assert store.open_transactions() == []


def test_one_open_transaction_per_connector(store: Store) -> None:
    store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=0, started_at=T0)
    with pytest.raises(StoreError):
        store.start_transaction(connector_id=1, id_tag="B", meter_start_wh=0, started_at=T1)
    other, _ = store.start_transaction(connector_id=2, id_tag="B", meter_start_wh=0, started_at=T1)
    assert [t.connector_id for t in store.open_transactions()] == [1, 2]
    assert other.connector_id == 2


def test_stop_transaction(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=100, started_at=T0)
    stopped, out = store.stop_transaction(
        tx.local_id,
        meter_stop_wh=2500,
        stopped_at=T2,
        reason="Local",
        stop_id_tag="A",
        message=("StopTransaction", {"meterStop": 2500}),
    )
    assert not stopped.open
    assert (stopped.meter_stop_wh, stopped.stopped_at) == (2500, T2)
    assert (stopped.stop_reason, stopped.stop_id_tag) == ("Local", "A")
    assert (stopped.last_meter_wh, stopped.last_meter_at) == (2500, T2)
    assert out is not None and out.tx_local_id == tx.local_id
    assert store.open_transactions() == []
    assert store.get_transaction(tx.local_id) == stopped
    with pytest.raises(StoreError, match="already stopped"):
        store.stop_transaction(
            tx.local_id, meter_stop_wh=3000, stopped_at=T2, reason="Local", stop_id_tag=None
        )
    # the connector is free again
    store.start_transaction(connector_id=1, id_tag="B", meter_start_wh=2500, started_at=T2)


def test_stop_transaction_is_atomic_with_its_message(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=0, started_at=T0)
    _fail_outbox_inserts(store.path)
    with pytest.raises(StoreError):
        store.stop_transaction(
            tx.local_id,
            meter_stop_wh=10,
            stopped_at=T1,
            reason="Local",
            stop_id_tag=None,
            message=("StopTransaction", {}),
        )
    assert store.open_transactions() == [tx]
    assert store.queue_depth() == 0


def test_stop_unknown_transaction_raises(store: Store) -> None:
    with pytest.raises(StoreError, match="no transaction"):
        store.stop_transaction(42, meter_stop_wh=0, stopped_at=T0, reason="Local", stop_id_tag=None)


def test_record_meter(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=100, started_at=T0)
    assert store.record_meter(tx.local_id, 400, T1) is None
    got = store.get_transaction(tx.local_id)
    assert got is not None and (got.last_meter_wh, got.last_meter_at) == (400, T1)

    out = store.record_meter(tx.local_id, 700, T2, message=("MeterValues", {"wh": 700}))
    assert out is not None and out.tx_local_id == tx.local_id
    assert store.pending() == [out]
    got = store.get_transaction(tx.local_id)
    assert got is not None and got.last_meter_wh == 700


def test_transaction_data_is_kept_in_order_and_with_its_reading(store: Store) -> None:
    tx, _ = store.start_transaction(
        connector_id=1,
        id_tag="A",
        meter_start_wh=100,
        started_at=T0,
        data={"timestamp": T0, "v": 100},
    )
    store.record_meter(tx.local_id, 400, T1, data={"timestamp": T1, "v": 400})
    assert store.transaction_data(tx.local_id) == [
        {"timestamp": T0, "v": 100},
        {"timestamp": T1, "v": 400},
    ]
    other, _ = store.start_transaction(connector_id=2, id_tag="B", meter_start_wh=0, started_at=T0)
    assert store.transaction_data(other.local_id) == []
    with pytest.raises(StoreError):
        store.record_meter(999, 1, T1, data={})


def test_record_meter_keeps_no_data_when_its_message_fails(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=100, started_at=T0)
    _fail_outbox_inserts(store.path)
    with pytest.raises(StoreError):
        store.record_meter(tx.local_id, 900, T1, message=("MeterValues", {}), data={"v": 900})
    assert store.transaction_data(tx.local_id) == []


def test_record_meter_is_atomic_and_refuses_stopped(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=100, started_at=T0)
    _fail_outbox_inserts(store.path)
    with pytest.raises(StoreError):
        store.record_meter(tx.local_id, 900, T1, message=("MeterValues", {}))
    got = store.get_transaction(tx.local_id)
    assert got is not None and got.last_meter_wh == 100

    store.stop_transaction(
        tx.local_id, meter_stop_wh=200, stopped_at=T1, reason="Local", stop_id_tag=None
    )
    with pytest.raises(StoreError, match="already stopped"):
        store.record_meter(tx.local_id, 300, T2)


def test_set_and_find_transaction_id(store: Store) -> None:
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=0, started_at=T0)
    assert store.find_transaction(555) is None
    store.stop_transaction(
        tx.local_id, meter_stop_wh=5, stopped_at=T1, reason="Local", stop_id_tag=None
    )
    store.set_transaction_id(tx.local_id, 555)  # confirmation may arrive after the stop
    found = store.find_transaction(555)
    assert found is not None
    assert found.local_id == tx.local_id and found.transaction_id == 555
    with pytest.raises(StoreError):
        store.set_transaction_id(999, 1)
    assert store.get_transaction(999) is None


def test_open_transactions_order(store: Store) -> None:
    a, _ = store.start_transaction(connector_id=3, id_tag="A", meter_start_wh=0, started_at=T0)
    b, _ = store.start_transaction(connector_id=1, id_tag="B", meter_start_wh=0, started_at=T1)
    c, _ = store.start_transaction(connector_id=2, id_tag="C", meter_start_wh=0, started_at=T2)
    store.stop_transaction(
        b.local_id, meter_stop_wh=1, stopped_at=T2, reason="Local", stop_id_tag=None
    )
    assert [t.local_id for t in store.open_transactions()] == [a.local_id, c.local_id]


def test_max_meter_wh(store: Store) -> None:
    assert store.max_meter_wh(1) == 0
    a, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=1000, started_at=T0)
    assert store.max_meter_wh(1) == 1000
    store.record_meter(a.local_id, 1500, T1)
    assert store.max_meter_wh(1) == 1500
    store.stop_transaction(
        a.local_id, meter_stop_wh=1800, stopped_at=T2, reason="Local", stop_id_tag=None
    )
    assert store.max_meter_wh(1) == 1800
    # a later session starting lower (meter replaced) does not lower the maximum
    store.start_transaction(connector_id=1, id_tag="B", meter_start_wh=10, started_at=T2)
    assert store.max_meter_wh(1) == 1800
    assert store.max_meter_wh(2) == 0


def test_enqueue_with_unknown_transaction_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.enqueue("MeterValues", {}, tx_local_id=12345)
    assert store.queue_depth() == 0


# -- configuration keys, state, auth cache ---------------------------------------------


def test_config_keys_upsert(store: Store) -> None:
    assert store.config_keys() == {}
    store.set_config_key("HeartbeatInterval", "60")
    store.set_config_key("MeterValueSampleInterval", "30")
    store.set_config_key("HeartbeatInterval", "300")
    assert store.config_keys() == {"HeartbeatInterval": "300", "MeterValueSampleInterval": "30"}


# -- device-model variables (OCPP 2.0.1) -------------------------------------------------

HEARTBEAT = DeviceVariableKey(component="OCPPCommCtrlr", variable="HeartbeatInterval")
ATTEMPTS = DeviceVariableKey(
    component="OCPPCommCtrlr", variable="MessageAttempts", variable_instance="TransactionEvent"
)
EVSE_POWER = DeviceVariableKey(component="EVSE", evse=2, variable="Power", attribute="MaxSet")
CONNECTOR = DeviceVariableKey(
    component="Controller",
    component_instance="main",
    evse=1,
    connector=1,
    variable="Enabled",
)


def test_device_variables_set_replace_delete(store: Store) -> None:
    assert store.device_variables() == {}
    store.set_device_variable(HEARTBEAT, "60")
    store.set_device_variables({ATTEMPTS: "5", EVSE_POWER: "11000", CONNECTOR: "false"})
    store.set_device_variable(HEARTBEAT, "120")
    assert store.device_variables() == {
        HEARTBEAT: "120",
        ATTEMPTS: "5",
        EVSE_POWER: "11000",
        CONNECTOR: "false",
    }
    # The same variable without its instance, or another attribute, is another value.
    bare = DeviceVariableKey(component="OCPPCommCtrlr", variable="MessageAttempts")
    actual = DeviceVariableKey(component="EVSE", evse=2, variable="Power")
    store.set_device_variables({bare: "1", actual: "7400"})
    assert store.device_variables()[ATTEMPTS] == "5"
    assert store.device_variables()[EVSE_POWER] == "11000"
    store.delete_device_variable(ATTEMPTS)
    store.delete_device_variable(ATTEMPTS)  # nothing there: no error
    store.delete_device_variable(EVSE_POWER)
    assert store.device_variables() == {
        HEARTBEAT: "120",
        CONNECTOR: "false",
        bare: "1",
        actual: "7400",
    }


def test_device_variables_survive_reopen_with_every_key_field(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    s.set_device_variables({HEARTBEAT: "120", ATTEMPTS: "5", EVSE_POWER: "11000", CONNECTOR: ""})
    s.close()
    again = Store(tmp_path)
    again.open()
    try:
        stored = again.device_variables()
    finally:
        again.close()
    assert stored == {HEARTBEAT: "120", ATTEMPTS: "5", EVSE_POWER: "11000", CONNECTOR: ""}
    (connector,) = (key for key in stored if key.component == "Controller")
    assert (connector.component_instance, connector.evse, connector.connector) == ("main", 1, 1)
    heartbeat = next(key for key in stored if key.variable == "HeartbeatInterval")
    assert (heartbeat.component_instance, heartbeat.evse, heartbeat.connector) == (None, None, None)
    assert (heartbeat.variable_instance, heartbeat.attribute) == (None, "Actual")


def test_setting_several_device_variables_is_all_or_nothing(store: Store) -> None:
    store.set_device_variable(HEARTBEAT, "60")
    _cap_at_current_size(store)
    big = {
        DeviceVariableKey(component="Controller", component_instance=f"c{n}", variable="X"): "x"
        * 1000
        for n in range(200)
    }
    with pytest.raises(StoreFullError):
        store.set_device_variables({HEARTBEAT: "120", **big})
    assert store.device_variables() == {HEARTBEAT: "60"}
    with pytest.raises(StoreError, match="not int"):
        store.set_device_variables({HEARTBEAT: "90", ATTEMPTS: 5})  # type: ignore[dict-item]
    assert store.device_variables() == {HEARTBEAT: "60"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"component": "", "variable": "V"}, "component must not be empty"),
        ({"component": "C", "variable": ""}, "variable must not be empty"),
        ({"component": "C", "variable": "V", "attribute": ""}, "attribute must not be empty"),
        ({"component": "C", "component_instance": "", "variable": "V"}, "not empty"),
        ({"component": "C", "variable": "V", "variable_instance": ""}, "not empty"),
        ({"component": "C", "evse": 0, "variable": "V"}, "evse is None or at least 1"),
        ({"component": "C", "evse": 1, "connector": 0, "variable": "V"}, "at least 1"),
        ({"component": "C", "connector": 1, "variable": "V"}, "a connector belongs to an EVSE"),
    ],
)
def test_device_variable_keys_keep_the_columns_unambiguous(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        DeviceVariableKey(**fields)


def test_state_upsert(store: Store) -> None:
    assert store.get_state("k") is None
    store.set_state("k", "1")
    store.set_state("k", "2")
    assert store.get_state("k") == "2"


def test_auth_cache(store: Store) -> None:
    assert store.cache_get("TAG1") is None
    row = AuthCacheRow("TAG1", "Accepted", "2026-02-01T00:00:00.000Z", "PARENT")
    store.cache_put(row)
    assert store.cache_get("TAG1") == row
    assert store.cache_get("tag1") == row  # id tokens compare case-insensitively
    blocked = AuthCacheRow("TAG1", "Blocked", None, None)
    store.cache_put(blocked)
    assert store.cache_get("TAG1") == blocked
    store.cache_put(AuthCacheRow("TAG2", "Accepted", None, None))
    store.cache_clear()
    assert store.cache_get("TAG1") is None
    assert store.cache_get("TAG2") is None


def test_local_list_full_and_differential_updates(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.open()
    assert s.local_list_version() == 0
    assert s.local_list_size() == 0
    assert s.local_list_get("TAG1") is None

    tag1 = AuthCacheRow("TAG1", "Accepted", "2026-06-01T00:00:00.000Z", "GROUP")
    tag2 = AuthCacheRow("Tag2", "Blocked", None, None)
    s.local_list_replace(3, [tag1, tag2])
    assert s.local_list_version() == 3
    assert s.local_list_size() == 2
    assert s.local_list_get("TAG1") == tag1
    assert s.local_list_get("tag1") == tag1  # id tokens compare case-insensitively
    assert s.local_list_get("TAG2") == tag2
    assert s.cache_get("TAG1") is None  # the list and the cache are separate

    tag1_blocked = AuthCacheRow("tag1", "Blocked", None, None)
    tag3 = AuthCacheRow("TAG3", "Accepted", None, None)
    s.local_list_update(4, [tag1_blocked, tag3], removed=["TAG2", "UNKNOWN"])
    assert s.local_list_version() == 4
    assert s.local_list_size() == 2
    assert s.local_list_get("TAG1") == tag1_blocked
    assert s.local_list_get("tag2") is None
    assert s.local_list_get("tag3") == tag3

    s.local_list_update(5, [tag2], removed=["tag2"])  # removals come last
    assert s.local_list_get("TAG2") is None

    s.local_list_replace(6, [tag2])  # a full update drops everything else
    assert s.local_list_size() == 1
    assert s.local_list_get("TAG1") is None
    s.close()

    again = Store(tmp_path)
    again.open()
    try:
        assert again.local_list_version() == 6
        assert again.local_list_get("tag2") == tag2
        again.local_list_replace(0, [])
        assert (again.local_list_version(), again.local_list_size()) == (0, 0)
    finally:
        again.close()


def test_local_list_replace_with_duplicate_changes_nothing(store: Store) -> None:
    tag = AuthCacheRow("TAG", "Accepted", None, None)
    store.local_list_replace(1, [tag])
    with pytest.raises(StoreError):
        store.local_list_replace(
            2, [AuthCacheRow("A", "Accepted", None, None), AuthCacheRow("a", "Blocked", None, None)]
        )
    assert store.local_list_version() == 1
    assert store.local_list_size() == 1
    assert store.local_list_get("tag") == tag


def _entry(tag: str, status: str = "Accepted") -> AuthCacheRow:
    return AuthCacheRow(tag, status, None, None)


def test_local_list_state_reads_version_and_size_together(store: Store) -> None:
    assert store.local_list_state() == (0, 0)
    assert store.local_list_replace(7, [_entry("A"), _entry("B")])
    assert store.local_list_state() == (7, 2)
    assert store.local_list_update(8, [], ["a", "b"])
    assert store.local_list_state() == (8, 0)  # an emptied list keeps the version it was given


def test_local_list_size_limit_changes_nothing_when_exceeded(store: Store) -> None:
    assert store.local_list_replace(1, [_entry("A"), _entry("B")], max_size=2)
    assert not store.local_list_replace(2, [_entry("A"), _entry("B"), _entry("C")], max_size=2)
    assert store.local_list_state() == (1, 2)

    # A differential is judged by the list it would leave, not by its own length.
    assert not store.local_list_update(2, [_entry("C")], [], max_size=2)
    assert store.local_list_state() == (1, 2)
    assert store.local_list_get("C") is None
    assert store.local_list_update(2, [_entry("a", "Blocked")], [], max_size=2)
    assert store.local_list_update(3, [_entry("C")], ["B"], max_size=2)
    assert store.local_list_state() == (3, 2)
    assert store.local_list() == [_entry("a", "Blocked"), _entry("C")]
    conn = store._conn
    assert conn is not None and not conn.in_transaction


def test_local_list_full_replace_is_all_or_nothing_on_a_full_disk(store: Store) -> None:
    old = [_entry(f"OLD{i}") for i in range(3)]
    assert store.local_list_replace(4, old)
    _cap_at_current_size(store)
    new = [AuthCacheRow(f"NEW{i}", "Accepted", None, "P" * 20) for i in range(5000)]
    with pytest.raises(StoreFullError):
        store.local_list_replace(5, new)
    with pytest.raises(StoreFullError):
        store.local_list_update(5, new, ["OLD0"])
    assert store.local_list_state() == (4, 3)
    assert [store.local_list_get(e.id_tag) for e in old] == old
    assert store.local_list_get("NEW0") is None

    conn = store._conn
    assert conn is not None
    conn.execute("PRAGMA max_page_count = 1000000")
    assert store.local_list_replace(5, new)
    assert store.local_list_state() == (5, 5000)
    assert store.local_list_get("OLD0") is None


def test_listed_tags_stay_out_of_the_authorization_cache(store: Store) -> None:
    store.cache_put(_entry("CACHED"))
    store.cache_put(_entry("OTHER"))
    assert store.local_list_replace(1, [_entry("cached", "Blocked")])
    assert store.cache_get("CACHED") is None  # the list took it over
    assert store.cache_get("OTHER") == _entry("OTHER")

    assert store.cache_put(_entry("Cached"), unless_listed=True) is False
    assert store.cache_get("CACHED") is None
    assert store.cache_put(_entry("FRESH"), unless_listed=True) is True
    assert store.cache_get("FRESH") == _entry("FRESH")

    assert store.local_list_update(2, [_entry("FRESH")], [])
    assert store.cache_get("FRESH") is None
    # Once the CSMS removes a tag from the list, nothing stale of it is left to authorize.
    assert store.local_list_update(3, [], ["FRESH", "CACHED"])
    assert store.cache_get("FRESH") is None and store.local_list_get("FRESH") is None
    assert store.cache_put(_entry("FRESH"), unless_listed=True) is True
    assert store.cache_get("OTHER") == _entry("OTHER")
    # A tag cached while the list was switched off goes too when the list drops it.
    assert store.local_list_update(4, [_entry("OTHER")], [])
    store.cache_put(_entry("OTHER"))
    assert store.local_list_update(5, [], ["OTHER"])
    assert store.cache_get("OTHER") is None


def test_concurrent_direct_and_worker_calls(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for i in range(50):
                store.enqueue("MeterValues", {"p": prefix, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.queue_depth() == 150


# -- OCPP 2.0.1 transactions -------------------------------------------------------------


def _event(kind: str) -> Callable[[int], tuple[str, dict[str, Any]]]:
    """A TransactionEvent made from the seqNo the store gives it."""
    return lambda seq_no: ("TransactionEvent", {"eventType": kind, "seqNo": seq_no})


def test_transaction_events_are_numbered_in_the_commit_that_queues_them(store: Store) -> None:
    tx, started = store.start_transaction(
        connector_id=1,
        id_tag="TAG",
        meter_start_wh=0,
        started_at=T0,
        message=_event("Started"),
        protocol="2.0.1",
        ocpp_transaction_id="tx-1",
    )
    assert started is not None and started.protocol == "2.0.1"
    store.record_meter(tx.local_id, 10, T0, _event("Updated"))
    store.queue_transaction_message(tx.local_id, _event("Updated"))
    store.stop_transaction(
        tx.local_id,
        meter_stop_wh=20,
        stopped_at=T0,
        reason="Local",
        stop_id_tag=None,
        message=_event("Ended"),
    )
    sent = [(r.payload["eventType"], r.payload["seqNo"]) for r in store.pending("2.0.1")]
    assert sent == [("Started", 0), ("Updated", 1), ("Updated", 2), ("Ended", 3)]
    assert store.pending("1.6") == []
    found = store.find_ocpp_transaction("tx-1")
    assert found is not None and found.seq_no == 4 and found.protocol == "2.0.1"
    with pytest.raises(StoreError):
        store.queue_transaction_message(tx.local_id, _event("Updated"))


def test_a_transaction_id_cannot_repeat(store: Store) -> None:
    store.start_transaction(
        connector_id=1,
        id_tag="A",
        meter_start_wh=0,
        started_at=T0,
        protocol="2.0.1",
        ocpp_transaction_id="same",
    )
    with pytest.raises(StoreError):
        store.start_transaction(
            connector_id=2,
            id_tag="B",
            meter_start_wh=0,
            started_at=T0,
            protocol="2.0.1",
            ocpp_transaction_id="same",
        )
    assert [t.connector_id for t in store.open_transactions()] == [1]


def test_messages_of_each_version_wait_apart(store: Store) -> None:
    store.enqueue("StatusNotification", {"v": 16})
    store.enqueue("StatusNotification", {"v": 201}, protocol="2.0.1")
    store.enqueue("Heartbeat", {"v": 16})
    assert [r.payload["v"] for r in store.pending("1.6")] == [16, 16]
    assert [r.payload["v"] for r in store.pending("2.0.1")] == [201]
    assert len(store.pending()) == 3
    assert store.pending_by_protocol() == {"1.6": 2, "2.0.1": 1}
