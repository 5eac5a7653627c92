"""``cpagent demo``, the first thing a newcomer runs: what it prints must be true."""

from __future__ import annotations

import re

from tests.integration.conftest import run_cli


async def test_demo_reports_the_sessions_meter_stop_and_no_warnings() -> None:
    result = await run_cli("demo", timeout=120)
    assert result.returncode == 0, result

    session = re.search(r"meter (\d+) Wh -> (\d+) Wh", result.stdout)
    final = re.search(r"Final meter reading: (\d+) Wh", result.stdout)
    stop = re.search(r'"StopTransaction",\{[^}]*"meterStop":(\d+)', result.stdout)
    assert session and final and stop, result.stdout
    assert final[1] == session[2] == stop[1]
    assert int(final[1]) > int(session[1])

    # A routine start-up is no warning: the demo shows warnings, and shows none.
    assert "WARNING" not in result.stdout + result.stderr, result
    assert "schema violations: 0" in result.stdout
