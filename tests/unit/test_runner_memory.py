"""The restart loop keeps what start-up built out of the garbage collector's sight while an
agent runs (so full collections stay short and answers to the CSMS are not stalled by them),
and has the collector reclaim an agent that a reset replaced."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from cpagent import agent as agent_module
from cpagent.config import parse_config
from cpagent.runner import serve
from cpagent.testing import LoopbackCsms

WAIT_S = 30.0


async def test_start_up_is_frozen_and_an_agent_replaced_by_a_reset_is_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[weakref.ref[agent_module.Agent]] = []

    class Tracked(agent_module.Agent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(agent_module, "Agent", Tracked)
    async with LoopbackCsms() as csms:
        config = parse_config(
            {
                "charge_point": {"id": "CP-GC", "vendor": "V", "model": "M", "connectors": 1},
                "csms": {"url": csms.url},
                "storage": {"data_dir": str(tmp_path / "data")},
                "control": {"socket": str(tmp_path / "control.sock")},
                "hal": {"backend": "sim"},
            }
        )
        task = asyncio.create_task(serve(config))
        try:
            async with asyncio.timeout(WAIT_S):
                await csms.wait_for("BootNotification")
            assert gc.get_freeze_count() > 0
            mark = csms.mark()
            assert await csms.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
            async with asyncio.timeout(WAIT_S):
                await csms.wait_for("BootNotification", since=mark)
            assert len(made) == 2
            assert made[0]() is None  # collected by the restart loop itself
            assert made[1]() is not None
            assert gc.get_freeze_count() > 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gc.unfreeze()
