"""The PKCS#11 token operations, run one per process by :class:`cpagent.security.keys.KeyStorage`.

``python -m cpagent.security.token_helper`` reads one JSON request on stdin and writes one
JSON answer on stdout: ``{"result": ...}``, or ``{"error": "reason"}`` for a refusal the
agent logs. The request names the ``module``, ``token`` and ``pin_file`` and one
``operation``:

* ``generate``: a new EC P-256 key pair in the token, the private key sensitive, not
  extractable and private; the result is its URI (``pkcs11:token=..;id=..;object=..``).
* ``public_key`` of ``uri``: its SubjectPublicKeyInfo, DER in base64.
* ``sign_csr`` for ``uri`` and ``subject`` (an X.509 Name, DER in base64): a PKCS#10 request
  signed with ECDSA over SHA-256 by the token, DER in base64.
* ``destroy`` ``uri``: removes the key pair, if cpagent made it (its label says so).

It loads python-pkcs11, the standard library and cpagent's DER helper, nothing else (no
cryptography), so it starts quickly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote, unquote_to_bytes

import pkcs11
import pkcs11.exceptions
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from cpagent.security import der

GENERATED_LABEL_PREFIX = "cpagent-charge-point-"
"""Label of the token keys cpagent makes. Only those are ever destroyed by it: a key the
manufacturer put in the token stays there when a renewal replaces it."""

_RSA_ENCRYPTION = bytes.fromhex("300d06092a864886f70d0101010500")
"""AlgorithmIdentifier rsaEncryption, NULL parameters."""
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
"""AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758), parameters absent."""

T = TypeVar("T")


class Refused(Exception):
    """An operation the token cannot do; the message is the reason for the agent's log."""


@dataclass(frozen=True)
class Uri:
    """The parts of an RFC 7512 URI that find a key: token label, object label, id."""

    token: str | None
    label: str | None
    id: bytes | None

    @classmethod
    def parse(cls, uri: str) -> Uri:
        if not uri.startswith("pkcs11:"):
            raise Refused(f"{uri!r} is not a PKCS#11 URI")
        attributes: dict[str, str] = {}
        for part in uri.removeprefix("pkcs11:").split("?", 1)[0].split(";"):
            name, _, value = part.partition("=")
            if name:
                attributes[name] = value
        found = Uri(
            unquote(attributes["token"]) if "token" in attributes else None,
            unquote(attributes["object"]) if "object" in attributes else None,
            unquote_to_bytes(attributes["id"]) if "id" in attributes else None,
        )
        if found.label is None and found.id is None:
            raise Refused(f"{uri!r} names no object (object= or id=)")
        return found

    def format(self) -> str:
        parts = [] if self.token is None else [f"token={_quote(self.token)}"]
        if self.id is not None:
            parts.append("id=" + "".join(f"%{byte:02x}" for byte in self.id))
        if self.label is not None:
            parts.append(f"object={_quote(self.label)}")
        return "pkcs11:" + ";".join([*parts, "type=private"])


def _quote(value: str) -> str:
    return quote(value, safe="-._~:[]@!$'()*+,=&")


