"""Firmware downloads and diagnostics uploads over HTTP, HTTPS and FTP.

OCPP 1.6 hands the charger a location URI: UpdateFirmware a file to download, GetDiagnostics a
place to upload an archive to. :func:`download` and :func:`upload` move one file each way with
the standard library only (``http.client`` with the default SSL context, ``ftplib``), because
the board has no room for another dependency. Their contract, on a small board:

* nothing is held in memory: the file is streamed in :data:`CHUNK_BYTES` chunks;
* the event loop never blocks: the blocking work runs in a worker thread (``asyncio.to_thread``);
* every wait is bounded: each connect, send and receive gives up after ``stall_timeout_s``
  without progress (:class:`TransferError` ``Stalled`` or ``Unreachable``). A transfer that
  keeps making progress is not bounded in total; wrap the call in ``asyncio.timeout`` for that;
* cancelling the awaiting task stops the transfer: the worker checks a flag between chunks and
  the sockets it waits on are shut down, so a blocked read or write returns at once. The call
  then waits for the worker to clean up (remove the ``.part`` file) before it re-raises
  :class:`asyncio.CancelledError`; that wait is bounded by ``stall_timeout_s`` (a connect in
  progress), except for a host name lookup, which the resolver bounds (typically 5-30 s);
* every failure is a :class:`TransferError` whose ``reason`` says what went wrong and whose
  message names the URL with its password redacted (:func:`redact_url`).

Downloads follow up to :data:`MAX_REDIRECTS` HTTP redirects; uploads follow none (a redirect is
``HttpStatus``). FTP is passive mode, binary, anonymous unless the URL carries a user; its path
is relative to the login directory as RFC 1738 says (``ftp://host/a/b`` is ``a/b``, and
``ftp://host/%2Fa/b`` is ``/a/b``). There is no proxy support and no FTPS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ftplib
import functools
import http.client
import logging
import os
import secrets
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from cpagent import __version__
from cpagent.exc import CpagentError
from cpagent.fsutil import fsync_dir
from cpagent.urlredact import redact_url

__all__ = [
    "CHUNK_BYTES",
    "MAX_REDIRECTS",
    "SCHEMES",
    "TransferError",
    "TransferReason",
    "download",
    "redact_url",
    "upload",
]

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""The most a transfer reads, writes or sends at once; also how often it checks for cancel."""

MAX_REDIRECTS = 5
SCHEMES = ("http", "https", "ftp")

_USER_AGENT = f"cpagent/{__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTTP_TARGET_SAFE = "/%:@!$&'()*+,;=-._~?"
"""What stays as is in an HTTP request target: reserved characters and escapes; spaces,
controls and non-ASCII characters are percent-encoded."""

TransferReason = Literal[
    "UnsupportedScheme",
    "BadUrl",
    "Unreachable",
    "Tls",
    "NotFound",
    "HttpStatus",
    "LoginFailed",
    "Refused",
    "Stalled",
    "Truncated",
    "TooLarge",
    "DiskFull",
    "Protocol",
    "Io",
]

_T = TypeVar("_T")


class TransferError(CpagentError):
    """A download or upload failed; ``reason`` says why, in one word.

    ============================  =================================================================
    ``UnsupportedScheme``         not http, https or ftp (nothing was attempted)
    ``BadUrl``                    no host, a bad port, a line break in an FTP path
    ``Unreachable``               name lookup failed, connection refused, no answer to a connect
    ``Tls``                       TLS handshake or certificate verification failed
    ``NotFound``                  HTTP 404 or 410, FTP 550 on a download
    ``HttpStatus``                any other HTTP status that is not 2xx (``status`` holds it)
    ``LoginFailed``               FTP 530: user or password refused
    ``Refused``                   any other FTP error reply (e.g. 553 on a STOR)
    ``Stalled``                   no progress for ``stall_timeout_s``
    ``Truncated``                 the connection closed or broke before the transfer completed
    ``TooLarge``                  the file is (or announces it is) larger than ``max_bytes``
    ``DiskFull``                  it does not fit in the free space (less the margin), or ENOSPC
    ``Protocol``                  the server's answer is not HTTP or FTP
    ``Io``                        a local file cannot be read, written or renamed
    ============================  =================================================================

    ``url`` is the URL with its secrets redacted; the message is ``"<verb> <url>: <cause>"``.
    """

    def __init__(
        self,
        reason: TransferReason,
        verb: str,
        url: str,
        cause: str,
        *,
        status: int | None = None,
    ) -> None:
        self.url = redact_url(url)
        super().__init__(f"{verb} {self.url}: {cause}")
        self.reason: TransferReason = reason
        self.status = status


