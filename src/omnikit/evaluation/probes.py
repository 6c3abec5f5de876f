"""Run one piece of a trained system on one utterance: the building blocks of ``evaluate_run``.

Each probe takes a :class:`~omnikit.inference.dialogue_model.DialogueModel` and 16 kHz mono audio and is
deterministic (greedy). Offline probes run the full-utterance twins of the streaming modules (the training
path); :func:`stream_decisions` and :func:`spoken_turn` run the product's streaming :class:`Session`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from omnikit.audio.features import utterance_features
from omnikit.components.adapters.ctc_connector import CTCConnector
from omnikit.components.duplex.base import Decision
from omnikit.data.char_vocab import CharVocab
from omnikit.interfaces import CHUNK_FRAMES, SAMPLE_RATE, STATES


def _feats(model: Any, wav: Tensor) -> tuple[Tensor, Tensor]:
    feats = utterance_features(wav.reshape(-1).float())[None]
    device = next(model.encoder.parameters()).device
    return feats.to(device), torch.tensor([feats.shape[1]], device=device)


@torch.no_grad()
def ctc_transcript(model: Any, wav: Tensor, vocab: CharVocab | None = None) -> str | None:
    """Greedy CTC decode of the encoder's CTC head (stage 1); None when the encoder has no CTC head."""
    feats, lens = _feats(model, wav)
    out = model.encoder(feats, lens)
    if out.ctc_logits is None:
        return None
    return (vocab or CharVocab()).greedy_decode(out.ctc_logits.float().cpu(), out.lens.cpu())[0]


@torch.no_grad()
def audio_embeddings(model: Any, wav: Tensor) -> tuple[Tensor, int, int]:
    """Encoder -> adapter (offline): ``(1, n, H)`` embeddings at the LLM width, ``n`` and the fbank frames."""
    feats, lens = _feats(model, wav)
    enc = model.encoder(feats, lens)
    emb, emb_lens = model.adapter(enc.hidden, enc.lens)
    n = int(emb_lens[0])
    return emb[:, :n], n, int(lens[0])


def _generate(model: Any, state: Any, max_tokens: int) -> str:
    llm = model.llm
    ids, _ = llm.generate(state, max_new_tokens=max_tokens)
    return str(llm.tokenizer.decode(ids, skip_special_tokens=True)).strip()


@torch.no_grad()
def llm_transcript(model: Any, wav: Tensor, max_tokens: int = 64) -> str:
    """The LLM's transcription (stage 2's layout): ``[system][user prefix][audio][assistant prefix]`` -> greedy
    text, without the prompt embeddings (stage 2 trains with ``use_prompt: false``). With a CTC connector the LLM
    reads words as its own tokens, so its transcript is the connector's text (no generation)."""
    if isinstance(model.adapter, CTCConnector):
        feats, lens = _feats(model, wav)
        enc = model.encoder(feats, lens)
        return model.adapter.transcript(enc.hidden, enc.lens)[0]
    llm = model.llm
    emb, n, _ = audio_embeddings(model, wav)
    if n == 0:
        return ""
    state = llm.new_conversation()
    llm.append_text_user_turn(state, "", with_prompt=False)  # opens the user turn: its prefix only
    llm.append_audio(state, emb.to(llm.dtype))
    return _generate(model, state, max_tokens)


@torch.no_grad()
def offline_answer(model: Any, wav: Tensor, max_tokens: int = 64) -> str:
    """The spoken question answered offline (stage 3's layout, with prompt embeddings), greedy; no duplex."""
    llm = model.llm
    emb, n, _ = audio_embeddings(model, wav)
    state = llm.new_conversation()
    llm.start_user_turn(state)
    if n:
        llm.append_audio(state, emb.to(llm.dtype))
    return _generate(model, state, max_tokens)


@torch.no_grad()
def state_predictions(model: Any, wav: Tensor) -> list[int]:
    """Argmax of the state head at the newest LLM position after each 160 ms chunk, streaming the whole stream
    as one user turn (no VAD): encoder chunk -> adapter chunk -> LLM. A chunk whose adapter emits nothing (a CTC
    connector between words) re-reads the newest position, as the session does. After a non-listen state, the
    next emitted embedding opens a fresh turn (the session drops or commits the turn at that decision)."""
    llm = model.llm
    feats, _ = _feats(model, wav)
    feats = feats[0]

    def fresh() -> tuple[Any, Any, Any]:
        state = llm.new_conversation()
        llm.start_user_turn(state)
        return state, model.encoder.init_state(), model.adapter.init_state()

    conv, enc, ad = fresh()
    closed = False
    out = []
    for c in range(feats.shape[0] // CHUNK_FRAMES):
        hidden, enc = model.encoder.forward_chunk(feats[None, c * CHUNK_FRAMES : (c + 1) * CHUNK_FRAMES], enc)
        emb, ad = model.adapter.forward_chunk(hidden, ad)
        if closed and emb.shape[1]:
            conv = fresh()[0]
            closed = False
        probs = llm.append_audio(conv, emb.to(llm.dtype))
        pred = int(probs.argmax())
        closed = closed or pred != STATES.index("listen")
        out.append(pred)
    return out


@torch.no_grad()
def stream_decisions(model: Any, wav: Tensor, tail_silence_s: float = 1.0) -> list[tuple[float, str]]:
    """Stream audio (plus trailing silence) through a fresh :class:`Session`: ``(time s, decision)`` of every
    non-listen decision, as the product's VAD + state head + duplex policy make them."""
    from omnikit.inference.session import Session

    session = Session(model)
    audio = torch.cat([wav.reshape(-1).float(), torch.zeros(int(tail_silence_s * SAMPLE_RATE))])
    out = []
    for ev in session.push_audio(audio):
        if ev.kind == "decision":
            out.append((round(ev.t, 3), str(ev.data["decision"])))
    return out


def is_respond(decision: str) -> bool:
    return decision == Decision.RESPOND.value


@dataclass
class SpokenTurn:
    """A spoken question streamed through ``ChatDriver``: the answer text, audio and latency per answer."""

    text: str
    audio: Tensor
    sample_rate: int
    timings: list[dict[str, float | None]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def spoken_turn(model: Any, wav: Tensor) -> SpokenTurn:
    """The product path: stream the question, let the duplex policy decide, generate and speak the answer."""
    from omnikit.inference.chat import ChatDriver

    result = ChatDriver(model).run([wav.reshape(-1).float()])
    text = " ".join(t.text for t in result.turns if t.text).strip()
    return SpokenTurn(text, result.audio, result.sample_rate, [t.timings for t in result.turns], result.decisions)
