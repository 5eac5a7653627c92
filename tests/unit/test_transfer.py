"""Firmware downloads and diagnostics uploads against loopback HTTP(S) and FTP servers."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpagent import transfer
from cpagent.testing.fileservers import FtpFileServer, HttpBehaviour, HttpFileServer
from cpagent.transfer import TransferError, download, redact_url, upload

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)
"""A few MB, not a multiple of the chunk size, so streaming is exercised."""

OLD = b"the firmware that was there before\n"
BIG = 1 << 40
WAIT_S = 30.0
"""Guard for a transfer that should end: reaching it fails the test, so it is generous."""


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    started = [t for t in threading.enumerate() if t not in before]
    for thread in started:  # one may be returning from its last request right now
        thread.join(timeout=WAIT_S)
    leaked = [t for t in started if t.is_alive()]
    assert not leaked, leaked


@pytest.fixture
def http() -> Iterator[HttpFileServer]:
    with HttpFileServer() as server:
        server.files["/fw.bin"] = PAYLOAD
        yield server


@pytest.fixture
def ftp() -> Iterator[FtpFileServer]:
    with FtpFileServer() as server:
        (server.root / "fw.bin").write_bytes(PAYLOAD)
        (server.root / "diag").mkdir()
        yield server


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "fw" / "firmware.bin"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1; its key is next to it (``.key``)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert = tmp_path_factory.mktemp("tls") / "server.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(cert.with_suffix(".key")), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    return cert


def content(path: Path) -> bytes:
    """A small local file's bytes (a sync helper: blocking is fine in these tests)."""
    return path.read_bytes()


def assert_untouched(dest: Path) -> None:
    assert dest.read_bytes() == OLD
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


# --- downloads ---


async def test_http_download_streams_exact_bytes(http: HttpFileServer, dest: Path) -> None:
    count = await download(http.url("fw.bin"), dest, max_bytes=len(PAYLOAD))

    assert count == len(PAYLOAD)
    assert content(dest) == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_http_download_without_content_length(
    http: HttpFileServer, dest: Path, framing: str
) -> None:
    http.behaviours["/fw.bin"] = HttpBehaviour(framing=framing)  # type: ignore[arg-type]

    assert await download(http.url("fw.bin"), dest, max_bytes=len(PAYLOAD)) == len(PAYLOAD)
    assert content(dest) == PAYLOAD


async def test_http_download_follows_redirects(http: HttpFileServer, dest: Path) -> None:
    http.behaviours["/latest"] = HttpBehaviour(redirect="/fw.bin")

    assert await download(http.url("latest"), dest, max_bytes=BIG) == len(PAYLOAD)
    assert content(dest) == PAYLOAD


async def test_http_redirect_loop_is_an_error(http: HttpFileServer, dest: Path) -> None:
    http.behaviours["/loop"] = HttpBehaviour(redirect="/loop")

    with pytest.raises(TransferError) as caught:
        await download(http.url("loop"), dest, max_bytes=BIG)

    assert caught.value.reason == "HttpStatus"
    assert "redirects" in str(caught.value)
    assert http.requests["/loop"] == transfer.MAX_REDIRECTS + 1
    assert_untouched(dest)


async def test_http_download_replaces_a_stale_part_file(http: HttpFileServer, dest: Path) -> None:
    dest.with_name(dest.name + ".part").write_bytes(b"left by a power cut")

    await download(http.url("fw.bin"), dest, max_bytes=BIG)

    assert content(dest) == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


async def test_ftp_download_streams_exact_bytes(ftp: FtpFileServer, dest: Path) -> None:
    assert await download(ftp.url("fw.bin"), dest, max_bytes=len(PAYLOAD)) == len(PAYLOAD)
    assert content(dest) == PAYLOAD


async def test_ftp_anonymous_download(tmp_path: Path) -> None:
    with FtpFileServer(anonymous=True) as server:
        (server.root / "fw.bin").write_bytes(b"firmware")
        dest = tmp_path / "fw.bin"
        assert await download(server.url("fw.bin", anonymous=True), dest, max_bytes=100) == 8
    assert content(dest) == b"firmware"


