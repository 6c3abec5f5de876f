"""state_head policy on scripted state-head probabilities: ignore before respond, thresholds, time-out."""

from __future__ import annotations

import pytest
import torch

from omnikit.components.duplex.base import Decision as D
from omnikit.components.duplex.state_head import StateHeadPolicy, StateHeadPolicyConfig
from omnikit.registry.catalog import get_registry

LISTEN_P = torch.tensor([0.9, 0.05, 0.05])


def step(policy, state, probs, speech=True, ms=160.0):
    return policy.on_chunk(state, is_speech=speech, state_probs=probs, chunk_ms=ms)


def test_ignore_is_checked_before_respond():
    policy = StateHeadPolicy(StateHeadPolicyConfig(respond_threshold=0.3, ignore_threshold=0.3))
    state = policy.init_state()
    assert step(policy, state, torch.tensor([0.2, 0.4, 0.4])) is D.IGNORE  # both above threshold


def test_thresholds_are_strict_and_configurable():
    policy = StateHeadPolicy(StateHeadPolicyConfig())
    state = policy.init_state()
    assert step(policy, state, torch.tensor([0.5, 0.5, 0.0])) is D.LISTEN  # 0.5 is not > 0.5
    assert step(policy, state, torch.tensor([0.4, 0.6, 0.0])) is D.RESPOND
    assert step(policy, state, torch.tensor([0.3, 0.0, 0.7])) is D.IGNORE
    low = StateHeadPolicy(StateHeadPolicyConfig(respond_threshold=0.35))
    assert step(low, low.init_state(), torch.tensor([0.6, 0.4, 0.0])) is D.RESPOND


def test_uses_last_position_and_logits_with_a_dummy_class():
    policy = StateHeadPolicy(StateHeadPolicyConfig(from_logits=True))
    logits = torch.tensor([[[0.0, 9.0, 0.0, 50.0], [9.0, 0.0, 0.0, 50.0]]])  # (1, T=2, 4): last row = listen
    assert step(policy, policy.init_state(), logits) is D.LISTEN
    assert step(policy, policy.init_state(), logits[:, :1]) is D.RESPOND  # dummy class 3 dropped


def test_min_speech_blocks_early_respond_but_not_ignore():
    policy = StateHeadPolicy(StateHeadPolicyConfig(min_speech_ms=480.0))
    state = policy.init_state()
    respond = torch.tensor([0.1, 0.9, 0.0])
    assert [step(policy, state, respond) for _ in range(3)] == [D.LISTEN, D.LISTEN, D.RESPOND]
    assert step(policy, policy.init_state(), torch.tensor([0.1, 0.0, 0.9])) is D.IGNORE


def test_silence_timeout_ends_the_turn_as_configured():
    policy = StateHeadPolicy(StateHeadPolicyConfig(silence_timeout_ms=2000.0))
    state = policy.init_state()
    step(policy, state, LISTEN_P, speech=True)
    decisions = [step(policy, state, LISTEN_P, speech=False) for _ in range(13)]
    assert decisions[:12] == [D.LISTEN] * 12 and decisions[12] is D.IGNORE  # 13 * 160 = 2080 >= 2000
    assert state.heard_ms == 0.0  # reset for the next turn
    respond = StateHeadPolicy(StateHeadPolicyConfig(silence_timeout_ms=480.0, timeout_decision="respond"))
    state = respond.init_state()
    assert [step(respond, state, None, speech=False) for _ in range(3)] == [D.LISTEN, D.LISTEN, D.RESPOND]


def test_speech_restarts_the_timeout_and_pre_roll_probs_none_never_decide():
    policy = StateHeadPolicy(StateHeadPolicyConfig(silence_timeout_ms=480.0))
    state = policy.init_state()
    seq = [False, False, True, False, False, True]
    assert all(step(policy, state, None, speech=s) is D.LISTEN for s in seq)
    assert state.speech_ms == 320.0 and state.heard_ms == 960.0


def test_registered_and_index_check():
    policy = get_registry("duplex_policy").build("state_head", {"ignore_threshold": 0.8})
    assert step(policy, policy.init_state(), torch.tensor([0.0, 0.3, 0.7])) is D.LISTEN
    with pytest.raises(ValueError):
        StateHeadPolicy(StateHeadPolicyConfig(respond_index=2, ignore_index=2))
    with pytest.raises(ValueError, match="timeout_decision"):
        StateHeadPolicy(StateHeadPolicyConfig(timeout_decision="listen"))
