"""Speech tracker on a scripted VAD: pre-roll on START, END only after min silence, hysteresis, padding."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from omnikit.components.vads.vad_tracker import SpeechEventKind as K
from omnikit.components.vads.vad_tracker import SpeechTracker, SpeechTrackerConfig

CHUNK = 2560


@dataclass
class ScriptedVAD:
    """Speech probability = the window's first sample, so the test audio spells out the probabilities."""

    sample_rate: int = 16000
    window: int = 512
    threshold: float = 0.8

    def init_state(self) -> int:
        return 0

    def speech_prob(self, pcm: torch.Tensor, state: int) -> tuple[float, int]:
        return float(pcm[0]), state + 1


def chunk(prob: float) -> torch.Tensor:
    return torch.full((CHUNK,), prob)


def run(tracker: SpeechTracker, probs: list[float], state=None):
    state = state or tracker.init_state()
    out = []
    for p in probs:
        events, state = tracker.push(chunk(p), state)
        out.append(events)
    return out, state


def kinds(out) -> list[str]:
    return ["+".join(e.kind.value for e in events) for events in out]


def test_start_carries_the_pre_roll_chunks_oldest_first():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig(pre_roll_chunks=6))
    silence = [0.01 * i for i in range(1, 9)]  # 8 distinguishable silent chunks
    out, _ = run(tracker, [*silence, 0.9, 0.95])
    assert kinds(out) == ["silence"] * 8 + ["start", "continue"]
    start = out[8][0]
    assert [round(float(c[0]), 2) for c in start.chunks] == [0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.9]
    assert start.is_speech and start.probs == pytest.approx([0.9] * 5)
    assert start.sample == 8 * CHUNK - 480  # 30 ms pad before the first speech window
    assert [float(c[0]) for c in out[9][0].chunks] == pytest.approx([0.95])
    assert out[0][0].chunks == [] and not out[0][0].is_speech


def test_end_fires_only_after_min_silence():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig(min_silence_ms=2000))
    out, _ = run(tracker, [0.9] * 3 + [0.0] * 16)
    # 2000 ms = 62.5 windows -> the 63rd silent window, in the 13th silent chunk (index 3 + 12)
    assert kinds(out)[3:15] == ["continue"] * 12
    end = out[15][0]
    assert end.kind is K.END and end.chunks == [] and end.sample == 3 * CHUNK + 480
    assert kinds(out)[16:] == ["silence"] * 3


def test_pause_shorter_than_min_silence_keeps_the_segment_open():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig(min_silence_ms=1000))
    out, _ = run(tracker, [0.9] + [0.0] * 5 + [0.9] + [0.0] * 7)
    assert kinds(out)[:7] == ["start"] + ["continue"] * 6
    assert kinds(out)[-1] == "end"  # 1000 ms = 31.25 -> 32 windows = 6.4 chunks after the second burst
    assert K.END.value not in kinds(out)[:-1]


def test_hysteresis_band_is_not_silence():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig(min_silence_ms=320))
    out, _ = run(tracker, [0.9] + [0.7] * 6 + [0.5] * 3)  # 0.7 is in [0.65, 0.8): neither speech nor silence
    assert kinds(out)[:7] == ["start"] + ["continue"] * 6
    assert not any(e.is_speech for events in out[1:7] for e in events)
    assert kinds(out)[8] == "end"  # 320 ms = 10 windows of real silence = 2 chunks


def test_end_turn_rearms_start_without_stale_pre_roll():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig())
    out, state = run(tracker, [0.1, 0.2, 0.9, 0.9])
    assert len(out[2][0].chunks) == 3
    tracker.end_turn(state)
    out, state = run(tracker, [0.9], state)
    assert kinds(out) == ["start"] and [float(c[0]) for c in out[0][0].chunks] == pytest.approx([0.9])


def test_chunks_not_a_multiple_of_the_window_are_buffered():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig())
    state = tracker.init_state()
    n_probs = 0
    for _ in range(10):
        events, state = tracker.push(torch.full((1000,), 0.1), state)
        n_probs += len(events[0].probs)
    assert n_probs == 10_000 // 512 and state.pending.numel() == 10_000 % 512
    assert state.vad_state == n_probs


def test_threshold_override_and_start_end_in_one_chunk():
    tracker = SpeechTracker(ScriptedVAD(), SpeechTrackerConfig(threshold=0.3, min_silence_ms=64))
    assert tracker.threshold == 0.3
    state = tracker.init_state()
    pcm = torch.cat([torch.full((512,), 0.4), torch.zeros(2048)])
    events, state = tracker.push(pcm, state)
    assert [e.kind for e in events] == [K.START, K.END]
    assert not state.triggered
