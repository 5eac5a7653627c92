"""Loopback HTTP(S) and FTP file servers for tests of firmware downloads and diagnostics uploads.

- :class:`HttpFileServer` serves ``files`` (path -> bytes) and records uploads (PUT, and POST
  as raw body or multipart/form-data) in ``uploads``; per path, a :class:`HttpBehaviour` makes
  it misbehave the ways real servers do: an error status, a redirect, a response that stalls or
  closes mid-body, a body without Content-Length;
- :class:`FtpFileServer` is a pyftpdlib server on a (temporary) root directory, with a user
  and optionally anonymous read access; tests put files in :attr:`FtpFileServer.root` and read
  uploads from it.

Both listen on 127.0.0.1 on a free port, serve from a background thread, are context managers
(``with HttpFileServer() as server:``) and stop quickly: :meth:`close` wakes stalled responses,
breaks open connections and joins every thread it started. Their ``wait_*`` methods block the
calling thread with a timeout; from async code call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import io
import logging
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore and asynchat, deprecated since Python 3.6 (and installed
    # from backports from 3.12 on); the warning is not ours to act on.
    warnings.filterwarnings("ignore", "The asyn(core|chat) module", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
    from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
    from pyftpdlib.ioloop import IOLoop  # type: ignore[import-untyped]
    from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

__all__ = ["FtpFileServer", "HttpBehaviour", "HttpFileServer", "Upload"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
CONNECTION_TIMEOUT_S = 10.0
"""How long a server-side connection waits for a silent client before dropping it."""

_CHUNK = 64 * 1024
_FTP_POLL_S = 0.05
"""How often the FTP server's loop looks at its stop flag: the bound on :meth:`close`."""


@dataclass(frozen=True)
class HttpBehaviour:
    """How :class:`HttpFileServer` answers one path.

    ``status`` answers every request to the path with that status (and a short text body)
    instead of serving or recording anything; an upload's body is read first unless
    ``read_body`` is false, when the server answers and closes at once, as servers refusing a
    too large upload do. ``redirect`` answers 302 to that location (a path on this server or a
    full URL). ``stall_after`` also applies to uploads: the server reads that many body bytes,
    then hangs as below. For a file being served:

    - ``stall_after``: send that many body bytes, then hang until :meth:`HttpFileServer.
      release_stalls` (which lets it finish) or :meth:`HttpFileServer.close`;
    - ``close_after``: announce the whole file but close the connection after that many bytes;
    - ``framing``: ``"length"`` sends a Content-Length, ``"chunked"`` uses chunked transfer
      encoding and ``"close"`` sends neither (the body ends when the connection closes), so a
      client cannot know the size in advance.
    """

    status: int | None = None
    read_body: bool = True
    redirect: str | None = None
    stall_after: int | None = None
    close_after: int | None = None
    framing: Literal["length", "chunked", "close"] = "length"


@dataclass(frozen=True)
class Upload:
    """An upload :class:`HttpFileServer` received: for a multipart/form-data POST, ``body`` is
    the content of the field named ``file`` (or the first field with a file name) and
    ``filename`` its file name; otherwise ``body`` is the request body."""

    method: str
    body: bytes
    filename: str | None
    content_type: str | None