class Token:
    """One token, reached through its module and PIN file; each call logs in and out."""

    def __init__(self, module: str, label: str, pin_file: str) -> None:
        self.module = module
        self.label = label
        self.pin_file = pin_file

    def describe(self) -> str:
        return f"PKCS#11 token {self.label!r} ({self.module})"

    def generate(self) -> str:
        name = GENERATED_LABEL_PREFIX + secrets.token_hex(8)
        key_id = secrets.token_bytes(16)
        with self._open(rw=True) as session:
            parameters = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            self._call(
                lambda: parameters.generate_keypair(
                    store=True,
                    label=name,
                    id=key_id,
                    public_template={Attribute.VERIFY: True, Attribute.PRIVATE: False},
                    private_template={
                        Attribute.SIGN: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                    },
                )
            )
        return Uri(self.label, name, key_id).format()

    def public_key(self, uri: str) -> bytes:
        with self._open() as session:
            return self._spki(self._find(session, uri, ObjectClass.PUBLIC_KEY))

    def sign_csr(self, uri: str, subject: bytes) -> bytes:
        with self._open() as session:
            public = self._find(session, uri, ObjectClass.PUBLIC_KEY)
            if public[Attribute.KEY_TYPE] != KeyType.EC:
                raise Refused(f"{uri}: a CSR is signed with an EC key")
            private = self._find(session, uri, ObjectClass.PRIVATE_KEY)
            # CertificationRequestInfo: version 0, subject, the key, no attributes.
            info = der.encode(0x30, b"\x02\x01\x00" + subject + self._spki(public) + b"\xa0\x00")
            # Raw ECDSA over our own SHA-256: many tokens lack CKM_ECDSA_SHA256.
            digest = hashlib.sha256(info).digest()
            raw = self._call(lambda: private.sign(digest, mechanism=Mechanism.ECDSA))
        half = len(raw) // 2
        signature = der.encode(0x30, _der_integer(raw[:half]) + _der_integer(raw[half:]))
        return der.encode(0x30, info + _ECDSA_WITH_SHA256 + der.encode(0x03, b"\x00" + signature))

    def destroy(self, uri: str) -> str:
        removed = []
        with self._open(rw=True) as session:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                with contextlib.suppress(Refused):
                    found = self._find(session, uri, object_class)
                    label = found[Attribute.LABEL]
                    if label.startswith(GENERATED_LABEL_PREFIX):
                        self._call(found.destroy)
                        removed.append(label)
        return ", ".join(removed)

    @contextlib.contextmanager
    def _open(self, *, rw: bool = False) -> Iterator[Any]:
        try:
            with open(self.pin_file, encoding="utf-8") as file:
                pin = file.readline().rstrip("\r\n")
        except OSError as err:
            raise Refused(f"PIN file {self.pin_file}: {err.strerror}") from err
        if not pin:
            raise Refused(f"PIN file {self.pin_file} is empty")
        try:
            library = pkcs11.lib(self.module)
        except (OSError, RuntimeError, pkcs11.exceptions.PKCS11Error) as err:
            raise Refused(f"PKCS#11 module {self.module}: {err or type(err).__name__}") from err
        token = self._call(lambda: library.get_token(token_label=self.label))
        session = self._call(lambda: token.open(user_pin=pin, rw=rw))
        try:
            yield session
        finally:
            with contextlib.suppress(pkcs11.exceptions.PKCS11Error):
                session.close()

    def _find(self, session: Any, uri: str, object_class: ObjectClass) -> Any:
        wanted = Uri.parse(uri)
        if wanted.token not in (None, self.label):
            raise Refused(f"{uri}: not in the configured token {self.label!r}")
        template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
        if wanted.id is not None:
            template[Attribute.ID] = wanted.id
        if wanted.label is not None:
            template[Attribute.LABEL] = wanted.label
        found = self._call(lambda: list(session.get_objects(template)))
        kind = "private" if object_class == ObjectClass.PRIVATE_KEY else "public"
        if len(found) != 1:
            count = "no" if not found else str(len(found))
            raise Refused(f"{uri}: {count} {kind} key objects in {self.describe()}")
        return found[0]

    @staticmethod
    def _spki(public: Any) -> bytes:
        if public[Attribute.KEY_TYPE] == KeyType.EC:
            return encode_ec_public_key(public)
        if public[Attribute.KEY_TYPE] == KeyType.RSA:
            bits = encode_rsa_public_key(public)
            return der.encode(0x30, _RSA_ENCRYPTION + der.encode(0x03, b"\x00" + bits))
        raise Refused("neither an EC nor an RSA key")

    def _call(self, operation: Callable[[], T]) -> T:
        """``operation()``, with PKCS#11 failures as :class:`Refused`."""
        try:
            return operation()
        except pkcs11.exceptions.NoSuchToken as err:
            raise Refused(f"no token labelled {self.label!r} in {self.module}") from err
        except pkcs11.exceptions.PinIncorrect as err:
            raise Refused(f"{self.describe()} refused the PIN in {self.pin_file}") from err
        except pkcs11.exceptions.PKCS11Error as err:
            reason = f"{type(err).__name__} {err}".rstrip()
            raise Refused(f"{self.describe()}: {reason}") from err


def _der_integer(unsigned: bytes) -> bytes:
    """A DER INTEGER of a big-endian unsigned value (ECDSA's r or s)."""
    value = unsigned.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return der.encode(0x02, value)


def run(request: dict[str, Any]) -> str:
    """The result of one request; :class:`Refused` or KeyError for a bad one."""
    token = Token(request["module"], request["token"], request["pin_file"])
    operation = request["operation"]
    if operation == "generate":
        return token.generate()
    if operation == "public_key":
        return base64.b64encode(token.public_key(request["uri"])).decode()
    if operation == "sign_csr":
        subject = base64.b64decode(request["subject"], validate=True)
        return base64.b64encode(token.sign_csr(request["uri"], subject)).decode()
    if operation == "destroy":
        return token.destroy(request["uri"])
    raise Refused(f"unknown operation {operation!r}")


def main() -> int:
    try:
        answer = {"result": run(json.loads(sys.stdin.read()))}
    except Refused as err:
        answer = {"error": str(err)}
    except (ValueError, KeyError, TypeError) as err:
        answer = {"error": f"bad token helper request: {err!r}"}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
