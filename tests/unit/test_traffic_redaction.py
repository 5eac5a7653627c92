"""The traffic log hides secrets: a 2.0.1 SetVariables never shows a WriteOnly value."""

from __future__ import annotations

import json

from cpagent.agent import _redacted


def set_variables(name: str, value: str, action: str = "SetVariables") -> str:
    data = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": name}}
    return json.dumps([2, "m1", action, {"setVariableData": [{**data, "attributeValue": value}]}])


def test_a_write_only_value_is_hidden_in_any_case_and_spelling() -> None:
    for name in ("BasicAuthPassword", "basicauthpassword", "Basic\\u0041uthPassword"):
        frame = set_variables(name, "Sup3r-Secret-Passw0rd-42")
        frame = frame.replace("Basic\\\\u0041", "Basic\\u0041")  # the escape as sent
        shown = _redacted(frame)
        assert isinstance(shown, str)
        assert "Sup3r-Secret" not in shown and '"attributeValue":"***"' in shown, shown


def test_other_values_and_frames_are_logged_as_they_are() -> None:
    frame = set_variables("Identity", "station-7")
    assert _redacted(frame) == frame
    broken = set_variables("BasicAuthPassword", "x")[:-2]
    assert _redacted(broken) == broken  # no JSON: refused by the intake, never applied
    deep = '[2,"m1","SetVariables",' + "[" * 100000 + "]" * 100000 + "]"
    assert _redacted(deep) == deep
