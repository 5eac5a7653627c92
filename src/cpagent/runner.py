"""``cpagent run``: logging, signals, the restart loop, re-execution, and clear exits.

An agent asked to restart (``cpagent restart --when-idle``, after a package upgrade)
stops as on SIGTERM, then the process replaces its image with ``sys.executable`` and
the same command line (:func:`reexec`): the code now on disk runs, under the same PID
(systemd's main PID for ``Type=notify``), with the same environment (``NOTIFY_SOCKET``,
``WATCHDOG_USEC``, ``WATCHDOG_PID``: the new image notifies ``READY=1`` and feeds the
watchdog again) and the same working directory. The old image has closed the control
socket and the store (releasing its lock) by then, and marks every descriptor it holds
beyond stdin, stdout and stderr close-on-exec, so none leaks into the new image.
``STOPPING=1`` is not sent: to systemd the service stays active throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from cpagent.config import Config
from cpagent.exc import AlreadyRunningError, ConfigError, ControlError, HalError, StoreError
from cpagent.logescape import ESCAPE_CONTROLS
from cpagent.systemd import Notifier, log_handler_for_stderr

log = logging.getLogger("cpagent")

LOG_FILE_BYTES = 5 * 2**20
LOG_FILE_BACKUPS = 3

EXIT_ERROR = 1

STATUS_CHECK_S = 1.0
"""How often the systemd status line is recomputed (it is sent only when it changed)."""


def setup_logging(level: str, file: Path | None = None) -> None:
    """Log to stderr, or natively to journald when stderr is the journal (with structured
    fields, see :mod:`cpagent.systemd`), and also to ``file`` if given; every handler
    escapes the control characters of what comes from outside (:mod:`cpagent.logescape`)."""
    handlers: list[logging.Handler] = [log_handler_for_stderr()]
    if file is not None:
        # With pickle: 0.6 MB that a charger logging to stderr only does without.
        from logging.handlers import RotatingFileHandler

        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                RotatingFileHandler(file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS)
            )
        except OSError as err:
            print(f"cpagent: cannot log to {file}: {err}; logging to stderr only", file=sys.stderr)
    for handler in handlers:
        handler.addFilter(ESCAPE_CONTROLS)
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=handlers,
    )
    # Library warnings (gpiozero naming the pin libraries it could not load) become one
    # log line each.
    warnings.formatwarning = lambda message, category, *_args, **_kw: (
        f"{category.__name__}: {message}"
    )
    logging.captureWarnings(True)
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # pymodbus logs every failed request at ERROR; the agent reports a device fault once,
    # with its cause, when it starts and when it ends, so the library stays quiet.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def serve(config: Config, notifier: Notifier | None = None) -> bool:
    """Run agents until a stop signal; a Reset or an internal failure builds a fresh one.
    Return True when the agent stopped to be re-executed (:func:`reexec`).

    Tells systemd (when it runs the agent with ``Type=notify``) when each agent is ready,
    how the link to the CSMS is doing, that the event loop is alive, and that it stops.
    """
    from cpagent.agent import Agent
    from cpagent.protocol.session import NetworkSwitch

    loop = asyncio.get_running_loop()
    notifier = notifier or Notifier(None)
    network = NetworkSwitch()
    hardware = None
    stop = False
    reexecuting = False
    agent: Agent | None = None
    runs = 0

    def status() -> str | None:
        return agent.status_line() if agent is not None and agent.ready else None

    def ready(a: Agent) -> None:
        # What start-up built (modules, the catalogue, the agent's parts) lives as long as
        # the agent: out of the collector's sight, full collections stay short and do not
        # stall an answer to the CSMS. Unfrozen when the agent ends; the agent a reset
        # replaced is collected before its successor is frozen.
        if runs > 1:
            gc.collect()
        gc.freeze()
        notifier.ready(a.status_line())

    background = [
        asyncio.create_task(notifier.run_watchdog(), name="systemd-watchdog"),
        asyncio.create_task(notifier.run_status(status, STATUS_CHECK_S), name="systemd-status"),
    ]
    try:
        while True:
            runs += 1
            agent = Agent(
                config,
                hardware=hardware,
                network=network,
                on_ready=ready,
            )

            def on_signal(a: Agent = agent) -> None:
                nonlocal stop
                stop = True
                notifier.stopping()
                a.stop()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal)
            try:
                result = await agent.run()
            finally:
                gc.unfreeze()
            if agent.reexec and not stop:
                log.info("re-executing into the installed code (same process, id %d)", os.getpid())
                notifier.status("restarting into the installed version")
                reexecuting = True
                return True
            if stop or result is None:
                log.info("stopped")
                return False
            hardware = agent.hardware if result == "Soft" else None
            log.warning("restarting (%s reset)", result)
            notifier.status(f"restarting ({result} reset)")
    finally:
        if not reexecuting:
            notifier.stopping()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


def run_forever(config: Config) -> int:
    setup_logging(config.logging.level, config.logging.file)
    for warning in config.warnings:
        log.warning("config: %s", warning)
    notifier = Notifier.from_env()
    try:
        again = asyncio.run(serve(config, notifier))
    except (AlreadyRunningError, StoreError, ControlError, ConfigError, HalError) as err:
        print(f"cpagent: {err}", file=sys.stderr)
        notifier.notify(f"STATUS=failed: {' '.join(str(err).splitlines())}")
        return EXIT_ERROR
    finally:
        notifier.close()
    if again:
        return reexec()
    return 0


def reexec() -> int:
    """Replace the process image with the same command run anew (see the module's
    docstring); returns only if that fails, with the exit status to leave with (a service
    manager then starts the agent again)."""
    argv = list(sys.orig_argv) or [sys.executable]
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _close_on_exec()
    try:
        os.execv(sys.executable, argv)
    except OSError as err:
        log.error("cannot re-execute %s: %s; exiting instead", sys.executable, err)
    return EXIT_ERROR


def _close_on_exec(first: int = 3) -> None:
    """Mark every open descriptor from ``first`` on close-on-exec. Python opens its own
    that way already (PEP 446); this covers any a library opened otherwise."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(first, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024))
    for fd in fds:
        if fd >= first:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
