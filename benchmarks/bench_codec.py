"""Benchmark the ``mel_vq`` codec on hibari speech: codebook usage, ASR-judge WER, decode speed, streaming.

    python benchmarks/bench_codec.py [--train 150 --test 20 --train-seconds 180]

Synthesises sentences (WordNet example sentences when Debian ``wordnet-base`` is installed, else a built-in
list) with hibari-tts (voice ``heart``, 24 kHz), resamples to 16 kHz, fits the k-means codebook, trains the
learned decoder for ``--train-seconds`` on CPU, scores held-out audio with pocketsphinx and writes
``benchmarks/results/codec_mel_vq.json``. The fitted codec goes to ``$OMNIKIT_CACHE/codec_mel_vq.safetensors``
(default ``~/.cache/omnikit``), never into git.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

from omnikit.components.codecs.mel_vq import MelVQCodec, MelVQConfig
from omnikit.components.codecs.streaming import log_mel_distance
from omnikit.data.tts.hibari import synthesize
from omnikit.evaluation.asr_judge import transcribe, wer
from omnikit.evaluation.machine import machine_info

RESULTS = Path(__file__).parent / "results" / "codec_mel_vq.json"
FALLBACK_SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring your umbrella tomorrow morning.",
    "The capital of France is Paris, a city on the river Seine.",
    "Water boils at one hundred degrees at sea level.",
    "She walked to the library to return three overdue books.",
    "Our train leaves the station at half past seven.",
]


def cache_dir() -> Path:
    d = Path(os.environ.get("OMNIKIT_CACHE", Path.home() / ".cache" / "omnikit"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def judge_vocabulary() -> set[str] | None:
    """Words in pocketsphinx's bundled pronunciation dictionary (so the judge can recognise every word)."""
    try:
        import pocketsphinx

        path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
        return {line.split(" ", 1)[0].split("(")[0] for line in path.read_text().splitlines() if line}
    except (ImportError, OSError):
        return None


def wordnet_sentences(n: int, seed: int) -> list[str]:
    """Example sentences quoted in WordNet glosses, 6-14 plain words all known to the judge's dictionary."""
    vocab = judge_vocabulary()
    out: set[str] = set()
    for name in ("data.noun", "data.verb", "data.adj"):
        p = Path("/usr/share/wordnet") / name
        if not p.exists():
            continue
        for line in p.read_text(errors="ignore").splitlines():
            for q in re.findall(r'"([^"]+)"', line):
                q = q.strip().rstrip(".;,")
                words = q.split()
                known = vocab is None or all(w.strip(",").lower() in vocab for w in words)
                if 6 <= len(words) <= 14 and re.fullmatch(r"[A-Za-z ,']+", q) and known:
                    out.add(q[0].upper() + q[1:] + ".")
    sents = sorted(out)
    random.Random(seed).shuffle(sents)
    if len(sents) < n:
        sents += FALLBACK_SENTENCES * (1 + n // len(FALLBACK_SENTENCES))
    return sents[:n]


def load_corpus(n: int, seed: int, rate: int) -> list[tuple[str, torch.Tensor]]:
    path = cache_dir() / f"hibari_heart_cmudict_{n}_{seed}_{rate}.pt"
    if path.exists():
        return torch.load(path)
    corpus = []
    for i, text in enumerate(wordnet_sentences(n, seed)):
        wav, sr = synthesize(text, seed=i)
        corpus.append((text, torchaudio.functional.resample(torch.from_numpy(wav), sr, rate)))
    torch.save(corpus, path)
    return corpus


def usage(tokens: torch.Tensor, k: int) -> dict:
    counts = torch.bincount(tokens.reshape(-1), minlength=k).double()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"codes_used_fraction": float((counts > 0).float().mean()), "perplexity": float(ent.exp())}


