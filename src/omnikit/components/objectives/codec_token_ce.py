"""Codec-token cross-entropy of the speech decoder, conditioned on the frozen LLM (output stages 2 and 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from omnikit.components.llms.chat_template import encode
from omnikit.registry import param


@dataclass
class CodecTokenCEConfig:
    use_hidden: bool = param(
        False,
        "Also feed the LLM's last hidden states of the text (teacher-forced, no grad) to the NAR prefix "
        "decoder (output stage 3). False: text embeddings only (output stage 2).",
    )


def pad_sequences(seqs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad ``(n_i, D)`` tensors to ``(B, max n, D)`` and return their lengths."""
    lens = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long, device=seqs[0].device)
    out = seqs[0].new_zeros(len(seqs), int(lens.max()), *seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lens


@torch.no_grad()
def codec_targets(codec: torch.nn.Module, wav: Tensor, wav_lens: Tensor) -> tuple[Tensor, Tensor]:
    """Codec tokens of the (padded) assistant audio and their valid lengths (ceil of the audio length)."""
    tokens = codec.encode(wav).long()
    per_token = codec.sample_rate / codec.frame_rate
    lens = torch.ceil(wav_lens.double() / per_token).long().clamp(max=tokens.shape[1]).to(tokens.device)
    return tokens, lens


def decoder_extras(decoder: Any, codec: Any, texts: list[str], wav: Tensor, tokens: Tensor) -> dict[str, Any]:
    """The optional keywords a speech decoder declares it reads: ``texts`` (``accepts_texts``: the spoken
    texts, for a character or phoneme front end) and ``token_features`` (``accepts_token_features``: the codec's
    continuous features of the target audio, cut to the token count)."""
    extra: dict[str, Any] = {}
    if getattr(decoder, "accepts_texts", False):
        extra["texts"] = list(texts)
    if getattr(decoder, "accepts_token_features", False):
        if not hasattr(codec, "token_features"):
            raise ValueError(f"the speech decoder regresses codec features, but the codec ({type(codec).__name__}) "
                             "has no token_features(wav): use a codec that does (mel_vq) or target: tokens")
        with torch.no_grad():
            extra["token_features"] = codec.token_features(wav)[:, : tokens.shape[1]].to(tokens.device)
    return extra


@torch.no_grad()
def text_conditioning(
    llm: torch.nn.Module, texts: list[str], use_hidden: bool, questions: list[str | None] | None = None
) -> tuple[Tensor, Tensor, Any, Any]:
    """Frozen token embeddings of each text and, optionally, the LLM's last hidden states for it.

    Hidden states come from :func:`teacher_forced_hidden`: the frozen LLM teacher-forced on the text as an
    assistant turn (after the question, when the cut has one), one hidden state per text token. Both are computed
    without gradient: the LLM is frozen, and nothing upstream of it trains in these stages.
    """
    emb = [llm.embed(encode(llm.tokenizer, t) or [llm.tokenizer.eos_token_id]) for t in texts]
    text_emb, text_lens = pad_sequences(emb)
    if not use_hidden:
        return text_emb, text_lens, None, None
    hidden, hidden_lens = teacher_forced_hidden(llm, texts, questions)
    return text_emb, text_lens, hidden, hidden_lens


@torch.no_grad()
def teacher_forced_hidden(llm: torch.nn.Module, texts: list[str], questions: list[str | None]) -> tuple[Tensor, Tensor]:
    """The frozen LLM's last-layer hidden states that *produce* each token of ``texts`` as an assistant turn.

    Sequence: ``[system][user prefix][question tokens, if any][assistant prefix][text]``; the state at the
    position before text token ``i`` is the one that predicted it (what the LLM emits at inference while
    generating that token). Returns ``(B, n_max, H)`` and the token counts (equal to the text-embedding counts).
    """
    seg = llm.segments
    heads, texts_ids = [], []
    for text, question in zip(texts, questions, strict=True):
        head = seg.system_ids(llm.tokenizer, llm.config.system_prompt) + seg.user_prefix_first
        heads.append(head + llm.tokenize(question or "") + seg.assistant_prefix)
        texts_ids.append(llm.tokenize(text) or [llm.tokenizer.eos_token_id])
    seqs = [h + t for h, t in zip(heads, texts_ids, strict=True)]
    width = max(len(q) for q in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, q in enumerate(seqs):  # right padding: causal attention keeps the valid positions exact
        ids[i, : len(q)] = torch.tensor(q)
        mask[i, : len(q)] = 1
    out = llm.llm(inputs_embeds=llm.embed(ids), attention_mask=mask.to(llm.device), output_hidden_states=True,
                  use_cache=False)
    last = out.hidden_states[-1]
    rows = [last[i, len(h) - 1 : len(h) - 1 + len(t)] for i, (h, t) in enumerate(zip(heads, texts_ids, strict=True))]
    return pad_sequences(rows)


class CodecTokenCEObjective:
    """Teacher-forced codec-token CE of the speech decoder on assistant-voice audio.

    Targets are the codec tokens of ``batch["wav"]`` (the codec is frozen, typically the output-stage-1 codec);
    the condition is the spoken text through the frozen LLM: its token embeddings (NAR pre-net input) and, with
    ``use_hidden``, its last hidden states (NAR prefix decoder input). Logs the decoder's token accuracy too.
    """

    config_class = CodecTokenCEConfig
    inputs = ("wav",)

    def __init__(self, config: CodecTokenCEConfig, **_: Any):
        self.config = config

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        texts = list(batch["text"])  # what the assistant voice says (for output stage 3: the LLM's answers)
        tokens, token_lens = codec_targets(model["codec"], batch["wav"], batch["wav_lens"])
        questions = batch.get("question") or [None] * len(texts)
        text_emb, text_lens, hidden, hidden_lens = text_conditioning(
            model["llm"], texts, self.config.use_hidden, questions
        )
        dtype = next(model["speech_decoder"].parameters()).dtype
        hidden = hidden.to(dtype) if hidden is not None else None
        extra = decoder_extras(model["speech_decoder"], model["codec"], texts, batch["wav"], tokens)
        out = model["speech_decoder"](text_emb.to(dtype), text_lens, hidden, hidden_lens, tokens, token_lens, **extra)
        return {"loss": out["loss"], **{k: v.detach() for k, v in out.items()
                                        if k != "loss" and isinstance(v, Tensor) and v.dim() == 0}}
