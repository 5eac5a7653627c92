"""OCPP 1.6 configuration keys: the registry, value validation and effective values.

The registry (:data:`KEYS`) lists every Core profile key of OCPP 1.6 §9.1, then
the keys of the other profiles it implements (§9.2-9.5), by spec name, with type, access
and default. A key name is a CiString50: :func:`lookup` finds a key whatever the case of the
name asked for, and the agent always answers with the spec's spelling. Values are kept as
*canonical OCPP strings* (``"true"``, ``"300"``, ``"Voltage,SoC"``) because that is what
GetConfiguration reports and ChangeConfiguration sends; :func:`normalize` turns TOML values
and ChangeConfiguration strings into that form, or explains in a short phrase why it cannot.

The CSMS cannot change a read-only key, but the config's ``[ocpp16]`` table may name one
(a key list taken from another charger does): :func:`read_initial` accepts the agent's own
value, or for a limit a lower one the agent then holds itself to (each key's
:attr:`KeySpec.in_config` says which), refuses any other value naming the agent's, and
leaves out an unknown key for a warning.

Keys of profiles the agent does not implement are deliberately absent:
SupportedFeatureProfiles must report only what is implemented, and a key the agent
would ignore must answer NotSupported rather than pretend to be honoured.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cpagent.protocol.v16 import cistring

__all__ = [
    "FILE_TRANSFER_PROTOCOLS",
    "KEYS",
    "LOCAL_AUTH_LIST_MAX",
    "MAX_VALUE_LENGTH",
    "SUPPORTED_FEATURE_PROFILES",
    "SUPPORTED_MEASURANDS",
    "Access",
    "ChangeStatus",
    "ConfigurationKeys",
    "InitialValues",
    "KeySpec",
    "capabilities",
    "lookup",
    "normalize",
    "read_initial",
]

log = logging.getLogger(__name__)

Kind = Literal["bool", "int", "csl", "str", "hex"]
ChangeStatus = Literal["Accepted", "Rejected", "NotSupported"]
InConfig = Literal["equal", "at_most", "subset", "any"]

#: ChangeConfiguration.req and GetConfiguration.conf carry values as CiString500.
MAX_VALUE_LENGTH = 500

#: Largest integer value accepted where a key sets no maximum of its own: intervals and
#: counts end up in timers and JSON integers, which must stay within a signed 32-bit int.
INT_LIMIT = 2**31 - 1


class Access(enum.Enum):
    READ = "R"
    READ_WRITE = "RW"


@dataclass(frozen=True)
class KeySpec:
    """What the spec says about one key.

    ``default`` is the canonical OCPP string used when neither the CSMS nor the
    config set the key; ``None`` means the agent computes the value (for example
    NumberOfConnectors). ``minimum``/``maximum`` bound ``int`` keys;
    ``allowed``/``max_items`` restrict the members of ``csl`` keys, and
    ``item_name`` names a member in error messages ("'Foo' is not a supported
    measurand"); ``limit_key`` names the read-only key whose value bounds the members of a
    ``csl`` key (its ``*MaxLength``). ``hex`` keys hold bytes as hexadecimal,
    ``minimum``/``maximum`` bytes long. A ``secret`` key is write-only: GetConfiguration
    names it without its value.

    ``in_config`` says what ``[ocpp16]`` may set a read-only key to: ``"equal"`` only the
    agent's own value (numbers as numbers, lists as sets), ``"at_most"`` a limit up to the
    agent's that it then enforces, ``"subset"`` some of the agent's list members,
    ``"any"`` any valid value (a behaviour the agent has both ways).
    """

    name: str
    kind: Kind
    access: Access
    default: str | None
    minimum: int | None = 0
    allowed: frozenset[str] | None = None
    max_items: int | None = None
    maximum: int | None = None
    item_name: str = "value"
    secret: bool = False
    limit_key: str | None = None
    in_config: InConfig = "equal"

    @property
    def writable(self) -> bool:
        return self.access is Access.READ_WRITE


SUPPORTED_FEATURE_PROFILES = (
    "Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,Reservation,SmartCharging"
)

#: SupportedFileTransferProtocols: the URL schemes cpagent.transfer handles, in OCPP's names.
FILE_TRANSFER_PROTOCOLS = "FTP,HTTP,HTTPS"

SUPPORTED_MEASURANDS: frozenset[str] = frozenset(
    {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Current.Import",
        "Voltage",
        "Frequency",
        "Current.Offered",
        "Power.Offered",
        "SoC",
    }
)

#: Members allowed in each measurand list; the matching ``*MaxLength`` key reports the limit.
_MEASURAND_LIST_MAX = 8

#: Entries the local authorization list holds at most (LocalAuthListMaxLength), and the
#: entries one SendLocalList may carry (SendLocalListMaxLength).
LOCAL_AUTH_LIST_MAX = 1000

_R = Access.READ
_RW = Access.READ_WRITE


def _bool(name: str, default: str, access: Access = _RW) -> KeySpec:
    return KeySpec(name, "bool", access, default)


def _int(
    name: str, default: str | None, access: Access = _RW, *, maximum: int | None = None
) -> KeySpec:
    return KeySpec(name, "int", access, default, maximum=maximum)


def _limit(name: str, default: int, *, minimum: int = 1) -> KeySpec:
    """A read-only limit; ``[ocpp16]`` may lower it (to ``minimum`` at least)."""
    return KeySpec(name, "int", _R, str(default), minimum=minimum, in_config="at_most")


def _measurands(name: str, default: str) -> KeySpec:
    return KeySpec(
        name,
        "csl",
        _RW,
        default,
        allowed=SUPPORTED_MEASURANDS,
        max_items=_MEASURAND_LIST_MAX,
        item_name="measurand",
        limit_key=f"{name}MaxLength",
    )


_SPECS: tuple[KeySpec, ...] = (
    _bool("AllowOfflineTxForUnknownId", "false"),
    _bool("AuthorizationCacheEnabled", "true"),
    _bool("AuthorizeRemoteTxRequests", "false"),
    _int("BlinkRepeat", "0"),
    _int("ClockAlignedDataInterval", "0"),
    _int("ConnectionTimeOut", "60"),
    # Members are "<connector>.<rotation>" (e.g. "1.RST"); kept as free text. The limit
    # matches ConnectorPhaseRotationMaxLength so the agent never holds more than it reports.
    KeySpec(
        "ConnectorPhaseRotation",
        "csl",
        _RW,
        "0.RST",
        max_items=8,
        limit_key="ConnectorPhaseRotationMaxLength",
    ),
    _limit("ConnectorPhaseRotationMaxLength", 8),
    _limit("GetConfigurationMaxKeys", 100),
    _int("HeartbeatInterval", "300"),
    _int("LightIntensity", "100", maximum=100),
    _bool("LocalAuthorizeOffline", "true"),
    _bool("LocalPreAuthorize", "false"),
    _int("MaxEnergyOnInvalidId", "0"),
    _measurands("MeterValuesAlignedData", "Energy.Active.Import.Register"),
    _limit("MeterValuesAlignedDataMaxLength", _MEASURAND_LIST_MAX),
    _measurands("MeterValuesSampledData", "Energy.Active.Import.Register"),
    _limit("MeterValuesSampledDataMaxLength", _MEASURAND_LIST_MAX),
    _int("MeterValueSampleInterval", "60"),
    _int("MinimumStatusDuration", "0"),
    _int("NumberOfConnectors", None, _R),
    _int("ResetRetries", "3"),
    _bool("StopTransactionOnEVSideDisconnect", "true"),
    _bool("StopTransactionOnInvalidId", "true"),
    _measurands("StopTxnAlignedData", ""),
    _limit("StopTxnAlignedDataMaxLength", _MEASURAND_LIST_MAX),
    _measurands("StopTxnSampledData", "Energy.Active.Import.Register"),
    _limit("StopTxnSampledDataMaxLength", _MEASURAND_LIST_MAX),
    KeySpec("SupportedFeatureProfiles", "csl", _R, SUPPORTED_FEATURE_PROFILES, item_name="profile"),
    _int("SupportedFeatureProfilesMaxLength", "6", _R),
    _int("TransactionMessageAttempts", "3"),
    _int("TransactionMessageRetryInterval", "60"),
    _bool("UnlockConnectorOnEVSideDisconnect", "true"),
    _int("WebSocketPingInterval", "60"),
    # Local Auth List Management (§9.2). One SendLocalList may carry the whole list, so a
    # CSMS can replace it in one Full update instead of leaving a partial list between a
    # Full and the Differentials that would complete it.
    _bool("LocalAuthListEnabled", "true"),
    _limit("LocalAuthListMaxLength", LOCAL_AUTH_LIST_MAX),
    _limit("SendLocalListMaxLength", LOCAL_AUTH_LIST_MAX),
    # Firmware Management (§9.3): the schemes UpdateFirmware and GetDiagnostics URLs may use.
    KeySpec(
        "SupportedFileTransferProtocols",
        "csl",
        _R,
        FILE_TRANSFER_PROTOCOLS,
        allowed=frozenset({"FTP", "FTPS", "HTTP", "HTTPS"}),
        item_name="file transfer protocol",
    ),
    # Reservation (§9.4): whether connector 0 (the charger as a whole) can be reserved. The
    # agent does not offer it (a ReserveNow for connector 0 is Rejected) unless [ocpp16]
    # says true: the CSMS cannot change it.
    KeySpec("ReserveConnectorZeroSupported", "bool", _R, "false", in_config="any"),
    # Smart Charging (§9.5). Read-only: the limits the agent holds SetChargingProfile to.
    _limit("ChargeProfileMaxStackLevel", 10, minimum=0),
    KeySpec(
        "ChargingScheduleAllowedChargingRateUnit",
        "csl",
        _R,
        "Current,Power",
        allowed=frozenset({"Current", "Power"}),
        max_items=2,
        item_name="charging rate unit",
        in_config="subset",
    ),
    _limit("ChargingScheduleMaxPeriods", 48),
    # Whether a phase switch lets numberPhases=1 move a session to one phase (per hardware).
    KeySpec("ConnectorSwitch3to1PhaseSupported", "bool", _R, None),
    _limit("MaxChargingProfilesInstalled", 20),
    # Security extension ("Improved security for OCPP 1.6-J"). The AuthorizationKey is the
    # basic-auth password of profiles 1 and 2, 16 to 20 bytes sent as hex; SecurityProfile
    # is only ever raised (see cpagent.security.connection).
    _bool("AdditionalRootCertificateCheck", "false", _R),
    KeySpec("AuthorizationKey", "hex", _RW, None, minimum=16, maximum=20, secret=True),
    _limit("CertificateSignedMaxChainSize", 10000),
    _limit("CertificateStoreMaxLength", 20),
    KeySpec("CpoName", "str", _RW, None),
    _int("SecurityProfile", "0", maximum=3),
)

#: Every supported key by its exact spec name: Core in spec (alphabetical) order, then the
#: Local Auth List Management keys, the Firmware Management key, the Reservation key, the
#: Smart Charging keys and the security extension's keys.
KEYS: dict[str, KeySpec] = {spec.name: spec for spec in _SPECS}

_FOLDED: dict[str, KeySpec] = {cistring.fold(name): spec for name, spec in KEYS.items()}


def lookup(name: object) -> KeySpec | None:
    """The key ``name`` names, compared as a CiString (ASCII, case-insensitive); None when
    there is no such key."""
    return _FOLDED.get(cistring.fold(name)) if isinstance(name, str) else None


def capabilities(*, connectors: int, phase_switch: bool) -> dict[str, str]:
    """The values the agent computes from its hardware: NumberOfConnectors and
    ConnectorSwitch3to1PhaseSupported (whether any connector has a 1p/3p switch)."""
    return {
        "NumberOfConnectors": str(connectors),
        "ConnectorSwitch3to1PhaseSupported": "true" if phase_switch else "false",
    }


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _int_reason(spec: KeySpec) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f"must be an integer between {spec.minimum} and {spec.maximum}"
    if spec.minimum is not None:
        return f"must be an integer >= {spec.minimum}"
    if spec.maximum is not None:
        return f"must be an integer <= {spec.maximum}"
    return "must be an integer"


def _normalize_bool(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise ValueError("must be true or false")


def _normalize_int(spec: KeySpec, value: object) -> str:
    number: int
    if isinstance(value, bool):  # bool is an int subclass, but never a number here
        raise ValueError(_int_reason(spec))
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(_int_reason(spec))
    if spec.minimum is not None and number < spec.minimum:
        raise ValueError(_int_reason(spec))
    if spec.maximum is not None and number > spec.maximum:
        raise ValueError(_int_reason(spec))
    if abs(number) > INT_LIMIT:
        raise ValueError(f"must be an integer <= {INT_LIMIT}")
    return str(number)


def _normalize_csl(spec: KeySpec, value: object) -> str:
    items: list[str]
    if isinstance(value, str):
        items = [] if not value.strip() else [item.strip() for item in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
        if any("," in item for item in items):
            raise ValueError("list items must not contain ','")
    else:
        raise ValueError("must be a list of strings or a comma-separated string")
    if any(not item for item in items):
        raise ValueError("must not contain empty items")
    if spec.allowed is not None:
        for item in items:
            if item not in spec.allowed:
                raise ValueError(f"{item!r} is not a supported {spec.item_name}")
    if spec.max_items is not None and len(items) > spec.max_items:
        raise ValueError(f"must have at most {spec.max_items} items")
    return ",".join(items)


def _normalize_hex(spec: KeySpec, value: object) -> str:
    low, high = spec.minimum or 0, spec.maximum or MAX_VALUE_LENGTH // 2
    reason = f"must be {low} to {high} bytes in hexadecimal"
    if not isinstance(value, str):
        raise ValueError(reason)
    try:
        size = len(bytes.fromhex(value.strip()))
    except ValueError:
        raise ValueError(reason) from None
    if not low <= size <= high:
        raise ValueError(reason)
    return value.strip().lower()


def normalize(spec: KeySpec, value: object) -> str:
    """Return ``value`` as the canonical OCPP string for ``spec``.

    Accepts what a TOML file holds (bool, int, str, list of str) and what
    ChangeConfiguration sends (always a str). Raises :class:`ValueError` whose
    message is a short reason phrase fit to follow ``key:`` in a problem line.
    """
    canonical: str
    if spec.kind == "bool":
        canonical = _normalize_bool(value)
    elif spec.kind == "int":
        canonical = _normalize_int(spec, value)
    elif spec.kind == "csl":
        canonical = _normalize_csl(spec, value)
    elif spec.kind == "hex":
        canonical = _normalize_hex(spec, value)
    elif isinstance(value, str):
        canonical = value
    else:
        raise ValueError("must be a string")
    if len(canonical) > MAX_VALUE_LENGTH:
        raise ValueError(f"must be at most {MAX_VALUE_LENGTH} characters")
    return canonical


def _members(value: str) -> list[str]:
    return value.split(",") if value else []


def _judge_fixed(spec: KeySpec, canonical: str, own: str) -> str:
    """The value ``[ocpp16]`` gives the read-only key ``spec`` whose agent value is ``own``
    (see :attr:`KeySpec.in_config`); ValueError with the reason for any other."""
    rule = spec.in_config
    if rule == "any":
        return canonical
    if rule == "at_most":
        if int(canonical) > int(own):
            raise ValueError(f"the agent supports at most {own}")
        return canonical
    if spec.kind == "csl":
        wanted, offered = set(_members(canonical)), set(_members(own))
        if rule == "subset":
            if not wanted or not wanted <= offered:
                raise ValueError(f"must be one or more of {own}, the agent's values")
            return canonical
        if wanted == offered and len(wanted) == len(_members(canonical)):
            return own
    elif canonical == own:
        return own
    raise ValueError(f"the agent's value is {own or '(empty)'}; only that value can be set")


def _over_limit(spec: KeySpec, canonical: str, limits: Mapping[str, str]) -> str | None:
    """Why the members of ``canonical`` are too many for ``spec``'s ``*MaxLength`` key in
    ``limits``, or None."""
    if spec.limit_key is None or spec.limit_key not in limits:
        return None
    limit = int(limits[spec.limit_key])
    if len(_members(canonical)) > limit:
        return f"must have at most {limit} items ({spec.limit_key})"
    return None


@dataclass(frozen=True)
class InitialValues:
    """The ``[ocpp16]`` table judged by :func:`read_initial`.

    ``values``: canonical values by spec name; ``problems``: (name as written, reason) for
    each value refused; ``unknown``: the names that are no OCPP 1.6 key the agent knows.
    """

    values: dict[str, str]
    problems: list[tuple[str, str]]
    unknown: list[str]


def read_initial(raw: Mapping[str, object], computed: Mapping[str, str]) -> InitialValues:
    """Judge initial values given by name (any case) as TOML or canonical values.

    A writable key takes any valid value; a read-only one what its :attr:`KeySpec.in_config`
    allows next to the agent's own value (``computed``, else the default; a key whose own
    value is not known, because the config that sets it is wrong, takes any valid value).
    A list is held to its ``*MaxLength``, lowered here or not. A key given twice (in two
    spellings) is a problem.
    """
    values: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    unknown: list[str] = []
    written: dict[str, str] = {}
    for name, value in raw.items():
        spec = lookup(name)
        if spec is None:
            unknown.append(name)
            continue
        if spec.name in written:
            problems.append((name, f"{spec.name} is already set (as {written[spec.name]})"))
            continue
        written[spec.name] = name
        own = computed.get(spec.name, spec.default)
        try:
            canonical = normalize(spec, value)
            if not spec.writable and own is not None:
                canonical = _judge_fixed(spec, canonical, own)
        except ValueError as err:
            problems.append((name, str(err)))
            continue
        values[spec.name] = canonical
    limits = {n: s.default for n, s in KEYS.items() if s.default is not None} | values
    for spec_name, canonical in list(values.items()):
        reason = _over_limit(KEYS[spec_name], canonical, limits)
        if reason is not None:
            problems.append((written[spec_name], reason))
            del values[spec_name]
    return InitialValues(values, problems, unknown)


Listener = Callable[[str, str], None]


def _name(name: str) -> str:
    """The spec's spelling of a key name, or ``name`` itself for an unknown key."""
    spec = lookup(name)
    return name if spec is None else spec.name


