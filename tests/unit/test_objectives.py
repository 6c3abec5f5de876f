"""The five objectives on tiny real components and synthetic tone data."""

from __future__ import annotations

import pytest
import torch
from _training_fixtures import batch_of, tiny_cfg, tiny_world

from omnikit.components.objectives.codec_token_ce import (
    CodecTokenCEConfig,
    CodecTokenCEObjective,
    teacher_forced_hidden,
)
from omnikit.components.objectives.ctc import CTCConfig, CTCObjective
from omnikit.components.objectives.llm_next_token import LLMNextTokenConfig, LLMNextTokenObjective
from omnikit.components.objectives.state_ce import StateCEConfig, StateCEObjective, label_positions
from omnikit.model.build import build_model
from omnikit.training.freezing import apply_trainable, select_trainable


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return tiny_world(root), root


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def grads(model, slot):
    return [p.grad for n, p in model[slot].named_parameters() if p.requires_grad and p.grad is not None]


def test_ctc_trains_the_encoder_only(model, world):
    ds, root = world
    apply_trainable(model, select_trainable(model, ["encoder"]))
    batch = batch_of(ds, root, "asr_train")
    out = CTCObjective(CTCConfig())(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    assert grads(model, "encoder") and not grads(model, "adapter")


def test_llm_next_token_reaches_adapter_not_llm(model, world):
    ds, root = world
    apply_trainable(model, select_trainable(model, ["encoder", "adapter"], ["llm"]))
    batch = batch_of(ds, root, "asr_train")
    out = LLMNextTokenObjective(LLMNextTokenConfig(target="transcript", use_prompt=False))(model, batch)
    out["loss"].backward()
    assert grads(model, "adapter") and grads(model, "encoder")
    assert all(p.grad is None for p in model["llm"].llm.parameters())


def test_llm_next_token_leaves_out_cuts_without_answer(model, world):
    ds, root = world
    batch = batch_of(ds, root, "duplex_train", n=4)
    batch["answer"] = ["red", None, "blue cat", None]
    out = LLMNextTokenObjective(LLMNextTokenConfig(target="answer"))(model, batch)
    assert out["count"].item() == 2 and torch.isfinite(out["loss"])


def test_label_positions_pick_last_frame_of_each_chunk():
    labels = torch.tensor([[0, 0, 1, -100], [0, 2, -100, -100]])
    lens = torch.tensor([8, 3])  # second utterance: chunk 1's last position (3) is past its audio
    b, pos, y = label_positions(labels, lens, per_chunk=2)
    assert b.tolist() == [0, 0, 0, 1] and pos.tolist() == [1, 3, 5, 1] and y.tolist() == [0, 0, 1, 0]


def test_state_ce_trains_state_head_and_shares_llm_pass(model, world):
    ds, root = world
    sel = select_trainable(model, [r"llm\.prompt_embeddings", r"llm\.state_head\..*"], ["llm"])
    apply_trainable(model, sel)
    batch = batch_of(ds, root, "duplex_train", n=4)
    batch["_cache"] = {}
    lm = LLMNextTokenObjective(LLMNextTokenConfig(target="answer"))(model, batch) if all(
        a is not None for a in batch["answer"]) else None
    out = StateCEObjective(StateCEConfig(class_weights=[1.0, 5.0, 1.0]))(model, batch)
    assert 0.0 <= out["acc"].item() <= 1.0 and out["loss"] > 0
    total = out["loss"] + (lm["loss"] if lm is not None else 0.0)
    total.backward()
    assert model["llm"].state_head.weight.grad is not None
    assert not grads(model, "encoder")


def test_teacher_forced_hidden_aligns_with_text_tokens(model):
    llm = model["llm"]
    hidden, lens = teacher_forced_hidden(llm, ["sun two", "red"], [None, "what"])
    assert lens.tolist() == [len(llm.tokenize("sun two")), len(llm.tokenize("red"))]
    assert hidden.shape == (2, int(lens.max()), llm.hidden_size)
    # the question changes the states (the LLM conditions on it), the padding stays zero
    alone, _ = teacher_forced_hidden(llm, ["red"], [None])
    assert not torch.allclose(alone[0, :1], hidden[1, :1])
    assert torch.all(hidden[1, lens[1]:] == 0)
    # batching (right padding) gives the same states as one text at a time
    batched, _ = teacher_forced_hidden(llm, ["sun two", "red"], [None, None])
    torch.testing.assert_close(batched[1, :1], alone[0, :1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_hidden", [False, True])
def test_codec_token_ce_trains_the_right_decoder_part(model, world, use_hidden):
    ds, root = world
    pattern = r"speech_decoder\.prefix\..*" if use_hidden else r"speech_decoder\.(prenet|embed|layers|norm|head)\..*"
    apply_trainable(model, select_trainable(model, [pattern]))
    batch = batch_of(ds, root, "tts_train", needs=("wav",))
    out = CodecTokenCEObjective(CodecTokenCEConfig(use_hidden=use_hidden))(model, batch)
    out["loss"].backward()
    prefix_grads = [p.grad for p in model["speech_decoder"].prefix.parameters() if p.grad is not None]
    assert bool(prefix_grads) == use_hidden
    assert 0.0 <= out["acc"].item() <= 1.0


def test_codec_reconstruction_crops_without_padding(model, world):
    from omnikit.components.objectives.codec_reconstruction import (
        CodecReconstructionConfig,
        CodecReconstructionObjective,
    )

    ds, root = world
    batch = batch_of(ds, root, "tts_train", needs=("wav",))
    seen = []
    codec = model["codec"]
    original = codec.reconstruction_loss
    codec.reconstruction_loss = lambda wav: seen.append(wav) or original(wav)
    try:
        out = CodecReconstructionObjective(CodecReconstructionConfig(segment_seconds=0.25))(model, batch)
    finally:
        del codec.reconstruction_loss
    assert seen[0].shape == (batch["wav"].shape[0], 4000) and torch.isfinite(out["loss"])
    # crops come from inside each utterance: no all-zero (padding) tail
    assert torch.all(seen[0][:, -400:].abs().sum(-1) > 0)
