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


async def test_the_201_demo_shows_one_transaction_from_start_to_end() -> None:
    result = await run_cli("demo", "--ocpp", "2.0.1", timeout=120)
    assert result.returncode == 0, result
    out = result.stdout
    session = re.search(r"\(OCPP 2\.0\.1\), meter (\d+) Wh -> (\d+) Wh", out)
    final = re.search(r"Final meter reading: (\d+) Wh \(the Ended event's\)", out)
    assert session and final, out
    assert final[1] == session[2] and int(final[1]) > int(session[1])
    events = re.findall(r'"TransactionEvent",\{"eventType":"(\w+)"[^\n]*"seqNo":(\d+)', out)
    assert events[0] == ("Started", "0") and events[-1][0] == "Ended", out
    assert [int(seq) for _, seq in events] == list(range(len(events)))
    assert "stop reason Local" in out
    assert "WARNING" not in out + result.stderr, result
    assert "schema violations: 0" in out
