"""vad_endpoint policy: respond after N ms of silence following speech; ignores the state head."""

from __future__ import annotations

import torch

from omnikit.components.duplex.base import Decision as D
from omnikit.components.duplex.vad_endpoint import VADEndpointPolicy, VADEndpointPolicyConfig
from omnikit.registry.catalog import get_registry


def run(policy, speech: list[bool], probs=None) -> list[D]:
    state = policy.init_state()
    return [policy.on_chunk(state, is_speech=s, state_probs=probs, chunk_ms=160.0) for s in speech]


def test_responds_after_endpoint_silence_following_speech():
    policy = VADEndpointPolicy(VADEndpointPolicyConfig(endpoint_ms=640.0, min_speech_ms=160.0))
    out = run(policy, [True, True, False, False, False, True, False, False, False, False])
    assert out[:9] == [D.LISTEN] * 9  # the 3-chunk pause (480 ms) is shorter than 640 ms
    assert out[9] is D.RESPOND


def test_delay_is_configurable():
    speech = [True] + [False] * 10
    for endpoint_ms, index in ((160.0, 1), (800.0, 5), (1600.0, 10)):
        out = run(VADEndpointPolicy(VADEndpointPolicyConfig(endpoint_ms=endpoint_ms)), speech)
        assert out.index(D.RESPOND) == index


def test_state_probs_are_ignored():
    policy = VADEndpointPolicy(VADEndpointPolicyConfig(endpoint_ms=320.0))
    respond_now = torch.tensor([0.0, 1.0, 0.0])
    assert run(policy, [True, True], respond_now) == [D.LISTEN, D.LISTEN]


def test_too_little_speech_is_ignored_after_timeout():
    policy = VADEndpointPolicy(VADEndpointPolicyConfig(min_speech_ms=320.0, no_speech_timeout_ms=960.0))
    out = run(policy, [True] + [False] * 6)
    assert D.RESPOND not in out and out[-1] is D.IGNORE and out.index(D.IGNORE) == 6


def test_state_resets_after_a_decision():
    policy = get_registry("duplex_policy").build("vad_endpoint", {"endpoint_ms": 160.0})
    state = policy.init_state()
    seq = [True, False, False]
    out = [policy.on_chunk(state, is_speech=s, state_probs=None, chunk_ms=160.0) for s in seq]
    assert out == [D.LISTEN, D.RESPOND, D.LISTEN]  # after RESPOND the next turn starts from zero speech
