"""Text sampling: temperature -> softmax -> top-k -> top-p, in that order."""

from __future__ import annotations

import torch

from omnikit.components.llms.sampling import GREEDY, Sampling, sample_token, sampling_probs


def test_greedy_is_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert sample_token(logits, GREEDY) == 1


def test_top_k_then_top_p_order() -> None:
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    # top-k 3 renormalises to [0.444, 0.333, 0.222] (cumulative 0.444, 0.778, 1.0), so top-p 0.75 keeps only
    # the first token; top-p applied first (cumulative 0.4, 0.7, ...) would have kept two.
    out = sampling_probs(logits, Sampling(temperature=1.0, top_k=3, top_p=0.75))
    assert out.tolist() == [1.0, 0.0, 0.0, 0.0]
    wider = sampling_probs(logits, Sampling(temperature=1.0, top_k=3, top_p=0.9))
    assert wider[2] == 0 and wider[3] == 0
    assert torch.allclose(wider[:2], torch.tensor([0.4, 0.3]) / 0.7)
    # top_p tiny: only the most probable token survives
    only_top = sampling_probs(logits, Sampling(temperature=1.0, top_k=0, top_p=0.01))
    assert only_top.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_temperature_sharpens_before_softmax() -> None:
    logits = torch.tensor([1.0, 0.0])
    hot = sampling_probs(logits, Sampling(temperature=2.0, top_k=0, top_p=1.0))
    cold = sampling_probs(logits, Sampling(temperature=0.5, top_k=0, top_p=1.0))
    assert cold[0] > torch.softmax(logits, 0)[0] > hot[0]


def test_draws_stay_in_allowed_set_and_are_seeded() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(1))
    sampling = Sampling(temperature=0.7, top_k=5, top_p=0.9)
    allowed = set(torch.topk(logits, 5).indices.tolist())
    draws = [sample_token(logits, sampling, torch.Generator().manual_seed(s)) for s in range(40)]
    assert set(draws) <= allowed and len(set(draws)) > 1
    again = [sample_token(logits, sampling, torch.Generator().manual_seed(s)) for s in range(40)]
    assert draws == again
