"""The serving protocol without a model: control-message validation, PCM conversion, JSON output, token and
origin checks."""

from __future__ import annotations

import json

import pytest
import torch

from omnikit.serving.app import origin_ok, token_ok
from omnikit.serving.protocol import (
    Limits,
    ProtocolError,
    dumps,
    float_to_pcm16,
    parse_control,
    pcm16_to_float,
)

LIMITS = Limits(max_frame_bytes=100, max_message_bytes=200, max_text_chars=20)


@pytest.mark.parametrize("text, code", [
    ("nope", "bad_json"), ("[]", "bad_json"), ("3", "bad_json"), ('"start"', "bad_json"),
    ('{"type": "START"}', "unknown_type"), ('{"type": null}', "unknown_type"), ('{"kind": "start"}', "unknown_type"),
    ('{"type": "text"}', "bad_text"), ('{"type": "text", "text": ["a"]}', "bad_text"),
    ('{"type": "text", "text": ""}', "bad_text"), ('{"type": "text", "text": "' + "a" * 21 + '"}', "text_too_long"),
    ('{"type": "start", "pad": "' + "x" * 200 + '"}', "message_too_large"), ("[" * 100_000, "message_too_large"),
])
def test_bad_control_messages_name_their_problem(text, code):
    with pytest.raises(ProtocolError) as err:
        parse_control(text, Limits(max_message_bytes=10**6, max_text_chars=20) if code != "message_too_large"
                      else LIMITS)
    assert err.value.code == code and str(err.value)


def test_deeply_nested_json_is_a_bad_json_error_not_a_crash():
    with pytest.raises(ProtocolError) as err:
        parse_control("[" * 100_000 + "]" * 100_000, Limits(max_message_bytes=10**7))
    assert err.value.code == "bad_json"


@pytest.mark.parametrize("kind", ["start", "interrupt", "end"])
def test_good_control_messages_pass(kind):
    assert parse_control(json.dumps({"type": kind, "extra": 1}), LIMITS)["type"] == kind
    assert parse_control('{"type": "text", "text": "hi"}', LIMITS)["text"] == "hi"


def test_pcm16_round_trip_and_frame_checks():
    x = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, float("nan"), float("-inf")])
    data = float_to_pcm16(x)
    assert len(data) == 2 * x.numel()
    back = pcm16_to_float(data, Limits())
    assert back.dtype == torch.float32
    assert torch.allclose(back[:5], torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0]), atol=1e-4)
    assert back[5] == back[3] and back[6] == 0 and back[7] == back[4]  # clipped, NaN -> silence
    for bad, code in ((b"", "bad_audio"), (b"\x00" * 3, "bad_audio"), (b"\x00" * 102, "frame_too_large")):
        with pytest.raises(ProtocolError) as err:
            pcm16_to_float(bad, LIMITS)
        assert err.value.code == code


def test_json_out_has_no_nan_and_no_tensors():
    out = json.loads(dumps({"probs": torch.tensor([0.5, float("nan")]), "x": float("inf"), "n": {"a": (1, 2)}}))
    assert out == {"probs": [0.5, None], "x": None, "n": {"a": [1, 2]}}


def test_token_from_header_or_query_in_constant_time_compare():
    assert token_ok({"authorization": "Bearer s3cret"}, {}, "s3cret")
    assert token_ok({"authorization": "bearer  s3cret "}, {}, "s3cret")
    assert token_ok({}, {"token": "s3cret"}, "s3cret")
    assert not token_ok({}, {}, "s3cret")
    assert not token_ok({"authorization": "Bearer s3cre"}, {"token": "s3cret"}, "s3cret")  # the header wins
    assert not token_ok({"authorization": "Basic s3cret"}, {}, "s3cret")
    assert not token_ok({}, {"token": "\udcff"}, "s3cret")  # undecodable input is just wrong


def test_origin_must_be_the_pages_own_or_allowed():
    assert origin_ok({}, ())  # not a browser
    assert origin_ok({"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}, ())
    assert origin_ok({"origin": "https://talk.example", "host": "talk.example"}, ())
    assert not origin_ok({"origin": "http://evil.example", "host": "127.0.0.1:8000"}, ())
    assert origin_ok({"origin": "https://app.example", "host": "127.0.0.1:8000"}, ("https://app.example",))
