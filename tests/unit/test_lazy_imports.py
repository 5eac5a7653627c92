"""The agent does not load what a charger may never use: ``cryptography`` (some 10 MB of
memory) comes in only with TLS profiles, certificates or signed firmware."""

from __future__ import annotations

import subprocess
import sys


def test_the_agent_starts_without_cryptography() -> None:
    code = (
        "import sys, cpagent.agent, cpagent.cli, cpagent.protocol.v16.charge_point;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
