"""Intelligibility of a run's trained codec on held-out assistant-voice audio: source vs. resynthesis.

    python benchmarks/bench_codec_run.py runs/quickstart [--limit 60]

Loads the codec that stage ``output_1_codec`` trained (k-means codebook + learned decoder), takes the held-out
``tts_dev`` cuts of the run's speech world (hibari ``heart``, never seen by the codec stage), and scores with
the pocketsphinx judge: the source audio, unquantised log-mel + Griffin-Lim, codec tokens + Griffin-Lim, and
codec tokens + the learned decoder. Writes ``benchmarks/results/codec_run_<recipe>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchaudio
from omegaconf import OmegaConf
from tqdm import tqdm

from omnikit.data.sources import open_source
from omnikit.evaluation.asr_judge import transcribe, word_errors
from omnikit.evaluation.machine import machine_info
from omnikit.model.build import build_model
from omnikit.model.checkpoints import merged_weights

STAGE = "output_1_codec"


def load_codec(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    cfg = OmegaConf.load(run_dir / "recipe.yaml")
    only = OmegaConf.create({"model": {"codec": OmegaConf.to_container(cfg.model.codec, resolve=True)}})
    slots = build_model(only)
    weights = {k: v for k, v in merged_weights(run_dir, [STAGE]).items() if k.startswith("codec.")}
    if not weights:
        raise SystemExit(f"{run_dir}: stage {STAGE} has no finished weights")
    slots.load_state_dict(weights, strict=False)
    return slots["codec"].eval(), cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--limit", type=int, default=60, help="held-out tts_dev cuts to score")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec, cfg = load_codec(args.run_dir)
    plugin, root = open_source(cfg, args.run_dir, "world")
    cuts = sorted(plugin.cuts("tts_dev", root), key=lambda c: c.id)[: args.limit]

    systems = ("source", "mel_griffin_lim", "codec_griffin_lim", "codec_learned")
    errors = {s: [0, 0] for s in systems}
    examples: dict[str, list[str]] = {s: [] for s in ("reference", *systems)}
    audio_s, decode_s = 0.0, {"codec_griffin_lim": 0.0, "codec_learned": 0.0}
    vocoder = codec.config.vocoder
    for cut in tqdm(cuts, desc="codec resynthesis + judge"):
        wav = torch.from_numpy(cut.load_audio()).float().reshape(-1)
        wav = torchaudio.functional.resample(wav, cut.sampling_rate, codec.sample_rate)
        n = wav.numel()
        audio_s += n / codec.sample_rate
        ref = cut.supervisions[0].text
        with torch.no_grad():
            outs = {"source": wav, "mel_griffin_lim": codec.decode_log_mel(codec.log_mel(wav[None]))[0, :n]}
            tokens = codec.encode(wav[None])
            for name, voc in (("codec_griffin_lim", "griffin_lim"), ("codec_learned", "learned")):
                codec.config.vocoder = voc
                t = time.perf_counter()
                outs[name] = codec.decode(tokens)[0, :n]
                decode_s[name] += time.perf_counter() - t
        codec.config.vocoder = vocoder
        examples["reference"].append(ref)
        for name, y in outs.items():
            hyp = transcribe(y)
            e, w = word_errors(ref, hyp)
            errors[name][0] += e
            errors[name][1] += w
            examples[name].append(hyp)

    result = {
        "benchmark": "codec_run",
        "command": f"python benchmarks/bench_codec_run.py {args.run_dir} --limit {args.limit} --threads {args.threads}",
        "machine": machine_info(),
        "run_dir": str(args.run_dir),
        "recipe": str(cfg.get("name")),
        "codec": {"name": str(cfg.model.codec.name), "args": OmegaConf.to_container(cfg.model.codec.get("args") or {})},
        "data": {"part": "tts_dev (held out from the codec stage)", "cuts": len(cuts), "audio_s": round(audio_s, 1),
                 "words": errors["source"][1]},
        "wer": {name: e / max(w, 1) for name, (e, w) in errors.items()},
        "decode_rtf": {k: v / max(audio_s, 1e-9) for k, v in decode_s.items()},
        "examples": {k: v[:4] for k, v in examples.items()},
    }
    out = args.out or Path(__file__).parent / "results" / f"codec_run_{result['recipe']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("data", "wer", "decode_rtf")}, indent=1))


if __name__ == "__main__":
    main()
