"""nar_duration variants at equal CPU time, on hibari speech outside any run: which input, target and layers learn
fastest, and how good the symbol duration priors are.

    python benchmarks/bench_nar_duration_variants.py --part data      # hibari renders 1,450 sentences (65 + 5 min)
    python benchmarks/bench_nar_duration_variants.py --part codec     # mel_vq k-means (1,024 codes), features
    python benchmarks/bench_nar_duration_variants.py --part ceiling   # Whisper WER: source, codec (Griffin-Lim)
    python benchmarks/bench_nar_duration_variants.py --part align     # symbol priors vs Whisper word starts
    python benchmarks/bench_nar_duration_variants.py --part train --name B --cpu-minutes 5 --batch-frames 1000 \\
        --lr 1.5e-3 --args '{"frontend": "phonemes", "target": "features", "arch": "conv", "dim": 256,
                             "encoder_layers": 4, "decoder_layers": 8, "feature_dim": 160}'

Data: WordNet example sentences, element descriptions and WordNet definitions ("A bend is a circular segment of a
curve."), spoken by hibari (the assistant voice) at 16 kHz; 1,350 train, 100 dev (disjoint sentences). Work files go
to ``$TMPDIR/omnikit_nar_variants/``; each ``train`` run appends a row to
``benchmarks/results/nar_duration_variants.json``. Training runs one torch thread for a budget of *process CPU
time* (comparable on a shared machine, where wall time is not), then the dev WER is judged by faster-whisper
tiny.en on the greedy output through the Griffin-Lim codec (no learned vocoder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WORK = Path(tempfile.gettempdir()) / "omnikit_nar_variants"
OUT = Path(__file__).parent / "results" / "nar_duration_variants.json"


def part_data() -> None:
    from omnikit.data.world.opendomain import article, clean_sentence, common_nouns, element_sentences, wordnet_sentences
    from omnikit.data.world.voices import speak

    random.seed(0)
    ws = [s.text for s in wordnet_sentences()]
    es = [s.text for s in element_sentences()]
    defs = [s for w, _, d in common_nouns()
            if (s := clean_sentence(f"{article(w).capitalize()} {w} is {d}", min_words=5, max_words=25))]
    for x in (ws, es, defs):
        random.shuffle(x)
    texts = ws[:700] + es[:250] + defs[:500]
    random.shuffle(texts)
    out = {}
    for name, tx in (("train", texts[:1350]), ("dev", texts[1350:1450])):
        out[name] = (tx, [speak("hibari:heart", s, np.random.default_rng(i), 16000, (1.0, 1.0)).wav
                          for i, s in enumerate(tx)])
    (WORK / "data.pkl").write_bytes(pickle.dumps(out))


def codec():
    from omnikit.components.codecs.mel_vq import MelVQCodec, MelVQConfig

    return MelVQCodec(MelVQConfig(sample_rate=16000, codebook_size=1024, vocoder="griffin_lim"))


def part_codec() -> None:
    d = pickle.loads((WORK / "data.pkl").read_bytes())
    c = codec()
    c.fit_from_data(torch.from_numpy(w) for w in d["train"][1])
    torch.save(c.state_dict(), WORK / "codec.pt")
    feats = {split: [{"text": t, "vec": c.token_vectors(torch.from_numpy(w)[None])[0],
                      "tok": c.encode(torch.from_numpy(w)[None])[0]} for t, w in zip(*d[split], strict=True)]
             for split in ("train", "dev")}
    torch.save({"feats": feats, "mean": c.feat_mean, "std": c.feat_std}, WORK / "feats.pt")


def load_codec():
    c = codec()
    c.load_state_dict(torch.load(WORK / "codec.pt"), strict=False)
    return c


def part_ceiling() -> dict:
    from omnikit.evaluation.text_metrics import wer
    from omnikit.evaluation.whisper_judge import transcribe

    texts, wavs = pickle.loads((WORK / "data.pkl").read_bytes())["dev"]
    c = load_codec()
    src = [transcribe(w, 16000) for w in wavs]
    res = [transcribe(c.decode(c.encode(torch.from_numpy(w)[None]))[0].numpy(), 16000) for w in wavs]
    return {"part": "ceiling", "wer_source": round(wer(texts, src), 4), "wer_codec_griffin_lim": round(wer(texts, res), 4)}


def part_align() -> dict:
    from omnikit.components.speech_decoders.frontends import FittedPrior, phonemes, prior_durations, text_symbols
    from omnikit.evaluation.whisper_judge import _model

    texts, wavs = pickle.loads((WORK / "data.pkl").read_bytes())["dev"]
    feats = torch.load(WORK / "feats.pt")["feats"]
    ref = []
    for w in wavs:
        segs, _ = _model().transcribe(w, language="en", beam_size=1, word_timestamps=True,
                                      condition_on_previous_text=False)
        ref.append([float(x.start) for s in segs for x in s.words])
    res: dict = {"part": "align", "what": "|prior word start - Whisper word start| over dev words after the first"}
    for fe in ("phonemes", "chars"):
        prior = FittedPrior(fe)
        for it in feats["train"]:
            ids, _ = text_symbols(it["text"], fe)
            prior.update(ids[None], torch.tensor([len(ids)]), torch.tensor([len(it["tok"])]))
        for kind in ("flat", "fitted"):
            errs = []
            for t, it, r in zip(texts, feats["dev"], ref, strict=True):
                ids, w = text_symbols(t, fe)
                if kind == "fitted":
                    w = prior(ids) * (w > 0)
                dur = prior_durations(w[None], torch.tensor([len(ids)]), torch.tensor([len(it["tok"])]))[0]
                seq = phonemes(t) if fe == "phonemes" else t.lower()
                starts = [0] + [i + 1 for i, ch in enumerate(seq) if ch == " "]
                if len(starts) != len(r):
                    continue
                cum = torch.cumsum(dur, 0) - dur
                errs += [abs(float(cum[s]) * 0.025 - rt) for s, rt in zip(starts[1:], r[1:], strict=True)]
            res[f"{fe}_{kind}"] = {"mean_ms": round(1000 * float(np.mean(errs)), 1),
                                   "median_ms": round(1000 * float(np.median(errs)), 1), "words": len(errs)}
    return res


def part_train(a: argparse.Namespace) -> dict:
    from omnikit.components.speech_decoders.nar_duration import NARDurationConfig, NARDurationSpeechDecoder
    from omnikit.evaluation.text_metrics import wer
    from omnikit.evaluation.whisper_judge import transcribe

    cfg_args = json.loads(a.args)
    data = torch.load(WORK / "feats.pt")
    mean, std = data["mean"], data["std"]
    train, dev = data["feats"]["train"], data["feats"]["dev"][: a.eval_n]
    for it in train + dev:
        it["f"] = (it["vec"] - mean) / std
    torch.manual_seed(0)
    random.seed(0)
    model = NARDurationSpeechDecoder(NARDurationConfig(**cfg_args), cond_dim=576, codebook_size=1024)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98))
    order = sorted(range(len(train)), key=lambda i: len(train[i]["tok"]))
    batches, cur = [], []
    for i in order:  # length-sorted batches of at most batch_frames padded frames
        if cur and (len(cur) + 1) * len(train[i]["tok"]) > a.batch_frames:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)

    def collate(idx):
        items = [train[i] for i in idx]
        t = max(len(x["tok"]) for x in items)
        tok = torch.zeros(len(items), t, dtype=torch.long)
        f = torch.zeros(len(items), t, mean.numel())
        for k, x in enumerate(items):
            tok[k, : len(x["tok"])] = x["tok"]
            f[k, : len(x["tok"])] = x["f"]
        return [x["text"] for x in items], tok, torch.tensor([len(x["tok"]) for x in items]), f

    budget, c0, w0, step, log = a.cpu_minutes * 60, time.process_time(), time.time(), 0, []
    load0 = os.getloadavg()
    model.train()
    while time.process_time() - c0 < budget:
        random.shuffle(batches)
        for bidx in batches:
            used = time.process_time() - c0
            if used >= budget:
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * used / budget)))
            for g in opt.param_groups:
                g["lr"] = lr
            texts, tok, lens, f = collate(bidx)
            out = model(None, None, None, None, tok, lens, texts=texts, token_features=f)
            opt.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            if step % 20 == 0:
                log.append({k: round(float(v), 4) for k, v in out.items() if k != "durations" and v.dim() == 0}
                           | {"step": step, "cpu_s": round(time.process_time() - c0, 1)})
    cpu_s, wall_s, load1 = time.process_time() - c0, time.time() - w0, os.getloadavg()
    model.eval()
    c = load_codec()

    def judge(items):
        refs, hyps, n_pred = [], [], 0
        with torch.no_grad():
            for it in items:
                toks = torch.cat(list(model.generate(torch.zeros(1, 1, 576), None, text=it["text"], codec=c)))
                n_pred += toks.numel()
                refs.append(it["text"])
                hyps.append(transcribe(c.decode(toks[None])[0].numpy(), 16000))
        return wer(refs, hyps), list(zip(refs[:3], hyps[:3], strict=True)), n_pred

    w, ex, n_pred = judge(dev)
    w_train, ex_train, _ = judge(train[:20])
    return {"part": "train", "name": a.name, "args": cfg_args, "params": sum(p.numel() for p in model.parameters()),
            "steps": step, "cpu_s": round(cpu_s, 1), "wall_s": round(wall_s, 1), "batch_frames": a.batch_frames,
            "lr": a.lr, "load_average_before": [round(x, 2) for x in load0],
            "load_average_after": [round(x, 2) for x in load1], "wer_dev": round(w, 4),
            "wer_train20": round(w_train, 4), "dev_length_ratio": round(n_pred / sum(len(x["tok"]) for x in dev), 3),
            "log": log[-3:], "examples_dev": ex, "examples_train": ex_train}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["data", "codec", "ceiling", "align", "train"], required=True)
    ap.add_argument("--name", default="run")
    ap.add_argument("--cpu-minutes", dest="cpu_minutes", type=float, default=5.0)
    ap.add_argument("--batch-frames", dest="batch_frames", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--eval-n", dest="eval_n", type=int, default=60)
    ap.add_argument("--args", default="{}")
    a = ap.parse_args()
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    if a.part == "data":
        return part_data()
    if a.part == "codec":
        return part_codec()
    row = {"ceiling": part_ceiling, "align": part_align}.get(a.part, lambda: part_train(a))()
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps(rows + [row], indent=1) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
