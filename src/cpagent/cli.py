"""The ``cpagent`` command line. Heavy modules are imported only by the commands that need them,
so ``cpagent status`` and ``cpagent sim`` answer quickly."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config file (default: $CPAGENT_CONFIG, else /etc/cpagent/cpagent.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    from cpagent import __version__

    parser = argparse.ArgumentParser(prog="cpagent", description="OCPP charge-point agent")
    parser.add_argument("--version", action="version", version=f"cpagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_config(sub.add_parser("run", help="run the agent in the foreground"))
    _add_config(sub.add_parser("check-config", help="validate the config file"))
    status = sub.add_parser("status", help="show the running agent's state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _add_config(status)
    restart = sub.add_parser(
        "restart",
        help="ask the running agent to restart into the installed code once no session runs",
    )
    restart.add_argument(
        "--when-idle",
        action="store_true",
        required=True,
        help="at once if no transaction runs, else when the last one ends "
        "(at the latest after [control] restart_max_wait_s)",
    )
    restart.add_argument("--reason", default=None, metavar="TEXT", help="logged and shown")
    _add_config(restart)
    _add_config(
        sub.add_parser(
            "prepare-upgrade",
            help="make the running agent load now every module it may need later "
            "(before a package upgrade replaces them)",
        )
    )
    demo = sub.add_parser("demo", help="a complete simulated session against a loopback CSMS")
    demo.add_argument(
        "--ocpp", choices=["1.6", "2.0.1"], default="1.6", help="the OCPP version to speak"
    )

    sim = sub.add_parser("sim", help="drive the simulated hardware of a running agent")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    for name, help_text in (("plug", "connect an EV"), ("unplug", "disconnect the EV")):
        p = sim_sub.add_parser(name, help=help_text)
        p.add_argument("connector", type=int)
        _add_config(p)
    p = sim_sub.add_parser("tag", help="present an RFID card")
    p.add_argument("id_tag")
    _add_config(p)
    p = sim_sub.add_parser("ev", help="force the EV's pilot state")
    p.add_argument("connector", type=int)
    p.add_argument("state", choices=list("ABCDEF"), type=str.upper)
    _add_config(p)
    p = sim_sub.add_parser("fault", help="make a device fail or recover")
    p.add_argument("device", choices=["meter", "relay", "pilot"])
    p.add_argument("connector", type=int)
    p.add_argument("state", choices=["on", "off"])
    _add_config(p)
    p = sim_sub.add_parser("network", help="cut or restore the network")
    p.add_argument("state", choices=["up", "down"])
    _add_config(p)
    return parser


def _error(message: str) -> None:
    print(f"cpagent: {message}", file=sys.stderr)


def _load(path: Path | None) -> Any:
    from cpagent.config import default_config_path, load_config

    return load_config(path or default_config_path())


def _run_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """``cpagent run [--config PATH]`` read without building the parser, or None for any
    other command line.

    ``cpagent run`` is the agent's start, and building the parser of every command costs it
    some milliseconds on a small board (fourteen parsers and their help texts, each text
    looked up on disk for a translation). Only forms that :func:`build_parser` reads the
    same way are read here, into the namespace it gives; anything else (another option, an
    abbreviation, a value that starts with ``-``, ``--help``) goes to the full parser, so
    its errors and help are unchanged."""
    if not argv or argv[0] != "run":
        return None
    rest = argv[1:]
    if not rest:
        return argparse.Namespace(command="run", config=None)
    if len(rest) == 1 and rest[0].startswith("--config="):
        return argparse.Namespace(command="run", config=Path(rest[0].removeprefix("--config=")))
    if len(rest) == 2 and rest[0] == "--config" and not rest[1].startswith("-"):
        return argparse.Namespace(command="run", config=Path(rest[1]))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = _run_args(words) or build_parser().parse_args(words)
    from cpagent.exc import ConfigError, ControlError

    try:
        if args.command == "demo":
            from cpagent.testing.demo import run_demo

            return run_demo(args.ocpp)
        config = _load(args.config)
        if args.command == "check-config":
            from cpagent.config import security_warnings, summary
            from cpagent.hal.hardware_config import device_warnings, wiring_warnings

            print(summary(config))
            warnings = [*config.warnings, *security_warnings(config.security)]
            hardware = config.hal.hardware
            if hardware is not None:
                warnings += wiring_warnings(hardware)
                if config.hal.backend == "hardware":
                    warnings += device_warnings(hardware)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            return EXIT_OK
        if args.command == "run":
            from cpagent.runner import run_forever

            return run_forever(config)
        if args.command == "status":
            return _status(config, as_json=args.json)
        if args.command == "sim":
            return _sim(config, args)
        if args.command == "restart":
            return _restart(config, args.reason)
        if args.command == "prepare-upgrade":
            return _prepare_upgrade(config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except ControlError as err:
        _error(str(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)


def _sim(config: Any, args: argparse.Namespace) -> int:
    from cpagent.control import request

    words = [args.sim_command]
    if args.sim_command == "tag":
        words.append(args.id_tag)
    elif args.sim_command == "fault":
        words += [args.device, str(args.connector), args.state]
    elif args.sim_command == "network":
        words.append(args.state)
    else:
        words.append(str(args.connector))
        if args.sim_command == "ev":
            words.append(args.state)
    print(request(config.control.socket, {"cmd": "sim", "args": words}))
    return EXIT_OK


PREPARE_UPGRADE_WAIT_S = 120.0
"""How long ``prepare-upgrade`` waits for the agent's answer (it loads for at most 100 s)."""


