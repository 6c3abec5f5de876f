"""The served web page in a real browser: headless Chromium (Debian's ``chromium``) with a fake microphone that
plays a wav file. The page connects, streams the microphone through its AudioWorklet at 16 kHz, and must show the
server's RESPOND decision and receive and schedule the answer's audio. Skipped when chromium is not installed
(``apt-get install -y chromium``; ``bash scripts/install.sh --test`` does it).

Set ``OMNIKIT_SCREENSHOT=path.png`` to keep a screenshot of the page (docs/assets/serve_page.png comes from here).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _chromium import Chromium, find_chromium, serving

from omnikit.serving.app import create_app

pytestmark = [pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed"),
              pytest.mark.timeout(300)]
SUMMARY = """JSON.stringify({state: omnikit.state, decisions: omnikit.decisions, audioFrames: omnikit.audioFrames,
  micFrames: omnikit.micFrames, micError: omnikit.micError, closed: omnikit.closed, errors: omnikit.errors,
  answers: omnikit.answers, log: document.getElementById('log').innerText,
  table: document.getElementById('turns').innerText})"""


def microphone_wav(path: Path, rate: int = 48_000) -> Path:
    """Half a second of silence, one second of a loud noise-modulated tone (speech to the energy VAD), then
    silence; Chromium loops it."""
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, np.concatenate([np.zeros(rate // 2), tone, np.zeros(3 * rate)]).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def test_the_page_hears_the_microphone_and_plays_the_answer(serve_model, tmp_path):
    wav = microphone_wav(tmp_path / "mic.wav")
    with serving(create_app(serve_model)) as port:
        browser = Chromium(f"http://127.0.0.1:{port}/?autostart=1&raw=1", tmp_path / "profile", [
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"])
        try:
            deadline, page = time.time() + 120, None
            while time.time() < deadline:
                raw = browser.evaluate(SUMMARY)
                page = json.loads(raw) if raw else None
                if page and (page["closed"] or (page["decisions"] and page["audioFrames"] and any(
                        a.get("latency") for a in page["answers"].values()))):
                    break
                time.sleep(0.25)
            if os.environ.get("OMNIKIT_SCREENSHOT"):
                shot = browser.call("Page.captureScreenshot", format="png")
                Path(os.environ["OMNIKIT_SCREENSHOT"]).write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    assert page is not None, "the page never ran its script"
    assert page["micError"] is None and page["micFrames"] > 0, page
    assert page["closed"] is None and not page["errors"], page
    assert page["decisions"] and page["decisions"][0]["decision"] == "respond", page
    assert "decision: respond" in page["log"]  # shown on the page
    assert page["audioFrames"] > 0, "no answer audio reached the page"
    answer = page["answers"]["1"]
    assert answer["playedMs"] is not None and answer["playedMs"] > 0  # scheduled for playback
    assert answer["latency"]["decision_to_first_audio_sent_ms"] > 0
    assert " ms" in page["table"]  # the turn's latency is on screen
