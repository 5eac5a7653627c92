"""What the traffic log may show of a frame: each OCPP version's secrets hidden."""

from __future__ import annotations

import json

from cpagent.protocol.v16.redaction import redact as redact16
from cpagent.protocol.v201.redaction import redact as redact201


def test_16_hides_the_authorization_key_in_either_field_order() -> None:
    change = '[2,"1","ChangeConfiguration",{"key":"authorizationkey","value":"0011aabb"}]'
    assert "0011aabb" not in redact16(change) and '"value":"***"' in redact16(change)
    shown = '[3,"2",{"configurationKey":[{"value":"0011aabb","key":"AuthorizationKey"}]}]'
    assert "0011aabb" not in redact16(shown)
    other = '[2,"3","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]'
    assert redact16(other) == other


def test_201_hides_the_basic_auth_password_wherever_it_is() -> None:
    request = [
        2,
        "1",
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "s3cret-pass",
                    "variable": {"name": "basicAuthPassword"},
                    "component": {"name": "SecurityCtrlr"},
                },
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "60",
                },
            ]
        },
    ]
    shown = redact201(json.dumps(request))
    assert "s3cret-pass" not in shown
    data = json.loads(shown)[3]["setVariableData"]
    assert [d["attributeValue"] for d in data] == ["***", "60"]


def test_201_leaves_other_frames_and_hides_all_values_of_a_broken_one() -> None:
    plain = '[2,"1","Heartbeat",{}]'
    assert redact201(plain) is plain
    broken = (
        '[2,"1","SetVariables",{"x":[{"attributeValue":"s3cret",'
        '"variable":{"name":"BasicAuthPassword"'
    )
    assert "s3cret" not in redact201(broken)


def test_201_sees_the_name_through_escapes_and_survives_any_nesting() -> None:
    escaped = (
        '[2,"1","SetVariables",{"setVariableData":[{"component":{"name":"SecurityCtrlr"},'
        '"variable":{"name":"Basic\\u0041uthPassword"},"attributeValue":"Sup3r-Secret"}]}]'
    )
    assert "Sup3r-Secret" not in redact201(escaped)
    deep = '[2,"1","SetVariables",' + "[" * 100000 + "]" * 100000 + "]"
    assert redact201(deep) == deep
    deep_secret = (
        '{"variable":{"name":"BasicAuthPassword"},"attributeValue":"s","x":' + "[" * 100000
    )
    assert '"attributeValue":"s"' not in redact201(deep_secret)
