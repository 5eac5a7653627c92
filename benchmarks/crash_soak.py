"""Crash soak: the seeded kill -9 scenario of the fault-injection tests, many times over.

Each iteration runs ``tests/integration/crash_scenario.py`` for one seed — a fresh loopback
CSMS and data_dir, a random session plan, ``kill -9`` at a random point, restart, drain — and
checks the transaction ledger and the agent's store. One line per iteration, then the totals:
sessions, transaction messages, duplicates (re-sends of the message in flight at a kill or
an outage, under the same unique id), lost and reordered (both must be 0), wall time.
Exit status 1 if any iteration found a problem or could not finish; the data_dir and agent
log of such an iteration are kept and their path printed.

    python benchmarks/crash_soak.py [--ocpp 1.6|2.0.1] [--iterations 200] [--seed-base 1000]

``--ocpp`` picks the OCPP version the agent speaks (default 1.6); in 2.0.1 the transaction
messages are TransactionEvents and the ledger also checks that seqNo is contiguous per
transaction (``tests/integration/ledger201.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration import crash_scenario
from tests.integration.conftest import AgentProcess
from tests.integration.ledger import LOST, REORDERED

from cpagent.testing import LoopbackCsms


async def one_iteration(seed: int, version: str) -> crash_scenario.IterationResult | str:
    """The iteration's result, or why it could not finish."""
    workdir = Path(tempfile.mkdtemp(prefix="cpa-soak-", dir="/tmp"))
    agent: AgentProcess | None = None
    ok = False
    try:
        async with LoopbackCsms() as csms:
            options = crash_scenario.agent_options(f"SOAK{seed}", version)
            agent = AgentProcess(workdir, csms.url, **options)
            try:
                result = await crash_scenario.run_iteration(seed, csms, agent, version)
            except (AssertionError, TimeoutError) as err:
                where = traceback.extract_tb(err.__traceback__)[-3:]
                stack = " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(where))
                if agent.proc is not None and agent.proc.returncode is None:
                    agent.proc.send_signal(signal.SIGABRT)  # faulthandler: stacks to its log
                    await agent.proc.wait()
                return (
                    f"seed {seed}: did not finish: {type(err).__name__} {err!s:.400}"
                    f" at {stack} (kept {workdir})"
                )
            finally:
                if agent.proc is not None and agent.proc.returncode is None:
                    agent.proc.kill()
                    await agent.proc.wait()
        ok = result.report.clean
        return result
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)


async def soak(iterations: int, seed_base: int, version: str = crash_scenario.V16) -> int:
    totals: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    slowest = 0.0
    began = time.monotonic()
    for seed in range(seed_base, seed_base + iterations):
        outcome = await one_iteration(seed, version)
        if isinstance(outcome, str):
            failures.append(outcome)
            print(outcome, flush=True)
            continue
        print(outcome.line(), flush=True)
        summary = outcome.report.summary()
        for key in ("sessions", "messages", "received", "duplicates"):
            totals[key] += summary[key]
        for problem in outcome.report.problems:
            totals[f"problem:{problem.kind}"] += 1
        reasons.update(summary["stop_reasons"])
        totals["outages"] += outcome.outages
        slowest = max(slowest, outcome.seconds)
        if not outcome.report.clean:
            failures.append(f"seed {outcome.plan.seed}: {outcome.plan.describe()}")
            failures += [f"    {p}" for p in outcome.report.problems]
    wall = time.monotonic() - began
    kinds = {k.removeprefix("problem:"): v for k, v in totals.items() if k.startswith("problem:")}
    lost, reordered = kinds.pop(LOST, 0), kinds.pop(REORDERED, 0)
    print()
    if version != crash_scenario.V16:
        print(f"OCPP version         {version}")
    print(f"iterations           {iterations} ({'FAILURES' if failures else 'all clean'})")
    print(f"sessions             {totals['sessions']}  stop reasons {dict(reasons)}")
    print(f"transaction messages {totals['messages']} ({totals['received']} received)")
    print(f"duplicates           {totals['duplicates']} (in-flight re-sends, same unique id)")
    print(f"network outages      {totals['outages']}")
    print(f"lost                 {lost}")
    print(f"reordered            {reordered}")
    print(f"other problems       {kinds or 0}")
    print(f"did not finish       {sum(1 for f in failures if 'did not finish' in f)}")
    per = wall / iterations if iterations else 0.0
    print(f"wall time            {wall:.1f} s ({per:.2f} s per iteration, slowest {slowest:.2f} s)")
    if failures:
        print("\nfailures:")
        for line in failures:
            print(line)
        return 1
    return 0


def main() -> None:
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")  # the agents dump their stacks on SIGABRT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed-base", type=int, default=1, help="first seed (default 1)")
    parser.add_argument(
        "--ocpp",
        choices=crash_scenario.VERSIONS,
        default=crash_scenario.V16,
        help="the OCPP version the agent speaks (default 1.6)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(args.iterations, args.seed_base, args.ocpp)))


if __name__ == "__main__":
    main()
