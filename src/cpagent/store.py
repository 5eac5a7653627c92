"""The one SQLite database in ``storage.data_dir``.

Everything that must survive ``kill -9`` or a power cut lives here: the outgoing queue of
money-bearing OCPP messages, transactions, configuration keys set by the CSMS, small state
(connector availability and the like) and the authorization cache. The database runs in WAL
mode with ``synchronous=FULL``, so a method that has returned has reached the disk.

One connection serves the whole agent. The asyncio loop reaches it through :meth:`Store.run`,
which executes a method in the store's single worker thread, so the loop never waits on
``fsync``. Every public method is also callable directly (start-up, tests); a lock keeps
direct calls and worker calls from interleaving on the connection. Each public method is one
SQLite transaction: it commits completely or not at all.

An exclusive ``flock`` on ``data_dir/cpagent.lock`` keeps a second agent away from the same
directory; the lock is held from :meth:`Store.open` to :meth:`Store.close` (or process death,
when the kernel drops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cpagent.exc import AlreadyRunningError, StoreError
from cpagent.timeutil import now_iso

__all__ = ["AuthCacheRow", "OutboxRow", "Store", "TransactionRow"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAME = "cpagent.db"
LOCK_NAME = "cpagent.lock"


@dataclass(frozen=True)
class OutboxRow:
    """A CALL waiting for its CALLRESULT; ``seq`` orders replay and never gets reused."""

    seq: int
    message_id: str
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None
    attempts: int
    created_at: str


@dataclass(frozen=True)
class TransactionRow:
    """A charging session as the charge point knows it.

    ``local_id`` exists from the first instant; ``transaction_id`` is the CSMS's id and stays
    ``None`` until StartTransaction is confirmed, which may be long after the session ended.
    """

    local_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: str
    transaction_id: int | None
    reservation_id: int | None
    last_meter_wh: int
    last_meter_at: str
    meter_stop_wh: int | None
    stopped_at: str | None
    stop_reason: str | None
    stop_id_tag: str | None

    @property
    def open(self) -> bool:
        return self.stopped_at is None


@dataclass(frozen=True)
class AuthCacheRow:
    """An IdTagInfo remembered for offline authorization; ``expiry`` is RFC 3339 or None."""

    id_tag: str
    status: str
    expiry: str | None
    parent_id_tag: str | None


def _migrate_v1(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE transactions (
            local_id INTEGER PRIMARY KEY AUTOINCREMENT,
            connector_id INTEGER NOT NULL,
            id_tag TEXT NOT NULL,
            meter_start_wh INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            transaction_id INTEGER,
            reservation_id INTEGER,
            last_meter_wh INTEGER NOT NULL,
            last_meter_at TEXT NOT NULL,
            meter_stop_wh INTEGER,
            stopped_at TEXT,
            stop_reason TEXT,
            stop_id_tag TEXT
        )""",
        # A connector carries at most one session at a time; an orphan left by a crash
        # must be stopped before the next one starts.
        """CREATE UNIQUE INDEX transactions_one_open_per_connector
            ON transactions (connector_id) WHERE stopped_at IS NULL""",
        "CREATE INDEX transactions_by_csms_id ON transactions (transaction_id)",
        "CREATE INDEX transactions_by_connector ON transactions (connector_id)",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL UNIQUE,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            tx_local_id INTEGER REFERENCES transactions (local_id),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX outbox_by_transaction ON outbox (tx_local_id)",
        # Meter values kept for StopTransaction's transactionData (one JSON MeterValue each).
        """CREATE TABLE transaction_data (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id INTEGER NOT NULL REFERENCES transactions (local_id),
            meter_value TEXT NOT NULL
        )""",
        "CREATE INDEX transaction_data_by_transaction ON transaction_data (local_id)",
        """CREATE TABLE config_keys (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
        # OCPP id tokens are case-insensitive strings (CiString).
        """CREATE TABLE auth_cache (
            id_tag TEXT PRIMARY KEY COLLATE NOCASE,
            status TEXT NOT NULL,
            expiry TEXT,
            parent_id_tag TEXT,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID""",
    ]
    for statement in statements:
        conn.execute(statement)


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v1]

_TX_COLUMNS = (
    "local_id, connector_id, id_tag, meter_start_wh, started_at, transaction_id,"
    " reservation_id, last_meter_wh, last_meter_at, meter_stop_wh, stopped_at,"
    " stop_reason, stop_id_tag"
)
_OUTBOX_COLUMNS = "seq, message_id, action, payload, tx_local_id, attempts, created_at"


def _encode(payload: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities are refused (ValueError) since JSON has no such values."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _outbox_row(row: sqlite3.Row) -> OutboxRow:
    try:
        payload = json.loads(row["payload"])
    except ValueError as exc:
        raise StoreError(f"outbox row {row['seq']} holds invalid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise StoreError(f"outbox row {row['seq']} holds a payload that is not an object")
    return OutboxRow(
        seq=row["seq"],
        message_id=row["message_id"],
        action=row["action"],
        payload=payload,
        tx_local_id=row["tx_local_id"],
        attempts=row["attempts"],
        created_at=row["created_at"],
    )


def _transaction_row(row: sqlite3.Row) -> TransactionRow:
    return TransactionRow(*row)


def _load_transaction(conn: sqlite3.Connection, local_id: int) -> TransactionRow:
    row = conn.execute(
        f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no transaction with local id {local_id}")
    return _transaction_row(row)


class Store:
    """The agent's durable state in ``data_dir/cpagent.db``.

    Lifecycle: ``Store(data_dir)`` does no I/O; :meth:`open` locks the directory and opens
    and migrates the database; :meth:`close` releases both. Methods called while the store
    is not open raise :class:`StoreError`, as does any SQLite or OS failure, chained to
    its cause. Timestamps are stored exactly as given (RFC 3339 text).
    """

    SCHEMA_VERSION: ClassVar[int] = len(_MIGRATIONS)

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.lock_path = self.data_dir / LOCK_NAME
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._worker_ident: int | None = None
        self._mutex = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Lock ``data_dir``, open the database and bring its schema up to date.

        Raises :class:`AlreadyRunningError` if another process (or another ``Store`` in
        this one) holds the directory, without touching the database, and
        :class:`StoreError` for anything else that goes wrong; on failure nothing stays
        open or locked.
        """
        with self._mutex:
            if self._conn is not None:
                raise StoreError(f"store {self.path} is already open")
            self._make_data_dir()
            self._acquire_lock()
            try:
                self._conn = self._connect()
                self._migrate(self._conn)
            except BaseException:
                if self._conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.close()
                    self._conn = None
                self._release_lock()
                raise
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="cpagent-store",
                initializer=self._note_worker,
            )

    def close(self) -> None:
        """Close the database and release the directory lock; calling it again is a no-op.

        A method already running in the worker finishes first; calls still queued behind it
        fail with :class:`StoreError`.
        """
        with self._mutex:
            executor, self._executor = self._executor, None
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    log.warning("closing %s: %s", self.path, exc)
            self._release_lock()
        if executor is not None:
            executor.shutdown(wait=threading.get_ident() != self._worker_ident)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (normally a method of this store) in the worker thread.

        Calls run one at a time in submission order. Cancelling the awaiting task does not
        undo a call that has already started: it may still commit.
        """
        executor = self._executor
        if executor is None:
            raise StoreError(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))
        except RuntimeError as exc:  # shut down between the check and the submit
            raise StoreError(f"store {self.path} is closed") from exc
        return await future

    def _note_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    def _make_data_dir(self) -> None:
        try:
            if not self.data_dir.is_dir():
                self.data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
                self.data_dir.chmod(0o750)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {self.data_dir}: {exc}") from exc

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another cpagent (pid {holder}) is using {self.data_dir}"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.lock_path}: {exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write lock file {self.lock_path}: {exc}") from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        try:
            # Created up front so the database (and the WAL files SQLite derives from its
            # mode) are not world-readable: configuration keys may hold credentials.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
            conn = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal_mode is %s, WAL is not available here", self.path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply each pending migration in its own transaction, bumping ``user_version``."""
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > self.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: database schema v{version} is newer than this cpagent"
                    f" supports (v{self.SCHEMA_VERSION})"
                )
            for index in range(version, self.SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    _MIGRATIONS[index](conn)
                    conn.execute(f"PRAGMA user_version = {index + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot migrate database {self.path}: {exc}") from exc

    # -- access helpers ----------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            conn = self._conn
            if conn is None:
                raise StoreError(f"store {self.path} is closed")
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls everything back."""
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _insert_outbox(
        conn: sqlite3.Connection,
        action: str,
        payload: dict[str, Any],
        tx_local_id: int | None,
        message_id: str | None = None,
    ) -> OutboxRow:
        message_id = message_id if message_id is not None else str(uuid.uuid4())
        created_at = now_iso()
        cursor = conn.execute(
            "INSERT INTO outbox (message_id, action, payload, tx_local_id, attempts, created_at)"
            " VALUES (?, ?, ?, ?, 0, ?)",
            (message_id, action, _encode(payload), tx_local_id, created_at),
        )
        assert cursor.lastrowid is not None
        return OutboxRow(
            seq=cursor.lastrowid,
            message_id=message_id,
            action=action,
            payload=payload,
            tx_local_id=tx_local_id,
            attempts=0,
            created_at=created_at,
        )

    # -- outgoing queue ----------------------------------------------------------------

    def enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        message_id: str | None = None,
    ) -> OutboxRow:
        """Queue a CALL for sending; it is on disk when this returns.

        ``message_id`` (a fresh uuid4 unless given) is the OCPP-J message id, kept across
        resends so the CSMS can recognise a duplicate. A reused id raises StoreError.
        """
        with self._write() as conn:
            return self._insert_outbox(conn, action, payload, tx_local_id, message_id)

    def pending(self) -> list[OutboxRow]:
        """Every queued CALL, oldest first: the order they must be sent in."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox ORDER BY seq").fetchall()
            return [_outbox_row(row) for row in rows]

    def remove(self, seq: int) -> None:
        """Drop a CALL once its CALLRESULT (or a final CALLERROR) arrived; unknown is a no-op."""
        with self._write() as conn:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def bump_attempts(self, seq: int) -> int:
        """Count one more send attempt and return the new count."""
        with self._write() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            row = conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise StoreError(f"no queued message with seq {seq}")
            return int(row[0])

    def queue_depth(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # -- transactions ------------------------------------------------------------------

    def start_transaction(
        self,
        *,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        started_at: str,
        reservation_id: int | None = None,
        message: tuple[str, dict[str, Any]] | None = None,
    ) -> tuple[TransactionRow, OutboxRow | None]:
        """Record a new session and, in the same commit, queue its ``(action, payload)``.

        Either both rows exist afterwards or neither does. The connector must not have an
        open transaction already (StoreError otherwise).
        """
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, meter_start_wh, started_at,"
                " reservation_id, last_meter_wh, last_meter_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    connector_id,
                    id_tag,
                    meter_start_wh,
                    started_at,
                    reservation_id,
                    meter_start_wh,
                    started_at,
                ),
            )
            assert cursor.lastrowid is not None
            local_id = cursor.lastrowid
            outbox = None
            if message is not None:
                outbox = self._insert_outbox(conn, message[0], message[1], local_id)
            return _load_transaction(conn, local_id), outbox

    def stop_transaction(
        self,
        local_id: int,
        *,
        meter_stop_wh: int,
        stopped_at: str,
        reason: str,
        stop_id_tag: str | None,
        message: tuple[str, dict[str, Any]] | None = None,
    ) -> tuple[TransactionRow, OutboxRow | None]:
        """End a session and, in the same commit, queue its ``(action, payload)``.

        The stop reading also becomes the last meter reading. Stopping an unknown or an
        already stopped transaction raises StoreError and changes nothing.
        """
        with self._write() as conn:
            if not _load_transaction(conn, local_id).open:
                raise StoreError(f"transaction {local_id} is already stopped")
            conn.execute(
                "UPDATE transactions SET meter_stop_wh = ?, stopped_at = ?, stop_reason = ?,"
                " stop_id_tag = ?, last_meter_wh = ?, last_meter_at = ? WHERE local_id = ?",
                (
                    meter_stop_wh,
                    stopped_at,
                    reason,
                    stop_id_tag,
                    meter_stop_wh,
                    stopped_at,
                    local_id,
                ),
            )
            outbox = None
            if message is not None:
                outbox = self._insert_outbox(conn, message[0], message[1], local_id)
            return _load_transaction(conn, local_id), outbox

    def record_meter(
        self,
        local_id: int,
        meter_wh: int,
        at: str,
        message: tuple[str, dict[str, Any]] | None = None,
        data: dict[str, Any] | None = None,
    ) -> OutboxRow | None:
        """Remember the latest reading of an open session, queueing ``message`` with it and
        keeping ``data`` (a MeterValue for StopTransaction's transactionData), in one commit.

        The stored reading is what a restart after a power cut bills up to. An unknown or
        stopped transaction raises StoreError and changes nothing.
        """
        with self._write() as conn:
            if not _load_transaction(conn, local_id).open:
                raise StoreError(f"transaction {local_id} is already stopped")
            conn.execute(
                "UPDATE transactions SET last_meter_wh = ?, last_meter_at = ? WHERE local_id = ?",
                (meter_wh, at, local_id),
            )
            if data is not None:
                conn.execute(
                    "INSERT INTO transaction_data (local_id, meter_value) VALUES (?, ?)",
                    (local_id, _encode(data)),
                )
            if message is None:
                return None
            return self._insert_outbox(conn, message[0], message[1], local_id)

    def add_transaction_data(self, local_id: int, meter_value: dict[str, Any]) -> None:
        """Keep a MeterValue for the session's StopTransaction transactionData."""
        with self._write() as conn:
            _load_transaction(conn, local_id)
            conn.execute(
                "INSERT INTO transaction_data (local_id, meter_value) VALUES (?, ?)",
                (local_id, _encode(meter_value)),
            )

    def transaction_data(self, local_id: int) -> list[dict[str, Any]]:
        """The MeterValues kept for a session, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT meter_value FROM transaction_data WHERE local_id = ? ORDER BY seq",
                (local_id,),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def set_transaction_id(self, local_id: int, transaction_id: int) -> None:
        """Attach the CSMS's id from StartTransaction.conf; works on stopped sessions too."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET transaction_id = ? WHERE local_id = ?",
                (transaction_id, local_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"no transaction with local id {local_id}")

    def get_transaction(self, local_id: int) -> TransactionRow | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
            ).fetchone()
            return None if row is None else _transaction_row(row)

    def find_transaction(self, transaction_id: int) -> TransactionRow | None:
        """The session the CSMS knows as ``transaction_id`` (the newest, should it repeat)."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE transaction_id = ?"
                " ORDER BY local_id DESC LIMIT 1",
                (transaction_id,),
            ).fetchone()
            return None if row is None else _transaction_row(row)

    def open_transactions(self) -> list[TransactionRow]:
        """Sessions not yet stopped, oldest first; after a crash these are the orphans."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE stopped_at IS NULL ORDER BY local_id"
            ).fetchall()
            return [_transaction_row(row) for row in rows]

    def max_meter_wh(self, connector_id: int) -> int:
        """The highest reading ever stored for the connector (start, last or stop), else 0.

        A meter register only grows, so this is the floor for a plausible new reading.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT MAX(MAX(meter_start_wh, last_meter_wh, COALESCE(meter_stop_wh, 0)))"
                " FROM transactions WHERE connector_id = ?",
                (connector_id,),
            ).fetchone()
            return int(row[0]) if row[0] is not None else 0

    # -- configuration keys ------------------------------------------------------------

    def config_keys(self) -> dict[str, str]:
        """Every OCPP configuration key the CSMS has changed, as its string value."""
        with self._read() as conn:
            rows = conn.execute("SELECT key, value FROM config_keys ORDER BY key").fetchall()
            return {row["key"]: row["value"] for row in rows}

    def set_config_key(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO config_keys (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- small state -------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- authorization cache -----------------------------------------------------------

    def cache_put(self, row: AuthCacheRow) -> None:
        """Insert or replace the entry for ``row.id_tag`` (id tags compare case-insensitively)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET"
                " id_tag = excluded.id_tag, status = excluded.status,"
                " expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag,"
                " updated_at = excluded.updated_at",
                (row.id_tag, row.status, row.expiry, row.parent_id_tag, now_iso()),
            )

    def cache_get(self, id_tag: str) -> AuthCacheRow | None:
        """The cached entry, expired or not: judging expiry is the caller's business."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT id_tag, status, expiry, parent_id_tag FROM auth_cache WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
            if found is None:
                return None
            return AuthCacheRow(
                id_tag=found["id_tag"],
                status=found["status"],
                expiry=found["expiry"],
                parent_id_tag=found["parent_id_tag"],
            )

    def cache_clear(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM auth_cache")
