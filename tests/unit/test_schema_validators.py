"""The validators generated ahead (cpagent.protocol.validator_build): a schema set uses one
only while it records the schema file the set would compile, and it judges every payload as
the validator compiled at run time does, with the same error codes and causes."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from ocpp.exceptions import OCPPError
from ocpp.messages import MessageType

from cpagent.protocol import validator_build
from cpagent.protocol.schemas import SchemaSet
from cpagent.protocol.v16.schemas import SCHEMAS as V16
from cpagent.protocol.v201.schemas import SCHEMAS as V201

PACKAGE = "generated_validators_for_test"
CALL, RESULT = MessageType.Call, MessageType.CallResult
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
BOOT201_SCHEMA = "chargingStation customData reason"
BOOT16 = {"chargePointModel": "M", "chargePointVendor": "V"}
PROFILE16 = {
    "connectorId": 1,
    "csChargingProfiles": {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    },
}
EVENT201 = {
    "eventType": "Started",
    "timestamp": "2026-01-01T00:00:00Z",
    "triggerReason": "Authorized",
    "seqNo": 0,
    "transactionInfo": {"transactionId": "t"},
}
VARIABLES201 = {
    "getVariableResult": [
        {
            "attributeStatus": "Accepted",
            "attributeValue": "60",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
        }
    ]
}

# (schema set, message type, action, payload): valid ones and one of each kind of fault.
CASES: list[tuple[SchemaSet, int, str, Any]] = [
    (V201, CALL, "BootNotification", BOOT201),
    (V201, CALL, "BootNotification", {"reason": "PowerUp"}),
    (V201, CALL, "BootNotification", {**BOOT201, "reason": "Sunrise"}),
    (V201, CALL, "BootNotification", {**BOOT201, "colour": "red"}),
    (V201, CALL, "BootNotification", {**BOOT201, "chargingStation": {"model": "M" * 21}}),
    (V201, CALL, "BootNotification", {**BOOT201, "chargingStation": {"model": 1}}),
    (V201, CALL, "TransactionEvent", EVENT201),
    (V201, CALL, "TransactionEvent", {**EVENT201, "seqNo": "0"}),
    (V201, CALL, "TransactionEvent", {**EVENT201, "transactionInfo": {}}),
    (V201, RESULT, "GetVariables", VARIABLES201),
    (V201, RESULT, "GetVariables", {"getVariableResult": []}),
    (V201, RESULT, "GetVariables", {"getVariableResult": [{"attributeStatus": "Yes"}]}),
    (V16, CALL, "BootNotification", BOOT16),
    (V16, CALL, "BootNotification", {"chargePointModel": "M"}),
    (V16, CALL, "BootNotification", {**BOOT16, "chargePointModel": "M" * 21}),
    (V16, CALL, "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}),
    (V16, CALL, "StatusNotification", {"connectorId": -1, "errorCode": "X", "status": "A"}),
    (V16, CALL, "SetChargingProfile", PROFILE16),  # a transformed (decimal) schema
    (V16, CALL, "SetChargingProfile", {**PROFILE16, "connectorId": "1"}),
    (V16, CALL, "SetChargingProfile", {"connectorId": 1}),
    (V16, CALL, "RemoteStartTransaction", {"idTag": "A" * 21}),
    (V16, RESULT, "Heartbeat", {"currentTime": 5}),
]


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Both versions' validators generated into the importable package ``PACKAGE``."""
    validator_build.build(tmp_path / PACKAGE)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path / PACKAGE
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each schema fastjsonschema compiles from now on, by its title (1.6) or the names of
    its properties (2.0.1 schemas have no title)."""
    calls: list[str] = []
    compile_ = fastjsonschema.compile

    def counting(schema: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(schema.get("title") or " ".join(sorted(schema["properties"])))
        return compile_(schema, **kwargs)

    monkeypatch.setattr(fastjsonschema, "compile", counting)
    return calls


def like(schemas: SchemaSet, validators: str, directory: Path | None = None) -> SchemaSet:
    """A fresh set of ``schemas``' version with the generated validators of ``validators``
    (no such package: every schema compiled at run time)."""
    return SchemaSet(
        schemas.version,
        directory or schemas.directory,
        request_suffix=schemas.request_suffix,
        error_for=schemas.error_for,
        decimal_schemas=schemas.decimal_schemas,
        validators=validators,
    )


def package_of(schemas: SchemaSet) -> str:
    return f"{PACKAGE}.v{schemas.version.replace('.', '')}"


def verdict(schemas: SchemaSet, kind: int, action: str, payload: Any) -> tuple[str, Any]:
    try:
        schemas.validate(kind, action, payload)
    except OCPPError as err:
        return err.code, err.details
    return "valid", None


def test_a_generated_validator_is_used_while_it_records_the_schema_file(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled at run time")

    monkeypatch.setattr(fastjsonschema, "compile", refuse)
    v201, v16 = like(V201, package_of(V201)), like(V16, package_of(V16))
    assert verdict(v201, CALL, "BootNotification", BOOT201) == ("valid", None)
    assert verdict(v201, CALL, "BootNotification", {"reason": "PowerUp"}) == (
        "OccurrenceConstraintViolation",
        {"cause": "data must contain ['chargingStation'] properties"},
    )
    assert verdict(v16, CALL, "SetChargingProfile", PROFILE16) == ("valid", None)
    # prepare-upgrade's preload finds every validator generated, the transformed ones too.
    assert v201.preload() == len(list(V201.directory.glob("*.json")))
    assert v16.preload() == len(list(V16.directory.glob("*.json")))


@pytest.mark.parametrize(
    ("line", "stale"),
    [
        ("SCHEMA_SHA256 = ", "SCHEMA_SHA256 = '" + "0" * 64 + "'"),
        ("FASTJSONSCHEMA_VERSION = ", "FASTJSONSCHEMA_VERSION = '0.0.1'"),
        ("SCHEMA_SHA256 = ", ""),
    ],
)
def test_a_module_recording_another_schema_or_library_is_not_used(
    generated: Path, compiled: list[str], line: str, stale: str
) -> None:
    module = generated / "v201" / "BootNotificationRequest.py"
    text = module.read_text().splitlines()
    module.write_text("\n".join(stale if t.startswith(line) else t for t in text) + "\n")
    v201 = like(V201, package_of(V201))
    assert verdict(v201, CALL, "BootNotification", BOOT201) == ("valid", None)
    assert compiled == [BOOT201_SCHEMA]
    assert f"{package_of(V201)}.BootNotificationRequest" not in sys.modules


def test_a_schema_file_changed_after_generation_is_compiled_and_obeyed(
    generated: Path, compiled: list[str], tmp_path: Path
) -> None:
    """An ``ocpp`` upgraded alone: its changed schema decides, not the generated module."""
    directory = tmp_path / "schemas"
    shutil.copytree(V201.directory, directory)
    path = directory / "BootNotificationRequest.json"
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    schema["definitions"]["ChargingStationType"]["properties"]["model"]["maxLength"] = 5
    path.write_text(json.dumps(schema))
    v201 = like(V201, package_of(V201), directory)
    station = {"model": "M" * 10, "vendorName": "V"}
    assert verdict(v201, CALL, "BootNotification", {**BOOT201, "chargingStation": station}) == (
        "PropertyConstraintViolation",
        {"cause": "data.chargingStation.model is too long: 10 characters, at most 5"},
    )
    assert compiled == [BOOT201_SCHEMA]
    # The files left as they were still use their generated validators.
    assert verdict(v201, CALL, "TransactionEvent", EVENT201) == ("valid", None)
    assert len(compiled) == 1


def test_a_schema_set_with_another_transform_compiles_the_schema(
    generated: Path, compiled: list[str]
) -> None:
    """A module generated without the multipleOf transform is not used where the set now
    applies it (and the other way round)."""
    plain = SchemaSet(
        "1.6", V16.directory, request_suffix="", error_for=V16.error_for,
        validators=package_of(V16),
    )  # fmt: skip
    assert verdict(plain, CALL, "SetChargingProfile", PROFILE16) == ("valid", None)
    assert compiled == ["SetChargingProfileRequest"]
    transformed = like(V16, package_of(V16))
    transformed.decimal_schemas = frozenset({(CALL, "BootNotification")})
    assert verdict(transformed, CALL, "BootNotification", BOOT16) == ("valid", None)
    assert compiled == ["SetChargingProfileRequest", "BootNotificationRequest"]


@pytest.mark.parametrize(
    ("schemas", "kind", "action", "payload"),
    CASES,
    ids=[f"{s.version}-{a}-{i}" for i, (s, _, a, _) in enumerate(CASES)],
)
def test_generated_and_compiled_validators_give_the_same_verdict(
    generated: Path, schemas: SchemaSet, kind: int, action: str, payload: Any
) -> None:
    ahead = like(schemas, package_of(schemas))
    at_run_time = like(schemas, "no_generated_validators_here")
    assert verdict(ahead, kind, action, payload) == verdict(at_run_time, kind, action, payload)
    module = ahead._validator(kind, action, False).__module__
    assert module.startswith(package_of(schemas) + ".")
    assert at_run_time._validator(kind, action, False).__module__ != module


def test_the_generator_removes_what_no_schema_file_asks_for_and_writes_the_same_again(
    generated: Path,
) -> None:
    (generated / "v16" / "Gone.py").write_text("")
    before = (generated / "v16" / "Heartbeat.py").read_text()
    validator_build.build(generated)
    assert not (generated / "v16" / "Gone.py").exists()
    assert (generated / "v16" / "Heartbeat.py").read_text() == before
    assert str(generated.parent) not in before  # no path of the build machine
    count = len(list(V201.directory.glob("*.json")))
    assert len(list((generated / "v201").glob("*.py"))) == count + 1  # and __init__.py
