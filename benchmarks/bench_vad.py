"""VAD throughput: milliseconds of CPU per 160 ms input chunk for each VAD, alone and through the tracker.

Writes benchmarks/results/vad.json. Run: ``python benchmarks/bench_vad.py [--seconds 20] [--threads 1]``.
The audio is synthetic (noise bursts and silence); the speed of both VADs does not depend on the content.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from omnikit.components.duplex.state_head import StateHeadPolicy, StateHeadPolicyConfig
from omnikit.components.vads.energy import EnergyVAD, EnergyVADConfig
from omnikit.components.vads.silero import SileroVAD, SileroVADConfig
from omnikit.components.vads.vad_tracker import SpeechTracker, SpeechTrackerConfig
from omnikit.evaluation.machine import machine_info
from omnikit.inference.state_machine import DialogueStateMachine

CHUNK = 2560
RESULTS = Path(__file__).parent / "results" / "vad.json"


def test_audio(seconds: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    n_chunks = int(seconds * 16000) // CHUNK
    loud = (torch.arange(n_chunks) // 10) % 2 == 0  # 1.6 s bursts and 1.6 s silences
    chunks = [(0.3 if on else 0.001) * torch.randn(CHUNK, generator=g) for on in loud]
    return torch.cat(chunks)


def time_vad(vad, audio: torch.Tensor) -> dict:
    state, t0 = vad.init_state(), time.perf_counter()
    n = audio.numel() // vad.window
    for i in range(n):
        _, state = vad.speech_prob(audio[i * vad.window : (i + 1) * vad.window], state)
    elapsed = time.perf_counter() - t0
    return {
        "windows": n,
        "ms_per_window": 1000 * elapsed / n,
        "ms_per_160ms_chunk": 1000 * elapsed / n * CHUNK / vad.window,
        "real_time_factor": elapsed / (audio.numel() / 16000),
    }


def time_pipeline(vad, audio: torch.Tensor) -> dict:
    """Tracker + state_head policy (no probabilities: VAD-only time-out) + state machine, per chunk."""
    tracker, policy = SpeechTracker(vad, SpeechTrackerConfig()), StateHeadPolicy(StateHeadPolicyConfig())
    sm = DialogueStateMachine()
    tstate, pstate = tracker.init_state(), policy.init_state()
    n = audio.numel() // CHUNK
    t0 = time.perf_counter()
    for i in range(n):
        events, tstate = tracker.push(audio[i * CHUNK : (i + 1) * CHUNK], tstate)
        for e in events:
            if e.kind.value == "start":
                sm.speech_start()
        if sm.fork_open:
            sm.decide(
                policy.on_chunk(pstate, is_speech=events[-1].is_speech, state_probs=None, chunk_ms=160.0)
            )
    elapsed = time.perf_counter() - t0
    return {"chunks": n, "ms_per_160ms_chunk": 1000 * elapsed / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    audio = test_audio(args.seconds)
    vads = {"silero": SileroVAD(SileroVADConfig()), "energy": EnergyVAD(EnergyVADConfig())}
    for vad in vads.values():  # warm-up (TorchScript profiling runs)
        time_vad(vad, audio[: 20 * 512])
    result = {
        "machine": machine_info(),
        "audio_seconds": audio.numel() / 16000,
        "vad": {name: time_vad(vad, audio) for name, vad in vads.items()},
        "tracker_policy_state_machine": {name: time_pipeline(vad, audio) for name, vad in vads.items()},
        "command": f"python benchmarks/bench_vad.py --seconds {args.seconds:g} --threads {args.threads}",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
