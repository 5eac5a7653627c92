"""URLs as the log may show them: without their passwords and secret-looking query values.

A module of its own (not :mod:`cpagent.transfer`, where the URLs are used): everything that
logs a firmware or log location needs it, while the transfer code and what it imports
(``ftplib``, ``http.client``) are loaded only when a file is moved.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]

_SECRET_QUERY_KEY = re.compile(r"sig|token|pass|pwd|secret|key|credential|auth", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*:)[^/?#@]*@")


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``.

    ``ftp://user:pw@host/f`` becomes ``ftp://user:***@host/f``; query values whose key looks
    like a credential (``sig``, ``token``, ``key``, ``X-Amz-Signature``...) are redacted too, as
    pre-signed URLs carry one. Never raises: it is meant for log lines about bad URLs as well.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
        query = "&".join(_redact_query_item(item) for item in parts.query.split("&"))
        return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))
    except ValueError:
        return _USERINFO_PASSWORD.sub(r"\1***@", url)


def _redact_query_item(item: str) -> str:
    key, eq, _ = item.partition("=")
    if eq and _SECRET_QUERY_KEY.search(key):
        return f"{key}=***"
    return item
