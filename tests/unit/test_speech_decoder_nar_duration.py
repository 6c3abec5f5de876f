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


# ---------------------------------------------------------------------------------------------- symbol front ends,
# feature targets, the conv architecture
FEAT = 8
TEXTS = ["Hello there.", "A cat sat on it.", "Yes!", "Bo, go."]


class SnapCodec:
    """Stands in for a codec with the optional feature members: features snap to a fixed codebook."""

    def __init__(self) -> None:
        self.codebook = torch.randn(CB, FEAT, generator=torch.Generator().manual_seed(9))

    def nearest_tokens(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cdist(features, self.codebook[None].expand(features.shape[0], -1, -1)).argmin(-1)


def symbolic(**overrides) -> NARDurationSpeechDecoder:
    args = dict(frontend="chars", target="features", arch="conv", feature_dim=FEAT, dilations=[1, 2])
    args.update(overrides)
    return tiny(**args)


def features_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 20, FEAT, generator=g)


def test_new_options_are_checked():
    for field in ("frontend", "target", "arch"):
        with pytest.raises(ValueError, match=field):
            symbolic(**{field: "nope"})
    with pytest.raises(ValueError, match="learned"):
        symbolic(alignment="learned")
    symbolic(dim=30, heads=4)  # conv layers have no heads: any width


@pytest.mark.parametrize("arch", ["conv", "transformer"])
@pytest.mark.parametrize("target", ["features", "tokens"])
def test_symbol_front_end_overfits_and_uses_the_prior(arch, target):
    torch.set_num_threads(1)
    model = symbolic(arch=arch, target=target).train()
    assert model.accepts_texts and model.accepts_token_features == (target == "features")
    assert model.in_proj is None and model.symbol_embed is not None
    text, _, tokens = batch()
    feats = features_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, texts=TEXTS, token_features=feats)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert ("l1" in out) == (target == "features") and ("acc" in out) == (target == "tokens")
    d = out["durations"]
    assert d.sum(1).tolist() == TOKEN_LENS.tolist()
    assert d[0, 5] == 0  # the space in "Hello there." gets no frames


def test_symbol_front_end_needs_texts_and_features_need_features():
    text, _, tokens = batch()
    with pytest.raises(ValueError, match="texts"):
        symbolic()(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, token_features=features_batch())
    with pytest.raises(ValueError, match="token_features"):
        symbolic()(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, texts=TEXTS)
    with pytest.raises(ValueError, match="text="):
        list(symbolic().eval().generate(text[:1], codec=SnapCodec()))
    with pytest.raises(ValueError, match="codec"):
        list(symbolic().eval().generate(text[:1], text="Hi."))


def test_padded_symbols_equal_each_item_alone():
    model = symbolic(frontend="chars").eval()
    ids, _, lens = model.symbols_of(TEXTS, "cpu")
    durations = torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(4))
    durations = durations * (torch.arange(ids.shape[1])[None] < lens[:, None])
    enc = model.encode_text(None, lens, symbols=ids)
    out, _ = model.decode_frames(enc, durations)
    i, n = 2, int(lens[2])
    alone_enc = model.encode_text(None, lens[i:i + 1], symbols=ids[i:i + 1, :n])
    alone, _ = model.decode_frames(alone_enc, durations[i:i + 1, :n])
    torch.testing.assert_close(out[i, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("target", ["features", "tokens"])
def test_symbolic_generate_streams_the_offline_prediction(target):
    model = symbolic(target=target, duration_scale=4.0).eval()
    codec = SnapCodec()
    emb = torch.randn(1, 3, COND)
    offline = model.predict(emb, text="Hello there, cat.", codec=codec)
    assert offline.numel() > 13
    chunks = list(model.generate(emb, text="Hello there, cat.", codec=codec, first_chunk=3, chunk=5))
    assert [c.numel() for c in chunks][0] == 3 and torch.equal(torch.cat(chunks), offline)
    assert all(c.dtype == torch.long and int(c.max()) < CB for c in chunks)
    if target == "features":  # bind_codec is the alternative to passing codec=
        model.bind_codec(codec)
        assert torch.equal(torch.cat(list(model.generate(emb, text="Hello there, cat."))), offline)


def test_symbol_durations_round_the_running_total():
    model = symbolic().eval()
    enc = torch.zeros(1, 6, 32)
    # every symbol predicted 0.4 frames: rounding each alone gives 0 frames (then 1 overall); the running total 2
    model.duration.out.bias.data.fill_(float(torch.log1p(torch.tensor(0.4))))
    model.duration.out.weight.data.zero_()
    d = model.predict_durations(enc, torch.tensor([6]))
    assert d.tolist() == [[0, 1, 0, 1, 0, 0]]  # running totals 0.4 0.8 1.2 1.6 2.0 2.4


class KitDecoder(NARDurationSpeechDecoder):
    """The kit calls ``forward`` with the Protocol's six arguments only: supply texts and features here."""

    def forward(self, text_emb, text_lens, hidden, hidden_lens, tokens, token_lens, **kw):
        kw.setdefault("texts", ["Hello there.", "A cat."][: tokens.shape[0]])
        g = torch.Generator().manual_seed(3)
        kw.setdefault("token_features", torch.randn(*tokens.shape, FEAT, generator=g))
        return super().forward(text_emb, text_lens, hidden, hidden_lens, tokens, token_lens, **kw)


def test_symbolic_decoder_passes_the_conformance_kit():
    from omnikit.testing import check_speech_decoder

    def make():
        torch.manual_seed(0)
        cfg = NARDurationConfig(dim=32, encoder_layers=1, decoder_layers=2, duration_dim=32, dropout=0.0,
                                frontend="chars", target="features", arch="conv", feature_dim=FEAT,
                                use_hidden=True, duration_scale=3.0)
        return KitDecoder(cfg, cond_dim=COND, codebook_size=CB)

    check_speech_decoder(make(), cond_dim=COND, codebook_size=CB, max_tokens=40,
                         generate_kwargs={"codec": SnapCodec()}, fresh=make)


def test_fitted_symbol_prior_updates_in_training_only():
    model = symbolic(symbol_prior="fitted").train()
    text, _, tokens = batch()
    model(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, texts=TEXTS, token_features=features_batch())
    seen = model.prior.frames.item()
    assert seen == TOKEN_LENS.sum().item() and "prior.xtx" in model.state_dict()
    model.eval()(text, TEXT_LENS, None, None, tokens, TOKEN_LENS, texts=TEXTS, token_features=features_batch())
    assert model.prior.frames.item() == seen
    with pytest.raises(ValueError, match="symbol_prior"):
        symbolic(symbol_prior="nope")