def train_decoder(codec: MelVQCodec, wavs: list[torch.Tensor], seconds: float, batch: int, crop: int) -> dict:
    """AdamW with cosine decay on random ``crop``-token windows of precomputed decoder targets."""
    targets = [codec.decoder_targets(w[None]) for w in wavs]
    fpt = codec.config.frames_per_token
    opt = torch.optim.AdamW(codec.decoder.parameters(), lr=2e-3, weight_decay=1e-4)
    rng = random.Random(0)
    t0, step, first, last = time.perf_counter(), 0, None, None
    codec.train()
    while time.perf_counter() - t0 < seconds:
        frac = (time.perf_counter() - t0) / seconds
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        parts: dict[str, list[torch.Tensor]] = {"tokens": [], "log_mel": []}
        for _ in range(batch):
            tg = targets[rng.randrange(len(targets))]
            n = tg["tokens"].shape[1]
            s = rng.randrange(max(1, n - crop + 1))
            if n < crop:  # short utterance: repeat it (rare; sentences are longer than a crop)
                tg = {k: torch.cat([v] * (crop // n + 1), dim=1 if k != "log_mel" else 2) for k, v in tg.items()}
            parts["tokens"].append(tg["tokens"][0, s : s + crop])
            parts["log_mel"].append(tg["log_mel"][0, :, s * fpt : (s + crop) * fpt])
        out = codec.decoder_loss(**{k: torch.stack(v) for k, v in parts.items()})
        logged = {k: float(v.detach()) for k, v in out.items()}
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(codec.decoder.parameters(), 1.0)
        opt.step()
        step += 1
        first = first if first is not None else logged
        last = logged
    codec.eval()
    return {"steps": step, "seconds": time.perf_counter() - t0, "batch": batch, "crop_tokens": crop,
            "first": first, "last": last}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--train-seconds", type=float, default=180.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = MelVQConfig()
    result: dict = {"machine": machine_info(torchaudio=torchaudio.__version__), "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}

    t = time.perf_counter()
    corpus = load_corpus(args.train + args.test, args.seed, cfg.sample_rate)
    train, test = corpus[: args.train], corpus[args.train :]
    train_wavs = [w for _, w in train]
    result["data"] = {
        "voice": "hibari heart, resampled 24 kHz -> 16 kHz",
        "train_sentences": len(train),
        "train_audio_s": sum(w.numel() for w in train_wavs) / cfg.sample_rate,
        "test_sentences": len(test),
        "test_audio_s": sum(w.numel() for _, w in test) / cfg.sample_rate,
        "prepare_s": time.perf_counter() - t,
    }

    codec = MelVQCodec(cfg)
    t = time.perf_counter()
    before = float(torch.stack([codec.quantisation_error(w) for w in train_wavs[:20]]).mean())
    codec.fit_from_data(train_wavs)
    fit_s = time.perf_counter() - t
    after = float(torch.stack([codec.quantisation_error(w) for w in train_wavs[:20]]).mean())
    n_vec = sum(math.ceil(w.numel() / codec.samples_per_token) for w in train_wavs)
    test_tokens = [codec.encode(w[None])[0] for _, w in test]
    result["kmeans"] = {
        "vectors": n_vec,
        "fit_s": fit_s,
        "quantisation_mse_random_codebook": before,
        "quantisation_mse_fitted": after,
        "train_usage": usage(torch.cat([codec.encode(w[None])[0] for w in train_wavs]), codec.codebook_size),
        "test_usage": usage(torch.cat(test_tokens), codec.codebook_size),
    }
    print(json.dumps(result["kmeans"], indent=1), flush=True)

    result["learned_decoder_training"] = train_decoder(codec, train_wavs, args.train_seconds, 16, 80)
    print(json.dumps(result["learned_decoder_training"], indent=1), flush=True)
    path = cache_dir() / "codec_mel_vq.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(path))
    result["weights"] = str(path)

    systems: dict[str, list[torch.Tensor]] = {"source": [], "mel_griffin_lim": [], "mel_vq_griffin_lim": [],
                                              "mel_vq_learned": []}
    decode_time = {"mel_vq_griffin_lim": 0.0, "mel_vq_learned": 0.0}
    with torch.no_grad():
        for (_, w), tok in zip(test, test_tokens, strict=True):
            n = w.numel()
            systems["source"].append(w)
            systems["mel_griffin_lim"].append(codec.decode_log_mel(codec.log_mel(w[None]))[0, :n])
            for name, voc in (("mel_vq_griffin_lim", "griffin_lim"), ("mel_vq_learned", "learned")):
                codec.config.vocoder = voc
                t = time.perf_counter()
                y = codec.decode(tok[None])[0, :n]
                decode_time[name] += time.perf_counter() - t
                systems[name].append(y)
    refs = [text for text, _ in test]
    result["wer"] = {}
    result["transcripts"] = {}
    for name, wavs in systems.items():
        hyps = [transcribe(y) for y in wavs]
        result["wer"][name] = wer(refs, hyps)
        result["transcripts"][name] = hyps[:3]
    result["transcripts"]["reference"] = refs[:3]
    print(json.dumps(result["wer"], indent=1), flush=True)
    audio_s = result["data"]["test_audio_s"]
    result["decode_rtf"] = {k: v / audio_s for k, v in decode_time.items()}

    stream: dict = {}
    for voc in ("griffin_lim", "learned"):
        codec.config.vocoder = voc
        first_times, dists, source_dists = [], [], []
        for tok, (_, w) in zip(test_tokens, test, strict=True):
            offline = codec.decode(tok[None])[0]
            dec = codec.streaming_decoder()
            pieces, first_s, t0 = [], None, time.perf_counter()
            for i in range(tok.numel()):
                out = dec.push(tok[i : i + 1])
                if out.numel():
                    first_s = first_s if first_s is not None else time.perf_counter() - t0
                    pieces.append(out)
            pieces.append(dec.flush())
            streamed = torch.cat(pieces)
            if first_s is not None:
                first_times.append(first_s)
            dists.append(log_mel_distance(streamed, offline, cfg.sample_rate))
            source_dists.append(log_mel_distance(offline[: w.numel()], w, cfg.sample_rate))
        stream[voc] = {
            "time_to_first_pcm_s_compute_only_median": float(np.median(first_times)),
            "time_to_first_pcm_s_compute_only_max": float(np.max(first_times)),
            "first_chunk_audio_s": 20 / codec.frame_rate,
            "tokens_needed_for_first_pcm": 20 + 10,
            "log_mel_l1_stream_vs_offline_mean": float(np.mean(dists)),
            "log_mel_l1_stream_vs_offline_max": float(np.max(dists)),
            "log_mel_l1_offline_vs_source_mean": float(np.mean(source_dists)),
        }
    result["streaming"] = stream
    codec.config.vocoder = "griffin_lim"
    result["command"] = "python benchmarks/bench_codec.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({k: result[k] for k in ("wer", "decode_rtf", "streaming")}, indent=1))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