def _connectors(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"connector {ids[0]}"
    return "connectors " + ", ".join(map(str, ids[:-1])) + f" and {ids[-1]}"


def _restart(config: Any, reason: str | None) -> int:
    from cpagent.control import request

    answer = request(config.control.socket, {"cmd": "restart", "when": "idle", "reason": reason})
    restart = answer["restart"]
    if answer["restarting"]:
        print("restarting now (no transaction is running)")
        return EXIT_OK
    waiting = restart["waiting_for"]
    plural = "s" if len(waiting) > 1 else ""
    limit = (
        f"at most until {restart['deadline']}" if restart["deadline"] else "without a time limit"
    )
    head = (
        f"restart already pending since {restart['requested_at']}"
        if answer.get("already_pending")
        else "restart pending"
    )
    print(f"{head}: waiting for the transaction{plural} on {_connectors(waiting)} to end ({limit})")
    return EXIT_OK


def _prepare_upgrade(config: Any) -> int:
    from cpagent.control import request

    loaded = request(
        config.control.socket, {"cmd": "prepare-upgrade"}, timeout=PREPARE_UPGRADE_WAIT_S
    )
    failed = loaded["failed"]
    note = f"; not loadable: {', '.join(failed)}" if failed else ""
    print(
        f"prepared for the upgrade: loaded {loaded['modules']} cpagent modules, "
        f"{loaded['library_modules']} library modules and {loaded['schemas']} OCPP schemas "
        f"in {loaded['seconds']:g} s{note}"
    )
    return EXIT_OK


def _restart_line(restart: dict[str, Any]) -> str:
    """The pending restart in one line of ``cpagent status``."""
    waiting = restart["waiting_for"]
    what = f"waiting for {_connectors(waiting)}" if waiting else "restarting now"
    limit = f"at most until {restart['deadline']}" if restart["deadline"] else "no time limit"
    return (
        f"restart pending: {restart['reason'] or 'no reason given'}; {what} "
        f"(requested {restart['requested_at']}, {limit})"
    )


def _print_hardware(hardware: dict[str, Any]) -> None:
    """The devices behind the connectors, for bringing a board up on the bench."""
    for name, bus in hardware.get("buses", {}).items():
        print(f"bus {name:<9} {bus['requests']} request(s)")
    for cid, devices in hardware.get("connectors", {}).items():
        board = devices["board"]
        parts = [
            f"meter {devices['meter']}",
            f"board {board.get('kind')} id {board.get('device_id')}"
            f" (state {board.get('state') or '-'}, firmware {board.get('firmware') or '-'})",
            f"contactor by {devices['contactor']['switched_by']}",
        ]
        parts += [f"{key} {devices[key]}" for key in ("lock", "led") if key in devices]
        print(f"devices {cid:<5} " + ", ".join(parts))
    if "card_reader" in hardware:
        print(f"card reader   {hardware['card_reader']}")


def _status(config: Any, *, as_json: bool) -> int:
    from cpagent.control import request

    state = request(config.control.socket, {"cmd": "status"})
    if as_json:
        print(json.dumps(state, indent=2))
        return EXIT_OK
    csms = state["csms"]
    link = "connected" if csms["connected"] else "disconnected"
    if csms.get("network") == "down":
        link += " (network down)"
    print(
        f"charge point  {state['charge_point_id']}  cpagent {state['version']}  "
        f"OCPP {state['ocpp_version']}  hal {state['hal']}"
    )
    profile = csms.get("security_profile")
    print(
        f"csms          {csms['url']}  {link}  registration {csms['registration'] or '-'}"
        + ("" if profile is None else f"  security profile {profile}")
    )
    if csms.get("last_error") and not csms["connected"]:
        print(f"              last error: {csms['last_error']}")
    queue = state["queue"]
    failed = f", {queue['failed']} refused by the CSMS and kept" if queue.get("failed") else ""
    print(f"queue         {queue['depth']} message(s) waiting{failed}")
    held = queue.get("held_for_other_versions") or {}
    for version, count in sorted(held.items()):
        print(f"              {count} message(s) in OCPP {version} kept until it is spoken again")
    if state["store"]["recovered_from"]:
        print(f"store         damaged database moved aside to {state['store']['recovered_from']}")
    profiles = state.get("charging_profiles") or []
    installed = f"  {len(profiles)} charging profile(s) installed" if profiles else ""
    print(f"charger       {state['charger']['status']}{installed}")
    seq_nos = {
        tx["evse_id"]: tx["next_seq_no"]
        for tx in (state.get("ocpp201") or {}).get("transactions", [])
    }
    for c in state["connectors"]:
        line = (
            f"connector {c['id']}   {c['status']:<14} "
            f"{c['energy_wh']:>10.0f} Wh {c['power_w']:>8.0f} W"
        )
        if c["error_code"] != "NoError":
            line += f"  {c['error_code']}: {c['info'] or ''}"
        tx = c["transaction"]
        if tx:
            line += (
                f"  transaction {tx['id'] if tx['id'] is not None else '(pending)'}"
                f" for {tx['id_tag']}, {tx['energy_wh']:.0f} Wh"
            )
            if c["id"] in seq_nos:
                line += f", next seqNo {seq_nos[c['id']]}"
        print(line)
        limit = c.get("limit_a")
        print(
            f"              pilot {c['pilot'] or '-'}  offering {c['offered_a']:g} A  "
            f"contactor {'closed' if c['contactor_closed'] else 'open'}"
            + ("" if limit is None else f"  charging profile limit {limit:.1f} A")
        )
    _print_hardware(state.get("hardware") or {})
    firmware, diagnostics = state["firmware"]["status"], state["diagnostics"]["status"]
    print(f"firmware      {firmware}    diagnostics {diagnostics}")
    if state.get("restart"):
        print(_restart_line(state["restart"]))
    return EXIT_OK