class HttpFileServer:
    """An HTTP (or HTTPS, given a server-side ``ssl_context``) file server on 127.0.0.1.

    Set ``files`` and ``behaviours`` at any time (they are read on every request). A path is
    the URL path without the query. ``requests`` counts the requests per path (any method);
    ``uploads`` holds the last upload per path, recorded before the server answers, so it is
    there as soon as the client has its answer.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviours: dict[str, HttpBehaviour] = {}
        self.uploads: dict[str, Upload] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.ssl_context = ssl_context
        self._cond = threading.Condition()
        self._stalled: set[str] = set()
        self._released = threading.Event()
        self._closing = False
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpFileServer: not started")
        return self._server.server_address[1]

    @property
    def received(self) -> dict[str, bytes]:
        """Path -> body (or multipart file content) of the last upload to it."""
        with self._cond:
            return {path: upload.body for path, upload in self.uploads.items()}

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{HOST}:{self.port}/{path.lstrip('/')}"

    def start(self) -> HttpFileServer:
        if self._server is not None:
            raise RuntimeError("HttpFileServer: already started")
        self._server = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"http-file-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: wake stalled responses, break open connections, join all threads."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._released.set()
        server.shutdown()
        server.break_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HttpFileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def release_stalls(self) -> None:
        """Let stalled responses send the rest of their file; later ones no longer stall."""
        self._released.set()

    def wait_upload(self, path: str, timeout: float) -> bytes:
        """The body of the upload to ``path``, once there is one; ``TimeoutError`` if none
        arrives within ``timeout`` seconds."""
        self._wait(lambda: path in self.uploads, timeout, f"no upload to {path}")
        with self._cond:
            return self.uploads[path].body

    def wait_stalled(self, path: str, timeout: float) -> None:
        """Wait until a response for ``path`` has stalled (see :class:`HttpBehaviour`)."""
        self._wait(lambda: path in self._stalled, timeout, f"no stalled response for {path}")

    def wait_requests(self, path: str, count: int, timeout: float) -> None:
        """Wait until ``path`` has had at least ``count`` requests (e.g. a client's retries)."""
        what = f"fewer than {count} requests for {path}"
        self._wait(lambda: self.requests[path] >= count, timeout, what)

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate() or self._closing, timeout):
                raise TimeoutError(f"HttpFileServer: {what} within {timeout:g} s")
            if not predicate():
                raise RuntimeError(f"HttpFileServer: closed while waiting: {what}")

    def _count(self, path: str) -> None:
        with self._cond:
            self.requests[path] += 1
            self._cond.notify_all()

    def _record(self, path: str, upload: Upload) -> None:
        with self._cond:
            self.uploads[path] = upload
            self._cond.notify_all()

    def _stall(self, path: str) -> bool:
        """Hang until released (True) or closing (False)."""
        with self._cond:
            self._stalled.add(path)
            self._cond.notify_all()
        self._released.wait()
        return not self._closing


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(self, owner: HttpFileServer) -> None:
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, 0), _HttpHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds; not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self._track(request, True)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.owner.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(CONNECTION_TIMEOUT_S)
        tls = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        self._track(tls, True)
        try:
            tls.do_handshake()
            super().finish_request(tls, client_address)
        finally:
            self._track(tls, False)
            tls.close()

    def shutdown_request(self, request: Any) -> None:
        self._track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("HttpFileServer: error serving %s", client_address, exc_info=True)

    def _track(self, sock: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def break_connections(self) -> None:
        """Shut down every open connection, which wakes handlers blocked reading or writing."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT_S

    @property
    def owner(self) -> HttpFileServer:
        return cast(_HttpServer, self.server).owner

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path

    def handle(self) -> None:
        # A TLS ClientHello on the plain port: answer 400 at once, like most servers, instead
        # of waiting for a request line that may never come.
        if self.owner.ssl_context is None:
            try:
                first = cast(io.BufferedReader, self.rfile).peek(1)[:1]
            except OSError:
                return
            if first == b"\x16":
                self.wfile.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("HttpFileServer: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._receive()

    def do_POST(self) -> None:
        self._receive()

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.close_connection = True
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        owner, path = self.owner, self.path_only
        owner._count(path)
        behaviour = owner.behaviours.get(path, HttpBehaviour())
        if behaviour.status is not None:
            self._answer(behaviour.status)
            return
        if behaviour.redirect is not None:
            self._answer(302, {"Location": behaviour.redirect})
            return
        body = owner.files.get(path)
        if body is None:
            self._answer(404)
            return
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if behaviour.framing == "length":
            self.send_header("Content-Length", str(len(body)))
        elif behaviour.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        chunked = behaviour.framing == "chunked"
        cut = behaviour.stall_after if behaviour.stall_after is not None else behaviour.close_after
        if cut is None:
            self._send(body, chunked)
        else:
            self._send(body[:cut], chunked)
            self.wfile.flush()
            if behaviour.close_after is not None or not owner._stall(path):
                return
            self._send(body[cut:], chunked)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send(self, data: bytes, chunked: bool) -> None:
        for start in range(0, len(data), _CHUNK):
            piece = data[start : start + _CHUNK]
            if chunked:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)

    def _receive(self) -> None:
        owner, path = self.owner, self.path_only
        owner._count(path)
        behaviour = owner.behaviours.get(path, HttpBehaviour())
        if behaviour.status is not None and not behaviour.read_body:
            self._answer(behaviour.status)
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._answer(411)
            return
        length = int(length_header)
        body = b""
        if behaviour.stall_after is not None:
            body = self.rfile.read(min(behaviour.stall_after, length))
            if not owner._stall(path):
                return
        body += self.rfile.read(length - len(body))
        if len(body) < length:
            return
        if behaviour.status is not None:
            self._answer(behaviour.status)
            return
        content_type = self.headers.get("Content-Type")
        filename = None
        if self.command == "POST" and (content_type or "").startswith("multipart/form-data"):
            field = _multipart_file(body, content_type or "")
            if field is None:
                self._answer(400)
                return
            body, filename = field
        owner._record(path, Upload(self.command, body, filename, content_type))
        self._answer(200)


def _multipart_file(body: bytes, content_type: str) -> tuple[bytes, str | None] | None:
    """The content and file name of the ``file`` field (or the first field with a file name)
    of a multipart/form-data body; None if there is no such field or it is malformed."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode()
    found: tuple[bytes, str | None] | None = None
    for segment in (b"\r\n" + body).split(delimiter)[1:]:
        if segment.startswith(b"--"):
            return found
        head, sep, content = segment.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return None
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        if name == "file":
            return content, filename
        if found is None and filename is not None:
            found = (content, filename)
    return None


class FtpFileServer:
    """A pyftpdlib FTP server on 127.0.0.1 serving :attr:`root`.

    ``user`` has every permission in ``root``; with ``anonymous``, anonymous users may read
    (not write). ``root`` defaults to a temporary directory, removed by :meth:`close`, so read
    uploads before that. Failed logins are answered at once (pyftpdlib waits 3 s by default).
    """

    def __init__(
        self,
        *,
        user: str = "cpagent",
        password: str = "firmware",
        anonymous: bool = False,
        root: Path | None = None,
    ) -> None:
        self.user = user
        self.password = password
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="cpagent-ftp-")) if root is None else root
        self.anonymous = anonymous
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FtpFileServer: not started")
        return cast(int, self._server.address[1])

    def url(
        self,
        path: str,
        *,
        user: str | None = None,
        password: str | None = None,
        anonymous: bool = False,
    ) -> str:
        """``ftp://user:password@127.0.0.1:port/path`` (``path`` relative to :attr:`root`);
        ``user``/``password`` override the server's own (e.g. a wrong password), and
        ``anonymous`` leaves the credentials out."""
        credentials = ""
        if not anonymous:
            user = self.user if user is None else user
            password = self.password if password is None else password
            credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"ftp://{credentials}{HOST}:{self.port}/{quote(path.lstrip('/'))}"

    def start(self) -> FtpFileServer:
        if self._server is not None:
            raise RuntimeError("FtpFileServer: already started")
        # pyftpdlib configures logging (for the whole process) the first time a server runs
        # unless its logger has a handler.
        pyftpdlib_log = logging.getLogger("pyftpdlib")
        if not pyftpdlib_log.handlers:
            pyftpdlib_log.addHandler(logging.NullHandler())
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.root), perm="elradfmwMT")
        if self.anonymous:
            authorizer.add_anonymous(str(self.root))
        handler = type(
            "_FtpHandler",
            (FTPHandler,),
            {"authorizer": authorizer, "auth_failed_timeout": 0, "timeout": CONNECTION_TIMEOUT_S},
        )
        self._server = FTPServer((HOST, 0), handler, ioloop=IOLoop())
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, name=f"ftp-file-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self) -> None:
        server = self._server
        try:
            while not self._stop.is_set():
                server.ioloop.loop(timeout=_FTP_POLL_S, blocking=False)
        except Exception:
            log.exception("FtpFileServer: the server loop failed")
            raise
        finally:
            server.close_all()

    def close(self) -> None:
        """Stop serving, close every connection, join the thread, remove a temporary root."""
        if self._server is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FtpFileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
