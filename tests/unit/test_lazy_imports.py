"""The agent does not load what a charger may never use: ``cryptography`` (some 10 MB of
memory) comes in only with TLS profiles, certificates or signed firmware; python-pkcs11
never, as the token helper process is the one that uses it."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_packages(*packages: str, importing: str) -> list[str]:
    """The modules of ``packages`` that a fresh interpreter has loaded after ``importing``."""
    code = (
        f"import json, sys, {importing};"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_the_agent_starts_without_cryptography() -> None:
    agent = "cpagent.agent, cpagent.cli, cpagent.protocol.v16.charge_point"
    assert loaded_packages("cryptography", "pkcs11", importing=agent) == []


def test_the_certificate_store_does_not_load_python_pkcs11() -> None:
    store = "cpagent.security.pki, cpagent.security.keys, cpagent.security.connection"
    loaded = loaded_packages("cryptography", "pkcs11", importing=store)
    assert "cryptography" in loaded
    assert not [name for name in loaded if name.startswith("pkcs11")]
