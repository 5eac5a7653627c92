"""``cpagent prepare-upgrade``: load now what the running agent may load later.

A package upgrade replaces the agent's files on disk while the agent keeps running (until
the charger is idle, see :mod:`cpagent.restart`). Python reads a module's file when it is
first imported, so an import after the upgrade would mix new code into the old process.
The package's prerm asks the agent, before dpkg replaces anything, to load:

* every module of the ``cpagent`` package (:func:`walk`; not ``cpagent.testing``,
  ``cpagent.__main__`` nor the token helper, see below), whether this configuration uses
  it or not: a TLS profile or a certificate may be set by the CSMS at any time;
* every module of the packages installed beside it (the venv's site-packages) that those
  imports loaded, since libraries import parts of themselves on first use (``websockets``
  by attribute, ``serial`` by URL scheme, ``gpiozero`` its pin factories), except parts
  for other platforms or uses (:data:`SKIPPED_PARTS`, :data:`SKIPPED_MODULES`);
* the JSON schemas of the OCPP version the agent speaks, which are read from the ``ocpp``
  package on first use of each action, with their validators (generated ahead, or compiled
  then; :meth:`SchemaSet.preload <cpagent.protocol.schemas.SchemaSet.preload>`), and for
  2.0.1 the form of the GetVariables schemas that :mod:`cpagent.protocol.verdicts` reads on
  first use.

A module that fails to import (a backend for another platform, a missing optional library)
is counted, logged and skipped; it was not loadable before the upgrade either. The cost is
memory, held until the restart: some 20 MB on amd64 (42 → 62 MB RSS, 0.3 s).

What cannot be loaded ahead: a program the agent starts as a new process runs the new
files (the PKCS#11 token helper, ``python -m cpagent.security.token_helper``, and the
configured firmware installer); the standard library and C libraries are not part of the
package.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SKIPPED_PARTS = frozenset(
    {"__main__", "tests", "test", "testing", "benchmarks", "conftest", "legacy", "trio"}
)
"""A module with one of these in its dotted name is not loaded: test code, entry points,
deprecated or other-framework variants the agent never imports."""
SKIPPED_MODULES = (
    "cpagent.protocol._validators",
    "cpagent.security.token_helper",
    "ocpp.v201",
    "ocpp.v21",
    "pymodbus.server",
    "websockets.sync",
)
"""Modules the agent process has no path to (and their sub-modules): the token helper, which
only ever runs as a process of its own (and would bring python-pkcs11 into the agent),
other OCPP versions, a Modbus server, the synchronous websocket API. The generated schema
validators are loaded by :meth:`SchemaSet.preload <cpagent.protocol.schemas.SchemaSet.preload>`,
those of the OCPP version spoken only (the other's are some 3-4 MB)."""


@dataclass
class Preloaded:
    """What :func:`preload` loaded: ``failed`` names the cpagent modules that would not
    import; ``library_failed`` counts the library modules that would not (expected: parts
    for other platforms, or needing libraries that are not installed)."""

    modules: int = 0
    library_modules: int = 0
    schemas: int = 0
    failed: list[str] = field(default_factory=list)
    library_failed: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "modules": self.modules,
            "library_modules": self.library_modules,
            "schemas": self.schemas,
            "failed": self.failed,
            "library_failed": self.library_failed,
        }


def _skipped(name: str) -> bool:
    return bool(SKIPPED_PARTS.intersection(name.split("."))) or any(
        name == m or name.startswith(m + ".") for m in SKIPPED_MODULES
    )


def walk(package: str, failed: list[str], level: int = logging.WARNING) -> Iterator[str]:
    """Import ``package`` and every module under it; yield the name of each one imported.
    One that fails is logged at ``level``, appended to ``failed`` and skipped (with what is
    under it)."""
    if _skipped(package):
        return
    try:
        module = importlib.import_module(package)
    except BaseException as err:  # an import may raise anything, SystemExit included
        if isinstance(err, KeyboardInterrupt):
            raise
        log.log(level, "prepare-upgrade: %s not loaded: %s", package, _one_line(err))
        failed.append(package)
        return
    yield package
    for info in pkgutil.iter_modules(getattr(module, "__path__", None) or [], package + "."):
        yield from walk(info.name, failed, level)


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib")]


def installed_packages(exclude: str = "cpagent") -> list[str]:
    """The top-level packages loaded from site-packages (the libraries installed with the
    agent), ``exclude`` left out."""
    sites = _site_dirs()
    found: set[str] = set()
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        if top in found or top == exclude or top.startswith("_"):
            continue
        where = getattr(module, "__file__", None)
        if not where or not getattr(sys.modules.get(top), "__path__", None):
            continue
        path = Path(where).resolve()
        if any(path.is_relative_to(site) for site in sites):
            found.add(top)
    return sorted(found)


def preload(ocpp_version: str = "1.6") -> Preloaded:
    """Load everything described above; blocking (run it off the event loop)."""
    if ocpp_version == "2.0.1":
        from cpagent.protocol.v201 import schemas
    else:
        from cpagent.protocol.v16 import schemas  # type: ignore[no-redef]

    result = Preloaded()
    result.modules = sum(1 for _ in walk("cpagent", result.failed))
    # Before the libraries: the Decimal-exact validators bring jsonschema in, which the
    # agent otherwise imports only when it first needs them.
    result.schemas = schemas.preload()
    if ocpp_version == "2.0.1":
        from cpagent.protocol.v201.charge_point import VERDICTS

        VERDICTS.prepare()  # the form of the GetVariables schemas, read on first use
    for package in installed_packages():
        library_failed: list[str] = []
        # Expected for parts made for other platforms (serial's Windows ports): DEBUG.
        result.library_modules += sum(1 for _ in walk(package, library_failed, logging.DEBUG))
        result.library_failed += len(library_failed)
    return result
