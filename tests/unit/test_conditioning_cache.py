"""The cache of frozen-LLM conditioning for speech-decoder training, and the objective that reads it."""

from __future__ import annotations

import copy

import pytest
import torch
from _training_fixtures import TINY_MODEL, batch_of, tiny_world
from omegaconf import OmegaConf

from omnikit.components.objectives.cached_codec_token_ce import (
    CachedCodecTokenCEConfig,
    CachedCodecTokenCEObjective,
)
from omnikit.components.speech_decoders import conditioning_cache as cc
from omnikit.components.speech_decoders.conditioning_cache import ConditioningCache, conditioning_key
from omnikit.model.build import build_model


def test_key_names_what_produced_the_conditioning():
    k = conditioning_key("fp1", "Tokyo is big.")
    assert k == conditioning_key("fp1", "Tokyo is big.")
    assert k != conditioning_key("fp2", "Tokyo is big.")  # another LLM
    assert k != conditioning_key("fp1", "Tokyo is large.")  # another text
    assert k != conditioning_key("fp1", "Tokyo is big.", hidden=True)
    # the question and system prompt shape the hidden states, not the token embeddings
    assert conditioning_key("fp1", "a", question="q1") == conditioning_key("fp1", "a", question="q2")
    h = conditioning_key("fp1", "a", hidden=True, question="q1", system_prompt="s")
    assert h != conditioning_key("fp1", "a", hidden=True, question="q2", system_prompt="s")
    assert h != conditioning_key("fp1", "a", hidden=True, question="q1", system_prompt="t")


class FakeTokenizer:
    eos_token_id = 0

    def decode(self, ids):
        return {1: " Tok", 2: "yo", 3: ".", 4: " is"}[ids[0]]


class FakeLLM:
    """Counts embedding calls; its fingerprint is settable."""

    def __init__(self, fp: str = "fp"):
        self.fp, self.calls, self.fp_calls = fp, 0, 0
        self.tokenizer = FakeTokenizer()
        self.table = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))

    def fingerprint(self):
        self.fp_calls += 1
        return self.fp

    def tokenize(self, text):
        return [1, 2, 3] if "Tokyo" in text else [4]

    def embed(self, ids):
        self.calls += 1
        return self.table[torch.tensor(ids)]


def test_char_weights_count_letters_and_give_pauses_to_punctuation():
    assert cc.token_char_weights(FakeTokenizer(), [1, 2, 3, 4]).tolist() == [3.0, 2.0, 1.0, 2.0]


def test_fetch_computes_once_then_reads_memory_and_disk(tmp_path):
    llm = FakeLLM()
    cache = ConditioningCache(tmp_path)
    first = cache.fetch(llm, ["Tokyo.", "is"])
    assert [e["text_emb"].shape for e in first] == [(3, 6), (1, 6)] and llm.calls == 2
    again = cache.fetch(llm, ["is", "Tokyo.", "is"])
    assert llm.calls == 2 and (cache.hits, cache.misses) == (3, 2) and llm.fp_calls == 1
    torch.testing.assert_close(again[1]["text_emb"], llm.table[[1, 2, 3]])
    # a new process (fresh cache on the same folder) reads the files instead of the LLM
    fresh = ConditioningCache(tmp_path)
    assert torch.equal(fresh.fetch(llm, ["Tokyo."])[0]["weights"], first[0]["weights"]) and llm.calls == 2
    # another LLM (fingerprint) misses
    other = FakeLLM("fp-other")
    fresh.fetch(other, ["Tokyo."])
    assert other.calls == 1
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3 and not list(tmp_path.rglob("*.tmp"))


def test_memory_is_bounded():
    cache = ConditioningCache(max_items=2)
    llm = FakeLLM()
    cache.fetch(llm, ["a", "b", "c"])
    assert len(cache) == 2


# ---------------------------------------------------------------------------------------------- the objective
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return tiny_world(root), root


