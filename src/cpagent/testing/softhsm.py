"""A SoftHSM token for tests and for trying the PKCS#11 key storage on a laptop.

::

    token = SoftToken.create(tmp_dir)          # None when SoftHSM is not installed
    os.environ.update(token.environment())     # before anything loads the module
    settings = token.settings                  # [security] pkcs11_module/_token/_pin_file

SoftHSM finds its tokens through the file ``SOFTHSM2_CONF`` names, read once per process
when the module is first loaded: a process sees the tokens that existed then. Tests
therefore make one token per process (per pytest worker) and keep every key they make
apart by its own label or id. Debian's packages: ``softhsm2`` (the module and
``softhsm2-util``) and, for TLS with a token key, ``pkcs11-provider``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpagent.config import TokenSettings

__all__ = ["MODULE_PATHS", "SoftToken", "provider_installed"]

MODULE_PATHS = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
PIN = "24680"
SO_PIN = "13579"


def provider_installed() -> bool:
    """Whether OpenSSL can find pkcs11-provider (``pkcs11.so`` in its modules directory)."""
    modules = _openssl_modules_dir()
    return modules is not None and (modules / "pkcs11.so").is_file()


def _openssl_modules_dir() -> Path | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    done = subprocess.run([openssl, "version", "-m"], capture_output=True, text=True, check=False)
    _, _, value = done.stdout.partition("MODULESDIR:")
    return Path(value.strip().strip('"')) if value.strip() else None


@dataclass(frozen=True)
class SoftToken:
    """One initialised SoftHSM token in ``directory``, with its PIN in ``pin_file``."""

    directory: Path
    config_file: Path
    settings: TokenSettings

    @classmethod
    def create(cls, directory: Path, label: str = "cpagent-test") -> SoftToken | None:
        """A fresh token labelled ``label``; None when SoftHSM is not installed."""
        module = next((path for path in MODULE_PATHS if path.is_file()), None)
        util = shutil.which("softhsm2-util")
        if module is None or util is None:
            return None
        tokens = directory / "tokens"
        tokens.mkdir(parents=True, exist_ok=True)
        config_file = directory / "softhsm2.conf"
        config_file.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        pin_file = directory / "pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o600)
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            env={**os.environ, "SOFTHSM2_CONF": str(config_file)},
            check=True,
            capture_output=True,
        )
        return cls(directory, config_file, TokenSettings(module, label, pin_file))

    def environment(self) -> dict[str, str]:
        """What a process using the token needs in its environment."""
        return {"SOFTHSM2_CONF": str(self.config_file)}

    def objects(self, label: str | None = None) -> list[dict[str, Any]]:
        """The token's objects (those labelled ``label``), each with its class, LABEL, ID
        (hex), PRIVATE and, for keys, the attributes that keep a private key in:
        SENSITIVE, EXTRACTABLE, ALWAYS_SENSITIVE, NEVER_EXTRACTABLE, VALUE (for a key kept
        in, ``"unreadable: AttributeSensitive"``), or a public key's EC_POINT (hex).

        Read by a child process: python-pkcs11 cannot share a process with pkcs11-provider.
        """
        pin = self.settings.pin_file.read_text().strip()
        request = {"module": str(self.settings.module), "token": self.settings.token, "pin": pin}
        done = subprocess.run(
            [sys.executable, "-c", _INSPECT],
            input=json.dumps(request),
            env={**os.environ, **self.environment()},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return [entry for entry in found if label is None or entry["LABEL"] == label]

    def import_key(self, key_pem: bytes, label: str, key_id: bytes) -> None:
        """Put a PEM private key (EC or RSA) in the token, as a factory would: private
        object and its public half, both with ``label`` and ``key_id``."""
        util = shutil.which("softhsm2-util")
        assert util is not None
        key_file = self.directory / f"{label}.pem"
        key_file.write_bytes(key_pem)
        try:
            subprocess.run(
                [
                    util,
                    "--import",
                    str(key_file),
                    "--token",
                    self.settings.token,
                    "--label",
                    label,
                    "--id",
                    key_id.hex(),
                    "--pin",
                    PIN,
                ],
                env={**os.environ, **self.environment()},
                check=True,
                capture_output=True,
            )
        finally:
            key_file.unlink()


_INSPECT = """
import json, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import PKCS11Error

def read(obj, attribute):
    try:
        value = obj[attribute]
    except PKCS11Error as err:
        return "unreadable: " + type(err).__name__
    return value.hex() if isinstance(value, bytes) else value

request = json.load(sys.stdin)
token = pkcs11.lib(request["module"]).get_token(token_label=request["token"])
found = []
with token.open(user_pin=request["pin"]) as session:
    for obj in session.get_objects({}):
        entry = {"class": obj.object_class.name}
        names = ["LABEL", "ID", "PRIVATE"]
        if obj.object_class == ObjectClass.PRIVATE_KEY:
            names += ["SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "VALUE"]
        elif obj.object_class == ObjectClass.PUBLIC_KEY:
            names += ["EC_POINT"]
        for name in names:
            entry[name] = read(obj, Attribute[name])
        found.append(entry)
json.dump(found, sys.stdout)
"""
