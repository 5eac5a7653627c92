"""Smart charging: what recomputing the limit costs, at the most profiles the agent takes.

The station evaluates the charging profiles of a charging connector at every period
boundary (``limit_at`` for the limit to offer, ``next_change`` for when to wake next) and
GetCompositeSchedule asks for ``composite_schedule``. This measures the three in this
process with MaxChargingProfilesInstalled (20) profiles of ChargingScheduleMaxPeriods (48)
periods each — Absolute, Relative and Recurring Daily/Weekly, in A and in W, at every
stack level and purpose on connectors 0 and 1 — and with one simple profile, the common
case. Times are the median and worst of ``--rounds`` calls at random instants of a week.

    python benchmarks/smart_charging.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cpagent.station.smart_charging import (
    ProfileSet,
    composite_schedule,
    limit_at,
    next_change,
    parse_profile,
)

T0 = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
WEEK_S = 7 * 86400


def profile(pid: int, rng: random.Random, periods: int) -> tuple[int, dict[str, Any]]:
    purpose = ["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"][pid % 3]
    kind = ["Absolute", "Relative", "Recurring", "Recurring"][pid % 4]
    unit = "A" if pid % 2 else "W"
    step = (86400 if kind != "Relative" else 3600) // periods
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {
                "startPeriod": i * step,
                "limit": rng.randrange(6, 33) if unit == "A" else rng.randrange(4000, 22000),
            }
            for i in range(periods)
        ],
    }
    data: dict[str, Any] = {
        "chargingProfileId": pid,
        "stackLevel": pid // 3,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if kind != "Relative":
        schedule["startSchedule"] = T0.isoformat()
    if kind == "Recurring":
        data["recurrencyKind"] = "Daily" if pid % 8 < 4 else "Weekly"
    connector = 0 if purpose == "ChargePointMaxProfile" or pid % 5 == 0 else 1
    if purpose == "TxProfile":
        connector = 1
    return connector, data


def profile_set(count: int, periods: int, seed: int = 7) -> ProfileSet:
    rng = random.Random(seed)
    out = ProfileSet()
    for pid in range(1, count + 1):
        connector, data = profile(pid, rng, periods)
        out = out.install(connector, parse_profile(data))
    return out


def timed(call: Callable[[datetime], object], instants: list[datetime]) -> tuple[float, float]:
    times = []
    for when in instants:
        start = time.perf_counter()
        call(when)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, max(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(1)
    instants = [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(args.rounds)]
    tx_start = T0 + timedelta(hours=7)
    ctx: dict[str, Any] = {"tx_start": tx_start, "transaction_id": 1, "max_current_a": 32.0}
    print(f"{'profiles':>9} {'periods':>8}  {'call':<34} {'median ms':>10} {'worst ms':>9}")
    for count, periods in ((1, 1), (20, 48)):
        profiles = profile_set(count, periods)
        assert len(profiles) == count, len(profiles)
        rows = [
            ("limit_at", lambda w, p=profiles: limit_at(p, 1, w, **ctx)),
            ("next_change", lambda w, p=profiles: next_change(p, 1, w, **ctx)),
            (
                "composite_schedule (24 h, A)",
                lambda w, p=profiles: composite_schedule(p, 1, w, 86400, "A", **ctx),
            ),
        ]
        for name, call in rows:
            median, worst = timed(call, instants)
            print(f"{count:>9} {periods:>8}  {name:<34} {median:>10.3f} {worst:>9.3f}")


if __name__ == "__main__":
    main()