async def test_https_download_with_a_trusted_certificate(certificate: Path, dest: Path) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, certificate.with_suffix(".key"))
    with HttpFileServer(ssl_context=server_context) as server:
        server.files["/fw.bin"] = PAYLOAD
        client_context = ssl.create_default_context(cafile=certificate)

        count = await download(
            server.url("fw.bin"), dest, max_bytes=BIG, ssl_context=client_context
        )

        assert count == len(PAYLOAD)
        assert content(dest) == PAYLOAD

        with pytest.raises(TransferError) as caught:
            await download(server.url("fw.bin"), dest, max_bytes=BIG)
        assert caught.value.reason == "Tls"
        assert "certificate" in str(caught.value)


async def test_https_to_a_plain_http_port_is_a_tls_error(http: HttpFileServer, dest: Path) -> None:
    url = http.url("fw.bin").replace("http://", "https://")

    with pytest.raises(TransferError) as caught:
        await download(url, dest, max_bytes=BIG)

    assert caught.value.reason == "Tls"
    assert str(caught.value).startswith(f"download {url}: TLS failed")
    assert_untouched(dest)


@pytest.mark.parametrize(
    ("behaviour", "options", "reason"),
    [
        (HttpBehaviour(status=500), {}, "HttpStatus"),
        (HttpBehaviour(status=403), {}, "HttpStatus"),
        (HttpBehaviour(stall_after=100_000), {"stall_timeout_s": 0.5}, "Stalled"),
        (HttpBehaviour(close_after=100_000), {}, "Truncated"),
        (HttpBehaviour(close_after=100_000, framing="chunked"), {}, "Truncated"),
        (HttpBehaviour(), {"max_bytes": len(PAYLOAD) - 1}, "TooLarge"),
        (HttpBehaviour(framing="chunked"), {"max_bytes": len(PAYLOAD) - 1}, "TooLarge"),
        (HttpBehaviour(framing="close"), {"max_bytes": 1000}, "TooLarge"),
        (HttpBehaviour(), {"free_margin_bytes": BIG}, "DiskFull"),
        (HttpBehaviour(framing="chunked"), {"free_margin_bytes": BIG}, "DiskFull"),
    ],
    ids=[
        "500",
        "403",
        "stall",
        "close-mid-body",
        "close-mid-chunk",
        "too-large-announced",
        "too-large-chunked",
        "too-large-no-length",
        "disk-full-announced",
        "disk-full-chunked",
    ],
)
async def test_http_download_failures(
    http: HttpFileServer,
    dest: Path,
    behaviour: HttpBehaviour,
    options: dict[str, int | float],
    reason: str,
) -> None:
    http.behaviours["/fw.bin"] = behaviour
    options = {"max_bytes": BIG, **options}

    with pytest.raises(TransferError) as caught:
        async with asyncio.timeout(WAIT_S):
            await download(http.url("fw.bin"), dest, **options)  # type: ignore[arg-type]

    assert caught.value.reason == reason, caught.value
    assert str(caught.value).startswith(f"download {http.url('fw.bin')}: ")
    if behaviour.status is not None:
        assert caught.value.status == behaviour.status
        assert f"HTTP {behaviour.status}" in str(caught.value)
    if reason == "Stalled":  # after the stall timeout given, not the default 30 s
        assert f"no progress for {options['stall_timeout_s']:g} s" in str(caught.value)
    assert_untouched(dest)


async def test_http_not_found(http: HttpFileServer, dest: Path) -> None:
    with pytest.raises(TransferError) as caught:
        await download(http.url("missing.bin"), dest, max_bytes=BIG)

    assert caught.value.reason == "NotFound"
    assert caught.value.status == 404
    assert_untouched(dest)


async def test_too_large_announced_is_refused_before_downloading(
    http: HttpFileServer, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(path: Path) -> io.FileIO:
        raise AssertionError("the .part file must not be created")

    monkeypatch.setattr(transfer, "_open_part", never)

    with pytest.raises(TransferError) as caught:
        await download(http.url("fw.bin"), dest, max_bytes=1000)

    assert caught.value.reason == "TooLarge"
    assert f"{len(PAYLOAD)} bytes announced" in str(caught.value)


class _FullDisk(io.FileIO):
    """A .part file on a disk that fills up after the first chunk."""

    def write(self, data: object) -> int:
        if self.tell() > 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)  # type: ignore[arg-type]


