"""Keys in a PKCS#11 token: what they cost next to a key file.

Measures, with a SoftHSM token made for the run (Debian's softhsm2 and pkcs11-provider):

* a new key with its CSR (what SignCertificate costs): in the token, through the helper
  process, and in a file;
* reading a stored key's public half the first time (the agent caches it afterwards);
* a mutual-TLS handshake over loopback with the token key and with a file key (the token's
  signs through pkcs11-provider);
* this process's resident memory before and after pkcs11-provider is loaded.

Times are the median and worst of ``--rounds`` runs.

    python benchmarks/token_keys.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cpagent.security.keys import KeyStorage, load_provider
from cpagent.testing.pki import TestCa
from cpagent.testing.softhsm import SoftToken, provider_installed

SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP001")])


def timed(rounds: int, work: Callable[[], object]) -> str:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return f"median {statistics.median(times):7.1f} ms   worst {max(times):7.1f} ms"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """A loopback TLS server that wants a client certificate from ``ca`` and answers each
    handshake with one byte."""

    def __init__(self, ca: TestCa, directory: Path) -> None:
        cert, key = ca.issue_server().write(directory, "server")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(cadata=ca.pem())
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            connection, _ = self.socket.accept()
            try:
                with self.context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"!")
            except (ssl.SSLError, OSError):
                pass


def handshake(ca: TestCa, server: Server, cert: Path, key: Path) -> None:
    context = ssl.create_default_context(cadata=ca.pem())
    context.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(1) == b"!"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    directory = Path(tempfile.mkdtemp(prefix="cpagent-bench-"))
    token = SoftToken.create(directory)
    if token is None or not provider_installed():
        raise SystemExit("needs Debian's softhsm2 and pkcs11-provider")
    os.environ.update(token.environment())
    in_token, in_files = KeyStorage(token.settings), KeyStorage()
    ca = TestCa.create()

    def report(label: str, work: Callable[[], object]) -> None:
        print(f"{label:22} {timed(rounds, work)}")

    report("new key + CSR, token", lambda: in_token.sign_csr(in_token.generate(), SUBJECT))
    report("new key + CSR, file", lambda: in_files.sign_csr(in_files.generate(), SUBJECT))
    stored = in_token.generate()
    report("public key, token", lambda: KeyStorage(token.settings).public_key(stored))

    identities = {}
    for name, storage in (("token", in_token), ("file", in_files)):
        key_bytes = storage.generate()
        csr = storage.sign_csr(key_bytes, SUBJECT).public_bytes(Encoding.PEM).decode()
        cert_file, key_file = directory / f"{name}.pem", directory / f"{name}-key.pem"
        cert_file.write_text(ca.sign_csr(csr))
        key_file.write_bytes(key_bytes)
        identities[name] = (cert_file, key_file)
    before = rss_mb()
    load_provider(token.settings)
    server = Server(ca, directory)
    handshake(ca, server, *identities["token"])  # the module's first session and login
    print(f"RSS                    {before:.1f} MB before pkcs11-provider, {rss_mb():.1f} MB after")
    for name, (cert_file, key_file) in identities.items():
        report(
            f"mTLS handshake, {name}", functools.partial(handshake, ca, server, cert_file, key_file)
        )


if __name__ == "__main__":
    main()