async def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    stall_timeout_s: float = 30.0,
    free_margin_bytes: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Download ``url`` (http, https or ftp) to ``dest`` and return its size in bytes.

    The file is streamed to ``<dest>.part`` in ``dest``'s directory (a stale one is replaced),
    fsynced and renamed over ``dest``, so ``dest`` is either the complete new file or untouched:
    on any failure or cancellation the ``.part`` file is removed. ``dest``'s directory must
    exist. Only one transfer at a time may target a given ``dest``.

    The file may hold at most ``max_bytes`` (``TooLarge``) and must leave ``free_margin_bytes``
    free on the disk (``DiskFull``); a size the server announces (Content-Length, FTP SIZE) is
    checked before anything is written, and the bytes received are counted against both limits
    as they arrive. ``ssl_context`` replaces the default one (system CAs, hostname checked),
    e.g. to trust a private CA. Raises :class:`TransferError`; see the module for the bounds.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes: must not be negative, not {max_bytes!r}")
    if free_margin_bytes < 0:
        raise ValueError(f"free_margin_bytes: must not be negative, not {free_margin_bytes!r}")
    worker = _Worker("download", url, stall_timeout_s, ssl_context)
    target = worker.parse(url)
    started = time.monotonic()
    count = await _in_thread(
        worker.job,
        functools.partial(worker.download, target, dest, max_bytes, free_margin_bytes),
    )
    log.info(
        "downloaded %s to %s: %d bytes in %.1f s",
        worker.redacted,
        dest,
        count,
        time.monotonic() - started,
    )
    return count