async def test_enospc_while_writing_is_disk_full(
    http: HttpFileServer, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "_open_part", lambda path: _FullDisk(path, "x"))

    with pytest.raises(TransferError) as caught:
        await download(http.url("fw.bin"), dest, max_bytes=BIG)

    assert caught.value.reason == "DiskFull"
    assert "No space left on device" in str(caught.value)
    assert_untouched(dest)


async def test_ftp_download_failures(ftp: FtpFileServer, dest: Path) -> None:
    cases = [
        (ftp.url("missing.bin"), BIG, 0, "NotFound"),
        (ftp.url("fw.bin", password="wrong"), BIG, 0, "LoginFailed"),
        (ftp.url("fw.bin"), 1000, 0, "TooLarge"),
        (ftp.url("fw.bin"), BIG, BIG, "DiskFull"),
        (ftp.url("diag/"), BIG, 0, "BadUrl"),
    ]
    for url, max_bytes, margin, reason in cases:
        with pytest.raises(TransferError) as caught:
            await download(url, dest, max_bytes=max_bytes, free_margin_bytes=margin)
        assert caught.value.reason == reason, (url, caught.value)
        assert ftp.password not in str(caught.value)
        assert_untouched(dest)


@pytest.mark.parametrize("scheme", ["http", "ftp"])
async def test_unreachable(closed_port: int, dest: Path, scheme: str) -> None:
    with pytest.raises(TransferError) as caught:
        await download(f"{scheme}://127.0.0.1:{closed_port}/fw.bin", dest, max_bytes=BIG)

    assert caught.value.reason == "Unreachable"
    assert "refused" in str(caught.value)
    assert_untouched(dest)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sftp://user:pw@127.0.0.1/fw.bin", "UnsupportedScheme"),
        ("file:///etc/passwd", "UnsupportedScheme"),
        ("/fw.bin", "UnsupportedScheme"),
        ("http:///fw.bin", "BadUrl"),
        ("http://127.0.0.1:99999/fw.bin", "BadUrl"),
        ("ftp://127.0.0.1/a%0D%0ADELE%20b", "BadUrl"),
    ],
)
async def test_bad_urls_fail_before_any_io(dest: Path, url: str, reason: str) -> None:
    with pytest.raises(TransferError) as caught:
        await download(url, dest, max_bytes=BIG)
    assert caught.value.reason == reason
    assert "pw" not in str(caught.value)
    assert_untouched(dest)

    with pytest.raises(TransferError) as caught:
        await upload(url, dest)
    assert caught.value.reason == reason


async def test_cancelling_a_stalled_download_stops_it_promptly(
    http: HttpFileServer, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http.behaviours["/fw.bin"] = HttpBehaviour(stall_after=100_000)
    written = threading.Event()

    class WatchedPart(io.FileIO):
        def write(self, data: object) -> int:
            count = super().write(data)  # type: ignore[arg-type]
            if self.tell() >= 100_000:
                written.set()
            return count

    monkeypatch.setattr(transfer, "_open_part", lambda path: WatchedPart(path, "x"))
    # A stall timeout far beyond the guard: only the cancellation can end the read.
    task = asyncio.create_task(
        download(http.url("fw.bin"), dest, max_bytes=BIG, stall_timeout_s=3600)
    )
    # All the server sends before it stalls is written: the worker now blocks in a read.
    assert await asyncio.to_thread(written.wait, WAIT_S)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)

    assert_untouched(dest)


# --- uploads ---


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "diagnostics-2026.tar.gz"
    path.write_bytes(PAYLOAD)
    return path


async def test_http_put_upload(http: HttpFileServer, archive: Path) -> None:
    await upload(http.url("diag/upload"), archive)

    received = http.uploads["/diag/upload"]
    assert received.method == "PUT"
    assert received.body == PAYLOAD
    assert received.content_type == "application/octet-stream"


async def test_http_post_multipart_upload(http: HttpFileServer, archive: Path) -> None:
    await upload(http.url("diag/upload"), archive, method="POST")

    received = http.uploads["/diag/upload"]
    assert received.method == "POST"
    assert received.filename == archive.name
    assert received.body == PAYLOAD
    assert http.wait_upload("/diag/upload", 1) == PAYLOAD


