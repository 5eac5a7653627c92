"""The agent: builds the pieces from the config, runs them, restarts them on a reset.

Lifecycle: open the store (which also refuses a second agent on the same
data_dir), bring up the hardware, close what a crash left open, start the
control socket and the CSMS session, run until told to stop. Shutdown is one
idempotent path that puts every output in its safe state and closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from websockets.asyncio.client import ClientConnection

from cpagent import __version__
from cpagent.config import Config
from cpagent.control import ControlServer
from cpagent.exc import ControlError, NotSimulatedError
from cpagent.hal.base import Hardware
from cpagent.hal.factory import build_hardware
from cpagent.hal.sim import SimHardware
from cpagent.protocol.session import NetworkSwitch, Session
from cpagent.protocol.wiring import Wiring
from cpagent.restart import RestartPlan, Verdict
from cpagent.security.connection import CERTS_DIR, CertificateSource, ConnectionSecurity
from cpagent.security.events import SecurityEventType, SecurityLog
from cpagent.station.firmware import FirmwareUpdater
from cpagent.station.model import StopReason
from cpagent.station.persistence import (
    CHARGING_PROFILES_STATE_KEY,
    RESERVATIONS_STATE_KEY,
    StatePersistence,
    charging_profiles_from_json,
    reservations_from_json,
)
from cpagent.station.station import Station, UnfinishedTransaction
from cpagent.store import Store
from cpagent.systemd import FIELD_OCPP_ACTION, FIELD_OCPP_MESSAGE_ID, status_text
from cpagent.updates import AgentFirmwarePorts, DiagnosticsUploader, load_job

if TYPE_CHECKING:
    from cpagent.protocol.v16.adapter import V16Adapter
    from cpagent.protocol.v201.adapter import V201Adapter
    from cpagent.security.pki import CertificateStore

    Adapter = V16Adapter | V201Adapter

log = logging.getLogger(__name__)
traffic = logging.getLogger("cpagent.traffic")

RESET_DRAIN_S = 10.0
PREPARE_UPGRADE_S = 100.0
"""At most this long for ``prepare-upgrade`` to load what it loads (seconds on a Pi, more
under emulation); the CLI waits a little longer for the answer."""
MAX_REASON = 500
SHUTDOWN_STOP_S = 5.0
SHUTDOWN_DRAIN_S = 2.0
FIRMWARE_DIR = "firmware"
SECURITY_LOG = "security.log"


_FRAME_HEAD = re.compile(r'\s*\[\s*([234])\s*,\s*"((?:[^"\\]|\\.)*)"\s*(?:,\s*"([^"\\]*)")?')
"""An OCPP-J frame's message type, unique id and, for a CALL, its action."""
_ACTIONS_KEPT = 64


class _LoggedConnection:
    """The websocket as the ``ocpp`` library sees it, with every frame logged.

    Each line carries the frame's OCPP action and message id as journal fields; an answer
    (CALLRESULT, CALLERROR) names no action, so the actions of the CALLs seen recently in
    either direction are remembered by message id.
    """

    def __init__(self, ws: ClientConnection, redact: Callable[[str], str]) -> None:
        self.ws = ws
        self.redact = redact
        self._actions: dict[str, str] = {}

    async def recv(self) -> str | bytes:
        frame = await self.ws.recv()
        if traffic.isEnabledFor(logging.DEBUG):
            traffic.debug("<- %s", self._redacted(frame), extra=self._fields(frame))
        return frame

    async def send(self, frame: str) -> None:
        if traffic.isEnabledFor(logging.DEBUG):
            traffic.debug("-> %s", self._redacted(frame), extra=self._fields(frame))
        await self.ws.send(frame)

    def _redacted(self, frame: str | bytes) -> str | bytes:
        """The frame with passwords in URLs (firmware and log locations) and the secrets of
        the OCPP version (1.6's AuthorizationKey, 2.0.1's BasicAuthPassword) hidden."""
        if isinstance(frame, bytes):
            return frame
        return self.redact(_URL_PASSWORD.sub(r"\1***@", frame))

    def _fields(self, frame: str | bytes) -> dict[str, str]:
        match = _FRAME_HEAD.match(frame) if isinstance(frame, str) else None
        if match is None:
            return {}
        kind, message_id, action = match.groups()
        if kind == "2" and action:
            self._actions[message_id] = action
            while len(self._actions) > _ACTIONS_KEPT:
                del self._actions[next(iter(self._actions))]
        else:
            action = self._actions.pop(message_id, None)
        fields = {FIELD_OCPP_MESSAGE_ID: message_id}
        if action:
            fields[FIELD_OCPP_ACTION] = action
        return fields


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/@\s\"]*?:)[^/@\s\"]+@", re.IGNORECASE)


