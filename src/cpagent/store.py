"""The one SQLite database in ``storage.data_dir``.

Everything that must survive ``kill -9`` or a power cut lives here: the outgoing queue of
money-bearing OCPP messages, transactions, configuration keys (1.6) and device-model
variables (2.0.1) set by the CSMS, small state (connector availability and the like), the
authorization cache and the local authorization list. The database runs in WAL mode with
``synchronous=FULL``, so a method that has returned has reached the disk. The one exception
is :meth:`Store.remove_answered`, the deletion of a message the CSMS has answered: see there
why it need not wait for the disk.

One connection serves the whole agent. The asyncio loop reaches it through :meth:`Store.run`,
which executes a method in the store's single worker thread, so the loop never waits on
``fsync``. Every public method is also callable directly (start-up, tests); a lock keeps
direct calls and worker calls from interleaving on the connection. Each public method is one
SQLite transaction: it commits completely or not at all.

An exclusive ``flock`` on ``data_dir/cpagent.lock`` keeps a second agent away from the same
directory; the lock is held from :meth:`Store.open` to :meth:`Store.close` (or process death,
when the kernel drops it).

A charge point has nobody at hand to repair a broken file, so a database that fails its
integrity check at open is moved aside (kept for analysis) and replaced by an empty one rather
than stopping the agent on every restart; :attr:`Store.recovered_from` tells the agent it
happened. A full disk surfaces as :class:`StoreFullError`: the write is rolled back and the
store stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cpagent.exc import AlreadyRunningError, StoreError, StoreFullError
from cpagent.timeutil import now_iso, utcnow

__all__ = ["AuthCacheRow", "DeviceVariableKey", "OutboxRow", "Store", "TransactionRow"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAME = "cpagent.db"
LOCK_NAME = "cpagent.lock"
# SQLite keeps these next to the database in WAL mode; they belong to it and move with it.
_COMPANION_SUFFIXES = ("-wal", "-shm")
_LOCAL_LIST_VERSION_KEY = "local_list.version"
WAL_AUTOCHECKPOINT = 1000
"""Pages the WAL may grow to before a commit checkpoints it (SQLite's default, set
explicitly so that :meth:`Store.remove_answered` can restore it)."""
QUICK_REMOVALS_PER_CHECKPOINT = 200
"""How many answered messages :meth:`Store.remove_answered` deletes on the caller's thread
between two checkpoints in the worker: it bounds both the WAL's growth (a deletion adds a
few pages) and how many answered messages a power cut can bring back."""


@dataclass(frozen=True)
class OutboxRow:
    """A CALL waiting for its CALLRESULT; ``seq`` orders replay and never gets reused.

    ``failed_at`` (RFC 3339) and ``last_error`` are set once the CSMS has refused the message
    for good: it is then a dead letter, kept but no longer sent.
    """

    seq: int
    message_id: str
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None
    attempts: int
    created_at: str
    failed_at: str | None = None
    last_error: str | None = None
    protocol: str = "1.6"
    """The OCPP version the message is in: only an agent speaking it sends the row."""


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
    protocol: str = "1.6"
    ocpp_transaction_id: str | None = None
    """OCPP 2.0.1: the id the station made for the transaction (1.6: the CSMS's, above)."""
    seq_no: int = 0
    """OCPP 2.0.1: the seqNo the transaction's next TransactionEvent carries."""

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


@dataclass(frozen=True, order=True, kw_only=True)
class DeviceVariableKey:
    """One attribute of one OCPP 2.0.1 device-model variable, as the store keys its value.

    The fields are those of OCPP's ComponentType (``component``, ``component_instance``,
    ``evse``, ``connector``), VariableType (``variable``, ``variable_instance``) and
    AttributeEnumType (``attribute``), None where OCPP leaves them out. The store keeps
    names as given: the adapter gives the spec's spelling.

    Raises:
        ValueError: an empty name or instance, an id below 1, a connector without an EVSE.
    """

    component: str
    component_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    variable: str
    variable_instance: str | None = None
    attribute: str = "Actual"

    def __post_init__(self) -> None:
        for name in ("component", "variable", "attribute"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for name in ("component_instance", "variable_instance"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} is None or not empty")
        for name in ("evse", "connector"):
            number = getattr(self, name)
            if number is not None and number < 1:
                raise ValueError(f"{name} is None or at least 1")
        if self.connector is not None and self.evse is None:
            raise ValueError("a connector belongs to an EVSE")

    def _columns(self) -> tuple[str, str, int, int, str, str, str]:
        # NULL is never equal to NULL, so a key column holds '' or 0 for "absent"; the
        # checks above keep those values free for that meaning.
        return (
            self.component,
            self.component_instance or "",
            self.evse or 0,
            self.connector or 0,
            self.variable,
            self.variable_instance or "",
            self.attribute,
        )

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> DeviceVariableKey:
        return cls(
            component=row["component"],
            component_instance=row["component_instance"] or None,
            evse=row["evse"] or None,
            connector=row["connector"] or None,
            variable=row["variable"],
            variable_instance=row["variable_instance"] or None,
            attribute=row["attribute"],
        )


_DEVICE_VARIABLE_COLUMNS = (
    "component, component_instance, evse, connector, variable, variable_instance, attribute"
)


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


def _migrate_v2(conn: sqlite3.Connection) -> None:
    statements = [
        # A message the CSMS refused for good is kept as a dead letter instead of deleted,
        # so no money-bearing message disappears silently.
        "ALTER TABLE outbox ADD COLUMN failed_at TEXT",
        "ALTER TABLE outbox ADD COLUMN last_error TEXT",
        # The OCPP local authorization list (SendLocalList); its version is in ``state``.
        """CREATE TABLE local_auth_list (
            id_tag TEXT PRIMARY KEY COLLATE NOCASE,
            status TEXT NOT NULL,
            expiry TEXT,
            parent_id_tag TEXT
        ) WITHOUT ROWID""",
    ]
    for statement in statements:
        conn.execute(statement)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    statements = [
        # Each queued message and each transaction belongs to the OCPP version it was made
        # in: an agent switched to the other version keeps them (never sends them in the
        # wrong words) and delivers them when switched back.
        "ALTER TABLE outbox ADD COLUMN protocol TEXT NOT NULL DEFAULT '1.6'",
        "ALTER TABLE transactions ADD COLUMN protocol TEXT NOT NULL DEFAULT '1.6'",
        # OCPP 2.0.1: the station makes the transaction id, and numbers the transaction's
        # events (seqNo) in the commit that queues each.
        "ALTER TABLE transactions ADD COLUMN ocpp_transaction_id TEXT",
        "ALTER TABLE transactions ADD COLUMN seq_no INTEGER NOT NULL DEFAULT 0",
        """CREATE UNIQUE INDEX transactions_by_ocpp_id ON transactions (ocpp_transaction_id)
            WHERE ocpp_transaction_id IS NOT NULL""",
        # OCPP 2.0.1 device-model values the CSMS set (SetVariables); they win over the
        # config's [ocpp201] at start. A component or variable without an instance, a
        # component without an EVSE or connector, has '' or 0 in that column (see
        # DeviceVariableKey).
        """CREATE TABLE device_variables (
            component TEXT NOT NULL,
            component_instance TEXT NOT NULL,
            evse INTEGER NOT NULL,
            connector INTEGER NOT NULL,
            variable TEXT NOT NULL,
            variable_instance TEXT NOT NULL,
            attribute TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (component, component_instance, evse, connector,
                         variable, variable_instance, attribute)
        ) WITHOUT ROWID""",
    ]
    for statement in statements:
        conn.execute(statement)


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v1, _migrate_v2, _migrate_v3]

_TX_COLUMNS = (
    "local_id, connector_id, id_tag, meter_start_wh, started_at, transaction_id,"
    " reservation_id, last_meter_wh, last_meter_at, meter_stop_wh, stopped_at,"
    " stop_reason, stop_id_tag, protocol, ocpp_transaction_id, seq_no"
)
_OUTBOX_COLUMNS = (
    "seq, message_id, action, payload, tx_local_id, attempts, created_at, failed_at, last_error,"
    " protocol"
)

Message = tuple[str, dict[str, Any]] | Callable[[int], tuple[str, dict[str, Any]]]
"""A message queued with a transaction's record: ``(action, payload)``, or a function that
makes it from the transaction's next seqNo (OCPP 2.0.1), which is then used up."""


def _is_full(exc: BaseException) -> bool:
    """Whether ``exc`` means the disk, or the database's page limit, ran out of space."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is damaged or no database at all.

    Busy, I/O, permission and other operational errors do not count: they say nothing about
    the file's contents, and a good database must never be moved aside because of them.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError


def _store_error(what: str, exc: BaseException) -> StoreError:
    """``what: exc`` as :class:`StoreFullError` when space ran out, else :class:`StoreError`."""
    cls = StoreFullError if _is_full(exc) else StoreError
    return cls(f"{what}: {exc}")


def _encode(payload: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities are refused (ValueError) since JSON has no such values."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _text(value: object) -> str:
    """A value for a TEXT column that must hold text: anything else is refused, not coerced
    (SQLite would store an int as an int, and a Secret not at all)."""
    if not isinstance(value, str):
        raise StoreError(f"a device-model value is a string, not {type(value).__name__}")
    return value


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
        failed_at=row["failed_at"],
        last_error=row["last_error"],
        protocol=row["protocol"],
    )


def _auth_row(row: sqlite3.Row) -> AuthCacheRow:
    return AuthCacheRow(
        id_tag=row["id_tag"],
        status=row["status"],
        expiry=row["expiry"],
        parent_id_tag=row["parent_id_tag"],
    )


def _transaction_row(row: sqlite3.Row) -> TransactionRow:
    return TransactionRow(*row)


def _insert_transaction_data(
    conn: sqlite3.Connection, local_id: int, meter_value: dict[str, Any]
) -> None:
    """Keep a MeterValue for the session's StopTransaction transactionData."""
    conn.execute(
        "INSERT INTO transaction_data (local_id, meter_value) VALUES (?, ?)",
        (local_id, _encode(meter_value)),
    )


def _load_transaction(conn: sqlite3.Connection, local_id: int) -> TransactionRow:
    row = conn.execute(
        f"SELECT {_TX_COLUMNS} FROM transactions WHERE local_id = ?", (local_id,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no transaction with local id {local_id}")
    return _transaction_row(row)


class _Undo(Exception):
    """Raised inside :meth:`Store._write` to roll back a change that turned out unwanted."""


def _listed(conn: sqlite3.Connection, id_tag: str) -> bool:
    found = conn.execute("SELECT 1 FROM local_auth_list WHERE id_tag = ?", (id_tag,)).fetchone()
    return found is not None


def _local_list_size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM local_auth_list").fetchone()[0])


def _local_list_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT value FROM state WHERE key = ?", (_LOCAL_LIST_VERSION_KEY,)
    ).fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except ValueError as exc:
        raise StoreError(
            f"state {_LOCAL_LIST_VERSION_KEY} holds {row[0]!r}, not a version number"
        ) from exc


def _local_list_changed(conn: sqlite3.Connection, version: int) -> None:
    """Finish a list update: record ``version`` and drop listed tags from the cache."""
    conn.execute(
        "INSERT INTO state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_LOCAL_LIST_VERSION_KEY, str(int(version))),
    )
    conn.execute("DELETE FROM auth_cache WHERE id_tag IN (SELECT id_tag FROM local_auth_list)")


class Store:
    """The agent's durable state in ``data_dir/cpagent.db``.

    Lifecycle: ``Store(data_dir)`` does no I/O; :meth:`open` locks the directory and opens
    and migrates the database; :meth:`close` releases both. Methods called while the store
    is not open raise :class:`StoreError`, as does any SQLite or OS failure, chained to
    its cause; when the failure is a full disk it is :class:`StoreFullError`. Timestamps are
    stored exactly as given (RFC 3339 text).

    ``recovered_from`` is the path a damaged database was moved aside to by the last
    :meth:`open`, else None.
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
        self.recovered_from: Path | None = None
        self._quick_removals: int | None = None
        """Deletions :meth:`remove_answered` made on the caller's thread since the worker's
        last checkpoint; None while the next one must go through the worker."""
        self._unsynced_removals = False
        """Whether deletions by :meth:`remove_answered` may not be on the disk yet."""
        self._deleter: sqlite3.Connection | None = None
        """The connection of :meth:`remove_answered` (``synchronous=NORMAL``, never
        checkpointing), opened at its first use; every other access uses ``_conn``."""

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Lock ``data_dir``, open the database and bring its schema up to date.

        Raises :class:`AlreadyRunningError` if another process (or another ``Store`` in
        this one) holds the directory, without touching the database, and
        :class:`StoreError` for anything else that goes wrong; on failure nothing stays
        open or locked.

        A file that is no database or fails ``PRAGMA quick_check`` is moved aside and an
        empty database takes its place (see :meth:`_open_database`); a sound database
        written by a newer cpagent raises StoreError and stays where it is.
        """
        with self._mutex:
            if self._conn is not None:
                raise StoreError(f"store {self.path} is already open")
            self.recovered_from = None
            self._make_data_dir()
            self._acquire_lock()
            try:
                self._conn = self._open_database()
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
            deleter, self._deleter = self._deleter, None
            if deleter is not None:  # first: the last connection to close checkpoints
                try:
                    deleter.close()
                except sqlite3.Error as exc:
                    log.warning("closing %s: %s", self.path, exc)
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
            raise _store_error(f"cannot create data directory {self.data_dir}", exc) from exc

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise _store_error(f"cannot open lock file {self.lock_path}", exc) from exc
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
            raise _store_error(f"cannot write lock file {self.lock_path}", exc) from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def _open_database(self) -> sqlite3.Connection:
        """Check the file's integrity, then connect and configure the connection.

        A file that fails the check cannot heal by restarting, and a charge point that
        refuses to start over it stays out of service until someone arrives: so it is moved
        aside (see :meth:`_move_aside`), reported in one ERROR line and in
        :attr:`recovered_from`, and an empty database is created in its place. The queue and
        the sessions it held are then gone from the agent, but not from the disk.
        """
        self._create_file()
        problem = self._integrity_problem()
        if problem is not None:
            moved = self._move_aside()
            self.recovered_from = moved
            log.error(
                "%s: database failed its integrity check: %s; moved aside to %s;"
                " starting with an empty store",
                self.path,
                problem,
                moved,
            )
            self._create_file()
        try:
            conn = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _store_error(f"cannot open database {self.path}", exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal_mode is %s, WAL is not available here", self.path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        except sqlite3.Error as exc:
            conn.close()
            raise _store_error(f"cannot open database {self.path}", exc) from exc
        return conn

    def _create_file(self) -> None:
        """Create ``cpagent.db`` if missing, so that it (and the WAL files SQLite derives
        from its mode) is not world-readable: configuration keys may hold credentials."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
        except OSError as exc:
            raise _store_error(f"cannot open database {self.path}", exc) from exc

    def _integrity_problem(self) -> str | None:
        """What ``PRAGMA quick_check`` finds wrong with the file, or None when it is sound.

        This is the first access to the file, so a file that is no database at all shows up
        here too. quick_check verifies every page and b-tree but skips comparing indexes
        with their tables, which keeps it cheap enough for every start. Errors that say
        nothing about the file's contents (busy, I/O, permissions) raise StoreError: a
        sound database must never be moved aside because of them.

        The check runs on a read-only connection of its own: closing a read-write one
        checkpoints the WAL and deletes it, and a damaged database's WAL is to be kept as
        found.
        """
        try:
            try:
                results = self._quick_check(read_only=True)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_READONLY_ROLLBACK:
                    raise
                # A write interrupted in rollback-journal mode left a hot journal that only a
                # read-write connection may roll back; in that mode there is no WAL to keep.
                results = self._quick_check(read_only=False)
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                return str(exc)
            raise _store_error(f"cannot open database {self.path}", exc) from exc
        if results == ["ok"]:
            return None
        shown = [" ".join(result.split()) for result in results[:3]]
        more = f" (and {len(results) - 3} more)" if len(results) > 3 else ""
        return "; ".join(shown) + more

    def _quick_check(self, *, read_only: bool) -> list[str]:
        mode = "ro" if read_only else "rw"
        uri = f"file:{urllib.parse.quote(os.fspath(self.path.absolute()))}?mode={mode}"
        conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        try:
            return [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _move_aside(self) -> Path:
        """Rename ``cpagent.db`` to ``cpagent.db.corrupt-<UTC time>`` and return the new path.

        The ``-wal`` and ``-shm`` companions, where present, move along under the new name
        plus their usual ending, so SQLite opening the moved-aside file still finds its WAL
        and the commits not yet checkpointed into it. They move first: a WAL left beside the
        fresh database would be taken for its own. An existing name is never overwritten.
        """
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        taken = 0
        try:
            while any(os.path.lexists(f"{target}{end}") for end in ("", *_COMPANION_SUFFIXES)):
                taken += 1
                target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{taken}")
            for end in _COMPANION_SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{self.path}{end}", f"{target}{end}")
            os.rename(self.path, target)
            fd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot move damaged database {self.path} aside: {exc}") from exc
        return target

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
            raise _store_error(f"cannot migrate database {self.path}", exc) from exc

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
                raise _store_error(f"database {self.path}", exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls everything back.

        That includes running out of space, at any statement or at the commit: the error is
        then :class:`StoreFullError`, and the next write succeeds once space is back.
        """
        with self._read() as conn:
            # This commit may checkpoint the WAL, and the write after a checkpoint restarts
            # the WAL with a synced header: remove_answered leaves that to the worker.
            self._quick_removals = None
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")  # synced: with it the whole WAL before it
                self._unsynced_removals = False
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
        protocol: str = "1.6",
    ) -> OutboxRow:
        message_id = message_id if message_id is not None else str(uuid.uuid4())
        created_at = now_iso()
        cursor = conn.execute(
            "INSERT INTO outbox (message_id, action, payload, tx_local_id, attempts, created_at,"
            " protocol) VALUES (?, ?, ?, ?, 0, ?, ?)",
            (message_id, action, _encode(payload), tx_local_id, created_at, protocol),
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
            protocol=protocol,
        )

    def _queue_with(self, conn: sqlite3.Connection, local_id: int, message: Message) -> OutboxRow:
        """Queue ``message`` for transaction ``local_id`` in its version, inside a write."""
        tx = _load_transaction(conn, local_id)
        if callable(message):
            message = message(tx.seq_no)
            conn.execute(
                "UPDATE transactions SET seq_no = seq_no + 1 WHERE local_id = ?", (local_id,)
            )
        return self._insert_outbox(conn, message[0], message[1], local_id, protocol=tx.protocol)

    # -- outgoing queue ----------------------------------------------------------------

    def enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        message_id: str | None = None,
        protocol: str = "1.6",
    ) -> OutboxRow:
        """Queue a CALL for sending; it is on disk when this returns.

        ``message_id`` (a fresh uuid4 unless given) is the OCPP-J message id, kept across
        resends so the CSMS can recognise a duplicate. A reused id raises StoreError.
        """
        with self._write() as conn:
            return self._insert_outbox(conn, action, payload, tx_local_id, message_id, protocol)

    def pending(self, protocol: str | None = None) -> list[OutboxRow]:
        """Every queued CALL still to be sent, oldest first: the order they must be sent in;
        with ``protocol``, only those in that OCPP version.

        Dead letters (see :meth:`fail`) are not among them.
        """
        where = "failed_at IS NULL" + ("" if protocol is None else " AND protocol = ?")
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {where} ORDER BY seq",
                () if protocol is None else (protocol,),
            ).fetchall()
            return [_outbox_row(row) for row in rows]

    def pending_by_protocol(self) -> dict[str, int]:
        """How many CALLs wait to be sent, per OCPP version (dead letters not counted)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT protocol, COUNT(*) FROM outbox WHERE failed_at IS NULL GROUP BY protocol"
            ).fetchall()
            return {row[0]: int(row[1]) for row in rows}

    def remove(self, seq: int) -> None:
        """Drop a CALL once its CALLRESULT (or a final CALLERROR) arrived; unknown is a no-op."""
        with self._write() as conn:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    async def remove_answered(self, seq: int) -> None:
        """Drop a CALL the CSMS has answered, as :meth:`remove` does, on the loop when that
        cannot wait for the disk, else in the worker. For the replay of a long queue: one
        deletion per message, each otherwise a synced commit and two thread switches.

        How it differs from :meth:`remove`: the deletion is committed in the calling thread,
        without waiting for the worker, on a second connection to the same database that
        commits with ``synchronous=NORMAL`` (see :meth:`_open_deleter`). When this returns
        the commit is in the WAL file, in the kernel's page cache, not necessarily on the
        disk. Why that loses and reorders nothing:

        - Only answered messages are deleted this way (the caller's contract: after the
          CALLRESULT, and after the version's policy acted on it), so a deletion that does
          not survive can only bring back a message the CSMS already has.
        - ``kill -9``: the commit is in the WAL file already, which the kernel keeps; the
          process dying loses none of it. As before, only the one CALL in flight is sent
          again.
        - Power cut: deletions since the WAL was last synced may be undone. Those rows
          come back exactly as stored (message id, payload, seq), and they are the oldest
          rows, answered in seq order: after the restart they are sent again first, in
          their order, under their message ids, which lets the CSMS recognise them
          (interface.md: delivered in order, nothing lost; a re-send keeps its id). At
          most :data:`QUICK_REMOVALS_PER_CHECKPOINT` of them, since each checkpoint (below)
          syncs the WAL first, and none once the queue has run empty: the delivery then
          calls :meth:`settle_answered`.
        - Nothing written durably becomes less durable. Every other write still commits
          with ``synchronous=FULL`` on the main connection, which syncs the whole WAL up
          to its own commit, earlier quick deletions included; a queued message is
          therefore on disk before it can be sent, as before. The WAL's frames carry
          chained checksums, so recovery after a power cut stops at the first frame not
          fully written, after every synced one.

        The loop never waits on ``fsync`` for it: the deletion runs here only when the
        store is free (else the worker does it, ordered behind what it is doing) and never
        checkpoints (``wal_autocheckpoint=0`` on that connection). The first write after
        a checkpoint restarts the WAL and syncs its header, so after any write by the
        worker (which may have checkpointed) and after every
        :data:`QUICK_REMOVALS_PER_CHECKPOINT` deletions here, the next deletion goes to the
        worker, which checkpoints and then deletes with ``synchronous=FULL``. That bounds
        the WAL as the automatic checkpoint does. An unknown ``seq`` is a no-op.
        """
        if not self._remove_quickly(seq):
            await self.run(self._remove_checkpointed, seq)

    async def settle_answered(self) -> None:
        """Take the deletions :meth:`remove_answered` made without waiting to the disk (a
        checkpoint in the worker, which syncs the WAL first); for when the queue has run
        empty, so that a power cut long after a replay brings none of them back. Does
        nothing when there are none."""
        if self._unsynced_removals:
            await self.run(self._checkpoint_answered)

    def _checkpoint_answered(self) -> None:
        with self._mutex:
            self._checkpoint_wal()
            self._unsynced_removals = False
            # The next write may restart the WAL, syncing its header: the worker's turn.
            self._quick_removals = None

    def _checkpoint_wal(self) -> None:
        """Checkpoint the WAL on the main connection, which syncs it first: every quick
        deletion before is then on disk."""
        with self._read() as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _remove_quickly(self, seq: int) -> bool:
        """The deletion of :meth:`remove_answered` without waiting; False when it cannot
        be done so and nothing was done."""
        if not self._mutex.acquire(blocking=False):
            return False
        try:
            done = self._quick_removals
            if self._conn is None or done is None or done >= QUICK_REMOVALS_PER_CHECKPOINT:
                return False
            self._quick_removals = None  # until this deletion is known to be complete
            try:
                deleter = self._deleter or self._open_deleter()
                self._unsynced_removals = True
                deleter.execute("DELETE FROM outbox WHERE seq = ?", (seq,))  # autocommit
            except sqlite3.Error as exc:
                raise _store_error(f"database {self.path}", exc) from exc
            self._quick_removals = done + 1
            return True
        finally:
            self._mutex.release()

    def _open_deleter(self) -> sqlite3.Connection:
        """The second connection, for deletions of answered messages only. It commits
        with ``synchronous=NORMAL`` (written to the WAL, not synced) and never
        checkpoints; ``_conn`` stays at ``synchronous=FULL`` for everything else. Both
        are used under the store's lock, so their writes never overlap."""
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA cache_size=-256")  # KiB: it only walks to the queue head
        except BaseException:
            conn.close()
            raise
        self._deleter = conn
        return conn

    def _remove_checkpointed(self, seq: int) -> None:
        """In the worker: checkpoint the WAL (syncing it first, so every quick deletion
        before is on disk), then delete ``seq`` in a synced commit, which restarts the WAL
        if the checkpoint emptied it; quick deletions may follow."""
        with self._mutex:
            self._checkpoint_wal()
            self.remove(seq)
            # Nothing else holds a read of the WAL (both connections work under the lock),
            # so the WAL restarted here if it could; without a new checkpoint, which only
            # a write by the worker may make, a quick deletion never restarts it.
            self._quick_removals = 0

    def bump_attempts(self, seq: int) -> int:
        """Count one more send attempt and return the new count."""
        with self._write() as conn:
            conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            row = conn.execute("SELECT attempts FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise StoreError(f"no queued message with seq {seq}")
            return int(row[0])

    def queue_depth(self) -> int:
        """How many CALLs :meth:`pending` holds (dead letters not counted)."""
        with self._read() as conn:
            row = conn.execute("SELECT COUNT(*) FROM outbox WHERE failed_at IS NULL").fetchone()
            return int(row[0])

    def fail(self, seq: int, error: str) -> None:
        """Turn a queued CALL into a dead letter: kept, but no longer sent.

        For a message the CSMS refused TransactionMessageAttempts times: dropping it would
        lose a billing record without trace, so it stays, stamped with the time and
        ``error``, until deliberately removed with :meth:`remove`. Failing a dead letter
        again updates both. An unknown ``seq`` raises StoreError.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET failed_at = ?, last_error = ? WHERE seq = ?",
                (now_iso(), error, seq),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"no queued message with seq {seq}")

    def failed(self) -> list[OutboxRow]:
        """The dead letters, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE failed_at IS NOT NULL ORDER BY seq"
            ).fetchall()
            return [_outbox_row(row) for row in rows]

    def failed_count(self) -> int:
        """How many dead letters are kept."""
        with self._read() as conn:
            row = conn.execute("SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL").fetchone()
            return int(row[0])

    # -- transactions ------------------------------------------------------------------

    def start_transaction(
        self,
        *,
        connector_id: int,
        id_tag: str,
        meter_start_wh: int,
        started_at: str,
        reservation_id: int | None = None,
        message: Message | None = None,
        data: dict[str, Any] | None = None,
        protocol: str = "1.6",
        ocpp_transaction_id: str | None = None,
    ) -> tuple[TransactionRow, OutboxRow | None]:
        """Record a new session and, in the same commit, queue its ``message`` and keep
        ``data`` (its Transaction.Begin MeterValue for the StopTransaction).

        Either all rows exist afterwards or none does. The connector must not have an
        open transaction already, nor may ``ocpp_transaction_id`` repeat (StoreError).
        """
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, meter_start_wh, started_at,"
                " reservation_id, last_meter_wh, last_meter_at, protocol, ocpp_transaction_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    connector_id,
                    id_tag,
                    meter_start_wh,
                    started_at,
                    reservation_id,
                    meter_start_wh,
                    started_at,
                    protocol,
                    ocpp_transaction_id,
                ),
            )
            assert cursor.lastrowid is not None
            local_id = cursor.lastrowid
            if data is not None:
                _insert_transaction_data(conn, local_id, data)
            outbox = None if message is None else self._queue_with(conn, local_id, message)
            return _load_transaction(conn, local_id), outbox

    def stop_transaction(
        self,
        local_id: int,
        *,
        meter_stop_wh: int,
        stopped_at: str,
        reason: str,
        stop_id_tag: str | None,
        message: Message | None = None,
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
            outbox = None if message is None else self._queue_with(conn, local_id, message)
            return _load_transaction(conn, local_id), outbox

    def record_meter(
        self,
        local_id: int,
        meter_wh: int,
        at: str,
        message: Message | None = None,
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
                _insert_transaction_data(conn, local_id, data)
            if message is None:
                return None
            return self._queue_with(conn, local_id, message)

    def queue_transaction_message(
        self, local_id: int, message: Message, *, id_tag: str | None = None
    ) -> OutboxRow:
        """Queue ``message`` for an open transaction (an OCPP 2.0.1 TransactionEvent
        Updated that is no meter reading: a charging state, an id token), and with
        ``id_tag`` record the token that authorized a transaction begun without one, in
        the same commit. An unknown or stopped transaction raises StoreError and changes
        nothing."""
        with self._write() as conn:
            if not _load_transaction(conn, local_id).open:
                raise StoreError(f"transaction {local_id} is already stopped")
            if id_tag is not None:
                conn.execute(
                    "UPDATE transactions SET id_tag = ? WHERE local_id = ?", (id_tag, local_id)
                )
            return self._queue_with(conn, local_id, message)

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

    def find_ocpp_transaction(self, ocpp_transaction_id: str) -> TransactionRow | None:
        """The OCPP 2.0.1 transaction the station made as ``ocpp_transaction_id``."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE ocpp_transaction_id = ?",
                (ocpp_transaction_id,),
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

    def delete_config_key(self, key: str) -> None:
        """Forget a value the CSMS set: the key falls back to the config or its default."""
        with self._write() as conn:
            conn.execute("DELETE FROM config_keys WHERE key = ?", (key,))

    # -- device-model variables (OCPP 2.0.1) ---------------------------------------------

    def device_variables(self) -> dict[DeviceVariableKey, str]:
        """Every device-model value the CSMS has set, as its wire string, in key order."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_DEVICE_VARIABLE_COLUMNS}, value FROM device_variables"
                f" ORDER BY {_DEVICE_VARIABLE_COLUMNS}"
            ).fetchall()
            return {DeviceVariableKey._from_row(row): row["value"] for row in rows}

    def set_device_variable(self, key: DeviceVariableKey, value: str) -> None:
        """Keep the value the CSMS set for ``key``, replacing an earlier one."""
        self.set_device_variables({key: value})

    def set_device_variables(self, values: Mapping[DeviceVariableKey, str]) -> None:
        """Keep several values in one commit (the Accepted part of one SetVariables): all of
        them are on disk when this returns, or none (StoreError)."""
        with self._write() as conn:
            conn.executemany(
                f"INSERT INTO device_variables ({_DEVICE_VARIABLE_COLUMNS}, value)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ({_DEVICE_VARIABLE_COLUMNS})"
                " DO UPDATE SET value = excluded.value",
                [(*key._columns(), _text(value)) for key, value in values.items()],
            )

    def delete_device_variable(self, key: DeviceVariableKey) -> None:
        """Forget a value the CSMS set: the variable falls back to the config or its default.
        Deleting a key that holds no value is no error."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM device_variables WHERE component = ? AND component_instance = ?"
                " AND evse = ? AND connector = ? AND variable = ? AND variable_instance = ?"
                " AND attribute = ?",
                key._columns(),
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

    def cache_put(self, row: AuthCacheRow, *, unless_listed: bool = False) -> bool:
        """Insert or replace the entry for ``row.id_tag`` (id tags compare case-insensitively).

        With ``unless_listed`` a tag on the local authorization list is left out, checked in
        the same commit: OCPP 1.6 keeps listed tags out of the cache. Returns whether the
        entry was stored.
        """
        with self._write() as conn:
            if unless_listed and _listed(conn, row.id_tag):
                return False
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET"
                " id_tag = excluded.id_tag, status = excluded.status,"
                " expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag,"
                " updated_at = excluded.updated_at",
                (row.id_tag, row.status, row.expiry, row.parent_id_tag, now_iso()),
            )
            return True

    def cache_get(self, id_tag: str) -> AuthCacheRow | None:
        """The cached entry, expired or not: judging expiry is the caller's business."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT id_tag, status, expiry, parent_id_tag FROM auth_cache WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
            return None if found is None else _auth_row(found)

    def cache_clear(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM auth_cache")

    # -- local authorization list ------------------------------------------------------

    def local_list_version(self) -> int:
        """The version of the local authorization list the CSMS last sent; 0 if never."""
        with self._read() as conn:
            return _local_list_version(conn)

    def local_list_state(self) -> tuple[int, int]:
        """``(version, size)`` of the local authorization list, read together."""
        with self._read() as conn:
            version = _local_list_version(conn)
            return version, _local_list_size(conn)

    def local_list_get(self, id_tag: str) -> AuthCacheRow | None:
        """The list's entry for ``id_tag`` (compared case-insensitively), expired or not."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT id_tag, status, expiry, parent_id_tag FROM local_auth_list"
                " WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
            return None if found is None else _auth_row(found)

    def local_list_size(self) -> int:
        with self._read() as conn:
            return _local_list_size(conn)

    def local_list(self) -> list[AuthCacheRow]:
        """Every entry of the local authorization list, ordered by id tag."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id_tag, status, expiry, parent_id_tag FROM local_auth_list ORDER BY id_tag"
            ).fetchall()
            return [_auth_row(row) for row in rows]

    def local_list_replace(
        self, version: int, entries: list[AuthCacheRow], *, max_size: int | None = None
    ) -> bool:
        """A Full update: ``entries`` become the whole list at ``version``, in one commit.

        Returns False, changing nothing, when the list would hold more than ``max_size``
        entries. Two entries for the same id tag (in any case) raise StoreError and change
        nothing. Listed tags leave the authorization cache in the same commit (see
        :meth:`local_list_update`).
        """
        if max_size is not None and len(entries) > max_size:
            return False
        with self._write() as conn:
            conn.execute("DELETE FROM local_auth_list")
            conn.executemany(
                "INSERT INTO local_auth_list (id_tag, status, expiry, parent_id_tag)"
                " VALUES (?, ?, ?, ?)",
                [(e.id_tag, e.status, e.expiry, e.parent_id_tag) for e in entries],
            )
            _local_list_changed(conn, version)
        return True

    def local_list_update(
        self,
        version: int,
        entries: list[AuthCacheRow],
        removed: list[str],
        *,
        max_size: int | None = None,
    ) -> bool:
        """A Differential update, in one commit: add or replace ``entries``, drop ``removed``.

        Removals are applied after the entries, so a tag in both ends up absent; removing a
        tag that is not on the list is no error. The list is at ``version`` afterwards.
        Returns False, changing nothing, when the result would hold more than ``max_size``
        entries.

        Tags on the list, and the removed ones, leave the authorization cache in the same
        commit: the two are distinct in OCPP 1.6 and the list wins, and a cache entry kept
        underneath (or cached while the list was switched off) would come back to life when
        the CSMS removes the tag from the list.
        """
        try:
            with self._write() as conn:
                conn.executemany(
                    "INSERT INTO local_auth_list (id_tag, status, expiry, parent_id_tag)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET"
                    " id_tag = excluded.id_tag, status = excluded.status,"
                    " expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag",
                    [(e.id_tag, e.status, e.expiry, e.parent_id_tag) for e in entries],
                )
                conn.executemany(
                    "DELETE FROM local_auth_list WHERE id_tag = ?", [(tag,) for tag in removed]
                )
                if max_size is not None and _local_list_size(conn) > max_size:
                    raise _Undo
                conn.executemany(
                    "DELETE FROM auth_cache WHERE id_tag = ?", [(tag,) for tag in removed]
                )
                _local_list_changed(conn, version)
        except _Undo:
            return False
        return True
