"""The agent's OCPP-J pieces that stand in for the ``ocpp`` library's (whose modules import
jsonschema) write and read what the library's do."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import ocpp.charge_point as library_cp
import ocpp.messages as library
import ocpp.v16.call_result as library_results
import ocpp.v16.enums as library_v16
import ocpp.v201.enums as library_v201
import pytest
from ocpp.exceptions import FormatViolationError, UnknownCallErrorCodeError

import cpagent
from cpagent.protocol import ocppj
from cpagent.protocol.v16 import call_result
from cpagent.protocol.v16.actions import Action
from cpagent.protocol.v201 import enums as v201_enums

PAYLOAD = {
    "connectorId": 1,
    "csChargingProfiles": {"chargingSchedule": {"chargingSchedulePeriod": [{"limit": 6.1}]}},
    "limit": decimal.Decimal("0.35"),
    "url": None,
    "list": [1, "x", None, {"soc": 80}],
}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ocppj.Call("m1", "Reset", PAYLOAD), library.Call("m1", "Reset", PAYLOAD)),
        (ocppj.CallResult("m1", PAYLOAD), library.CallResult("m1", PAYLOAD)),
        (
            ocppj.CallError("m1", "InternalError", "oops", {"cause": decimal.Decimal("1.25")}),
            library.CallError("m1", "InternalError", "oops", {"cause": decimal.Decimal("1.25")}),
        ),
    ],
)
def test_frames_are_written_as_the_library_writes_them(ours: Any, theirs: Any) -> None:
    assert ours.to_json() == theirs.to_json()
    assert (ours.message_type_id, repr(ours)) == (theirs.message_type_id, repr(theirs))


def test_a_call_error_becomes_the_library_exception_of_its_code() -> None:
    error = ocppj.CallError("m1", "FormatViolation", "bad", {"a": 1}).to_exception()
    assert isinstance(error, FormatViolationError)
    assert (error.description, error.details) == ("bad", {"a": 1})
    with pytest.raises(UnknownCallErrorCodeError):
        ocppj.CallError("m1", "NoSuchCode", "bad").to_exception()


def test_case_conversion_and_none_removal_are_the_library_s() -> None:
    data = {
        "connectorId": 1,
        "ocppCSMSURL": "ws://x",
        "evMinV2XEnergyRequest": 1,
        "stateOfCharge": 3,
        "nested": [{"chargingRateUnit": "A", "socLimitReached": True}],
    }
    assert ocppj.camel_to_snake_case(data) == library_cp.camel_to_snake_case(data)
    snake = library_cp.camel_to_snake_case(data) | {"soc_limit_reached": 1, "ocpp_csms_url": 2}
    assert ocppj.snake_to_camel_case(snake) == library_cp.snake_to_camel_case(snake)
    assert ocppj.remove_nones(PAYLOAD) == library_cp.remove_nones(PAYLOAD)
    assert ocppj.MessageType.CallResult == library.MessageType.CallResult


def test_the_16_actions_are_the_library_s() -> None:
    assert {a.name: a.value for a in Action} == {a.name: a.value for a in library_v16.Action}


def test_each_16_answer_takes_the_fields_of_the_library_s() -> None:
    answers = [
        cls
        for cls in vars(call_result).values()
        if isinstance(cls, type) and issubclass(cls, call_result.Answer)
    ]
    assert len(answers) > 20
    for answer in answers:
        if answer.__name__.startswith("_") or answer is call_result.Answer:
            continue
        fields = dataclasses.fields(getattr(library_results, answer.__name__))
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        assert (set(answer.required), set(answer.optional)) == (
            required,
            {f.name for f in fields} - required,
        ), answer.__name__


def test_an_answer_refuses_a_missing_or_unknown_field() -> None:
    assert call_result.DataTransfer(status="Accepted") == {"status": "Accepted"}
    with pytest.raises(TypeError, match="missing"):
        call_result.Reset()
    with pytest.raises(TypeError, match="unexpected"):
        call_result.Reset(status="Accepted", reason="x")


def test_the_201_enums_are_the_library_s() -> None:
    """Each enum the agent copies has the library's members (names and values, in order)."""
    copies = [
        value
        for value in vars(v201_enums).values()
        if isinstance(value, type) and issubclass(value, enum.Enum) and value is not enum.StrEnum
    ]
    assert {cls.__name__ for cls in copies} >= {"Action", "ReasonEnumType", "BootReasonEnumType"}
    for ours in copies:
        theirs: type[enum.Enum] = getattr(library_v201, ours.__name__)
        assert issubclass(theirs, enum.StrEnum), ours.__name__
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs], (
            ours.__name__
        )
    value_sets = {
        v201_enums.MEASURANDS: library_v201.MeasurandEnumType,
        v201_enums.UNITS_OF_MEASURE: library_v201.StandardizedUnitsOfMeasureType,
        v201_enums.PHASES: library_v201.PhaseEnumType,
        v201_enums.READING_CONTEXTS: library_v201.ReadingContextEnumType,
        v201_enums.LOCATIONS: library_v201.LocationEnumType,
    }
    for values, library_enum in value_sets.items():
        assert values == tuple(m.value for m in library_enum), library_enum.__name__


def test_an_installed_cpagent_says_the_version_of_its_dist_info(tmp_path: Path) -> None:
    """The package beside a ``cpagent-*.dist-info`` (a wheel or the Debian package's venv)
    reports its METADATA's version; a source checkout its pyproject.toml's."""
    (tmp_path / "cpagent").mkdir()
    init = Path(cpagent.__file__).read_text()
    (tmp_path / "cpagent" / "__init__.py").write_text(init)
    (tmp_path / "cpagent-9.8.7.dist-info").mkdir()
    metadata = "Metadata-Version: 2.4\nName: cpagent\nVersion: 9.8.7\n\nREADME text\n"
    (tmp_path / "cpagent-9.8.7.dist-info" / "METADATA").write_text(metadata)
    code = (
        "import json, sys, cpagent; print(json.dumps([cpagent.__version__, sorted(sys.modules)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    version, modules = json.loads(result.stdout)
    assert version == "9.8.7"
    assert "importlib.metadata" not in modules
    pyproject = Path(cpagent.__file__).parents[2] / "pyproject.toml"
    if pyproject.exists():  # the tests run from a checkout (make's editable install)
        assert f'\nversion = "{cpagent.__version__}"\n' in pyproject.read_text()
