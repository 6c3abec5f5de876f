"""A Session over a tiny random system: events in order, barge-in, ignore, and streaming equal to offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from omnikit.config import load_recipe, merge_recipe
from omnikit.inference.chat import ChatDriver
from omnikit.inference.dialogue_model import DialogueModel, RunDirError
from omnikit.inference.session import Session

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


@pytest.fixture(scope="module")
def model() -> DialogueModel:
    """The smoke recipe's tiny parts with random weights, an energy VAD and the VAD-endpoint policy."""
    torch.manual_seed(0)
    cfg = load_recipe(ROOT / "recipes" / "smoke.yaml")
    cfg = merge_recipe(cfg, OmegaConf.create({
        "model": {"vad": {"name": "energy", "args": {}},
                  "duplex_policy": {"name": "vad_endpoint", "args": {"endpoint_ms": 480}}},
        "inference": {"greedy": True, "max_answer_tokens": 6, "decoder_max_tokens": 30,
                      "first_chunk": 5, "chunk": 10, "codec_context": 2,
                      "speech_tracker": {"pre_roll_chunks": 2, "min_silence_ms": 3000}},
    }))
    return DialogueModel.from_recipe(cfg)


def burst(seconds: float, seed: int = 0) -> torch.Tensor:
    """Loud noise-modulated tone: 'speech' for the energy VAD."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * torch.pi * 300 * t) + 0.05 * torch.randn(t.numel(), generator=g)


def silence(seconds: float) -> torch.Tensor:
    return torch.zeros(int(seconds * SR))


def kinds(events) -> list[str]:
    return [e.kind for e in events]


def test_spoken_turn_events_in_order(model):
    s = Session(model)
    events = s.push_audio(torch.cat([silence(0.5), burst(0.8), silence(1.0)]))
    assert kinds(events)[:2] == ["speech_start", "decision"]
    decision = events[1].data
    assert decision["decision"] == "respond" and decision["reason"] == "policy"
    assert s.speaking
    out = s.finish_answer()
    ks = kinds(out)
    assert ks[-1] == "answer_end" and "audio" in ks
    assert ks.index("audio") < ks.index("answer_end")
    assert all(k in ("text", "audio", "answer_end") for k in ks)
    pcm = torch.cat([e.data["pcm"] for e in out if e.kind == "audio"])
    assert pcm.numel() > 0 and torch.isfinite(pcm).all()
    t = s.finished[-1].timings
    assert t.decision_to_first_pcm_ms is not None and t.decision_to_first_pcm_ms > 0
    assert 400 <= t.speech_end_to_decision_ms <= 800  # 480 ms policy silence, in 160 ms chunks
    assert not s.speaking


def test_pieces_of_any_size_give_the_same_decisions(model):
    audio = torch.cat([silence(0.3), burst(0.7), silence(1.0)])
    whole = Session(model).push_audio(audio)
    s = Session(model)
    pieced = []
    sizes = [256, 512, 1000, 37]
    i = k = 0
    while i < audio.numel():
        n = sizes[k % len(sizes)]
        pieced += s.push_audio(audio[i : i + n])
        i, k = i + n, k + 1
    assert [(e.kind, round(e.t, 3)) for e in whole] == [(e.kind, round(e.t, 3)) for e in pieced]


def test_barge_in_interrupts_and_keeps_listening(model):
    s = Session(model)
    s.push_audio(torch.cat([burst(0.6), silence(0.7)]))
    assert s.speaking
    first = s.answer.id
    s.step_answer()  # the answer is under way
    events = s.push_audio(burst(0.6, seed=1))  # the user talks over the answer
    assert s.fork is not None and s.speaking  # hearing while speaking
    for _ in range(10):
        events += s.push_audio(silence(0.16))
        if "interrupt" in kinds(events):
            break
    ks = kinds(events)
    assert ks.index("interrupt") < len(ks) and "decision" in ks
    assert s.speaking and s.answer.id == first + 1
    assert s.finished[-1].id == first


def test_ignored_turn_leaves_no_trace(model):
    s = Session(model)
    before = s.conversation.length
    s.push_audio(burst(0.5))
    assert s.fork is not None
    s._run(s.machine.decide(__import__("omnikit.components.duplex.base", fromlist=["Decision"]).Decision.IGNORE))
    assert s.fork is None and not s.speaking and s.conversation.length == before


def test_streaming_input_equals_offline(model):
    """The embeddings a session feeds the LLM equal the full-utterance encoder + adapter on the same audio."""
    fed: list[torch.Tensor] = []
    heard: list[torch.Tensor] = []
    s = Session(model)
    real_append, real_hear = model.llm.append_audio, s._hear

    def record_append(state, emb):
        fed.append(emb.detach().clone())
        return real_append(state, emb)

    def record_hear(chunk):
        heard.append(chunk.clone())
        return real_hear(chunk)

    model.llm.append_audio = record_append
    s._hear = record_hear
    try:
        s.push_audio(torch.cat([silence(0.5), burst(1.3), silence(0.8)]))
    finally:
        del model.llm.append_audio
    wav = torch.cat(heard)
    feats = model.frontend.offline(wav)[None]
    with torch.no_grad():
        enc = model.encoder(feats, torch.tensor([feats.shape[1]]))
        emb, lens = model.adapter(enc.hidden, enc.lens)
    streamed = torch.cat(fed, dim=1)
    assert streamed.shape == emb[:, : streamed.shape[1]].shape
    torch.testing.assert_close(streamed, emb[:, : streamed.shape[1]], atol=1e-4, rtol=1e-4)


def test_text_question_is_answered_in_speech(model):
    result = ChatDriver(model).ask("What is the capital of France?")
    assert len(result.turns) == 1 and result.audio.numel() > 0
    assert result.decisions[0]["reason"] == "text"


def test_run_dir_without_checkpoints_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="recipe.yaml is missing"):
        DialogueModel.from_run_dir(tmp_path)
    OmegaConf.save(load_recipe(ROOT / "recipes" / "smoke.yaml"), tmp_path / "recipe.yaml")
    with pytest.raises(RunDirError, match="stage 'input_1_ctc' has no finished checkpoint"):
        DialogueModel.from_run_dir(tmp_path)


def test_new_speech_before_the_answer_starts_is_a_barge_in(model):
    """A second turn can open right after a RESPOND, before the answer generated anything."""
    s = Session(model)
    s.push_audio(torch.cat([burst(0.6), silence(0.7)]))
    assert s.speaking and s.answer.token is None
    s.push_audio(burst(0.5, seed=2))  # no step_answer in between
    assert s.fork is not None and s.speaking