def _no_charge_point(_connection: Any, _timeout: float) -> Any:
    raise RuntimeError("no OCPP version wired yet")


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        hardware: Hardware | None = None,
        network: NetworkSwitch | None = None,
        on_ready: Callable[[Agent], None] | None = None,
    ) -> None:
        """``on_ready(agent)`` is called once the store, the hardware, the station and the
        control socket are up, before the CSMS is tried (systemd's ``READY=1``)."""
        self.config = config
        self.on_ready = on_ready
        self.ready = False
        self.hardware = hardware
        self.network = network or NetworkSwitch()
        self.reset_requested: str | None = None
        self.restarts = RestartPlan(config.control.restart_max_wait_s)
        self.reexec = False
        """True once the agent stops to re-execute itself (``cpagent restart``): the runner
        then replaces the process image with the code now on disk, keeping the PID."""
        self._restart_waiter: asyncio.Task[None] | None = None
        self._reset_waiter: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.store = Store(config.storage.data_dir)
        self.station: Station | None = None
        self.adapter: Adapter | None = None
        self._charge_point: Callable[[Any, float], Any] = _no_charge_point
        self._redact: Callable[[str], str] = str
        self.session: Session | None = None
        self.firmware: FirmwareUpdater | None = None
        self.diagnostics: DiagnosticsUploader | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> str | None:
        """Run until stopped; return ``"Soft"``/``"Hard"`` when a Reset asks for a restart."""
        self.store.open()
        control: ControlServer | None = None
        try:
            hw = self.hardware = self.hardware or build_hardware(self.config)
            wiring = self._wire(hw)
            adapter = self.adapter = wiring.adapter
            adapter.security_log = SecurityLog(self.config.storage.data_dir / SECURITY_LOG)
            persistence = StatePersistence(self.store)
            station = self.station = Station(
                hw,
                adapter,
                adapter,
                wiring.settings,
                reservation_store=persistence,
                profile_store=persistence,
            )
            adapter.attach(station)
            wiring.subscribe(station.settings_changed)
            await adapter.load_queue()
            if isinstance(hw, SimHardware):
                for cid in hw.connectors:
                    hw.raise_energy_floor(cid, self.store.max_meter_wh(cid))
            await hw.start()
            recovery = self._recovery()
            await station.start(**recovery)
            await adapter.security_event(
                SecurityEventType.RESET_OR_REBOOT
                if recovery["recovery_reason"] is StopReason.REBOOT
                else SecurityEventType.STARTUP_OF_THE_DEVICE
            )
            certificates = self._certificate_store(wiring)
            firmware = self.firmware = FirmwareUpdater(
                AgentFirmwarePorts(self.config, self.store, adapter, certificates=certificates),
                station,
                download_dir=self.config.storage.data_dir / FIRMWARE_DIR,
                current_version=self.config.charge_point.firmware_version,
            )
            adapter.firmware = firmware
            await firmware.start(load_job(self.store))
            adapter.diagnostics = self.diagnostics = DiagnosticsUploader(
                self.config, self.store, adapter, security_log=adapter.security_log
            )
            control = ControlServer(self.config.control.socket, self._control)
            await control.start()
            security = adapter.security = self._connection_security(wiring, certificates)
            self._charge_point = wiring.charge_point
            self._redact = wiring.redact
            session = self.session = Session(
                self.config.csms,
                self.config.charge_point.id,
                wiring.subprotocol,
                self._serve,
                self.network,
                ping_interval=wiring.ping_interval,
                security=security,
                hold_calls=adapter.hold_calls,
                on_attempt=functools.partial(self._attempted, wiring, security),
            )
            wiring.subscribe(session.settings_changed)
            log.info(
                "cpagent %s up: %s, %d connector(s), %s hardware",
                __version__,
                self.session.url,
                len(hw.connectors),
                self.config.hal.backend,
            )
            self.ready = True
            if self.on_ready is not None:
                self.on_ready(self)
            await self._supervise(station, self.session)
            return self.reset_requested
        finally:
            self.ready = False
            for waiter in (self._restart_waiter, self._reset_waiter):
                if waiter is not None:
                    waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)
            if self.firmware is not None:
                await self.firmware.stop()
            if self.diagnostics is not None:
                await self.diagnostics.stop()
            if control is not None:
                await control.close()
            if self.hardware is not None:
                if self.station is not None:
                    self.station.detach()
                if self.reset_requested != "Soft":
                    await self.hardware.close()
            self.store.close()

    def _certificate_store(self, wiring: Wiring) -> CertificateSource:
        """The certificate store, seeded with what the factory provisioned. It is opened
        (and ``cryptography`` loaded) on first use, at start-up only when the config
        provisions certificates: a charger without them saves some 10 MB of memory."""
        config = self.config

        @functools.cache
        def open_store() -> CertificateStore:
            from cpagent.security.keys import KeyStorage
            from cpagent.security.pki import CertificateStore, CertificateUse, PkiError

            certificates = CertificateStore(
                config.storage.data_dir / CERTS_DIR,
                max_certificates=wiring.max_certificates,
                max_chain_size=wiring.max_chain_size,
                keys=KeyStorage(config.security.token),
            )
            provisioned = config.security
            seeding: list[Callable[[], list[str]]] = [
                functools.partial(certificates.seed, use, bundle)
                for use, bundle in (
                    (CertificateUse.CENTRAL_SYSTEM_ROOT, provisioned.csms_root_certificates),
                    (CertificateUse.MANUFACTURER_ROOT, provisioned.manufacturer_root_certificates),
                )
                if bundle is not None
            ]
            if provisioned.charge_point_certificate and provisioned.charge_point_key:
                seeding.append(
                    functools.partial(
                        certificates.seed_identity,
                        provisioned.charge_point_certificate,
                        provisioned.charge_point_key,
                    )
                )
            for seed in seeding:
                try:
                    for warning in seed():
                        log.warning("certificates: %s", warning)
                except PkiError as err:
                    log.error("certificates: %s", err)
            return certificates

        if any(vars(config.security).values()) or (config.storage.data_dir / CERTS_DIR).exists():
            open_store()  # seed now, and complete a renewal a power cut interrupted
        return open_store

    def _connection_security(
        self, wiring: Wiring, certificates: CertificateSource
    ) -> ConnectionSecurity:
        """The security profile policy the session connects by."""
        config = self.config

        def restore(name: str, previous: str | None) -> None:
            if name == "ChargePointCertificate":
                certificates().revert_identity()
            else:
                wiring.security_restore(name, previous)

        return ConnectionSecurity(
            base_url=wiring.base_url(),
            charge_point_id=config.charge_point.id,
            certificates=certificates,
            allow_basic_auth_without_tls=config.csms.allow_basic_auth_without_tls,
            value=wiring.security_value,
            restore=restore,
            reconnect=lambda: self.session.reconnect() if self.session else None,
            report=wiring.adapter.report_security_event,
            trials=self.store,
        )

    @staticmethod
    def _attempted(wiring: Wiring, security: ConnectionSecurity, established: bool) -> None:
        """A connection attempt ended: the version may move to another CSMS (2.0.1's network
        profiles), which the next attempt uses."""
        wiring.on_attempt(established)
        security.base_url = wiring.base_url()

    def _wire(self, hw: Hardware) -> Wiring:
        """The pieces of the OCPP version the config names; only that version is imported."""
        if self.config.csms.ocpp_version == "2.0.1":
            from cpagent.protocol.v201 import wiring as v201

            return v201.wire(self.config, self.store, hw, self._reset)
        from cpagent.protocol.v16 import wiring as v16

        return v16.wire(self.config, self.store, hw, self._reset)

    def _recovery(self) -> dict[str, Any]:
        store = self.store
        hw = self.hardware
        assert hw is not None
        availability = {
            cid: store.get_state(f"availability.{cid}") != "0" for cid in [0, *hw.connectors]
        }
        reason = StopReason.REBOOT if store.get_state("reset.pending") else StopReason.POWER_LOSS
        store.set_state("reset.pending", "")
        unfinished = [
            UnfinishedTransaction(
                tx.local_id, tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.last_meter_wh
            )
            for tx in store.open_transactions()
        ]
        reservations = reservations_from_json(store.get_state(RESERVATIONS_STATE_KEY))
        profiles = charging_profiles_from_json(store.get_state(CHARGING_PROFILES_STATE_KEY))
        return {
            "availability": availability,
            "unfinished": unfinished,
            "recovery_reason": reason,
            "reservations": reservations,
            "charging_profiles": profiles,
        }

    async def _supervise(self, station: Station, session: Session) -> None:
        tasks = [
            asyncio.create_task(station.run(), name="station"),
            asyncio.create_task(session.run(), name="session"),
        ]
        stopping = asyncio.create_task(self._stopping.wait(), name="stop-signal")
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception():
                    log.critical(
                        "%s stopped unexpectedly; restarting",
                        task.get_name(),
                        exc_info=task.exception(),
                    )
                    self.reset_requested = "Hard"
            if self.reset_requested is None:
                await self._end_sessions_for_shutdown(station)
        finally:
            for task in [*tasks, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)

    async def _end_sessions_for_shutdown(self, station: Station) -> None:
        """A stopped agent opens every contactor, so running sessions end here, with reason
        Reboot, and get a short chance to reach the CSMS; whatever does not is sent after
        the next start."""
        assert self.adapter is not None
        try:
            await asyncio.wait_for(station.stop_all(StopReason.REBOOT), SHUTDOWN_STOP_S)
            await self.adapter.drain(SHUTDOWN_DRAIN_S)
        except Exception:  # shutdown goes on; a session it cannot close is recovered at start
            log.exception("could not end sessions cleanly before shutdown")

    async def _serve(self, ws: ClientConnection) -> None:
        assert self.adapter is not None
        connection = _LoggedConnection(ws, self._redact)
        cp = self._charge_point(connection, self.config.csms.response_timeout_s)
        reader = asyncio.create_task(cp.start(), name="ocpp-reader")
        assert self.session is not None
        serving = asyncio.create_task(
            self.adapter.serve(cp, established=self.session.established), name="ocpp-serve"
        )
        try:
            done, _ = await asyncio.wait([reader, serving], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (err := task.exception()) is not None:
                    log.info("connection ended: %r", err)
            if reader in done:
                # The answer to the CALL in flight may have come with the last frames read:
                # it is recorded before the sender goes, or the message would go out again
                # (a second transactionId for one StartTransaction). One still unanswered
                # fails at once.
                await cp.close()
                async with self.adapter.hold_calls():
                    pass
        finally:
            for task in (reader, serving):
                task.cancel()
            await asyncio.gather(reader, serving, return_exceptions=True)
            await cp.close()

    async def _reset(self, kind: str) -> None:
        """A Reset from the CSMS: end sessions (their final messages are sent first), then
        restart. OCPP 1.6 asks for a ``Soft`` or ``Hard`` one; OCPP 2.0.1 for an
        ``Immediate`` one (restarted as Hard) or one ``OnIdle``, which waits for the running
        sessions to end, with no new one starting meanwhile."""
        if kind == "OnIdle":
            if self._reset_waiter is None:
                self._reset_waiter = asyncio.create_task(self._reset_when_idle(), name="reset")
            return
        if kind == "Immediate":
            kind = "Hard"
        assert self.station is not None and self.adapter is not None
        log.warning("%s reset requested by the CSMS", kind)
        reason = StopReason.HARD_RESET if kind == "Hard" else StopReason.SOFT_RESET
        await self.station.stop_all(reason)
        await self.store.run(self.store.set_state, "reset.pending", kind)
        if not await self.adapter.drain(RESET_DRAIN_S):
            log.warning("restarting with %d message(s) still queued", self.adapter.queue_depth)
        self.reset_requested = kind
        self._stopping.set()

    async def _reset_when_idle(self) -> None:
        station = self.station
        assert station is not None
        while busy := await station.quiesce():
            log.info("reset waits for the session(s) on EVSE(s) %s to end", busy)
            await station.activity.wait(None)
        await self._reset("Hard")

    # ------------------------------------------------------------------ control

    async def _control(self, request: dict[str, Any]) -> Any:
        cmd = request["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "restart":
            return await self._request_restart(request)
        if cmd == "prepare-upgrade":
            return await self._prepare_upgrade()
        if cmd == "sim":
            args = request.get("args")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise ValueError("sim needs 'args': a list of strings")
            return self._sim(args)
        raise ValueError(f"unknown command {cmd!r}")

    # ------------------------------------------------------------------ restart

    async def _request_restart(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "restart", "when": "idle", "reason": ...}``: restart into the code on
        disk as soon as no session runs (at once if none does), at the latest at the
        deadline (:mod:`cpagent.restart`). Answers ``{"restarting": true}`` when the
        restart begins now, else ``{"restarting": false, "already_pending": ...}``, both
        with ``"restart"`` as ``cpagent status`` shows it."""
        if request.get("when", "idle") != "idle":
            raise ValueError("restart needs 'when': \"idle\" (the only kind there is)")
        reason = request.get("reason")
        if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_REASON):
            raise ValueError(f"'reason' must be text of at most {MAX_REASON} characters")
        station = self.station
        assert station is not None
        pending, again = self.restarts.request(reason or None)
        log.info(
            "restart requested%s: %s",
            " again" if again else "",
            reason or "no reason given",
        )
        busy = await station.quiesce()
        if not busy:
            log.info("restarting now: no transaction is running")
            self._begin_restart()
            return {"restarting": True, "restart": pending.describe(busy)}
        log.info(
            "restart waits for the transaction(s) on connector(s) %s to end (%s)",
            ", ".join(map(str, busy)),
            f"at most until {pending.describe(busy)['deadline']}"
            if pending.deadline is not None
            else "without a time limit",
        )
        if self._restart_waiter is None:
            self._restart_waiter = asyncio.create_task(
                self._wait_to_restart(station), name="restart-when-idle"
            )
        return {"restarting": False, "already_pending": again, "restart": pending.describe(busy)}

    async def _wait_to_restart(self, station: Station) -> None:
        """Restart once the station is idle, or at the deadline: woken by every change of
        its busy connectors (:attr:`Station.activity`), never by polling."""
        while True:
            await station.activity.wait(self.restarts.seconds_left())
            verdict = self.restarts.verdict(station.busy_connectors())
            if verdict is Verdict.WAIT:
                continue
            busy = await station.quiesce(force=verdict is Verdict.OVERDUE)
            if not busy:
                log.info("restarting now: the last transaction has ended")
            elif verdict is Verdict.OVERDUE:
                log.warning(
                    "restarting now although connector(s) %s still have a transaction: "
                    "the restart has waited restart_max_wait_s (%g s); ending the sessions",
                    ", ".join(map(str, busy)),
                    self.restarts.max_wait_s,
                )
            else:
                continue  # a session began as the last one ended
            self._begin_restart()
            return

    def _begin_restart(self) -> None:
        """The orderly shutdown a stop signal begins (sessions still running are ended,
        the queue gets its chance to drain), then a re-execution instead of an exit."""
        self.reexec = True
        self._stopping.set()

    async def _prepare_upgrade(self) -> dict[str, Any]:
        """``{"cmd": "prepare-upgrade"}``: load now every module and schema the agent may
        load later (:mod:`cpagent.preload`), before a package upgrade replaces them."""
        from cpagent.preload import preload

        log.info("prepare-upgrade: loading every module the agent may need later")
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(PREPARE_UPGRADE_S):
                loaded = await asyncio.to_thread(preload, self.config.csms.ocpp_version)
        except TimeoutError:
            raise ControlError(
                f"prepare-upgrade did not finish in {PREPARE_UPGRADE_S:g} s; "
                "what it loaded so far stays loaded"
            ) from None
        took = asyncio.get_running_loop().time() - started
        log.info(
            "prepare-upgrade: loaded %d cpagent module(s), %d library module(s) and %d OCPP "
            "schema(s) in %.1f s",
            loaded.modules,
            loaded.library_modules,
            loaded.schemas,
            took,
        )
        return {**loaded.to_json(), "seconds": round(took, 2)}

    def _sim(self, args: list[str]) -> str:
        hw = self.hardware
        if not isinstance(hw, SimHardware):
            raise NotSimulatedError(
                'this agent drives real hardware (hal.backend is not "sim"); '
                "sim commands need the simulated backend"
            )
        match args:
            case ["plug", cid]:
                hw.plug(_connector(cid))
            case ["unplug", cid]:
                hw.unplug(_connector(cid))
            case ["tag", id_tag]:
                if not 0 < len(id_tag) <= 20:
                    raise ValueError("an id tag is 1 to 20 characters")
                hw.present_card(id_tag)
            case ["ev", cid, state]:
                hw.force_ev_state(_connector(cid), state)
            case ["fault", device, cid, ("on" | "off") as onoff]:
                hw.set_fault(device, _connector(cid), onoff == "on")
            case ["network", ("up" | "down") as updown]:
                self.network.set(updown == "up")
            case _:
                raise ValueError(f"unknown sim command: {' '.join(args)}")
        return "ok: " + " ".join(args)

    def status_line(self) -> str:
        """One line on the link to the CSMS, for systemd's ``STATUS=``."""
        adapter, session, hw = self.adapter, self.session, self.hardware
        if adapter is None or session is None or hw is None:
            return "starting"
        return status_text(
            url=_URL_PASSWORD.sub(r"\1***@", session.url),
            connected=session.connected,
            registered=adapter.registered,
            registration=adapter.registration,
            network_up=self.network.up,
            last_error=session.last_error,
            connectors=len(hw.connectors),
            queue=adapter.queue_depth,
        )

    def status(self) -> dict[str, Any]:
        station, adapter, session = self.station, self.adapter, self.session
        assert station is not None and adapter is not None
        csms = adapter.status()
        csms["network"] = "up" if self.network.up else "down"
        csms["last_error"] = session.last_error if session else None
        csms["url"] = _URL_PASSWORD.sub(r"\1***@", session.url) if session else csms["url"]
        csms["security_profile"] = session.security.profile if session else None
        connectors = station.snapshot()
        found: dict[str, Any] = {
            "charge_point_id": self.config.charge_point.id,
            "version": __version__,
            "ocpp_version": self.config.csms.ocpp_version,
            "hal": self.config.hal.backend,
            "csms": csms,
            "charger": {
                "status": str(station.charger.status) if station.charger.status else None,
                "operative": station.charger.operative,
            },
            "connectors": connectors,
            "charging_profiles": [
                {
                    "connector_id": e.connector_id,
                    "id": e.profile.id,
                    "purpose": str(e.profile.purpose),
                    "stack_level": e.profile.stack_level,
                }
                for e in station.charging_profiles
            ],
            "hardware": self.hardware.describe() if self.hardware else {},
            "queue": {
                "depth": adapter.queue_depth,
                "failed": adapter.failed_count,
                "held_for_other_versions": dict(adapter.delivery.held),
            },
            "store": {
                "path": str(self.store.path),
                "recovered_from": (
                    str(self.store.recovered_from) if self.store.recovered_from else None
                ),
            },
            "firmware": {"status": str(self.firmware.status) if self.firmware else "Idle"},
            "diagnostics": {
                "status": "Uploading" if self.diagnostics and self.diagnostics.busy else "Idle"
            },
            "restart": (
                self.restarts.pending.describe(station.busy_connectors())
                if self.restarts.pending is not None
                else None
            ),
        }
        if self.config.csms.ocpp_version == "2.0.1":
            v201 = cast("V201Adapter", adapter)
            found["ocpp201"] = v201.protocol_status()
            for connector in connectors:
                tx = connector["transaction"]
                if tx is not None:  # the station-made 2.0.1 id, not 1.6's from the CSMS
                    tx["id"] = v201.transaction_id(tx["local_id"])
        return found


def _connector(text: str) -> int:
    with contextlib.suppress(ValueError):
        return int(text)
    raise ValueError(f"connector must be a number, not {text!r}")
