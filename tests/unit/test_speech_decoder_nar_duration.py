"""Duration-aligned NAR decoder: alignment maths, shapes, masks, overfitting, streaming == offline, contract."""

from __future__ import annotations

import itertools

import pytest
import torch

from omnikit.components.speech_decoders.alignment import (
    beta_binomial_log_prior,
    forward_sum_loss,
    uniform_durations,
    viterbi_durations,
)
from omnikit.components.speech_decoders.nar_duration import (
    NARDurationConfig,
    NARDurationSpeechDecoder,
    length_regulate,
)
from omnikit.interfaces import SpeechDecoder

COND, CB = 24, 16


def tiny(**overrides) -> NARDurationSpeechDecoder:
    args = dict(dim=32, heads=2, ffn_dim=64, encoder_layers=1, decoder_layers=2, duration_dim=32, align_dim=16,
                dropout=0.0)
    args.update(overrides)
    torch.manual_seed(0)
    return NARDurationSpeechDecoder(NARDurationConfig(**args), cond_dim=COND, codebook_size=CB)


def batch(b: int = 4, n: int = 5, t: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, COND, generator=g), torch.randn(b, n, COND, generator=g),
            torch.randint(0, CB, (b, t), generator=g))


TEXT_LENS, TOKEN_LENS = torch.tensor([5, 4, 3, 5]), torch.tensor([20, 15, 12, 9])


# ---------------------------------------------------------------------------------------------- alignment
def brute_force_best_path(lp: torch.Tensor) -> tuple[float, list[int]]:
    """Best monotonic path score and its durations by enumerating every split of T frames into N runs >= 1."""
    t, n = lp.shape
    best = (-float("inf"), [])
    for cuts in itertools.combinations(range(1, t), n - 1):
        bounds = (0, *cuts, t)
        durs = [bounds[i + 1] - bounds[i] for i in range(n)]
        score = sum(float(lp[bounds[i]:bounds[i + 1], i].sum()) for i in range(n))
        best = max(best, (score, durs))
    return best


def test_viterbi_finds_the_best_monotonic_path():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(3, 7, 4, generator=g)
    text_lens, frame_lens = torch.tensor([4, 3, 2]), torch.tensor([7, 6, 5])
    d = viterbi_durations(lp, text_lens, frame_lens)
    assert d.sum(1).tolist() == frame_lens.tolist()
    for i in range(3):
        n, t = int(text_lens[i]), int(frame_lens[i])
        _, durs = brute_force_best_path(lp[i, :t, :n])
        assert d[i, :n].tolist() == durs and d[i, n:].sum() == 0


