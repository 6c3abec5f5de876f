"""A third-party codec written only against omnikit's public API passes the conformance kit, and once registered
under a distribution of its own it is built from a recipe's model mapping like any built-in."""

from __future__ import annotations

import ast
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

from omnikit.interfaces import Codec
from omnikit.model.build import build_model
from omnikit.registry import get_registry
from omnikit.testing import check_codec

PUBLIC = {"omnikit.interfaces", "omnikit.registry", "omnikit.testing", "omnikit.audio"}
"""What a plugin may import from omnikit here: the contracts, ``param`` for its config, the kit, audio helpers."""

ACME_CODEC = '''
"""acme-codecs: a block mu-law codec (one token per block of samples: the mu-law level of the block's projection
on a learned waveform shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from omnikit.registry import param


@dataclass
class BlockMuLawConfig:
    sample_rate: int = param(8000, "Audio rate (Hz).")
    hop: int = param(4, "Samples per token.")
    levels: int = param(64, "Mu-law levels: the codebook size.")


class BlockStream:
    """Streaming decoder: holds the tokens of an unfinished chunk; no context needed (decoding is per token)."""

    def __init__(self, codec: BlockMuLawCodec, first_chunk: int, chunk: int) -> None:
        self.codec, self.first_chunk, self.chunk = codec, first_chunk, chunk
        self.pending: list[int] = []
        self.started = False

    def push(self, tokens: Tensor) -> Tensor:
        self.pending += [int(t) for t in tokens.reshape(-1)]
        out = []
        while len(self.pending) >= (size := self.chunk if self.started else self.first_chunk):
            out.append(self.codec.decode(torch.tensor([self.pending[:size]]))[0])
            self.pending, self.started = self.pending[size:], True
        return torch.cat(out) if out else torch.zeros(0)

    def flush(self) -> Tensor:
        out = self.codec.decode(torch.tensor([self.pending]))[0] if self.pending else torch.zeros(0)
        self.pending, self.started = [], False
        return out


class BlockMuLawCodec(nn.Module):
    """Block mu-law codec: one token per `hop` samples, decoded as a learned waveform shape times its level."""

    config_class = BlockMuLawConfig

    def __init__(self, config: BlockMuLawConfig, **context: object) -> None:
        super().__init__()
        self.config = config
        self.sample_rate, self.codebook_size = config.sample_rate, config.levels
        self.frame_rate = config.sample_rate / config.hop
        self.shape = nn.Parameter(1.0 + 0.3 * torch.randn(config.hop))
        self.mu = config.levels - 1

    def _levels(self, wav: Tensor) -> Tensor:
        blocks = nn.functional.pad(wav, (0, -wav.shape[-1] % self.config.hop)).reshape(wav.shape[0], -1, self.config.hop)
        return (blocks @ self.shape / self.shape.pow(2).sum()).clamp(-1, 1)

    def encode(self, wav: Tensor) -> Tensor:
        x = self._levels(wav.float())
        y = torch.sign(x) * torch.log1p(self.mu * x.abs()) / math.log1p(self.mu)
        return torch.round((y + 1) / 2 * self.mu).long()

    def decode(self, tokens: Tensor) -> Tensor:
        y = tokens.float() / self.mu * 2 - 1
        x = torch.sign(y) * ((1 + self.mu) ** y.abs() - 1) / self.mu
        return (x[..., None] * self.shape).reshape(tokens.shape[0], -1).detach()

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> BlockStream:
        return BlockStream(self, first_chunk, chunk)

    def reconstruction_loss(self, wav: Tensor) -> dict[str, Tensor]:
        x = self._levels(wav.float())
        pred = (x[..., None] * self.shape).reshape(wav.shape[0], -1)[:, : wav.shape[-1]]
        loss = (pred - wav).pow(2).mean()
        return {"loss": loss, "mse": loss.detach()}

'''


def test_the_plugin_imports_only_public_omnikit_modules():
    imported = {n.module for n in ast.walk(ast.parse(ACME_CODEC)) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imported if m and m.startswith("omnikit")} <= PUBLIC


@pytest.fixture
def acme(fake_plugins):
    (fake_plugins.dir / "acme_codecs.py").write_text(textwrap.dedent(ACME_CODEC))
    fake_plugins("omnikit.codecs", "block_mulaw", "acme_codecs:BlockMuLawCodec", dist="acme-codecs", version="1.2")
    yield
    sys.modules.pop("acme_codecs", None)


def test_a_third_party_codec_passes_the_kit_and_builds_from_a_recipe(acme):
    entry = get_registry("codec").entry("block_mulaw")
    assert (entry.distribution, entry.version) == ("acme-codecs", "1.2")
    recipe = OmegaConf.create({"omnikit": 1, "name": "acme",
                               "model": {"codec": {"name": "block_mulaw", "args": {"hop": 5, "levels": 32}}}})
    torch.manual_seed(0)
    model = build_model(recipe)
    codec = model["codec"]
    assert type(codec).__module__ == "acme_codecs" and codec.codebook_size == 32 and codec.frame_rate == 1600.0
    assert isinstance(codec, Codec)  # structure, not inheritance: the plugin never subclasses anything of omnikit
    report = check_codec(codec, seconds=0.1)
    assert report["stream_max_abs"] == 0.0  # per-token decoding: the stream is exact


def test_the_kit_rejects_the_same_codec_with_a_streaming_bug(acme):
    import acme_codecs

    class Forgetful(acme_codecs.BlockStream):
        def flush(self):  # drops the pending tokens instead of decoding them
            self.pending, self.started = [], False
            return torch.zeros(0)

    codec = get_registry("codec").build("block_mulaw", {"hop": 5})
    codec.streaming_decoder = lambda first_chunk=20, chunk=40, context=10: Forgetful(codec, first_chunk, chunk)
    with pytest.raises(AssertionError, match="streaming decoder vs decode: shape"):
        check_codec(codec, seconds=0.1)
