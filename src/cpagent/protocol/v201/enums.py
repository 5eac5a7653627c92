"""The ``ocpp`` library's OCPP 2.0.1 enums (``ocpp/v201/enums.py``): ``from
cpagent.protocol.v201.enums import Action`` gives the library's ``Action``.

Not ``import ocpp.v201.enums``: that runs the ``ocpp.v201`` package first, which imports the
library's ChargePoint (and with it jsonschema, referencing, attrs and rpds) and its 2.0.1
``call`` and ``call_result`` dataclasses, none of which the agent uses (see
:mod:`cpagent.protocol.ocppj`). The enums file imports nothing but :mod:`enum`, so it is
executed here as a module of its own, from the library's file and its byte code, as the
importlib documentation's "importing a source file directly" does, under a name of its own
(``ocpp.v201`` stays unimported). Had ``ocpp.v201.enums`` been imported the ordinary way
before, that module is the one used. Code that compares the agent's enum members by
identity (``is``) takes them from here; by value (``==``, as StrEnum members are strings)
they equal the library's either way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import ocpp

_NAME = "ocpp.v201.enums"


def _load() -> ModuleType:
    loaded = sys.modules.get(_NAME)
    if loaded is not None:
        return loaded
    path = Path(ocpp.__file__).parent / "v201" / "enums.py"
    spec = importlib.util.spec_from_file_location(f"{__name__}._library", path)
    if spec is None or spec.loader is None:  # not where it is in every ocpp release
        return importlib.import_module(_NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_LIBRARY = _load()


def __getattr__(name: str) -> Any:
    """Every name of the library's module: ``Action``, ``ReasonEnumType``, ..."""
    return getattr(_LIBRARY, name)
