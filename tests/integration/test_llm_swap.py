"""Swapping the LLM is one recipe override: the whole speech path rebuilds around another architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from omnikit.config import load_recipe, validate_recipe
from omnikit.inference.chat import ChatDriver
from omnikit.inference.dialogue_model import DialogueModel

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"


@pytest.mark.parametrize("arch", ["qwen2", "gemma"])
def test_speech_path_builds_and_runs_around_another_llm(arch):
    cfg = load_recipe(SMOKE, [f"model.llm.args.model=random:{arch}", "inference.max_answer_tokens=4",
                              "inference.decoder_max_tokens=20", "inference.first_chunk=5", "inference.chunk=10",
                              "inference.greedy=true"])
    validate_recipe(cfg)
    model = DialogueModel.from_recipe(cfg)
    assert arch in type(model.llm.llm).__name__.lower()
    h = model.llm.hidden_size
    # sizes flowed from the new LLM: adapter output and speech decoder conditioning
    feats = torch.randn(1, 64, 80)
    enc = model.encoder(feats, torch.tensor([64]))
    emb, lens = model.adapter(enc.hidden, enc.lens)
    assert emb.shape[-1] == h
    out = model.llm.forward_train(emb, lens, ["hello"])
    assert out.lm_loss is not None and torch.isfinite(out.lm_loss)
    assert out.state_logits.shape[-1] == model.llm.num_states
    # and it answers a written question end to end (a random LLM may well answer with nothing speakable)
    result = ChatDriver(model).ask("What is the capital of France?")
    assert len(result.turns) == 1 and not result.turns[0].interrupted
    if result.turns[0].text.strip():
        assert result.audio.numel() > 0