def nar_duration_model(**args):
    cfg = copy.deepcopy(TINY_MODEL)
    cfg["speech_decoder"] = {"name": "nar_duration", "args": {
        "dim": 16, "heads": 2, "ffn_dim": 32, "encoder_layers": 1, "decoder_layers": 1, "duration_dim": 16,
        "align_dim": 8, "dropout": 0.0, **args}}
    torch.manual_seed(0)
    return build_model(OmegaConf.create({"model": cfg}))


@pytest.mark.parametrize("use_hidden", [False, True])
def test_objective_runs_the_llm_once_per_text(world, monkeypatch, use_hidden):
    from omnikit.components.objectives import codec_token_ce

    ds, root = world
    model = nar_duration_model(use_hidden=True)
    batch = batch_of(ds, root, "tts_train", needs=("wav",))
    calls = []
    original = codec_token_ce.teacher_forced_hidden
    monkeypatch.setattr(codec_token_ce, "teacher_forced_hidden", lambda *a: calls.append(1) or original(*a))
    objective = CachedCodecTokenCEObjective(CachedCodecTokenCEConfig(use_hidden=use_hidden))
    out = objective(model, batch)
    assert torch.isfinite(out["loss"]) and {"acc", "ce", "duration_loss", "align_loss"} <= out.keys()
    out["loss"].backward()
    dec = model["speech_decoder"]
    assert dec.head.weight.grad is not None
    assert (dec.hidden_proj.weight.grad is not None) == use_hidden
    assert all(p.grad is None for p in model["llm"].llm.parameters())
    second = objective(model, batch)
    assert len(calls) == (1 if use_hidden else 0)  # the second step read the cache
    assert second["cache_hit_rate"].item() == pytest.approx(0.5)


def test_objective_matches_uncached_conditioning(world):
    """Cached inputs equal what codec_token_ce computes, so the loss is the same."""
    from omnikit.components.objectives.codec_token_ce import CodecTokenCEConfig, CodecTokenCEObjective

    ds, root = world
    model = nar_duration_model(alignment="learned").eval()
    batch = batch_of(ds, root, "tts_train", needs=("wav",))
    cached = CachedCodecTokenCEObjective(CachedCodecTokenCEConfig(use_hidden=True))(model, batch)
    plain = CodecTokenCEObjective(CodecTokenCEConfig(use_hidden=True))(model, batch)
    torch.testing.assert_close(cached["loss"], plain["loss"], rtol=1e-4, atol=1e-5)


def test_objectives_pass_texts_and_codec_features_to_a_symbolic_decoder(world):
    """A character front end with feature targets gets the texts and the codec's features from both objectives
    (same loss), and a codec without token_features is refused with a message naming it."""
    from omnikit.components.objectives.codec_token_ce import CodecTokenCEConfig, CodecTokenCEObjective

    ds, root = world
    cfg = copy.deepcopy(TINY_MODEL)
    cfg["codec"] = {"name": "mel_vq", "args": {"sample_rate": 16000, "codebook_size": 16}}
    cfg["speech_decoder"] = {"name": "nar_duration", "args": {
        "dim": 16, "encoder_layers": 1, "decoder_layers": 1, "duration_dim": 16, "dropout": 0.0,
        "frontend": "chars", "target": "features", "arch": "conv", "feature_dim": 160}}
    torch.manual_seed(0)
    model = build_model(OmegaConf.create({"model": cfg})).eval()
    batch = batch_of(ds, root, "tts_train", needs=("wav",))
    cached = CachedCodecTokenCEObjective(CachedCodecTokenCEConfig())(model, batch)
    plain = CodecTokenCEObjective(CodecTokenCEConfig())(model, batch)
    assert torch.isfinite(cached["loss"]) and {"l1", "duration_loss"} <= cached.keys()
    torch.testing.assert_close(cached["loss"], plain["loss"], rtol=1e-4, atol=1e-5)
    wrong = nar_duration_model(frontend="chars", target="features", arch="conv", feature_dim=160)
    with pytest.raises(ValueError, match="token_features"):
        CachedCodecTokenCEObjective(CachedCodecTokenCEConfig())(wrong, batch)