async def test_ftp_upload(ftp: FtpFileServer, archive: Path) -> None:
    await upload(ftp.url("diag/"), archive)
    await upload(ftp.url("diag/renamed.tar.gz"), archive)

    assert content(ftp.root / "diag" / archive.name) == PAYLOAD
    assert content(ftp.root / "diag" / "renamed.tar.gz") == PAYLOAD


@pytest.mark.parametrize(
    ("status", "reason"), [(404, "NotFound"), (500, "HttpStatus"), (413, "HttpStatus")]
)
@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_http_upload_errors(
    http: HttpFileServer, archive: Path, status: int, reason: str, method: str
) -> None:
    http.behaviours["/diag/upload"] = HttpBehaviour(status=status)

    with pytest.raises(TransferError) as caught:
        await upload(http.url("diag/upload"), archive, method=method)

    assert caught.value.reason == reason
    assert caught.value.status == status
    assert str(caught.value).startswith(f"upload {http.url('diag/upload')}: HTTP {status}")
    assert not http.uploads


async def test_http_upload_refused_before_the_body_is_read(
    http: HttpFileServer, archive: Path
) -> None:
    http.behaviours["/diag/upload"] = HttpBehaviour(status=413, read_body=False)

    with pytest.raises(TransferError) as caught:
        await upload(http.url("diag/upload"), archive)

    assert caught.value.reason == "HttpStatus"
    assert caught.value.status == 413


async def test_http_upload_stalled(http: HttpFileServer, archive: Path) -> None:
    http.behaviours["/diag/upload"] = HttpBehaviour(stall_after=100_000)

    with pytest.raises(TransferError) as caught:
        async with asyncio.timeout(WAIT_S):
            await upload(http.url("diag/upload"), archive, stall_timeout_s=0.5)

    assert caught.value.reason == "Stalled"
    assert "no progress for 0.5 s" in str(caught.value)
    assert not http.uploads


async def test_ftp_upload_errors(ftp: FtpFileServer, archive: Path) -> None:
    cases = [
        (ftp.url("diag/", password="wrong"), "LoginFailed"),
        (ftp.url("no/such/dir/"), "Refused"),
    ]
    for url, reason in cases:
        with pytest.raises(TransferError) as caught:
            await upload(url, archive)
        assert caught.value.reason == reason, (url, caught.value)
        assert "wrong" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["http", "ftp"])
async def test_upload_unreachable(closed_port: int, archive: Path, scheme: str) -> None:
    with pytest.raises(TransferError) as caught:
        await upload(f"{scheme}://127.0.0.1:{closed_port}/diag/", archive)

    assert caught.value.reason == "Unreachable"


async def test_upload_of_a_missing_file(http: HttpFileServer, tmp_path: Path) -> None:
    with pytest.raises(TransferError) as caught:
        await upload(http.url("diag/upload"), tmp_path / "missing.tar.gz")

    assert caught.value.reason == "Io"
    assert http.requests["/diag/upload"] == 0


async def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        await upload("http://127.0.0.1/x", tmp_path, method="PATCH")
    with pytest.raises(ValueError, match="stall_timeout_s"):
        await download("http://127.0.0.1/x", tmp_path / "x", max_bytes=1, stall_timeout_s=0)
    with pytest.raises(ValueError, match="max_bytes"):
        await download("http://127.0.0.1/x", tmp_path / "x", max_bytes=-1)


# --- redaction ---


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://user:s3cret@host/fw.bin", "ftp://user:***@host/fw.bin"),
        ("ftp://user:p%40ss:w@host:2121/a/b", "ftp://user:***@host:2121/a/b"),
        ("http://user@host/fw.bin", "http://user@host/fw.bin"),
        ("https://host/fw.bin", "https://host/fw.bin"),
        (
            "https://bucket.s3/fw.bin?X-Amz-Signature=abc&X-Amz-Date=20260101&token=xyz",
            "https://bucket.s3/fw.bin?X-Amz-Signature=***&X-Amz-Date=20260101&token=***",
        ),
        ("http://u:pw@[::1/broken", "http://u:***@[::1/broken"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