async def upload(
    url: str,
    source: Path,
    *,
    method: str = "PUT",
    stall_timeout_s: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Upload the file ``source`` to ``url`` (http, https or ftp).

    HTTP: ``method`` ``"PUT"`` sends the file as the raw body (application/octet-stream);
    ``"POST"`` sends it as multipart/form-data in a field named ``file`` with ``source``'s name
    as file name, which is what most diagnostics servers expect. Either way the body is
    streamed with a Content-Length, and any 2xx answer is success. FTP: ``STOR`` to the URL's
    path, with ``source``'s name appended when the path ends with ``/``; ``method`` is ignored.

    ``source`` must not change while it is sent (a file that shrinks fails with ``Io``).
    Raises :class:`TransferError`; see the module for the bounds.
    """
    method = method.upper()
    if method not in ("PUT", "POST"):
        raise ValueError(f"method: must be PUT or POST, not {method!r}")
    worker = _Worker("upload", url, stall_timeout_s, ssl_context)
    target = worker.parse(url)
    started = time.monotonic()
    size = await _in_thread(worker.job, functools.partial(worker.upload, target, source, method))
    log.info(
        "uploaded %s to %s: %d bytes in %.1f s",
        source,
        worker.redacted,
        size,
        time.monotonic() - started,
    )


async def _in_thread(job: _Job, work: Callable[[], _T]) -> _T:
    """Run ``work`` in a worker thread; on cancellation, stop it and wait until it has."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    # Retrieve its outcome even if a second cancellation stops us from awaiting it.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        job.cancel()
        with contextlib.suppress(Exception):
            await task
        raise


class _Cancelled(Exception):
    """Raised in the worker thread once the awaiting task was cancelled; never escapes."""


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own method: SSLSocket.shutdown would also drop its SSL object under the
    # feet of the worker thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Job:
    """How the event loop stops a worker thread.

    ``cancel`` sets a flag the worker checks between chunks and shuts down the sockets the
    worker registered, which wakes a blocked ``recv``/``send`` at once. The lock makes sure a
    socket is never shut down after the worker forgot and closed it (its fd may be reused).
    """

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise _Cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            for sock in self._sockets:
                _shutdown(sock)

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._cancelled.is_set():
                _shutdown(sock)

    def forget(self, sock: socket.socket | None = None) -> None:
        """Stop watching ``sock`` (every socket if None); call it before closing them."""
        with self._lock:
            if sock is None:
                self._sockets.clear()
            elif sock in self._sockets:
                self._sockets.remove(sock)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    """HTTP: the request target (path and query, escaped); FTP: the file path, unescaped."""
    user: str | None
    password: str | None


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _open_part(path: Path) -> BinaryIO:
    """Create the ``.part`` file; it must not exist (the caller removed any stale one)."""
    return open(path, "xb")


class _Worker:
    """One transfer: the blocking code that runs in the worker thread, and its error mapping."""

    def __init__(
        self, verb: str, url: str, stall_timeout_s: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        if not stall_timeout_s > 0:
            raise ValueError(f"stall_timeout_s: must be positive, not {stall_timeout_s!r}")
        self.verb = verb
        self.url = url
        self.redacted = redact_url(url)
        self.stall_timeout_s = stall_timeout_s
        self.ssl_context = ssl_context
        self.job = _Job()
        self.location = url
        """Where the last request went: ``url`` or where it redirected to."""

    def error(
        self, reason: TransferReason, cause: str, *, status: int | None = None
    ) -> TransferError:
        if self.location != self.url:
            cause += f" (redirected to {redact_url(self.location)})"
        return TransferError(reason, self.verb, self.url, cause, status=status)

    def parse(self, url: str) -> _Target:
        scheme = url.partition(":")[0].lower() if ":" in url else ""
        if scheme not in SCHEMES:
            shown = f"{scheme!r} is not" if scheme else "no scheme:"
            raise self.error("UnsupportedScheme", f"{shown} one of {', '.join(SCHEMES)}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise self.error("BadUrl", f"malformed URL: {err}") from None
        if not parts.hostname:
            raise self.error("BadUrl", "no host")
        if any(c <= " " or c == "\x7f" for c in parts.hostname):
            raise self.error("BadUrl", "the host holds a space or control character")
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if scheme == "ftp":
            path = unquote(parts.path.removeprefix("/"))
            if any(c in path for c in "\r\n\0"):
                raise self.error("BadUrl", "the path holds a line break or NUL")
            if self.verb == "download" and (not path or path.endswith("/")):
                raise self.error("BadUrl", "no file name in the path")
            default_port = 21
        else:
            path = quote(parts.path or "/", safe=_HTTP_TARGET_SAFE)
            if parts.query:
                path += "?" + quote(parts.query, safe=_HTTP_TARGET_SAFE)
            default_port = 443 if scheme == "https" else 80
        return _Target(scheme, parts.hostname, port or default_port, path, user, password)

    @contextlib.contextmanager
    def connecting(self, host: str) -> Iterator[None]:
        """Map errors of a connect (and TLS handshake) to ``Unreachable`` or ``Tls``."""
        try:
            yield
        except OSError as err:
            if self.job.cancelled:
                raise _Cancelled from err
            if isinstance(err, ssl.SSLError):
                raise self._tls_error(err) from err
            if isinstance(err, socket.gaierror):
                raise self.error("Unreachable", f"cannot resolve {host}: {err.strerror}") from err
            if isinstance(err, TimeoutError):
                cause = f"no answer from {host} within {self.stall_timeout_s:g} s"
                raise self.error("Unreachable", cause) from err
            if isinstance(err, ConnectionRefusedError):
                raise self.error("Unreachable", f"{host} refused the connection") from err
            cause = f"cannot connect to {host}: {err.strerror or err}"
            raise self.error("Unreachable", cause) from err

    @contextlib.contextmanager
    def transferring(self) -> Iterator[None]:
        """Map errors once connected: network failures, HTTP garbage, FTP error replies."""
        try:
            yield
        except (OSError, EOFError, http.client.HTTPException, ftplib.Error) as err:
            if self.job.cancelled:
                raise _Cancelled from err
            raise self._transfer_error(err) from err

    def _transfer_error(self, err: Exception) -> TransferError:
        if isinstance(err, ssl.SSLError):
            return self._tls_error(err)
        if isinstance(err, TimeoutError):
            return self.error("Stalled", f"no progress for {self.stall_timeout_s:g} s")
        if isinstance(err, http.client.IncompleteRead):
            return self.error("Truncated", f"connection closed after {len(err.partial)} bytes")
        if isinstance(err, http.client.RemoteDisconnected):
            return self.error("Truncated", "the server closed the connection without answering")
        if isinstance(err, http.client.HTTPException):
            return self.error("Protocol", f"not an HTTP answer: {err!r}")
        if isinstance(err, (ftplib.error_perm, ftplib.error_temp)):
            return self._ftp_reply_error(str(err).strip())
        if isinstance(err, ftplib.Error):
            return self.error("Protocol", f"unexpected FTP reply: {str(err).strip()!r}")
        if isinstance(err, EOFError):
            return self.error("Truncated", "the server closed the connection")
        assert isinstance(err, OSError)
        return self.error("Truncated", f"connection lost: {err.strerror or err}")

    def _ftp_reply_error(self, reply: str) -> TransferError:
        code = reply[:3]
        if code == "530":
            return self.error("LoginFailed", f"FTP {reply}")
        if code == "550" and self.verb == "download":
            return self.error("NotFound", f"FTP {reply}")
        if code in ("426", "451"):
            return self.error("Truncated", f"FTP {reply}")
        return self.error("Refused", f"FTP {reply}")

    def _tls_error(self, err: ssl.SSLError) -> TransferError:
        if isinstance(err, ssl.SSLCertVerificationError):
            return self.error("Tls", f"certificate not trusted: {err.verify_message}")
        return self.error("Tls", f"TLS failed: {err.reason or err}")

    def _local_error(self, what: str, err: OSError) -> TransferError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return self.error("DiskFull", f"{what}: {err.strerror}")
        return self.error("Io", f"{what}: {err.strerror or err}")

    # --- download ---

    def download(self, target: _Target, dest: Path, max_bytes: int, margin: int) -> int:
        part = dest.with_name(dest.name + ".part")
        done = False
        try:
            try:
                part.unlink(missing_ok=True)
                budget = shutil.disk_usage(dest.parent).free - margin
            except OSError as err:
                raise self._local_error(f"cannot prepare {part}", err) from err
            source: _Source
            if target.scheme == "ftp":
                source = _FtpSource(self, target)
            else:
                source = _HttpSource(self, target)
            try:
                count = self._receive(source, part, max_bytes, budget)
            finally:
                self.job.forget()
                source.close()
            self.job.check()
            try:
                os.replace(part, dest)
            except OSError as err:
                raise self._local_error(f"cannot rename {part} to {dest.name}", err) from err
            done = True
            fsync_dir(dest.parent)
            return count
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    part.unlink(missing_ok=True)

    def _receive(self, source: _Source, part: Path, max_bytes: int, budget: int) -> int:
        size = source.size
        if size is not None and size > max_bytes:
            raise self.error("TooLarge", f"{size} bytes announced, the limit is {max_bytes}")
        if size is not None and size > budget:
            raise self.error("DiskFull", f"{size} bytes announced, {max(budget, 0)} may be used")
        try:
            out = _open_part(part)
        except OSError as err:
            raise self._local_error(f"cannot create {part}", err) from err
        try:
            count = 0
            while True:
                self.job.check()
                with self.transferring():
                    chunk = source.read(CHUNK_BYTES)
                if not chunk:
                    break
                count += len(chunk)
                if count > max_bytes:
                    raise self.error("TooLarge", f"more than {max_bytes} bytes")
                if count > budget:
                    raise self.error("DiskFull", f"more than the {max(budget, 0)} bytes free")
                try:
                    out.write(chunk)
                except OSError as err:
                    raise self._local_error(f"cannot write {part}", err) from err
            if size is not None and count < size:
                raise self.error("Truncated", f"connection closed after {count} of {size} bytes")
            with self.transferring():
                source.finish()
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as err:
                raise self._local_error(f"cannot write {part}", err) from err
        finally:
            # Once fsynced, closing cannot lose data; after a failure its error would hide ours.
            with contextlib.suppress(OSError):
                out.close()
        return count

    # --- upload ---

    def upload(self, target: _Target, source: Path, method: str) -> int:
        try:
            file = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as err:
            raise self._local_error(f"cannot read {source}", err) from err
        try:
            size = os.fstat(file.fileno()).st_size
            if target.scheme == "ftp":
                self._ftp_upload(target, file, size, source.name)
            else:
                self._http_upload(target, file, size, source.name, method)
        finally:
            self.job.forget()
            file.close()
        return size

    def _read_source(self, file: BinaryIO, remaining: int) -> bytes:
        self.job.check()
        try:
            data = file.read(min(CHUNK_BYTES, remaining))
        except OSError as err:
            raise self._local_error(f"cannot read {file.name}", err) from err
        if not data:
            raise self.error("Io", f"{file.name} shrank while it was sent")
        return data

    def _http_upload(
        self, target: _Target, file: BinaryIO, size: int, name: str, method: str
    ) -> None:
        head = tail = b""
        content_type = "application/octet-stream"
        if method == "POST":
            boundary = f"cpagent-{secrets.token_hex(16)}"
            content_type = f"multipart/form-data; boundary={boundary}"
            filename = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
            head = (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            tail = f"\r\n--{boundary}--\r\n".encode()
        conn = self._http_connect(target)
        response: http.client.HTTPResponse | None = None
        try:
            with self.transferring():
                conn.putrequest(method, target.path)
                headers = self._http_headers(target)
                headers["Content-Type"] = content_type
                headers["Content-Length"] = str(len(head) + size + len(tail))
                for key, value in headers.items():
                    conn.putheader(key, value)
                conn.endheaders()
            try:
                with self.transferring():
                    conn.send(head)
                    remaining = size
                    while remaining:
                        data = self._read_source(file, remaining)
                        conn.send(data)
                        remaining -= len(data)
                    conn.send(tail)
            except TransferError as err:
                if err.reason != "Truncated":
                    raise
                # The server may have answered (say 404 or 413) and closed without reading.
                try:
                    response = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    raise err from None
                if 200 <= response.status < 300:
                    raise
            else:
                with self.transferring():
                    response = conn.getresponse()
            self._check_status(response)
        finally:
            self._close_http(conn, response)

    def _ftp_upload(self, target: _Target, file: BinaryIO, size: int, name: str) -> None:
        path = target.path
        if not path or path.endswith("/"):
            path += name
        ftp = self.ftp_login(target)
        try:
            with self.transferring():
                ftp.voidcmd("TYPE I")
                conn = ftp.transfercmd(f"STOR {path}")
                self.job.watch(conn)
                try:
                    remaining = size
                    while remaining:
                        data = self._read_source(file, remaining)
                        conn.sendall(data)
                        remaining -= len(data)
                finally:
                    self.job.forget(conn)
                    conn.close()
                ftp.voidresp()
                with contextlib.suppress(OSError, EOFError, ftplib.Error):
                    ftp.quit()
        finally:
            self.job.forget()
            ftp.close()

    # --- protocols ---

    def _http_headers(self, target: _Target) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "Connection": "close"}
        if target.user is not None:
            credentials = f"{target.user}:{target.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        return headers

    def _http_connect(self, target: _Target) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            context = self.ssl_context or _default_ssl_context()
            conn = http.client.HTTPSConnection(
                target.host, target.port, timeout=self.stall_timeout_s, context=context
            )
        else:
            conn = http.client.HTTPConnection(
                target.host, target.port, timeout=self.stall_timeout_s
            )
        self.job.check()
        with self.connecting(target.host):
            conn.connect()
        self.job.watch(conn.sock)
        return conn

    def http_get(
        self, target: _Target
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET ``target``, following redirects; return the 2xx response, its body unread."""
        for _ in range(MAX_REDIRECTS + 1):
            conn = self._http_connect(target)
            response: http.client.HTTPResponse | None = None
            try:
                with self.transferring():
                    conn.putrequest("GET", target.path)
                    for key, value in self._http_headers(target).items():
                        conn.putheader(key, value)
                    conn.endheaders()
                    response = conn.getresponse()
                location = response.getheader("Location")
                if response.status not in _REDIRECTS or not location:
                    self._check_status(response)
                    return conn, response
            except BaseException:
                self._close_http(conn, response)
                raise
            self._close_http(conn, response)
            self.location = urljoin(self.location, location)
            target = self.parse(self.location)
            if target.scheme == "ftp":
                raise self.error("UnsupportedScheme", "redirected to FTP")
        raise self.error("HttpStatus", f"more than {MAX_REDIRECTS} redirects")

    def _close_http(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse | None
    ) -> None:
        # The response holds the socket open (conn.close() alone does not close it).
        self.job.forget()
        if response is not None:
            response.close()
        conn.close()

    def _check_status(self, response: http.client.HTTPResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        reason: TransferReason = "NotFound" if status in (404, 410) else "HttpStatus"
        raise self.error(reason, f"HTTP {status} {response.reason}".rstrip(), status=status)

    def ftp_login(self, target: _Target) -> ftplib.FTP:
        ftp = ftplib.FTP(timeout=self.stall_timeout_s)
        try:
            self.job.check()
            with self.connecting(target.host):
                ftp.connect(target.host, target.port)
            self.job.watch(ftp.sock)
            with self.transferring():
                ftp.login(target.user or "anonymous", target.password or "anonymous@")
        except BaseException:
            self.job.forget()
            ftp.close()
            raise
        return ftp


class _Source:
    """The body of a download: ``size`` if announced, ``read`` chunks until ``b""``, then
    ``finish`` to check the server's closing word; ``close`` in any case."""

    size: int | None = None

    def read(self, n: int) -> bytes:
        raise NotImplementedError

    def finish(self) -> None:
        return None

    def close(self) -> None:
        return None


class _HttpSource(_Source):
    def __init__(self, worker: _Worker, target: _Target) -> None:
        self._conn, self._response = worker.http_get(target)
        self.size = self._response.length

    def read(self, n: int) -> bytes:
        return self._response.read1(n)

    def close(self) -> None:
        self._response.close()
        self._conn.close()


class _FtpSource(_Source):
    def __init__(self, worker: _Worker, target: _Target) -> None:
        self._worker = worker
        self._ftp = worker.ftp_login(target)
        self._data: socket.socket | None = None
        try:
            with worker.transferring():
                self._ftp.voidcmd("TYPE I")
                with contextlib.suppress(ftplib.error_perm, ftplib.error_temp):
                    self.size = self._ftp.size(target.path)
                self._data = self._ftp.transfercmd(f"RETR {target.path}")
            worker.job.watch(self._data)
        except BaseException:
            self.close()
            raise

    def read(self, n: int) -> bytes:
        assert self._data is not None
        return self._data.recv(n)

    def finish(self) -> None:
        self._close_data()
        self._ftp.voidresp()
        with contextlib.suppress(OSError, EOFError, ftplib.Error):
            self._ftp.quit()

    def _close_data(self) -> None:
        data, self._data = self._data, None
        if data is not None:
            self._worker.job.forget(data)
            data.close()

    def close(self) -> None:
        self._close_data()
        self._worker.job.forget()
        self._ftp.close()
