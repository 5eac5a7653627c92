"""What the agent needs of the OCPP version it speaks, built by that version's ``wiring``.

The agent is the same for both versions: store, hardware, station, control socket, session.
Each version builds its adapter and configuration (1.6 keys or the 2.0.1 device model) and
hands back a :class:`Wiring`; the agent imports only the version the config names.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from cpagent.station.model import StationSettings

ResetRequest = Callable[[str], Coroutine[Any, Any, None]]


@dataclass
class Wiring:
    adapter: Any
    """The version's adapter: the station's output and authorizer, the outgoing queue."""
    settings: StationSettings
    """Kept current with the configuration by the version's code."""
    subprotocol: str
    ping_interval: Callable[[], int]
    charge_point: Callable[[Any, float], Any]
    """``(connection, response_timeout)``: the charge point object serving a connection."""
    subscribe: Callable[[Callable[[], None]], None]
    """Call a function whenever the configuration changed."""
    security_value: Callable[[str], str | None]
    """The 1.6 security keys (SecurityProfile, AuthorizationKey, ...) in this version."""
    security_restore: Callable[[str, str | None], None]
    """Put a security key back after a change that could not connect."""
    max_certificates: int
    max_chain_size: int
    redact: Callable[[str], str]
    """A frame as it may be logged: the version's secrets hidden."""
    base_url: Callable[[], str]
    """The CSMS URL (without the identity) to connect to now."""
    on_attempt: Callable[[bool], None] = lambda _established: None
    """How each connection attempt ended; the version may change :attr:`base_url`."""
