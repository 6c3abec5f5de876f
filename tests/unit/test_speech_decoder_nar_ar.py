"""NAR/AR speech decoder: training objective, masks, incremental cache, chunked generation, paper size."""

from __future__ import annotations

import pytest
import torch

from omnikit.components.speech_decoders.nar_ar import NARARConfig, NARARSpeechDecoder
from omnikit.interfaces import SpeechDecoder

COND, CB = 24, 16


def tiny(**overrides) -> NARARSpeechDecoder:
    args = dict(
        dim=16,
        heads=2,
        ffn_dim=32,
        layers=2,
        prefix_layers=2,
        prenet_layers=1,
        dropout=0.0,
        attention_dropout=0.0,
    )
    args.update(overrides)
    torch.manual_seed(0)
    return NARARSpeechDecoder(NARARConfig(**args), cond_dim=COND, codebook_size=CB)


def batch(b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(b, 5, COND, generator=g)
    hidden = torch.randn(b, 4, COND, generator=g)
    tokens = torch.randint(0, CB, (b, 8), generator=g)
    return text, hidden, tokens


def test_satisfies_protocol_and_special_ids():
    model = tiny()
    assert isinstance(model, SpeechDecoder)
    assert (model.bos_id, model.sos_id, model.eos_id, model.pad_id) == (16, 17, 18, 19)
    assert model.head.out_features == CB + 4


def test_teacher_forced_loss_decreases_on_tiny_overfit_set():
    model = tiny(dim=32, heads=4, ffn_dim=64).train()
    text, hidden, tokens = batch(4)
    text_lens, hidden_lens, token_lens = (
        torch.tensor([5, 4, 3, 5]),
        torch.tensor([4, 2, 3, 4]),
        torch.tensor([8, 6, 7, 5]),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        out = model(text, text_lens, hidden, hidden_lens, tokens, token_lens)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert out["loss"].item() < 0.2 * first
    assert out["acc"].item() > 0.9


def test_incremental_cache_matches_teacher_forced_logits():
    model = tiny().eval()
    text, hidden, tokens = batch(1)
    for h in (hidden, None):
        full, _ = model.teacher_forced_logits(
            text, torch.tensor([5]), h, None if h is None else torch.tensor([4]), tokens, torch.tensor([8])
        )
        state = model.prefill(text, h, capacity=2)  # small capacity: exercises cache growth
        inputs = [model.sos_id, *tokens[0].tolist()]
        steps = torch.stack([model.step(t, state) for t in inputs])
        torch.testing.assert_close(steps, full[0], atol=1e-4, rtol=1e-4)


def test_prefix_conditioning_changes_logits():
    model = tiny().eval()
    text, hidden, tokens = batch(1)
    lens = (torch.tensor([5]), torch.tensor([8]))
    with_a, _ = model.teacher_forced_logits(text, lens[0], hidden, torch.tensor([4]), tokens, lens[1])
    with_b, _ = model.teacher_forced_logits(text, lens[0], hidden + 1.0, torch.tensor([4]), tokens, lens[1])
    without, _ = model.teacher_forced_logits(text, lens[0], None, None, tokens, lens[1])
    assert (with_a - with_b).abs().max() > 1e-3
    assert (with_a - without).abs().max() > 1e-3


@pytest.mark.parametrize("mapping", ["projection", "reshape"])
def test_padding_does_not_change_results(mapping):
    cfg = tiny().config
    cfg.input_mapping = mapping
    torch.manual_seed(0)
    cond = 2 * cfg.dim  # reshape: each vector becomes 2 decoder positions
    model = NARARSpeechDecoder(cfg, cond_dim=cond, codebook_size=CB).eval()
    g = torch.Generator().manual_seed(1)
    text, hidden = torch.randn(2, 6, cond, generator=g), torch.randn(2, 5, cond, generator=g)
    tokens = torch.randint(0, CB, (2, 9), generator=g)
    tl, hl, kl = torch.tensor([6, 3]), torch.tensor([5, 2]), torch.tensor([9, 4])
    batched, targets = model.teacher_forced_logits(text, tl, hidden, hl, tokens, kl)
    single, single_targets = model.teacher_forced_logits(
        text[1:, :3], tl[1:], hidden[1:, :2], hl[1:], tokens[1:, :4], kl[1:]
    )
    torch.testing.assert_close(batched[1, :5], single[0], atol=1e-5, rtol=1e-5)
    assert targets[1, :5].tolist() == single_targets[0].tolist() == [*tokens[1, :4].tolist(), model.eos_id]
    assert (targets[1, 5:] == model.pad_id).all()
    loss_b = model(text, tl, hidden, hl, tokens, kl)["loss"]
    loss_0 = model(text[:1], tl[:1], hidden[:1], hl[:1], tokens[:1], kl[:1])["loss"]
    loss_1 = model(text[1:, :3], tl[1:], hidden[1:, :2], hl[1:], tokens[1:, :4], kl[1:])["loss"]
    torch.testing.assert_close(loss_b, (10 * loss_0 + 5 * loss_1) / 15, atol=1e-5, rtol=1e-5)


def test_reshape_mapping_rejects_indivisible_cond_dim():
    with pytest.raises(ValueError, match="multiple of dim"):
        NARARSpeechDecoder(
            NARARConfig(dim=16, heads=2, input_mapping="reshape"), cond_dim=24, codebook_size=CB
        )
    with pytest.raises(ValueError, match="prefix_layers"):
        NARARSpeechDecoder(
            NARARConfig(dim=16, heads=2, layers=2, prefix_layers=3), cond_dim=24, codebook_size=CB
        )


def test_generate_chunks_20_40_rest_and_stops_at_eos(monkeypatch):
    model = tiny().eval()
    text, hidden, _ = batch(1)
    real_step, calls = model.step, []

    def scripted_step(token, state):
        logits = real_step(token, state)
        calls.append(token)
        forced = model.eos_id if len(calls) == 76 else len(calls) % CB
        return torch.full_like(logits, -1e4).index_fill(0, torch.tensor([forced]), 1e4)

    monkeypatch.setattr(model, "step", scripted_step)
    timings: dict[str, float] = {}
    chunks = list(model.generate(text, hidden, timings=timings))
    assert [len(c) for c in chunks] == [20, 40, 15]
    assert all(c.dtype == torch.long and c.dim() == 1 for c in chunks)
    assert torch.cat(chunks).tolist() == [i % CB for i in range(1, 76)]
    assert calls[0] == model.sos_id and calls[1:] == [i % CB for i in range(1, 76)]
    assert set(timings) == {"prefill_s", "first_chunk_s", "total_s", "tokens"} and timings["tokens"] == 75


def test_generate_respects_max_tokens_and_never_samples_specials():
    model = tiny().eval()
    with torch.no_grad():
        model.head.bias[model.eos_id] = -1e4
        model.head.bias[[model.bos_id, model.sos_id, model.pad_id]] = 1e4  # masked out by sample()
    text, hidden, _ = batch(1)
    chunks = list(
        model.generate(
            text, hidden, max_tokens=70, first_chunk=20, chunk=40, generator=torch.Generator().manual_seed(0)
        )
    )
    assert [len(c) for c in chunks] == [20, 40, 10]
    assert int(torch.cat(chunks).max()) < CB


def test_generate_is_reproducible_with_generator_and_top1_is_greedy():
    model = tiny().eval()
    text, hidden, _ = batch(1)

    def run(seed: int, k: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat(list(model.generate(text, hidden, top_k=k, max_tokens=30, generator=gen)))
    assert run(0, 2).tolist() == run(0, 2).tolist()
    assert run(0, 1).tolist() == run(5, 1).tolist()


def test_repetition_penalty_lowers_recent_tokens():
    model = tiny()
    logits = torch.zeros(CB + 4)
    logits[3], logits[4] = 2.0, 1.9
    assert model.sample(logits, [], top_k=1) == 3
    assert model.sample(logits, [3], top_k=1, repetition_penalty=1.1, penalty_window=5) == 4
    assert model.sample(logits, [3, 0, 0, 0, 0, 0], top_k=1, repetition_penalty=1.1, penalty_window=5) == 3


def test_parts_partition_parameters():
    model = tiny()
    names = {n for n, _ in model.named_parameters()}
    parts = {part: {id(p) for p in model.trainable_parameters(part)} for part in model.PARTS}
    assert sum(len(v) for v in parts.values()) == len(names)
    assert not parts["prefix"] & parts["decoder"] and not parts["prenet"] & parts["decoder"]
    assert any(n.startswith("prefix.mapping.proj") for n in names)
    assert tiny(prefix_layers=0).prefix is None


@pytest.mark.parametrize("mapping,expected", [("reshape", 164_718_980), ("projection", 171_143_300)])
def test_paper_size_on_meta(mapping, expected):
    cfg = NARARConfig(
        dim=896, heads=14, ffn_dim=4864, layers=4, prefix_layers=4, prenet_layers=2, input_mapping=mapping
    )
    with torch.device("meta"):
        model = NARARSpeechDecoder(cfg, cond_dim=3584, codebook_size=1024)
    total = sum(p.numel() for p in model.parameters())
    assert total == expected
    assert abs(total - 164.7e6) < 7e6
    no_prefix = total - sum(p.numel() for p in model.trainable_parameters("prefix"))
    if mapping == "reshape":
        assert abs(no_prefix - 99.6e6) < 0.1e6


def test_every_part_receives_gradient_except_unread_last_prefix_layer():
    model = tiny().train()
    text, hidden, tokens = batch(2)
    lens = torch.tensor([5, 3]), torch.tensor([4, 2]), torch.tensor([8, 5])
    model(text, lens[0], hidden, lens[1], tokens, lens[2])["loss"].backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    last = f"prefix.layers.{model.config.prefix_layers - 1}."
    unread = (
        "attn.q_proj.weight",
        "attn.o_proj.weight",
        "post_attn_norm.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    )
    assert no_grad == {last + s for s in unread}
