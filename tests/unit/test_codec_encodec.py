"""encodec: a small random EnCodec (nothing downloads) behind the single-stream Codec contract."""

import pytest
import torch

from omnikit.components.codecs.encodec_codec import EncodecCodec
from omnikit.components.codecs.streaming import stream_decode
from omnikit.interfaces import Codec


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make these tiny ops far slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small(layout: str = "flatten", lstm: int = 0) -> EncodecCodec:
    cfg = EncodecCodec.config_class(n_filters=4, dimension=16, lstm=lstm, layout=layout)
    return EncodecCodec(cfg).eval()


def noise(seconds: float) -> torch.Tensor:
    return 0.1 * torch.randn(2, int(24_000 * seconds), generator=torch.Generator().manual_seed(0))


def test_flatten_layout_interleaves_two_codebooks_at_1_5_kbps():
    codec = small("flatten")
    assert isinstance(codec, Codec)
    assert codec.n_codebooks == 2 and codec.codebook_size == 2048 and codec.frame_rate == 150.0
    tokens = codec.encode(noise(0.2))
    assert tokens.shape == (2, 30)  # 0.2 s x 75 frames/s x 2 codebooks
    assert bool((tokens[:, 0::2] < 1024).all()) and bool((tokens[:, 1::2] >= 1024).all())
    assert codec.decode(tokens).shape == (2, 4800)


def test_first_layout_keeps_one_codebook():
    codec = small("first")
    assert codec.codebook_size == 1024 and codec.frame_rate == 75.0
    tokens = codec.encode(noise(0.2))
    assert tokens.shape == (2, 15) and int(tokens.max()) < 1024
    assert codec.decode(tokens).shape == (2, 4800)


def test_codes_round_trip_through_the_flat_stream():
    codec = small("flatten")
    codes = torch.randint(0, 1024, (3, 2, 7))
    assert torch.equal(codec.tokens_to_codes(codec.codes_to_tokens(codes)), codes)
    with pytest.raises(ValueError, match="frames of 2"):
        codec.tokens_to_codes(torch.zeros(1, 5, dtype=torch.long))


def test_streaming_convolutional_encodec_matches_offline():
    """Without LSTMs the causal SEANet decoder has a finite receptive field; 10 frames of context cover it."""
    codec = small("flatten", lstm=0)
    tokens = codec.encode(noise(0.6)[:1])[0]
    offline = codec.decode(tokens[None])[0]
    streamed = torch.cat(stream_decode(codec.streaming_decoder(first_chunk=20, chunk=40, context=20), tokens, 4))
    assert streamed.shape == offline.shape
    assert torch.allclose(streamed, offline, atol=1e-4 * float(offline.abs().max()) + 1e-6)


def test_reconstruction_loss_backpropagates():
    codec = small("flatten").train()
    out = codec.reconstruction_loss(noise(0.1))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and set(out) >= {"stft", "mel", "commitment"}
    grads = [p.grad for p in codec.model.decoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