class ConfigurationKeys:
    """The effective value of every key, as GetConfiguration reports it.

    Precedence, highest first: a value the CSMS set (``persisted``, or later
    :meth:`apply`), the ``[ocpp16]`` table of the config (``initial``), the
    agent's ``computed`` values, the spec default. Read-only keys take computed
    values, defaults, and initial values as :func:`read_initial` allows them.
    :meth:`apply` and :meth:`set_runtime` replace the effective value whatever its
    origin; the latest call wins.

    ``initial`` and ``computed`` come from the agent itself (the config was checked
    with :func:`read_initial`), so a bad entry there is a bug and raises
    :class:`ValueError`. ``persisted`` comes from disk and may predate the current
    rules: an entry that is unknown, read-only or no longer valid is ignored with a
    warning and the key falls back.

    Every method takes a key name in any case (a CiString, see :func:`lookup`) and
    keeps values under the spec's spelling. A key whose default is ``None`` and that
    has no computed value has no value: :meth:`get` returns ``None`` and :meth:`items`
    leaves it out.
    """

    def __init__(
        self,
        *,
        initial: Mapping[str, str],
        persisted: Mapping[str, str],
        computed: Mapping[str, str],
    ) -> None:
        self._listeners: list[Listener] = []
        self._values: dict[str, str] = {
            name: spec.default for name, spec in KEYS.items() if spec.default is not None
        }
        own: dict[str, str] = {}
        for name, value in computed.items():
            spec, canonical = self._checked(name, value, "computed", writable_only=False)
            own[spec.name] = self._values[spec.name] = canonical
        judged = read_initial(initial, own)
        for name in judged.unknown:
            raise ValueError(f"initial value for {name!r}: unknown OCPP 1.6 configuration key")
        for name, reason in judged.problems:
            raise ValueError(f"initial value {initial[name]!r} for {name!r}: {reason}")
        self._values.update(judged.values)
        for name, value in persisted.items():
            try:
                spec, canonical = self._checked(name, value, "persisted", writable_only=True)
                self._values[spec.name] = self._within_limit(spec, canonical)
            except ValueError as err:
                log.warning("ignoring persisted configuration key %s: %s", name, err)

    @staticmethod
    def _checked(name: str, value: str, origin: str, *, writable_only: bool) -> tuple[KeySpec, str]:
        """The key ``name`` names and ``value`` in canonical form; ValueError naming both."""
        spec = lookup(name)
        if spec is None:
            raise ValueError(f"{origin} value for {name!r}: unknown OCPP 1.6 configuration key")
        if writable_only and not spec.writable:
            raise ValueError(f"{origin} value for {name!r}: read-only; the agent sets it")
        try:
            return spec, normalize(spec, value)
        except ValueError as err:
            raise ValueError(f"{origin} value {value!r} for {name!r}: {err}") from None

    def _within_limit(self, spec: KeySpec, canonical: str) -> str:
        """``canonical``, unless it has more members than ``spec``'s ``*MaxLength`` allows."""
        reason = _over_limit(spec, canonical, self._values)
        if reason is not None:
            raise ValueError(reason)
        return canonical

    def spec(self, name: str) -> KeySpec | None:
        """The key ``name`` names, in any case; None for an unknown key."""
        return lookup(name)

    def known(self, name: str) -> bool:
        """Whether ``name`` is a supported key (compared case-insensitively)."""
        return lookup(name) is not None

    def get(self, name: str) -> str | None:
        """The canonical value, or ``None`` for an unknown key or one without a value."""
        spec = lookup(name)
        return None if spec is None else self._values.get(spec.name)

    def _require(self, name: str, kind: Kind) -> str:
        spec = lookup(name)
        if spec is None:
            raise KeyError(name)
        if spec.kind != kind:
            raise TypeError(f"{name} is a {spec.kind} key, not {kind}")
        value = self._values.get(spec.name)
        if value is None:
            raise KeyError(name)
        return value

    def get_int(self, name: str) -> int:
        """The value of an ``int`` key; KeyError if unknown or unset, TypeError for another kind."""
        return int(self._require(name, "int"))

    def get_bool(self, name: str) -> bool:
        """The value of a ``bool`` key.

        Raises KeyError for an unknown key or one without a value, TypeError for another kind.
        """
        return self._require(name, "bool") == "true"

    def get_list(self, name: str) -> list[str]:
        """The members of a ``csl`` key, ``[]`` for an empty list.

        Raises KeyError for an unknown key or one without a value, TypeError for another kind.
        """
        return _members(self._require(name, "csl"))

    def items(self) -> list[tuple[KeySpec, str]]:
        """Every key that has a value, in :data:`KEYS` order, with that value."""
        return [(spec, self._values[name]) for name, spec in KEYS.items() if name in self._values]

    def report(
        self, names: Sequence[str] | None = None
    ) -> tuple[list[tuple[KeySpec, str | None]], list[str]]:
        """What GetConfiguration answers for ``names`` (every key when None or empty).

        Returns the known keys, each once in the order asked, with the value to show:
        None for a key without a value and always for a secret (write-only) key, which is
        still listed. Then the names that are no known key, as they were asked.
        """
        if not names:
            values = self._values
            return [(s, None if s.secret else values.get(s.name)) for s in KEYS.values()], []
        known: dict[str, tuple[KeySpec, str | None]] = {}
        unknown: list[str] = []
        for name in names:
            spec = lookup(name)
            if spec is None:
                unknown.append(name)
            elif spec.name not in known:
                value = None if spec.secret else self._values.get(spec.name)
                known[spec.name] = (spec, value)
        return list(known.values()), unknown

    def check_change(self, name: str, value: str) -> tuple[ChangeStatus, str]:
        """Judge a ChangeConfiguration request without changing anything.

        Returns ``("Accepted", canonical)`` for a valid value of a writable key,
        ``("NotSupported", reason)`` for an unknown key and ``("Rejected", reason)``
        for a read-only key or an invalid value. The caller persists ``canonical``
        under the key's spec name (:meth:`spec`) and then calls :meth:`apply`.
        """
        spec = lookup(name)
        if spec is None:
            return "NotSupported", "unknown OCPP 1.6 configuration key"
        if not spec.writable:
            return "Rejected", "read-only; the agent sets it"
        try:
            return "Accepted", self._within_limit(spec, normalize(spec, value))
        except ValueError as err:
            return "Rejected", str(err)

    def apply(self, name: str, canonical: str) -> None:
        """Make an accepted CSMS change effective and tell the listeners.

        Raises :class:`ValueError` for a change :meth:`check_change` would not
        accept; persisting the value is the caller's job.
        """
        status, result = self.check_change(name, canonical)
        if status != "Accepted":
            raise ValueError(f"{name}: {result}")
        self._set(_name(name), result)

    def unset(self, name: str) -> None:
        """Drop a key's value (one without a default then has none); listeners are not
        told. For undoing a change to a key that had no value before."""
        self._values.pop(_name(name), None)

    def set_runtime(self, name: str, canonical: str) -> None:
        """Set a value the agent itself decides (e.g. HeartbeatInterval from BootNotification).

        Same effect as :meth:`apply` but also allowed for read-only keys; such a
        value is not persisted and lasts until the next change or restart.
        Raises :class:`ValueError` for an unknown key or an invalid value.
        """
        spec, value = self._checked(name, canonical, "runtime", writable_only=False)
        self._set(spec.name, value)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(name, canonical)`` whenever a key's effective value changes.

        A listener that raises is logged and does not stop the others.
        """
        self._listeners.append(listener)

    def _set(self, name: str, canonical: str) -> None:
        if self._values.get(name) == canonical:
            return
        self._values[name] = canonical
        for listener in list(self._listeners):
            try:
                listener(name, canonical)
            except Exception:
                log.exception("configuration listener failed for %s=%r", name, canonical)
