"""``encodec``: Meta's EnCodec (the ``encodec`` package) behind the single-codebook ``Codec`` contract."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from omnikit.components.codecs.losses import LogMelL1Loss, MultiResolutionSTFTLoss
from omnikit.components.codecs.streaming import WindowedStreamingDecoder
from omnikit.registry import param

LAYOUTS = ("flatten", "first")


@dataclass
class EncodecConfig:
    pretrained: bool = param(False, "Load the 24 kHz EnCodec weights (encodec's loader; downloads unless cached).")
    repository: str = param("", "Folder holding encodec_24khz-d7cc33bc.th, to load pretrained weights offline.")
    bandwidth: float = param(1.5, "Target bandwidth in kbps; 0.75 kbps per codebook (1.5 -> 2 codebooks).")
    layout: str = param("flatten", "Single-stream layout: flatten (interleave all codebooks) or first (codebook 0).")
    sample_rate: int = param(24_000, "Audio rate of a randomly initialised model (pretrained: 24000).")
    ratios: list[int] = param(factory=lambda: [8, 5, 4, 2], doc="SEANet ratios of a random model (hop = product).")
    n_filters: int = param(32, "SEANet base channels of a random model.")
    dimension: int = param(128, "Latent dimension of a random model.")
    lstm: int = param(2, "SEANet LSTM layers of a random model (0: purely convolutional, finite receptive field).")
    causal: bool = param(True, "Causal convolutions in a random model (the pretrained 24 kHz model is causal).")
    target_bandwidths: list[float] = param(
        factory=lambda: [1.5, 3.0, 6.0, 12.0, 24.0], doc="Bandwidths a random model supports (sets its codebooks)."
    )


def _build_random(cfg: EncodecConfig) -> nn.Module:
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    common = dict(
        channels=1, dimension=cfg.dimension, n_filters=cfg.n_filters, ratios=list(cfg.ratios), lstm=cfg.lstm,
        causal=cfg.causal, norm="weight_norm",
    )
    encoder, decoder = SEANetEncoder(**common), SEANetDecoder(**common)
    frame_rate = math.ceil(cfg.sample_rate / encoder.hop_length)
    n_q = int(1000 * cfg.target_bandwidths[-1] // (frame_rate * 10))
    quantizer = ResidualVectorQuantizer(dimension=cfg.dimension, n_q=n_q, bins=1024)
    return EncodecModel(
        encoder, decoder, quantizer, list(cfg.target_bandwidths), cfg.sample_rate, 1, normalize=False, segment=None
    )


class EncodecCodec(nn.Module):
    """EnCodec (24 kHz, residual VQ) exposed as one token stream (flattened codebooks or the first one only).

    EnCodec has no single-codebook setting: its lowest bandwidth, 1.5 kbps, uses 2 residual codebooks of 1024
    codes at 75 frames/s. ``layout`` chooses how they become one stream:

    * ``flatten`` (default): frame-major interleave ``[c0(t0), c1(t0), c0(t1), c1(t1), ...]`` with codebook k's
      ids offset by ``k * 1024``; ``codebook_size = K * 1024``, ``frame_rate = 75 * K`` tokens/s (150 at
      1.5 kbps, vs 40 for ``mel_vq``/``waveform_vq``). Lossless w.r.t. EnCodec at that bandwidth.
    * ``first``: only the first codebook (1024 codes, 75 tokens/s); decoding uses that codebook alone, which is
      coarser than EnCodec at 1.5 kbps.

    ``pretrained: true`` calls encodec's own loader (which downloads unless the checkpoint is in torch hub's
    cache or in ``repository``); otherwise a randomly initialised model of the configured size is built, which
    is what tests use. The pretrained model has LSTMs, so windowed streaming decoding is approximate there.
    """

    config_class = EncodecConfig

    def __init__(self, config: EncodecConfig, **context: object) -> None:
        super().__init__()
        if config.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {config.layout!r}")
        self.config = config
        if config.pretrained:
            from encodec import EncodecModel

            repo = Path(config.repository) if config.repository else None
            self.model = EncodecModel.encodec_model_24khz(pretrained=True, repository=repo)
        else:
            self.model = _build_random(config)
        self.model.set_target_bandwidth(config.bandwidth)
        self.sample_rate = int(self.model.sample_rate)
        self.hop = int(math.prod(self.model.encoder.ratios))
        bins = int(self.model.quantizer.bins)
        self.n_codebooks = int(self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.frame_rate, config.bandwidth))
        self.tokens_per_frame = self.n_codebooks if config.layout == "flatten" else 1
        self.codebook_size = bins * self.tokens_per_frame
        self.frame_rate = self.sample_rate / self.hop * self.tokens_per_frame
        self.samples_per_token = self.hop // self.tokens_per_frame
        self.bins = bins
        self.stft_loss = MultiResolutionSTFTLoss([[512, 128], [1024, 256], [2048, 512]])
        self.mel_loss = LogMelL1Loss(self.sample_rate, 1024, 256, 80)

    def _pad(self, wav: Tensor) -> Tensor:
        wav = wav if wav.dim() == 2 else wav.reshape(1, -1)
        n = -(-wav.shape[-1] // self.hop)
        return nn.functional.pad(wav.float(), (0, n * self.hop - wav.shape[-1]))

    def codes_to_tokens(self, codes: Tensor) -> Tensor:
        """EnCodec codes (B, K, T) -> one stream (B, N) in this codec's layout."""
        if self.config.layout == "first":
            return codes[:, 0]
        offsets = torch.arange(codes.shape[1], device=codes.device)[None, :, None] * self.bins
        return (codes + offsets).transpose(1, 2).reshape(codes.shape[0], -1)

    def tokens_to_codes(self, tokens: Tensor) -> Tensor:
        """One stream (B, N) -> EnCodec codes (B, K', T) (K' = 1 for ``first``); N must be whole frames."""
        if self.config.layout == "first":
            return tokens[:, None]
        b, n = tokens.shape
        k = self.tokens_per_frame
        if n % k:
            raise ValueError(f"flattened EnCodec streams come in frames of {k} tokens; got {n} tokens")
        return (tokens.reshape(b, n // k, k) % self.bins).transpose(1, 2)

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """(B, samples) at 24 kHz -> (B, N) tokens (N = frames * tokens_per_frame)."""
        frames = self.model.encode(self._pad(wav)[:, None])
        return self.codes_to_tokens(torch.cat([codes for codes, _ in frames], dim=-1))

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """(B, N) tokens -> (B, frames * hop) waveform."""
        tokens = tokens.long()
        if tokens.dim() == 1:
            tokens = tokens[None]
        return self.model.decode([(self.tokens_to_codes(tokens), None)])[:, 0]

    def streaming_decoder(self, first_chunk: int = 20, chunk: int = 40, context: int = 10) -> WindowedStreamingDecoder:
        """Windowed streaming decode; counts are in tokens and rounded up to whole EnCodec frames."""
        k = self.tokens_per_frame

        def whole(n: int) -> int:
            return -(-n // k) * k

        return WindowedStreamingDecoder(
            lambda t: self.decode(t[None])[0], self.samples_per_token, whole(first_chunk), whole(chunk), whole(context)
        )

    def fit_from_data(self, wavs: Iterable[Tensor]) -> None:
        """No-op: EnCodec's codebooks initialise themselves by k-means on their first training batch."""

    def reconstruction_loss(self, wav: Tensor) -> dict[str, Tensor]:
        """Autoencode (B, samples) at the configured bandwidth: STFT + mel losses + RVQ commitment penalty."""
        target = self._pad(wav)
        emb = self.model.encoder(target[:, None])
        q = self.model.quantizer(emb, self.model.frame_rate, self.model.bandwidth)
        pred = self.model.decoder(q.quantized)[:, 0, : target.shape[-1]]
        stft, mel = self.stft_loss(pred, target), self.mel_loss(pred, target)
        commitment = q.penalty if q.penalty is not None else pred.new_zeros(())
        return {"loss": stft + mel + commitment, "stft": stft.detach(), "mel": mel.detach(),
                "commitment": commitment.detach()}
