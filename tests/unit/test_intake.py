"""What the charge point makes of a frame before it acts on it: read, refused with the
CALL's id, or ignored (no id to answer), and which OCPP-J 1.6 code a refusal carries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.exceptions import OCPPError

from cpagent.protocol.ocppj import Call, CallError, CallResult
from cpagent.protocol.v16.intake import (
    MAX_DEPTH,
    MAX_FRAME_CHARS,
    FrameError,
    check_request,
    read_frame,
)


def refusal(raw: str | bytes) -> tuple[str, str | None, str]:
    """(code, id answered or None, description) of a frame :func:`read_frame` refuses."""
    with pytest.raises(FrameError) as err:
        read_frame(raw)
    return err.value.error.code, err.value.reply_to, err.value.error.description


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_the_three_message_types_are_read() -> None:
    call = read_frame('[2,"c1","Reset",{"type":"Soft"}]')
    assert isinstance(call, Call) and (call.unique_id, call.action) == ("c1", "Reset")
    result = read_frame(b'[3,"c2",{"status":"Accepted"}]')
    assert isinstance(result, CallResult) and result.payload == {"status": "Accepted"}
    error = read_frame('[4,"c3","InternalError","boom",{}]')
    assert isinstance(error, CallError) and error.error_code == "InternalError"


def test_nesting_is_bounded_and_brackets_in_strings_do_not_count() -> None:
    assert isinstance(read_frame(f'[2,"ok","X",{{"x":{nested(MAX_DEPTH - 2)}}}]'), Call)
    assert refusal(f'[2,"deep","X",{{"x":{nested(MAX_DEPTH - 1)}}}]')[:2] == (
        "FormatViolation",
        "deep",
    )
    # Brackets and escaped quotes inside strings are text, not nesting.
    text = json.dumps("[" * 500 + '"{' * 500 + "\\" * 3)
    frame = read_frame(f'[2,"s","DataTransfer",{{"vendorId":"v","data":{text}}}]')
    assert isinstance(frame, Call) and frame.payload["data"].startswith("[[[")
    # Without a CALL id to answer, a deep frame is ignored.
    assert refusal(f"[2,{nested(5000)}]")[1] is None
    assert refusal(nested(100_000))[1] is None


@pytest.mark.parametrize("text", ["x", "é", "[x]", '\\"'])
def test_many_brackets_side_by_side_are_no_nesting_however_the_strings_read(text: str) -> None:
    items = ",".join('{"component":{"name":"EVSE","evse":{"id":1}}}' for _ in range(50))
    frame = read_frame(f'[2,"ok","X",{{"t":"{text}","items":[{items}]}}]')
    assert isinstance(frame, Call) and len(frame.payload["items"]) == 50
    deep = f'[2,"deep","X",{{"t":"{text}","items":[{items}],"x":{nested(MAX_DEPTH - 1)}}}]'
    assert refusal(deep)[:2] == ("FormatViolation", "deep")


def test_size_is_bounded_before_anything_is_parsed() -> None:
    big = '[2,"big","DataTransfer",{"vendorId":"v","data":"' + "a" * MAX_FRAME_CHARS + '"}]'
    code, reply_to, why = refusal(big)
    assert (code, reply_to) == ("FormatViolation", "big") and str(MAX_FRAME_CHARS) in why
    assert refusal('[2,null,"DataTransfer","' + "a" * MAX_FRAME_CHARS + '"]')[1] is None


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_what_no_64_bit_float_holds_is_no_json_number(number: str) -> None:
    raw = f'[2,"n","SetChargingProfile",{{"limit":{number}}}]'
    assert refusal(raw)[:2] == ("FormatViolation", "n")


@pytest.mark.parametrize(
    ("raw", "answered"),
    [
        ('[2,null,"Reset",{"type":"Soft"}]', None),
        ('[2,7,"Reset",{"type":"Soft"}]', None),
        ('[2,["a"],"Reset",{"type":"Soft"}]', None),
        ('[3,null,{"currentTime":"2026-01-01T00:00:00Z"}]', None),
        ("[2]", None),
        ('[9,"x",{}]', None),
        ('{"a":1}', None),
        ("not json", None),
        ('[2,"' + "x" * 37 + '","Reset",{"type":"Soft"}]', "x" * 37),
        ('[2,"short","Reset"]', "short"),
        ('[2,"bad", nope]', "bad"),
    ],
)
def test_only_a_call_with_a_string_id_is_answered(raw: str, answered: str | None) -> None:
    assert refusal(raw)[1] == answered


def test_an_id_of_36_characters_is_fine() -> None:
    assert isinstance(read_frame('[2,"' + "x" * 36 + '","Reset",{"type":"Soft"}]'), Call)


def refused_request(action: str, payload: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(OCPPError) as err:
        check_request(action, payload)
    return err.value.code, err.value.description


def test_numbers_beyond_32_bits_and_lone_surrogates_are_property_violations() -> None:
    period = {"startPeriod": 0, "limit": 1e308}
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
    }
    code, why = refused_request(
        "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}
    )
    assert code == "PropertyConstraintViolation"
    assert why.startswith("csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit")
    code, why = refused_request("GetCompositeSchedule", {"connectorId": 1, "duration": 2**64})
    assert code == "PropertyConstraintViolation" and "duration" in why
    check_request("GetCompositeSchedule", {"connectorId": 1, "duration": 2**31 - 1})
    code, why = refused_request("CertificateSigned", {"certificateChain": "PEM \ud800"})
    assert code == "PropertyConstraintViolation" and "surrogate" in why
    check_request("CertificateSigned", {"certificateChain": "PEM \U0001f600 é"})


def test_every_date_time_a_handler_parses_is_checked() -> None:
    entries = [
        {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"}},
        {"idTag": "B"},
        {"idTag": "C", "idTagInfo": {"status": "Accepted", "expiryDate": "someday"}},
    ]
    code, why = refused_request(
        "SendLocalList",
        {"listVersion": 2, "updateType": "Differential", "localAuthorizationList": entries},
    )
    assert code == "FormatViolation"  # sent as FormationViolation, the OCPP-J 1.6 spelling
    assert why.startswith("localAuthorizationList[2].idTagInfo.expiryDate 'someday'")
    check_request("SendLocalList", {"listVersion": 2, "updateType": "Full"})


def test_a_date_time_utc_cannot_hold_is_out_of_range() -> None:
    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        code, why = refused_request(
            "ReserveNow", {"connectorId": 1, "expiryDate": when, "idTag": "T", "reservationId": 1}
        )
        assert code == "PropertyConstraintViolation" and why.startswith("expiryDate"), why
    code, why = refused_request(
        "GetLog",
        {
            "logType": "SecurityLog",
            "requestId": 1,
            "log": {"remoteLocation": "x", "latestTimestamp": "0001-01-01T00:00:00+00:30"},
        },
    )
    assert code == "PropertyConstraintViolation" and why.startswith("log.latestTimestamp")
    check_request(
        "ReserveNow",
        {"connectorId": 1, "expiryDate": "9999-12-31T23:59:59Z", "idTag": "T", "reservationId": 1},
    )
