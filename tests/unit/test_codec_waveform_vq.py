"""waveform_vq: paper size on meta, token rate, exact streaming within the receptive field, training, EMA VQ."""

import pytest
import torch

from omnikit.components.codecs.streaming import stream_decode
from omnikit.components.codecs.vq import EMAVectorQuantizer
from omnikit.components.codecs.waveform_vq import WaveformVQCodec
from omnikit.interfaces import Codec


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make these tiny ops far slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_codec() -> WaveformVQCodec:
    cfg = WaveformVQCodec.config_class(
        sample_rate=8000, strides=[4, 2], channels=8, code_dim=16, codebook_size=32, resblock_kernels=[3],
        resblock_dilations=[1], kernels=[], stft_resolutions=[[128, 32], [256, 64]], mel_n_fft=256, mel_hop=64, n_mels=20,
    )
    return WaveformVQCodec(cfg)


def tone(seconds: float, sr: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    f = 200 + 300 * torch.rand(1, generator=g)
    return 0.3 * torch.sin(2 * torch.pi * f * t) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))


def test_paper_size_builds_on_meta():
    with torch.device("meta"):
        codec = WaveformVQCodec(WaveformVQCodec.config_class())
    assert isinstance(codec, Codec)
    assert codec.sample_rate == 24_000 and codec.hop == 600 and codec.frame_rate == 40.0
    assert codec.codebook_size == 1024 and codec.quantizer.embed.shape == (1024, 512)
    n_params = sum(p.numel() for p in codec.parameters())
    assert 10e6 < n_params < 100e6
    # TiCodec's upsampling kernels for rates [8, 5, 5, 3]
    kernels = [m.kernel_size[0] for m in codec.decoder.modules() if isinstance(m, torch.nn.ConvTranspose1d)]
    assert kernels == [16, 11, 11, 5]


def test_shapes_and_token_rate():
    codec = tiny_codec().eval()
    wav = torch.stack([tone(0.1, 8000, 0), tone(0.1, 8000, 1)])
    tokens = codec.encode(wav)
    assert tokens.shape == (2, 100) and codec.frame_rate == 1000.0
    assert int(tokens.max()) < 32
    assert codec.decode(tokens).shape == (2, 800)
    assert codec.encode(tone(0.1, 8000, 0)[:797][None]).shape == (1, 100)  # padded to whole tokens


def test_stream_is_exact_when_receptive_field_fits_context():
    codec = tiny_codec().eval()
    assert codec.decoder_receptive_field() <= 10
    tokens = torch.randint(0, 32, (133,), generator=torch.Generator().manual_seed(0))
    offline = codec.decode(tokens[None])[0]
    streamed = torch.cat(stream_decode(codec.streaming_decoder(), tokens, step=5))
    assert streamed.shape == offline.shape
    assert torch.allclose(streamed, offline, atol=1e-5)


def test_loss_falls_over_a_few_steps():
    torch.manual_seed(0)
    codec = tiny_codec().train()
    batch = torch.stack([tone(0.25, 8000, s) for s in range(4)])
    opt = torch.optim.Adam(codec.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        out = codec.reconstruction_loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert set(out) >= {"loss", "stft", "mel", "commitment", "perplexity"}
    assert min(losses[-5:]) < 0.85 * losses[0]


def test_dead_codes_are_restarted():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(16, 4, decay=0.5, dead_threshold=1.0).train()
    vq.init_from(torch.full((16, 4), 50.0) + torch.randn(16, 4))  # every code far from the data
    data = torch.randn(2, 4, 64)
    before = vq(data)[1].unique().numel()
    for _ in range(5):
        vq(data)
    after = vq(data)[1].unique().numel()
    assert int(vq.restarts) > 0
    assert after > before


def test_straight_through_gradient_reaches_encoder_side():
    vq = EMAVectorQuantizer(8, 4).train()
    z = torch.randn(1, 4, 10, requires_grad=True)
    q, _, commitment = vq(z)
    (q.sum() + commitment).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
