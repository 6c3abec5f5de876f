"""Silero VAD (the VAD of the Freeze-Omni server, spec §6.3) with its recurrent state held by the caller.

The ``silero-vad`` package ships a TorchScript model (``silero_vad/data/silero_vad.jit``). Its public
``forward(x, sr)`` keeps the LSTM state and a 64-sample audio context as *attributes of the model*, so one
model could serve only one stream. The scripted model wraps a pure inner network, ``_model`` (16 kHz) or
``_model_8k`` (8 kHz), whose ``forward(context + window, state) -> (prob, new_state)`` keeps nothing. This
component calls that inner network with a :class:`SileroState` owned by the caller, so one loaded model serves
any number of streams; the probabilities equal those of the package's stateful call bit for bit (tested).

The weights are read from the installed package files; nothing is downloaded. The package's Python
``__init__`` is deliberately not imported: it calls ``torch.set_num_threads(1)`` for the whole process and
pulls in ``read_audio`` (torchaudio backends). Audio I/O elsewhere in omnikit uses soundfile.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from omnikit.registry import param

NATIVE_WINDOW = {16000: 512, 8000: 256}
"""Samples per model call at each supported rate (32 ms)."""
CONTEXT = {16000: 64, 8000: 32}
"""Samples of the previous window prepended to each call."""
RNN_STATE_SHAPE = (2, 1, 128)
"""LSTM (h, c) of the scripted model for one stream."""


@dataclass
class SileroVADConfig:
    sample_rate: int = param(16000, "Audio rate (Hz): 16000 or 8000.")
    window: int = param(
        512,
        "Samples per decision: a multiple of the native window (512 at 16 kHz, 256 at 8 kHz). A longer "
        "window is scored as consecutive native windows and reports their maximum.",
    )
    threshold: float = param(0.8, "Speech when the probability is at least this (Freeze-Omni server: 0.8).")
    model_path: str | None = param(
        None, "TorchScript file; None: the silero_vad.jit shipped inside the installed silero-vad package."
    )


@dataclass
class SileroState:
    """Per-stream state: the last ``CONTEXT`` samples seen and the LSTM state ``(2, 1, 128)``."""

    context: Tensor
    rnn: Tensor


def packaged_model_path() -> Path:
    """Path of ``silero_vad.jit`` inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero VAD needs the 'silero-vad' package: pip install 'silero-vad>=5.1'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise FileNotFoundError(f"the installed silero-vad package has no {path}")
    return path


@functools.lru_cache(maxsize=4)
def _load_scripted(path: str) -> torch.jit.ScriptModule:
    """Load once per process: the model is read-only here, so all instances and streams share it."""
    with warnings.catch_warnings():  # torch >= 2.9 deprecates jit.load; the package ships only this format
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(path, map_location="cpu")
    model.eval()
    return model


class SileroVAD:
    """Silero neural VAD (offline weights from the silero-vad package); caller-owned streaming state."""

    config_class = SileroVADConfig

    def __init__(self, config: SileroVADConfig):
        if config.sample_rate not in NATIVE_WINDOW:
            raise ValueError(f"silero VAD: sample_rate must be 16000 or 8000, got {config.sample_rate}")
        native = NATIVE_WINDOW[config.sample_rate]
        if config.window <= 0 or config.window % native:
            raise ValueError(
                f"silero VAD: window must be a positive multiple of {native} samples at "
                f"{config.sample_rate} Hz, got {config.window}"
            )
        self.config = config
        self.sample_rate = config.sample_rate
        self.window = config.window
        self.threshold = config.threshold
        self._native = native
        self._context = CONTEXT[config.sample_rate]
        path = config.model_path or str(packaged_model_path())
        scripted = _load_scripted(str(path))
        self._net = scripted._model if config.sample_rate == 16000 else scripted._model_8k

    def init_state(self) -> SileroState:
        return SileroState(torch.zeros(1, self._context), torch.zeros(RNN_STATE_SHAPE))

    @torch.inference_mode()
    def speech_prob(self, pcm: Tensor, state: SileroState) -> tuple[float, SileroState]:
        """Probability that ``pcm`` (``window`` float samples in [-1, 1]) holds speech, and the next state."""
        pcm = pcm.detach().to("cpu", torch.float32).reshape(1, -1)
        if pcm.shape[1] != self.window:
            raise ValueError(f"silero VAD: expected {self.window} samples, got {pcm.shape[1]}")
        context, rnn, best = state.context, state.rnn, 0.0
        for start in range(0, self.window, self._native):
            x = torch.cat([context, pcm[:, start : start + self._native]], dim=1)
            out, rnn = self._net(x, rnn)
            context = x[:, -self._context :]
            best = max(best, float(out))
        return best, SileroState(context, rnn)
