"""``prepare-upgrade``'s loader (:mod:`cpagent.preload`) on a package made for the test."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpagent.preload import walk


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "preloadme"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "good.py").write_text("VALUE = 1\n")
    (root / "broken.py").write_text("import no_such_module_anywhere\n")
    (root / "exits.py").write_text("raise SystemExit(3)\n")
    (root / "__main__.py").write_text("raise RuntimeError('never imported')\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "deep.py").write_text("")
    (root / "testing").mkdir()
    (root / "testing" / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    sys.path.insert(0, str(tmp_path))
    yield "preloadme"
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "preloadme"]:
        del sys.modules[name]


def test_every_module_is_loaded_and_one_that_fails_is_logged_and_skipped(
    package: str, caplog: pytest.LogCaptureFixture
) -> None:
    failed: list[str] = []
    with caplog.at_level(logging.WARNING, logger="cpagent.preload"):
        loaded = list(walk(package, failed))
    assert sorted(loaded) == [
        "preloadme",
        "preloadme.good",
        "preloadme.sub",
        "preloadme.sub.deep",
    ]
    assert failed == ["preloadme.broken", "preloadme.exits"]
    assert "preloadme.good" in sys.modules and "preloadme.__main__" not in sys.modules
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "prepare-upgrade: preloadme.broken not loaded: "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere'",
        "prepare-upgrade: preloadme.exits not loaded: SystemExit: 3",
    ]
