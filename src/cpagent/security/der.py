"""The few DER encoding steps cpagent does by hand, where no library call fits: a CSR signed
in a token, the key reference pkcs11-provider reads, and OCPP's hash of an issuer key."""

from __future__ import annotations

__all__ = ["element", "encode"]


def encode(tag: int, body: bytes) -> bytes:
    """One DER element: ``tag``, the definite length of ``body``, ``body``."""
    length = len(body)
    if length < 0x80:
        return bytes([tag, length]) + body
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def element(der: bytes, pos: int) -> tuple[int, int, int]:
    """Tag, content start and content end of the DER element at ``pos``; ValueError or
    IndexError when ``der`` is cut short."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length
