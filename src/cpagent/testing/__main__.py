"""``python -m cpagent.testing [--port 9000] [--ocpp VERSION]``: the loopback CSMS on its own,
printing traffic.

It answers whichever subprotocol the agent asks for, ``ocpp1.6`` or ``ocpp2.0.1`` (``--ocpp``,
repeatable, narrows that: a charge point offering none of the versions is closed at once).
Pair it with ``cpagent run --config config/sim.toml`` and ``cpagent sim …`` to try the agent
by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from cpagent.testing.csms import VERSIONS, Frame, LoopbackCsms


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cpagent.testing")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--heartbeat", type=int, default=300, help="heartbeat interval to assign")
    parser.add_argument(
        "--ocpp",
        action="append",
        choices=VERSIONS,
        metavar="VERSION",
        help=f"an OCPP version to accept ({' or '.join(VERSIONS)}; repeatable; default: both)",
    )
    args = parser.parse_args()
    start = time.monotonic()

    def show(frame: Frame) -> None:
        arrow = "CP -> CSMS" if frame.direction == "in" else "CSMS -> CP"
        print(f"{time.monotonic() - start:8.2f}s {frame.cp_id} {arrow} {frame.raw}", flush=True)

    async def serve() -> None:
        csms = LoopbackCsms(
            host=args.host,
            port=args.port,
            heartbeat_interval=args.heartbeat,
            on_frame=show,
            versions=args.ocpp or VERSIONS,
        )
        async with csms:
            speaks = " and ".join(f"OCPP {v}" for v in csms.versions)
            print(f"loopback CSMS listening on {csms.url}/<charge point id> ({speaks})", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