def test_viterbi_survives_a_confident_aligner():
    # a trained aligner's wrong-token log-probs are hugely negative: valid paths then score below any finite
    # floor, which must not let the path leave the valid region
    lp = torch.full((2, 150, 15), -3000.0)
    for j in range(150):
        lp[:, j, min(14, j // 10)] = 0.0
    d = viterbi_durations(lp, torch.tensor([15, 12]), torch.tensor([150, 140]))
    assert d[0].tolist() == [10] * 15 and d[1, :11].tolist() == [10] * 11 and d[1, 11] == 30


def test_viterbi_with_fewer_frames_than_tokens_falls_back_to_shares():
    d = viterbi_durations(torch.zeros(1, 3, 5), torch.tensor([5]), torch.tensor([3]))
    assert d.sum().item() == 3


def test_uniform_durations_are_exact_proportional_and_at_least_one():
    w = torch.tensor([[1.0, 6.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    d = uniform_durations(w, torch.tensor([3, 4]), torch.tensor([16, 10]))
    assert d.sum(1).tolist() == [16, 10]
    assert d[0, 1] > 3 * d[0, 0] and d[0, 3] == 0 and (d[1] >= 2).all()
    assert (uniform_durations(torch.tensor([[0.0, 9.0]]), torch.tensor([2]), torch.tensor([5])) >= 1).all()


def test_prior_is_a_distribution_along_the_diagonal():
    p = beta_binomial_log_prior(torch.tensor([4]), torch.tensor([12]), 6, 14).exp()
    torch.testing.assert_close(p[0, :12].sum(-1), torch.ones(12))
    assert p[0, :12, 4:].max() < 1e-3 and p[0, 12:].max() < 1e-3  # padding gets nothing
    assert p[0, 0].argmax() == 0 and p[0, 11].argmax() == 3


def test_forward_sum_prefers_monotonic_alignments():
    n, t = 4, 12
    diag = torch.full((1, t, n), -5.0)
    for j in range(t):
        diag[0, j, j * n // t] = 0.0
    rev = diag.flip(-1)
    lens = (torch.tensor([n]), torch.tensor([t]))
    assert forward_sum_loss(diag, *lens) < forward_sum_loss(rev, *lens) - 1.0


def test_length_regulator_repeats_and_marks_progress():
    x = torch.arange(3.0)[None, :, None].expand(1, 3, 2)
    out, lens, feats = length_regulate(x, torch.tensor([[2, 0, 3]]), length=6)
    assert out[0, :, 0].tolist() == [0, 0, 2, 2, 2, 0] and lens.tolist() == [5]
    torch.testing.assert_close(feats[0, 2:5, 0], torch.tensor([1 / 6, 0.5, 5 / 6]))
    assert feats[0, 5].abs().sum() == 0


# ---------------------------------------------------------------------------------------------- the decoder
def test_satisfies_protocol_and_output_shapes():
    model = tiny()
    assert isinstance(model, SpeechDecoder)
    text, hidden, tokens = batch()
    out = model(text, TEXT_LENS, hidden, TEXT_LENS, tokens, TOKEN_LENS)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad and 0 <= out["acc"].item() <= 1
    assert out["durations"].shape == (4, 5) and out["durations"].sum(1).tolist() == TOKEN_LENS.tolist()
    assert (out["durations"][torch.arange(5)[None] < TEXT_LENS[:, None]] >= 1).all()
    enc = model.encode_text(text, TEXT_LENS)
    logits, lens = model.decode_frames(enc, out["durations"], tokens.shape[1])
    assert logits.shape == (4, 20, CB) and lens.tolist() == TOKEN_LENS.tolist()
    assert model.eval().predict_logits(text[:1]).shape[-1] == CB


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="alignment"):
        tiny(alignment="mas")
    with pytest.raises(ValueError, match="divisible"):
        tiny(dim=30, heads=4)


def test_padding_does_not_change_an_item():
    model = tiny().eval()
    text, _, _ = batch()
    durations = torch.tensor([[2, 1, 3, 1, 2], [1, 2, 2, 0, 0], [3, 3, 1, 0, 0], [1, 1, 1, 1, 1]])
    logits, lens = model.decode_frames(model.encode_text(text, TEXT_LENS), durations)
    alone, _ = model.decode_frames(model.encode_text(text[2:3, :3], TEXT_LENS[2:3]), durations[2:3, :3])
    torch.testing.assert_close(logits[2, :7], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.duration(model.encode_text(text, TEXT_LENS), torch.arange(5)[None] < TEXT_LENS[:, None])[2, :3],
                               model.duration(model.encode_text(text[2:3, :3], TEXT_LENS[2:3]), torch.ones(1, 3, dtype=torch.bool))[0],
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("alignment", ["learned", "uniform"])
def test_loss_falls_on_a_tiny_overfit_batch(alignment):
    torch.set_num_threads(1)
    model = tiny(alignment=alignment).train()
    text, hidden, tokens = batch()
    weights = torch.rand(4, 5, generator=torch.Generator().manual_seed(2)) + 0.5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, accs = [], []
    for _ in range(60):
        out = model(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, token_weights=weights)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        accs.append(out["acc"].item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert accs[-1] > 0.85
    if alignment == "uniform":  # the character prior splits frames by the weights
        torch.testing.assert_close(out["durations"], uniform_durations(weights, TEXT_LENS, TOKEN_LENS))


def test_generate_streams_exactly_the_offline_prediction():
    model = tiny(duration_scale=5.0).eval()
    text, hidden, _ = batch(1, n=6)
    offline = model.predict(text, hidden)
    assert offline.numel() > 13
    timings: dict[str, float] = {}
    chunks = list(model.generate(text, hidden, top_k=2, first_chunk=3, chunk=5, timings=timings))
    sizes = [c.numel() for c in chunks]
    assert sizes[0] == 3 and all(s == 5 for s in sizes[1:-1]) and 1 <= sizes[-1] <= 5
    assert torch.equal(torch.cat(chunks), offline) and all(c.dtype == torch.long for c in chunks)
    assert {"prefill_s", "first_chunk_s", "total_s"} <= timings.keys() and timings["tokens"] == offline.numel()
    assert sum(c.numel() for c in model.generate(text, hidden, max_tokens=7)) == 7


def test_sampling_is_reproducible_with_a_generator():
    model = tiny(duration_scale=5.0, sample=True).eval()
    text, _, _ = batch(1, n=6)
    runs = [torch.cat(list(model.generate(text, top_k=4, generator=torch.Generator().manual_seed(5))))
            for _ in range(2)]
    assert torch.equal(*runs)
    assert not torch.equal(runs[0], model.predict(text))


def test_hidden_projection_starts_neutral_and_is_its_own_part():
    model = tiny(use_hidden=True).eval()
    text, hidden, _ = batch(1)
    # zero-initialised: adding hidden states does not change an already trained text-only decoder
    torch.testing.assert_close(model.predict_logits(text, hidden), model.predict_logits(text))
    # the segmenter's hidden count may differ from the re-tokenised text: resampled, no error
    assert model.predict_logits(text, hidden[:, :3]).shape[-1] == CB
    names = {n for n, _ in model.named_parameters() if n.startswith("hidden_proj.")}
    assert {id(p) for p in model.trainable_parameters("hidden")} == {id(dict(model.named_parameters())[n])
                                                                     for n in names}
    model.train()
    text, hidden, tokens = batch()
    model(text, TEXT_LENS, hidden, TEXT_LENS, tokens, TOKEN_LENS)["loss"].backward()
    assert model.hidden_proj.weight.grad is not None and model.hidden_proj.weight.grad.abs().sum() > 0
    assert sum(1 for _ in model.trainable_parameters("decoder")) + 2 == sum(1 for _ in model.parameters())
