"""The OCPP 1.6 secret a frame may carry, hidden before the frame is logged."""

from __future__ import annotations

import re

from cpagent.protocol.v16.config_keys import KEYS

_SECRETS = "|".join(re.escape(name) for name, spec in KEYS.items() if spec.secret)
_SECRET_KEY_VALUE = re.compile(
    rf'("key"\s*:\s*"(?:{_SECRETS})"\s*,\s*"value"\s*:\s*")[^"]*"'
    rf'|("value"\s*:\s*")[^"]*("\s*,\s*"key"\s*:\s*"(?:{_SECRETS})")',
    re.IGNORECASE,  # key names are CiStrings: "authorizationkey" is the AuthorizationKey
)


def redact(frame: str) -> str:
    """The frame with the secret key (AuthorizationKey, in any case) that a
    ChangeConfiguration sets, or a GetConfiguration would show, hidden."""
    return _SECRET_KEY_VALUE.sub(lambda m: f'{m[1]}***"' if m[1] else f"{m[2]}***{m[3]}", frame)
