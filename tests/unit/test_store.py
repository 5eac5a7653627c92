"""The SQLite store: durability, locking, atomicity of money-bearing writes, migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpagent.exc import AlreadyRunningError, StoreError
from cpagent.store import AuthCacheRow, Store

T0 = "2026-01-01T10:00:00.000Z"
T1 = "2026-01-01T10:15:00.000Z"
T2 = "2026-01-01T10:30:00.000Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    s.open()
    yield s
    s.close()


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


def test_non_database_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "cpagent.db").write_bytes(b"this is not a database, just text\n" * 200)
    with pytest.raises(StoreError) as info:
        Store(tmp_path).open()
    assert "cpagent.db" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert not isinstance(info.value, sqlite3.Error)


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
    tx, _ = store.start_transaction(connector_id=1, id_tag="A", meter_start_wh=100, started_at=T0)
    store.add_transaction_data(tx.local_id, {"timestamp": T0, "v": 100})
    store.record_meter(tx.local_id, 400, T1, data={"timestamp": T1, "v": 400})
    assert store.transaction_data(tx.local_id) == [
        {"timestamp": T0, "v": 100},
        {"timestamp": T1, "v": 400},
    ]
    other, _ = store.start_transaction(connector_id=2, id_tag="B", meter_start_wh=0, started_at=T0)
    assert store.transaction_data(other.local_id) == []
    with pytest.raises(StoreError):
        store.add_transaction_data(999, {})


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
